"""Diffusion tensor and ADC fits against the signal equation, DIPY's fits, the imaging
gradients' b-matrix and bad input."""

import numpy as np
import pytest

from napari_mrmicro.core.diffusion_tensor import (ELEMENTS, _eigen, b_matrices,
                                                  diffusion_scheme, fit_diffusion, fit_record,
                                                  full_tensor, scheme_summary,
                                                  tensor_determined)

rng0 = np.random.default_rng(0)
DIRECTIONS = rng0.normal(size=(30, 3))
DIRECTIONS /= np.linalg.norm(DIRECTIONS, axis=1)[:, None]
B_VALUES = np.r_[0.0, 0.0, np.full(30, 1500.0)]
VECTORS = np.r_[np.zeros((2, 3)), DIRECTIONS]
SHAPE = (4, 10, 12)


def tensors(shape=SHAPE, seed=1):
    """Random prolate-to-oblate tensors, µm²/ms, (..., 3, 3), and their eigenvalues."""
    rng = np.random.default_rng(seed)
    lam = np.stack([rng.uniform(1.2, 2.2, shape), rng.uniform(0.3, 0.9, shape),
                    rng.uniform(0.1, 0.3, shape)])
    rotation = np.linalg.qr(rng.normal(size=shape + (3, 3)))[0]
    return np.einsum("...ij,j...,...kj->...ik", rotation, lam, rotation), lam, rotation


def signal(b, d, s0=1000.0):
    return s0 * np.exp(-1e-3 * np.einsum("nij,...ij->n...", b, d))


def rician(clean, sigma, seed=2):
    rng = np.random.default_rng(seed)
    return np.abs(clean + rng.normal(0, sigma, clean.shape)
                  + 1j * rng.normal(0, sigma, clean.shape)).astype(np.float32)


def imaging_terms(points, seed=3):
    """b-matrices of the imaging gradients: positive definite, 20-60 s/mm², not along any
    diffusion direction (REFERENCES.md: 10-250 s/mm² at microscopy resolutions)."""
    a = np.random.default_rng(seed).normal(size=(points, 3, 3))
    m = a @ np.swapaxes(a, 1, 2)
    return m * (40.0 / np.trace(m, axis1=1, axis2=2))[:, None, None]


@pytest.mark.parametrize("method", ["ols", "wls", "nlls"])
def test_noise_free_tensors_are_recovered_with_full_b_matrices(method):
    d, lam, rotation = tensors()
    b = b_matrices(B_VALUES, VECTORS) + imaging_terms(len(B_VALUES))
    fit = fit_diffusion(signal(b, d).astype(np.float32), b, method=method,
                        mask=np.ones(SHAPE, bool))
    assert fit.fitted.all() and fit.negative_eigenvalues == 0
    np.testing.assert_allclose(full_tensor(fit.tensor), d, atol=2e-5)
    np.testing.assert_allclose(fit.eigenvalues, lam, atol=2e-5)
    np.testing.assert_allclose(fit.s0, 1000.0, rtol=1e-5)
    # the principal direction is the largest eigenvalue's axis, up to its sign
    v1 = np.moveaxis(rotation[..., :, 0], -1, 0)
    np.testing.assert_allclose(np.abs(np.sum(fit.principal * v1, axis=0)), 1, atol=1e-5)
    np.testing.assert_allclose(fit.md(), lam.mean(axis=0), atol=2e-5)
    np.testing.assert_allclose(fit.ad(), lam[0], atol=2e-5)
    np.testing.assert_allclose(fit.rd(), lam[1:].mean(axis=0), atol=2e-5)


def test_ignoring_the_imaging_gradients_biases_the_tensor():
    """The b-matrix a scanner states holds the imaging gradients' weighting (here 40 s/mm²
    of 1500, in directions of their own): fitted with b·ggᵀ alone, the tensor is off."""
    d, lam, _ = tensors()
    nominal = b_matrices(B_VALUES, VECTORS)
    full = nominal + imaging_terms(len(B_VALUES))
    images = signal(full, d).astype(np.float32)
    mask = np.ones(SHAPE, bool)
    exact = fit_diffusion(images, full, mask=mask).eigenvalues
    biased = fit_diffusion(images, nominal, mask=mask).eigenvalues
    np.testing.assert_allclose(exact, lam, atol=2e-5)
    assert np.abs(biased - lam).max() > 0.02  # µm²/ms


