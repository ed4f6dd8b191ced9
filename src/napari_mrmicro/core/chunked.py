"""Chunked image steps for volumes larger than memory (dask arrays, any size).

Each function takes a numpy or dask array and returns a lazy dask array (or, for the
reductions, a small result), computing one chunk at a time so memory is bounded by the chunk
size times the number of threads, never by the volume. The results equal the whole-volume
computation exactly:

- :func:`gaussian_filter_chunked`: each chunk is filtered with a halo of the kernel radius
  (``dask.array.map_overlap``), the same truncated kernel as ``scipy.ndimage.gaussian_filter``.
- :func:`otsu_threshold_chunked`: Otsu's threshold (Otsu, IEEE Trans Syst Man Cybern
  1979;9:62) of a histogram accumulated chunk by chunk (integer bins for integer data, the
  256 bins of ``skimage.filters.threshold_otsu`` for floats).
- :func:`connected_components_chunked`: every chunk is labelled on its own, then labels that
  touch across chunk faces are merged with a union-find over the face planes only (the
  two-pass block algorithm of parallel connected-component labelling, e.g. Harrison, Childs &
  Gaither, EGPGV 2011), and the chunks are relabelled lazily.
- :func:`region_volumes_chunked`: voxel counts, volumes and centroids per label, summed over
  chunks.

Lengths in µm; ``(z, y, x)`` axes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

from napari_mrmicro.core._masks import as_spacing

#: Default chunk edge (voxels): 128³ uint16 is 4 MiB, float32 8 MiB.
DEFAULT_CHUNK = 128
#: Histogram bins for floating-point data (as ``skimage.filters.threshold_otsu``).
FLOAT_BINS = 256
#: Integer data spanning more values than this are binned like floats.
MAX_INTEGER_BINS = 2**16 + 1


def as_dask(volume, chunks=DEFAULT_CHUNK):
    """A dask array of ``volume`` (kept as is when it already is one)."""
    import dask.array as da

    if isinstance(volume, da.Array):
        return volume
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        volume = np.asarray(volume)
    return da.from_array(volume, chunks=chunks)


def _check_volume(volume, name: str):
    if len(volume.shape) != 3 or 0 in volume.shape:
        raise ValueError(f"{name} must be a non-empty 3-D (z, y, x) array, got shape "
                         f"{tuple(volume.shape)}")
    if np.issubdtype(volume.dtype, np.complexfloating):
        raise ValueError(f"{name} is complex: pass the magnitude or the phase")


def gaussian_filter_chunked(volume, sigma_um, spacing_um, truncate: float = 4.0):
    """Gaussian smoothing with σ in µm, chunk by chunk (float32, lazy).

    Equals ``scipy.ndimage.gaussian_filter(volume, σ/spacing, mode="reflect",
    truncate=truncate)`` on the whole volume: each chunk gets a halo of the kernel radius,
    mirrored at the volume's edges.
    """
    volume = as_dask(volume)
    _check_volume(volume, "volume")
    spacing = np.asarray(as_spacing(spacing_um))
    sigma = np.broadcast_to(np.asarray(sigma_um, dtype=float), (3,))
    if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise ValueError(f"sigma_um must be >= 0 µm, got {sigma_um!r}")
    sigma_vox = tuple(float(s) for s in sigma / spacing)
    depth = {axis: int(truncate * s + 0.5) for axis, s in enumerate(sigma_vox)}
    return volume.astype(np.float32).map_overlap(
        ndi.gaussian_filter, depth=depth, boundary="reflect", dtype=np.float32,
        sigma=sigma_vox, mode="reflect", truncate=truncate)


def otsu_threshold_chunked(volume) -> float:
    """Otsu's threshold of the finite values of a (large) volume, from a chunked histogram."""
    import dask
    import dask.array as da
    from skimage.filters import threshold_otsu

    volume = as_dask(volume)
    _check_volume(volume, "volume")
    low, high = (float(v) for v in dask.compute(da.nanmin(volume), da.nanmax(volume)))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("volume has no finite values to threshold")
    if low == high:
        raise ValueError(f"volume is constant ({low:g}): no threshold separates it")
    integer = np.issubdtype(volume.dtype, np.integer) and high - low < MAX_INTEGER_BINS
    if integer:
        bins = int(high - low) + 1
        counts, _ = da.histogram(volume, bins=bins, range=(low - 0.5, high + 0.5))
        centers = np.arange(low, high + 1)
    else:
        counts, edges = da.histogram(volume, bins=FLOAT_BINS, range=(low, high))
        centers = (edges[:-1] + edges[1:]) / 2
    return float(threshold_otsu(hist=(counts.compute(), centers)))


