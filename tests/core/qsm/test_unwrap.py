import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr
from skimage.restoration import unwrap_phase

from napari_mrmicro.core.qsm.unwrap import (
    unwrap_echoes,
    unwrap_laplacian,
    unwrap_region_growing,
    wrap_phase,
)

SHAPE = (28, 52, 44)
SPACING = (2.0, 1.0, 1.25)  # µm, anisotropic


def grid(shape=SHAPE, spacing=SPACING):
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def smooth_phase(amplitude=1.0):
    """A sum of Gaussians (not harmonic) spanning many multiples of 2π, in radians."""
    z, y, x = grid()
    phase = (21 * np.exp(-((z - 6) ** 2 + (y + 6) ** 2 + x**2) / (2 * 14**2))
             - 15 * np.exp(-((z + 10) ** 2 + (y - 10) ** 2 + (x - 8) ** 2) / (2 * 10**2))
             + 0.02 * x * y)
    phase = (amplitude * phase).astype(np.float32)
    phase -= np.float32(phase.mean())
    return phase


def ellipsoid(scale=1.0):
    z, y, x = grid()
    return (z / 20) ** 2 + (y / 20) ** 2 + (x / 22) ** 2 <= scale


def max_step(phase):
    return max(np.abs(np.diff(phase, axis=a)).max() for a in range(3))


def global_2pi_error(result, truth):
    """Max deviation from truth after removing the best global multiple of 2π, and that k."""
    diff = (result - truth).astype(np.float64)
    k = np.round(np.median(diff) / (2 * np.pi))
    return np.abs(diff - 2 * np.pi * k).max(), k


def test_field_wraps_many_times_with_steps_below_pi():
    """The fixture the tests rely on: ≥ 4 wraps, and every true neighbour step < π."""
    truth = smooth_phase()
    assert np.ptp(truth) / (2 * np.pi) >= 5
    assert max_step(truth) < 0.8 * np.pi


def test_laplacian_recovers_smooth_field_up_to_global_2pi():
    """With every true step < π the wrapped differences are the true ones, so the Poisson
    solution is the truth plus a constant (here the harmonic freedom is fixed to a
    constant by the box's Neumann condition); the constant is chosen congruent with the
    data. Tolerance 1e-3 rad: float32 DCTs of a 50-rad field (~1e-5 relative)."""
    truth = smooth_phase()
    result = unwrap_laplacian(wrap_phase(truth), SPACING)
    err, _ = global_2pi_error(result, truth)
    assert err < 1e-3


def test_laplacian_is_the_physical_least_squares_fit():
    """For inconsistent data (pure noise) the result is argmin Σ_a Σ_edges
    ((Δ_a u − W(Δ_a φ)) / h_a)², checked against scipy's LSQR on the explicit gradient
    system: this catches any misuse of the per-axis spacing."""
    rng = np.random.default_rng(1)
    shape, spacing = (6, 7, 8), (3.0, 1.0, 0.5)
    phase = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    n = phase.size
    index = np.arange(n).reshape(shape)
    blocks, rhs = [], []
    for axis, h in enumerate(spacing):
        a = np.take(index, np.arange(shape[axis] - 1), axis=axis).ravel()
        b = np.take(index, np.arange(1, shape[axis]), axis=axis).ravel()
        rows = np.arange(a.size)
        blocks.append(sp.csr_matrix((np.r_[-np.ones(a.size), np.ones(a.size)] / h,
                                     (np.r_[rows, rows], np.r_[a, b])), shape=(a.size, n)))
        rhs.append(wrap_phase(np.diff(phase, axis=axis)).ravel() / h)
    expected = lsqr(sp.vstack(blocks), np.concatenate(rhs), atol=1e-12, btol=1e-12)[0]
    result = unwrap_laplacian(phase, spacing).ravel()
    assert np.abs((result - result.mean()) - (expected - expected.mean())).max() < 1e-4
    # and the same data with isotropic spacing give a different answer
    isotropic = unwrap_laplacian(phase, 1.0).ravel()
    assert np.abs((isotropic - isotropic.mean()) - (expected - expected.mean())).max() > 0.05


def test_region_growing_recovers_smooth_field_exactly():
    truth = smooth_phase()
    result = unwrap_region_growing(wrap_phase(truth))
    err, _ = global_2pi_error(result, truth)
    assert err < 1e-4
    # the independent peer (Herráez reliability sorting) agrees
    peer = unwrap_phase(wrap_phase(truth).astype(np.float64))
    assert global_2pi_error(peer, truth)[0] < 1e-4


