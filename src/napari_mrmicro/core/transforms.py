"""Homogeneous affine transforms in physical space (µm, napari world order ``(z, y, x)``).

Convention (binding for every registration function in ``core``): an *affine* is a
``(ndim+1, ndim+1)`` float64 matrix that maps **moving world coordinates (µm) to fixed world
coordinates (µm)**, column vectors ``(z, y, x, 1)``. World coordinates of a volume are
``index × spacing_um`` (voxel centres; voxel (0, 0, 0) at 0 µm), napari's world frame for a
layer with ``scale=spacing_um`` and no translate.

How a dock overlays the moving layer on the fixed one: keep the moving layer's
``scale = spacing_um`` and set its ``affine`` to the matrix; napari composes data → world as
``affine @ (scale · index + translate)``. When the layers carry translates ``t_m``, ``t_f``
(their origins), the world → world matrix is ``T(t_f) · A · T(−t_m)`` with
``T = translation_affine``; the moving layer keeps ``translate = t_m``.
"""

from __future__ import annotations

import numpy as np


def check_affine(affine, ndim: int | None = None, name: str = "affine") -> np.ndarray:
    """``affine`` as a float64 homogeneous matrix; raises ValueError naming ``name`` when it
    is not square ``(ndim+1, ndim+1)``, not finite, singular or its last row is not
    ``(0, …, 0, 1)``."""
    a = np.asarray(affine, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] not in (3, 4):
        raise ValueError(f"{name} must be a 3×3 (2-D) or 4×4 (3-D) homogeneous matrix, "
                         f"got shape {a.shape}")
    if ndim is not None and a.shape[0] != ndim + 1:
        raise ValueError(f"{name} must be {ndim + 1}×{ndim + 1} for {ndim}-D data, "
                         f"got {a.shape[0]}×{a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    bottom = np.zeros(a.shape[0])
    bottom[-1] = 1.0
    if not np.allclose(a[-1], bottom, atol=1e-12):
        raise ValueError(f"{name}: last row must be {tuple(bottom)}, got {tuple(a[-1])}")
    if abs(np.linalg.det(a[:-1, :-1])) < 1e-12 * np.abs(a[:-1, :-1]).max() ** (a.shape[0] - 1):
        raise ValueError(f"{name} is singular (its linear part has determinant ~0)")
    return a


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation matrix acting on ``(z, y, x)`` (3-D) or ``(y, x)`` (2-D) column vectors.

    ``angles_deg``: one angle in 2-D (counter-clockwise from +x towards +y); three angles
    ``(about_z, about_y, about_x)`` in 3-D, applied as ``R = Rz · Ry · Rx`` (right-handed
    rotations about the z, y and x axes).
    """
    a = np.radians(np.atleast_1d(np.asarray(angles_deg, dtype=float)))
    if a.shape == (1,):
        c, s = np.cos(a[0]), np.sin(a[0])
        return np.array([[c, s], [-s, c]])  # (y, x): x→y is the positive sense
    if a.shape != (3,):
        raise ValueError(f"angles_deg must hold 1 (2-D) or 3 (3-D) angles, got {a.shape}")
    cz, sz = np.cos(a[0]), np.sin(a[0])
    cy, sy = np.cos(a[1]), np.sin(a[1])
    cx, sx = np.cos(a[2]), np.sin(a[2])
    # In (z, y, x) component order; about z: x→y, about y: z→x, about x: y→z.
    rz = np.array([[1, 0, 0], [0, cz, sz], [0, -sz, cz]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rx = np.array([[cx, sx, 0], [-sx, cx, 0], [0, 0, 1]])
    return rz @ ry @ rx


def translation_affine(translation_um) -> np.ndarray:
    """Homogeneous matrix of a pure translation (µm)."""
    t = np.asarray(translation_um, dtype=float)
    out = np.eye(t.size + 1)
    out[:-1, -1] = t
    return out


def rigid_affine(angles_deg, translation_um, centre_um=None, scale: float = 1.0) -> np.ndarray:
    """Homogeneous matrix of ``x ↦ scale · R (x − c) + c + t`` (a rotation about ``centre_um``,
    default the origin, then a translation; µm). ``R`` is :func:`rotation_matrix`."""
    r = rotation_matrix(angles_deg)
    ndim = r.shape[0]
    t = np.broadcast_to(np.asarray(translation_um, dtype=float), (ndim,))
    c = np.zeros(ndim) if centre_um is None else np.asarray(centre_um, dtype=float)
    out = np.eye(ndim + 1)
    out[:ndim, :ndim] = scale * r
    out[:ndim, ndim] = c + t - scale * r @ c
    return out


def apply_affine(affine, points_um) -> np.ndarray:
    """Map ``(N, ndim)`` points (µm) through a homogeneous ``affine``; returns ``(N, ndim)``."""
    a = np.asarray(affine, dtype=float)
    p = np.asarray(points_um, dtype=float)
    ndim = a.shape[0] - 1
    if p.ndim != 2 or p.shape[1] != ndim:
        raise ValueError(f"points_um must be (N, {ndim}) for a {ndim + 1}×{ndim + 1} affine, "
                         f"got {p.shape}")
    return p @ a[:ndim, :ndim].T + a[:ndim, ndim]


def rotation_angle_deg(affine) -> float:
    """Angle (degrees) of the rotation in ``affine``'s linear part, after removing scale and
    shear by the polar decomposition (nearest rotation, via the SVD)."""
    a = np.asarray(affine, dtype=float)
    u, _, vt = np.linalg.svd(a[:-1, :-1])
    r = u @ vt
    ndim = r.shape[0]
    if ndim == 2:
        return float(np.degrees(abs(np.arctan2(r[0, 1], r[0, 0]))))
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def box_corners_um(shape, spacing_um) -> np.ndarray:
    """The ``2**ndim`` corner voxel centres of a grid, ``(2**ndim, ndim)`` µm — the points
    whose displacement bounds an affine's error over the whole volume."""
    ext = (np.asarray(shape, dtype=float) - 1) * np.asarray(spacing_um, dtype=float)
    grids = np.meshgrid(*[[0.0, e] for e in ext], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def displacement_error_um(affine, reference_affine, points_um) -> np.ndarray:
    """Distance (µm) between where ``affine`` and ``reference_affine`` send each point."""
    return np.linalg.norm(apply_affine(affine, points_um)
                          - apply_affine(reference_affine, points_um), axis=1)
