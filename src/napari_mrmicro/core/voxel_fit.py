"""Least-squares fits of a signal model in every voxel at once.

A parametric map (T2, T1, S0...) is one small nonlinear least-squares problem per voxel:
minimise ``Σ_j w_j (y_j − f_j(p))²`` over 2–3 parameters ``p``. :func:`levenberg_marquardt`
takes Levenberg–Marquardt steps (Marquardt, J Soc Ind Appl Math 1963;11:431: the normal
equations with their diagonal scaled by ``1 + λ``, ``λ`` shrunk after a step that lowers
the cost and raised after one that does not) for all voxels in a few array operations per
iteration, and :func:`grid_start` finds its starting point by variable projection: most
relaxation models are linear in their amplitudes once the rate is fixed (Golub & Pereyra,
SIAM J Numer Anal 1973;10:413), so a grid of rates with the amplitudes solved in closed
form gives the global minimum to the grid's resolution (Barral et al., Magn Reson Med
2010;64:1057, for T1). :func:`fit_voxels` runs a fit over a volume's masked voxels, slab by
slab on all cores, with progress and cancel.

Written here: ``scipy.optimize.least_squares`` and ``curve_fit`` solve one problem per call
(minutes on a volume, measured in ``benchmarks/bench_relaxometry.py``); the models' tests
check both reach the same minimum.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from napari_mrmicro.core import backend

#: Levenberg–Marquardt iterations at most.
ITERATIONS = 30
#: Rates of the grid search evaluated together (bounds its memory: rows × this × amplitudes).
GRID_CHUNK = 25
#: A step that changes no parameter by more than this (relative) ends the iterations.
TOLERANCE = 1e-6


def levenberg_marquardt(model, start: np.ndarray, signal: np.ndarray,
                        weights: np.ndarray | None = None, iterations: int = ITERATIONS):
    """Minimise ``Σ_j w_j (signal_j − model(p)_j)²`` for every row, from ``start``.

    Parameters
    ----------
    model : callable
        ``model(p, rows) -> (values, jacobian)`` for parameters ``p`` of the rows
        ``rows`` (an index array or a slice into the rows of ``signal``; converged rows
        drop out): the model's values (len(p), n) and their derivatives, a list of k
        arrays (len(p), n), one per parameter.
    start : ndarray (rows, k)
        Starting parameters (float64); rows with non-finite values are returned unchanged.
    signal : ndarray (rows, n)
        The measured values.
    weights : ndarray (rows, n) or (n,), optional
        Weight of each value (0 leaves it out); default 1.
    iterations : int
        Most iterations; they stop when no row's step moves a parameter by more than
        :data:`TOLERANCE` of its value.

    Returns
    -------
    params : ndarray (rows, k), float64
    cost : ndarray (rows,)
        The weighted sum of squared residuals at ``params``.
    information : ndarray (rows, k, k)
        ``Jᵀ W J`` at ``params``: divided into σ², its inverse is the parameters'
        covariance under Gaussian noise of σ.
    """
    y = np.asarray(signal, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64), y.shape)
    p = np.array(start, dtype=np.float64)
    active = np.all(np.isfinite(p), axis=1)
    p[~active] = 0.0
    damping = np.full(len(p), 1e-3)
    diagonal = np.arange(p.shape[1])
    live = np.flatnonzero(active)  # the rows still moving: converged ones drop out

    def cost_of(params, rows):
        values, jacobian = model(params, rows)
        error = y[rows] - values
        return np.einsum("ij,ij->i", error * w[rows], error), error * w[rows], jacobian

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rejected trials
        for _ in range(iterations):
            current, residual, jacobian = cost_of(p[live], live)
            scaled = _normal(jacobian, w[live])
            scaled[:, diagonal, diagonal] *= 1 + damping[live, None]
            gradient = np.stack([np.einsum("in,in->i", residual, d) for d in jacobian], 1)
            step, solvable = solve_small(scaled, gradient)
            moving = solvable & np.any(np.abs(step) > TOLERANCE * np.abs(p[live])
                                       + TOLERANCE, axis=1)
            live, step, current = live[moving], step[moving], current[moving]
            if not live.size:
                break
            trial = p[live] + step
            trial_cost = cost_of(trial, live)[0]
            better = np.isfinite(trial_cost) & (trial_cost <= current)
            p[live[better]] = trial[better]
            damping[live] = np.where(better, damping[live] / 3, damping[live] * 4)
        cost, _, jacobian = cost_of(p, slice(None))
        information = _normal(jacobian, w)
    p[~active] = np.nan
    return p, cost, information


def solve_small(a: np.ndarray, b: np.ndarray):
    """``x`` with ``a x = b`` for every row of k×k systems ``a`` (rows, k, k), and where
    that succeeded: ``(x, solvable)``. Up to 3×3 by Cramer's rule (a few array
    operations; LAPACK's batched solve is 3× slower on them), larger ones (symmetric
    positive definite: normal equations) by LAPACK where their determinant is positive."""
    k = a.shape[1]
    if k > 3:
        solvable = np.all(np.isfinite(a), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
        sign, logdet = np.linalg.slogdet(a[solvable])
        solvable[solvable] = (sign > 0) & np.isfinite(logdet)
        x = np.full(b.shape, np.nan)
        if solvable.any():
            x[solvable] = np.linalg.solve(a[solvable], b[solvable][..., None])[..., 0]
        solvable &= np.all(np.isfinite(x), axis=1)
        return x, solvable
    if k == 2:
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        x = np.stack([a[:, 1, 1] * b[:, 0] - a[:, 0, 1] * b[:, 1],
                      a[:, 0, 0] * b[:, 1] - a[:, 1, 0] * b[:, 0]], axis=1)
    elif k == 3:
        cof = np.stack([np.cross(a[:, 1], a[:, 2]), np.cross(a[:, 2], a[:, 0]),
                        np.cross(a[:, 0], a[:, 1])], axis=1)  # rows of the adjugate's transpose
        det = np.einsum("ij,ij->i", a[:, 0], cof[:, 0])
        x = np.matmul(np.swapaxes(cof, 1, 2), b[:, :, None])[:, :, 0]
    else:  # 1×1
        det, x = a[:, 0, 0], b.astype(np.float64, copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x /= det[:, None]
    solvable = np.isfinite(det) & (det != 0) & np.all(np.isfinite(x), axis=1)
    return x, solvable


def _normal(jacobian: list, w: np.ndarray) -> np.ndarray:
    """``Jᵀ W J`` of every row, from the derivatives by parameter (a list of (rows, n))."""
    k = len(jacobian)
    out = np.empty((len(w), k, k))
    for i in range(k):
        weighted = jacobian[i] * w
        for j in range(i, k):
            out[:, i, j] = out[:, j, i] = np.einsum("in,in->i", weighted, jacobian[j])
    return out


def grid_start(basis, rates: np.ndarray, signal: np.ndarray):
    """The rate of ``rates`` and the amplitudes that fit each row best, with the model
    ``Σ_m c_m·basis(rate)_m`` linear in its amplitudes ``c`` (variable projection).

    Parameters
    ----------
    basis : callable
        ``basis(rate)``: the model's functions of the rate (a scalar) at the ``n``
        sampling points, one per amplitude: (m, n), or (rows, m, n) when they differ
        from row to row.
    rates : ndarray (g,)
        The candidate rates.
    signal : ndarray (rows, n)

    Returns
    -------
    rate : ndarray (rows,)
        NaN where no candidate could be fitted.
    amplitudes : ndarray (rows, m)
    cost : ndarray (rows,)
    """
    y = np.asarray(signal, dtype=np.float64)
    best = np.full(len(y), np.inf)
    rate = np.full(len(y), np.nan)
    amplitudes = None
    energy = np.einsum("in,in->i", y, y)
    for start in range(0, len(rates), GRID_CHUNK):
        chunk = rates[start:start + GRID_CHUNK]
        phi = np.stack([basis(r) for r in chunk])
        if phi.ndim == 3:  # (g, m, n), shared by the rows: one Gram matrix per rate
            gram = phi @ np.swapaxes(phi, 1, 2)
            ok = np.abs(np.linalg.det(gram)) > 0
            inverse = np.zeros_like(gram)
            inverse[ok] = np.linalg.inv(gram[ok])
            projection = np.einsum("in,gmn->igm", y, phi, optimize=True)
            c = np.einsum("igm,gmk->igk", projection, inverse, optimize=True)
            ok = np.broadcast_to(ok, (len(y), len(chunk)))
        else:  # (g, rows, m, n): each row its own functions
            phi = np.broadcast_to(phi, (len(chunk), len(y), *phi.shape[2:]))
            phi = np.swapaxes(phi, 0, 1)
            projection = np.einsum("in,igmn->igm", y, phi)
            c, ok = _solve_batched(phi @ np.swapaxes(phi, 2, 3), projection)
        cost = energy[:, None] - np.einsum("igm,igm->ig", c, projection)
        cost = np.where(ok, cost, np.inf)
        pick = np.argmin(cost, axis=1)
        rows = np.arange(len(y))
        chosen = cost[rows, pick]
        if amplitudes is None:
            amplitudes = np.full((len(y), c.shape[2]), np.nan)
        better = chosen < best
        best = np.where(better, chosen, best)
        rate = np.where(better, chunk[pick], rate)
        np.copyto(amplitudes, c[rows, pick], where=better[:, None])
    return rate, amplitudes, best


def _solve_batched(a: np.ndarray, b: np.ndarray):
    """:func:`solve_small` over any leading axes."""
    lead = a.shape[:-2]
    x, ok = solve_small(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, b.shape[-1]))
    return x.reshape(*lead, -1), ok.reshape(lead)


def fit_voxels(data: np.ndarray, mask: np.ndarray, fit, outputs: list, extras=(),
               callback=None, where: str = "fit") -> None:
    """Fill ``outputs`` (arrays of the image's shape) at ``mask`` with ``fit(signal,
    *extras)``, slab by slab on all cores.

    ``data`` is (points, ...) with the sampled points (echoes, flip angles...) first;
    ``fit`` receives each slab's masked voxels as rows (voxels, points), float32, and the
    same voxels of each array in ``extras``, and returns one array per output.
    ``callback(fraction)`` runs after each slab; returning False cancels
    (``InterruptedError``).
    """
    shape = data.shape[1:]
    planes = shape[0]
    done, cancelled, lock = [0], [], threading.Lock()

    def work(start, stop):
        if cancelled:
            return
        inside = mask[start:stop]
        if inside.any():  # a slab outside the specimen has nothing to fit
            rows = data[:, start:stop][:, inside].astype(np.float32).T
            results = fit(rows, *(np.asarray(e)[start:stop][inside] for e in extras))
            for out, result in zip(outputs, results):
                out[start:stop][inside] = result
        with lock:
            done[0] += stop - start
            if callback is not None and callback(done[0] / planes) is False:
                cancelled.append(True)

    backend.for_each_slab(np, work, planes, math.prod(shape[1:]) * data.shape[0])
    if cancelled:
        raise InterruptedError(f"{where}: cancelled")
