"""Background field removal against fields of known sources (forward_field)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mrmicro.core.qsm import forward_field
from napari_mrmicro.core.qsm.background import (
    default_vsharp_radii_um, lbv, pdf, sharp, smv_kernel, vsharp)

TILT30 = (np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0)


def coordinates(shape, spacing):
    return [((np.arange(n) - n // 2) * s).reshape([-1 if i == a else 1 for i in range(3)])
            for a, (n, s) in enumerate(zip(shape, spacing))]


def specimen_in_air(shape, spacing, b0):
    """A spherical specimen (mask, radius a quarter of the field of view) with air
    (χ = −9.4 ppm) above it and two spheres (+3, −2 ppm) beside it, each a few voxels
    outside the mask; fields with the image-space kernel (no model shared with the
    methods) on a grid padded to twice the size. Returns (background field, mask)."""
    z, y, x = coordinates(shape, spacing)
    ext = [n * s for n, s in zip(shape, spacing)]
    mask = (z**2 + y**2 + x**2) <= (0.25 * min(ext)) ** 2
    chi = np.zeros(shape, np.float32)
    chi[np.broadcast_to(z > 0.35 * ext[0], shape)] = -9.4
    chi[((z + 0.1 * ext[0]) ** 2 + (y - 0.39 * ext[1]) ** 2 + x**2) <= (0.07 * min(ext)) ** 2] = 3
    chi[(z**2 + (y + 0.2 * ext[1]) ** 2 + (x + 0.35 * ext[2]) ** 2)
        <= (0.07 * min(ext)) ** 2] = -2
    assert not chi[mask].any()
    field = forward_field(chi, spacing, b0, pad=shape[0] // 2, kernel="spatial")
    return field, mask


def amplitude(field, mask):
    inside = field[mask]
    return np.abs(inside - inside.mean()).max()


CASES = [((64, 64, 64), (10.0, 10.0, 10.0), (1.0, 0.0, 0.0)),
         ((48, 96, 96), (50.0, 25.0, 25.0), TILT30)]


@pytest.fixture(scope="module", params=CASES, ids=["iso-10um", "25x25x50um-tilt30"])
def background(request):
    shape, spacing, b0 = request.param
    field, mask = specimen_in_air(shape, spacing, b0)
    return field, mask, spacing, b0


@pytest.mark.parametrize("method", ["vsharp", "pdf", "lbv"])
def test_background_removed_below_5_percent(background, method):
    """Issue: the field of sources outside the mask drops below 5 % of its amplitude inside
    (largest deviation from the mean, where the remover says the local field is valid; the
    mean is undetermined). Measured: V-SHARP 0.02 / 0.13 %, LBV 0.013 / 0.11 % (exact up
    to discretisation; 0.04 / 0.11 % with the 7-point stencil alone), PDF 3.4 / 3.5 % at
    its default tol and iterations (CG stops before the boundary voxels are fitted exactly)."""
    field, mask, spacing, b0 = background
    if method == "vsharp":
        local, valid = vsharp(field, mask, spacing)
    elif method == "pdf":
        local, valid = pdf(field, mask, spacing, b0)
    else:
        local, valid = lbv(field, mask, spacing)
    assert valid.sum() > 0.5 * mask.sum() and not (valid & ~mask).any()
    assert not local[~valid].any()
    limit = 0.05 if method == "pdf" else 0.005
    assert amplitude(local, valid) < limit * amplitude(field, valid)


def test_pdf_starts_from_earlier_sources(background):
    """A warm start from the sources of a fit continues it: the same local field in a few
    iterations; sources of another grid are refused."""
    field, mask, spacing, b0 = background
    counts = []

    def count(iteration, total):
        counts.append(iteration)

    local, _, sources = pdf(field, mask, spacing, b0, return_sources=True, callback=count)
    cold = len(counts)
    counts.clear()
    again, _ = pdf(field, mask, spacing, b0, start=sources, callback=count)
    assert len(counts) < 0.2 * cold, (len(counts), cold)
    scale = amplitude(field, mask)
    assert np.abs(again - local)[mask].max() < 0.01 * scale
    with pytest.raises(ValueError, match="start has shape"):
        pdf(field, mask, spacing, b0, start=sources[1:])
    sources[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="start has NaN"):
        pdf(field, mask, spacing, b0, start=sources)


def test_local_field_is_kept():
    """The field of a sphere (χ = 1 ppm, radius 4 voxels) at the centre of a mask of radius
    26 voxels passes through: largest error (mean removed) in the valid mask, relative to
    the sphere's peak field. Measured: SHARP (r = 8 voxels) 0.06 %, LBV 0.6 %, V-SHARP 3.5 %
    (the largest kernel's truncated deconvolution applied to data filtered by smaller
    kernels near the boundary), PDF 3.6 % (fitted outside sources absorb some of the
    sphere's far field); RMS errors are 0.02–0.6 %."""
    shape, spacing = (64, 64, 64), (10.0, 10.0, 10.0)
    z, y, x = coordinates(shape, spacing)
    r2 = z**2 + y**2 + x**2
    mask = r2 <= 26**2 * 100
    chi = (r2 <= 4**2 * 100).astype(np.float32)
    field = forward_field(chi, spacing, (1, 0, 0), pad=32, kernel="spatial")
    peak = np.abs(field).max()
    for method, limit in (("vsharp", 0.05), ("sharp", 0.005), ("pdf", 0.06), ("lbv", 0.01)):
        if method == "vsharp":
            local, valid = vsharp(field, mask, spacing)
        elif method == "sharp":
            local, valid = sharp(field, mask, spacing, radius_um=80.0)
        elif method == "pdf":
            local, valid = pdf(field, mask, spacing)
        else:
            local, valid = lbv(field, mask, spacing)
        error = (local - field)[valid]
        assert np.abs(error - error.mean()).max() < limit * peak, method


def _dipole_outside_a_ball(n):
    """The field of a point dipole (along z) 0.15 mm outside a ball of radius 0.6 mm, on
    an n³ grid of 2 mm: harmonic inside the ball, and curving most at its edge, as the
    field of air next to a specimen does. Returns (field, ball, spacing_um, deep)."""
    h = 2.0 / n
    c = (np.arange(n) - n / 2 + 0.5) * h
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r2 = z**2 + y**2 + x**2
    d2 = (z - 0.75) ** 2 + y**2 + x**2
    field = ((3 * (z - 0.75) ** 2 / d2 - 1) / d2**1.5 * 1e-3).astype(np.float32)
    return field, r2 <= 0.6**2, 1000 * h, r2 <= 0.45**2


def test_lbv_is_fourth_order_for_a_harmonic_background():
    """LBV's fourth-order stencil: the field of a dipole outside the mask is removed with
    an error that falls as h⁴ (7-point stencil: h², 8.3 % and 2.1 % of the background
    at 32³ and 64³; measured here 2.4 % and 0.07 %, 35-fold: the 7-point boundary rows
    dominate at 32³)."""
    errors = []
    for n in (32, 64):
        field, ball, spacing, deep = _dipole_outside_a_ball(n)
        local, valid = lbv(field, ball, spacing, tol=1e-7)
        assert valid.sum() == ball.sum() - (ball & ~ndi.binary_erosion(ball)).sum()
        errors.append(amplitude(local, valid & deep) / amplitude(field, valid & deep))
    assert errors[1] < 1e-3 and errors[0] / errors[1] > 16, errors


def test_vsharp_defaults_and_kernel():
    assert np.allclose(default_vsharp_radii_um((10, 10, 10)), [180, 160, 140, 120, 100, 80, 60,
                                                               40, 20])
    assert np.allclose(default_vsharp_radii_um((25, 25, 50)), [450, 350, 250, 150, 100])
    # 50 µm voxels along z: a ball of 100 µm spans ±2 voxels in z and ±4 in y and x
    kernel = smv_kernel((16, 16, 16), (50, 25, 25), 100.0)
    assert kernel.sum() == pytest.approx(1, abs=1e-6)
    support = np.fft.fftshift(kernel > 0)
    assert np.ptp(np.flatnonzero(support.any(axis=(1, 2)))) == 4
    assert np.ptp(np.flatnonzero(support.any(axis=(0, 1)))) == 8


def test_eroded_mask_is_the_ball_erosion():
    """V-SHARP's mask is the mask eroded by the smallest radius (ball in µm)."""
    from scipy.ndimage import binary_erosion
    shape, spacing = (40, 40, 40), (20.0, 10.0, 10.0)
    z, y, x = coordinates(shape, spacing)
    mask = (z / 300) ** 2 + (y / 150) ** 2 + (x / 170) ** 2 <= 1
    _, eroded = vsharp(np.zeros(shape), mask, spacing, radii_um=[40.0])
    ball = np.fft.fftshift(smv_kernel((9, 9, 9), spacing, 40.0) > 0)
    assert np.array_equal(eroded, binary_erosion(mask, ball))


def test_callback_cancels_pdf_and_lbv():
    field, mask = specimen_in_air((32, 32, 32), (1.0, 1.0, 1.0), (1, 0, 0))
    for fn in (lambda cb: pdf(field, mask, 1.0, callback=cb),
               lambda cb: lbv(field, mask, 1.0, tol=0, callback=cb)):
        calls = []
        local, _ = fn(lambda i, n: calls.append((i, n)) or i < 3)
        assert [c[0] for c in calls] == [1, 2, 3] and np.isfinite(local).all()


def test_bad_input():
    field = np.zeros((16, 16, 16), np.float32)
    mask = np.zeros((16, 16, 16), bool)
    mask[4:12, 4:12, 4:12] = True
    with pytest.raises(ValueError, match="mask"):
        vsharp(field, np.zeros_like(mask), 1.0)
    with pytest.raises(ValueError, match="shape"):
        vsharp(field, mask[:8], 1.0)
    bad = field.copy()
    bad[0, 0, 0] = np.nan
    for fn in (vsharp, pdf, lbv):
        with pytest.raises(ValueError, match="total_field_ppm"):
            fn(bad, mask, 1.0)
    with pytest.raises(ValueError, match="radii_um"):
        vsharp(field, mask, (2.0, 1.0, 1.0), radii_um=[1.5])
    with pytest.raises(ValueError, match="too thin"):
        vsharp(field, mask, 1.0, radii_um=[6.0])
    with pytest.raises(ValueError, match="spacing_um"):
        lbv(field, mask, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="weight"):
        pdf(field, mask, 1.0, weight=np.zeros((16, 16, 16)))
