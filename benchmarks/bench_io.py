"""Reading a CIVM slice series: time to first slice (lazy) and full-read throughput.

Each figure is printed with its ratio to a baseline timed in the same run: ``np.fromfile``
of the same slice files. Usage: ``python benchmarks/bench_io.py [N ...]`` (default 512;
1024 writes 2 GiB to a temporary folder).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from _timing import best_of

from napari_mrmicro.io import read_volume, write_headfile


def make_series(folder: Path, n: int) -> list[Path]:
    runno = f"B{n:05d}"
    slice_ = (np.arange(n * n, dtype=np.uint32).reshape(n, n) % 4096).astype(">u2")
    paths = []
    for k in range(1, n + 1):
        path = folder / f"{runno}imx.{k:04d}.raw"
        (slice_ + k).tofile(path)
        paths.append(path)
    write_headfile(folder / f"{runno}.headfile",
                   {"dim_X": n, "dim_Y": n, "dim_Z": n, "fovx": n * 0.02, "fovy": n * 0.02,
                    "fovz": n * 0.02, "U_runno": runno})
    return paths


def bench(n: int):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        folder = Path(tmp)
        paths = make_series(folder, n)
        headfile = next(folder.glob("*.headfile"))
        nbytes = n**3 * 2

        def baseline_full():
            out = np.empty((n, n, n), dtype=np.uint16)
            for k, p in enumerate(paths):
                out[k] = np.fromfile(p, dtype=">u2").reshape(n, n)
            return out

        base_full = best_of(baseline_full)
        base_first = best_of(lambda: np.fromfile(paths[0], dtype=">u2").reshape(n, n))
        ours_full = best_of(lambda: read_volume(headfile, lazy=False).data)

        def first_slice():
            volume = read_volume(headfile, lazy=True)
            return np.asarray(volume.data[0])

        ours_first = best_of(first_slice)
        assert np.array_equal(first_slice(), np.fromfile(paths[0], ">u2").reshape(n, n))
        print(f"{n}³ uint16 CIVM series ({nbytes / 2**20:.0f} MiB, {n} slice files):")
        print(f"  first slice, lazy open : {ours_first * 1e3:8.1f} ms   "
              f"(np.fromfile of one slice {base_first * 1e3:.1f} ms, "
              f"ratio {ours_first / base_first:.1f})")
        print(f"  full read              : {ours_full:8.3f} s    "
              f"{nbytes / ours_full / 2**20:7.0f} MiB/s  "
              f"(np.fromfile loop {base_full:.3f} s, ratio {ours_full / base_full:.2f})")


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [512]:
        bench(size)
