"""The specimen mask for QSM: from the magnitude, or from a user's Labels layer.

Phase is only meaningful where there is signal; unwrapping, background-field removal and
the inversion all work inside this mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

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
    erode_um = float(erode_um)
    if not (np.isfinite(erode_um) and erode_um >= 0):
        raise ValueError(f"erode_um must be >= 0 (µm), got {erode_um}")
    if erode_um > 0 and spacing_um is None:
        raise ValueError("spacing_um (µm) is needed to erode the mask by erode_um")
    mask = combined > level
    if not mask.any():
        raise ValueError(f"the mask is empty: lower the threshold (now {level:g}, the "
                         f"magnitude peaks at {combined.max():g})")
    if keep_largest:
        mask = _keep_largest(mask)
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    if erode_um > 0:
        spacing = _spacing(spacing_um)
        distance = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing)
        mask = distance[1:-1, 1:-1, 1:-1] > erode_um
        if not mask.any():
            raise ValueError(f"the mask is empty after eroding by erode_um = {erode_um:g} µm: "
                             "lower erode_um")
    return mask


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
