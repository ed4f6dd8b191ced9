"""GPU (CuPy) against CPU (numpy + scipy.fft on all cores), stage by stage, in one run.

Every stage runs the same core function on both devices (``device=`` of
:mod:`napari_mrmicro.core.backend`) and prints the CPU time, the GPU time and the ratio
GPU/CPU (below 1: the GPU is faster), plus the largest difference of the results relative
to the CPU result's peak (float32 tolerance):

(a) 256³ complex64 k-space -> magnitude (``reconstruct(output="magnitude")``), and the
    bare inverse FFT on each device as its baseline; data already on the device (the
    transfer is timed separately). Target: < 5 ms on the GPU.
(b) 256³ k-space -> complex image (``reconstruct``), data on the device.
(c) forward field of a 256×256×128 χ map (``forward_field``), host arrays in and out.
(d) TV-ADMM QSM 256×256×128, 100 iterations (``invert_tv``, tol = 0), host arrays in and
    out. Target: < 1 s on the GPU. The CPU runs ``--cpu-iterations`` (default 20) and its
    time is scaled to 100 iterations (the iterations cost the same).
(e) ``simulate`` of a 128³ two-echo gradient-echo acquisition from a 256³ cochlea (its
    susceptibility field and x, y, z transforms on the device), host in and out.
(f) every other QSM stage at the size of (d), host in and out: Laplacian unwrapping,
    V-SHARP, PDF (50 iterations), LBV (to its default tolerance), TKD, Tikhonov, MEDI (100
    iterations, the CPU's time scaled from ``--cpu-iterations`` like (d)).
(g) Cartesian compressed sensing of a 128³ cochlea at 4× Poisson-disc undersampling,
    L1-wavelet (FISTA) and TV (ADMM), 30 iterations each, host in and out.
(h) gridding of a 3-D radial (kooshball) acquisition onto 128³, 16384 spokes × 256 samples,
    density given (one adjoint NUFFT: FINUFFT on all cores / cuFINUFFT), host in and out;
    skipped when cuFINUFFT is not installed.

Usage: ``python benchmarks/bench_gpu.py [--small]`` (``--small``: 128³, 128×128×64, 64³
from 128³ for the simulation, 64³ compressed sensing).
Without a CUDA device it says so and exits.
"""

import argparse
import time

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core._slabs import core_count
from napari_mrmicro.core.qsm.kernel import forward_field
from napari_mrmicro.core.qsm.tv import invert_tv
from napari_mrmicro.core.recon import reconstruct


def best_seconds(fn, repeat, sync=None):
    """Best wall time of ``repeat`` calls after one warm-up (cuFFT plans, kernel builds)."""
    fn()
    if sync:
        sync()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best


def line(name, cpu, gpu, error=None, unit="ms", target=None):
    scale = 1e3 if unit == "ms" else 1.0
    extra = "" if error is None else f"   max |GPU − CPU| / peak {error:.1e}"
    goal = "" if target is None else f"   (target GPU < {target})"
    print(f"  {name:<34} CPU {cpu * scale:9.2f} {unit}   GPU {gpu * scale:9.3f} {unit}   "
          f"GPU/CPU {gpu / cpu:7.4f}{extra}{goal}")


def relative_error(gpu, cpu):
    return float(np.abs(backend.to_host(gpu) - cpu).max() / max(np.abs(cpu).max(), 1e-30))


def bench_recon(n, cp, sync):
    rng = np.random.default_rng(0)
    k = np.empty((n, n, n), np.complex64)
    k.real = rng.standard_normal(k.shape, dtype=np.float32)
    k.imag = rng.standard_normal(k.shape, dtype=np.float32)
    k_gpu = cp.asarray(k)
    fft_cpu, fft_gpu = backend.fft(np), backend.fft(cp)
    upload = best_seconds(lambda: cp.asarray(k), 3, sync)
    print(f"(a) {n}³ complex64 k-space ({k.nbytes / 2**20:.0f} MiB); host -> GPU copy "
          f"{upload * 1e3:.1f} ms")
    bare_cpu = best_seconds(lambda: fft_cpu.ifftn(k, workers=-1), 3)
    bare_gpu = best_seconds(lambda: fft_gpu.ifftn(k_gpu), 10, sync)
    line("bare ifftn", bare_cpu, bare_gpu)
    magnitude_cpu = reconstruct(k, output="magnitude")
    t_cpu = best_seconds(lambda: reconstruct(k, output="magnitude"), 3)
    t_gpu = best_seconds(lambda: reconstruct(k_gpu, output="magnitude"), 10, sync)
    line("reconstruct -> magnitude", t_cpu, t_gpu,
         relative_error(reconstruct(k_gpu, output="magnitude"), magnitude_cpu), target="5 ms")
    print(f"      ratio to its own bare ifftn: CPU {t_cpu / bare_cpu:.2f}, "
          f"GPU {t_gpu / bare_gpu:.2f}")
    del magnitude_cpu
    image_cpu = reconstruct(k)
    t_cpu = best_seconds(lambda: reconstruct(k), 3)
    t_gpu = best_seconds(lambda: reconstruct(k_gpu), 10, sync)
    line("(b) reconstruct -> complex", t_cpu, t_gpu,
         relative_error(reconstruct(k_gpu), image_cpu))


