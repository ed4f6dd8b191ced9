import numpy as np
import pytest

from napari_mrmicro.core.qsm.echoes import FieldFit, fit_field, remove_phase_offset
from napari_mrmicro.core.qsm.unwrap import unwrap_echoes, wrap_phase

SHAPE = (16, 20, 24)
SPACING = (2.0, 1.0, 1.5)  # µm
TE_MS = np.array([2.0, 4.5, 7.0, 9.5])
B0_TESLA = 9.4
HZ_PER_PPM = 42.577478 * B0_TESLA
SIGMA = 0.02  # complex noise; SNR 50 at TE = 0
T2STAR_MS = 15.0


def grid():
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(SHAPE, SPACING)]
    return np.meshgrid(*axes, indexing="ij")


def truth():
    """Field (ppm, ±0.4: the last echo wraps), offset φ0 (rad, ±3: echo 1 wraps)."""
    z, y, x = grid()
    field_ppm = 0.3 * np.sin(x / 9.0) * np.cos(y / 7.0) + 0.1 * np.tanh(z / 8.0)
    offset = 3.0 * np.cos(x / 20.0 + y / 25.0) * np.sin(z / 10.0 + 0.5)
    return field_ppm.astype(np.float32), offset.astype(np.float32)


def echoes(field_ppm, offset, seed=0, te_ms=TE_MS):
    """Noisy complex echoes: |S| = exp(−TE/T2*), phase φ0 + 2π f TE (DESIGN.md sign)."""
    rng = np.random.default_rng(seed)
    te_ms = np.asarray(te_ms, dtype=float)[:, None, None, None]
    phase = offset + 2 * np.pi * HZ_PER_PPM * field_ppm * te_ms * 1e-3
    signal = np.exp(-te_ms / T2STAR_MS) * np.exp(1j * phase)
    signal = signal + SIGMA * (rng.normal(size=phase.shape) + 1j * rng.normal(size=phase.shape))
    noisy_unwrapped = phase + wrap_phase(np.angle(signal) - phase)  # phase + its noise
    return (np.abs(signal).astype(np.float32), np.angle(signal).astype(np.float32),
            noisy_unwrapped.astype(np.float32))


def z_scores(fit, field_ppm):
    return (fit.field_hz - field_ppm * HZ_PER_PPM) / fit.noise_std_hz


def test_fit_recovers_field_and_offset_within_the_reported_noise():
    field_ppm, offset = truth()
    magnitudes, _, unwrapped = echoes(field_ppm, offset)
    fit = fit_field(unwrapped, TE_MS, magnitudes, b0_tesla=B0_TESLA, noise_sigma=SIGMA)
    assert isinstance(fit, FieldFit) and fit.field_hz.dtype == np.float32
    z = z_scores(fit, field_ppm)
    # 7680 voxels: the mean of unit-variance errors has std 0.011, their std ±0.008
    assert abs(z.mean()) < 0.05
    assert 0.95 < z.std() < 1.05
    np.testing.assert_allclose(fit.field_ppm, fit.field_hz / HZ_PER_PPM, rtol=1e-6)
    np.testing.assert_allclose(fit.noise_std_ppm, fit.noise_std_hz / HZ_PER_PPM, rtol=1e-6)
    # offset: Cramér–Rao std of the intercept, σ²ΣwT²/(ΣwΣwT² − (ΣwT)²) with w = |S|²
    te = TE_MS * 1e-3
    w = np.exp(-2 * TE_MS / T2STAR_MS)
    offset_std = SIGMA * np.sqrt((w * te**2).sum() / (w.sum() * (w * te**2).sum()
                                                      - (w * te).sum() ** 2))
    error = fit.offset_rad - offset
    assert abs(error.mean()) < 0.05 * offset_std * 5
    assert 0.9 < error.std() / offset_std < 1.1
    # σ estimated from the residuals (2 degrees of freedom per voxel) comes out right
    estimated = fit_field(unwrapped, TE_MS, magnitudes, noise_sigma=None)
    assert estimated.field_ppm is None and estimated.noise_std_ppm is None
    assert abs(estimated.noise_sigma / SIGMA - 1) < 0.05
    np.testing.assert_array_equal(estimated.field_hz, fit.field_hz)


def test_fit_through_the_origin_after_offset_removal():
    field_ppm, _ = truth()
    magnitudes, _, unwrapped = echoes(field_ppm, np.zeros_like(field_ppm))
    free = fit_field(unwrapped, TE_MS, magnitudes, B0_TESLA, noise_sigma=SIGMA)
    origin = fit_field(unwrapped, TE_MS, magnitudes, B0_TESLA, fit_offset=False,
                       noise_sigma=SIGMA)
    assert not origin.offset_rad.any()
    assert 0.95 < z_scores(origin, field_ppm).std() < 1.05
    # the analytic std σ/(2π√Σ|S|²TE²), smaller than with a free offset
    te = TE_MS * 1e-3
    expected = SIGMA / (2 * np.pi * np.sqrt((np.exp(-2 * TE_MS / T2STAR_MS) * te**2).sum()))
    assert abs(np.median(origin.noise_std_hz) / expected - 1) < 0.02
    assert np.all(origin.noise_std_hz < free.noise_std_hz)