def threshold_chunked(volume, threshold: float | None = None):
    """Lazy boolean mask ``volume > threshold`` (Otsu's threshold when None)."""
    volume = as_dask(volume)
    _check_volume(volume, "volume")
    level = otsu_threshold_chunked(volume) if threshold is None else float(threshold)
    if not np.isfinite(level):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return volume > level


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1 (faces), 2 (edges) or 3 (corners), got "
                         f"{connectivity!r}")
    return ndi.generate_binary_structure(3, connectivity)


def _label_block(block: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    labels = np.empty(block.shape, dtype=np.int32)
    count = ndi.label(block != 0, structure=structure, output=labels)
    return labels, int(count)


def _block_faces(block: np.ndarray, structure: np.ndarray) -> tuple[int, list]:
    """(component count, [(first plane, last plane) per axis]) of one chunk's labels."""
    labels, count = _label_block(block, structure)
    faces = [(np.take(labels, 0, axis=a).copy(), np.take(labels, -1, axis=a).copy())
             for a in range(3)]
    return count, faces


def _plane(faces: dict, offsets: np.ndarray, starts: list, shape: tuple, axis: int,
           index: int, side: int) -> np.ndarray:
    """A global-label plane across the volume at one chunk boundary along ``axis``."""
    others = [a for a in range(3) if a != axis]
    plane = np.zeros(tuple(shape[a] for a in others), dtype=np.int64)
    for location, block_faces in faces.items():
        if location[axis] != index:
            continue
        face = block_faces[axis][side].astype(np.int64)
        face[face > 0] += offsets[location]
        origin = tuple(starts[a][location[a]] for a in others)
        plane[origin[0]:origin[0] + face.shape[0], origin[1]:origin[1] + face.shape[1]] = face
    return plane


def _face_pairs(low: np.ndarray, high: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """(label in ``low``, label in ``high``) pairs of neighbours across a boundary."""
    pairs = []
    n0, n1 = low.shape
    for d0, d1 in zip(*np.nonzero(pattern)):
        d0, d1 = d0 - 1, d1 - 1
        a = low[max(0, -d0):n0 - max(0, d0), max(0, -d1):n1 - max(0, d1)]
        b = high[max(0, d0):n0 - max(0, -d0), max(0, d1):n1 - max(0, -d1)]
        both = (a > 0) & (b > 0)
        if both.any():
            pairs.append(np.unique(np.stack([a[both], b[both]], axis=1), axis=0))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)


def connected_components_chunked(mask, connectivity: int = 1):
    """Label the connected parts of a (large) mask, chunk by chunk.

    Parameters
    ----------
    mask : (z, y, x) array or dask array
        Non-zero voxels are foreground.
    connectivity : {1, 2, 3}
        Neighbours sharing a face, also an edge, also a corner.

    Returns
    -------
    (labels, count)
        ``labels`` a lazy int32 dask array with the chunks of ``mask`` and values
        ``1..count`` (numbered chunk by chunk, not in global scan order); the same parts as
        ``scipy.ndimage.label`` on the whole volume. Computing it labels each chunk again.
    """
    import dask
    import dask.array as da

    mask = as_dask(mask)
    _check_volume(mask, "mask")
    structure = _structure(connectivity)
    blocks = mask.to_delayed()
    locations = list(np.ndindex(mask.numblocks))
    results = dask.compute(*[dask.delayed(_block_faces)(blocks[loc], structure)
                             for loc in locations])
    counts = np.zeros(mask.numblocks, dtype=np.int64)
    faces = {}
    for loc, (count, block_faces) in zip(locations, results):
        counts[loc], faces[loc] = count, block_faces
    offsets = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(counts.shape)
    total = int(counts.sum())
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in mask.chunks]
    pairs = []
    for axis in range(3):
        pattern = np.take(structure, 2, axis=axis)  # in-plane offsets to the next plane
        for index in range(mask.numblocks[axis] - 1):
            low = _plane(faces, offsets, starts, mask.shape, axis, index, 1)
            high = _plane(faces, offsets, starts, mask.shape, axis, index + 1, 0)
            pairs.append(_face_pairs(low, high, pattern))
    del faces
    pairs = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    graph = sparse.coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
                              shape=(total + 1, total + 1))
    # components are numbered in order of their smallest node, so background 0 stays 0
    n_parts, mapping = csgraph.connected_components(graph, directed=False)
    mapping = mapping.astype(np.int32)

    def relabel(block, block_info=None):
        labels, _ = _label_block(block, structure)
        location = tuple(block_info[0]["chunk-location"])
        inside = labels > 0
        labels[inside] = mapping[labels[inside] + offsets[location]]
        return labels

    labels = da.map_blocks(relabel, mask, dtype=np.int32)
    return labels, n_parts - 1


