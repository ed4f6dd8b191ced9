"""Segmentation helpers: threshold, connected components, hole filling, keep-largest.

A first segmentation of an MR microscopy volume that users then edit slice by slice with
napari's Labels tools. Otsu's threshold: Otsu, IEEE Trans Syst Man Cybern 1979;9:62.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_mrmicro.core._masks import as_labels, as_mask

_CONNECTIVITY = {1: "faces (6-connected)", 2: "faces and edges (18-connected)",
                 3: "faces, edges and corners (26-connected)"}


def otsu_threshold(image) -> float:
    """Otsu's threshold of an image's finite values (maximises the between-class variance)."""
    from skimage.filters import threshold_otsu

    values = np.asarray(image)
    if np.iscomplexobj(values):
        raise ValueError("image is complex: threshold its magnitude (np.abs)")
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("image has no finite values to threshold")
    if values.min() == values.max():
        raise ValueError(f"image is constant ({values.min():g}): no threshold separates it")
    return float(threshold_otsu(values))


def threshold_mask(image, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of ``image > threshold`` (Otsu's threshold when none is given)."""
    image = np.asarray(image)
    level = otsu_threshold(image) if threshold is None else float(threshold)
    if not np.isfinite(level):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return image > level


def connected_components(mask, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Label the connected parts of a mask: (int32 labels 1..n in scan order, n).

    ``connectivity`` 1, 2 or 3: neighbours sharing a face, also an edge, also a corner (3-D).
    """
    mask = np.asarray(mask) != 0
    structure = _structure(mask.ndim, connectivity)
    labels = np.empty(mask.shape, dtype=np.int32)
    count = ndi.label(mask, structure=structure, output=labels)
    return labels, int(count)


def fill_holes(labels) -> np.ndarray:
    """Fill enclosed cavities of every label (3-D), without painting over other labels.

    A boolean mask gives a boolean result; an integer label volume keeps its dtype.
    """
    values = np.asarray(labels)
    if values.dtype == bool:
        return ndi.binary_fill_holes(values)
    values = as_labels(values)
    out = values.copy()
    for label, box in enumerate(ndi.find_objects(values), start=1):
        if box is None:
            continue
        region = values[box]
        filled = ndi.binary_fill_holes(region == label)
        out[box][filled & (region == 0)] = label
    return out


def keep_largest(labels, connectivity: int = 1) -> np.ndarray:
    """The largest connected part of a mask, or of each label of a label volume.

    A boolean mask gives a boolean result; an integer label volume keeps its dtype, every label
    reduced to its largest part (ties: the first in scan order).
    """
    values = np.asarray(labels)
    if values.dtype == bool:
        mask = as_mask(values, ndim=values.ndim)
        parts, _ = connected_components(mask, connectivity)
        return parts == _largest(parts)
    values = as_labels(values)
    out = np.zeros_like(values)
    structure = _structure(values.ndim, connectivity)
    for label, box in enumerate(ndi.find_objects(values), start=1):
        if box is None:
            continue
        parts, _ = ndi.label(values[box] == label, structure=structure)
        out[box][parts == _largest(parts)] = label
    return out


def _largest(parts: np.ndarray) -> int:
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return int(np.argmax(sizes))


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    if connectivity not in range(1, ndim + 1):
        raise ValueError(f"connectivity must be 1..{ndim} ({', '.join(_CONNECTIVITY.values())}), "
                         f"got {connectivity}")
    return ndi.generate_binary_structure(ndim, connectivity)
