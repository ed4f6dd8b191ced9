"""Measured memory peaks of the operations the memory guard checks, against their estimates.

Each operation runs in a fresh process: the input is made, the peak resident size is reset
(``/proc/self/clear_refs``), the operation runs and the new peak (``VmHWM``) less the resident
size before it is the operation's measured peak. The guard refuses an operation when its
estimate exceeds the available memory, so every estimate must be at least the peak it
measures (ratio estimate / peak >= 1): the script exits 1 otherwise.

    python benchmarks/bench_memory.py            # small sizes, ~1 minute
    python benchmarks/bench_memory.py --full     # recon of 256³, simulation of a 128³ matrix

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _measured(run) -> int:
    """Bytes the call ``run()`` adds at its peak to the resident size before it."""
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS")
    result = run()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) * 1024


def _recon(n: int, zero_fill: float, output: str):
    import numpy as np

    from napari_mrmicro.core.recon import estimate_recon_bytes, reconstruct

    rng = np.random.default_rng(0)
    data = (rng.standard_normal((2, n, n, n), np.float32)
            + 1j * rng.standard_normal((2, n, n, n), np.float32)).astype(np.complex64)
    estimate = estimate_recon_bytes(data.shape, zero_fill, output=output)
    peak = _measured(lambda: reconstruct(data, window="hann", zero_fill=zero_fill,
                                         output=output))
    return f"reconstruct {data.shape} zero-fill {zero_fill:g} -> {output}", estimate, peak


def _simulate(m: int):
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.core.simulate import _grid_factors, simulation_memory_bytes

    acq = Acquisition(matrix=(m, m, m), fov_um=(3200.0,) * 3)
    specimen = make_specimen("tube", (2 * m,) * 3, tuple(v / 2 for v in acq.voxel_um))
    estimate = simulation_memory_bytes(specimen.labels.shape, acq,
                                       _grid_factors(specimen, acq))
    peak = _measured(lambda: simulate(specimen, acq, seed=0))
    return f"simulate tube {specimen.labels.shape} -> matrix {m}³", estimate, peak


def _specimen(name: str, n: int):
    from napari_mrmicro.core import make_specimen
    from napari_mrmicro.core.specimens import _BUILDERS

    estimate = _BUILDERS[name][1] * n**3
    make_specimen(name, (16, 16, 16), 25.0)  # the code's one-time loads are not the volume's
    peak = _measured(lambda: make_specimen(name, (n, n, n), 25.0))
    return f"make_specimen {name} {n}³", estimate, peak


def _resample(count: int):
    import numpy as np

    from napari_mrmicro.core.centerline import RESAMPLE_BYTES_PER_POINT, resample_path

    path = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, float(count - 1)]])
    peak = _measured(lambda: resample_path(path, step_um=1.0))
    return f"resample_path {count} points", RESAMPLE_BYTES_PER_POINT * count, peak


def _lbv(n: int):
    import numpy as np

    from napari_mrmicro.core._masks import bounding_slices
    from napari_mrmicro.core.qsm.background import LBV_VOLUMES, lbv

    def problem(size):
        z, y, x = np.ogrid[:size, :size, :size // 2]
        mask = ((z - size / 2) / (0.4 * size)) ** 2 + ((y - size / 2) / (0.4 * size)) ** 2 \
            + ((x - size / 4) / (0.2 * size)) ** 2 <= 1
        field = (np.sin(z / 7.0) * np.cos(y / 5.0) + x / size).astype(np.float32)
        return field, mask

    lbv(*problem(24), 10.0)  # the compiled loops' one-time load is not the volume's
    field, mask = problem(n)
    box = [int(s.stop - s.start) + 2 for s in bounding_slices(mask)]  # padded, as lbv has it
    estimate = 4 * LBV_VOLUMES["cpu"] * int(np.prod(box))
    peak = _measured(lambda: lbv(field, mask, 10.0))
    return f"lbv {field.shape}, mask box {tuple(box)}", estimate, peak


def _worker(queue, job, args):
    queue.put(job(*args))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    full = parser.parse_args(argv).full
    n, m = (256, 128) if full else (96, 48)
    jobs = [(_recon, (n, 1.0, "complex")), (_recon, (n, 1.0, "magnitude")),
            (_recon, (n // 2, 2.0, "complex")), (_simulate, (m,)),
            (_specimen, ("tube", 2 * m)), (_specimen, ("cochlea", 2 * m)),
            (_specimen, ("tooth", m)), (_specimen, ("microdiamonds", 2 * m)),
            (_resample, (4_000_000,)), (_lbv, (2 * n,))]
    context = multiprocessing.get_context("spawn")
    failed = 0
    print(f"{'operation':55s} {'estimate MiB':>12s} {'peak MiB':>9s} {'estimate/peak':>13s}")
    for job, args in jobs:
        queue = context.Queue()
        process = context.Process(target=_worker, args=(queue, job, args))
        process.start()
        what, estimate, peak = queue.get()
        process.join()
        ratio = estimate / max(peak, 1)
        failed += ratio < 1
        print(f"{what:55s} {estimate / 2**20:12.1f} {peak / 2**20:9.1f} {ratio:12.2f}×"
              + ("  ESTIMATE BELOW PEAK" if ratio < 1 else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
