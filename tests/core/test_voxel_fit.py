"""The voxel-wise least-squares machinery: small solves, grid start and Levenberg-Marquardt
against numpy and scipy."""

import numpy as np
import pytest
from scipy.optimize import least_squares

from napari_mrmicro.core.voxel_fit import grid_start, levenberg_marquardt, solve_small


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_small_solves_match_lapack_and_flag_singular_systems(k):
    rng = np.random.default_rng(k)
    a, b = rng.normal(size=(500, k, k)), rng.normal(size=(500, k))
    if k > 3:  # the normal equations the larger systems are
        a = a @ np.swapaxes(a, 1, 2)
    a[0] = 0.0  # singular
    x, ok = solve_small(a, b)
    assert not ok[0] and ok[1:].all()
    np.testing.assert_allclose(x[1:], np.linalg.solve(a[1:], b[1:, :, None])[:, :, 0],
                               rtol=1e-8, atol=1e-10)


T = np.linspace(0.0, 1.0, 7)


def biexponential_free(p, _rows):
    """a + b e^{−r t}: the model every inversion recovery fits."""
    e = np.exp(-np.outer(p[:, 2], T))
    return p[:, :1] + p[:, 1:2] * e, [np.ones_like(e), e, -p[:, 1:2] * T * e]


def test_levenberg_marquardt_reaches_scipys_minimum_and_weights_drop_points():
    rng = np.random.default_rng(0)
    truth = np.column_stack([rng.uniform(1, 2, 50), rng.uniform(-3, -1, 50),
                             rng.uniform(1, 6, 50)])
    y = biexponential_free(truth, None)[0] + rng.normal(0, 0.02, (50, 7))
    weights = np.ones_like(y)
    weights[:, 3] = 0  # the point every row leaves out
    start = truth * rng.uniform(0.8, 1.2, truth.shape)
    p, cost, information = levenberg_marquardt(biexponential_free, start, y, weights)
    keep = np.arange(7) != 3
    for row in range(50):
        def residual(q):
            return (biexponential_free(q[None], None)[0][0] - y[row])[keep]

        reference = least_squares(residual, start[row], method="lm", xtol=1e-12)
        np.testing.assert_allclose(p[row], reference.x, rtol=1e-5)
        assert cost[row] == pytest.approx(2 * reference.cost, rel=1e-6)
        jacobian = reference.jac
        np.testing.assert_allclose(information[row], jacobian.T @ jacobian, rtol=1e-4)
    assert np.isnan(levenberg_marquardt(biexponential_free, np.full((1, 3), np.nan),
                                        y[:1])[0]).all()  # no start: no fit


def test_the_grid_start_is_the_best_rate_with_amplitudes_in_closed_form():
    rates = np.geomspace(0.5, 20, 40)
    truth = np.column_stack([np.full(3, 1.5), np.full(3, -2.5), rates[[4, 17, 33]]])
    y = biexponential_free(truth, None)[0]
    rate, amplitudes, cost = grid_start(
        lambda r: np.stack([np.ones_like(T), np.exp(-r * T)]), rates, y)
    np.testing.assert_allclose(rate, truth[:, 2])
    np.testing.assert_allclose(amplitudes, truth[:, :2], rtol=1e-9)
    np.testing.assert_allclose(cost, 0, atol=1e-12)  # ‖y‖² − cᵀΦy: rounding only
