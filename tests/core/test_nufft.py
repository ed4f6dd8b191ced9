"""Non-Cartesian k-space: NUFFT against the exact DFT and sigpy, the adjoint (dot-product)
test, Pipe-Menon density, and spiral / radial acquisitions of an analytic Shepp-Logan phantom
(k-space from its continuous Fourier transform at the trajectory, not from our gridding)
against the Cartesian image of the same phantom."""

import numpy as np
import pytest
from scipy.special import j1

pytest.importorskip("finufft")

from napari_mrmicro.core.acquisition import Acquisition  # noqa: E402
from napari_mrmicro.core.compressed_sensing import cs_reconstruct  # noqa: E402
from napari_mrmicro.core.kspace import KSpace, centered_fft, centered_ifft  # noqa: E402
from napari_mrmicro.core.nufft import (nufft_adjoint, nufft_forward,  # noqa: E402
                                       pipe_menon_density, reconstruct_noncartesian)
from napari_mrmicro.core.recon import reconstruct  # noqa: E402

#: Toft's modified Shepp-Logan ellipses: intensity, semi-axes (x, y), centre (x, y), angle
#: (degrees); lengths in units of half the field of view (P. Toft, "The Radon transform",
#: PhD thesis, DTU 1996).
SHEPP_LOGAN = ((1.0, .69, .92, 0, 0, 0), (-.8, .6624, .874, 0, -.0184, 0),
               (-.2, .11, .31, .22, 0, -18), (-.2, .16, .41, -.22, 0, 18),
               (.1, .21, .25, 0, .35, 0), (.1, .046, .046, 0, .1, 0),
               (.1, .046, .046, 0, -.1, 0), (.1, .046, .023, -.08, -.605, 0),
               (.1, .023, .023, 0, -.606, 0), (.1, .023, .046, .06, -.605, 0))


def shepp_logan_kspace(kappa, n, blur=0.0):
    """Samples at ``kappa`` (..., 2) = (κy, κx) cycles/FOV of the phantom on an n × n grid:
    (1/n)·F(κ/n), F the continuous Fourier transform of the ellipses in pixel units (an
    ellipse: ab·J1(2πq)/q), times a Gaussian blur of ``blur`` pixels (a finite-resolution
    object, its spectrum negligible beyond k_max)."""
    ky, kx = kappa[..., 0] / n, kappa[..., 1] / n
    out = np.zeros(ky.shape, complex)
    for rho, a, b, x0, y0, phi in SHEPP_LOGAN:
        a, b, x0, y0 = (v * n / 2 for v in (a, b, x0, -y0))
        c, s = np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))
        q = np.hypot(a * (kx * c + ky * s), b * (ky * c - kx * s))
        safe = np.where(q > 1e-9, q, 1.0)
        f = np.where(q > 1e-9, a * b * j1(2 * np.pi * safe) / safe, np.pi * a * b)
        out += rho * f * np.exp(-2j * np.pi * (kx * x0 + ky * y0))
    out *= np.exp(-2 * np.pi**2 * blur**2 * (kx**2 + ky**2))
    return (out / n).astype(np.complex64)


def cartesian_kappa(n):
    g = np.arange(n) - n // 2
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1)


def spiral(n, interleaves=16, turns=3, samples=1200, alpha=1.3):
    """Variable-density Archimedean spiral, r ∝ t^alpha, out to k_max = n/2."""
    t = np.linspace(0, 1, samples)
    angle = 2 * np.pi * (turns * t[None, :] + np.arange(interleaves)[:, None] / interleaves)
    r = n / 2 * t**alpha
    return np.stack([r * np.sin(angle), r * np.cos(angle)], -1).astype(np.float32)


def radial(n, spokes, samples):
    k = (np.arange(samples) - samples / 2) / samples * n
    theta = np.pi * np.arange(spokes) / spokes
    return np.stack([k * np.sin(theta)[:, None], k * np.cos(theta)[:, None]],
                    -1).astype(np.float32)


def nrmse(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def acquisition_2d(n):
    return Acquisition(matrix=(1, n, n), fov_um=(500.0, 2000.0, 2000.0), nucleus="13C")


N = 64
TRAJECTORIES = {"spiral": spiral(N), "radial": radial(N, 104, 2 * N)}


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (5, 6, 4)])
def test_cartesian_trajectory_is_the_centred_fft(shape):
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    traj = np.stack([g.reshape(1, -1) for g in grid], -1).astype(np.float32)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    axes = tuple(range(len(shape)))
    y = nufft_forward(x, traj)
    assert y.shape == (1, np.prod(shape)) and y.dtype == np.complex64
    np.testing.assert_allclose(y.reshape(shape), centered_fft(x, axes=axes), atol=2e-4)
    np.testing.assert_allclose(nufft_adjoint(y, traj, shape), x, atol=5e-4)
    np.testing.assert_allclose(pipe_menon_density(traj, shape), 1.0, rtol=0.03)


