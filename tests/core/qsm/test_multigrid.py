"""LBV's Laplacian and its multigrid preconditioner: exact adjoints, a symmetric
positive-definite V-cycle, a fourth-order stencil exact for harmonic quartics, and BiCGSTAB
that converges in a handful of iterations to the same solution as without the V-cycle."""

import numpy as np
import pytest

from napari_mrmicro.core.qsm.background import _bicgstab
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


def _fourth_order(region):
    """Voxels of ``region`` whose 18 face and edge neighbours are all in it."""
    inside = region.copy()
    for offset in np.ndindex(3, 3, 3):
        if 1 <= sum(abs(o - 1) for o in offset) <= 2:
            inside &= np.roll(region, [1 - o for o in offset], (0, 1, 2))
    return inside


def test_fourth_order_stencil_differences_harmonic_quartics_exactly():
    """The 19-point rows give 0 for a harmonic quartic on an anisotropic grid (Collatz's
    stencil is exact for it); the 7-point rows give the error ``Σ h_a²/12·∂⁴_a u``."""
    shape, spacing = (24, 22, 26), np.array([1.0, 0.8, 1.25])  # in units of h_min
    spacing /= spacing.min()
    z, y, x = (np.indices(shape).astype(np.float64).T - np.array(shape) / 2).T * \
        spacing[:, None, None, None]
    r2 = x**2 + y**2 + z**2
    u = 35 * z**4 - 30 * z**2 * r2 + 3 * r2**2  # r⁴·P₄(cos θ)·8, harmonic
    interior = _ellipsoid(shape, radius=10)
    fourth = _fourth_order(interior) & (RNG.random(shape) < 0.7)
    assert fourth.sum() > 1000 and (interior & ~fourth).sum() > 1000
    result = DirichletLaplacian(interior, 1 / spacing**2, fourth)(u)
    rounding = 1e-6 * np.abs(u[interior]).max()  # the stencil's weights are float32
    assert np.abs(result[fourth]).max() < rounding
    # the 7-point rows: −(Σ_a h_a²/12·∂⁴_a u), ∂⁴_z u = 192, ∂⁴_y u = ∂⁴_x u = 72
    seven = interior & ~fourth
    expected = -(spacing**2 / 12 * np.array([192, 72, 72])).sum()
    assert abs(expected) > 300 * rounding
    np.testing.assert_allclose(result[seven], expected, atol=rounding)
    assert not result[~interior].any()


def test_bicgstab_with_the_v_cycle_converges_fast():
    """The mixed-order operator (not symmetric) solved by BiCGSTAB: its V-cycle as
    preconditioner cuts the iterations more than fourfold, to the same solution."""
    interior = _ellipsoid((60, 56, 48), radius=24)
    inv_h2 = (1.0, 1.0, 0.64)
    operator = DirichletLaplacian(interior, inv_h2, _fourth_order(interior))
    rhs = _field(interior.shape, interior)
    counts, solutions = {}, {}
    for name, precondition in (("plain", lambda r: r),
                               ("multigrid", VCycle(operator))):
        steps = []
        solutions[name] = _bicgstab(operator, rhs, np.zeros_like(rhs), 2000, 1e-6,
                                    lambda i, n: steps.append(i), precondition)
        counts[name] = len(steps)
        residual = rhs - operator(solutions[name])  # recomputed: float32's own drifts
        assert np.linalg.norm(residual) <= 2e-6 * np.linalg.norm(rhs)
    assert counts["multigrid"] <= 10 and counts["plain"] > 4 * counts["multigrid"], counts
    np.testing.assert_allclose(solutions["multigrid"], solutions["plain"],
                               atol=1e-4 * np.abs(solutions["plain"]).max())
