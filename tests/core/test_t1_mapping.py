"""T1 fits against the signal equations, scipy's curve_fit, a Monte Carlo of the noise, and
bad input."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from napari_mrmicro.core.t1_mapping import METHODS, despot1_angles, fit_t1

ANGLES = np.array([2.0, 5.0, 10.0, 15.0, 25.0])  # degrees
TR = 15.0  # ms, the VFA's one TR
TRS = np.array([100.0, 300.0, 800.0, 2000.0, 5000.0])  # ms, saturation recovery
TIS = np.array([30.0, 100.0, 300.0, 800.0, 2000.0, 5000.0])  # ms, inversion recovery


def spgr(m0, t1, angles=ANGLES, tr=TR, b1=1.0):
    """Ernst's spoiled steady state, (angle, ...)."""
    a = np.deg2rad(np.asarray(angles))[(slice(None),) + (None,) * np.ndim(t1)] * b1
    e = np.exp(-tr / t1)
    return m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e)


def saturation(m0, t1, trs=TRS):
    return m0 * (1 - np.exp(-trs[(slice(None),) + (None,) * np.ndim(t1)] / t1))


def inversion(m0, t1, tis=TIS, efficiency=1.0, tr=None):
    """|M0 (1 − 2k e^{−TI/T1} + e^{−TR/T1})|: a TR of finite length when given."""
    e = np.exp(-tis[(slice(None),) + (None,) * np.ndim(t1)] / t1)
    recovered = 0.0 if tr is None else np.exp(-tr / t1)
    return np.abs(m0 * (1 - 2 * efficiency * e + recovered))