def test_forward_matches_the_exact_dft_off_grid():
    rng = np.random.default_rng(1)
    shape = (6, 9)
    traj = rng.uniform(-3, 3, (2, 5, 2)).astype(np.float32)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    r = [np.arange(n) - n // 2 for n in shape]
    phase = (traj[..., 0, None, None] * r[0][:, None] / shape[0]
             + traj[..., 1, None, None] * r[1][None, :] / shape[1])
    exact = (x * np.exp(-2j * np.pi * phase)).sum((-2, -1)) / np.sqrt(np.prod(shape))
    np.testing.assert_allclose(nufft_forward(x, traj), exact, atol=1e-4)


@pytest.mark.parametrize("shape", [(16, 12), (6, 8, 5)])
def test_adjoint_dot_product(shape):
    rng = np.random.default_rng(2)
    traj = rng.uniform(-0.5, 0.5, (7, 11, len(shape))) * np.asarray(shape)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    y = rng.standard_normal((7, 11)) + 1j * rng.standard_normal((7, 11))
    lhs = np.vdot(y, nufft_forward(x, traj))
    rhs = np.vdot(nufft_adjoint(y, traj, shape), x)
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)


def test_adjoint_matches_sigpy():
    sigpy = pytest.importorskip("sigpy")
    traj = TRAJECTORIES["spiral"]
    y = shepp_logan_kspace(traj, N)
    ours = nufft_adjoint(y, traj, (N, N))
    # sigpy: same centred, orthonormal convention, coordinates in cycles per FOV.
    peer = sigpy.nufft_adjoint(y, traj, oshape=(N, N))
    assert nrmse(ours, peer) < 0.01


@pytest.mark.parametrize("name", ["spiral", "radial"])
def test_acquisition_of_a_phantom_matches_the_cartesian_image(name):
    traj = TRAJECTORIES[name]
    kappa = cartesian_kappa(N)
    acquisition = acquisition_2d(N)
    # A finite-resolution object (0.7-pixel blur): its spectrum fits inside k_max.
    cartesian = centered_ifft(shepp_logan_kspace(kappa, N, blur=0.7), axes=(0, 1))
    kspace = KSpace(shepp_logan_kspace(traj, N, blur=0.7)[None], acquisition, trajectory=traj)
    image = reconstruct(kspace)
    assert image.shape == (1, 1, N, N) and image.dtype == np.complex64
    assert nrmse(image[0, 0], cartesian) < 0.05  # measured 0.029 spiral, 0.024 radial
    # The sharp-edged phantom: against the Cartesian image of the same k-space disk.
    sharp = shepp_logan_kspace(kappa, N)
    disk = centered_ifft(np.where((kappa**2).sum(-1) <= (N / 2) ** 2, sharp, 0), axes=(0, 1))
    kspace = KSpace(shepp_logan_kspace(traj, N)[None], acquisition, trajectory=traj)
    assert nrmse(reconstruct_noncartesian(kspace)[0, 0], disk) < 0.10  # measured 0.055, 0.062


