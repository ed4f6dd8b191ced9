"""The Dirichlet Laplacian of a masked grid and its multigrid preconditioner.

LBV (:func:`~.background.lbv`; Zhou et al., NMR Biomed 2014;27:312) solves Poisson's
equation ``−∇²e = g`` on the interior voxels of a mask with ``e = 0`` everywhere else.
Zhou et al. solve it by full multigrid. Plain conjugate gradients need a number of
iterations that grows with the mask's diameter in voxels (196 for the 205-voxel ellipsoid of
``benchmarks/bench_qsm.py``). One symmetric multigrid V-cycle as the preconditioner of CG
(MGCG: Tatebe, Copper Mountain Conference on Multigrid Methods 1993; Trottenberg,
Oosterlee & Schüller, *Multigrid*, Academic Press 2001, ch. 2) keeps the count nearly
independent of the size, and CG keeps the answer exact where the coarse grids resolve the
mask's boundary poorly.

The V-cycle: vertex-centred coarsening (coarse voxel ``J`` is fine voxel ``2J``, the coarse
interior the fine interior sampled there, spacing doubled), trilinear prolongation ``P``
masked to the fine interior, restriction ``R = Pᵀ/8`` masked to the coarse interior (full
weighting), the operator rediscretised on each level, and ``ν`` damped-Jacobi sweeps
(ω = 6/7) before and after the coarse-grid correction, ``4·max(shape)`` sweeps on the
coarsest grid. With the same sweeps before and after and ``R ∝ Pᵀ``, the V-cycle is a
symmetric positive-definite linear operator (ω < 1: each sweep contracts in the energy
norm), as preconditioned CG requires.

Why our own: pyamg (algebraic multigrid) needs the sparse matrix of the whole grid (7
nonzeros per voxel) and runs on the CPU only; no maintained library does geometric
multigrid on a masked 3-D grid for numpy and CuPy arrays alike. Every operation is written
with the array namespace of :mod:`~napari_mrmicro.core.backend` (slab by slab on all cores
on the CPU, whole-volume on the GPU).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import backend

#: Damped-Jacobi weight: the smoothing optimum of the 7-point Laplacian in 3-D.
JACOBI_WEIGHT = 6 / 7


class DirichletLaplacian:
    """``v ↦ −∇²v`` on the ``interior`` voxels (7-point stencil with per-axis weights
    ``inv_h2 = (h_min/h_a)²``), 0 elsewhere, where ``v`` is 0 outside the interior.

    Parameters
    ----------
    interior : bool array (z, y, x), numpy or CuPy
        The unknowns; must not touch the array's faces (the stencil reads ±1).
    inv_h2 : 3 floats
    """

    def __init__(self, interior, inv_h2):
        self.interior = interior
        self.exterior = ~interior
        self.inv_h2 = np.asarray(inv_h2, dtype=np.float64)
        self.weights = [None if w == 1 else np.float32(w) for w in self.inv_h2]
        self.centre = np.float32(2 * self.inv_h2.sum())
        self.xp = backend.array_namespace(interior)

    @property
    def shape(self):
        return self.interior.shape

    def __call__(self, v):
        return self._pass(v)

    def residual(self, v, b):
        """``b − (−∇²v)`` in one pass (``b`` 0 outside the interior)."""
        return self._pass(v, b)

    def jacobi(self, v, b, gain):
        """One damped-Jacobi sweep ``v + gain·(b − (−∇²v))``, in one pass, as a new array."""
        return self._pass(v, b, gain)

    def _pass(self, v, b=None, gain=None):
        """``−∇²v``, or the residual against ``b``, or a Jacobi sweep: one pass slab by
        slab, the extra steps on each slab while it is in cache."""
        xp, n = self.xp, v.shape[0]
        out = xp.empty_like(v)

        def work(start, stop):
            here = out[start:stop]
            xp.multiply(v[start:stop], self.centre, out=here)
            for axis, weight in enumerate(self.weights):
                if axis == 0:  # planes start..stop−1 of the interior 1..n−2, neighbours ±1
                    lo, hi = max(start, 1), min(stop, n - 1)
                    if lo >= hi:
                        continue
                    mid, pair = slice(lo, hi), v[lo - 1:hi - 1] + v[lo + 1:hi + 1]
                else:
                    cut = [slice(start, stop), slice(None), slice(None)]
                    low, high = list(cut), list(cut)
                    cut[axis], low[axis], high[axis] = (slice(1, -1), slice(None, -2),
                                                        slice(2, None))
                    mid, pair = tuple(cut), v[tuple(low)] + v[tuple(high)]
                if weight is not None:
                    pair *= weight
                out[mid] -= pair
            xp.copyto(here, np.float32(0), where=self.exterior[start:stop])
            if b is not None:
                xp.subtract(b[start:stop], here, out=here)
            if gain is not None:
                here *= gain
                here += v[start:stop]

        backend.for_each_slab(xp, work, n, v[0].size)
        return out

    def coarsened(self):
        """The operator on every second voxel (spacing doubled; the interior sampled there,
        less the last face), or None when the grid is too small to coarsen (an axis
        under 5 voxels) or no interior voxel is left."""
        if min(self.shape) < 5:
            return None
        interior = self.xp.ascontiguousarray(self.interior[::2, ::2, ::2])
        for axis in range(3):  # off the faces, where the stencil has no neighbour
            face = [slice(None)] * 3
            face[axis] = slice(-1, None)
            interior[tuple(face)] = False
        if not bool(interior.any()):
            return None
        return DirichletLaplacian(interior, self.inv_h2 / 4)


def prolong(coarse, fine_shape):
    """Trilinear interpolation ``P`` onto the fine grid: fine voxel ``2j`` takes coarse
    voxel ``j``, ``2j+1`` the mean of ``j`` and ``j+1`` (0 past the last), axis by axis."""
    xp = backend.array_namespace(coarse)
    out = coarse
    for axis, n in enumerate(fine_shape):
        shape = list(out.shape)
        shape[axis] = n
        fine = xp.empty(shape, np.float32)
        even, odd = [slice(None)] * 3, [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        fine[tuple(even)] = out
        odds = fine[tuple(odd)]
        m = odds.shape[axis]  # odd voxels: those with a coarse voxel on each side ...
        left, right = [slice(None)] * 3, [slice(None)] * 3
        left[axis], right[axis] = slice(0, m), slice(1, m + 1)
        xp.multiply(out[tuple(left)], np.float32(0.5), out=odds)
        right_values = out[tuple(right)]
        if right_values.shape[axis] == m:
            odds += np.float32(0.5) * right_values
        else:  # ... but the last one, past the coarse grid, has only its left neighbour
            head = [slice(None)] * 3
            head[axis] = slice(0, m - 1)
            odds[tuple(head)] += np.float32(0.5) * right_values
        out = fine
    return out


def restrict(fine, coarse_shape):
    """``Pᵀ/8`` (full weighting): coarse voxel ``j`` takes fine voxel ``2j`` plus half of
    ``2j ± 1``, axis by axis, over 8."""
    xp = backend.array_namespace(fine)
    out = fine
    for axis, m in enumerate(coarse_shape):
        even, odd = [slice(None)] * 3, [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        coarse = out[tuple(even)] * np.float32(0.5)  # the halving of P^T/2 per axis
        odds = out[tuple(odd)] * np.float32(0.25)
        k = odds.shape[axis]
        below, above = [slice(None)] * 3, [slice(None)] * 3
        below[axis], above[axis] = slice(0, k), slice(1, k + 1)
        coarse[tuple(below)] += odds  # 2j+1 → j
        head = [slice(None)] * 3
        head[axis] = slice(0, min(k, m - 1))
        coarse[tuple(above)] += odds[tuple(head)]  # 2j−1 → j
        out = xp.ascontiguousarray(coarse)
    return out


class VCycle:
    """One symmetric V-cycle for ``operator`` (a :class:`DirichletLaplacian`), applied to a
    residual: ``z = cycle(r)``, an approximation of ``operator⁻¹ r``; linear, symmetric and
    positive definite, for :func:`~.background._conjugate_gradient`'s ``precondition``.

    Parameters
    ----------
    operator : DirichletLaplacian
    sweeps : int
        Damped-Jacobi sweeps before and after each coarse-grid correction.
    """

    def __init__(self, operator: DirichletLaplacian, sweeps: int = 2):
        self.levels = [operator]
        while (coarse := self.levels[-1].coarsened()) is not None:
            self.levels.append(coarse)
        self.sweeps = sweeps
        self.coarsest_sweeps = 4 * max(self.levels[-1].shape)

    def __call__(self, residual):
        return self._cycle(0, residual)

    def _cycle(self, level: int, b):
        operator = self.levels[level]
        last = level == len(self.levels) - 1
        x = self._smooth(operator, b, None, self.coarsest_sweeps if last else self.sweeps)
        if last:
            return x
        coarse = self.levels[level + 1]
        rc = restrict(operator.residual(x, b), coarse.shape)
        operator.xp.copyto(rc, np.float32(0), where=coarse.exterior)
        correction = prolong(self._cycle(level + 1, rc), operator.shape)
        operator.xp.copyto(correction, np.float32(0), where=operator.exterior)
        x += correction
        return self._smooth(operator, b, x, self.sweeps)

    @staticmethod
    def _smooth(operator, b, x, sweeps: int):
        """``sweeps`` damped-Jacobi sweeps ``x += ω/c·(b − A x)`` (from 0 when ``x`` is
        None); ``b`` is 0 outside the interior, so ``x`` stays 0 there."""
        gain = np.float32(JACOBI_WEIGHT) / operator.centre
        if x is None:
            x, sweeps = b * gain, sweeps - 1
        for _ in range(sweeps):
            x = operator.jacobi(x, b, gain)
        return x
