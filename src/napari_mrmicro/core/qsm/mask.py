"""The specimen mask for QSM: from the magnitude, or from a user's Labels layer.

Phase is only meaningful where there is signal; unwrapping, background-field removal and
the inversion all work inside this mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.special import chdtri  # χ² quantiles: chdtri(k, p) = chi2.isf(p, k)

from napari_mrmicro.core._masks import as_labels
from napari_mrmicro.core.qsm.unwrap import _spacing
from napari_mrmicro.core.segmentation import keep_largest as _keep_largest
from napari_mrmicro.core.segmentation import otsu_threshold


def combined_magnitude(magnitude) -> np.ndarray:
    """Echo-combined magnitude ``√Σ_e |S_e|²`` (float32) of (echo, z, y, x) data; a
    3-D volume is returned as its absolute value."""
    magnitude = np.asarray(magnitude)
    if magnitude.ndim not in (3, 4):
        raise ValueError("magnitude must be (z, y, x) or (echo, z, y, x), got shape "
                         f"{magnitude.shape}")
    magnitude = np.abs(magnitude).astype(np.float32, copy=False)
    if not np.all(np.isfinite(magnitude)):
        raise ValueError("magnitude contains NaN or infinite values")
    if magnitude.ndim == 4:
        magnitude = np.sqrt(np.einsum("e...,e...->...", magnitude, magnitude))
    return magnitude


def mask_from_magnitude(magnitude, threshold: float | None = None, erode_um: float = 0.0,
                        fill_holes: bool = True, keep_largest: bool = True,
                        spacing_um=None) -> np.ndarray:
    """Specimen mask: threshold the magnitude, keep the specimen, fill it, erode its rim.

    Steps: ``√Σ|S_e|² > threshold`` (Otsu's threshold when none is given; Otsu, IEEE Trans
    Syst Man Cybern 1979;9:62), the largest 6-connected part (drops noise specks),
    enclosed cavities filled (air bubbles and signal voids inside the specimen, whose
    phase is noise, are kept so the mask has no holes for the background-field removal),
    then erosion by a ball of ``erode_um`` in physical units (rim voxels mix in noise and
    outside field); the array border counts as outside.

    Parameters
    ----------
    magnitude : ndarray, (z, y, x) or (echo, z, y, x)
    threshold : float, optional
        In the units of the magnitude; default Otsu's.
    erode_um : float
        Erosion radius in µm (0: none); needs ``spacing_um``.
    fill_holes, keep_largest : bool
    spacing_um : float or 3 floats, optional
        Voxel size in µm along (z, y, x).

    Returns
    -------
    ndarray of bool, (z, y, x)
    """
    combined = combined_magnitude(magnitude)
    if threshold is None:
        level = otsu_threshold(combined)
    else:
        level = float(threshold)
        if not np.isfinite(level):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
    erode_um = _check_erosion(erode_um, spacing_um)
    mask = combined > level
    if not mask.any():
        raise ValueError(f"the mask is empty: lower the threshold (now {level:g}, the "
                         f"magnitude peaks at {combined.max():g})")
    if keep_largest:
        mask = _keep_largest(mask)
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    return erode(mask, erode_um, spacing_um)


def _check_erosion(erode_um, spacing_um) -> float:
    erode_um = float(erode_um)
    if not (np.isfinite(erode_um) and erode_um >= 0):
        raise ValueError(f"erode_um must be >= 0 (µm), got {erode_um}")
    if erode_um > 0 and spacing_um is None:
        raise ValueError("spacing_um (µm) is needed to erode the mask by erode_um")
    return erode_um


def erode(mask, erode_um: float, spacing_um=None) -> np.ndarray:
    """``mask`` eroded by a ball of ``erode_um`` µm (the voxels farther than that from
    any voxel outside it, the array border counting as outside; anisotropic voxels
    handled through ``spacing_um``); unchanged for 0."""
    erode_um = _check_erosion(erode_um, spacing_um)
    if erode_um == 0:
        return mask
    distance = ndi.distance_transform_edt(np.pad(mask, 1), sampling=_spacing(spacing_um))
    mask = distance[1:-1, 1:-1, 1:-1] > erode_um
    if not mask.any():
        raise ValueError(f"the mask is empty after eroding by erode_um = {erode_um:g} µm: "
                         "lower erode_um")
    return mask


#: Probability that a noise-only voxel passes :func:`signal_mask`'s threshold, and that a
#: voxel whose phase grows linearly with TE fails its curvature test.
NOISE_FALSE_ALARM = 1e-4
MISFIT_FALSE_ALARM = 1e-3
#: A phase that bends by less than this over an echo triple (rad) is kept even when the
#: bend is significant: partial-volume voxels at a structure's edge bend a little and
#: still carry its field; at voids and in dephased shells the bend is of order 1 rad.
BEND_TOLERANCE = 0.3
#: Only voxels dimmer than this fraction of the mask's median magnitude leave for a bent
#: phase: at voids and in dephased shells the signal is lost too, while a bright voxel
#: whose phase bends sits at the edge of a structure inside the tissue, and leaving it out
#: would make that structure's edge a boundary the background removal respects.
DIM_FRACTION = 0.5
#: Voxels below this fraction of the median signal of the voxels above the noise are left
#: out whatever their phase: partial volume with a void, Gibbs ringing next to the
#: specimen's edge, the inside of a void smaller than a few voxels. Tissue in MR
#: microscopy specimens differs in signal by less than this (the simulated cochlea's
#: modiolus has 0.7 of the fluid's).
FLOOR_FRACTION = 0.3
#: A voxel on the mask's edge against a void or the outside (not the array's edge) dimmer
#: than this fraction of the mask's median signal is left out: about a third of it or more
#: is void, so its χ is largely the void's (bone −2 ppm, air +9.4 ppm against water) and
#: its field is no tissue's; left in, it is a sheet of strong sources along the void that
#: background removal keeps and the inversion spreads (the boundary layer that LBV's
#: "peel" drops, Zhou et al., NMR Biomed 2014;27:312, here only where the signal says it is
#: partial). Measured with LBV + TV: the demo cochlea's χ error in its fluid falls from
#: 0.62 to 0.08 ppm RMS (0.34 to 0.03 from the true field); qsm-forward's cylinder phantom
#: NRMSE 30.9 → 31.0 % with a bone-like void, 39.1 → 36.4 % with an air pocket too
#: (fraction 0.5: 0.16 ppm, 31.1 %, 38.5 %; 0.8: 0.08 ppm, 31.6 %, 36.2 %).
PARTIAL_FRACTION = 0.7


@dataclass(frozen=True)
class MaskReport:
    """What the automatic QSM mask kept and left out (voxel counts, magnitude units).

    ``noise_sigma``: σ of the complex noise per channel measured in the background;
    ``threshold``: the echo-combined magnitude a voxel must exceed; ``kept``: voxels in the
    final mask; ``voids``: signal voids enclosed by the specimen (bone, air, tube walls);
    ``specks``: isolated bits above the threshold dropped as noise; ``dim``: voxels above
    the noise but below :data:`FLOOR_FRACTION` of the median signal; ``partial``: edge
    voxels below :data:`PARTIAL_FRACTION` of it (partial volume with a void or the
    outside); ``misfit``: voxels with
    signal whose phase does not grow linearly with TE (dephasing next to a void, unwrapping
    errors); ``misfit_checked``: False with too few echoes for that test.
    """

    noise_sigma: float
    threshold: float
    kept: int
    voids: int
    specks: int = 0
    dim: int = 0
    misfit: int = 0
    misfit_checked: bool = False
    partial: int = 0

    def summary(self) -> str:
        misfit = (f"{self.misfit} with non-linear phase over TE" if self.misfit_checked
                  else "phase linearity not checked (too few echoes)")
        return (f"mask {self.kept} voxels; left out {self.voids} in signal voids, "
                f"{self.dim} dim (partial volume, ringing), {self.partial} dim at the "
                f"edge (partial volume with a void), {self.specks} in noise specks, "
                f"{misfit} (noise σ {self.noise_sigma:.3g}, threshold {self.threshold:.3g})")


def phase_curvature(magnitude, phase, te_ms):
    """Largest normalised curvature of the phase over TE, without unwrapping.

    For echoes evenly spaced in TE a phase that grows linearly has a zero wrapped second
    difference ``∠(S_{e+2}·S_e·S_{e+1}*²)`` whatever its wraps; its noise variance is
    ``σ²(1/|S_e|² + 4/|S_{e+1}|² + 1/|S_{e+2}|²)`` (phase noise σ/|S|). Returns the largest
    squared ratio of the two over the echo triples (χ²(1) per triple where the phase is
    linear, in units of σ² = 1; divide by σ²), the largest absolute second difference (rad)
    and the number of triples; ``(None, None, 0)`` with fewer than three echoes or uneven
    spacing.
    """
    te = np.asarray(te_ms, dtype=np.float64)
    if magnitude.ndim != 4 or te.size < 3 or not np.allclose(np.diff(te), te[1] - te[0],
                                                              rtol=1e-3):
        return None, None, 0
    worst = np.zeros(magnitude.shape[1:], np.float32)
    largest = np.zeros(magnitude.shape[1:], np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for e in range(te.size - 2):
            bend = phase[e + 2] - 2 * phase[e + 1] + phase[e]
            bend = (bend + np.float32(np.pi)) % np.float32(2 * np.pi) - np.float32(np.pi)
            variance = (1 / magnitude[e] ** 2 + 4 / magnitude[e + 1] ** 2
                        + 1 / magnitude[e + 2] ** 2)
            np.maximum(worst, np.nan_to_num(bend**2 / variance, nan=0.0), out=worst)
            np.maximum(largest, np.abs(bend), out=largest)
    return worst, largest, te.size - 2


#: The noise's quantile above which a voxel is no background when σ is refined.
BACKGROUND_QUANTILE = 0.999


def background_sigma(combined: np.ndarray, echoes: int = 1) -> float:
    """σ per channel of the noise-only voxels of an echo-combined magnitude
    (``σ·√χ²(2E)``).

    From the median of the voxels below Otsu's threshold, then, until it settles, from
    the median of those below the noise's :data:`BACKGROUND_QUANTILE` at that σ: dim
    tissue, ghosts and edge voxels that Otsu counts with the background raise the first
    median (a rodent head at 9.4 T: σ 305 against 220 above the head) and are cut away
    where they lie above the noise. The truncation moves the noise's own median by 0.05 %.
    """
    median = np.sqrt(chdtri(2 * echoes, 0.5))
    cut = np.sqrt(chdtri(2 * echoes, 1 - BACKGROUND_QUANTILE))
    sigma = float(np.median(combined[combined <= otsu_threshold(combined)])) / median
    for _ in range(50):
        below = combined[combined <= cut * sigma]
        if not below.size:
            break
        refined = float(np.median(below)) / median
        if not refined < sigma * (1 - 1e-4):  # settled (it only falls)
            break
        sigma = refined
    return sigma


def signal_mask(magnitude, spacing_um=None, erode_um: float = 0.0,
                min_part_voxels: int = 27, phase=None, te_ms=None,
                floor_fraction: float = FLOOR_FRACTION,
                partial_fraction: float = PARTIAL_FRACTION) -> tuple[np.ndarray, MaskReport]:
    """The voxels with signal: echo-combined magnitude against the measured noise.

    Noise-only voxels of ``√Σ_e|S_e|²`` over E echoes are ``σ·√χ²(2E)`` (root-sum-of-squares
    of 2E Gaussian channels; Constantinides et al., Magn Reson Med 1997;38:852). σ is
    measured in the background (:func:`background_sigma`), and a voxel has signal when
    it exceeds ``σ·√χ²_{1−p}(2E)`` with ``p`` = :data:`NOISE_FALSE_ALARM` and
    ``floor_fraction`` (:data:`FLOOR_FRACTION`) of the median signal above the noise
    (dimmer voxels are partial volume or ringing, their phase no tissue's). Parts smaller
    than ``min_part_voxels`` are noise specks; signal voids enclosed by the specimen (bone,
    air, tube walls) stay out of the mask: their phase is noise (every part with signal is
    kept: tissue separated by signal-less bone carries phase too).

    With ``phase`` and ``te_ms`` of three or more evenly spaced echoes, voxels whose phase
    bends over TE (:func:`phase_curvature` above ``χ²_{1−p/n}(1)``, ``p`` =
    :data:`MISFIT_FALSE_ALARM`, Bonferroni over the n echo triples) are left out before
    any unwrapping: partial-volume and dephased voxels at voids and edges, whose phase is
    no field. Last, the mask's edge voxels (against a void or the outside, not the array's
    edge) dimmer than ``partial_fraction`` (:data:`PARTIAL_FRACTION`) of its median signal
    leave: partial volume
    with a void, whose χ is mostly the void's.

    Parameters
    ----------
    magnitude : ndarray, (z, y, x) or (echo, z, y, x)
    spacing_um : float or 3 floats, optional
        Needed for ``erode_um``.
    erode_um : float
        Erode the mask by a ball of this radius (µm).
    min_part_voxels : int
    phase : ndarray like ``magnitude``, optional
        Wrapped phase (rad).
    te_ms : sequence of float, optional
    floor_fraction : float
        0 keeps every voxel above the noise.
    partial_fraction : float
        0 keeps the mask's dim edge voxels.

    Returns
    -------
    (mask, MaskReport)
    """
    magnitude = np.asarray(magnitude)
    echoes = magnitude.shape[0] if magnitude.ndim == 4 else 1
    combined = combined_magnitude(magnitude)
    sigma = background_sigma(combined, echoes)
    threshold = sigma * float(np.sqrt(chdtri(2 * echoes, NOISE_FALSE_ALARM)))
    above = combined > threshold
    if not above.any():
        raise ValueError(f"no voxel has signal above the noise (σ {sigma:.3g}, threshold "
                         f"{threshold:.3g})")
    floor = float(floor_fraction) * float(np.median(combined[above]))
    dim = int((above & (combined <= floor)).sum())
    threshold = max(threshold, floor)
    above = combined > threshold
    mask = _drop_specks(above, min_part_voxels)
    specks = int(above.sum() - mask.sum())
    bent, checked = 0, False
    if phase is not None and te_ms is not None:
        curvature, bend, triples = phase_curvature(magnitude, np.asarray(phase, np.float32),
                                                   te_ms)
        if curvature is not None:
            limit = chdtri(1, MISFIT_FALSE_ALARM / triples) * sigma**2
            faint = combined < DIM_FRACTION * np.median(combined[mask])
            bent_dim = (curvature > limit) & (bend > BEND_TOLERANCE) & faint
            straight = _drop_specks(mask & ~bent_dim, min_part_voxels)
            bent, checked, mask = int(mask.sum() - straight.sum()), True, straight
    if not mask.any():
        raise ValueError("no voxel has both signal and a phase that grows linearly with TE")
    # voids counted before the edge goes (it may open a void to the array's edge)
    voids = int((ndi.binary_fill_holes(mask) & ~mask).sum())
    edge = mask & ~ndi.binary_erosion(mask, border_value=1)
    dim_edge = edge & (combined < float(partial_fraction) * np.median(combined[mask]))
    kept = _drop_specks(mask & ~dim_edge, min_part_voxels)
    partial = 0
    if kept.any():
        partial, mask = int(mask.sum() - kept.sum()), kept
    mask = erode(mask, erode_um, spacing_um)
    return mask, MaskReport(sigma, threshold, int(mask.sum()), voids, specks, dim, bent,
                            checked, partial)


def _drop_specks(mask, min_part_voxels):
    parts, count = ndi.label(mask)
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    keep = sizes >= int(min_part_voxels)
    keep[0] = False
    return keep[parts]


def mask_from_labels(labels, include=None) -> np.ndarray:
    """Mask from a napari Labels layer's data: every non-zero label, or those in ``include``.

    Parameters
    ----------
    labels : ndarray of int, (z, y, x)
        0 is background.
    include : int or sequence of int, optional
        Label values that make up the specimen.

    Returns
    -------
    ndarray of bool, (z, y, x)
    """
    labels = as_labels(labels)
    if include is None:
        mask = labels != 0
        if not mask.any():
            raise ValueError("the mask is empty: the labels hold no non-zero label")
        return mask
    wanted = np.atleast_1d(np.asarray(include))
    if wanted.size == 0 or not np.issubdtype(wanted.dtype, np.integer) or (wanted <= 0).any():
        raise ValueError(f"include must be positive integer label values, got {include!r}")
    mask = np.isin(labels, wanted)
    if not mask.any():
        present = np.unique(labels)
        raise ValueError(f"the mask is empty: include {wanted.tolist()} matches none of the "
                         f"labels present {present[present > 0].tolist()[:20]}")
    return mask
