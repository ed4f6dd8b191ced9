"""Dipole inversions (TKD, Tikhonov, TV, MEDI) against a multi-sphere χ phantom."""

import numpy as np
import pytest

from napari_mrmicro.core import memory
from napari_mrmicro.core.qsm import forward_field
from napari_mrmicro.core.qsm.kernel import dipole_kernel_fft_order
from napari_mrmicro.core.qsm.medi import invert_medi, morphology_mask
from napari_mrmicro.core.qsm.metrics import nrmse
from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
from napari_mrmicro.core.qsm.tkd import invert_tkd
from napari_mrmicro.core.qsm.tv import invert_tv

TILT30 = (np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0)
SPHERES = [  # centre (z, y, x) and radius as fractions of the mask radius; χ in ppm
    ((0.3, 0.2, 0.0), 0.25, 0.3), ((-0.35, 0.0, 0.25), 0.2, -0.2),
    ((0.0, -0.4, -0.2), 0.2, 0.5), ((0.05, 0.4, -0.4), 0.2, -0.4),
    ((-0.05, 0.0, -0.05), 0.18, 0.1)]


def spheres_in_mask(shape, spacing):
    """χ (ppm) of five spheres (−0.4 … +0.5 ppm, radii ≥ 2 voxels) in a spherical mask of
    radius 0.4 × the smallest field-of-view extent."""
    z, y, x = [((np.arange(n) - n // 2) * s).reshape([-1 if i == a else 1 for i in range(3)])
               for a, (n, s) in enumerate(zip(shape, spacing))]
    radius = 0.4 * min(n * s for n, s in zip(shape, spacing))
    mask = (z**2 + y**2 + x**2) <= radius**2
    chi = np.zeros(shape, np.float32)
    for (cz, cy, cx), r, value in SPHERES:
        chi[((z - cz * radius) ** 2 + (y - cy * radius) ** 2 + (x - cx * radius) ** 2)
            <= (r * radius) ** 2] = value
    return chi, mask


CASES = {"iso-10um": ((64, 64, 64), (10.0, 10.0, 10.0), (1.0, 0.0, 0.0)),
         "25x25x50um-tilt30": ((40, 80, 80), (50.0, 25.0, 25.0), TILT30)}


@pytest.fixture(scope="module")
def phantoms():
    out = {}
    for name, (shape, spacing, b0) in CASES.items():
        chi, mask = spheres_in_mask(shape, spacing)
        for kernel in ("kspace", "spatial"):
            # padded to twice the size: the field has no periodic wrap-around
            field = forward_field(chi, spacing, b0, pad=shape[0] // 2, kernel=kernel)
            out[name, kernel] = chi, mask, field, spacing, b0
    return out


# NRMSE limits (%) with the measured values in the comments. TKD underestimates χ by
# its truncation (δ = 0.15) and the field outside the mask is missing from its data:
# 25–30 % even with the inversion's own model. TV is near-exact on piecewise-constant
# spheres with its own model (2–4 %). With the image-space (point-dipole) kernel the data
# differ from D(k)·χ near the voxelized sphere surfaces; on the anisotropic grid with an
# oblique B0 the two fields differ by ~50 % NRMSE inside the mask, so TKD reaches ~65 % and
# TV ~29 %, still well apart.
LIMITS = {
    ("iso-10um", "kspace"): {"tkd": 32, "tv": 6},  # measured 25.4, 3.8
    ("iso-10um", "spatial"): {"tkd": 32, "tv": 6},  # 25.6, 2.6
    ("25x25x50um-tilt30", "kspace"): {"tkd": 35, "tv": 6},  # 27.3, 2.6
    ("25x25x50um-tilt30", "spatial"): {"tkd": 80, "tv": 40},  # 68.2, 28.7
}


@pytest.mark.parametrize("case", sorted(LIMITS), ids=lambda c: "-".join(c))
def test_tkd_and_tv_recover_spheres(phantoms, case):
    chi, mask, field, spacing, b0 = phantoms[case]
    tkd = invert_tkd(field, mask, spacing, b0)
    tv = invert_tv(field, mask, spacing, b0)
    errors = {"tkd": nrmse(tkd, chi, mask), "tv": nrmse(tv, chi, mask)}
    for method, limit in LIMITS[case].items():
        assert errors[method] < limit, (method, errors)
    assert errors["tv"] < 0.6 * errors["tkd"]
    # positive χ stays positive: the mean over the +0.5 ppm sphere is positive
    assert tv[(chi == 0.5) & mask].mean() > 0.4 and tkd[(chi == 0.5) & mask].mean() > 0.25
    assert not tkd[~mask].any() and not tv[~mask].any()
    assert tkd.dtype == tv.dtype == np.float32


def test_tkd_is_exact_where_the_kernel_is_above_threshold():
    """A χ whose spectrum vanishes where |D| ≤ δ is recovered exactly by TKD (mask = the
    whole grid): checks the kernel's orientation, anisotropy and B0 tilt end to end."""
    shape, spacing, b0 = (32, 40, 48), (50.0, 25.0, 20.0), TILT30
    dipole = dipole_kernel_fft_order(shape, spacing, b0)
    rng = np.random.default_rng(1)
    spectrum = np.fft.fftn(rng.standard_normal(shape)) * (np.abs(dipole) > 0.15)
    chi = np.fft.ifftn(spectrum).real.astype(np.float32)
    field = forward_field(chi, spacing, b0)
    recovered = invert_tkd(field, np.ones(shape, bool), spacing, b0)
    assert np.abs(recovered - chi).max() < 1e-4 * np.abs(chi).max()


def test_tikhonov_closed_form(phantoms):
    """Gradient-regularized Tikhonov (λ = 1e-2) lands near TKD (measured 30 %, 35 % for
    the identity regularizer), and its spectrum is exactly D·F[f]/(D² + λ|E|²)."""
    chi, mask, field, spacing, b0 = phantoms["iso-10um", "kspace"]
    gradient_error = nrmse(invert_tikhonov(field, mask, spacing, b0), chi, mask)
    identity_error = nrmse(invert_tikhonov(field, mask, spacing, b0, regularizer="identity"),
                           chi, mask)
    assert gradient_error < 35 and identity_error < 40
    # identity regularizer on the whole grid: compare with the formula evaluated by numpy
    ones = np.ones(field.shape, bool)
    out = invert_tikhonov(field, ones, spacing, b0, lam=0.05, regularizer="identity")
    d = dipole_kernel_fft_order(field.shape, spacing, b0)
    expected = np.fft.ifftn(np.fft.fftn(field) * d / (d**2 + 0.05)).real
    assert np.abs(out - expected).max() < 1e-4 * np.abs(expected).max()


def test_medi_edges_and_noise_weighting(phantoms):
    """MEDI's morphology mask frees the sphere edges from the TV penalty (measured 0.5 %
    vs TV 3.8 %), and its noise weighting discounts a noisy half of the field (measured
    NRMSE 27 % weighted vs 124 % unweighted after 60 iterations)."""
    chi, mask, field, spacing, b0 = phantoms["iso-10um", "kspace"]
    magnitude = np.where(mask, 1 - chi, 0).astype(np.float32)
    edges = morphology_mask(magnitude, mask, spacing)
    jumps = np.abs(np.diff(chi, axis=2, append=chi[:, :, :1])) > 0
    assert not edges[2][jumps & mask].any()  # every χ jump along x is an edge
    medi = invert_medi(field, mask, spacing, b0, magnitude=magnitude)
    assert nrmse(medi, chi, mask) < 2.0
    rng = np.random.default_rng(0)
    sigma = np.full(field.shape, 0.002, np.float32)
    sigma[:, :, 32:] = 0.05  # half the specimen 25× noisier
    noisy = field + sigma * rng.standard_normal(field.shape, dtype=np.float32)
    weighted = invert_medi(noisy, mask, spacing, b0, noise_std_ppm=sigma, max_iter=60)
    plain = invert_tv(noisy, mask, spacing, b0, max_iter=60)
    assert nrmse(weighted, chi, mask) < 0.8 * nrmse(plain, chi, mask)


def test_iterations_callback_and_padding(phantoms):
    chi, mask, field, spacing, b0 = phantoms["iso-10um", "kspace"]
    calls = []
    out = invert_tv(field, mask, spacing, b0, max_iter=7, tol=0,
                    callback=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 7) for i in range(1, 8)] and np.isfinite(out).all()
    calls.clear()
    invert_tv(field, mask, spacing, b0, callback=lambda i, n: calls.append(i) or i < 3)
    assert calls == [1, 2, 3]  # returning False cancels with the current iterate
    padded = invert_tkd(field, mask, spacing, b0, pad=(8, 4, 0))
    assert padded.shape == field.shape and nrmse(padded, chi, mask) < 32


def test_bad_input(monkeypatch):
    field = np.zeros((16, 16, 16), np.float32)
    mask = np.ones((16, 16, 16), bool)
    for fn in (invert_tkd, invert_tikhonov, invert_tv, invert_medi):
        with pytest.raises(ValueError, match="mask"):
            fn(field, np.zeros_like(mask), 1.0)
        with pytest.raises(ValueError, match="shape"):
            fn(field, mask[:8], 1.0)
        bad = field.copy()
        bad[3, 3, 3] = np.nan
        with pytest.raises(ValueError, match="local_field_ppm"):
            fn(bad, mask, 1.0)
        with pytest.raises(ValueError, match="b0_direction"):
            fn(field, mask, 1.0, (0, 0, 0))
        with pytest.raises(ValueError, match="pad"):
            fn(field, mask, 1.0, pad=-1)
    with pytest.raises(ValueError, match="threshold"):
        invert_tkd(field, mask, 1.0, threshold=0)
    with pytest.raises(ValueError, match="max_iter"):
        invert_tv(field, mask, 1.0, max_iter=0)
    with pytest.raises(ValueError, match="noise_std_ppm"):
        invert_medi(field, mask, 1.0, noise_std_ppm=np.zeros_like(field))
    with pytest.raises(ValueError, match="magnitude"):
        invert_medi(field, mask, 1.0, magnitude=np.zeros((4, 4, 4)))
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 10**4)
    with pytest.raises(MemoryError, match="invert_tv"):
        invert_tv(field, mask, 1.0)


def test_gradient_pair_is_adjoint_and_matches_its_symbol():
    """⟨∇x, v⟩ = ⟨x, ∇ᵀv⟩, and ∇ᵀ∇ is the Fourier symbol Σ|E_a|² the solvers divide by."""
    from napari_mrmicro.core.qsm.inversion import Grid, gradient, gradient_adjoint
    rng = np.random.default_rng(2)
    grid = Grid((6, 8, 10), (50.0, 25.0, 20.0), (1, 0, 0), 0, "test")
    x = rng.standard_normal(grid.padded).astype(np.float32)
    v = rng.standard_normal((3,) + grid.padded).astype(np.float32)
    steps = grid.steps()
    assert np.sum(gradient(x, steps) * v, dtype=np.float64) == pytest.approx(
        np.sum(x * gradient_adjoint(v, steps), dtype=np.float64), rel=1e-5)
    lhs = gradient_adjoint(gradient(x, steps), steps)
    rhs = grid.irfft(grid.rfft(x) * grid.laplacian_symbol())
    assert np.abs(lhs - rhs).max() < 1e-4 * np.abs(lhs).max()
