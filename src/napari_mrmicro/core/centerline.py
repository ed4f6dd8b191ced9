"""Centerlines of tubular structures (cochlear scalae, canals, vessels) in physical space.

The mask is thinned to a one-voxel curve skeleton (Lee, Kashyap & Chu, CVGIP: Graphical Models
and Image Processing 1994;56:462) on an isotropic grid, the skeleton voxels become a graph whose
edges weigh their physical length, and the longest shortest path (or the path between two given
points) is taken and smoothed in µm by a Gaussian applied twice ("twicing", Tukey, Exploratory
Data Analysis 1977), which removes the voxel staircase without shrinking the curve's radius of
curvature. A path of voxel steps overstates the length of a curved tube by ≈ 10 %; the smoothed
path is within 1 % (REFERENCES.md, Morphometry). Lee thinning erodes the tube ends as fast as its
sides and curls them into the corners of a cap, so about one radius is cut off each end and the
tube is tracked from there to its caps (step along the tangent, re-centre on the perpendicular
section), as VMTK-style centerlines run cap to cap (Antiga et al., Med Biol Eng Comput
2008;46:1097).

Coordinates are µm in array-axis order (z, y, x), with the centre of voxel (0, 0, 0) at the
origin: voxel index ``i`` sits at ``i * spacing_um``, as in a napari layer with that scale.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

from napari_mrmicro.core._masks import as_mask, as_spacing, bounding_slices
from napari_mrmicro.core.cross_sections import plane_section
from napari_mrmicro.core.memory import check_memory

#: Gaussian smoothing of the ordered skeleton path, in path points.
PATH_SMOOTHING_POINTS = 2.0


def centerline(mask, spacing_um, points_um=None, smoothing_points: float = PATH_SMOOTHING_POINTS,
               step_um: float | None = None) -> np.ndarray:
    """The centerline of a tubular mask as an ordered ``(N, 3)`` path in µm.

    Parameters
    ----------
    mask : (z, y, x) array
        Nonzero inside the structure. Without ``points_um`` the largest 26-connected part is
        used.
    spacing_um : 3 floats
        Voxel size (z, y, x) in µm; the mask is resampled to an isotropic grid of the finest
        spacing (or of an eighth of the radius, for structures thicker than 12 voxels) before
        thinning.
    points_um : (2, 3) array, optional
        Start and end points in µm: the path runs between the skeleton points nearest to them
        and ends at the points themselves. Default: the longest path through the skeleton,
        tracked at both ends to the mask surface.
    smoothing_points : float
        Gaussian σ, in path points, of the smoothing of the ordered skeleton path (0: none).
    step_um : float, optional
        Spacing of the returned points along the path (default: the finest voxel spacing).

    Returns
    -------
    (N, 3) float64 array of µm, ordered from one end to the other; its polyline length is the
    centerline length (:func:`path_length_um`).
    """
    spacing = as_spacing(spacing_um)
    mask = as_mask(mask)
    step = float(min(spacing) if step_um is None else step_um)
    if not step > 0:
        raise ValueError(f"step_um must be positive, got {step_um}")
    ends = None
    if points_um is not None:
        ends = np.asarray(points_um, dtype=float)
        if ends.shape != (2, 3) or not np.all(np.isfinite(ends)):
            raise ValueError(f"points_um must be two finite (z, y, x) points in µm, got {ends!r}")
    crop = bounding_slices(mask, margin=1)
    sub = mask[crop]
    origin = np.array([s.start for s in crop]) * spacing
    if ends is None:
        sub = largest_component(sub)
    grid, grid_spacing = _resample(sub, spacing, _skeleton_spacing(sub, spacing))
    coords, graph = skeleton_graph(_skeleton(grid), grid_spacing)
    nodes_um = coords * grid_spacing + origin
    if ends is None:
        order = _longest_path(graph)
    else:
        order = _path_between(graph, nodes_um, ends)
    path = smooth_path(nodes_um[order], smoothing_points)
    if ends is None:
        # Thinning ends curl into the corners of a cap over about one tube radius: cut them
        # off (radius of a cylinder of the same volume and length) and extend the tangent.
        radius = np.sqrt(np.count_nonzero(sub) * np.prod(spacing)
                         / (np.pi * max(path_length_um(path), step)))
        path = _extend_to_surface(_trim_ends(path, 1.5 * radius), sub, spacing, origin, step,
                                  radius)
    else:
        path = np.vstack([ends[0], path, ends[1]])
    return resample_path(path, step_um=step)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask."""
    labels, count = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


