"""World space: voxel grids placed in µm, RAS+, in napari's axis order.

Convention (DESIGN.md "World space"): world coordinates are µm in the RAS+ frame of NIfTI
(x increases to the subject's Right, y to Anterior, z to Superior), listed in napari's
axis order, so world axis 0 is S, 1 is A and 2 is R for an unrotated axial volume. A
*world affine* is an ``(n+1, n+1)`` matrix taking a voxel index ``(z, y, x, 1)`` to world
µm; its column norms are the voxel sizes. napari draws a layer as ``affine ∘ scale``
(``scale`` the voxel size, ``affine`` the rotation and translation left over), which
:func:`split_scale` computes.

NIfTI stores the same transform the other way round: voxel ``(i, j, k, 1)`` (x fastest) to
``(x, y, z)`` RAS+ in the header's spatial unit (NIfTI-1 header, ``nifti1.h``, method 2/3:
qform and sform). :func:`from_xyz_affine` and :func:`to_xyz_affine` convert between the
two by reversing the axis order on both sides and rescaling lengths.

Every core function that takes a voxel size validates it with :func:`as_spacing`: one
positive number for isotropic voxels, or one per axis in ``(z, y, x)`` order, µm.
"""

from __future__ import annotations

import math

import numpy as np

#: ParaVision/DICOM subject coordinates are LPS+ (x to the Left, y Posterior, z Superior);
#: RAS+ negates x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def as_spacing(spacing_um, ndim: int = 3, name: str = "spacing_um") -> tuple[float, ...]:
    """The one voxel-size contract of core: ``ndim`` positive finite floats (µm).

    Parameters
    ----------
    spacing_um : float or sequence of float
        One number (isotropic) or one per axis, ``(z, y, x)`` order.
    ndim : int
        Number of axes the caller needs.
    name : str
        Parameter name used in the error message.

    Raises
    ------
    ValueError
        Naming ``name``, when the value is not numbers, has another length than 1 or
        ``ndim``, or holds a value that is not positive and finite.
    """
    try:
        values = np.asarray(spacing_um, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or {ndim} numbers in µm, "
                         f"got {spacing_um!r}") from None
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise ValueError(f"{name} must be a number or {ndim} numbers (one per axis, "
                         f"{'(z, y, x)' if ndim == 3 else 'napari order'}) in µm, got "
                         f"{spacing_um!r}")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"{name} must be positive and finite (µm), got {spacing_um!r}")
    return tuple(float(v) for v in values)


def check_world_affine(affine_um, ndim: int, name: str = "affine_um") -> np.ndarray:
    """``affine_um`` as a finite, invertible ``(ndim+1, ndim+1)`` float64 matrix."""
    a = np.asarray(affine_um, dtype=float)
    if a.shape != (ndim + 1, ndim + 1):
        raise ValueError(f"{name} must be {ndim + 1}×{ndim + 1} for {ndim} spatial axes, "
                         f"got shape {a.shape}")
    bottom = np.zeros(ndim + 1)
    bottom[-1] = 1.0
    if not np.all(np.isfinite(a)) or not np.allclose(a[-1], bottom):
        raise ValueError(f"{name} must be finite with last row {tuple(bottom)}")
    if abs(np.linalg.det(a[:-1, :-1])) <= 1e-12 * max(np.abs(a[:-1, :-1]).max(), 1e-300) ** ndim:
        raise ValueError(f"{name} is singular")
    return a


def stored_affine(value, ndim: int):
    """A world affine a file stored as nested lists (our JSON payloads), checked; None when
    absent or not a valid ``(ndim+1, ndim+1)`` transform."""
    if value is None:
        return None
    try:
        return check_world_affine(np.asarray(value, dtype=float), ndim)
    except (TypeError, ValueError):
        return None


def grid_affine(spacing_um, origin_um=None) -> np.ndarray:
    """World affine of an axis-aligned grid: ``diag(spacing)`` plus the first voxel's centre."""
    spacing = as_spacing(spacing_um, len(np.atleast_1d(spacing_um)))
    n = len(spacing)
    out = np.eye(n + 1)
    out[range(n), range(n)] = spacing
    if origin_um is not None:
        out[:n, n] = np.broadcast_to(np.asarray(origin_um, dtype=float), (n,))
    return out


def _reverse(n: int) -> np.ndarray:
    """Homogeneous permutation reversing the first ``n`` axes."""
    p = np.eye(n + 1)
    p[:n, :n] = np.eye(n)[::-1]
    return p


def from_xyz_affine(affine_xyz, unit_um: float = 1e3) -> np.ndarray:
    """NIfTI-style affine (voxel ``(i, j, k)`` -> RAS ``(x, y, z)`` in a unit) to a world
    affine (voxel ``(z, y, x)`` -> µm ``(S, A, R)``).

    ``unit_um`` is µm per unit of the input (1000 for mm). Works for any ``n``: the first
    ``n`` axes are reversed on both sides.
    """
    a = np.asarray(affine_xyz, dtype=float)
    n = a.shape[0] - 1
    p = _reverse(n)
    out = p @ a @ p
    out[:n, :] *= unit_um
    return out


