"""The QSM pipeline: multi-echo magnitude and phase -> susceptibility (ppm).

Mask -> echo phase-offset removal -> spatial and temporal unwrapping -> weighted field
fit -> background field removal -> dipole inversion -> χ referenced to the mask mean
(the consensus recommendations of the QSM community: QSM Consensus Organization
Committee, Magn Reson Med 2024;91:1834).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_mrmicro.core.qsm.background import lbv, pdf, vsharp
from napari_mrmicro.core.qsm.echoes import fit_field, remove_phase_offset
from napari_mrmicro.core.qsm.mask import mask_from_magnitude
from napari_mrmicro.core.qsm.medi import invert_medi
from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
from napari_mrmicro.core.qsm.tkd import invert_tkd
from napari_mrmicro.core.qsm.tv import invert_tv
from napari_mrmicro.core.qsm.unwrap import unwrap_echoes

UNWRAPPERS = ("region_growing", "laplacian")
BACKGROUNDS = ("vsharp", "pdf", "lbv")
METHODS = ("tkd", "tikhonov", "tv", "medi")


class QSMCancelled(RuntimeError):
    """The caller's progress callback asked to stop."""


@dataclass
class QSMResult:
    """Every stage's output, for docks that show intermediates (all (z, y, x))."""

    chi_ppm: np.ndarray
    mask: np.ndarray
    local_mask: np.ndarray
    unwrapped_phase: np.ndarray
    total_field_ppm: np.ndarray
    local_field_ppm: np.ndarray
    field_noise_ppm: np.ndarray


def qsm(magnitude, phase, te_ms, b0_tesla, spacing_um, b0_direction=(1.0, 0.0, 0.0),
        mask=None, method: str = "tv", **options) -> np.ndarray:
    """Susceptibility map (ppm, referenced to the mask mean) from multi-echo data.

    See :func:`qsm_stages` for the parameters; this returns only ``chi_ppm``.
    """
    return qsm_stages(magnitude, phase, te_ms, b0_tesla, spacing_um, b0_direction, mask,
                      method, **options).chi_ppm