def qsm_inputs(shape):
    z, y, x = [(np.arange(n) - n / 2).reshape([-1 if i == a else 1 for i in range(3)]) / (n / 2)
               for a, n in enumerate(shape)]
    mask = (z / 0.8) ** 2 + (y / 0.8) ** 2 + (x / 0.8) ** 2 <= 1
    chi = np.zeros(shape, np.float32)
    rng = np.random.default_rng(0)
    for _ in range(12):
        c = rng.uniform(-0.45, 0.45, 3)
        r = rng.uniform(0.05, 0.15)
        chi[((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= r**2] = rng.uniform(-0.3, 0.3)
    return chi, mask


def bench_qsm(shape, cpu_iterations, sync):
    spacing, b0 = (20.0, 20.0, 20.0), (1.0, 0.0, 0.0)
    chi, mask = qsm_inputs(shape)
    field = forward_field(chi, spacing, b0)
    t_cpu = best_seconds(lambda: forward_field(chi, spacing, b0), 3)
    t_gpu = best_seconds(lambda: forward_field(chi, spacing, b0, device="gpu"), 5, sync)
    line(f"(c) forward field {shape}", t_cpu, t_gpu,
         relative_error(forward_field(chi, spacing, b0, device="gpu"), field))
    iterations = 100

    def tv(device, n):
        return invert_tv(field, mask, spacing, b0, max_iter=n, tol=0, device=device)

    short_cpu = tv("cpu", cpu_iterations)
    t0 = time.perf_counter()
    tv("cpu", cpu_iterations)
    t_cpu = (time.perf_counter() - t0) * iterations / cpu_iterations
    t_gpu = best_seconds(lambda: tv("gpu", iterations), 2, sync)
    error = relative_error(tv("gpu", cpu_iterations), short_cpu)
    line(f"(d) TV-ADMM {shape}, {iterations} it", t_cpu, t_gpu, error, unit="s",
         target="1 s")
    print(f"      CPU timed on {cpu_iterations} iterations, scaled to {iterations}; result "
          f"difference after {cpu_iterations} iterations")


def bench_qsm_stages(shape, cpu_iterations, sync):
    from napari_mrmicro.core.qsm.background import lbv, pdf, vsharp
    from napari_mrmicro.core.qsm.medi import invert_medi
    from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
    from napari_mrmicro.core.qsm.tkd import invert_tkd
    from napari_mrmicro.core.qsm.unwrap import unwrap_laplacian, wrap_phase

    spacing, b0 = (20.0, 20.0, 20.0), (1.0, 0.0, 0.0)
    chi, mask = qsm_inputs(shape)
    local = forward_field(chi, spacing, b0)
    z = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None, None]
    total = local + 0.5 * z + 0.3 * z**2  # a smooth background field
    wrapped = wrap_phase(40 * total)
    magnitude = np.where(mask, 1.0 - 0.5 * (chi > 0), 0.0).astype(np.float32)
    stages = [
        ("Laplacian unwrapping", lambda d: unwrap_laplacian(wrapped, spacing, device=d)),
        ("V-SHARP", lambda d: vsharp(total, mask, spacing, device=d)[0]),
        ("PDF, 50 it", lambda d: pdf(total, mask, spacing, b0, max_iter=50, tol=0,
                                     device=d)[0]),
        ("LBV", lambda d: lbv(total, mask, spacing, device=d)[0]),
        ("TKD", lambda d: invert_tkd(local, mask, spacing, b0, device=d)),
        ("Tikhonov", lambda d: invert_tikhonov(local, mask, spacing, b0, device=d)),
    ]
    print("(f) QSM stages", shape)
    for name, stage in stages:
        reference = stage("cpu")
        t_cpu = best_seconds(lambda: stage("cpu"), 1)
        t_gpu = best_seconds(lambda: stage("gpu"), 3, sync)
        line(name, t_cpu, t_gpu, relative_error(stage("gpu"), reference))

    def medi(device, n):
        with backend.use_device(device):
            return invert_medi(local, mask, spacing, b0, magnitude=magnitude, max_iter=n,
                               tol=0)

    iterations = 100
    short_cpu = medi("cpu", cpu_iterations)
    t0 = time.perf_counter()
    medi("cpu", cpu_iterations)
    t_cpu = (time.perf_counter() - t0) * iterations / cpu_iterations
    t_gpu = best_seconds(lambda: medi("gpu", iterations), 1, sync)
    line(f"MEDI, {iterations} it (CPU scaled)", t_cpu, t_gpu,
         relative_error(medi("gpu", cpu_iterations), short_cpu), unit="s")


def bench_cs(n, sync):
    from napari_mrmicro.core import make_specimen
    from napari_mrmicro.core.compressed_sensing import cs_reconstruct
    from napari_mrmicro.core.kspace import centered_fft
    from napari_mrmicro.core.sampling import poisson_disc_mask

    image = make_specimen("cochlea", (n,) * 3, 12800.0 / n).property_map("proton_density")
    k = centered_fft(image.astype(np.complex64))
    mask = poisson_disc_mask(k.shape, 4, calib=max(n // 8, 8), seed=0)
    print(f"(g) compressed sensing {n}³, 4× Poisson disc, 30 iterations")
    for method in ("l1_wavelet", "tv"):
        def run(device):
            return cs_reconstruct(k, mask, method=method, iterations=30, tol=0,
                                  device=device)
        reference = run("cpu")
        t_cpu = best_seconds(lambda: run("cpu"), 1)
        t_gpu = best_seconds(lambda: run("gpu"), 2, sync)
        line(method, t_cpu, t_gpu, relative_error(run("gpu"), reference), unit="s")


def bench_gridding(n, sync):
    from napari_mrmicro.core import Acquisition
    from napari_mrmicro.core.kspace import KSpace
    from napari_mrmicro.core.nufft import reconstruct_noncartesian

    rng = np.random.default_rng(0)
    spokes, samples = 16 * n * n // 128, 2 * n
    directions = rng.standard_normal((spokes, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = (np.arange(samples) - samples / 2) / samples * n
    traj = (directions[:, None, :] * k[None, :, None]).astype(np.float32)
    data = (rng.standard_normal((1, spokes, samples))
            + 1j * rng.standard_normal((1, spokes, samples))).astype(np.complex64)
    density = (k[None, :] ** 2 + 0.25).repeat(spokes, 0).astype(np.float32)
    kspace = KSpace(data, Acquisition(matrix=(n,) * 3, fov_um=(6400.0,) * 3),
                    trajectory=traj, density=density)

    def run(device):
        return reconstruct_noncartesian(kspace, device=device)

    reference = run("cpu")
    t_cpu = best_seconds(lambda: run("cpu"), 1)
    name = f"(h) 3-D radial gridding onto {n}³"
    try:
        t_gpu = best_seconds(lambda: run("gpu"), 2, sync)
    except ImportError as error:
        print(f"  {name:<34} CPU {t_cpu * 1e3:9.2f} ms   GPU skipped: {error}")
        return
    line(name, t_cpu, t_gpu, relative_error(run("gpu"), reference))


def bench_simulate(n, sync):
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    specimen = make_specimen("cochlea", (2 * n,) * 3, 6400.0 / n)
    acquisition = Acquisition(matrix=(n,) * 3, fov_um=(12800.0,) * 3,
                              sequence="gradient_echo", te_ms=(3.0, 6.0))
    cpu = simulate(specimen, acquisition, seed=1)
    t_cpu = best_seconds(lambda: simulate(specimen, acquisition, seed=1), 1)
    t_gpu = best_seconds(lambda: simulate(specimen, acquisition, seed=1, device="gpu"), 2,
                         sync)
    line(f"(e) simulate {n}³ from {2 * n}³", t_cpu, t_gpu,
         relative_error(simulate(specimen, acquisition, seed=1, device="gpu").data, cpu.data),
         unit="s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="128³ and 128×128×64")
    parser.add_argument("--cpu-iterations", type=int, default=20)
    args = parser.parse_args()
    try:
        backend.check_device("gpu")
    except RuntimeError as error:
        print(f"no GPU to compare with: {error}")
        return
    cp = backend.namespace("gpu")
    sync = cp.cuda.Device().synchronize
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"GPU {name}, CuPy {cp.__version__}; CPU: {core_count()} cores")
    bench_recon(128 if args.small else 256, cp, sync)
    bench_qsm((128, 128, 64) if args.small else (256, 256, 128), args.cpu_iterations, sync)
    bench_simulate(64 if args.small else 128, sync)
    bench_qsm_stages((128, 128, 64) if args.small else (256, 256, 128), args.cpu_iterations,
                     sync)
    bench_cs(64 if args.small else 128, sync)
    bench_gridding(64 if args.small else 128, sync)


if __name__ == "__main__":
    main()
