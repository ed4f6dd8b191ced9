"""A 256³ simulated acquisition of a specimen sampled on a 2× finer (512³) grid, every
effect on: wall time, voxels/s, and the ratio to one 512³ complex64 FFT timed in the same
run, and the peak memory against the specimen's labels. Usage:
``python benchmarks/bench_simulate.py [specimen] [matrix]``."""

import os
import sys
import threading
import time

import numpy as np
import scipy.fft

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core.simulate import Effects, simulate
from napari_mrmicro.core.specimens import make_specimen


def main(name="cochlea", n=256):
    voxel = 25.0
    acq = Acquisition(matrix=(n, n, n), fov_um=(n * voxel,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(4.0,), tr_ms=50.0, flip_deg=20.0,
                      bandwidth_hz=50_000.0, readout_axis=2)
    t0 = time.perf_counter()
    specimen = make_specimen(name, (2 * n,) * 3, voxel / 2)
    t_specimen = time.perf_counter() - t0

    x = np.zeros((2 * n,) * 3, dtype=np.complex64)
    x[n, n, n] = 1
    t0 = time.perf_counter()
    scipy.fft.fftn(x, workers=-1, overwrite_x=True)
    t_fft = time.perf_counter() - t0
    del x

    stages = {}
    last = [time.perf_counter(), "start"]

    def progress(stage, fraction):
        now = time.perf_counter()
        stages[last[1]] = stages.get(last[1], 0.0) + now - last[0]
        last[:] = [now, stage]

    peak, done = [0], threading.Event()

    def sample_rss():  # resident memory every 10 ms, from /proc (Linux)
        page = os.sysconf("SC_PAGE_SIZE")
        while not done.wait(0.01):
            with open("/proc/self/statm") as statm:
                peak[0] = max(peak[0], int(statm.read().split()[1]) * page)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    simulate(specimen, acq, seed=0, effects=Effects(gradient_nonlinearity=0.02),
             progress=progress)
    t_sim = time.perf_counter() - t0
    done.set()
    sampler.join()
    print(f"specimen '{name}' on a {2 * n}³ grid: built in {t_specimen:.2f} s")
    print(f"simulate {n}³ from {2 * n}³, all effects: {t_sim:.2f} s, "
          f"{n**3 / t_sim / 1e6:.2f} M voxels/s; one {2 * n}³ c64 FFT {t_fft:.2f} s, "
          f"ratio {t_sim / t_fft:.1f} FFTs")
    print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items() if k != "start"))
    print(f"  peak RSS while simulating {peak[0] / 2**30:.2f} GiB = "
          f"{peak[0] / specimen.labels.nbytes:.1f} × the specimen's uint8 labels")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cochlea",
         int(sys.argv[2]) if len(sys.argv) > 2 else 256)
