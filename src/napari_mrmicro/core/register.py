"""Registration of MRM volumes with optical microscopy in physical space (µm, ``(z, y, x)``).

Every function returns a homogeneous matrix mapping **moving world → fixed world** (µm), the
convention of ``core.transforms`` (which also tells a dock how to set it as a napari layer
``affine``). Landmarks: :func:`landmark_affine` (Umeyama 1991). Intensities: rigid
multi-resolution maximisation of Mattes mutual information (Mattes et al., IEEE Trans Med
Imaging 2003;22:120), 3-D ↔ 3-D (:func:`mutual_information_affine`) or a 2-D optical section
↔ an oblique plane of a 3-D volume (:func:`section_plane_affine`: the 6-DOF pose of the
section's pixel grid in the volume, found by reslicing — a plane search, as a 2-D/3-D metric
does not exist). Optimiser: Powell's direction-set method (Powell, Comput J 1964;7:155) on a
fixed random subset of points per resolution level, coarse to fine (downsampling 4, 2, 1).
The section search first tries many starting poses (its depth, every in-plane angle,
optionally in-plane offsets): screened on the two coarsest levels, the best few refined,
the refined ones compared again on each finer level (a multi-start search; one coarse
level alone ranks thousands of poses poorly).
"""

from __future__ import annotations

import math
import threading
from typing import Callable, NamedTuple

import numpy as np
from scipy import ndimage as ndi
from scipy import optimize

from napari_mrmicro.core import _slabs, backend
from napari_mrmicro.core.landmarks import LandmarkFit, landmark_affine
from napari_mrmicro.core.mutual_information import MattesMetric
from napari_mrmicro.core.reslice import _real_volume, _spacing, oblique_plane_affine, reslice
from napari_mrmicro.core.transforms import check_affine, rigid_affine, translation_affine

__all__ = ["LandmarkFit", "MutualInformationFit", "landmark_affine",
           "affine_scale", "mutual_information_affine", "reslice", "section_plane_affine",
           "section_scale"]

_MIN_LEVEL_VOXELS = 12  # never shrink an axis below this many voxels


class MutualInformationFit(NamedTuple):
    """Result of an intensity registration."""

    affine: np.ndarray          #: moving world → fixed world (µm), (ndim+1)×(ndim+1)
    mutual_information: float  #: Mattes MI (nats) at the solution, finest level
    evaluations: int            #: metric evaluations, all levels


def _finite_image(image, name, ndim):
    v = _real_volume(image, name)
    if v.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {v.shape}")
    if min(v.shape) < 4:
        raise ValueError(f"{name} {v.shape} is too small to register (< 4 voxels on an axis)")
    v = v.astype(np.float32, copy=False)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or inf")
    return v


def _levels(levels):
    out = tuple(int(f) for f in np.atleast_1d(levels))
    if not out or any(f < 1 for f in out) or list(out) != sorted(out, reverse=True):
        raise ValueError(f"levels must be decreasing positive downsampling factors, e.g. "
                         f"(4, 2, 1); got {levels!r}")
    return out


