"""Total-variation dipole inversion by ADMM.

Solves ``min_χ ½‖W(Dχ − f)‖² + λ‖g ⊙ ∇χ‖₁`` with the alternating direction method of
multipliers of Bilgic et al. (Magn Reson Med 2014;72:1444: λ ≈ 1e-3, ρ = 100λ, tol 1e-3,
≤ 250 iterations). The data term is split off as ``y = Dχ`` (the weighted-linear variant of
FANSI, Milovic et al., Magn Reson Med 2018;80:814, penalty μ), so the mask or a noise
weight W enters exactly while every update stays closed-form:

* χ:  ``(μD² + ρ|E|²) χ̂ = μD·F[y − s] + ρ·F[∇ᵀ(z − u)]``   (FFT-diagonal; χ̂(0) = 0)
* y:  ``y = (W²f + μ(Dχ + s)) / (W² + μ)``                    (voxel-wise)
* z:  ``z = soft(∇χ + u, λg/ρ)``                               (anisotropic ℓ1, voxel-wise)
* duals: ``s += Dχ − y``, ``u += ∇χ − z``.

``∇`` is the periodic forward difference with physical (relative) steps and ``|E|²`` its
Fourier symbol (:mod:`.inversion`), so the image-space gradients and the k-space solve are
the same operator. Two FFT pairs per iteration. The stopping rule is the relative change of
χ below ``tol`` or ``max_iter`` iterations (or a callback returning ``False``).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_iteration, check_positive, check_weight, gradient,
    gradient_adjoint, relative_change, result, stop)

#: float32 volumes of the padded grid :func:`admm_tv` holds at its peak.
ADMM_VOLUMES = 20


def admm_tv(grid: Grid, field, data_weight, gradient_weight, lam, rho, mu, max_iter, tol,
            callback):
    """ADMM for ``½‖W(Dχ − f)‖² + λ‖g ⊙ ∇χ‖₁`` on ``grid`` (arrays already padded):
    ``field`` f, ``data_weight`` W (zero outside the mask), ``gradient_weight`` g
    (broadcastable to ``(3, z, y, x)``). Returns the padded χ (float32)."""
    dipole = grid.dipole()
    steps = grid.steps()
    mu, rho = np.float32(mu), np.float32(rho)
    denominator = mu * dipole**2 + rho * grid.laplacian_symbol()
    denominator[0, 0, 0] = 1  # k = 0 is in the null space of both terms: keep χ̂(0) = 0
    data_gain = mu * dipole / denominator  # χ̂ = data_gain·F[y − s] + tv_gain·F[∇ᵀ(z − u)]
    tv_gain = rho / denominator
    del denominator
    w2 = data_weight * data_weight
    w2f = w2 * field
    w2mu = w2 + mu
    del w2
    threshold = (np.float32(lam) / rho) * np.asarray(gradient_weight, np.float32)
    chi = np.zeros(grid.padded, np.float32)
    y = field.copy()
    s = np.zeros_like(chi)
    z = np.zeros((3,) + grid.padded, np.float32)
    u = np.zeros_like(z)
    for iteration in range(max_iter):
        rhs = grid.rfft(y - s)
        rhs *= data_gain
        z -= u
        tv_part = grid.rfft(gradient_adjoint(z, steps))
        tv_part *= tv_gain
        rhs += tv_part
        del tv_part
        dchi = grid.irfft(rhs * dipole)  # Dχ (irfft may overwrite its input)
        chi_new = grid.irfft(rhs)
        del rhs
        # y-update, then the data dual: s ← s + Dχ − y
        dchi += s
        np.multiply(dchi, mu, out=y)
        y += w2f
        y /= w2mu
        dchi -= y
        s = dchi
        # z-update (soft threshold), then the gradient dual: u ← u + ∇χ − z
        # (with w = ∇χ + u: z = w − clip(w, ±t) and u = w − z = clip(w, ±t))
        u += gradient(chi_new, steps)
        z = u.copy()
        np.clip(u, -threshold, threshold, out=u)
        z -= u
        change = relative_change(chi_new, chi)
        chi = chi_new
        if stop(change, tol, callback, iteration, max_iter):
            break
    return chi


def invert_tv(local_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
              lam: float = 1e-3, rho: float | None = None, mu: float = 1.0,
              data_weight=None, max_iter: int = 250, tol: float = 1e-3, callback=None,
              pad=0) -> np.ndarray:
    """Susceptibility (ppm) by total-variation regularized inversion (ADMM, Bilgic 2014).

    Parameters
    ----------
    local_field_ppm, mask, spacing_um, b0_direction, pad
        As for :func:`~.tkd.invert_tkd`.
    lam : float
        λ, the TV weight in ppm of field per unit gradient (1e-3, Bilgic 2014); gradients
        are per voxel of the smallest size (:mod:`.inversion`).
    rho : float, optional
        ADMM penalty of ``z = ∇χ``; default ``100·lam``.
    mu : float
        ADMM penalty of ``y = Dχ`` relative to a data weight of 1 (FANSI's μ2 = 1).
    data_weight : ndarray (z, y, x), optional
        W ≥ 0 inside the mask (e.g. 1/σ of the field, scaled to a mean of 1); default 1.
    max_iter, tol, callback
        Stopping rule and cancellation, see :mod:`.inversion` (250 and 1e-3 as published).

    Returns
    -------
    ndarray of float32
        χ in ppm, zero outside the mask, mean not referenced.
    """
    where = "invert_tv"
    field, mask, spacing = check_inputs(local_field_ppm, mask, spacing_um, where)
    lam = check_positive(lam, "lam", where)
    rho = 100 * lam if rho is None else check_positive(rho, "rho", where)
    mu = check_positive(mu, "mu", where)
    check_iteration(max_iter, tol, callback, where)
    weight = mask.astype(np.float32)
    if data_weight is not None:
        weight *= check_weight(data_weight, field.shape, "data_weight", where)
    grid = Grid(field.shape, spacing, b0_direction, pad, where)
    grid.check_memory(ADMM_VOLUMES)
    chi = admm_tv(grid, grid.embed(np.where(mask, field, np.float32(0))), grid.embed(weight),
                  np.float32(1), lam, rho, mu, int(max_iter), float(tol), callback)
    return result(grid, chi, mask)
