"""Non-Cartesian speed, as ratios to a Cartesian FFT of the same grid timed in the same run.

(a) 2-D spiral onto N × N (N = 256 by default: 32 interleaves × 4096 samples, about twice
    the grid's points): the adjoint NUFFT, the forward NUFFT, Pipe-Menon density (20
    iterations) and the full gridding recon (density given, and estimated), each against
    ``centered_ifft`` of N × N Cartesian k-space.
(b) 3-D radial (kooshball) onto M³ (M = 64: π/2·M² projections of 2M samples): adjoint and
    forward NUFFT and the gridding recon with density given, against ``centered_ifft`` of M³.

Usage: ``python benchmarks/bench_nufft.py [N] [M]``.
"""

import sys

import numpy as np

from _timing import interleaved_best

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.kspace import KSpace, centered_ifft
from napari_mrmicro.core.nufft import (nufft_adjoint, nufft_forward, pipe_menon_density,
                                       reconstruct_noncartesian)


def random_complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def report(label, names, times):
    base = times[0]
    print(f"{label}: Cartesian centered_ifft {base * 1e3:.1f} ms")
    for name, t in zip(names, times[1:]):
        print(f"    {name:34s} {t * 1e3:9.1f} ms   ratio {t / base:7.1f}")


def bench_spiral(n):
    interleaves, samples = 32, 4096
    t = np.linspace(0, 1, samples)
    angle = 2 * np.pi * (n / 8 * t[None, :] ** 1.2
                         + np.arange(interleaves)[:, None] / interleaves)
    traj = np.stack([n / 2 * t * np.sin(angle), n / 2 * t * np.cos(angle)],
                    -1).astype(np.float32)
    data = random_complex((1, interleaves, samples))
    image = random_complex((n, n))
    cartesian = random_complex((n, n))
    acquisition = Acquisition(matrix=(1, n, n), fov_um=(100.0, 1000.0, 1000.0))
    density = pipe_menon_density(traj, (n, n))
    given = KSpace(data, acquisition, trajectory=traj, density=density)
    estimated = KSpace(data, acquisition, trajectory=traj)
    names = ["adjoint NUFFT", "forward NUFFT", "Pipe-Menon density (20 it.)",
             "gridding recon, density given", "gridding recon, density estimated"]
    times = interleaved_best([
        lambda: centered_ifft(cartesian, axes=(0, 1)),
        lambda: nufft_adjoint(data, traj, (n, n)),
        lambda: nufft_forward(image, traj),
        lambda: pipe_menon_density(traj, (n, n)),
        lambda: reconstruct_noncartesian(given),
        lambda: reconstruct_noncartesian(estimated),
    ])
    report(f"(a) 2-D spiral {interleaves} x {samples} onto {n}²", names, times)


def bench_radial_3d(m):
    projections, samples = int(np.pi / 2 * m * m), 2 * m
    rng = np.random.default_rng(1)
    directions = rng.standard_normal((projections, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = (np.arange(samples) - m) / 2
    traj = (directions[:, None, :] * k[None, :, None]).astype(np.float32)
    data = random_complex((1, projections, samples))
    image = random_complex((m, m, m))
    cartesian = random_complex((m, m, m))
    density = np.broadcast_to(np.maximum(np.abs(k), 0.25) ** 2, traj.shape[:2]).astype(
        np.float32) * np.float32(4 * np.pi * 0.5 / projections)
    given = KSpace(data, Acquisition(matrix=(m, m, m), fov_um=(1000.0,) * 3),
                   trajectory=traj, density=density)
    names = ["adjoint NUFFT", "forward NUFFT", "gridding recon, density given"]
    times = interleaved_best([
        lambda: centered_ifft(cartesian, axes=(0, 1, 2)),
        lambda: nufft_adjoint(data, traj, (m, m, m)),
        lambda: nufft_forward(image, traj),
        lambda: reconstruct_noncartesian(given),
    ])
    report(f"(b) 3-D radial {projections} x {samples} onto {m}³", names, times)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    bench_spiral(n)
    bench_radial_3d(m)