def specimen(shape=(4, 12, 12), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(50, 200, shape), rng.uniform(80, 2500, shape)


def images(method, m0, t1, **kw):
    return {"vfa": lambda: spgr(m0, t1, **kw), "saturation_recovery": lambda: saturation(m0, t1),
            "inversion_recovery": lambda: inversion(m0, t1, **kw)}[method]()


TIMING = {"vfa": {"flip_deg": ANGLES, "tr_ms": TR}, "saturation_recovery": {"tr_ms": TRS},
          "inversion_recovery": {"ti_ms": TIS}}


def rician(clean, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.abs(clean + rng.normal(0, sigma, clean.shape)
                  + 1j * rng.normal(0, sigma, clean.shape)).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_signals_give_t1_and_m0_exactly(method):
    m0, t1 = specimen()
    fit = fit_t1(images(method, m0, t1), method, **TIMING[method], noise_sigma=0.01,
                 mask=np.ones(t1.shape, bool))
    assert fit.fitted.all()
    np.testing.assert_allclose(fit.t1_ms(), t1, rtol=2e-5)
    # M0 of the inversion recovery is a = M0 (1 + e^{-TR/T1}), M0 for an infinite TR
    np.testing.assert_allclose(fit.m0, m0, rtol=2e-5)
    if method == "inversion_recovery":
        np.testing.assert_allclose(fit.inversion, 2.0, rtol=1e-4)
    else:
        assert fit.inversion is None


def test_inversion_recovery_is_unbiased_by_a_poor_inversion_and_a_short_tr():
    """k = 0.9 and TR = 3 s for T1 up to 2.5 s: the three-parameter model absorbs both
    (a two-parameter M0 (1 − 2 e^{−TI/T1}) would be off by tens of %)."""
    m0, t1 = specimen()
    fit = fit_t1(inversion(m0, t1, efficiency=0.9, tr=3000.0), "inversion_recovery",
                 ti_ms=TIS, noise_sigma=0.01, mask=np.ones(t1.shape, bool))
    np.testing.assert_allclose(fit.t1_ms(), t1, rtol=2e-5)
    np.testing.assert_allclose(fit.inversion, 1.8 / (1 + np.exp(-3000.0 / t1)), rtol=1e-4)


def test_vfa_needs_the_acting_flip_angles():
    """B1 10 % low: with the nominal angles T1 reads about 19 % low (T1 scales with B1² at
    small angles); with the B1 map it is exact."""
    m0, t1 = specimen()
    b1 = np.full(t1.shape, 0.9)
    b1[:, :6] = 1.1
    measured = spgr(m0, t1, b1=b1)
    nominal = fit_t1(measured, "vfa", flip_deg=ANGLES, tr_ms=TR, noise_sigma=0.01,
                     mask=np.ones(t1.shape, bool))
    ratio = nominal.t1_ms() / t1
    assert np.median(ratio[:, 6:]) == pytest.approx(0.81, abs=0.03)
    assert np.median(ratio[:, :6]) == pytest.approx(1.21, abs=0.03)
    mapped = fit_t1(measured, "vfa", flip_deg=ANGLES, tr_ms=TR, b1=b1, noise_sigma=0.01,
                    mask=np.ones(t1.shape, bool))
    np.testing.assert_allclose(mapped.t1_ms(), t1, rtol=2e-5)
    # a B1 map holds no value outside its own mask (0 or NaN): not fitted there
    b1[0], b1[1, 0] = 0.0, np.nan
    holes = fit_t1(measured, "vfa", flip_deg=ANGLES, tr_ms=TR, b1=b1, noise_sigma=0.01,
                   mask=np.ones(t1.shape, bool))
    assert not holes.fitted[0].any() and not holes.fitted[1, 0].any()
    assert holes.fitted[2:].all() and (holes.t1_ms()[0] == 0).all()
    np.testing.assert_allclose(holes.t1_ms()[2:], t1[2:], rtol=2e-5)


#: M0 that gives each experiment a brightest image of about 80-200: the VFA's small angles
#: give a few % of M0.
SCALE = {"vfa": 12.0, "saturation_recovery": 1.0, "inversion_recovery": 1.0}


def peer_model(method):
    """The signal equation as scipy's curve_fit takes it, and its sampling points."""
    if method == "vfa":
        a = np.deg2rad(ANGLES)
        e = lambda r: np.exp(-TR / 1000 * r)  # noqa: E731
        return lambda x, m, r: m * np.sin(x) * (1 - e(r)) / (1 - np.cos(x) * e(r)), a
    if method == "saturation_recovery":
        return lambda x, m, r: m * (1 - np.exp(-x * r)), TRS / 1000
    return lambda x, a, b, r: np.abs(a + b * np.exp(-x * r)), TIS / 1000


@pytest.mark.parametrize("method", METHODS)
def test_the_fit_is_scipy_curve_fits_minimum(method):
    """Noisy voxels: T1 and M0 within 1e-3 of curve_fit's least squares on the same
    signals (started from the truth), or a lower sum of squares where curve_fit stops in
    another minimum: for the inversion recovery curve_fit fits the magnitude model
    |a + b e^{−TI/T1}| itself, and a point near the null can take either sign (1 voxel of
    80 here)."""
    m0, t1 = specimen((1, 8, 10), seed=5)
    m0 = m0 * SCALE[method]
    noisy = rician(images(method, m0, t1), 2.0)
    fit = fit_t1(noisy, method, **TIMING[method], noise_sigma=2.0,
                 mask=np.ones(t1.shape, bool))
    model, x = peer_model(method)
    other_minimum = 0
    for index in np.ndindex(t1.shape):
        y = noisy[(slice(None),) + index].astype(np.float64)
        start = (m0[index], 1000 / t1[index])
        if method == "inversion_recovery":
            start = (m0[index], -2 * m0[index], 1000 / t1[index])
        params, _ = curve_fit(model, x, y, p0=start, maxfev=20000)
        assert fit.fitted[index]
        ours = (fit.m0[index], fit.r1_per_s[index])
        if method == "inversion_recovery":
            ours = (fit.m0[index], -fit.inversion[index] * fit.m0[index], ours[1])
        if abs(ours[-1] / params[-1] - 1) > 1e-3:
            other_minimum += 1
            cost = lambda p: ((model(x, *p) - y) ** 2).sum()  # noqa: E731
            assert cost(ours) < cost(params)
        else:
            assert ours[0] == pytest.approx(params[0], rel=1e-3)
    assert other_minimum <= 1


@pytest.mark.parametrize("method", METHODS)
def test_the_standard_error_is_the_spread_over_noise(method):
    """One T1 (600 ms) in 4000 noise draws, brightest image at SNR 40-55: the reported
    standard error is the SD of the fitted T1 within 10 %, and the mean is unbiased within
    2 %. (Near an inversion's null the magnitude's noise is not Gaussian and the spread
    exceeds the standard error: no TI lies there.)"""
    shape = (1, 40, 100)
    m0, t1 = np.full(shape, 80.0 * SCALE[method]), np.full(shape, 600.0)
    noisy = rician(images(method, m0, t1), 2.0, seed=11)
    fit = fit_t1(noisy, method, **TIMING[method], noise_sigma=2.0,
                 mask=np.ones(shape, bool))
    t1_fit = fit.t1_ms()[fit.fitted]
    assert fit.fitted.mean() > 0.99
    assert t1_fit.mean() == pytest.approx(600, rel=0.02)
    assert np.median(fit.t1_sd_ms()[fit.fitted]) == pytest.approx(t1_fit.std(), rel=0.1)


def test_a_t1_beyond_the_timing_is_left_unfitted():
    """TRs to 500 ms cannot tell a T1 of 20 s from infinity at SNR 20 (its standard error
    exceeds T1): not fitted. A T1 of 300 ms beside it is."""
    trs = np.array([50.0, 100.0, 200.0, 500.0])
    t1 = np.full((1, 20, 20), 20_000.0)
    t1[:, :10] = 300.0
    noisy = rician(saturation(np.full(t1.shape, 40.0), t1, trs), 2.0)
    fit = fit_t1(noisy, "saturation_recovery", tr_ms=trs, noise_sigma=2.0,
                 mask=np.ones(t1.shape, bool))
    # one 300 ms voxel of 200, whose first two points the noise made equal, is left out
    assert fit.fitted[:, :10].mean() >= 0.99 and fit.fitted[:, 10:].mean() < 0.05
    assert (fit.t1_ms()[~fit.fitted] == 0).all() and (fit.m0[~fit.fitted] == 0).all()
    assert np.median(fit.t1_ms()[:, :10]) == pytest.approx(300, rel=0.05)


def test_the_mask_and_noise_come_from_the_brightest_image():
    """A specimen in a background of noise: σ measured there, the background not fitted."""
    shape = (24, 32, 32)
    m0 = np.zeros(shape)
    m0[6:-6, 8:-8, 8:-8] = 100.0
    t1 = np.full(shape, 900.0)
    noisy = rician(inversion(m0, t1), 2.0)
    fit = fit_t1(noisy, "inversion_recovery", ti_ms=TIS)
    assert fit.noise_sigma == pytest.approx(2.0, rel=0.05)
    inside = m0 > 0
    assert fit.fitted[inside].mean() > 0.98 and fit.fitted[~inside].mean() < 0.01
    assert np.median(fit.t1_ms()[inside]) == pytest.approx(900, rel=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "look_locker", "ti_ms": TIS}, "method must be one of"),
    ({"method": "vfa", "flip_deg": ANGLES[:3], "tr_ms": TR}, "3 angles for 6 images"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 190], "tr_ms": TR},
     r"distinct angles in \(0, 180\)"),
    ({"method": "vfa", "flip_deg": [2, 5, 5, 15, 25, 30], "tr_ms": TR}, "distinct"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30]}, "needs the one TR"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30], "tr_ms": TR, "ti_ms": TIS},
     "vfa takes no ti_ms"),
    ({"method": "saturation_recovery", "tr_ms": TIS[::-1]}, "increasing"),
    ({"method": "inversion_recovery", "ti_ms": TIS[:4]}, "4 values for 6 images"),
    ({"method": "inversion_recovery", "ti_ms": TIS, "b1": 0.9}, "applies to 'vfa' only"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30], "tr_ms": TR, "b1": np.ones(3)},
     "B1 map"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30], "tr_ms": TR, "b1": -1.0},
     "relative transmit field"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30], "tr_ms": TR,
      "b1": np.full((4, 6, 6), 58.0)}, "in degrees must be divided by its nominal angle"),
    ({"method": "vfa", "flip_deg": [2, 5, 10, 15, 25, 30], "tr_ms": TR,
      "b1": np.zeros((4, 6, 6))}, "relative transmit field"),
    ({"method": "inversion_recovery", "ti_ms": TIS, "mask": np.ones((2, 2), bool)},
     "does not match"),
    ({"method": "inversion_recovery", "ti_ms": TIS, "mask": np.zeros((4, 6, 6), bool)},
     "no voxel to fit"),
    ({"method": "inversion_recovery", "ti_ms": TIS, "noise_sigma": 0.0}, "noise_sigma"),
])
def test_bad_input_is_named(kwargs, message):
    data = inversion(np.full((4, 6, 6), 100.0), np.full((4, 6, 6), 900.0))
    with pytest.raises(ValueError, match=message):
        fit_t1(data, **{"noise_sigma": 1.0, **kwargs})


