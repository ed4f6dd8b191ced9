"""Morphology-enabled dipole inversion (MEDI): TV that spares the magnitude's edges.

Minimises ``½‖W(Dχ − f)‖² + λ‖M_G ⊙ ∇χ‖₁`` (de Rochefort et al., Magn Reson Med
2010;63:194; Liu et al., Magn Reson Med 2011;66:777 and NeuroImage 2012;59:2560):

* ``M_G`` is the binary morphology mask: 0 on the gradient components where the
  magnitude image has an edge (χ may jump there), 1 elsewhere. As in the MEDI toolbox,
  the edge threshold is chosen so that the number of edge components of ``∇(magnitude·mask)``
  equals ``edge_percentage`` (0.9) × the number of mask voxels (three components per voxel,
  so about 30 % of them are edges).
* ``W`` is the data weight: 1/σ of the field when ``noise_std_ppm`` is given (MEDI's
  ``dataterm_mask``), else the magnitude (∝ 1/σ for a field from one echo pair), each
  scaled to a mean of 1 in the mask; 1 without either.

MEDI solves the nonlinear-phase version by Gauss–Newton with conjugate gradients; here the
linear field fidelity is solved by the ADMM of :mod:`.tv` (the weights enter its y- and
z-updates, so each iteration stays closed-form: two FFT pairs). Consequently ``lam`` is the
TV weight of :func:`~.tv.invert_tv` (ppm of field), not MEDI's λ = 1000 on radians.
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_iteration, check_positive, check_weight, gradient, result)
from napari_mrmicro.core.qsm.tv import ADMM_VOLUMES, admm_tv


def morphology_mask(magnitude, mask, spacing_um, edge_percentage: float = 0.9) -> np.ndarray:
    """MEDI's binary gradient weight ``M_G`` (3, z, y, x) float32: 0 on the largest
    ``edge_percentage·count(mask)`` components of ``|∇(magnitude·mask)|``, 1 elsewhere."""
    spacing = np.asarray(spacing_um, dtype=np.float64)
    grad = np.abs(gradient(np.where(mask, magnitude, np.float32(0)).astype(np.float32),
                           (spacing / spacing.min()).astype(np.float32)))
    edges = min(int(round(edge_percentage * np.count_nonzero(mask))), grad.size)
    weight = np.ones(grad.shape, np.float32)
    if edges > 0:
        flat = grad.ravel()
        threshold = np.partition(flat, flat.size - edges)[flat.size - edges]
        weight[grad > threshold] = 0  # strictly: ties at the threshold (flat regions) stay 1
    return weight


def invert_medi(local_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
                magnitude=None, noise_std_ppm=None, lam: float = 1e-3,
                edge_percentage: float = 0.9, rho: float | None = None, mu: float = 1.0,
                max_iter: int = 250, tol: float = 1e-3, callback=None, pad=0) -> np.ndarray:
    """Susceptibility (ppm) by morphology-enabled (edge-sparing, noise-weighted) TV.

    Parameters
    ----------
    local_field_ppm, mask, spacing_um, b0_direction, pad
        As for :func:`~.tkd.invert_tkd`.
    magnitude : ndarray (z, y, x), optional
        Magnitude image (e.g. the first echo); its edges are not penalized. Without it
        (and without ``noise_std_ppm``) the method is :func:`~.tv.invert_tv`.
    noise_std_ppm : ndarray (z, y, x), optional
        σ of the field (ppm) per voxel, > 0 in the mask; the data weight is 1/σ.
    lam, rho, mu, max_iter, tol, callback
        As for :func:`~.tv.invert_tv`.
    edge_percentage : float
        Edge components per mask voxel (MEDI's ``percentage``, 0.9).

    Returns
    -------
    ndarray of float32
        χ in ppm, zero outside the mask, mean not referenced.
    """
    where = "invert_medi"
    field, mask, spacing = check_inputs(local_field_ppm, mask, spacing_um, where)
    lam = check_positive(lam, "lam", where)
    rho = 100 * lam if rho is None else check_positive(rho, "rho", where)
    mu = check_positive(mu, "mu", where)
    edge_percentage = check_positive(edge_percentage, "edge_percentage", where,
                                     allow_zero=True)
    if edge_percentage > 3:
        raise ValueError(f"{where}: edge_percentage counts edge components per mask voxel "
                         f"(at most 3), got {edge_percentage!r}")
    check_iteration(max_iter, tol, callback, where)
    grid = Grid(field.shape, spacing, b0_direction, pad, where)
    grid.check_memory(ADMM_VOLUMES + 6)
    weight = mask.astype(np.float32)
    if noise_std_ppm is not None:
        sigma = check_weight(noise_std_ppm, field.shape, "noise_std_ppm", where)
        if np.any(sigma[mask] <= 0):
            raise ValueError(f"{where}: noise_std_ppm must be > 0 inside the mask")
        weight[mask] = 1 / sigma[mask]
    elif magnitude is not None:
        weight *= check_weight(magnitude, field.shape, "magnitude", where)
    if not weight[mask].any():
        raise ValueError(f"{where}: the data weight is zero everywhere in the mask")
    weight /= weight[mask].mean()
    edges = np.float32(1)
    if magnitude is not None:
        magnitude = check_weight(magnitude, field.shape, "magnitude", where)
        edges = np.ones((3,) + grid.padded, np.uint8)  # 0/1: a quarter of float32's reads
        edges[(slice(None),) + grid.crop] = morphology_mask(magnitude, mask, spacing,
                                                            edge_percentage)
    chi = admm_tv(grid, grid.embed(np.where(mask, field, np.float32(0))), grid.embed(weight),
                  edges, lam, rho, mu, int(max_iter), float(tol), callback)
    return result(grid, chi, mask)
