"""Reconstruction speed and memory, as ratios to baselines timed in the same run.

(a) 256³ complex64 single-echo k-space -> magnitude with ``reconstruct(output="magnitude")``
    (and -> complex image) against a bare ``scipy.fft.ifftn(workers=-1)`` of the same array;
    targets: time ratio ≤ 1.25, peak memory (tracemalloc: numpy allocations) ≤ 3× the
    k-space size.
(b) 128³ compressed sensing, 4× Poisson disc, 30 iterations of L1-wavelet FISTA against
    sigpy's ``L1WaveletRecon`` (when installed), same λ and iterations.

Usage: ``python benchmarks/bench_recon.py [N_a] [N_b]`` (defaults 256 and 128).
"""

import sys
import time
import tracemalloc

import numpy as np
import scipy.fft

from _timing import interleaved_best

from napari_mrmicro.core.compressed_sensing import cs_reconstruct
from napari_mrmicro.core.kspace import centered_fft
from napari_mrmicro.core.recon import reconstruct
from napari_mrmicro.core.sampling import poisson_disc_mask
from napari_mrmicro.core.specimens import make_specimen


def peak_bytes(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench_fft(n):
    rng = np.random.default_rng(0)
    kspace = np.empty((n, n, n), np.complex64)
    kspace.real = rng.standard_normal((n, n, n), dtype=np.float32)
    kspace.imag = rng.standard_normal((n, n, n), dtype=np.float32)
    base, magnitude, complex_ = interleaved_best([
        lambda: scipy.fft.ifftn(kspace, workers=-1),
        lambda: reconstruct(kspace, output="magnitude"),
        lambda: reconstruct(kspace),
    ], repeat=5)
    size = kspace.nbytes
    print(f"(a) {n}³ complex64 ({size / 2**20:.0f} MiB), bare scipy.fft.ifftn(workers=-1): "
          f"{base:.3f} s")
    print(f"    reconstruct -> magnitude: {magnitude:.3f} s, ratio {magnitude / base:.2f} "
          f"(target <= 1.25); peak memory "
          f"{peak_bytes(lambda: reconstruct(kspace, output='magnitude')) / size:.2f}× "
          "k-space (target <= 3)")
    print(f"    reconstruct -> complex:   {complex_:.3f} s, ratio {complex_ / base:.2f}; peak "
          f"memory {peak_bytes(lambda: reconstruct(kspace)) / size:.2f}× k-space")
    bare = peak_bytes(lambda: scipy.fft.ifftn(kspace, workers=-1))
    print(f"    bare ifftn peak memory {bare / size:.2f}× k-space")


def bench_cs(n, iterations=30, lam=0.005):
    shape = (n, n, n)
    truth = make_specimen("cochlea", shape, 12800.0 / n).property_map("proton_density")
    kspace = centered_fft(truth.astype(np.complex64))
    mask = poisson_disc_mask(shape, 4, calib=max(n // 8, 8), seed=0)
    undersampled = np.where(mask, kspace, 0).astype(np.complex64)

    def nrmse(image):
        return np.linalg.norm(np.abs(image) - truth) / np.linalg.norm(truth)

    scale = float(np.abs(reconstruct(undersampled)).max())
    print(f"(b) {n}³ cochlea, 4× Poisson disc, {iterations} iterations; zero-filled NRMSE "
          f"{nrmse(reconstruct(undersampled)):.3f}")
    timings = {}
    for wavelet in ("haar", "db4"):
        t0 = time.perf_counter()
        image = cs_reconstruct(undersampled, mask, lam=lam, iterations=iterations, tol=0,
                               wavelet=wavelet)
        timings[wavelet] = time.perf_counter() - t0
        print(f"    ours L1-wavelet ({wavelet}, FISTA): {timings[wavelet]:.2f} s, "
              f"NRMSE {nrmse(image):.3f}")
    t0 = time.perf_counter()
    image = cs_reconstruct(undersampled, mask, method="tv", lam=lam, iterations=iterations,
                           tol=0)
    print(f"    ours TV (ADMM): {time.perf_counter() - t0:.2f} s, NRMSE {nrmse(image):.3f}")
    try:
        import sigpy.mri
    except ImportError:
        print("    sigpy not installed: no baseline")
        return
    t0 = time.perf_counter()
    app = sigpy.mri.app.L1WaveletRecon(undersampled[None], np.ones((1,) + shape, np.complex64),
                                       lam * scale, max_iter=iterations, show_pbar=False)
    image = app.run()
    sigpy_time = time.perf_counter() - t0
    print(f"    sigpy L1WaveletRecon (db4): {sigpy_time:.2f} s, NRMSE {nrmse(image):.3f}; "
          f"ratio ours/sigpy: haar {timings['haar'] / sigpy_time:.2f}, "
          f"db4 {timings['db4'] / sigpy_time:.2f}")


if __name__ == "__main__":
    sizes = [int(v) for v in sys.argv[1:]] + [256, 128][len(sys.argv) - 1:]
    bench_fft(sizes[0])
    bench_cs(sizes[1])