@pytest.mark.parametrize("method", ["ols", "wls", "nlls"])
def test_noisy_fits_agree_with_dipy(method):
    dipy_dti = pytest.importorskip("dipy.reconst.dti")
    from dipy.core.gradients import gradient_table

    d, _, _ = tensors(seed=4)
    noisy = rician(signal(b_matrices(B_VALUES, VECTORS), d), 20.0)
    mask = np.ones(SHAPE, bool)
    ours = fit_diffusion(noisy, b_matrices(B_VALUES, VECTORS), method=method, mask=mask)
    table = gradient_table(B_VALUES, bvecs=VECTORS)
    peer = dipy_dti.TensorModel(table, fit_method=method.upper()).fit(
        np.moveaxis(noisy, 0, -1), mask=mask)
    tolerance = 1e-5 if method == "nlls" else 1e-6
    np.testing.assert_allclose(full_tensor(ours.tensor), peer.quadratic_form * 1e3,
                               atol=tolerance)  # DIPY's mm²/s
    np.testing.assert_allclose(ours.fa(), peer.fa, atol=tolerance)
    np.testing.assert_allclose(np.abs(np.sum(ours.principal * np.moveaxis(
        peer.evecs[..., 0], -1, 0), axis=0))[ours.fa() > 0.2], 1, atol=1e-4)


def test_fa_of_known_eigenvalues_and_isotropic_media():
    lam = np.array([1.7, 0.3, 0.3])
    expected = np.sqrt(1.5 * np.sum((lam - lam.mean()) ** 2) / np.sum(lam ** 2))
    d = np.zeros((3, 1, 2, 3, 3))
    d[0, 0, 0] = np.diag(lam)
    d[0, 0, 1] = np.diag([1.0, 1.0, 1.0])
    b = b_matrices(B_VALUES, VECTORS)
    fit = fit_diffusion(signal(b, d[0]).astype(np.float32)[:, None], b,
                        mask=np.ones((1, 1, 2), bool))
    np.testing.assert_allclose(fit.fa()[0, 0], [expected, 0.0], atol=1e-5)
    assert expected == pytest.approx(0.8, abs=0.01)  # a white-matter-like tensor


def test_direction_colours_follow_the_world_rotation():
    """A fibre along array axis x (z, y, x) of a layer turned so that x runs along world
    A: green, scaled by FA; the identity puts it on R: red."""
    d = np.broadcast_to(np.diag([0.2, 0.2, 2.0]), (1, 2, 2, 3, 3))
    b = b_matrices(B_VALUES, VECTORS)
    fit = fit_diffusion(signal(b, d).astype(np.float32), b, mask=np.ones((1, 2, 2), bool))
    fa = fit.fa()[0, 0, 0]
    np.testing.assert_allclose(fit.direction_colors()[0, 0, 0], [fa, 0, 0], atol=1e-5)
    turn = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # array x -> world A
    np.testing.assert_allclose(fit.direction_colors(turn)[0, 0, 0], [0, fa, 0], atol=1e-5)
    with pytest.raises(ValueError, match="rotation"):
        fit.direction_colors(np.diag([2.0, 1, 1]))


def test_adc_from_b_values_along_one_direction():
    b_values = np.array([0.0, 250.0, 500.0, 1000.0, 2000.0])
    b = b_matrices(b_values, np.tile([0.0, 0.0, 1.0], (5, 1)))
    adc = np.random.default_rng(5).uniform(0.2, 2.5, SHAPE)
    images = 800.0 * np.exp(-1e-3 * b_values[:, None, None, None] * adc)
    fit = fit_diffusion(images.astype(np.float32), b, model="adc", mask=np.ones(SHAPE, bool))
    np.testing.assert_allclose(fit.md(), adc, rtol=1e-5)
    np.testing.assert_allclose(fit.s0, 800.0, rtol=1e-5)
    assert fit.tensor is None and fit.principal is None
    with pytest.raises(ValueError, match="tensor model"):
        fit.fa()
    # one direction cannot give a tensor: refused with the way out
    with pytest.raises(ValueError, match="determine only .* model='adc'"):
        fit_diffusion(images.astype(np.float32), b, mask=np.ones(SHAPE, bool))


