"""Susceptibility map quality metrics of the QSM challenges, inside a mask.

Definitions (QSM reconstruction challenge 2.0: Milovic et al., Magn Reson Med
2022;87:1067; qsm-ci):

* NRMSE (%) ``= 100·‖(x − x̄) − (y − ȳ)‖ / ‖y − ȳ‖`` over the mask, means taken in the
  mask: χ is defined up to a constant, so both maps are demeaned.
* HFEN (%): the NRMSE of the Laplacian-of-Gaussian filtered maps (σ = 1.5 voxels;
  Ravishankar & Bresler, IEEE TMI 2011), filtering the masked, demeaned maps with
  ``scipy.ndimage.gaussian_laplace`` (Gaussian truncated at 4σ; the challenges used a
  15³ MATLAB ``fspecial3('log')`` kernel, which differs by its discretization).
* XSIM: SSIM (Wang et al., IEEE TIP 2004) on the maps in ppm, not rescaled, with
  ``L = 1`` ppm, ``K1 = 0.01``, ``K2 = 0.001`` (so ``C1 = 1e-4``, ``C2 = 1e-6`` ppm²), local
  statistics over uniform 5³-voxel windows, averaged over the mask; values outside the
  mask are set to 0 before filtering.

``x`` is the reconstruction, ``y`` the reference; both (z, y, x) in ppm, float64 sums.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from napari_mrmicro.core._masks import as_mask

#: XSIM constants of the QSM challenge 2.0.
XSIM_L_PPM, XSIM_K1, XSIM_K2, XSIM_WINDOW = 1.0, 0.01, 0.001, 5


def _pair(chi_ppm, reference_ppm, mask, where):
    x = np.asarray(chi_ppm)
    y = np.asarray(reference_ppm)
    for name, a in (("chi_ppm", x), ("reference_ppm", y)):
        if a.ndim != 3 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"{where}: {name} must be a real 3-D (z, y, x) array, got "
                             f"shape {a.shape} and dtype {a.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"{where}: chi_ppm shape {x.shape} does not match reference_ppm "
                         f"shape {y.shape}")
    if mask is None:
        mask = np.ones(x.shape, bool)
    else:
        try:
            mask = as_mask(mask)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if mask.shape != x.shape:
            raise ValueError(f"{where}: mask shape {mask.shape} does not match chi_ppm "
                             f"shape {x.shape}")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    for name, a in (("chi_ppm", x), ("reference_ppm", y)):
        if not np.all(np.isfinite(a[mask])):
            raise ValueError(f"{where}: {name} contains NaN or infinite values in the mask")
    return x, y, mask


def _demeaned_in_mask(a, mask):
    out = np.zeros_like(a)
    out[mask] = a[mask] - a[mask].mean()
    return out


def _nrmse(x, y, mask, where):
    dy = y[mask] - y[mask].mean()
    norm = np.linalg.norm(dy)
    if norm == 0:
        raise ValueError(f"{where}: reference_ppm is constant in the mask; NRMSE is undefined")
    return float(100 * np.linalg.norm(x[mask] - x[mask].mean() - dy) / norm)


def nrmse(chi_ppm, reference_ppm, mask=None) -> float:
    """Normalized RMS error (%) of demeaned maps in the mask (QSM challenge 2.0)."""
    x, y, mask = _pair(chi_ppm, reference_ppm, mask, "nrmse")
    return _nrmse(x, y, mask, "nrmse")


def hfen(chi_ppm, reference_ppm, mask=None, sigma_voxels: float = 1.5) -> float:
    """High-frequency error norm (%): NRMSE of the LoG-filtered maps (σ = 1.5 voxels)."""
    x, y, mask = _pair(chi_ppm, reference_ppm, mask, "hfen")
    if not sigma_voxels > 0:
        raise ValueError(f"hfen: sigma_voxels must be > 0, got {sigma_voxels!r}")
    log_x = ndi.gaussian_laplace(_demeaned_in_mask(x, mask), sigma_voxels)
    log_y = ndi.gaussian_laplace(_demeaned_in_mask(y, mask), sigma_voxels)
    return _nrmse(log_x, log_y, mask, "hfen")


def xsim(chi_ppm, reference_ppm, mask=None) -> float:
    """XSIM: SSIM with L = 1 ppm, K1 = 0.01, K2 = 0.001, 5³ windows, mean over the mask."""
    x, y, mask = _pair(chi_ppm, reference_ppm, mask, "xsim")
    x = np.where(mask, x, 0)
    y = np.where(mask, y, 0)
    c1 = (XSIM_K1 * XSIM_L_PPM) ** 2
    c2 = (XSIM_K2 * XSIM_L_PPM) ** 2

    def local_mean(a):
        return ndi.uniform_filter(a, XSIM_WINDOW, mode="constant")

    mx, my = local_mean(x), local_mean(y)
    vx = local_mean(x * x) - mx * mx
    vy = local_mean(y * y) - my * my
    cxy = local_mean(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim[mask].mean())