def _block_sums(block: np.ndarray, start: tuple) -> tuple:
    labels = np.asarray(block).ravel()
    present, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    coords = np.indices(block.shape, sparse=True)
    sums = [np.bincount(inverse, weights=np.broadcast_to(c + s, block.shape).ravel(),
                        minlength=len(present)) for c, s in zip(coords, start)]
    keep = present != 0
    return present[keep], counts[keep], np.stack(sums, axis=1)[keep]


def region_volumes_chunked(labels, spacing_um) -> dict:
    """Voxel count, volume and centroid of every label of a (large) label volume.

    Parameters
    ----------
    labels : (z, y, x) integer array or dask array
        0 is background.
    spacing_um : 3 floats
        Voxel size (z, y, x) in µm.

    Returns
    -------
    dict of 1-D arrays, one row per label present, in label order: ``label``,
    ``voxel_count``, ``volume_um3``, ``volume_mm3``, ``centroid_{z,y,x}_um`` (voxel ``i``
    at ``i * spacing_um``): the columns of the same names in
    :func:`napari_mrmicro.core.morphometry.region_table`.
    """
    import dask

    labels = as_dask(labels)
    _check_volume(labels, "labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    spacing = np.asarray(as_spacing(spacing_um))
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in labels.chunks]
    blocks = labels.to_delayed()
    parts = dask.compute(*[dask.delayed(_block_sums)(
        blocks[loc], tuple(int(starts[a][loc[a]]) for a in range(3)))
        for loc in np.ndindex(labels.numblocks)])
    ids = np.concatenate([p[0] for p in parts])
    present, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([p[1] for p in parts]),
                         minlength=len(present)).astype(np.int64)
    coords = np.concatenate([p[2] for p in parts])
    sums = np.stack([np.bincount(inverse, weights=coords[:, a], minlength=len(present))
                     for a in range(3)], axis=1)
    voxel_um3 = float(math.prod(spacing))
    table = {"label": present.astype(np.int64), "voxel_count": counts,
             "volume_um3": counts * voxel_um3, "volume_mm3": counts * voxel_um3 * 1e-9}
    centroid = sums / np.maximum(counts, 1)[:, None] * spacing
    for axis, name in enumerate("zyx"):
        table[f"centroid_{name}_um"] = centroid[:, axis]
    return table