@pytest.mark.parametrize("bad, message", [
    (lambda d: d - 50, "negative values"), (lambda d: np.where(d > 90, np.nan, d), "NaN"),
    (lambda d: d.astype(np.complex64), "must be real"), (lambda d: d[:2], "at least 3")])
def test_bad_images_are_named(bad, message):
    data = inversion(np.full((4, 6, 6), 100.0), np.full((4, 6, 6), 900.0))
    with pytest.raises(ValueError, match=message):
        fit_t1(bad(data), "inversion_recovery", ti_ms=TIS[:len(bad(data))], noise_sigma=1.0)


@pytest.mark.parametrize("method", METHODS)
def test_slabs_without_a_voxel_to_fit_are_passed_over(method):
    """A specimen in the first planes of a volume that several slabs cover (they crashed
    the fit: no voxel, no flip angle to index)."""
    shape = (64, 64, 64)
    m0, t1 = np.zeros(shape), np.full(shape, 700.0)
    m0[:4] = 100.0 * SCALE[method]
    fit = fit_t1(images(method, m0, t1), method, **TIMING[method], noise_sigma=0.01,
                 mask=m0 > 0, b1=np.ones(shape) if method == "vfa" else None)
    assert fit.fitted[:4].all() and not fit.fitted[4:].any()
    np.testing.assert_allclose(fit.t1_ms()[:4], 700.0, rtol=1e-4)


