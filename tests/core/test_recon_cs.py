"""Compressed sensing: orthonormal wavelets, undersampling masks, L1-wavelet (FISTA) and TV
(ADMM) reconstructions of the 4× undersampled cochlea specimen."""

import numpy as np
import pytest
import pywt

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.compressed_sensing import cs_reconstruct
from napari_mrmicro.core.kspace import KSpace, centered_fft
from napari_mrmicro.core.recon import reconstruct
from napari_mrmicro.core.sampling import poisson_disc_mask, variable_density_mask
from napari_mrmicro.core.specimens import make_specimen
from napari_mrmicro.core.wavelets import WAVELETS, wavelet_forward, wavelet_inverse


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavelets_are_orthonormal_and_match_pywavelets(wavelet):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 32, 24)) + 1j * rng.standard_normal((16, 32, 24))
         ).astype(np.complex64)
    c = wavelet_forward(x, wavelet, 1, axes=(0, 1, 2))
    assert c.dtype == np.complex64
    assert np.linalg.norm(c) == pytest.approx(np.linalg.norm(x), rel=1e-6)
    assert _rel(wavelet_inverse(c, wavelet, 1, axes=(0, 1, 2)), x) < 1e-6
    stack = np.concatenate([x, x[::-1]], axis=1)[:4, :, :16]  # (4, 64, 16)
    deep = wavelet_forward(stack, wavelet, 1 if wavelet == "db4" else 2, axes=(1, 2))
    assert _rel(wavelet_inverse(deep, wavelet, 1 if wavelet == "db4" else 2, axes=(1, 2)),
                stack) < 1e-6
    assert np.linalg.norm(deep) == pytest.approx(np.linalg.norm(stack), rel=1e-6)
    # PyWavelets' periodized DWT filters the signal delayed by L/2 − 1 samples.
    signal = rng.standard_normal(64)
    taps = pywt.Wavelet(wavelet).dec_len
    approx, detail = pywt.dwt(signal, wavelet, mode="periodization")
    ours = wavelet_forward(np.roll(signal, taps // 2 - 1), wavelet, 1, axes=(0,))
    assert np.allclose(ours[:32], approx) and np.allclose(ours[32:], detail)
    with pytest.raises(ValueError, match="levels"):
        wavelet_forward(x, wavelet, 9)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavelets_in_place_equal_the_copying_transform(wavelet):
    x = (np.random.default_rng(2).standard_normal((32, 32, 32)) * (1 + 1j)).astype(np.complex64)
    before = x.copy()
    c = wavelet_forward(x, wavelet, 2)
    np.testing.assert_array_equal(x, before)  # left alone without overwrite_x
    work = x.copy()
    in_place = wavelet_forward(work, wavelet, 2, overwrite_x=True)
    assert in_place is work
    np.testing.assert_array_equal(in_place, c)
    back = wavelet_inverse(in_place, wavelet, 2, overwrite_x=True)
    assert back is work
    np.testing.assert_array_equal(back, wavelet_inverse(c, wavelet, 2))
    strided = np.repeat(before, 2, axis=2)[:, :, ::2]  # not C-contiguous: copied all the same
    np.testing.assert_array_equal(wavelet_forward(strided, wavelet, 2, overwrite_x=True), c)


def test_masks_hit_the_acceleration_and_keep_the_centre():
    shape = (48, 64, 32)  # readout along x
    for make in (poisson_disc_mask, variable_density_mask):
        mask = make(shape, 4, calib=12, seed=3)
        assert mask.shape == shape and mask.dtype == bool
        assert np.all(mask == mask[:, :, :1])  # whole readout lines
        plane = mask[:, :, 0]
        assert plane.sum() == round(48 * 64 / 4)
        assert plane[18:30, 26:38].all()
        assert np.array_equal(mask, make(shape, 4, calib=12, seed=3))
        assert not np.array_equal(mask, make(shape, 4, calib=12, seed=4))
        # Variable density: the inner half of k-space is sampled more densely.
        inner = np.zeros_like(plane)
        inner[12:36, 16:48] = True
        inner[18:30, 26:38] = False
        outer = ~inner
        outer[18:30, 26:38] = False
        assert plane[inner].mean() > 1.3 * plane[outer].mean()
    # Poisson disc spreads the samples: fewer touching neighbours than independent draws.
    def touching(plane):
        neighbours = np.zeros_like(plane)
        for axis in (0, 1):
            for step in (1, -1):
                neighbours |= np.roll(plane, step, axis)
        outside = np.ones_like(plane)
        outside[40:88, 40:88] = False
        return (plane & neighbours)[outside].sum() / plane[outside].sum()
    disc = poisson_disc_mask((128, 128, 1), 6, calib=8)[..., 0]
    rng = np.random.default_rng(0)
    independent = rng.random((128, 128)) < disc[:40].mean()
    assert touching(disc) < 0.5 * touching(independent)
    with pytest.raises(ValueError, match="calibration"):
        poisson_disc_mask((16, 16, 8), 8, calib=12)
    with pytest.raises(ValueError, match="acceleration"):
        variable_density_mask((16, 16, 8), 0.5)


@pytest.fixture(scope="module")
def cochlea_undersampled():
    """The cochlea's proton density, its k-space and a 4× Poisson-disc undersampling of the
    two phase-encode axes (z, y), readout along x."""
    shape = (32, 64, 64)
    specimen = make_specimen("cochlea", shape, 200.0)
    truth = specimen.property_map("proton_density")
    kspace = centered_fft(truth.astype(np.complex64))
    mask = poisson_disc_mask(shape, 4, calib=8, seed=0)
    assert mask.mean() == pytest.approx(0.25, abs=0.001)
    undersampled = np.where(mask, kspace, 0)
    zero_filled = _rel(np.abs(reconstruct(undersampled)), truth)
    assert zero_filled > 0.1
    return truth, undersampled, mask, zero_filled


@pytest.mark.parametrize("method", ["l1_wavelet", "tv"])
def test_cs_halves_the_zero_filled_error_on_the_cochlea(cochlea_undersampled, method):
    truth, undersampled, mask, zero_filled = cochlea_undersampled
    calls = []
    image = cs_reconstruct(undersampled, mask, method=method, iterations=50,
                           callback=lambda i, n: calls.append((i, n)))
    assert image.dtype == np.complex64 and image.shape == truth.shape
    error = _rel(np.abs(image), truth)
    assert error < zero_filled / 2, (method, error, zero_filled)
    assert calls[0] == (1, 50) and len(calls) <= 50
    # Data consistency: the measured samples are (nearly) kept.
    k = centered_fft(image)
    assert _rel(k[mask], undersampled[mask]) < 0.05


def test_cs_stopping_rule_cancel_and_inputs(cochlea_undersampled):
    truth, undersampled, mask, _ = cochlea_undersampled
    calls = []

    def cancel_after_three(i, n):
        calls.append(i)
        return i < 3

    cs_reconstruct(undersampled, mask, method="tv", iterations=50, callback=cancel_after_three)
    assert calls == [1, 2, 3]
    calls.clear()
    cs_reconstruct(undersampled, mask, iterations=50, tol=0.5,
                   callback=lambda i, n: calls.append(i))
    assert len(calls) < 5  # the relative change falls below 0.5 at once
    # No regularization: FISTA starts at the zero-filled least-squares solution and stays.
    plain = cs_reconstruct(undersampled, mask, lam=0.0, iterations=3)
    assert _rel(plain, reconstruct(undersampled)) < 1e-5
    # A KSpace brings its mask; echoes share it and λ (relative to the brightest echo).
    acq = Acquisition(matrix=truth.shape, fov_um=(6400.0, 12800.0, 12800.0), te_ms=(5.0, 10.0))
    echoes = np.stack([undersampled, 0.5 * undersampled])
    both = cs_reconstruct(KSpace(echoes, acq, sampled=mask), iterations=5, method="tv")
    assert both.shape == echoes.shape
    first = cs_reconstruct(undersampled, mask, iterations=5, method="tv")
    assert _rel(both[0], first) < 1e-5
    with pytest.raises(ValueError, match="samples nothing"):
        cs_reconstruct(undersampled, np.zeros_like(mask))
    with pytest.raises(ValueError, match="does not match"):
        cs_reconstruct(undersampled, mask[:, :10])
    with pytest.raises(ValueError, match="method"):
        cs_reconstruct(undersampled, mask, method="l0")
    with pytest.raises(ValueError, match="single-channel"):
        cs_reconstruct(KSpace(echoes[:, None], acq, sampled=mask, coil_axis=0))
    with pytest.raises(ValueError, match="NaN"):
        bad = undersampled.copy()
        bad[mask][0] = np.nan
        bad[np.nonzero(mask)[0][0], np.nonzero(mask)[1][0], np.nonzero(mask)[2][0]] = np.nan
        cs_reconstruct(bad, mask)
