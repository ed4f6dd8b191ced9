"""k-space truncation, block means and linear upsampling against direct formulas and
independent implementations."""

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage as ndi

from napari_mrmicro.core.truncation import block_mean, keep_frequencies, upsample_linear


def direct_dft(x, m, f):
    """The m central frequencies of n = f·m samples, phase-referenced to the centre of
    image voxel m//2 and scaled by √m/n, by the definition of the DFT."""
    n = x.shape[-1]
    q = np.arange(m) - m // 2
    centre = f * (m // 2) + (f - 1) / 2
    phases = np.exp(-2j * np.pi * np.outer(np.arange(n) - centre, q) / n)
    return x @ phases * np.sqrt(m) / n


@pytest.mark.parametrize("m", [1, 4, 5, 8])
@pytest.mark.parametrize("f", [1, 2, 3])
def test_kept_frequencies_are_the_direct_dft(m, f):
    rng = np.random.default_rng(m * 10 + f)
    n = f * m
    x = rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))
    got = keep_frequencies(scipy.fft.fft(x, axis=1), 1, n, m, f)
    np.testing.assert_allclose(got, direct_dft(x, m, f), atol=1e-5)
    real = x.real
    half = keep_frequencies(scipy.fft.rfft(real, axis=1), 1, n, m, f, half=True, scale=2.5)
    np.testing.assert_allclose(half, 2.5 * direct_dft(real, m, f), atol=1e-5)
    # along another axis, into a given array
    out = np.empty((m, 3), np.complex64)
    keep_frequencies(scipy.fft.fft(x.T, axis=0), 0, n, m, f, out=out)
    np.testing.assert_allclose(out, direct_dft(x, m, f).T, atol=1e-5)


def test_block_mean_matches_a_reshaped_mean_and_looks_up_tables():
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((12, 10, 9)).astype(np.float32)
    expected = volume.reshape(4, 3, 5, 2, 3, 3).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(block_mean(volume, (3, 2, 3)), expected, rtol=1e-5, atol=1e-6)
    labels = rng.integers(0, 4, (8, 6, 4)).astype(np.uint8)
    table = np.array([[0.0, 1.0, 2.5, -3.0], [9.4, 0.0, 0.5, 0.25]], np.float32)
    both = block_mean(labels, (2, 2, 2), table)
    for row, values in zip(both, table):
        np.testing.assert_allclose(row, values[labels].reshape(4, 2, 3, 2, 2, 2).mean(
            axis=(1, 3, 5)), rtol=1e-6)
    np.testing.assert_allclose(block_mean(labels, (2, 2, 2), table[1]), both[1])
    with pytest.raises(ValueError, match="multiple"):
        block_mean(volume, (5, 2, 3))


@pytest.mark.parametrize("shape, factors", [((5, 6, 7), (2, 2, 2)), ((4, 3, 5), (3, 1, 2)),
                                            ((1, 4, 4), (4, 2, 2)), ((6, 5, 4), (1, 1, 3))])
def test_linear_upsampling_matches_scipy_zoom_on_cell_centres(shape, factors):
    coarse = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = ndi.zoom(coarse, factors, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(upsample_linear(coarse, factors), expected, atol=1e-5)
