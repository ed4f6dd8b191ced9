"""Susceptibility from a field map: the scanner's B0 map (Hz) or a total field (ppm).

Scanners write B0 field maps (ParaVision's FieldMap scans store Hz, ``VisuCoreDataUnits
<Hz>``); such a map is the total field of the QSM pipeline without the echoes, so χ follows
from background removal and dipole inversion alone (:func:`qsm_from_field`). A field in Hz
is ``Δf = γ̄·B0·field_ppm·1e-6``: ppm = Hz / Larmor frequency (MHz).

B0 points along the magnet's bore, the S axis of the scanner's RAS+ world (napari world
axis 0). :func:`b0_direction_from_affine` maps it into a volume's array axes through the
volume's data-to-world affine, so an oblique slab gets its oblique B0.
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core._masks import as_mask
from napari_mrmicro.core.qsm.inversion import as_field
from napari_mrmicro.core.qsm.mask import erode
from napari_mrmicro.core.qsm.pipeline import check_choices, local_field_and_chi

FIELD_UNITS = ("ppm", "Hz")


def field_map_mask(field, spacing_um=None, erode_um: float = 0.0) -> np.ndarray:
    """Where a scanner's field map holds a field: finite and non-zero (scanners zero the
    map where they had no signal), eroded by a ball of ``erode_um`` µm (needs
    ``spacing_um``). The rim is the least reliable part: on ParaVision scan 8 (a rodent
    head, 234 µm voxels) the map jumps between neighbours next to air (-640 Hz beside 0)
    and gives 22 voxels of |χ| up to 6 ppm; eroded by 250 µm, none above 0.94 ppm."""
    field = np.asarray(field)
    mask = np.isfinite(field) & (field != 0)
    if not mask.any():
        raise ValueError("the field map is zero or not finite everywhere: no mask")
    return erode(mask, erode_um, spacing_um)


def b0_direction_from_affine(affine, spacing_um=None) -> tuple:
    """B0 as a unit vector in array axes ``(z, y, x)`` from a data-to-world affine.

    ``affine`` maps physical array coordinates (µm along the array axes, i.e. after the
    voxel scale, as napari's ``layer.affine``) to world coordinates in napari's order
    (S, A, R): a 3×3 linear part or a 4×4 homogeneous matrix. B0 is world axis 0 (S); in
    array axes it is ``A⁻¹·(1, 0, 0)``, normalised. Give ``spacing_um`` when ``affine``
    maps voxel indices instead (it includes the voxel scale, as ``Volume.affine_um``):
    the direction is then ``diag(spacing)·A⁻¹·(1, 0, 0)``.
    """
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape == (4, 4):
        matrix = matrix[:3, :3]
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"affine must be a finite 3×3 or 4×4 matrix, got shape {matrix.shape}")
    try:
        direction = np.linalg.solve(matrix, np.array([1.0, 0.0, 0.0]))
    except np.linalg.LinAlgError:
        raise ValueError("affine is singular: it places the volume on a plane") from None
    if spacing_um is not None:
        direction *= np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    direction /= np.linalg.norm(direction)
    return tuple(float(v) for v in direction)


def b0_direction_of_grid(affine_um, spacing_um) -> tuple | None:
    """B0 in array axes from a grid's voxel-index-to-world affine (voxel size included, as
    ``Volume.affine_um``), or None when the grid's axes run along the world's (S, A, R) in
    that order: then the acquisition's stated ``b0_direction`` applies."""
    matrix = np.asarray(affine_um, dtype=np.float64)
    if matrix.shape != (4, 4):
        return None
    linear = matrix[:3, :3] / np.asarray(spacing_um, dtype=np.float64)[None, :]
    if np.allclose(linear, np.eye(3), atol=1e-6):
        return None
    return b0_direction_from_affine(matrix, spacing_um)


def field_to_ppm(field, field_unit: str = "ppm", larmor_hz: float | None = None) -> np.ndarray:
    """A field map in ppm (float32): ``Hz / larmor_hz · 1e6``, or ppm as it is."""
    if field_unit not in FIELD_UNITS:
        raise ValueError(f"field_unit must be one of {FIELD_UNITS}, got {field_unit!r}")
    field = as_field(field, "field", "qsm_from_field")
    if field_unit == "ppm":
        return field
    if larmor_hz is None or not (np.isfinite(larmor_hz) and larmor_hz > 0):
        raise ValueError(f"larmor_hz (the Larmor frequency in Hz, e.g. 400.3078e6 at 9.4 T) "
                         f"is needed for a field in Hz, got {larmor_hz!r}")
    return (field * np.float32(1e6 / float(larmor_hz))).astype(np.float32)


def qsm_from_field(field, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
                   field_unit: str = "ppm", larmor_hz: float | None = None,
                   method: str = "tv", background: str = "lbv", **options):
    """Susceptibility (ppm, referenced to each mask compartment's mean) from a field map.

    Background removal (LBV by default; Zhou et al., NMR Biomed 2014;27:312) and dipole
    inversion (TV-ADMM by default; Bilgic et al., Magn Reson Med 2014;72:1444), as in
    :func:`~napari_mrmicro.core.qsm.pipeline.qsm_stages` after its field fit.

    Parameters
    ----------
    field : ndarray (z, y, x)
        Total field, in ``field_unit``.
    mask : ndarray of bool (z, y, x)
        Where the field is reliable (the specimen, signal voids out).
    spacing_um : float or 3 floats
    b0_direction : 3-vector
        In array axes ``(z, y, x)``; see :func:`b0_direction_from_affine`.
    field_unit : {"ppm", "Hz"}
    larmor_hz : float, optional
        The Larmor frequency (Hz), needed for a field in Hz.
    method : {"tv", "tkd", "tikhonov", "medi"}
    background : {"lbv", "vsharp", "pdf"}
    **options
        ``radii_um``, ``tkd_threshold``, ``lam``, ``max_iter``, ``report``: as for
        :func:`~napari_mrmicro.core.qsm.pipeline.local_field_and_chi`.

    Returns
    -------
    (chi_ppm, local_field_ppm, local_mask)
        float32, float32 and bool (z, y, x).
    """
    check_choices(method, background, where="qsm_from_field")
    total = field_to_ppm(field, field_unit, larmor_hz)
    if mask is None:
        raise ValueError("qsm_from_field: mask is needed (where the field map is reliable)")
    mask = as_mask(mask, "qsm_from_field: the mask")
    if mask.shape != total.shape:
        raise ValueError(f"qsm_from_field: mask {mask.shape} does not match the field "
                         f"{total.shape}")
    if not np.all(np.isfinite(total[mask])):
        raise ValueError("qsm_from_field: the field has NaN or infinite values in the mask")
    total = np.where(mask, total, np.float32(0))
    local, local_mask, chi = local_field_and_chi(total, mask, spacing_um, b0_direction,
                                                 method, background, **options)
    return chi, local, local_mask
