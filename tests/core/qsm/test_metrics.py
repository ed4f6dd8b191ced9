"""QSM challenge metrics on pairs with known answers, and XSIM against scikit-image."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from napari_mrmicro.core.qsm.metrics import hfen, nrmse, xsim


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    smooth = np.fft.ifftn(np.fft.fftn(rng.standard_normal((32, 32, 32)))
                          * np.exp(-np.sum(np.meshgrid(*[np.fft.fftfreq(32) ** 2] * 3,
                                                       indexing="ij"), axis=0) * 200)).real
    return (0.2 * smooth / smooth.std()).astype(np.float32)


def test_identical_maps(reference):
    assert nrmse(reference, reference) == 0
    assert hfen(reference, reference) == 0
    assert xsim(reference, reference) == pytest.approx(1, abs=1e-12)


def test_offset_and_scale(reference):
    mask = np.zeros(reference.shape, bool)
    mask[4:28, 6:26, 5:27] = True
    # χ is defined up to a constant: an offset costs nothing
    assert nrmse(reference + 0.3, reference, mask) == pytest.approx(0, abs=1e-4)
    assert hfen(reference + 0.3, reference, mask) == pytest.approx(0, abs=1e-4)
    # x = a·y: |a − 1|·100 %, for NRMSE and (LoG is linear) HFEN alike
    assert nrmse(1.5 * reference, reference, mask) == pytest.approx(50, rel=1e-5)
    assert nrmse(0.0 * reference, reference, mask) == pytest.approx(100, rel=1e-6)
    assert hfen(0.7 * reference, reference, mask) == pytest.approx(30, rel=1e-5)
    # only inside the mask: garbage outside is ignored
    garbage = reference.copy()
    garbage[~mask] = 1e6
    assert nrmse(garbage, reference, mask) == 0


def test_hfen_ignores_smooth_errors(reference):
    """A linear ramp is invisible to the Laplacian of Gaussian except at the borders of the
    grid (reflected there), so it costs NRMSE but little HFEN; a ripple at the LoG's peak
    frequency (period 6.4 voxels ≈ 2πσ/√2) costs HFEN more than NRMSE. Measured: ramp
    HFEN 5 % vs NRMSE 46 %; ripple HFEN 38 % vs NRMSE 18 %."""
    shape = reference.shape
    ramp = 0.01 * np.indices(shape)[0].astype(np.float32)
    assert hfen(reference + ramp, reference) < 0.25 * nrmse(reference + ramp, reference)
    ripple = 0.05 * np.sin(2 * np.pi * np.indices(shape)[2] / 6.4).astype(np.float32)
    assert hfen(reference + ripple, reference) > 1.5 * nrmse(reference + ripple, reference)


def test_xsim_matches_scikit_image(reference):
    """XSIM is scikit-image's SSIM map with the same constants (uniform 5³ window,
    population covariance, L = 1 ppm, K1 = 0.01, K2 = 0.001) averaged over the mask, for
    maps that are already zero outside the mask (XSIM zeroes them) and a mask 3 voxels
    from the border (where skimage's reflected padding is not reached)."""
    rng = np.random.default_rng(3)
    mask = np.zeros(reference.shape, bool)
    mask[3:-3, 4:-3, 3:-5] = True
    noisy = reference + 0.05 * rng.standard_normal(reference.shape).astype(np.float32)
    x, y = (np.where(mask, a, 0).astype(np.float64) for a in (noisy, reference))
    _, ssim_map = structural_similarity(x, y, win_size=5, data_range=1.0, K1=0.01, K2=0.001,
                                        use_sample_covariance=False, full=True)
    assert xsim(noisy, reference, mask) == pytest.approx(ssim_map[mask].mean(), rel=1e-6)
    assert 0 < xsim(noisy, reference, mask) < xsim(0.5 * noisy + 0.5 * reference, reference,
                                                   mask) < 1


def test_bad_input(reference):
    mask = np.ones(reference.shape, bool)
    for metric in (nrmse, hfen, xsim):
        with pytest.raises(ValueError, match="shape"):
            metric(reference, reference[:10])
        with pytest.raises(ValueError, match="mask"):
            metric(reference, reference, np.zeros_like(mask))
        bad = reference.copy()
        bad[5, 5, 5] = np.nan
        with pytest.raises(ValueError, match="chi_ppm"):
            metric(bad, reference, mask)
        with pytest.raises(ValueError, match="mask shape"):
            metric(reference, reference, mask[:5])
    with pytest.raises(ValueError, match="constant"):
        nrmse(reference, np.ones_like(reference))