def qsm_stages(magnitude, phase, te_ms, b0_tesla, spacing_um, b0_direction=(1.0, 0.0, 0.0),
               mask=None, method: str = "tv", *, unwrap: str = "region_growing",
               background: str = "vsharp", nucleus: str = "1H", erode_um: float = 0.0,
               radii_um=None, tkd_threshold: float = 0.15, lam: float | None = None,
               max_iter: int = 250, progress=None) -> QSMResult:
    """Run the QSM pipeline and keep every stage.

    Parameters
    ----------
    magnitude, phase : ndarray
        ``(echo, z, y, x)`` or ``(z, y, x)`` for one echo; phase in radians (wrapped).
    te_ms : sequence of float
        One echo time per echo.
    b0_tesla : float
    spacing_um : float or tuple of float
        Voxel size; anisotropic voxels are handled throughout.
    b0_direction : tuple of float
        B0 in array-axis order ``(z, y, x)``; oblique directions are supported.
    mask : ndarray of bool, optional
        Specimen mask (e.g. from a Labels layer); default: Otsu on the echo-combined
        magnitude, holes filled, eroded by ``erode_um`` (every component is kept: tissue
        regions separated by signal-less bone all carry phase).
    method : {"tkd", "tikhonov", "tv", "medi"}
        Inversion: truncated k-space division (threshold ``tkd_threshold``), closed-form
        Tikhonov, TV by ADMM (Bilgic et al. 2014), or MEDI-like edge- and noise-weighted TV
        using the magnitude. ``lam`` overrides the method's default weight.
    unwrap : {"region_growing", "laplacian"}
    background : {"vsharp", "pdf", "lbv"}
        V-SHARP (``radii_um``, default 18·min(voxel) down to 2·max(voxel)), PDF or LBV.
    progress : callable, optional
        ``progress(stage, fraction)``; returning False stops with :class:`QSMCancelled`.
    """
    def report(stage, fraction):
        if progress is not None and progress(stage, fraction) is False:
            raise QSMCancelled(f"QSM cancelled during {stage}")

    if method not in METHODS:
        raise ValueError(f"qsm: method must be one of {METHODS}, got {method!r}")
    if unwrap not in UNWRAPPERS:
        raise ValueError(f"qsm: unwrap must be one of {UNWRAPPERS}, got {unwrap!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"qsm: background must be one of {BACKGROUNDS}, got {background!r}")
    magnitude = np.asarray(magnitude, dtype=np.float32)
    phase = np.asarray(phase, dtype=np.float32)
    if magnitude.ndim == 3:
        magnitude, phase = magnitude[None], phase[None] if phase.ndim == 3 else phase
    te = tuple(float(t) for t in np.atleast_1d(te_ms))
    if phase.shape != magnitude.shape or magnitude.ndim != 4:
        raise ValueError(f"qsm: magnitude {magnitude.shape} and phase {phase.shape} must both "
                         "be (echo, z, y, x) or (z, y, x)")
    if len(te) != magnitude.shape[0]:
        raise ValueError(f"qsm: te_ms has {len(te)} echo times for {magnitude.shape[0]} echoes")
    if not all(t > 0 for t in te):
        raise ValueError(f"qsm: echo times must be positive, got {te}")
    for name, data in (("magnitude", magnitude), ("phase", phase)):
        if not np.all(np.isfinite(data)):
            raise ValueError(f"qsm: {name} contains NaN or infinite values")

    report("mask", 0.0)
    if mask is None:
        # every region with signal: a specimen in fluid is often several (duct, tissue)
        mask = mask_from_magnitude(magnitude, erode_um=erode_um, spacing_um=spacing_um,
                                   keep_largest=False)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != magnitude.shape[1:]:
        raise ValueError(f"qsm: mask {mask.shape} does not match the image {magnitude.shape[1:]}")
    if not mask.any():
        raise ValueError("qsm: the mask is empty")

    report("unwrapping", 0.05)
    if len(te) > 1:
        phase, _ = remove_phase_offset(phase, te, magnitude, mask, spacing_um=spacing_um)
    unwrapped = unwrap_echoes(phase, te, magnitude, mask, spacing_um, method=unwrap)
    report("field fit", 0.3)
    fit = fit_field(unwrapped, te, magnitude, b0_tesla=b0_tesla, nucleus=nucleus,
                    fit_offset=len(te) > 1, mask=mask)
    total = np.where(mask, fit.field_ppm, 0).astype(np.float32)

    report(f"background ({background})", 0.4)
    if background == "vsharp":
        local, local_mask = vsharp(total, mask, spacing_um, radii_um=radii_um)
    elif background == "pdf":
        local, local_mask = pdf(total, mask, spacing_um, b0_direction)
    else:
        local, local_mask = lbv(total, mask, spacing_um)
    if not local_mask.any():
        raise ValueError("qsm: background removal eroded the whole mask; use smaller "
                         "radii_um or a larger mask")

    report(f"inversion ({method})", 0.55)
    weight = {} if lam is None else {"lam": lam}

    def iterations(i, n):
        report(f"inversion ({method})", 0.55 + 0.4 * i / n)

    if method == "tkd":
        chi = invert_tkd(local, local_mask, spacing_um, b0_direction, threshold=tkd_threshold)
    elif method == "tikhonov":
        chi = invert_tikhonov(local, local_mask, spacing_um, b0_direction, **weight)
    elif method == "tv":
        chi = invert_tv(local, local_mask, spacing_um, b0_direction, max_iter=max_iter,
                        callback=iterations, **weight)
    else:
        noise = np.where(local_mask, fit.noise_std_ppm, 0).astype(np.float32)
        chi = invert_medi(local, local_mask, spacing_um, b0_direction,
                          magnitude=np.sqrt((magnitude**2).sum(axis=0)),
                          noise_std_ppm=noise, max_iter=max_iter, callback=iterations, **weight)
    chi = np.where(local_mask, chi - chi[local_mask].mean(), 0).astype(np.float32)
    report("done", 1.0)
    return QSMResult(chi, mask, local_mask, unwrapped.astype(np.float32), total,
                     np.asarray(local, dtype=np.float32),
                     np.asarray(fit.noise_std_ppm, dtype=np.float32))
