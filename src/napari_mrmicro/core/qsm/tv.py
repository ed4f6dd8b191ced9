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

import math

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import _fused
from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_iteration, check_positive, check_weight, result, stop)

#: float32 volumes of the padded grid :func:`admm_tv` holds at its peak.
ADMM_VOLUMES = 20


def admm_tv(grid: Grid, field, data_weight, gradient_weight, lam, rho, mu, max_iter, tol,
            callback, device=None):
    """ADMM for ``½‖W(Dχ − f)‖² + λ‖g ⊙ ∇χ‖₁`` on ``grid`` (arrays already padded):
    ``field`` f, ``data_weight`` W (zero outside the mask), ``gradient_weight`` g
    (broadcastable to ``(3, z, y, x)``, any real dtype: a binary weight can be bytes).
    Returns the padded χ (float32, numpy).

    ``device`` (:mod:`~napari_mrmicro.core.backend`) is where it runs. On the GPU the
    element-wise updates between the transforms run once over the whole volume, written
    below with its array namespace. On the CPU the same float32 operations run as the
    compiled loops of :mod:`._fused` on all cores: one visit per voxel for the gains (built
    from ``D`` and the gradient symbols on the fly) and one for the update, which also forms
    ``∇ᵀV`` plane by plane, so V is never stored. The dual variables are kept as
    ``U = u = clip(w, ±t)`` and ``V = z − u = (w − U) − U`` (``w = ∇χ + u``): one volume
    triple less than ``z`` and ``u`` separately, with the same floating-point operations.
    """
    device = backend.resolve(device)
    if device == "gpu":  # the host's memory is the caller's Grid.check_memory
        backend.check_device_memory(4 * ADMM_VOLUMES * math.prod(grid.padded),
                                    f"{grid.where} on a padded grid of {grid.padded}", device)
    xp = backend.namespace(device)
    fft = backend.fft(xp)
    shape, steps = grid.padded, grid.steps()
    scales = [None if h == 1 else np.float32(1 / h) for h in steps]
    mu, rho = np.float32(mu), np.float32(rho)
    dipole = grid.dipole(device)
    fused = xp is np
    if not fused:
        denominator = mu * dipole**2 + rho * grid.laplacian_symbol(device)
        denominator[0, 0, 0] = 1  # k = 0 is in the null space of both terms: keep χ̂(0) = 0
        data_gain = mu * dipole / denominator  # χ̂ = data_gain·F[y − s] + …
        tv_gain = rho / denominator  # … + tv_gain·F[∇ᵀ(z − u)]
        del denominator
    w2 = data_weight * data_weight
    w2f = xp.asarray(w2 * field)
    w2mu = xp.asarray(w2 + mu)
    del w2
    t0 = np.float32(lam) / rho
    if not fused:
        threshold = t0 * np.asarray(gradient_weight, np.float32)
        if threshold.ndim:
            threshold = xp.broadcast_to(xp.asarray(threshold), (3,) + shape)
    chi = xp.zeros(shape, np.float32)
    y = xp.asarray(field, dtype=np.float32).copy()
    s = xp.zeros_like(chi)
    residual = y - s  # y − s, the input of the data-term transform
    dual = xp.zeros((3,) + shape, np.float32)  # U = u
    split = None if fused else xp.zeros((3,) + shape, np.float32)  # V = z − u
    adjoint = xp.empty_like(chi)  # ∇ᵀV
    plane = shape[1] * shape[2]
    half_plane = grid.spectrum_shape[1] * grid.spectrum_shape[2]

    def apply_adjoint(start, stop):
        difference = xp.empty((stop - start,) + shape[1:], np.float32)
        out = adjoint[start:stop]
        for axis in range(3):
            target = out if axis == 0 else difference
            backend.periodic_difference(split[axis], axis, start, stop, target,
                                            backward=True)
            if scales[axis] is not None:
                target *= scales[axis]
            if axis:
                out += difference

    def combine(start, stop):
        data_part, tv_part = rhs[start:stop], tv_spectrum[start:stop]
        data_part *= data_gain[start:stop]
        tv_part *= tv_gain[start:stop]
        data_part += tv_part
        xp.multiply(data_part, dipole[start:stop], out=tv_part)

    def update(start, stop):
        part = slice(start, stop)
        d = dchi[part]
        d += s[part]  # y-update, then the data dual: s ← s + Dχ − y
        xp.multiply(d, mu, out=y[part])
        y[part] += w2f[part]
        y[part] /= w2mu[part]
        xp.subtract(d, y[part], out=s[part])
        xp.subtract(y[part], s[part], out=d)  # the next y − s
        w = xp.empty((stop - start,) + shape[1:], np.float32)
        for axis in range(3):
            # w = ∇χ + u; u = clip(w, ±t); z − u = (w − u) − u
            backend.periodic_difference(chi_new, axis, start, stop, w)
            if scales[axis] is not None:
                w *= scales[axis]
            w += dual[axis, part]
            t = threshold[axis, part] if threshold.ndim else threshold
            xp.clip(w, -t, t, out=dual[axis, part])
            xp.subtract(w, dual[axis, part], out=split[axis, part])
            split[axis, part] -= dual[axis, part]
        w = xp.subtract(chi_new[part], chi[part], out=w)
        sums[start] = (float((w * w).sum(dtype=np.float64)),
                       float((chi_new[part] * chi_new[part]).sum(dtype=np.float64)))

    if fused:
        step_scales = np.array([1 if a is None else a for a in scales], np.float32)
        symbols = grid.gradient_symbols()
        weight = np.asarray(gradient_weight)
        weight = np.broadcast_to(weight if weight.ndim else weight.astype(np.float32),
                                 (3,) + shape)
        adjoint[...] = 0  # ∇ᵀV of V = 0; then written by each update
    for iteration in range(max_iter):
        if not fused:
            backend.for_each_slab(xp, apply_adjoint, shape[0], plane)
        rhs = fft.rfftn(residual, workers=-1)
        tv_spectrum = fft.rfftn(adjoint, workers=-1)
        if fused:
            _fused.admm_combine(rhs, tv_spectrum, dipole, symbols, mu, rho)
        else:
            backend.for_each_slab(xp, combine, shape[0], half_plane)
        dchi = fft.irfftn(tv_spectrum, s=shape, workers=-1, overwrite_x=True)  # Dχ
        chi_new = fft.irfftn(rhs, s=shape, workers=-1, overwrite_x=True)
        del rhs, tv_spectrum
        if fused:
            difference, norm = _fused.admm_update(dchi, s, w2f, w2mu, mu, chi_new, chi, dual,
                                                  t0, weight, step_scales, adjoint)
        else:
            sums = {}
            backend.for_each_slab(xp, update, shape[0], plane)
            difference, norm = (sum(sums[k][i] for k in sorted(sums)) for i in (0, 1))
        residual = dchi
        change = math.sqrt(difference) / max(math.sqrt(norm), 1e-30)
        chi = chi_new
        if stop(change, tol, callback, iteration, max_iter):
            break
    return backend.to_host(chi)


def invert_tv(local_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
              lam: float = 1e-3, rho: float | None = None, mu: float = 1.0,
              data_weight=None, max_iter: int = 250, tol: float = 1e-3, callback=None,
              pad=0, device=None) -> np.ndarray:
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
    device : {"cpu", "gpu"}, optional
        Where the iterations run (:mod:`~napari_mrmicro.core.backend`; default the CPU, or
        the default of :func:`~napari_mrmicro.core.backend.use_device`).

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
                  np.float32(1), lam, rho, mu, int(max_iter), float(tol), callback, device)
    return result(grid, chi, mask)
