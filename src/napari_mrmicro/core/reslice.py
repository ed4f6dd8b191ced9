"""Reslicing: sample a volume on an arbitrary oblique plane, slab or grid in physical space.

An output grid of ``out_shape`` at ``out_spacing_um`` has *local* coordinates
``index × out_spacing_um`` (µm); a 2-D grid on a 3-D volume lies in the local plane z = 0,
i.e. pixel ``(j, i)`` sits at ``(0, j·s_y, i·s_x)``. ``plane_affine`` maps local coordinates
to the volume's world coordinates (``index × spacing_um``, µm, ``(z, y, x)``), so it is the
same moving → fixed matrix the registration functions return for a section placed in a
volume. Interpolation: B-splines of ``order`` (Unser, IEEE Signal Process Mag 1999;16:22)
via ``scipy.ndimage.map_coordinates``; points outside the volume take ``cval``.
:func:`resample_onto_grid` instead takes two scanner placements (world affines), to bring
one scan onto another's grid (a field map onto an EPI).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_mrmicro.core.geometry import as_spacing, world_points
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.transforms import check_affine, rigid_affine


def _real_volume(volume, name="volume"):
    v = np.asarray(volume)
    if v.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2-D or 3-D, got {v.ndim}-D shape {v.shape}")
    if np.iscomplexobj(v):
        raise ValueError(f"{name} is complex; reslice its magnitude or phase (np.abs / "
                         "np.angle), or the real and imaginary parts separately")
    if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
    return v


def _spacing(spacing_um, ndim, name="spacing_um"):
    return np.asarray(as_spacing(spacing_um, ndim, name))


def _coefficients(volume, order):
    """Float32/float64 samples (order ≤ 1) or B-spline coefficients (order > 1)."""
    if order <= 1:
        return volume if volume.dtype.kind == "f" else volume.astype(np.float32)
    check_memory(volume.size * 8, f"order-{order} spline coefficients of a {volume.shape} "
                 "volume")
    return ndi.spline_filter(volume, order=order, output=np.float64)


def sample_volume(volume, spacing_um, points_um, order: int = 1, cval: float = 0.0):
    """Values of ``volume`` at ``(N, ndim)`` world points (µm), float32; ``cval`` outside."""
    v = _real_volume(volume)
    s = _spacing(spacing_um, v.ndim)
    p = np.asarray(points_um, dtype=float)
    if p.ndim != 2 or p.shape[1] != v.ndim:
        raise ValueError(f"points_um must be (N, {v.ndim}), got {p.shape}")
    coeffs = _coefficients(v, order)
    return ndi.map_coordinates(coeffs, (p / s).T, order=order, cval=cval, prefilter=False,
                               output=np.float32)


def oblique_plane_affine(centre_um, angles_deg, out_shape, out_spacing_um) -> np.ndarray:
    """The ``plane_affine`` that centres an ``out_shape`` grid at ``centre_um`` (µm, volume
    world) rotated by ``angles_deg`` (``(about_z, about_y, about_x)``, see
    ``core.transforms.rotation_matrix``); all zero gives a plane of constant z."""
    centre = np.asarray(centre_um, dtype=float)
    ndim = centre.size
    shape = tuple(int(n) for n in np.atleast_1d(out_shape))
    spacing = _spacing(out_spacing_um, len(shape), "out_spacing_um")
    local_centre = np.zeros(ndim)
    local_centre[ndim - len(shape):] = (np.asarray(shape) - 1) / 2 * spacing
    # Rotate about the grid centre, then move that centre onto centre_um.
    return rigid_affine(angles_deg, centre - local_centre, centre_um=local_centre)


def reslice(volume, spacing_um, plane_affine, out_shape, out_spacing_um, order: int = 1,
            cval: float = 0.0) -> np.ndarray:
    """Sample ``volume`` on an oblique plane (2-D ``out_shape``) or slab (3-D ``out_shape``).

    Parameters
    ----------
    volume : (z, y, x) or (y, x) real array
    spacing_um : float or sequence
        The volume's voxel size (µm).
    plane_affine : (ndim+1, ndim+1) array
        Output local coordinates (``index × out_spacing_um``; a 2-D grid at local z = 0) →
        volume world coordinates (µm); see :func:`oblique_plane_affine`.
    out_shape : tuple of int
        ``(ny, nx)`` for a plane, ``(nz, ny, nx)`` for a slab (average over axis 0 for a thick
        slice).
    out_spacing_um : float or sequence
        Output pixel size (µm), one per ``out_shape`` axis: the physical resolution.
    order : int
        Interpolation order, 0 (nearest; keeps the dtype, for labels) to 5. Default linear.
    cval : float
        Value outside the volume.

    Returns
    -------
    ndarray of ``out_shape``: float32, or ``volume.dtype`` for ``order=0``.
    """
    v = _real_volume(volume)
    s = _spacing(spacing_um, v.ndim)
    a = check_affine(plane_affine, v.ndim, "plane_affine")
    shape = tuple(np.atleast_1d(out_shape))
    if not 1 <= len(shape) <= v.ndim or any(int(n) != n or n < 1 for n in shape):
        raise ValueError(f"out_shape must hold 1 to {v.ndim} positive integers, got "
                         f"{out_shape!r}")
    shape = tuple(int(n) for n in shape)
    out_s = _spacing(out_spacing_um, len(shape), "out_spacing_um")
    if order not in range(6):
        raise ValueError(f"order must be an integer 0..5, got {order!r}")
    dtype = v.dtype if order == 0 else np.float32
    plane_points = int(np.prod(shape[-2:])) if len(shape) > 1 else shape[0]
    check_memory(plane_points * v.ndim * 8 * 3 + int(np.prod(shape)) * np.dtype(dtype).itemsize,
                 f"reslicing to {shape}")
    coeffs = _coefficients(v, order) if order > 0 else v
    # Index-space matrix: local µm → volume voxel index.
    to_index = np.diag(np.append(1 / s, 1.0)) @ a
    lead = len(shape) - 2 if len(shape) >= 2 else 0
    in_plane = np.meshgrid(*[np.arange(n) * d for n, d in zip(shape[lead:], out_s[lead:])],
                           indexing="ij")
    local = np.zeros((v.ndim, in_plane[0].size))
    for k, g in enumerate(in_plane):
        local[v.ndim - len(in_plane) + k] = g.ravel()
    out = np.empty(shape, dtype=dtype)
    planes = out.reshape((-1,) + shape[lead:])
    for k in range(planes.shape[0]):
        if lead:
            local[v.ndim - len(shape)] = k * out_s[0]
        coords = to_index[:-1, :-1] @ local + to_index[:-1, -1:]
        planes[k] = ndi.map_coordinates(coeffs, coords, order=order, cval=cval,
                                        prefilter=False).reshape(shape[lead:])
    return out


def resample_onto_grid(values, values_affine_um, shape, affine_um) -> tuple:
    """A volume placed by ``values_affine_um`` resampled trilinearly onto the grid of
    ``shape`` placed by ``affine_um`` (voxel index -> world µm, both).

    Returns
    -------
    resampled : ndarray of float64, ``shape``
        The volume at each voxel centre of the grid; 0 where it does not reach.
    covered : ndarray of bool, ``shape``
        Where it reaches.
    """
    shape = tuple(int(n) for n in shape)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"),
                     -1).reshape(-1, len(shape))
    inverse = np.linalg.inv(np.asarray(values_affine_um, np.float64))
    inside = world_points(inverse, world_points(affine_um, index)).T
    out = ndi.map_coordinates(np.asarray(values, np.float64), inside, order=1,
                              cval=np.nan).reshape(shape)
    covered = np.isfinite(out)
    return np.where(covered, out, 0.0), covered
