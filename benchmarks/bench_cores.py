"""Speed-up from 1 to more cores of the iterative solvers, and recon -> magnitude against a
bare FFT, each core count in a fresh process pinned to that many cores.

Stages (the same calls on every core count):

* TV-ADMM QSM (``invert_tv``) on 256×256×128, 20 iterations (tol = 0);
* compressed sensing, L1-wavelet FISTA and TV-ADMM (``cs_reconstruct``), 128³ spheres,
  4× Poisson disc, 10 iterations;
* 256³ k-space -> magnitude (``reconstruct(output="magnitude")``) and, as its baseline, a
  bare ``scipy.fft.ifftn(workers=-1)`` of the same array; for comparison, the way the
  magnitude was computed before its last axis was fused with the modulus: ``ifftn``, then
  a separate pass of the rolled modulus on all cores (``ifftn_abs``).

Each child process pins itself with ``os.sched_setaffinity`` before numpy is imported and
reports that many CPUs to scipy.fft (``workers=-1``) and to the slab pool. The parent prints
the best time per core count, the speed-up ``t(1 core) / t(k cores)`` (targets ≥ 1.6 for
QSM TV and CS from 1 to 2 cores) and ``recon / bare FFT`` per core count (target ≤ 1.25).

Usage: ``python benchmarks/bench_cores.py [--small] [--cores 1,2] [--stages ...]``
(``--small``: 128×128×64, 64³ and 128³; default cores: 1, 2 and all, where there are more).
"""

import argparse
import json
import os
import subprocess
import sys

from _timing import best_of

STAGES = ("qsm_tv", "cs_l1_wavelet", "cs_tv", "recon_magnitude", "bare_ifftn", "ifftn_abs")


def _pin(cores: int) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    os.cpu_count = lambda: cores  # scipy.fft's workers=-1 counts os.cpu_count()


def _child(stage: str, small: bool, repeat: int) -> float:
    import numpy as np

    def best(fn):
        return best_of(fn, repeat, warmup=True)  # warm-up: FFT plans, page faults, the pool

    if stage == "qsm_tv":
        from napari_mrmicro.core.qsm.tv import invert_tv
        shape = (128, 128, 64) if small else (256, 256, 128)
        rng = np.random.default_rng(0)
        field = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        z, y, x = np.indices(shape, sparse=True)
        mask = ((z / shape[0] - 0.5) ** 2 + (y / shape[1] - 0.5) ** 2
                + (x / shape[2] - 0.5) ** 2) < 0.16
        return best(lambda: invert_tv(field, mask, (20.0, 20.0, 20.0), max_iter=20, tol=0))
    if stage.startswith("cs_"):
        from napari_mrmicro.core.compressed_sensing import cs_reconstruct
        from napari_mrmicro.core.kspace import centered_fft
        from napari_mrmicro.core.sampling import poisson_disc_mask
        n = 64 if small else 128
        z, y, x = ((i - n / 2) / (n / 2) for i in np.indices((n,) * 3, sparse=True))
        truth = ((z**2 + y**2 + x**2 < 0.6).astype(np.float32)  # piecewise-constant phantom
                 + 0.5 * ((z - 0.2) ** 2 + y**2 + (x + 0.3) ** 2 < 0.05))
        kspace = centered_fft(truth.astype(np.complex64))
        mask = poisson_disc_mask((n,) * 3, 4, calib=max(n // 8, 8), seed=0)
        method = stage[3:]
        return best(lambda: cs_reconstruct(kspace, mask, method=method, iterations=10, tol=0))
    import scipy.fft

    from napari_mrmicro.core.recon import reconstruct
    n = 128 if small else 256
    rng = np.random.default_rng(0)
    k = np.empty((n,) * 3, np.complex64)
    k.real = rng.standard_normal(k.shape, dtype=np.float32)
    k.imag = rng.standard_normal(k.shape, dtype=np.float32)
    if stage == "bare_ifftn":
        return best(lambda: scipy.fft.ifftn(k, workers=-1))
    if stage == "ifftn_abs":
        from napari_mrmicro.core import backend

        def two_passes():
            y = scipy.fft.ifftn(k, norm="ortho", workers=-1)
            return backend.roll_into(y, {a: n // 2 for a in range(3)},
                                     np.empty(y.shape, np.float32), np.abs)
        return best(two_passes)
    return best(lambda: reconstruct(k, output="magnitude"))


def run_stage(stage, cores, small, repeat):
    out = subprocess.run([sys.executable, __file__, "--child", stage, "--cores", str(cores),
                          "--repeat", str(repeat)] + (["--small"] if small else []),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--cores", help="comma-separated core counts (default 1,2[,all])")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES,
                        help="a subset of the stages")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _pin(int(args.cores))
        print(json.dumps({"seconds": _child(args.child, args.small, args.repeat)}))
        return
    available = len(os.sched_getaffinity(0))
    cores = [int(c) for c in args.cores.split(",")] if args.cores else \
        sorted({1, min(2, available), available})
    cores = [c for c in cores if c <= available]
    times = {stage: {c: run_stage(stage, c, args.small, args.repeat) for c in cores}
             for stage in args.stages}
    print(f"best of {args.repeat} after a warm-up, each core count in its own pinned process; "
          f"cores: {', '.join(map(str, cores))}" + (" (--small sizes)" if args.small else ""))
    for stage in [s for s in STAGES[:3] if s in times]:
        row = "   ".join(f"{c} core{'s' if c > 1 else ''} {times[stage][c]:.3f} s" for c in cores)
        speedups = "   ".join(f"1->{c} cores {times[stage][1] / times[stage][c]:.2f}x"
                               for c in cores if c > 1 and 1 in cores)
        print(f"  {stage:<16} {row}   {speedups}" + ("   (target 1->2 >= 1.6)"
                                                     if 2 in cores else ""))
    if "recon_magnitude" not in times or "bare_ifftn" not in times:
        return
    ratios = "   ".join(f"{c} core{'s' if c > 1 else ''}: ratio "
                        f"{times['recon_magnitude'][c] / times['bare_ifftn'][c]:.2f}"
                        for c in cores)
    print(f"  recon -> magnitude / bare ifftn   {ratios}   (target <= 1.25)")
    if "ifftn_abs" in times:
        ratios = "   ".join(f"{c} core{'s' if c > 1 else ''}: ratio "
                            f"{times['ifftn_abs'][c] / times['bare_ifftn'][c]:.2f}"
                            for c in cores)
        print(f"  ifftn + magnitude pass / bare     {ratios}   (the unfused way)")


if __name__ == "__main__":
    main()
