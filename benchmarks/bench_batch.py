"""Batches on dask.distributed and OME-Zarr conversion of a volume larger than we load.

1. Eight simulated specimens through a pipeline (recon, smoothing, Otsu, connected parts,
   region table, OME-Zarr labels) on a LocalCluster of 1 and of 2 worker processes: the
   speedup (target >= 1.7 on 2 cores).
2. A uint16 CIVM slice series (default 1024³ = 2 GiB) converted to OME-Zarr by
   ``mrmicro convert`` and its labels measured by ``mrmicro measure --chunked``, each in a
   child process: throughput against a plain copy of the same bytes, and the child's peak
   resident memory against the volume's size.

Run: ``python benchmarks/bench_batch.py [--size 1024] [--specimens 8] [--matrix 96]
[--repeat N] [--convert-only]`` (the convert and the copy alternate N times; best of each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PIPELINE = """
name = "bench"
[[step]]
run = "recon"
window = "hann"
[[step]]
run = "echo"
index = 0
[[step]]
run = "smooth"
sigma_um = 60.0
[[step]]
run = "threshold"
[[step]]
run = "components"
[[step]]
run = "measure"
[[step]]
run = "save"
labels = "labels.ome.zarr"
"""


def make_specimens(folder: Path, count: int, matrix: int) -> list[Path]:
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.io import Volume
    from napari_mrmicro.pipeline import save_volume

    acq = Acquisition(matrix=(matrix,) * 3, fov_um=(matrix * 50.0,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(3.0, 6.0), tr_ms=40.0, flip_deg=15.0)
    paths = []
    for seed in range(count):
        specimen = make_specimen("tube", tuple(2 * n for n in acq.matrix),
                                 tuple(v / 2 for v in acq.voxel_um), seed=seed)
        kspace = simulate(specimen, acq, seed=seed)
        meta = {"kspace": True, "multislice": False, "coil_axis": None,
                "acquisition": acq.to_dict()}
        path = folder / f"tube{seed:02d}.zarr"
        save_volume(path, Volume(kspace.data, acq.voxel_um, meta))
        paths.append(path)
    return paths


def _warm(pipeline, path: str, out: str, dask_worker=None) -> str:
    """Run one specimen on this worker (untimed): imports and caches are then warm."""
    from napari_mrmicro.pipeline import run_specimen

    folder = Path(out) / f"warm-{dask_worker.id}"
    folder.mkdir(parents=True, exist_ok=True)
    return run_specimen(pipeline, path, folder, threads=1, force=True).status


def time_batch(paths: list[Path], out: Path, workers: int) -> float:
    from distributed import Client, LocalCluster

    from napari_mrmicro.batch import run_batch
    from napari_mrmicro.pipeline import parse_pipeline

    pipeline = parse_pipeline(PIPELINE, "bench.toml")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        warm = client.run(_warm, pipeline, str(paths[0]), str(out.parent / "warm"))
        assert set(warm.values()) == {"done"}, warm
        t0 = time.perf_counter()
        results = run_batch(pipeline, paths, out, client=client, force=True, progress=None)
        seconds = time.perf_counter() - t0
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"batch failed: {failed}")
    return seconds


def make_series(folder: Path, size: int) -> Path:
    """A uint16 label volume (27 boxes) as a CIVM headfile + raw slices."""
    from napari_mrmicro.io import Volume, write_volume

    labels = np.zeros((size,) * 3, np.uint16)
    step = size // 3
    for i in range(27):
        z, y, x = np.unravel_index(i, (3, 3, 3))
        labels[z * step + 4:(z + 1) * step - 4, y * step + 4:(y + 1) * step - 4,
               x * step + 4:x * step + 4 + (i + 1) * (step - 8) // 27] = i + 1
    (folder / "series").mkdir()
    write_volume(folder / "series" / "series.headfile",
                 Volume(labels, (20.0, 20.0, 20.0), layer_type="labels"))
    return folder / "series" / "series.headfile"


def child(args: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (GiB) of ``mrmicro ARGS`` in a fresh child process.

    The peak is the child's ``VmHWM`` (its own address space; ``ru_maxrss`` would carry
    the parent's peak over the fork and exec).
    """
    code = ("import sys\nfrom napari_mrmicro.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('PEAK', hwm.split()[1])\n"
            "sys.exit(code)\n")
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True)
    seconds = time.perf_counter() - t0
    if result.returncode:
        raise SystemExit(f"mrmicro {' '.join(args)} failed:\n{result.stderr}")
    peak_kib = int(result.stdout.rsplit("PEAK", 1)[1])
    return seconds, peak_kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--specimens", type=int, default=8)
    parser.add_argument("--matrix", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=1,
                        help="convert and copy this many times, alternating; best of each")
    parser.add_argument("--convert-only", action="store_true", help="skip the batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        if not args.convert_only:
            paths = make_specimens(tmp, args.specimens, args.matrix)
            one = time_batch(paths, tmp / "out1", 1)
            two = time_batch(paths, tmp / "out2", 2)
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            print(f"batch of {args.specimens} specimens ({args.matrix}³, 2 echoes): "
                  f"1 worker {one:.1f} s, 2 workers {two:.1f} s, speedup {one / two:.2f}")
            shutil.rmtree(tmp / "out1"), shutil.rmtree(tmp / "out2")

        headfile = make_series(tmp, args.size)
        nbytes = args.size**3 * 2
        copy = seconds = peak = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            shutil.copytree(headfile.parent, tmp / "copy")
            copy = min(copy, time.perf_counter() - t0)
            shutil.rmtree(tmp / "copy")
            shutil.rmtree(tmp / "v.zarr", ignore_errors=True)
            once, peak_once = child(["convert", str(headfile), str(tmp / "v.zarr"),
                                     "--labels"])
            seconds, peak = min(seconds, once), min(peak, peak_once)
        gib = nbytes / 2**30
        print(f"{args.size}³ uint16 ({gib:.2f} GiB) slice series -> OME-Zarr: {seconds:.1f} s "
              f"({gib * 1024 / seconds:.0f} MiB/s; plain copy {copy:.1f} s, "
              f"{gib * 1024 / copy:.0f} MiB/s; ratio {seconds / copy:.1f}x), peak RSS "
              f"{peak:.2f} GiB = {peak / gib:.2f} x the volume")
        seconds, peak = child(["measure", str(tmp / "v.zarr"), str(tmp / "v.csv"),
                               "--chunked"])
        rows = np.genfromtxt(tmp / "v.csv", delimiter=",", names=True)
        print(f"chunked label volumes of the OME-Zarr: {len(rows)} labels in {seconds:.1f} s, "
              f"peak RSS {peak:.2f} GiB = {peak / gib:.2f} x the volume")


if __name__ == "__main__":
    main()