def test_3d_radial_kooshball():
    n = 16
    rng = np.random.default_rng(3)
    directions = rng.standard_normal((900, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = (np.arange(2 * n) - n) / 2
    traj = (directions[:, None, :] * k[None, :, None]).astype(np.float32)

    def ball_kspace(kappa):  # a ball of radius 5 pixels off centre, blurred by 1 pixel
        q = np.linalg.norm(kappa, axis=-1) / n
        safe = np.where(q > 1e-9, q, 1.0)
        a = 2 * np.pi * 5 * safe
        f = np.where(q > 1e-9, (np.sin(a) - a * np.cos(a)) / (2 * np.pi**2 * safe**3),
                     4 / 3 * np.pi * 5**3)
        shift = np.exp(-2j * np.pi * kappa @ np.array([1.0, -2.0, 0.5]) / n)
        return (f * shift * np.exp(-2 * np.pi**2 * q**2) / n**1.5).astype(np.complex64)

    g = np.arange(n) - n // 2
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1)
    cartesian = centered_ifft(ball_kspace(grid), axes=(0, 1, 2))
    acquisition = Acquisition(matrix=(n, n, n), fov_um=(800.0,) * 3)
    image = reconstruct(KSpace(ball_kspace(traj)[None], acquisition, trajectory=traj))
    assert image.shape == (1, n, n, n)
    assert nrmse(image[0], cartesian) < 0.10


def test_echoes_coils_zero_fill_window_and_given_density():
    traj = TRAJECTORIES["radial"]
    y = shepp_logan_kspace(traj, N, blur=0.7)
    maps = np.stack([np.full((1, N, N), 0.8, np.complex64),
                     np.full((1, N, N), 0.6j, np.complex64)])
    data = np.stack([maps[0, 0, 0, 0] * np.stack([y, 2 * y]),
                     maps[1, 0, 0, 0] * np.stack([y, 2 * y])])  # (coil, echo, spokes, samples)
    kspace = KSpace(data, acquisition_2d(N), coil_axis=0, trajectory=traj)
    single = reconstruct(KSpace(y[None], acquisition_2d(N), trajectory=traj))
    rss = reconstruct(kspace)
    assert rss.shape == (2, 1, N, N) and rss.dtype == np.float32
    np.testing.assert_allclose(rss[1], 2 * np.abs(single[0]), rtol=1e-3, atol=1e-4)
    combined = reconstruct(kspace, coil_maps=maps)
    assert nrmse(combined[0], single[0]) < 1e-3
    filled = reconstruct(KSpace(y[None], acquisition_2d(N), trajectory=traj), zero_fill=2)
    assert filled.shape == (1, 1, 2 * N, 2 * N)
    assert nrmse(filled[0, 0, ::2, ::2], single[0, 0]) < 0.02  # same FOV, same intensities
    windowed = reconstruct(KSpace(y[None], acquisition_2d(N), trajectory=traj), window="hann")
    assert np.abs(windowed).max() < np.abs(single).max()
    density = pipe_menon_density(traj, (N, N))
    given = KSpace(y[None], acquisition_2d(N), trajectory=traj, density=density)
    np.testing.assert_allclose(reconstruct(given), single, atol=1e-5)
    assert reconstruct(given, output="magnitude").dtype == np.float32


def test_refusals():
    acquisition = acquisition_2d(N)
    traj = TRAJECTORIES["spiral"]
    with pytest.raises(ValueError, match="trajectory is missing"):
        reconstruct_noncartesian(KSpace(np.zeros((1, 16, 1200), np.complex64), acquisition))
    with pytest.raises(ValueError, match=r"do not end in the trajectory's"):
        reconstruct(KSpace(np.zeros((1, 16, 1000), np.complex64), acquisition, trajectory=traj))
    with pytest.raises(ValueError, match="cycles per field of view"):
        reconstruct(KSpace(np.zeros((1, 16, 1200), np.complex64), acquisition,
                           trajectory=traj * 10))
    with pytest.raises(ValueError, match="matrix z = 1"):
        reconstruct(KSpace(np.zeros((1, 16, 1200), np.complex64),
                           Acquisition(matrix=(4, N, N), fov_um=(1.0, 1.0, 1.0)),
                           trajectory=traj))
    with pytest.raises(ValueError, match="partial_fourier do not apply"):
        reconstruct(KSpace(np.zeros((1, 16, 1200), np.complex64), acquisition,
                           trajectory=traj), partial_fourier={"axis": -1})
    with pytest.raises(ValueError, match="density must be"):
        reconstruct(KSpace(np.zeros((1, 16, 1200), np.complex64), acquisition,
                           trajectory=traj, density=np.ones((16, 3))))


@pytest.mark.parametrize("method", ["l1_wavelet", "tv"])
def test_compressed_sensing_of_an_undersampled_spiral(method):
    traj = spiral(N, interleaves=6, turns=3, samples=1500)  # 2.7x below Nyquist at the edge
    kappa = cartesian_kappa(N)
    truth = centered_ifft(shepp_logan_kspace(kappa, N, blur=0.5), axes=(0, 1))
    kspace = KSpace(shepp_logan_kspace(traj, N, blur=0.5)[None], acquisition_2d(N),
                    trajectory=traj)
    gridded = reconstruct(kspace)[0, 0]
    options = ({"rho": 0.5, "iterations": 20, "cg_iterations": 4} if method == "tv"
               else {"iterations": 40})
    image = cs_reconstruct(kspace, method=method, lam=0.01, **options)
    assert image.shape == (1, 1, N, N) and image.dtype == np.complex64
    # measured: gridding 0.54, L1-wavelet 0.37, TV 0.35
    assert nrmse(image[0, 0], truth) < 0.75 * nrmse(gridded, truth)
    with pytest.raises(ValueError, match="sampling mask .* do not apply to non-Cartesian"):
        cs_reconstruct(kspace, mask=np.ones((1, N, N), bool))


def test_memory_is_checked_first(monkeypatch):
    import napari_mrmicro.core.memory as memory
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**16)
    traj = TRAJECTORIES["spiral"]
    kspace = KSpace(np.zeros((1,) + traj.shape[:2], np.complex64), acquisition_2d(N),
                    trajectory=traj)
    with pytest.raises(MemoryError, match="gridding 1 non-Cartesian volume"):
        reconstruct(kspace)
    with pytest.raises(MemoryError, match="density weights of a trajectory"):
        pipe_menon_density(traj, (N, N))