def path_length_um(path_um) -> float:
    """Polyline length of an ordered ``(N, 3)`` path in µm."""
    path = np.asarray(path_um, dtype=float)
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0


def path_distances_um(path_um) -> np.ndarray:
    """Cumulative distance along the path at each point, in µm (0 at the first point)."""
    path = np.asarray(path_um, dtype=float)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


#: Peak bytes per output point of :func:`resample_path`: the targets, three interpolated
#: columns and their stacked copy (float64), rounded up.
RESAMPLE_BYTES_PER_POINT = 64


def resample_path(path_um, step_um: float | None = None, count: int | None = None) -> np.ndarray:
    """Points at equal arc-length spacing along a polyline: every ``step_um`` or ``count`` points.

    Both ends are kept; with ``step_um`` the spacing is the nearest that divides the length.
    """
    path = np.asarray(path_um, dtype=float)
    if path.ndim != 2 or len(path) < 2:
        raise ValueError(f"path_um must be an (N, 3) array with N >= 2, got shape {path.shape}")
    distance = path_distances_um(path)
    if (step_um is None) == (count is None):
        raise ValueError("give exactly one of step_um and count")
    if count is None:
        count = int(np.ceil(distance[-1] / step_um - 1e-9)) + 1
    if count < 2:
        raise ValueError(f"count must be at least 2, got {count}")
    check_memory(RESAMPLE_BYTES_PER_POINT * count, f"resampling a {distance[-1]:.4g} µm path "
                 f"at {count} points", advice="a larger step_um or a smaller count")
    keep = np.concatenate([[True], np.diff(distance) > 0])
    targets = np.linspace(0.0, distance[-1], count)
    return np.column_stack([np.interp(targets, distance[keep], path[keep, k]) for k in range(3)])


def smooth_path(path_um, sigma_points: float, twice: bool = True) -> np.ndarray:
    """Gaussian smoothing of an ordered path, point-reflected at both ends so ends stay put.

    With ``twice`` (twicing, Tukey 1977) the residual is smoothed and added back:
    ``2·G(p) − G(G(p))``, whose shrinkage of curves is second order in σ² instead of first.
    """
    path = np.asarray(path_um, dtype=float)
    if sigma_points <= 0 or len(path) < 3:
        return path
    pad = min(int(np.ceil(4 * sigma_points)), len(path) - 1)
    head = 2 * path[0] - path[pad:0:-1]
    tail = 2 * path[-1] - path[-2:-pad - 2:-1]
    padded = np.vstack([head, path, tail])
    once = ndi.gaussian_filter1d(padded, sigma_points, axis=0, mode="nearest")
    if twice:
        once = 2 * once - ndi.gaussian_filter1d(once, sigma_points, axis=0, mode="nearest")
    return once[pad:pad + len(path)]


