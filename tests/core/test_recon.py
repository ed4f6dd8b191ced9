"""k-space -> image: centred FFT convention, windows, zero-fill, partial Fourier, averaging,
coils, SNR. sigpy (installed for tests only) is the independent centred FFT."""

import numpy as np
import pytest
import sigpy

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.apodization import WINDOWS, apodization_factors, window_1d
from napari_mrmicro.core.coils import combine_rss, combine_sensitivity
from napari_mrmicro.core.kspace import (KSpace, centered_fft, centered_ifft,
                                        centered_ifft_magnitude)
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.partial_fourier import homodyne, pocs
from napari_mrmicro.core.recon import estimate_recon_bytes, image_parts, reconstruct
from napari_mrmicro.core.snr import background_factors, snr_estimate, snr_map


def _complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- the centred FFT ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(32, 32), (31, 33), (8, 12, 10), (7, 9, 11), (6, 5, 9)])
def test_round_trip_and_sigpy_agree(shape):
    rng = np.random.default_rng(sum(shape))
    image = _complex(rng, shape)
    axes = tuple(range(-len(shape), 0))
    kspace = centered_fft(image, axes)
    assert kspace.dtype == np.complex64
    assert _rel(kspace, sigpy.fft(image, axes=axes, center=True)) < 1e-5
    back = reconstruct(kspace)
    assert back.dtype == np.complex64 and back.shape == shape
    assert _rel(back, image) < 1e-5
    assert _rel(back, sigpy.ifft(kspace, axes=axes, center=True)) < 1e-5
    assert _rel(centered_ifft_magnitude(kspace, axes), np.abs(image)) < 1e-5
    # DC at N//2: a constant image is one sample of k-space there.
    dc = centered_fft(np.ones(shape, np.complex64), axes)
    peak = np.unravel_index(np.argmax(np.abs(dc)), shape)
    assert peak == tuple(n // 2 for n in shape)


def test_multi_echo_and_multislice_axes():
    rng = np.random.default_rng(3)
    data = _complex(rng, (2, 5, 8, 7))  # (echo, z, y, x)
    acq = Acquisition(matrix=(5, 8, 7), fov_um=(500.0, 800.0, 700.0), te_ms=(5.0, 10.0))
    volume = reconstruct(KSpace(data, acq))
    assert _rel(volume, sigpy.ifft(data, axes=(-3, -2, -1), center=True)) < 1e-5
    slices = reconstruct(KSpace(data, acq, multislice=True))
    assert _rel(slices, sigpy.ifft(data, axes=(-2, -1), center=True)) < 1e-5


def test_inputs_are_left_alone_and_white_noise_keeps_sigma():
    rng = np.random.default_rng(4)
    kspace = _complex(rng, (32, 32, 32))
    before = kspace.copy()
    image = reconstruct(kspace, window="hann", zero_fill=1.5)
    reconstruct(kspace, output="magnitude")
    centered_ifft(kspace)
    centered_ifft_magnitude(kspace)
    assert np.array_equal(kspace, before)
    noise = reconstruct(kspace)
    assert np.std(noise.real) == pytest.approx(1.0, rel=0.02)
    assert image.shape == (48, 48, 48)


def test_bad_input_is_refused():
    good = np.ones((4, 8, 8), np.complex64)
    nan = good.copy()
    nan[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reconstruct(nan)
    inf = good.copy()
    inf[0, 0, 7] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        reconstruct(inf, output="magnitude")
    with pytest.raises(ValueError, match="empty"):
        reconstruct(np.zeros((0, 4), np.complex64))
    with pytest.raises(ValueError, match="zero_fill"):
        reconstruct(good, zero_fill=0.5)
    with pytest.raises(ValueError, match="unknown window"):
        reconstruct(good, window="gauss")
    with pytest.raises(ValueError, match="output"):
        reconstruct(good, output="phase")
    with pytest.raises(ValueError, match="coil_maps"):
        reconstruct(good, coil_maps=np.ones((2, 4, 8, 8)))
    with pytest.raises(ValueError, match="average_axis"):
        reconstruct(good, average_axis=-1)
    with pytest.raises(ValueError, match="partial_fourier"):
        reconstruct(good, partial_fourier={"axis": -1, "fraction": 0.6, "side": "low"})


def test_memory_is_checked_before_big_jobs():
    # the zero-filled image, plus FFT scratch measured in benchmarks/bench_memory.py
    assert estimate_recon_bytes((64, 64, 64), zero_fill=2) == 8.5 * 128**3 + 8 * 2**20
    with pytest.raises(MemoryError, match="GiB"):
        check_memory(2**33, "a test job", available_bytes=2**30)
    with pytest.raises(MemoryError, match="reconstructing"):
        reconstruct(np.ones((8, 64, 64), np.complex64), zero_fill=(1, 4000, 4000))


# -- windows and zero-fill ------------------------------------------------------------------

def _edge_kspace(n=64, oversample=16):
    """k-space of a sharp-edged bar: the central n samples of a finely sampled box."""
    fine = np.zeros(n * oversample, np.complex64)
    fine[n * oversample // 4: 3 * n * oversample // 4] = 1
    k = centered_fft(fine, axes=(0,))
    centre = n * oversample // 2
    return k[centre - n // 2: centre + n // 2] / np.sqrt(oversample)


def _overshoot(profile):
    plateau = np.median(profile[len(profile) // 2 - 4: len(profile) // 2 + 4])
    return profile.max() / plateau - 1


def test_windows_reduce_gibbs_ringing():
    k = _edge_kspace()
    plain = _overshoot(np.abs(reconstruct(k)))
    assert plain > 0.07  # the Gibbs overshoot of a truncated step, ≈ 9 %
    for spec, limit in [("hann", 0.01), ("hamming", 0.01), ({"name": "tukey", "alpha": 0.5}, 0.06),
                        ("fermi", 0.06)]:
        windowed = _overshoot(np.abs(reconstruct(k, window=spec)))
        assert windowed < limit < plain, spec
    # Tukey interpolates between no window (α = 0) and Hann (α = 1).
    assert np.array_equal(window_1d("tukey", 33, alpha=1.0), window_1d("hann", 33))
    assert np.all(window_1d("tukey", 33, alpha=0.0) == 1)
    for name in WINDOWS:
        w = window_1d(name, 64)
        assert w[32] == pytest.approx(1) and w.dtype == np.float32
    factors = apodization_factors((2, 8, 16, 16), {-1: "hann", -3: {"name": "fermi"}},
                                  (-3, -2, -1))
    assert sorted(factors) == [1, 3]


def test_zero_fill_interpolates_through_the_samples():
    rng = np.random.default_rng(5)
    image = _complex(rng, (8, 12, 10))
    k = centered_fft(image)
    filled = reconstruct(k, zero_fill=2)
    assert filled.shape == (16, 24, 20)
    assert _rel(filled[::2, ::2, ::2], image) < 1e-5
    odd = _complex(rng, (9, 7))
    filled = reconstruct(centered_fft(odd, axes=(0, 1)), zero_fill=(2, 3))
    assert _rel(filled[1::2, 1::3], odd) < 1e-5  # odd N: sample m lands at 2m+1 (3m+1)


# -- partial Fourier ------------------------------------------------------------------------

def _smooth_phase_object(n=96):
    y, x = np.mgrid[:n, :n]
    yy, xx = (y - n / 2) / n, (x - n / 2) / n
    magnitude = ((yy / 0.35) ** 2 + (xx / 0.3) ** 2 < 1) * (1 + 0.3 * np.cos(6 * xx))
    magnitude = magnitude + 0.5 * ((yy - 0.05) ** 2 + (xx + 0.1) ** 2 < 0.1**2)
    phase = 2 * np.pi * (0.3 * xx + 0.2 * yy) + np.pi * ((xx / 0.5) ** 2 + (yy / 0.5) ** 2)
    return (magnitude * np.exp(1j * phase)).astype(np.complex64)[None]  # (1, y, x)


@pytest.mark.parametrize("axis", [-1, -2])
@pytest.mark.parametrize("missing", ["low", "high"])
def test_partial_fourier_five_eighths_recovers_magnitude(axis, missing):
    image = _smooth_phase_object()
    full = np.abs(reconstruct(centered_fft(image)))
    k = centered_fft(image)
    n = k.shape[axis]
    kept = int(round(5 / 8 * n))
    cut = [slice(None)] * 3
    cut[axis] = slice(0, n - kept) if missing == "low" else slice(kept, n)
    k[tuple(cut)] = 0
    zero_filled = _rel(np.abs(reconstruct(k)), full)
    for method in ("homodyne", "pocs"):
        out = reconstruct(k, partial_fourier={"axis": axis, "method": method, "fraction": 5 / 8})
        error = _rel(np.abs(out), full)
        assert error < 0.03, (method, error)
        assert error < zero_filled / 2
    # A KSpace's sampled mask is enough: partial Fourier is detected and POCS runs.
    sampled = np.ones(k.shape, bool)
    sampled[tuple(cut)] = False
    acq = Acquisition(matrix=k.shape, fov_um=(100.0, 960.0, 960.0))
    detected = reconstruct(KSpace(k[None], acq, sampled=sampled))
    assert _rel(np.abs(detected[0]), full) < 0.03


def test_partial_fourier_refuses_what_it_cannot_do():
    k = centered_fft(_smooth_phase_object(32))
    with pytest.raises(ValueError, match="fully sampled"):
        homodyne(k, -1, (0, 32), axes=(-2, -1))
    with pytest.raises(ValueError, match="symmetric"):
        pocs(k, -1, (15, 32), axes=(-2, -1))
    with pytest.raises(ValueError, match="both sides"):
        homodyne(k, -1, (4, 30), axes=(-2, -1))


# -- averaging, coils, image parts ----------------------------------------------------------

def test_complex_averaging_and_coil_combination():
    rng = np.random.default_rng(6)
    image = _complex(rng, (4, 12, 12))
    repeats = np.stack([centered_fft(image) + 0.1 * _complex(rng, image.shape) for _ in range(8)])
    averaged = reconstruct(repeats, average_axis=0)
    assert _rel(averaged, np.mean([reconstruct(r) for r in repeats], axis=0)) < 1e-5
    residual = np.std((averaged - image).real)
    assert residual == pytest.approx(0.1 / np.sqrt(8), rel=0.15)

    maps = _complex(rng, (3, 4, 12, 12))
    coil_kspace = centered_fft(maps * image)
    combined = reconstruct(coil_kspace, coil_maps=maps, coil_axis=0)
    assert combined.dtype == np.complex64 and _rel(combined, image) < 1e-5
    rss = reconstruct(coil_kspace, coil_axis=0)
    expected = np.sqrt(np.sum(np.abs(maps * image) ** 2, axis=0))
    assert rss.dtype == np.float32 and _rel(rss, expected) < 1e-5
    assert _rel(combine_rss(maps * image), expected) < 1e-6
    # Maps shared by all echoes of (coil, echo, z, y, x) data.
    echoes = np.stack([image, 2 * image])
    per_coil = maps[:, None] * echoes[None]
    assert _rel(combine_sensitivity(per_coil, maps), echoes) < 1e-5
    with pytest.raises(ValueError, match="coil_maps"):
        combine_sensitivity(per_coil, maps[:2])


def test_image_parts():
    image = np.array([[1 + 1j, -2, 3j]], np.complex64)
    parts = image_parts(image)
    assert np.allclose(parts["magnitude"], [[np.sqrt(2), 2, 3]])
    assert np.allclose(parts["phase"], [[np.pi / 4, np.pi, np.pi / 2]])
    assert np.allclose(parts["real"], [[1, -2, 0]]) and np.allclose(parts["imag"], [[1, 0, 3]])
    assert all(p.dtype == np.float32 for p in parts.values())
    assert set(image_parts(np.abs(image))) == {"magnitude", "real"}


# -- SNR ------------------------------------------------------------------------------------

def _noisy_disc(rng, sigma, amplitude=20.0, n=96, coils=1, repeats=None):
    y, x = np.mgrid[:n, :n]
    disc = ((y - n / 2) ** 2 + (x - n / 2) ** 2) < (n / 4) ** 2
    shape = ((repeats,) if repeats else ()) + ((coils,) if coils > 1 else ()) + (n, n)
    signal = amplitude * disc / np.sqrt(coils)
    noisy = signal + sigma * _complex(rng, shape)
    return disc, noisy


def test_snr_estimate_corrects_rayleigh_background():
    rng = np.random.default_rng(7)
    sigma = 2.0
    disc, noisy = _noisy_disc(rng, sigma)
    magnitude = np.abs(noisy)
    y, x = np.mgrid[:96, :96]
    background = np.hypot(y - 48, x - 48) > 36
    result = snr_estimate(magnitude, disc, background)
    assert result["sigma"] == pytest.approx(sigma, rel=0.04)
    assert result["snr"] == pytest.approx(20.0 / sigma, rel=0.05)
    # Without the correction, the background std would be 0.655 σ.
    assert np.std(magnitude[background]) == pytest.approx(0.655 * sigma, rel=0.05)
    mean_based = snr_estimate(magnitude, disc, background, estimator="mean")
    assert mean_based["sigma"] == pytest.approx(sigma, rel=0.04)
    auto = snr_estimate(magnitude)
    assert auto["snr"] == pytest.approx(20.0 / sigma, rel=0.1)
    complex_data = snr_estimate(noisy, disc, background)
    assert complex_data["sigma"] == pytest.approx(sigma, rel=0.04)
    # Root-sum-of-squares of 4 coils: χ with 8 degrees of freedom in the background.
    _, coils = _noisy_disc(rng, sigma, coils=4)
    rss = combine_rss(coils)
    assert snr_estimate(rss, disc, background, n_coils=4)["sigma"] == pytest.approx(sigma,
                                                                                     rel=0.05)
    assert background_factors(1) == pytest.approx((np.sqrt(np.pi / 2), np.sqrt(2 - np.pi / 2)))
    with pytest.raises(ValueError, match="empty"):
        snr_estimate(magnitude, np.zeros_like(disc), background)
    with pytest.raises(ValueError, match="overlap"):
        snr_estimate(magnitude, disc, np.ones_like(disc))


def test_snr_maps_from_repeats_and_from_background():
    rng = np.random.default_rng(8)
    sigma, repeats = 2.0, 4
    disc, noisy = _noisy_disc(rng, sigma, repeats=repeats)
    inner = np.zeros_like(disc)
    inner[40:56, 40:56] = True
    repeated = snr_map(noisy, repeat_axis=0)
    assert np.median(repeated[inner]) == pytest.approx(20.0 / sigma * np.sqrt(repeats),
                                                       rel=0.1)
    magnitude_repeats = snr_map(np.abs(noisy), repeat_axis=0)
    assert np.median(magnitude_repeats[inner]) == pytest.approx(20.0 / sigma * 2, rel=0.1)
    single = snr_map(np.abs(noisy[0]))
    assert np.median(single[inner]) == pytest.approx(20.0 / sigma, rel=0.05)
    assert np.median(snr_map(np.abs(noisy[0]), sigma=sigma)[~disc]) < 1.0
    with pytest.raises(ValueError, match="at least 2"):
        snr_map(noisy[:1], repeat_axis=0)
