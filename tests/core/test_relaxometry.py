"""T2/T2* fits against analytic decays, scipy's curve_fit and the Rician noise floor."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from napari_mrmicro.core.relaxometry import METHODS, fit_relaxation

TE = np.arange(1, 9) * 4.0  # ms, equally spaced


def decay(s0, t2_ms, te=TE):
    return s0[None] * np.exp(-np.asarray(te)[:, None, None, None] / t2_ms[None])


def rician(clean, sigma, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma, clean.shape) + 1j * rng.normal(0, sigma, clean.shape)
    return np.abs(clean + noise).astype(np.float32)


def two_tissues(shape=(16, 32, 32)):
    """A block of signal 100 with T2 12 ms in one half and 30 ms in the other."""
    t2 = np.full(shape, 30.0, np.float32)
    t2[:, : shape[1] // 2] = 12.0
    s0 = np.zeros(shape, np.float32)
    s0[3:-3, 4:-4, 4:-4] = 100.0
    return s0, t2


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_decay_is_exact(method):
    s0, t2 = two_tissues()
    result = fit_relaxation(decay(s0, t2), TE, method, floor=0)
    inside = s0 > 0
    assert result.fitted[inside].all() and not result.fitted[~inside].any()
    # ARLO: Simpson's rule over 2 spacings, (Δ/T2)^4/180 = 1.1e-4 at 4/12
    np.testing.assert_allclose(result.t2_ms()[inside], t2[inside],
                               rtol=2e-4 if method == "arlo" else 1e-5)
    np.testing.assert_allclose(result.s0[inside], 100.0, rtol=2e-4)
    np.testing.assert_allclose(result.r2_per_s[inside], 1000 / t2[inside], rtol=2e-4)
    assert (result.t2_ms()[~inside] == 0).all() and (result.echoes_used[inside] == 8).all()


def test_nonlinear_fit_is_scipy_curve_fits_minimum():
    """Same echoes, same objective: every voxel's (S0, T2) within 1e-3 of curve_fit's."""
    rng = np.random.default_rng(3)
    s0 = rng.uniform(40, 120, (1, 10, 20)).astype(np.float32)
    t2 = rng.uniform(8, 40, (1, 10, 20)).astype(np.float32)
    noisy = rician(decay(s0, t2), 2.0, seed=4)
    result = fit_relaxation(noisy, TE, "nonlinear", mask=np.ones(s0.shape, bool), floor=0)
    model = lambda te, a, r: a * np.exp(-te * r)  # noqa: E731
    for index in np.ndindex(s0.shape):
        signal = noisy[(slice(None),) + index].astype(np.float64)
        (a, r), _ = curve_fit(model, TE / 1000, signal, p0=(signal[0], 30.0))
        assert result.s0[index] == pytest.approx(a, rel=1e-3)
        assert result.r2_per_s[index] == pytest.approx(r, rel=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_the_noise_floor_keeps_t2_from_reading_long(method):
    """Echoes out to 5 T2 at SNR 50: the last ones sink into the Rician floor. Used only
    while above 3σ, T2 is right within 3 %; every echo used, it reads longer (the log-linear
    fit 11 % long)."""
    te = np.arange(1, 17) * 4.0
    s0, t2 = two_tissues()
    t2[:] = 12.0
    noisy = rician(decay(s0, t2, te), 2.0)
    inside = s0 > 0
    floored = fit_relaxation(noisy, te, method)
    assert floored.noise_sigma == pytest.approx(2.0, rel=0.05)  # measured in the background
    assert not floored.fitted[~inside].any() and floored.fitted[inside].all()
    error = np.median(floored.t2_ms()[inside]) / 12 - 1
    assert abs(error) < 0.03
    assert np.all(floored.echoes_used[inside] < 16)
    every = fit_relaxation(noisy, te, method, mask=inside, floor=0)
    assert np.median(every.t2_ms()[inside]) / 12 - 1 > error


def test_voxels_without_a_measurable_decay_are_not_fitted():
    s0, t2 = two_tissues()
    data = decay(s0, t2)
    data[:, 5, 10, 10] = data[::-1, 5, 10, 10]  # rising: no decay
    data[1:, 6, 10, 10] = 0.0  # one echo above the floor
    data[:, 7, 10, 10] = 100 * np.exp(-TE / 1e4)  # T2 10 s: decays by 0.3, less than σ
    result = fit_relaxation(data, TE, "nonlinear", noise_sigma=1.0)
    for index in ((5, 10, 10), (6, 10, 10), (7, 10, 10)):
        assert not result.fitted[index] and result.t2_ms()[index] == 0
        assert result.r2_per_s[index] == 0 and result.s0[index] == 0
    assert result.echoes_used[6, 10, 10] == 1


def test_cancel_between_slabs():
    s0, t2 = two_tissues()
    with pytest.raises(InterruptedError, match="cancelled"):
        fit_relaxation(decay(s0, t2), TE, floor=0, callback=lambda fraction: False)
    seen = []
    fit_relaxation(decay(s0, t2), TE, floor=0, callback=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("change, message", [
    (dict(te_ms=TE[:-1]), "7 echo times for 8 echoes"),
    (dict(te_ms=TE[::-1]), "increasing"),
    (dict(te_ms=np.r_[TE[:-1], np.nan]), "increasing"),
    (dict(te_ms=np.r_[TE[:-1], 40.0], method="arlo"), "equally spaced"),
    (dict(method="t2"), "method must be one of"),
    (dict(magnitude="nan"), "NaN"),
    (dict(magnitude="phase"), "negative values"),
    (dict(magnitude="complex"), "must be real"),
    (dict(magnitude="one echo", te_ms=TE[:1]), "at least 2 echoes"),
    (dict(mask="empty"), "no voxel to fit"),
    (dict(mask="wrong shape"), "does not match"),
    (dict(floor=-1.0), "floor"),
    (dict(noise_sigma=0.0), "noise_sigma must be positive"),
    (dict(skip_echoes=7), "skip_echoes must be a whole number from 0 to 6"),
    (dict(skip_echoes=6, method="arlo"), "from 0 to 5 \\(3 of the 8 echoes"),
    (dict(skip_echoes=1.0), "skip_echoes"),
])
def test_bad_input_is_named(change, message):
    s0, t2 = two_tissues()
    data = decay(s0, t2).astype(np.float32)
    arguments = dict(magnitude=data, te_ms=TE, method="nonlinear", mask=None, noise_sigma=1.0)
    arguments.update(change)
    magnitude = arguments["magnitude"]
    if isinstance(magnitude, str):
        arguments["magnitude"] = {
            "nan": np.where(data == data.max(), np.nan, data),
            "phase": data / 50 - 1.0,
            "complex": data.astype(np.complex64),
            "one echo": data[:1]}[magnitude]
    if isinstance(arguments["mask"], str):
        arguments["mask"] = (np.zeros(s0.shape, bool) if arguments["mask"] == "empty"
                             else np.ones((2, 2, 2), bool))
    with pytest.raises(ValueError, match=message):
        fit_relaxation(**arguments)


def test_maps_that_will_not_fit_in_memory_are_refused(monkeypatch):
    from napari_mrmicro.core import memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**16)
    s0, t2 = two_tissues()
    with pytest.raises(MemoryError, match=r"fit_relaxation: mapping \(16, 32, 32\) voxels "
                                          r"needs about 0.17 MiB .* a cropped volume"):
        fit_relaxation(decay(s0, t2), TE, floor=0)


@pytest.mark.parametrize("method", METHODS)
def test_skipping_the_first_echo_of_a_cpmg_train(method):
    """Spin echoes whose first echo lies 15 % below the exponential of the later ones (no
    stimulated-echo pathways yet): with it T2 reads long, without it T2 is exact."""
    s0, t2 = two_tissues()
    data = decay(s0, t2)
    data[0] *= 0.85
    inside = s0 > 0
    skewed = fit_relaxation(data, TE, method, floor=0)
    assert np.median(skewed.t2_ms()[inside & (t2 == 12)]) > 12 * 1.02
    clean = fit_relaxation(data, TE, method, floor=0, skip_echoes=1)
    np.testing.assert_allclose(clean.t2_ms()[inside], t2[inside], rtol=2e-4)
    np.testing.assert_allclose(clean.s0[inside], 100.0, rtol=2e-4)  # extrapolated to TE 0
    assert (clean.echoes_used[inside] == 7).all()


def test_a_volume_without_background_asks_for_the_noise():
    """Cropped to the specimen, the first echo has no background to measure σ in."""
    rng = np.random.default_rng(1)
    t2 = rng.uniform(10, 40, (8, 16, 16)).astype(np.float32)
    data = decay(np.full(t2.shape, 100, np.float32), t2) + rng.normal(0, 1, (8,) + t2.shape)
    with pytest.raises(ValueError, match="noise could not be measured .* give noise_sigma"):
        fit_relaxation(np.abs(data).astype(np.float32), TE)
    fit = fit_relaxation(np.abs(data).astype(np.float32), TE, noise_sigma=1.0)
    assert fit.fitted.all()
