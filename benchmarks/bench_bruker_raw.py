"""Reading and reconstructing ParaVision 360 raw data (FLASH scan 6 and EPI scan 7 of the
real study in ``../shared/realdata/bruker_pv/pv360_rodent``): header parsing, line reordering
onto the vendor's grid (for EPI also the ramp regridding, line reversal and ghost
correction), partial-Fourier (POCS) and zero-filled reconstruction.

Each figure is printed with its ratio to a baseline timed in the same run: ``np.fromfile``
of the raw file plus a bare ``scipy.fft.ifft2`` of the zero-filled grid. Target: the whole
read + reconstruction under 2 s on 2 cores. Usage: ``python benchmarks/bench_bruker_raw.py
[scan folder ...]``.
"""

import sys
from pathlib import Path

import numpy as np
import scipy.fft

from _timing import best_of

from napari_mrmicro.core import reconstruct
from napari_mrmicro.io import bruker_raw

STUDY = Path(__file__).resolve().parents[2] / "shared/realdata/bruker_pv/pv360_rodent"
DEFAULT = (STUDY / "6", STUDY / "7")


def main(scan: Path) -> None:
    if not (scan / "rawdata.job0").is_file() and not (scan / "fid").is_file():
        sys.exit(f"no raw data in {scan} (the real-data folder is needed)")
    ks = bruker_raw.read_kspace(scan)
    raw = scan / ("rawdata.job0" if (scan / "rawdata.job0").is_file() else "fid")

    def baseline():
        np.fromfile(raw, dtype="<i4")
        scipy.fft.ifft2(ks.data, workers=-1)

    base = best_of(baseline, repeat=5)
    read = best_of(lambda: bruker_raw.read_kspace(scan), repeat=5)
    zero = best_of(lambda: reconstruct(bruker_raw.read_kspace(scan).data, kspace_axes=(-2, -1),
                                       output="magnitude"), repeat=5)
    pocs = best_of(lambda: reconstruct(bruker_raw.read_kspace(scan), output="magnitude"),
                   repeat=5)
    print(f"{scan}: k-space {ks.data.shape}, baseline (fromfile + ifft2) {base * 1e3:.1f} ms")
    for label, t in [("read", read), ("read + zero-filled recon", zero),
                     ("read + POCS partial Fourier recon", pocs)]:
        print(f"  scan {scan.name} {label:36s} {t * 1e3:8.1f} ms  ratio {t / base:6.1f}  "
              f"{'(target < 2 s: met)' if t < 2 else '(target < 2 s: MISSED)'}")


if __name__ == "__main__":
    for folder in [Path(a) for a in sys.argv[1:]] or DEFAULT:
        main(folder)
