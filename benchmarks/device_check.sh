#!/usr/bin/env bash
# The GPU and 16-core checks of the "every core, and the GPU" work, as one prepared run for a
# machine with a CUDA device and CuPy (numpy, scipy, numba and pytest installed; the
# package itself is used from src/, not installed). From the repository root:
#
#   bash benchmarks/device_check.sh [OUT]       # OUT: where the logs go (default $OUT)
#
# 1. the GPU tests on the real device (CPU vs GPU within float32 tolerance);
# 2. bench_gpu.py at the documented sizes: GPU/CPU ratio of every stage;
# 3. recon -> magnitude / bare ifftn on 2 and all cores, and the unfused ifftn + magnitude
#    pass beside it (bench_cores.py);
# 4. each QSM stage against its own FFT work, pinned to 2 cores (bench_qsm.py).
# About 6 minutes on one H200 with 16 cores. Each step's log is written as it runs.
set -u
out=${1:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
"$python" - <<'PY' || exit 3
from napari_mrmicro.core import backend
backend.check_device("gpu")  # a clear error when CuPy or the device is missing
import numba  # noqa: F401  (the CPU's compiled loops)
PY
step() { echo "== $1"; shift; "$@" 2>&1 | tee -a "$out/device_check.log"; }
: >"$out/device_check.log"
step "GPU tests" "$python" -m pytest -q -p no:cacheprovider \
    tests/core/test_backend.py tests/core/test_simulate_device.py \
    tests/core/qsm/test_inversion_device.py tests/core/qsm/test_background_device.py \
    tests/core/test_cs_device.py tests/core/test_nufft_device.py
step "bench_gpu" "$python" benchmarks/bench_gpu.py
step "recon -> magnitude per core count" "$python" benchmarks/bench_cores.py --cores 2,16 \
    --stages recon_magnitude bare_ifftn ifftn_abs --repeat 3
step "QSM stages on 2 cores" taskset -c 0,1 "$python" benchmarks/bench_qsm.py
