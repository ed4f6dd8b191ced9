"""The multigrid preconditioner of LBV: exact adjoints, a symmetric positive-definite
V-cycle, and conjugate gradients that converge in a handful of iterations to the same
solution as plain CG."""

import numpy as np
import pytest

from napari_mrmicro.core.qsm.background import _conjugate_gradient
from napari_mrmicro.core.qsm.multigrid import DirichletLaplacian, VCycle, prolong, restrict

RNG = np.random.default_rng(7)


def _ellipsoid(shape=(40, 36, 31), scale=(1.0, 1.0, 1.3), radius=15):
    z, y, x = np.indices(shape)
    centre = [n / 2 for n in shape]
    r2 = sum(((c - m) * s) ** 2 for c, m, s in zip((z, y, x), centre, scale))
    return r2 < radius**2


def _field(shape, where=None):
    v = RNG.standard_normal(shape).astype(np.float32)
    return v if where is None else v * where


@pytest.mark.parametrize("fine", [(9, 8, 7), (10, 11, 12), (5, 6, 5)])
def test_restriction_is_the_prolongation_transposed_over_8(fine):
    coarse = tuple((n + 1) // 2 for n in fine)
    x, y = _field(coarse), _field(fine)
    assert prolong(x, fine).shape == fine and restrict(y, coarse).shape == coarse
    assert np.vdot(prolong(x, fine), y) / 8 == pytest.approx(np.vdot(x, restrict(y, coarse)),
                                                             rel=1e-5)


def test_prolongation_interpolates_linear_functions_exactly():
    fine = (11, 9, 13)
    coarse = tuple((n + 1) // 2 for n in fine)
    zc, yc, xc = np.indices(coarse).astype(np.float32)
    zf, yf, xf = np.indices(fine).astype(np.float32)
    linear = prolong(1 + 2 * zc - yc + 0.5 * xc, fine)
    inner = (slice(0, -1),) * 3  # the last odd voxel of an even axis has no right neighbour
    np.testing.assert_allclose(linear[inner], (1 + zf - 0.5 * yf + 0.25 * xf)[inner],
                               atol=1e-5)


@pytest.mark.parametrize("inv_h2", [(1.0, 1.0, 1.0), (1.0, 0.25, 0.5)])
def test_operator_and_v_cycle_are_symmetric_positive_definite(inv_h2):
    interior = _ellipsoid()
    operator = DirichletLaplacian(interior, inv_h2)
    cycle = VCycle(operator)
    assert len(cycle.levels) >= 3
    a, b = _field(interior.shape, interior), _field(interior.shape, interior)
    for apply in (operator, cycle):
        assert np.vdot(apply(a), b) == pytest.approx(np.vdot(a, apply(b)), rel=1e-4)
        assert np.vdot(apply(a), a) > 0
        assert not apply(a)[~interior].any()  # nothing leaks outside the interior
    # a good preconditioner: the V-cycle inverts most of the operator
    error = cycle(operator(a)) - a
    assert np.linalg.norm(error) < 0.3 * np.linalg.norm(a)


def test_preconditioned_cg_converges_fast_to_the_plain_cg_solution():
    interior = _ellipsoid((60, 56, 48), radius=24)
    operator = DirichletLaplacian(interior, (1.0, 1.0, 0.64))
    rhs = _field(interior.shape, interior)
    counts = {}
    solutions = {}
    for name, precondition in (("plain", None), ("multigrid", VCycle(operator))):
        steps = []
        solutions[name] = _conjugate_gradient(
            operator, rhs, np.zeros_like(rhs), 2000, 1e-5, lambda i, n: steps.append(i),
            precondition)
        counts[name] = len(steps)
        residual = rhs - operator(solutions[name])  # recomputed: float32 CG's own drifts
        assert np.linalg.norm(residual) <= 2e-5 * np.linalg.norm(rhs)
    assert counts["multigrid"] <= 15 and counts["plain"] > 4 * counts["multigrid"]
    np.testing.assert_allclose(solutions["multigrid"], solutions["plain"],
                               atol=1e-4 * np.abs(solutions["plain"]).max())