def noisy_specimen(seed=0):
    """A smooth phase inside an ellipsoid of magnitude 1 (SNR 20) holding an air bubble
    (radius 6 µm) where the phase is steepest; in the bubble and outside, pure noise:
    magnitude ~0.05 (Rayleigh) and uniformly random phase."""
    rng = np.random.default_rng(seed)
    truth = smooth_phase()
    z, y, x = grid()
    steepness = np.sqrt(sum(g**2 for g in np.gradient(truth, *SPACING)))
    steepness[~ellipsoid(0.5)] = 0
    c = np.unravel_index(np.argmax(steepness), SHAPE)
    bubble = (z - z[c]) ** 2 + (y - y[c]) ** 2 + (x - x[c]) ** 2 <= 6.0**2
    specimen = ellipsoid() & ~bubble
    data = np.where(specimen, np.exp(1j * truth), 0)
    data = data + (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)) * 0.05
    return specimen, truth, np.abs(data).astype(np.float32), np.angle(data).astype(np.float32)


def test_region_growing_noise_does_not_corrupt_the_specimen():
    """Magnitude guidance: noise (the bubble, the outside) is reached last, so the specimen
    is unwrapped exactly (relative to the noisy data: truth + its phase noise) up to one
    global 2πk, with or without a mask."""
    specimen, truth, magnitude, phase = noisy_specimen()
    noisy_truth = truth + wrap_phase(phase - truth)  # the data's own continuous phase
    for mask in (None, specimen):
        result = unwrap_region_growing(phase, magnitude, mask)
        assert global_2pi_error(result[specimen], noisy_truth[specimen])[0] < 1e-4
    # outside the mask the input comes back unchanged
    result = unwrap_region_growing(phase, magnitude, specimen)
    np.testing.assert_array_equal(result[~specimen], phase[~specimen])
    # phase coherence alone takes a short cut through the bubble and gets voxels wrong
    blind = unwrap_region_growing(phase)
    assert global_2pi_error(blind[specimen], noisy_truth[specimen])[0] > 1.0
    # the least-squares Laplacian spreads the bubble's inconsistency over the specimen
    smooth = unwrap_laplacian(phase, SPACING)
    assert global_2pi_error(smooth[specimen], noisy_truth[specimen])[0] > 1.0


def test_region_growing_each_part_near_zero_mean():
    """Two separate parts of the mask: each exact, each shifted to its mean nearest 0."""
    truth = smooth_phase() + np.float32(6 * np.pi)
    z, y, x = grid()
    mask = (np.abs(y) > 4) & (np.abs(z) < 20)
    result = unwrap_region_growing(wrap_phase(truth), mask=mask)
    for part in (mask & (y < 0), mask & (y > 0)):
        assert global_2pi_error(result[part], truth[part])[0] < 1e-4
        assert abs(result[part].mean()) <= np.pi


def test_unwrap_echoes_temporal_unwrapping_of_wrapping_later_echoes():
    """φ_e = TE_e/TE_1 · φ_1: the last echo spans > 30 wraps and steps > π between
    neighbours (spatially unwrappable no more), yet comes back exactly."""
    te_ms = np.array([2.0, 4.5, 7.0, 9.5])
    phi1 = smooth_phase(amplitude=0.35)
    truth = phi1[np.newaxis] * (te_ms / te_ms[0])[:, None, None, None]
    assert max_step(truth[-1]) > np.pi
    magnitudes = np.broadcast_to(np.exp(-te_ms / 20)[:, None, None, None], truth.shape)
    for kwargs in ({"magnitudes": magnitudes}, {"method": "laplacian", "spacing_um": SPACING}):
        result = unwrap_echoes(wrap_phase(truth), te_ms, **kwargs)
        assert np.abs(result - truth).max() < 1e-3


def test_unwrap_echoes_single_echo_and_te_order():
    truth = smooth_phase(amplitude=0.35)
    single = unwrap_echoes(wrap_phase(truth), [3.0])
    assert single.shape == (1,) + SHAPE
    assert np.abs(single[0] - truth).max() < 1e-4
    # echoes given out of TE order: each is matched to its own TE
    te_ms = [6.0, 2.0, 4.0]
    truth3 = np.stack([truth * t / 2.0 for t in te_ms])
    result = unwrap_echoes(wrap_phase(truth3), te_ms)
    assert np.abs(result - truth3).max() < 1e-3