def test_single_echo():
    field_ppm, _ = truth()
    magnitudes, _, unwrapped = echoes(field_ppm, np.zeros_like(field_ppm), te_ms=[5.0])
    fit = fit_field(unwrapped[0], [5.0], magnitudes[0], B0_TESLA, noise_sigma=SIGMA)
    np.testing.assert_allclose(fit.field_hz, unwrapped[0] / (2 * np.pi * 5e-3), rtol=1e-5)
    np.testing.assert_allclose(fit.noise_std_hz,
                               SIGMA / (2 * np.pi * 5e-3 * magnitudes[0]), rtol=1e-5)
    assert 0.9 < z_scores(fit, field_ppm).std() < 1.1
    # σ from the magnitude's neighbour differences (no residual left)
    estimated = fit_field(unwrapped[0], [5.0], magnitudes[0])
    assert abs(estimated.noise_sigma / SIGMA - 1) < 0.1


@pytest.mark.parametrize("nucleus, gamma_mhz", [("1H", 42.577478), ("13C", 10.7084)])
def test_sign_and_units_follow_the_design(nucleus, gamma_mhz):
    """phase = 2π·γ̄·B0·field_ppm·1e-6·TE: a positive field shift gives a positive fit."""
    field_ppm = np.full((2, 3, 4), 0.25, np.float32)
    te_ms = [1.0, 2.0, 3.0]
    phases = np.stack([2 * np.pi * gamma_mhz * 1e6 * 7.0 * field_ppm * 1e-6 * t * 1e-3
                       for t in te_ms])
    fit = fit_field(phases, te_ms, b0_tesla=7.0, nucleus=nucleus, noise_sigma=1.0)
    np.testing.assert_allclose(fit.field_ppm, 0.25, rtol=1e-5)
    np.testing.assert_allclose(fit.field_hz, 0.25 * gamma_mhz * 7.0, rtol=1e-5)


def test_zero_magnitude_voxels_carry_no_information():
    field_ppm, _ = truth()
    magnitudes, _, unwrapped = echoes(field_ppm, np.zeros_like(field_ppm))
    magnitudes[:, 0, 0, 0] = 0.0
    fit = fit_field(unwrapped, TE_MS, magnitudes, noise_sigma=SIGMA)
    assert fit.field_hz[0, 0, 0] == 0 and np.isinf(fit.noise_std_hz[0, 0, 0])
    assert np.isfinite(fit.noise_std_hz[1:]).all()


def test_offset_removal_then_temporal_unwrapping_then_fit():
    """The MCPC-3D-S chain on wrapped data whose echo 1 and later echoes wrap."""
    field_ppm, offset = truth()
    magnitudes, wrapped, _ = echoes(field_ppm, offset)
    assert np.ptp(offset + 2 * np.pi * HZ_PER_PPM * field_ppm * 2e-3) > 2 * np.pi
    for smooth_um, tolerance in ((0.0, 0.25), (1.5, 0.1)):
        corrected, estimate = remove_phase_offset(wrapped, TE_MS, magnitudes,
                                                  smooth_um=smooth_um, spacing_um=SPACING)
        # the offset: noise of 1.8·φ1 − 0.8·φ2 (std 0.047 rad, 4.3σ over 7680 voxels),
        # less with smoothing (inside; the volume's faces add a smoothing bias)
        error = np.abs(wrap_phase(estimate - offset))
        assert error[2:-2, 3:-3, 2:-2].max() < tolerance
        assert corrected.shape == wrapped.shape and np.abs(corrected).max() <= np.pi
        unwrapped = unwrap_echoes(corrected, TE_MS, magnitudes)
        fit = fit_field(unwrapped, TE_MS, magnitudes, B0_TESLA, noise_sigma=SIGMA)
        # no 2π error anywhere (one would be ≥ 1/TE = 105 Hz) and the noise as reported
        z = z_scores(fit, field_ppm)
        assert np.abs(z).max() < 5.5
        assert 0.95 < z.std() < 1.05


@pytest.mark.parametrize("call, match", [
    (lambda p, m: fit_field(p, TE_MS[:3], m), "te_ms has 3 echo times"),
    (lambda p, m: fit_field(p, [0.0, 4.5, 7.0, 9.5], m), "te_ms must be positive"),
    (lambda p, m: fit_field(np.where(p > 1, np.nan, p), TE_MS, m), r"phases_unwrapped\[\d\]"),
    (lambda p, m: fit_field(p, TE_MS, m[:, :-1]), "magnitudes has shape"),
    (lambda p, m: fit_field(p, TE_MS, np.where(m > 0.5, np.nan, m)), "magnitudes contains NaN"),
    (lambda p, m: fit_field(p, TE_MS, m, b0_tesla=0.0), "b0_tesla"),
    (lambda p, m: fit_field(p, TE_MS, m, b0_tesla=9.4, nucleus="19F"), "nucleus"),
    (lambda p, m: fit_field(p, TE_MS, m, noise_sigma=-1.0), "noise_sigma"),
    (lambda p, m: fit_field(p, TE_MS, m, mask=np.zeros(SHAPE, bool)), "mask is empty"),
    (lambda p, m: fit_field(p[0], TE_MS[:1]), "pass magnitudes or noise_sigma"),
    (lambda p, m: remove_phase_offset(p[:1], TE_MS[:1], m[:1]), "at least two echoes"),
    (lambda p, m: remove_phase_offset(p, TE_MS, m, smooth_um=2.0), "spacing_um"),
    (lambda p, m: remove_phase_offset(p, TE_MS, m, smooth_um=-1.0), "smooth_um"),
])
def test_bad_input_names_the_parameter(call, match):
    field_ppm, offset = truth()
    magnitudes, _, unwrapped = echoes(field_ppm, offset)
    with pytest.raises(ValueError, match=match):
        call(unwrapped, magnitudes)