def skeleton_graph(skeleton: np.ndarray, spacing_um) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Voxel coordinates of a skeleton and its 26-neighbour graph weighted by µm edge lengths."""
    spacing = np.asarray(as_spacing(spacing_um))
    coords = np.argwhere(skeleton)
    shape = np.array(skeleton.shape)
    keys = np.ravel_multi_index(coords.T, skeleton.shape)  # sorted: argwhere is C order
    rows, cols, weights = [], [], []
    for offset in itertools.product((-1, 0, 1), repeat=3):
        if offset <= (0, 0, 0):  # each undirected edge once
            continue
        other = coords + offset
        inside = np.all((other >= 0) & (other < shape), axis=1)
        target = np.ravel_multi_index(other[inside].T, skeleton.shape)
        found = np.minimum(np.searchsorted(keys, target), len(keys) - 1)
        hit = keys[found] == target
        rows.append(np.flatnonzero(inside)[hit])
        cols.append(found[hit])
        weights.append(np.full(hit.sum(), np.linalg.norm(np.array(offset) * spacing)))
    rows, cols, weights = (np.concatenate(x) for x in (rows, cols, weights))
    graph = sparse.coo_matrix((np.concatenate([weights, weights]),
                               (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
                              shape=(len(coords),) * 2).tocsr()
    return coords, graph


def _skeleton_spacing(mask: np.ndarray, spacing) -> float:
    """Grid spacing (µm) to thin on: the finest voxel, or an eighth of the typical radius of a
    structure thicker than 12 voxels (radius ≈ 3 × the mean distance to the surface for a tube,
    estimated on every 4th voxel). Thinning time grows with the voxel count; the path is
    smoothed and its ends tracked on the full-resolution mask anyway."""
    finest = float(min(spacing))
    sample = mask[::4, ::4, ::4]
    if np.count_nonzero(sample) < 1000:
        return finest
    depth = ndi.distance_transform_edt(np.pad(sample, 1), sampling=4 * np.asarray(spacing))
    radius = 3 * float(depth[1:-1, 1:-1, 1:-1][sample].mean())
    return radius / 8 if radius / 8 > 1.5 * finest else finest


def _resample(mask: np.ndarray, spacing, target_um: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask on a grid of about ``target_um`` (linear interpolation, thresholded at 0.5),
    and that grid's exact spacing; unchanged when already so."""
    spacing = np.asarray(spacing, dtype=float)
    if np.all(np.abs(spacing / target_um - 1) < 0.01):
        return mask, spacing
    shape = np.array(mask.shape)
    out_shape = np.where(shape > 1, np.maximum(
        np.round((shape - 1) * spacing / target_um).astype(int) + 1, 2), 1)
    grid_spacing = np.where(shape > 1, (shape - 1) * spacing / np.maximum(out_shape - 1, 1),
                            spacing)
    work = mask.astype(np.float32)
    # Separable linear interpolation: one axis at a time keeps memory near the output size.
    for axis, (n, s, orig) in enumerate(zip(out_shape, grid_spacing, spacing)):
        work = _interp_axis(work, np.arange(n) * (s / orig), axis)
    return work >= 0.5, grid_spacing


