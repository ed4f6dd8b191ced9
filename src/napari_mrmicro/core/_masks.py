"""Input checks and cropping shared by the morphometry modules (masks, label volumes, spacing)."""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import geometry


def as_spacing(spacing_um, ndim: int = 3) -> tuple[float, ...]:
    """``spacing_um`` as ``ndim`` positive finite floats (see :func:`geometry.as_spacing`)."""
    return geometry.as_spacing(spacing_um, ndim)


def as_mask(mask, name: str = "mask", ndim: int = 3) -> np.ndarray:
    """A boolean ``ndim``-D view/copy of ``mask``: nonzero inside, or float fractions ≥ 0.5;
    refuses NaN and empty masks."""
    mask = np.asarray(mask)
    if mask.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D (z, y, x) array, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        mask = as_fraction(mask, name) >= 0.5
    elif mask.dtype != bool:
        mask = mask != 0
    if not mask.any():
        raise ValueError(f"{name} is empty: no nonzero voxel")
    return mask


def as_labels(labels, name: str = "labels") -> np.ndarray:
    """A 3-D integer label volume (0 = background); refuses floats with fractions and negatives."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (z, y, x) array, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)) \
                or np.any(labels != np.round(labels)):
            raise ValueError(f"{name} must hold integer label values, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must not be negative (0 is background), min is {labels.min()}")
    return labels


def bounding_slices(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty boolean mask, widened by ``margin`` voxels."""
    out = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        out.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, mask.shape[axis])))
    return tuple(out)


def as_fraction(mask, name: str = "mask", ndim: int = 3) -> np.ndarray:
    """A mask ready for interpolation: bool/integer as uint8 0/1, float fractions in [0, 1]."""
    mask = np.asarray(mask)
    if mask.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D (z, y, x) array, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        if np.isnan(mask).any():
            raise ValueError(f"{name} contains NaN")
        low, high = mask.min(), mask.max()
        if low < 0 or high > 1:
            raise ValueError(f"a float {name} holds fractions in [0, 1], got [{low:g}, {high:g}]")
        if high < 0.5:
            raise ValueError(f"{name} is empty: no value reaches 0.5")
        return mask
    volume = mask.view(np.uint8) if mask.dtype == bool else (mask != 0).view(np.uint8)
    if not volume.any():
        raise ValueError(f"{name} is empty: no nonzero voxel")
    return volume
