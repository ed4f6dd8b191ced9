"""Cartesian undersampling masks for compressed sensing.

3-D Cartesian MR microscopy acquires whole readout lines, so masks choose phase-encode
positions: every axis but ``readout_axis`` (axes of length 1 are ignored), the same for each
readout position. A fully sampled central box (``calib``) keeps the contrast and serves
coil calibration. Both masks have exactly ``round(N / acceleration)`` sampled phase-encode
positions (N = number of phase-encode positions).

- :func:`variable_density_mask`: independent random positions drawn with a density
  ∝ (1 − ρ)^power, ρ the normalised k-space radius (Lustig, Donoho & Pauly, Magn Reson Med
  2007;58:1182).
- :func:`poisson_disc_mask`: variable-density Poisson-disc sampling, random positions no
  closer than a radius that grows with ρ, which spreads the aliasing as incoherent noise
  (Vasanawala et al., Radiology 2010;256:607; Lustig & Pauly, Magn Reson Med 2010;64:457).
"""

from __future__ import annotations

import math

import numpy as np


def _plan(shape, acceleration, calib, readout_axis, func):
    shape = tuple(int(n) for n in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"{func}: shape must be positive, got {shape}")
    ndim = len(shape)
    skip = set() if readout_axis is None else {int(readout_axis) % ndim}
    axes = tuple(a for a in range(ndim) if a not in skip and shape[a] > 1)
    if not axes:
        raise ValueError(f"{func}: shape {shape} has no phase-encode axis to undersample")
    plane = tuple(shape[a] for a in axes)
    total = math.prod(plane)
    if not (isinstance(acceleration, (int, float)) and acceleration >= 1):
        raise ValueError(f"{func}: acceleration must be a number >= 1, got {acceleration!r}")
    target = max(int(round(total / acceleration)), 1)
    calib = np.broadcast_to(np.asarray(calib, dtype=int), (len(axes),))
    if np.any(calib < 0):
        raise ValueError(f"{func}: calib must be >= 0, got {calib}")
    box = tuple(slice(n // 2 - min(c, n) // 2, n // 2 - min(c, n) // 2 + min(c, n))
                for n, c in zip(plane, calib))
    calibrated = np.zeros(plane, dtype=bool)
    calibrated[box] = True
    if calibrated.sum() > target:
        raise ValueError(f"{func}: the {tuple(calib)} calibration region alone samples "
                         f"{calibrated.sum()} of {total} positions, more than the "
                         f"{target} that acceleration {acceleration} allows")
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in plane], indexing="ij")
    rho = np.sqrt(sum(g**2 for g in grids))
    return shape, axes, plane, target, calibrated, rho


def _expand(mask_plane, shape, axes):
    view = [1] * len(shape)
    for a, n in zip(axes, mask_plane.shape):
        view[a] = n
    return np.broadcast_to(mask_plane.reshape(view), shape).copy()


def _fix_count(mask, calibrated, target, weight, rng):
    """Drop or add random non-calibration positions (added with probability ∝ weight) so the
    mask samples exactly ``target`` positions."""
    extra = int(mask.sum()) - target
    if extra > 0:
        removable = np.flatnonzero(mask & ~calibrated)
        mask.flat[rng.choice(removable, extra, replace=False)] = False
    elif extra < 0:
        free = np.flatnonzero(~mask)
        p = weight.ravel()[free]
        mask.flat[rng.choice(free, -extra, replace=False, p=p / p.sum())] = True
    return mask


def variable_density_mask(shape, acceleration: float, calib=24, power: float = 2.0,
                          readout_axis: int | None = -1, seed: int | None = 0) -> np.ndarray:
    """Random variable-density mask of ``shape`` (bool), density ∝ (1 − ρ/ρ_max)^power
    outside the ``calib`` box (one size for all phase-encode axes, or one per axis)."""
    func = "variable_density_mask"
    if not power >= 0:
        raise ValueError(f"{func}: power must be >= 0, got {power!r}")
    shape, axes, plane, target, calibrated, rho = _plan(shape, acceleration, calib,
                                                        readout_axis, func)
    rng = np.random.default_rng(seed)
    density = (1 - rho / (rho.max() * 1.0001)) ** power
    mask = calibrated.copy()
    free = np.flatnonzero(~calibrated)
    need = target - int(calibrated.sum())
    if need > 0:
        p = density.ravel()[free]
        mask.flat[rng.choice(free, need, replace=False, p=p / p.sum())] = True
    return _expand(mask, shape, axes)