def test_a_callback_returning_false_cancels():
    data = inversion(np.full((8, 64, 64), 100.0), np.full((8, 64, 64), 900.0))
    with pytest.raises(InterruptedError, match="cancelled"):
        fit_t1(data, "inversion_recovery", ti_ms=TIS, noise_sigma=1.0,
               callback=lambda fraction: False)


def test_the_despot1_angles_give_71_percent_of_the_ernst_signal_and_the_least_error():
    """Deoni et al. 2003: the two angles where the spoiled signal is 0.71 of the Ernst
    angle's. Checked on the signal equation, and against the standard error of T1 that a
    two-angle fit reports for a few other pairs."""
    low, high = despot1_angles(1000.0, 10.0)
    ernst = np.degrees(np.arccos(np.exp(-10.0 / 1000.0)))
    assert low < ernst < high
    peak = spgr(1.0, 1000.0, [ernst], tr=10.0)[0]
    np.testing.assert_allclose(spgr(1.0, 1000.0, [low, high], tr=10.0) / peak, 0.71,
                               rtol=1e-9)

    def sd(pair):
        fit = fit_t1(spgr(np.full((1, 1, 1), 1000.0), np.full((1, 1, 1), 1000.0), pair,
                          tr=10.0), "vfa", flip_deg=pair, tr_ms=10.0, noise_sigma=0.1,
                     mask=np.ones((1, 1, 1), bool))
        return float(fit.t1_sd_ms()[0, 0, 0])

    best = sd((low, high))
    for other in ((low * 0.7, high), (low * 1.4, high), (low, high * 0.7), (low, high * 1.4)):
        assert sd(other) > best
    with pytest.raises(ValueError, match="positive ms"):
        despot1_angles(0.0, 10.0)
