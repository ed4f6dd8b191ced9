"""The Dirichlet Laplacian of a masked grid and its multigrid preconditioner.

LBV (:func:`~.background.lbv`; Zhou et al., NMR Biomed 2014;27:312) solves Poisson's
equation ``−∇²e = g`` on the interior voxels of a mask with ``e = 0`` everywhere else.
Zhou et al. solve it by full multigrid. Plain Krylov iterations need a number of
iterations that grows with the mask's diameter in voxels (196 CG iterations for the
205-voxel ellipsoid of ``benchmarks/bench_qsm.py``). One multigrid V-cycle as the
preconditioner (MGCG: Tatebe, Copper Mountain Conference on Multigrid Methods 1993;
Trottenberg, Oosterlee & Schüller, *Multigrid*, Academic Press 2001, ch. 2) keeps the count
nearly independent of the size, and the Krylov iteration keeps the answer exact where the
coarse grids resolve the mask's boundary poorly.

The operator is the 7-point Laplacian, or, where a voxel's 18 face and edge neighbours all
lie in the mask, the compact fourth-order 19-point one (Collatz's *Mehrstellenverfahren*;
Collatz, *The Numerical Treatment of Differential Equations*, Springer 1960;
Spotz & Carey, Numer Methods Partial Differ Equ 1996;12:235): for a harmonic function it adds
``Σ_{a<b} (h_a² + h_b²)/12 · ∂²_a∂²_b``, which cancels the 7-point stencil's error
``Σ_a h_a²/12 · ∂⁴_a`` (``∂⁴_a = −Σ_{b≠a} ∂²_a∂²_b`` where ``∇² = 0``), so harmonic
quartics are differenced exactly. Its symbol is at least a third of the 7-point one's for
any spacing, so a V-cycle whose coarse levels are 7-point preconditions it well.

The V-cycle: vertex-centred coarsening (coarse voxel ``J`` is fine voxel ``2J``, the coarse
interior the fine interior sampled there, spacing doubled), trilinear prolongation ``P``
masked to the fine interior, restriction ``R = Pᵀ/8`` masked to the coarse interior (full
weighting), the 7-point operator rediscretised on each coarser level, and ``ν``
damped-Jacobi sweeps (ω = 6/7) before and after the coarse-grid correction,
``4·max(shape)`` sweeps on the coarsest grid. For the 7-point operator, with the same
sweeps before and after and ``R ∝ Pᵀ``, the V-cycle is a symmetric positive-definite linear
operator (ω < 1: each sweep contracts in the energy norm), as preconditioned CG requires.

Why our own: pyamg (algebraic multigrid) needs the sparse matrix of the whole grid (7
nonzeros per voxel) and runs on the CPU only; no maintained library does geometric
multigrid on a masked 3-D grid for numpy and CuPy arrays alike. Every operation is written
with the array namespace of :mod:`~napari_mrmicro.core.backend` (slab by slab on all cores
on the CPU, whole-volume on the GPU); on the CPU the Laplacian's pass is one compiled visit
per voxel (:func:`._fused.dirichlet_pass`, the same bits; 30 → 5 ms for the fourth-order
operator on a 207×207×105 box, 2 cores).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import _fused

#: Damped-Jacobi weight: the smoothing optimum of the 7-point Laplacian in 3-D.
JACOBI_WEIGHT = 6 / 7


class DirichletLaplacian:
    """``v ↦ −∇²v`` on the ``interior`` voxels (7-point stencil with per-axis weights
    ``inv_h2 = (h_min/h_a)²``; with ``fourth_order``, the 19-point one there), 0 elsewhere.
    Applied to a ``v`` that is 0 outside the interior it is the Dirichlet problem's
    operator (symmetric positive definite with the 7-point stencil alone); applied to a
    field it differences that field.

    Parameters
    ----------
    interior : bool array (z, y, x), numpy or CuPy
        Where the operator is evaluated; must not touch the array's faces (the stencil
        reads ±1).
    inv_h2 : 3 floats
    fourth_order : bool array like ``interior``, optional
        Interior voxels that take the compact fourth-order stencil (their face and edge
        neighbours must hold values of the function); the others take the 7-point one.
    """

    def __init__(self, interior, inv_h2, fourth_order=None):
        self.interior = interior
        self.exterior = ~interior
        self.inv_h2 = np.asarray(inv_h2, dtype=np.float64)
        self.weights = [None if w == 1 else np.float32(w) for w in self.inv_h2]
        self.centre = np.float32(2 * self.inv_h2.sum())
        self.fourth_order = fourth_order
        w = self.inv_h2  # the coefficients (h_a² + h_b²)/12 of ∂²_a∂²_b, over h_min²
        self.cross = {(a, b): np.float32((w[a] + w[b]) / 12) for a in range(3)
                      for b in range(a + 1, 3)}
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
        slab, the extra steps on each slab while it is in cache (on the CPU one compiled
        visit per voxel, :func:`._fused.dirichlet_pass`, with the same bits)."""
        xp, n = self.xp, v.shape[0]
        out = xp.empty_like(v)
        if xp is np:
            _fused.dirichlet_pass(v, b, gain, self.interior, self.fourth_order,
                                  [1 if w is None else w for w in self.weights],
                                  self.centre, self.cross.values(), out)
            return out

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
            if self.fourth_order is not None:
                self._subtract_cross_terms(v, out, start, stop)
            xp.copyto(here, np.float32(0), where=self.exterior[start:stop])
            if b is not None:
                xp.subtract(b[start:stop], here, out=here)
            if gain is not None:
                here *= gain
                here += v[start:stop]

        backend.for_each_slab(xp, work, n, v[0].size)
        return out

    def _subtract_cross_terms(self, v, out, start, stop):
        """``out −= Σ_{a<b} c_ab·δ²_a δ²_b v`` on the fourth-order voxels of planes
        ``start..stop−1``: in-plane second differences of the planes around them, then
        their second differences across planes and along x."""
        xp, n = self.xp, v.shape[0]
        lo, hi = max(start, 1), min(stop, n - 1)
        if lo >= hi:
            return
        planes = v[lo - 1:hi + 1]
        second = []
        for axis in (1, 2):
            d = xp.zeros_like(planes)
            mid, low, high = [slice(None)] * 3, [slice(None)] * 3, [slice(None)] * 3
            mid[axis], low[axis], high[axis] = slice(1, -1), slice(None, -2), slice(2, None)
            d[tuple(mid)] = planes[tuple(low)] + planes[tuple(high)]
            d[tuple(mid)] -= np.float32(2) * planes[tuple(mid)]
            second.append(d)
        dy, dx = second
        across = self.cross[0, 1] * dy + self.cross[0, 2] * dx  # then δ²_z of it
        cross = across[:-2] + across[2:]
        cross -= np.float32(2) * across[1:-1]
        inner = dy[1:-1]  # δ²_x δ²_y
        cross[:, :, 1:-1] += self.cross[1, 2] * (inner[:, :, :-2] + inner[:, :, 2:]
                                                 - np.float32(2) * inner[:, :, 1:-1])
        cross *= self.fourth_order[lo:hi]
        out[lo:hi] -= cross

    def coarsened(self):
        """The 7-point operator on every second voxel (spacing doubled; the interior
        sampled there, less the last face), or None when the grid is too small to coarsen
        (an axis under 5 voxels) or no interior voxel is left."""
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
    voxel ``j``, ``2j+1`` the mean of ``j`` and ``j+1`` (0 past the last), axis by axis:
    along z on the whole grid, then along y and x slab by slab on all cores."""
    xp = backend.array_namespace(coarse)
    along_z = _prolong_axis(xp, coarse, 0, fine_shape[0])
    fine = xp.empty(fine_shape, np.float32)

    def work(start, stop):
        part = _prolong_axis(xp, along_z[start:stop], 1, fine_shape[1])
        fine[start:stop] = _prolong_axis(xp, part, 2, fine_shape[2])

    backend.for_each_slab(xp, work, fine_shape[0], fine_shape[1] * fine_shape[2])
    return fine


def _prolong_axis(xp, out, axis: int, n: int):
    """``out`` interpolated to ``n`` voxels along ``axis``."""
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
    return fine


def restrict(fine, coarse_shape):
    """``Pᵀ/8`` (full weighting): coarse voxel ``j`` takes fine voxel ``2j`` plus half of
    ``2j ± 1``, axis by axis, over 8; slab by slab of coarse planes on all cores."""
    xp = backend.array_namespace(fine)
    n = fine.shape[0]
    coarse = xp.empty(coarse_shape, np.float32)

    def work(start, stop):  # along z: planes 2j, then 2j+1, then 2j−1 (as along y and x)
        part = fine[2 * start:2 * stop:2] * np.float32(0.5)
        after = fine[2 * start + 1:min(n, 2 * stop + 1):2] * np.float32(0.25)
        part[:after.shape[0]] += after
        before = fine[2 * max(start, 1) - 1:2 * stop - 1:2] * np.float32(0.25)
        part[part.shape[0] - before.shape[0]:] += before
        part = _restrict_axis(xp, part, 1, coarse_shape[1])
        coarse[start:stop] = _restrict_axis(xp, part, 2, coarse_shape[2])

    backend.for_each_slab(xp, work, coarse_shape[0], 2 * fine.shape[1] * fine.shape[2])
    return coarse


def _restrict_axis(xp, out, axis: int, m: int):
    """``out`` restricted to ``m`` voxels along ``axis``."""
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
    return coarse


class VCycle:
    """One symmetric V-cycle for ``operator`` (a :class:`DirichletLaplacian`), applied to a
    residual: ``z = cycle(r)``, an approximation of ``operator⁻¹ r``, linear. For the
    7-point operator it is symmetric and positive definite (a preconditioner for CG). With
    ``fourth_order`` rows the finest level smooths and takes residuals with that operator
    (coarser levels are 7-point; the sweeps' gain is the 7-point one, which under-relaxes
    the fourth-order rows, ω·c₁₉/c₇ = 4/7 for cubic voxels): not symmetric, a preconditioner
    for :func:`~.background._bicgstab` (3 iterations to 1e-4 where the 7-point V-cycle
    takes 6).

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