def to_xyz_affine(affine_um, unit_um: float = 1e3) -> np.ndarray:
    """Inverse of :func:`from_xyz_affine`: a world affine as NIfTI's ``(x, y, z)`` affine in
    the unit ``unit_um`` µm (1000: mm)."""
    a = np.array(affine_um, dtype=float)
    n = a.shape[0] - 1
    a[:n, :] /= unit_um
    p = _reverse(n)
    return p @ a @ p


def voxel_sizes(affine_um) -> np.ndarray:
    """Voxel size along each array axis: the column norms of the linear part."""
    a = np.asarray(affine_um, dtype=float)
    return np.linalg.norm(a[:-1, :-1], axis=0)


def split_scale(affine_um) -> tuple[tuple[float, ...], np.ndarray]:
    """``(scale, rest)`` with ``affine_um = rest @ diag(scale, 1)``: what napari's layer
    ``scale`` (voxel size) and ``affine`` (rotation, reflection, translation) must be."""
    a = np.asarray(affine_um, dtype=float)
    scale = voxel_sizes(a)
    rest = a.copy()
    rest[:-1, :-1] = a[:-1, :-1] / scale[None, :]
    return tuple(float(s) for s in scale), rest


def axis_directions(affine_um) -> list[tuple[str, float]]:
    """Where each array axis runs in the world: the nearest RAS+ direction in napari's
    order (``S``/``I``, ``A``/``P``, ``R``/``L``; a 2-D image's plane is A-R) and its angle
    from it in degrees (0 for an axis-aligned grid; an oblique slab's tilt otherwise)."""
    affine = np.asarray(affine_um, dtype=float)
    n = affine.shape[0] - 1
    positive, negative = "SAR"[3 - n:], "IPL"[3 - n:]
    out = []
    for column in affine[:n, :n].T:
        k = int(np.argmax(np.abs(column)))
        cosine = min(1.0, abs(column[k]) / float(np.linalg.norm(column)))
        out.append(((positive if column[k] > 0 else negative)[k],
                    math.degrees(math.acos(cosine))))
    return out


def is_axis_aligned(affine_um, atol: float = 1e-9) -> bool:
    """True when the linear part is diagonal with positive entries (no rotation or flip)."""
    lin = np.asarray(affine_um, dtype=float)[:-1, :-1]
    off = lin - np.diag(np.diag(lin))
    return bool(np.all(np.abs(off) <= atol * np.abs(lin).max()) and np.all(np.diag(lin) > 0))


def embed_affine(affine_um, ndim: int) -> np.ndarray:
    """An ``n``-axis affine acting on the last ``n`` of ``ndim`` axes (identity on the
    leading ones), as napari needs for an ``(echo, z, y, x)`` layer."""
    a = np.asarray(affine_um, dtype=float)
    n = a.shape[0] - 1
    out = np.eye(ndim + 1)
    out[ndim - n:ndim, ndim - n:ndim] = a[:n, :n]
    out[ndim - n:ndim, ndim] = a[:n, n]
    return out


def corner_points(shape) -> np.ndarray:
    """Indices ``(2**n, n)`` of the corner voxel centres of a grid of ``shape``."""
    shape = tuple(int(s) for s in shape)
    grids = np.meshgrid(*[[0, s - 1] for s in shape], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(float)


def world_points(affine_um, index) -> np.ndarray:
    """World µm of voxel indices ``(N, n)`` under ``affine_um``."""
    a = np.asarray(affine_um, dtype=float)
    idx = np.asarray(index, dtype=float)
    return idx @ a[:-1, :-1].T + a[:-1, -1]


def regridded_affine(affine_um, shape, new_shape, axes=None) -> np.ndarray:
    """The world affine of a centred regridding (zero-fill interpolation, k-space
    cropping) of a grid: the same field of view sampled by ``new_shape`` voxels.

    In the DESIGN.md k-space convention the image centre is voxel ``N // 2`` on every axis,
    so voxel ``N' // 2`` of the new grid stays on the world point of voxel ``N // 2`` and
    the voxel size scales by ``N / N'``. ``axes`` limits the change to some axes (2-D
    multi-slice: the slice axis is not regridded).
    """
    a = np.asarray(affine_um, dtype=float)
    n = a.shape[0] - 1
    old = np.asarray(shape, dtype=float)[-n:]
    new = np.asarray(new_shape, dtype=float)[-n:]
    if axes is not None:
        keep = np.ones(n, bool)
        keep[[ax % n for ax in axes]] = False
        new = np.where(keep, old, new)
    factor = old / new
    centre_old, centre_new = np.floor(old / 2), np.floor(new / 2)
    step = np.eye(n + 1)
    step[range(n), range(n)] = factor
    step[:n, n] = centre_old - centre_new * factor
    return a @ step