def _downsample(image, spacing, factor):
    """Gaussian-smoothed (σ = factor/2 voxels) and strided image, its spacing (µm) and the
    strides; an axis is not shrunk below ``_MIN_LEVEL_VOXELS``. Voxel 0 stays at 0 µm."""
    f = np.array([max(1, min(factor, n // _MIN_LEVEL_VOXELS)) for n in image.shape])
    strides = tuple(slice(None, None, k) for k in f)
    if np.all(f == 1):
        return image, spacing, strides
    smooth = ndi.gaussian_filter(image, np.where(f > 1, f / 2, 0.0), mode="nearest")
    return np.ascontiguousarray(smooth[strides]), spacing * f, strides


def _level_bins(bins: int, samples: int) -> int:
    """Histogram bins per image for ``samples`` points: at most ``bins``, and at most
    √(samples / 4), so that the joint histogram holds about four samples per cell (at least
    8 bins). The plug-in MI estimate is biased upwards by about (B − 1)²/(2N) nats (Paninski,
    Neural Comput 2003;15:1191): 32 bins over the 256 pixels of a section's coarsest level
    would add ~1.9 nats of noise-driven bias, enough to prefer a wrong pose there."""
    return int(min(bins, max(8, math.isqrt(max(samples, 0) // 4))))


def _sample_points(image, spacing, samples, rng, mask=None):
    """Up to ``samples`` distinct random voxels of ``image`` (in ``mask``), each moved by a
    random offset within its voxel: their coordinates (µm) and the image's values there
    (linear interpolation).

    The offsets keep the samples off the grid whatever the pose. On voxel centres, a pose
    that maps them onto the other image's grid planes (two scans of one slab, whose slices
    coincide) escapes interpolation, its noise unsmoothed lowers MI, and the search steps
    off by a fraction of a voxel: the grid artefact of MI (Pluim et al., IEEE Trans Med
    Imaging 2000;19:809; Tsao, IEEE Trans Med Imaging 2003;22:854). Measured: two
    contrasts of one texture on one 18×64×64 grid (500×100×100 µm), independent noise,
    fitted from their true pose, drifted 25–43 µm along y without the offsets and stay
    there with them; on ParaVision scans 5 and 6 (one slab of 500 µm slices), MI over
    every voxel at ±100 µm along the slices exceeded MI at 0 µm by 10 %.
    """
    shape = image.shape
    flat = np.flatnonzero(mask) if mask is not None else np.arange(int(np.prod(shape)))
    pick = flat if flat.size <= samples else np.sort(rng.choice(flat, samples, replace=False))
    index = np.stack(np.unravel_index(pick, shape), axis=1).astype(float)
    index = np.clip(index + rng.uniform(-0.5, 0.5, index.shape), 0, np.asarray(shape) - 1)
    values = ndi.map_coordinates(image, index.T, order=1, mode="nearest")
    return index * spacing, values


class _Interpolator:
    """Linear interpolation of a volume at world points, with an inside-the-volume flag."""

    def __init__(self, volume, spacing):
        self.volume, self.spacing = volume, spacing
        self.upper = np.asarray(volume.shape) - 1.0

    def __call__(self, points_um):
        idx = points_um / self.spacing
        valid = np.all((idx >= 0) & (idx <= self.upper), axis=1)
        values = ndi.map_coordinates(self.volume, idx.T, order=1, mode="nearest")
        return values, valid


#: Most metric evaluations of one level's Powell search.
MAX_EVALUATIONS = 800
#: Poses rated between two progress reports (a cancel acts between batches).
RATE_BATCH = 256
#: Starting poses of the section search kept after rating on levels 0, 1, ... (screening).
SECTION_SCREEN = (1024, 8)
#: Poses of the section search refined by Powell on levels 0, 1, ... (then 1 per level).
SECTION_KEEP = (8, 2)
#: Most starting poses a section search tries (each costs one coarse MI evaluation, about
#: 0.05–0.5 ms, and 128 bytes).
MAX_STARTS = 200_000
#: Starting scales with ``scale=True`` (the start's first): tissue shrunk by up to about
#: 30 % (a scale of 1.4), or slightly swollen.
START_SCALES = (1.0, 1.12, 1.25, 1.4, 0.9)


def _maximise(levels: list, compose: Callable, start: np.ndarray, callback=None,
              candidates=(), screen=(), keep=(1,), parameters: int = 6):
    """Powell maximisation of MI over ``parameters`` pose parameters (6 rigid, a 7th an
    isotropic scale), level by level.

    ``levels``: per level ``(evaluate(affine) -> MI, unit_um, radius_um)``; ``compose(x,
    unit_deg, unit_um, base) -> affine`` applies the parameter vector to ``base``.
    ``candidates``: further starting poses, first screened: rated by the MI of level 0 and
    the best ``screen[0]`` kept, those rated on level 1 and the best ``screen[1]`` kept,
    and so on (a coarse level alone ranks many poses poorly: few samples, few bins).
    Then on each level the poses that reach it are rated by that level's MI, the best
    ``keep[level]`` (1 beyond the end of ``keep``) refined by Powell, and the refined
    poses go on: a coarse level's spurious maxima are outvoted on the finer ones. On every
    tie the earlier pose wins (``start`` first).
    Ratings run in batches on all cores and the poses kept on a level are refined in
    parallel (the interpolation releases the GIL); results do not depend on the cores.
    ``callback(done, total)`` is called before every evaluation or batch (``done`` of at
    most ``total`` evaluations), also from worker threads; an exception it raises (a
    cancel) stops the search."""
    poses = [start, *candidates]
    counts = [max(1, int(keep[i]) if i < len(keep) else 1) for i in range(len(levels))]
    screen = [int(n) for n in screen[:len(levels)]]
    total, n = 0, len(poses)  # the ratings where poses are dropped, Powell's evaluations
    for size in screen:
        total, n = total + (n if n > size else 0), min(n, size)
    for size in counts:
        total, n = total + (n if n > size else 0), min(n, size)
        total += MAX_EVALUATIONS * n
    count, lock = [0], threading.Lock()

    def done(evaluations: int) -> None:
        """Report progress (before ``evaluations`` more), from any thread."""
        with lock:
            before = count[0]
            count[0] += evaluations
        if callback is not None:
            callback(before, total)

    def on_all_cores(work, items: int, per_core: bool = True) -> None:
        """``work(start, stop)`` over ``items`` split into one run per core (or per item)."""
        step = -(-items // _slabs.core_count()) if per_core else 1
        backend.for_each_run(work, [(i, min(items, i + step)) for i in range(0, items, step)])

    def best(poses, evaluate, n):
        """The ``n`` best of ``poses`` by ``evaluate``, rated in batches on all cores (the
        interpolation and histograms release the GIL), progress and cancel between them."""
        if len(poses) <= n:
            return poses
        scores = np.empty(len(poses))
        for first in range(0, len(poses), RATE_BATCH):
            batch = poses[first:first + RATE_BATCH]
            done(len(batch))

            def work(start, stop, batch=batch, first=first):
                for i in range(start, stop):
                    scores[first + i] = evaluate(batch[i])
            on_all_cores(work, len(batch))
        return [poses[i] for i in np.argsort(-scores, kind="stable")[:n]]

    for level, size in enumerate(screen):
        poses = best(poses, levels[level][0], size)
    for level, (evaluate, unit_um, radius_um) in enumerate(levels):
        unit_deg = np.degrees(unit_um / radius_um)
        bases = best(poses, evaluate, counts[level])
        poses, scores = [None] * len(bases), [0.0] * len(bases)

        def refine(start, stop, bases=bases, unit_deg=unit_deg, unit_um=unit_um,
                   evaluate=evaluate):
            """Powell from each of ``bases[start:stop]`` (independent: one per core)."""
            for i in range(start, stop):
                def cost(x, base=bases[i]):
                    done(1)
                    return -evaluate(compose(x, unit_deg, unit_um, base))

                result = optimize.minimize(cost, np.zeros(parameters), method="Powell",
                                           options={"xtol": 5e-2, "ftol": 1e-4,
                                                    "maxfev": MAX_EVALUATIONS})
                poses[i] = compose(result.x, unit_deg, unit_um, bases[i])
                scores[i] = -float(result.fun)
        on_all_cores(refine, len(bases), per_core=False)
    top = int(np.argmax(scores))
    return poses[top], scores[top], count[0]


def _along_normal(start, local_centre, box_um, step_um) -> list:
    """``start`` shifted along its normal (local axis 0) by multiples of ``step_um``, for
    every shift that keeps the section's centre inside the volume's box ``[0, box_um]``."""
    normal = start[:3, 0]
    centre = start[:3, :3] @ np.asarray(local_centre, float) + start[:3, 3]
    low, high = -np.inf, np.inf
    for c, n, top in zip(centre, normal, box_um):
        if abs(n) > 1e-12:
            a, b = sorted(((0.0 - c) / n, (top - c) / n))
            low, high = max(low, a), min(high, b)
        elif not 0.0 <= c <= top:
            return []
    if not low <= high:
        return []
    poses = []
    for k in range(math.ceil(low / step_um), math.floor(high / step_um) + 1):
        if k:
            pose = start.copy()
            pose[:3, 3] += k * step_um * normal
            poses.append(pose)
    return poses


def _delta(x, unit_deg, unit_um, centre):
    return rigid_affine(x[:3] * unit_deg, x[3:6] * unit_um, centre_um=centre)


def _over_the_volume(start, point_um, box_um) -> np.ndarray:
    """``start``, or, when it maps ``point_um`` (the moving image's centre) outside the
    fixed box ``[0, box_um]``, ``start`` moved (not turned) to put it at the box's centre:
    a start off the volume (frames unrelated, e.g. an optical stage position) overlaps
    nothing, so no search could start from it."""
    point = start[:3, :3] @ np.asarray(point_um, float) + start[:3, 3]
    if np.all((point >= 0) & (point <= box_um)):
        return start
    return translation_affine(np.asarray(box_um) / 2 - point) @ start


def _in_plane_scale(factor: float, local_centre) -> np.ndarray:
    """A section's local (normal, y, x) µm scaled in its plane by ``factor`` about
    ``local_centre`` (the isotropic 3-D scaling is :func:`rigid_affine`'s ``scale``)."""
    out = np.diag([1.0, factor, factor, 1.0])
    out[1:3, 3] = (1.0 - factor) * np.asarray(local_centre, float)[1:3]
    return out


def section_scale(plane_affine) -> float:
    """The in-plane scale of a section's ``plane_affine`` (section local µm → world µm):
    the mean length of its in-plane columns; 1 for a rigid pose, > 1 where the section
    shows the tissue smaller than the volume does (shrunk by ``1 − 1/scale``)."""
    a = np.asarray(plane_affine, dtype=float)
    return float(np.mean(np.linalg.norm(a[:3, 1:3], axis=0)))


def affine_scale(affine) -> float:
    """The isotropic scale of a 3-D ``affine`` (moving → fixed µm): the cube root of its
    linear part's absolute determinant; 1 for a rigid one, > 1 where the moving tissue is
    the smaller (shrunk by ``1 − 1/scale``)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])) ** (1 / 3))


def mutual_information_affine(moving, moving_spacing_um, fixed, fixed_spacing_um,
                              initial_affine=None, *, levels=(4, 2, 1), bins: int = 32,
                              samples: int = 10000, fixed_mask=None, scale: bool = False,
                              seed: int = 0, callback=None) -> MutualInformationFit:
    """Rigid (or similarity) 3-D ↔ 3-D registration maximising Mattes mutual information.

    Optimises 6 parameters — 3 rotations about the fixed volume's centre and 3 translations
    (µm) — composed on the left of ``initial_affine``, coarse to fine; with ``scale`` a 7th,
    an isotropic scale about the same centre.

    Parameters
    ----------
    moving, fixed : (z, y, x) real arrays
        Any contrasts (e.g. optical vs MRM); voxel sizes may differ.
    moving_spacing_um, fixed_spacing_um : float or sequence of 3
    initial_affine : (4, 4) array, optional
        Starting moving → fixed matrix (e.g. from :func:`landmark_affine`); default identity.
        A start that puts the moving volume's centre outside the fixed volume is shifted
        to align the two centres first.
    levels : sequence of int
        Downsampling factors, coarse to fine.
    bins : int
        Joint-histogram bins per image.
    samples : int
        Fixed voxels sampled per level (a fixed random subset, drawn with ``seed``).
    fixed_mask : bool (z, y, x) array, optional
        Where to sample the fixed image (e.g. the specimen).
    scale : bool
        Also fit an isotropic scale, starting from the start's and from it times each of
        :data:`START_SCALES` (the two best rated on the coarsest level are refined, the
        better on the next level goes on): cleared or fixed tissue imaged optically shrinks
        or swells against the MRM of the same specimen. The scale found is
        :func:`affine_scale` of the result (> 1: the moving tissue is the smaller).
    callback : callable(done, total), optional
        Progress before each metric evaluation; raising in it stops the search.

    Returns
    -------
    MutualInformationFit
    """
    mov = _finite_image(moving, "moving", 3)
    fix = _finite_image(fixed, "fixed", 3)
    sm = _spacing(moving_spacing_um, 3, "moving_spacing_um")
    sf = _spacing(fixed_spacing_um, 3, "fixed_spacing_um")
    start = np.eye(4) if initial_affine is None else check_affine(initial_affine, 3,
                                                                   "initial_affine")
    if int(samples) != samples or samples < 100:
        raise ValueError(f"samples must be an integer >= 100, got {samples!r}")
    if fixed_mask is not None:
        fixed_mask = np.asarray(fixed_mask, dtype=bool)
        if fixed_mask.shape != fix.shape:
            raise ValueError(f"fixed_mask {fixed_mask.shape} must have the fixed shape "
                             f"{fix.shape}")
        if not fixed_mask.any():
            raise ValueError("fixed_mask is empty")
    rng = np.random.default_rng(seed)
    centre = (np.asarray(fix.shape) - 1) / 2 * sf
    radius = float(np.linalg.norm(centre))
    built = []
    for factor in _levels(levels):
        f_img, f_sp, strides = _downsample(fix, sf, factor)
        m_img, m_sp, _ = _downsample(mov, sm, factor)
        mask = None if fixed_mask is None else fixed_mask[strides]
        if mask is not None and not mask.any():
            mask = None  # a mask too thin to survive the stride: sample everywhere
        points, values = _sample_points(f_img, f_sp, int(samples), rng, mask)
        metric = MattesMetric(values, (m_img.min(), m_img.max()),
                              _level_bins(bins, len(values)))
        interp = _Interpolator(m_img, m_sp)
        inverse_points = np.hstack([points, np.ones((len(points), 1))])

        def evaluate(affine, metric=metric, interp=interp, inverse_points=inverse_points):
            mapped = inverse_points @ np.linalg.inv(affine)[:3].T
            return metric(*interp(mapped))

        built.append((evaluate, float(max(f_sp.max(), m_sp.max())), radius))

    def scaled(factor):  # isotropic about the fixed volume's centre
        return rigid_affine((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), centre_um=centre, scale=factor)

    def compose(x, unit_deg, unit_um, base):
        pose = _delta(x, unit_deg, unit_um, centre)
        if scale:  # a unit step moves the volume's corners by about unit_um
            pose = pose @ scaled(np.exp(x[6] * unit_um / radius))
        return pose @ base

    start = _over_the_volume(start, (np.asarray(mov.shape) - 1) / 2 * sm, 2 * centre)
    candidates = [scaled(f) @ start for f in START_SCALES[1:]] if scale else ()
    affine, mi, n = _maximise(built, compose, start, callback, candidates,
                              keep=(2,) if scale else (1,), parameters=7 if scale else 6)
    if not mi > 0:  # MI is 0 only when (nearly) every sample falls outside the volume
        raise ValueError("the registered volumes do not overlap (mutual information 0): "
                         "check the voxel sizes of both, or give a start (e.g. landmarks)")
    return MutualInformationFit(affine, mi, n)


def section_plane_affine(section, section_spacing_um, volume, volume_spacing_um,
                         initial_plane_affine=None, *, levels=(4, 2, 1), bins: int = 32,
                         samples: int = 10000, seed: int = 0, scan_normal: bool = True,
                         turns: int = 24, reach_um: float = 0.0, mirror: bool = False,
                         scale: bool = False, callback=None) -> MutualInformationFit:
    """Find the pose of a 2-D section (e.g. an optical slice) inside a 3-D volume.

    Optimises the rigid pose of the section's pixel grid — 3 rotations about the section
    centre and 3 translations in the section's own frame (the first is along its normal),
    optionally its in-plane scale and a mirror image — so
    that ``reslice(volume, volume_spacing_um, plane_affine, section.shape,
    section_spacing_um)`` has maximal Mattes mutual information with the section.

    Parameters
    ----------
    section : (y, x) real array
    section_spacing_um : float or sequence of 2
    volume : (z, y, x) real array
    volume_spacing_um : float or sequence of 3
    initial_plane_affine : (4, 4) array, optional
        Starting pose (section local µm, the section at local z = 0 → volume world µm);
        default: the section centred in the volume, parallel to the (y, x) planes. A start
        whose centre lies outside the volume is moved (not turned) to the volume's centre.
    levels, bins, samples, seed, callback
        As in :func:`mutual_information_affine` (samples are section pixels; the callback
        is also called from worker threads, which refine the kept poses in parallel).
    scan_normal : bool
        Scan the section's depth: the starting plane moved along its normal through the
        whole volume in steps of half the coarsest level's voxel. Where along its normal a
        section lies is what a rough placement knows least; Powell's local search finds
        the plane only from within about the tissue's correlation length (from 6 voxels
        off it failed on the test specimen).
    turns : int
        In-plane orientations tried: the start turned about the section's normal by every
        ``360 / turns`` degrees (a section is mounted on its slide at any angle; Powell
        finds the turn from within about 15°). 1: the start's orientation only.
    reach_um : float
        In-plane offsets tried: the start moved within the section's plane by multiples of
        the coarsest level's voxel up to ``reach_um`` along each in-plane axis (0: none).
        The starting poses (every depth × turn × offset) are screened — rated by MI on the
        coarsest level, the best 1024 rated on the next, the best 8 refined — and the
        refined poses compete again on the finer levels (:data:`SECTION_SCREEN`,
        :data:`SECTION_KEEP`). The cost grows with ``turns × (2 reach / voxel + 1)²``.
    mirror : bool
        Also try every starting pose with the section mirrored (its x axis reversed about
        its centre): a section mounted face down on its slide. Doubles the starts; the
        pose found may then include that reflection (determinant −1).
    scale : bool
        Also fit the section's in-plane size (a 7th parameter, isotropic about its
        centre), starting from each of :data:`START_SCALES`: histological processing
        shrinks tissue, typically by 10–30 % (fixation, dehydration, embedding), and a
        rigid pose cannot match a section 10 % smaller. The scale found is the length of
        the affine's in-plane columns (:func:`section_scale`): > 1 where the section is
        smaller than the tissue in the volume.

    Returns
    -------
    MutualInformationFit
        ``affine`` is the plane affine: section (moving) → volume (fixed) world, the
        ``plane_affine`` of :func:`reslice`: rigid, times an in-plane scale with
        ``scale`` and a reflection of the section's x axis when ``mirror`` found it face
        down.
    """
    sec = _finite_image(section, "section", 2)
    vol = _finite_image(volume, "volume", 3)
    ss = _spacing(section_spacing_um, 2, "section_spacing_um")
    sv = _spacing(volume_spacing_um, 3, "volume_spacing_um")
    if initial_plane_affine is None:
        start = oblique_plane_affine((np.asarray(vol.shape) - 1) / 2 * sv, (0, 0, 0),
                                     sec.shape, ss)
    else:
        start = check_affine(initial_plane_affine, 3, "initial_plane_affine")
    if int(turns) != turns or turns < 1:
        raise ValueError(f"turns must be an integer >= 1, got {turns!r}")
    if not (np.isfinite(reach_um) and reach_um >= 0):
        raise ValueError(f"reach_um must be a finite distance >= 0, got {reach_um!r}")
    if int(samples) != samples or samples < 100:
        raise ValueError(f"samples must be an integer >= 100, got {samples!r}")
    rng = np.random.default_rng(seed)
    local_centre = np.concatenate([[0.0], (np.asarray(sec.shape) - 1) / 2 * ss])
    radius = float(np.linalg.norm(local_centre))
    built = []
    for factor in _levels(levels):
        s_img, s_sp, _ = _downsample(sec, ss, factor)
        v_img, v_sp, _ = _downsample(vol, sv, factor)
        points, values = _sample_points(s_img, s_sp, int(samples), rng)
        metric = MattesMetric(values, (v_img.min(), v_img.max()),
                              _level_bins(bins, len(values)))
        interp = _Interpolator(v_img, v_sp)
        local = np.hstack([np.zeros((len(points), 1)), points, np.ones((len(points), 1))])

        def evaluate(plane, metric=metric, interp=interp, local=local):
            return metric(*interp(local @ plane[:3].T))

        built.append((evaluate, float(max(s_sp.max(), v_sp.max())), radius))

    def compose(x, unit_deg, unit_um, base):
        pose = base @ _delta(x, unit_deg, unit_um, local_centre)
        if scale:  # a unit step moves the section's corners by about unit_um
            pose = pose @ _in_plane_scale(np.exp(x[6] * unit_um / radius), local_centre)
        return pose

    step = built[0][1]  # the coarsest level's voxel
    box = (np.asarray(vol.shape) - 1) * sv
    start = _over_the_volume(start, local_centre, box)
    reach = int(np.floor(min(float(reach_um), float(np.linalg.norm(box))) / step))
    depths = 1 + (int(2 * np.linalg.norm(box) / step) + 1 if scan_normal else 0)
    starts = ((2 * reach + 1) ** 2 * int(turns) * (2 if mirror else 1)
              * (len(START_SCALES) if scale else 1) * depths)
    if starts > MAX_STARTS:
        raise ValueError(f"the section search would try about {starts} starting poses (more "
                         f"than {MAX_STARTS}): use a smaller reach_um (now {reach_um:g} µm, "
                         f"in steps of {step:g} µm) or fewer turns ({turns})")
    offsets = [(dy * step, dx * step) for dy in range(-reach, reach + 1)
               for dx in range(-reach, reach + 1)]
    offsets.sort(key=lambda o: abs(o[0]) + abs(o[1]))  # the start's own offset first
    placed = [start @ rigid_affine((360.0 * k / turns, 0.0, 0.0), (0.0, *offset),
                                   centre_um=local_centre)
              for offset in offsets for k in range(int(turns))]
    if mirror:  # the section's x axis reversed about its centre: the other face up
        flip = np.diag([1.0, 1.0, -1.0, 1.0])
        flip[2, 3] = 2 * local_centre[2]
        placed += [pose @ flip for pose in placed]
    if scale:
        placed = [pose @ _in_plane_scale(f, local_centre)
                  for f in START_SCALES for pose in placed]
    candidates = placed[1:]
    if scan_normal:
        candidates += [pose for base in placed
                       for pose in _along_normal(base, local_centre, box, step / 2)]
    affine, mi, n = _maximise(built, compose, start, callback, candidates,
                              screen=SECTION_SCREEN, keep=SECTION_KEEP,
                              parameters=7 if scale else 6)
    if not mi > 0:  # MI is 0 only when (nearly) every sample falls outside the volume
        raise ValueError("no pose tried puts the section inside the volume (mutual "
                         "information 0): check the voxel sizes of both, or place the "
                         "section over the volume (e.g. by landmarks) and fit again")
    return MutualInformationFit(affine, mi, n)