@pytest.mark.parametrize("call, match", [
    (lambda p: unwrap_laplacian(np.where(p > 0, np.nan, p), 1.0), "wrapped_phase contains NaN"),
    (lambda p: unwrap_laplacian(p, (1.0, 0.0, 1.0)), "spacing_um"),
    (lambda p: unwrap_laplacian(p[0], 1.0), "3-D"),
    (lambda p: unwrap_region_growing(np.exp(1j * p)), "complex"),
    (lambda p: unwrap_region_growing(p, magnitude=p[:-1]), "magnitude has shape"),
    (lambda p: unwrap_region_growing(p, magnitude=np.full_like(p, -1.0)), "magnitude must not"),
    (lambda p: unwrap_region_growing(p, mask=np.zeros(p.shape, bool)), "mask is empty"),
    (lambda p: unwrap_region_growing(p, mask=np.ones((3, 3, 3), bool)), "mask has shape"),
    (lambda p: unwrap_region_growing(p, second_echo_phase=p), "te_ms"),
    (lambda p: unwrap_echoes(np.stack([p, p]), [2.0]), "te_ms has 1 echo times"),
    (lambda p: unwrap_echoes(np.stack([p, p]), [2.0, 0.0]), "te_ms must be positive"),
    (lambda p: unwrap_echoes(np.stack([p, p]), [2.0, 2.0]), "te_ms must be distinct"),
    (lambda p: unwrap_echoes(np.stack([p, np.where(p > 0, np.nan, p)]), [1, 2]), r"phases\[1\]"),
    (lambda p: unwrap_echoes(p, [2.0], method="laplacian"), "spacing_um"),
    (lambda p: unwrap_echoes(p, [2.0], method="path"), "method"),
])
def test_bad_input_names_the_parameter(call, match):
    phase = wrap_phase(np.random.default_rng(0).normal(size=(6, 7, 8)))
    with pytest.raises(ValueError, match=match):
        call(phase)


def test_spanning_tree_integration_matches_scipy_on_a_random_graph():
    """Kruskal's loop with its union-find integration against scipy's minimum spanning
    tree, integrated edge by edge in breadth-first order: the same unwrapped values up to
    one multiple of 2π per connected part (distinct weights: one tree)."""
    import scipy.sparse as sp
    from scipy.sparse import csgraph

    from napari_mrmicro.core.qsm._spanning_tree import unwrap_along_tree
    rng = np.random.default_rng(11)
    n, m = 400, 1500
    first = rng.integers(0, n - 20, m).astype(np.int32)  # the last 20 nodes: parts of one
    second = rng.integers(0, n - 20, m).astype(np.int32)
    pairs = np.unique(np.sort(np.stack([first, second], 1)[first != second], axis=1), axis=0)
    first, second = pairs[:, 0].copy(), pairs[:, 1].copy()  # one edge per pair of nodes
    quality = rng.permutation(first.size).astype(np.float64) / first.size  # all distinct
    phase = rng.uniform(-np.pi, np.pi, n)
    steps, parts = unwrap_along_tree(first, second, np.argsort(-quality, kind="stable"), phase)
    ours = phase + 2 * np.pi * steps

    graph = sp.coo_matrix((2.0 - quality, (first, second)), shape=(n, n)).tocsr()
    tree = csgraph.minimum_spanning_tree(graph)
    count, labels = csgraph.connected_components(tree, directed=False)
    assert count > 20
    assert np.array_equal(labels[:, None] == labels[None, :], parts[:, None] == parts[None, :])
    reference = phase.copy()
    for root in [np.flatnonzero(labels == c)[0] for c in range(count)]:
        order, parent = csgraph.breadth_first_order(tree, root, directed=False,
                                                    return_predecessors=True)
        for node in order[1:]:
            up = parent[node]
            reference[node] += 2 * np.pi * np.round((reference[up] - reference[node])
                                                    / (2 * np.pi))
    shift = (ours - reference) / (2 * np.pi)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    for c in range(count):  # one multiple of 2π per part
        assert np.unique(np.round(shift[labels == c])).size == 1
    # every tree edge differs by less than π after unwrapping
    t = tree.tocoo()
    assert np.all(np.abs(ours[t.row] - ours[t.col]) < np.pi)


def test_edges_best_first_with_ties_in_grid_order():
    from napari_mrmicro.core.qsm._spanning_tree import best_first
    rng = np.random.default_rng(2)
    quality = np.round(rng.random(5000), 2).astype(np.float32)  # many ties
    quality[:3] = [0.0, -0.0, 1.0]
    np.testing.assert_array_equal(best_first(quality),
                                  np.argsort(-(quality + np.float32(0)), kind="stable"))
    assert best_first(quality)[0] == 2 and best_first(np.zeros(3, np.float32)).tolist() == \
        [0, 1, 2]