def _poisson_disc(radius, calibrated, rng):
    """Dart throwing in random order: keep a position if no kept one lies closer than its
    radius (radius in grid units, per position)."""
    plane = radius.shape
    reach = int(math.ceil(radius.max()))
    padded = np.zeros([n + 2 * reach for n in plane], dtype=bool)
    inner = tuple(slice(reach, reach + n) for n in plane)
    disks = {}
    offsets = np.meshgrid(*[np.arange(-reach, reach + 1)] * len(plane), indexing="ij")
    distance = np.sqrt(sum(o.astype(float) ** 2 for o in offsets))
    for flat in rng.permutation(np.flatnonzero(~calibrated)):
        point = np.unravel_index(flat, plane)
        r = round(float(radius[point]), 1)
        disk = disks.get(r)
        if disk is None:
            disk = disks[r] = distance < r
        window = tuple(slice(p, p + 2 * reach + 1) for p in point)
        if not np.any(padded[window] & disk):
            padded[tuple(p + reach for p in point)] = True
    padded[inner] |= calibrated
    return padded[inner].copy()


def poisson_disc_mask(shape, acceleration: float, calib=24, variable_density: float = 1.0,
                      readout_axis: int | None = -1, seed: int | None = 0,
                      max_tries: int = 8) -> np.ndarray:
    """Variable-density Poisson-disc mask of ``shape`` (bool).

    The exclusion radius is s·(1 + variable_density·ρ) grid steps; s is tuned (at most
    ``max_tries`` dart-throwing passes) until the count is within 2 % of the target, which
    random removals or additions then meet exactly.
    """
    func = "poisson_disc_mask"
    if not variable_density >= 0:
        raise ValueError(f"{func}: variable_density must be >= 0, got {variable_density!r}")
    shape, axes, plane, target, calibrated, rho = _plan(shape, acceleration, calib,
                                                        readout_axis, func)
    rng = np.random.default_rng(seed)
    profile = 1 + variable_density * rho
    d = len(plane)
    # Random sequential packing keeps ≈ 0.55 (2-D) of the area in disks of diameter r.
    density = target / math.prod(plane)
    scale = (0.55 * 4 / math.pi / density) ** 0.5 / np.mean(profile) if d == 2 \
        else 0.75 / density / np.mean(profile)
    best = None
    for _ in range(int(max_tries)):
        mask = _poisson_disc(np.maximum(scale * profile, 1.0), calibrated, rng)
        count = int(mask.sum())
        if best is None or abs(count - target) < abs(int(best.sum()) - target):
            best = mask
        if abs(count - target) <= 0.02 * target:
            break
        scale *= (count / target) ** (1 / d)
    return _expand(_fix_count(best, calibrated, target, 1 / profile**d, rng), shape, axes)


def acquired_or_retrospective_mask(kspace, acceleration: float, seed: int | None = 0):
    """The k-space's own sampling mask, or, for fully sampled data and ``acceleration > 1``,
    a Poisson-disc mask that undersamples it retrospectively (calibration region of up to
    24 lines, at most an eighth of the smaller phase-encode extent); None when neither."""
    if kspace.sampled is not None or not acceleration > 1:
        return kspace.sampled
    shape = kspace.data.shape[-3:]
    readout = kspace.acquisition.readout_axis
    phase_encode = [n for axis, n in enumerate(shape) if axis != readout]
    return poisson_disc_mask(shape, acceleration, readout_axis=readout - 3, seed=seed,
                             calib=max(4, min(24, min(phase_encode) // 8)))