def test_default_mask_from_the_background_and_a_zero_point_left_out():
    d, _, _ = tensors(shape=(8, 24, 24), seed=6)
    b = b_matrices(B_VALUES, VECTORS)
    specimen = np.zeros((8, 24, 24), bool)
    specimen[2:6, 6:18, 6:18] = True
    clean = signal(b, d) * specimen
    noisy = rician(clean, 5.0)
    noisy[5, 3, 10, 10] = 0.0  # a dropped point (no logarithm): left out, not fatal
    fit = fit_diffusion(noisy, b)
    assert fit.noise_sigma == pytest.approx(5.0, rel=0.15)
    assert fit.fitted[specimen].mean() > 0.99 and not fit.fitted[~specimen].any()
    assert fit.md()[3, 10, 10] == pytest.approx(np.trace(d[3, 10, 10]) / 3, rel=0.05)
    record = fit_record(fit, "wls", b)
    assert record["fitted_voxels"] == int(fit.fitted.sum())
    np.testing.assert_allclose(record["b_values_s_per_mm2"][:3], [0.0, 0.0, 1500.0])


def test_bad_input_is_refused_by_name():
    b = b_matrices(B_VALUES, VECTORS)
    good = np.ones((len(b), 2, 3, 3), np.float32)
    mask = np.ones((2, 3, 3), bool)
    cases = [
        (dict(images=good * np.nan, b_matrix=b), "NaN"),
        (dict(images=-good, b_matrix=b), "negative"),
        (dict(images=good.astype(np.complex64), b_matrix=b), "real"),
        (dict(images=good, b_matrix=b[:-1]), r"\(32, 3, 3\)"),
        (dict(images=good, b_matrix=-b), "negative eigenvalues"),
        (dict(images=good, b_matrix=b + np.triu(np.ones(3), 1)), "symmetric"),
        (dict(images=good, b_matrix=b, mask=np.zeros((2, 3, 3), bool)), "empty"),
        (dict(images=good, b_matrix=b, mask=np.ones((3, 3), bool)), "does not match"),
        (dict(images=good, b_matrix=b, model="kurtosis"), "model"),
        (dict(images=good, b_matrix=b, method="ml", mask=mask), "method"),
        (dict(images=good, b_matrix=b, noise_sigma=-1.0), "noise_sigma"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            fit_diffusion(**kwargs)
    with pytest.raises(ValueError, match="zero direction"):
        b_matrices([1000.0], [[0.0, 0.0, 0.0]])


def test_cancel_and_progress():
    d, _, _ = tensors()
    b = b_matrices(B_VALUES, VECTORS)
    images = signal(b, d).astype(np.float32)
    seen = []
    fit_diffusion(images, b, mask=np.ones(SHAPE, bool), callback=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0)
    with pytest.raises(InterruptedError):
        fit_diffusion(images, b, mask=np.ones(SHAPE, bool), callback=lambda f: False)


def test_closed_form_eigen_decomposition_matches_lapack():
    d, _, _ = tensors(shape=(2000,), seed=8)
    d[:3] = [np.eye(3), np.zeros((3, 3)), np.diag([2.0, 1.0, 1.0])]  # degenerate ones
    lam, vector = _eigen(np.stack([d[:, i, j] for i, j in ELEMENTS], axis=1))
    expected, vectors = np.linalg.eigh(d)
    np.testing.assert_allclose(lam, expected[:, ::-1], atol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(vector[2:] * vectors[2:, :, -1], axis=1)), 1,
                               atol=1e-10)  # the isotropic and zero ones have no direction
    np.testing.assert_allclose(np.linalg.norm(vector, axis=1), 1)


@pytest.mark.parametrize("directions", [6, 12, 30])
def test_a_scheme_spreads_its_directions_and_determines_a_tensor(directions):
    b = diffusion_scheme(directions, 1500.0)
    assert b.shape == (directions + 1, 3, 3) and not b[0].any()
    np.testing.assert_allclose(np.trace(b[1:], axis1=1, axis2=2), 1500.0)
    assert tensor_determined(b)
    unit = np.linalg.eigh(b[1:])[1][:, :, -1]
    closest = np.max(np.abs(unit @ unit.T) - 2 * np.eye(directions), axis=1)
    assert np.degrees(np.arccos(closest.max())) > 60 / np.sqrt(directions)  # none doubled
    with pytest.raises(ValueError, match="at least 6"):
        diffusion_scheme(5, 1000.0)


@pytest.mark.parametrize("snr, wls_reads, at_floor", [(50, 1.61, 0.5), (20, 0.73, 0.77)])
def test_the_rician_fit_is_not_fooled_by_the_noise_floor(snr, wls_reads, at_floor):
    """Free fluid (2.0 µm²/ms) at b 1000 and 3000: the b 3000 points sink to the noise
    floor, which the log-linear fits read as signal (diffusivity low); least squares on
    M² against S² + 2σ² is unbiased, and the fit says how many points lie below 3σ (the
    b 3000 half, and at SNR 20 most b 1000 points too)."""
    b = np.concatenate([diffusion_scheme(30, 1000.0), diffusion_scheme(30, 3000.0)[1:]])
    signal = np.exp(-1e-3 * np.trace(b, axis1=1, axis2=2) * 2.0)
    clean = np.broadcast_to(signal[:, None, None, None], (len(b), 1, 30, 100))
    noisy = rician(clean, 1.0 / snr, seed=snr)
    mask = np.ones((1, 30, 100), bool)
    fits = {method: fit_diffusion(noisy, b, method=method, mask=mask, noise_sigma=1.0 / snr)
            for method in ("wls", "rician")}
    assert np.median(fits["rician"].md()) == pytest.approx(2.0, rel=0.03)
    assert np.median(fits["wls"].md()) == pytest.approx(wls_reads, rel=0.05)
    assert fits["rician"].floor_fraction == pytest.approx(at_floor, abs=0.05)


def test_the_rician_fit_needs_the_noise():
    d, lam, _ = tensors()
    b = b_matrices(B_VALUES, VECTORS)
    images = signal(b, d).astype(np.float32)
    exact = fit_diffusion(images, b, method="rician", mask=np.ones(SHAPE, bool),
                          noise_sigma=1e-3)
    np.testing.assert_allclose(exact.eigenvalues, lam, atol=1e-4)
    assert exact.floor_fraction == 0.0
    with pytest.raises(ValueError, match="give noise_sigma$"):  # no background to measure
        fit_diffusion(images, b, method="rician", mask=np.ones(SHAPE, bool))


def test_the_scheme_line_groups_a_scanners_scattered_b_values():
    """Effective b-values scatter around the nominal ones (a real PV 6.0.1 DtiStandard:
    6 directions at 3 b-values plus an A0 at 26 s/mm²); the line names the shells and the
    top shell's directions."""
    rng = np.random.default_rng(5)
    directions = rng.normal(size=(6, 3))
    values = [26.0] + [v * f for v in (109.0, 511.0, 1011.0) for f in (1, 1.004, 0.997,
                                                                        1.01, 0.99, 1.002)]
    b = b_matrices(values, np.r_[[[1.0, 1.0, 1.13]], np.tile(directions, (3, 1))])
    b[1:] += np.diag([3.0, 2.0, 1.0])  # imaging terms tilt the low shell's axes
    assert scheme_summary(b) == "19 images, b 26, 115, 518, 1018 s/mm², 6 directions"
    assert scheme_summary(b_matrices([0, 300, 600], np.tile([1.0, 0, 0], (3, 1)))) == \
        "3 images, b 0, 300, 600 s/mm², 1 direction"


def test_a_voxel_whose_weighted_points_all_lie_at_the_floor_is_not_measured():
    """D 5 µm²/ms at b 1000 leaves 0.7 % of the signal, 0.13σ at SNR 20: every weighted
    point is noise, the diffusivity only bounded from below. The rician fit leaves such
    voxels unfitted; WLS gives them a number (the floor's)."""
    b = diffusion_scheme(12, 1000.0)
    clean = np.broadcast_to(np.exp(-5e-3 * np.trace(b, axis1=1, axis2=2))[:, None, None,
                                                                           None],
                            (len(b), 1, 10, 10))
    noisy = rician(clean, 1 / 20, seed=7)
    mask = np.ones((1, 10, 10), bool)
    rician_fit = fit_diffusion(noisy, b, method="rician", mask=mask, noise_sigma=1 / 20)
    wls_fit = fit_diffusion(noisy, b, method="wls", mask=mask, noise_sigma=1 / 20)
    assert rician_fit.fitted.mean() < 0.1 and wls_fit.fitted.all()
    assert np.median(wls_fit.md()) < 3.5  # read far below 5
    assert wls_fit.floor_fraction > 0.95