def _interp_axis(volume: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``volume`` at fractional indices ``positions`` along ``axis``."""
    n = volume.shape[axis]
    lo = np.clip(np.floor(positions).astype(int), 0, max(n - 2, 0))
    hi = np.minimum(lo + 1, n - 1)
    w = (positions - lo).astype(np.float32)
    shape = [1] * volume.ndim
    shape[axis] = len(positions)
    w = w.reshape(shape)
    return np.take(volume, lo, axis=axis) * (1 - w) + np.take(volume, hi, axis=axis) * w


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Lee thinning; parts that vanish (even widths) are retried one voxel thinner per axis."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(mask).astype(bool)
    parts, count = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    lost = np.setdiff1d(np.arange(1, count + 1), parts[skeleton])
    boxes = ndi.find_objects(parts)
    for index in lost:
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in boxes[index - 1])
        part = parts[box] == index
        for axes in ((1, 2), (1,), (2,), (0,), (0, 1), (0, 2), (0, 1, 2)):
            thinner = part.copy()
            for axis in axes:  # drop one face layer: an even width becomes odd
                thinner &= np.roll(part, 1, axis=axis)
            found = skeletonize(thinner).astype(bool)
            if found.any():
                skeleton[box] |= found
                break
    if not skeleton.any():
        raise ValueError("mask has no curve skeleton (too small or too thin for a centerline)")
    return skeleton


def _longest_path(graph: sparse.csr_matrix) -> np.ndarray:
    """Node order of the longest shortest path (double-sweep Dijkstra from an arbitrary node)."""
    if graph.shape[0] < 2:
        raise ValueError("mask skeleton is a single voxel: no centerline")
    start = 0
    for _ in range(2):
        dist, pred = csgraph.dijkstra(graph, indices=start, return_predecessors=True)
        far = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
        if far == start:
            raise ValueError("mask skeleton is a single voxel: no centerline")
        previous, start = start, far
    return _walk(pred, previous, start)


def _path_between(graph, nodes_um, ends) -> np.ndarray:
    near = [int(np.argmin(np.linalg.norm(nodes_um - p, axis=1))) for p in ends]
    dist, pred = csgraph.dijkstra(graph, indices=near[0], return_predecessors=True)
    if not np.isfinite(dist[near[1]]):
        raise ValueError("points_um lie on different connected parts of the mask")
    return _walk(pred, near[0], near[1])


def _walk(predecessors: np.ndarray, source: int, target: int) -> np.ndarray:
    order = [target]
    while order[-1] != source:
        order.append(int(predecessors[order[-1]]))
    return np.array(order[::-1])


def _trim_ends(path: np.ndarray, length_um: float) -> np.ndarray:
    """The path without ``length_um`` at each end (at most a third of it each, ≥ 2 points left)."""
    distance = path_distances_um(path)
    cut = min(length_um, distance[-1] / 3)
    keep = (distance >= cut) & (distance <= distance[-1] - cut)
    return path[keep] if keep.sum() >= 2 else path[[0, -1]]


def _extend_to_surface(path, mask, spacing, origin, step, radius) -> np.ndarray:
    """Track the tube from both path ends to its caps.

    Step along the tangent and re-centre on the centroid of the perpendicular section while the
    section stays whole; where it shrinks (the cap cuts it) or the mask ends, go straight on to
    the point where the interpolated mask drops below 0.5.
    """
    volume = mask.view(np.uint8)
    reach = np.linalg.norm(np.array(mask.shape) * spacing)
    stride = max(step, radius / 3)  # centroids of voxelized sections wobble by ~0.3 voxel
    distance = path_distances_um(path)
    back = min(2 * stride, distance[-1])
    behind_start = path[np.flatnonzero(distance >= back)[0]]
    behind_end = path[np.flatnonzero(distance <= distance[-1] - back)[-1]]
    pieces = []
    # (end point, a point about two strides behind it), both relative to the crop origin
    for end, behind in ((path[0], behind_start), (path[-1], behind_end)):
        end, tangent = end - origin, end - behind
        track, whole_area = [], None
        while np.linalg.norm(tangent) > 0 and len(track) * stride < reach:
            tangent = tangent / np.linalg.norm(tangent)
            probe = end + stride * tangent
            section = None
            if _values(volume, probe[None], spacing)[0] >= 0.5:
                section = plane_section(volume, probe, tangent, spacing, 1.5 * radius)
            if section is not None:
                whole_area = whole_area or section.area_um2
                centre = section.centroid_um()
                turn = np.dot(centre - end, tangent) / np.linalg.norm(centre - end)
                if section.area_um2 > 0.9 * whole_area and turn > 0.9:
                    tangent, end = centre - end, centre
                    track.append(centre)
                    continue
            track.append(_exit_along(volume, end, tangent, spacing, step, reach))
            break
        pieces.append(np.array(track).reshape(-1, 3) + origin)
    return np.vstack([pieces[0][::-1], path, pieces[1]])


def _values(volume, points_um, spacing) -> np.ndarray:
    return ndi.map_coordinates(volume, (points_um / spacing).T, order=1, cval=0.0,
                               output=np.float32)


def _exit_along(volume, start_um, direction, spacing, step, reach) -> np.ndarray:
    """Where the interpolated mask first drops below 0.5 on the ray from an inside point."""
    count = int(reach / (0.125 * step)) + 2
    check_memory(RESAMPLE_BYTES_PER_POINT * count, f"tracing the tube's end over {reach:.4g} "
                 f"µm at {count} points (step_um {step:g})", advice="a larger step_um")
    t = np.arange(0, count) * 0.125 * step
    values = _values(volume, start_um + t[:, None] * direction, spacing)
    k = int(np.argmax(values < 0.5))
    if k == 0:
        return start_um
    frac = (values[k - 1] - 0.5) / (values[k - 1] - values[k])
    return start_um + (t[k - 1] + frac * (t[k] - t[k - 1])) * direction
