"""The compiled CPU loops (core/qsm/_fused.py) give the bits of the numpy form they replace:
the array-namespace form that the GPU runs, and the plain numpy formulas."""

import numpy as np
import pytest

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import _fused
from napari_mrmicro.core.qsm.medi import invert_medi
from napari_mrmicro.core.qsm.tv import invert_tv
from napari_mrmicro.core.qsm.unwrap import unwrap_laplacian


class _OtherNamespace:
    """numpy under another name: the solvers then take the array-namespace path of the GPU."""

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def namespace_path(monkeypatch):
    """Run the GPU's array-namespace code on numpy (one slab, scipy's transforms)."""
    other = _OtherNamespace()
    monkeypatch.setattr(backend, "namespace", lambda device: other)
    monkeypatch.setattr(backend, "fft", lambda xp: backend._CPU_FFT)


def _problem(shape=(14, 12, 10), seed=3):
    rng = np.random.default_rng(seed)
    field = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    mask = rng.random(shape) > 0.15
    magnitude = (rng.random(shape) + 0.2).astype(np.float32)
    return field, mask, magnitude


def test_tv_fused_loops_equal_the_array_namespace_path(request):
    field, mask, magnitude = _problem()
    spacing, b0 = (1.0, 1.3, 2.0), (0.3, 0.2, 1.0)
    fused = [invert_tv(field, mask, spacing, b0, max_iter=12, tol=0),
             invert_tv(field, mask, spacing, b0, max_iter=12, tol=0, pad=2,
                       data_weight=magnitude),
             invert_medi(field, mask, spacing, b0, magnitude=magnitude, max_iter=12, tol=0)]
    request.getfixturevalue("namespace_path")
    reference = [invert_tv(field, mask, spacing, b0, max_iter=12, tol=0),
                 invert_tv(field, mask, spacing, b0, max_iter=12, tol=0, pad=2,
                           data_weight=magnitude),
                 invert_medi(field, mask, spacing, b0, magnitude=magnitude, max_iter=12,
                             tol=0)]
    for a, b in zip(fused, reference):
        assert np.abs(b).max() > 0
        np.testing.assert_array_equal(a, b)


def test_tv_stopping_rule_sees_the_same_change(request):
    """The fused update's float64 sums stop the iteration where the numpy form does."""
    field, mask, _ = _problem(seed=4)
    seen = {}

    def record(key):
        def callback(iteration, total):
            seen.setdefault(key, []).append(iteration)
        return callback

    invert_tv(field, mask, 1.0, tol=2e-2, max_iter=200, callback=record("fused"))
    request.getfixturevalue("namespace_path")
    invert_tv(field, mask, 1.0, tol=2e-2, max_iter=200, callback=record("numpy"))
    assert 1 < len(seen["fused"]) < 200
    assert seen["fused"] == seen["numpy"]


@pytest.mark.parametrize("runs", [1, 3, 7])
def test_tv_update_runs_join_across_their_borders(monkeypatch, runs):
    """Runs of planes recompute the split variable of the plane before them: any cut of the
    first axis gives the same bits, also with fewer planes than runs."""
    field, mask, magnitude = _problem(shape=(5, 8, 6), seed=5)
    expected = invert_medi(field, mask, (1.0, 1.0, 1.5), magnitude=magnitude, max_iter=6,
                           tol=0)
    def cut(n, per_core=4):
        parts = min(n, runs)
        return [(r * n // parts, (r + 1) * n // parts) for r in range(parts)]

    monkeypatch.setattr(backend, "plane_runs", cut)
    np.testing.assert_array_equal(
        invert_medi(field, mask, (1.0, 1.0, 1.5), magnitude=magnitude, max_iter=6, tol=0),
        expected)


def _wrapped_laplacian_numpy(phase, spacing):
    """Σ_axes [W(φ_{i+1} − φ_i) − W(φ_i − φ_{i−1})]/h², zero flux across the faces: the
    numpy form of the previous implementation, term by term in the same order."""
    out = np.zeros(phase.shape, np.float32)
    two_pi = 2 * np.pi
    for axis, h in enumerate(spacing):
        difference = np.diff(phase, axis=axis)
        flux = (difference - np.round(difference / two_pi) * two_pi) * np.float32(1 / h**2)
        ahead = [slice(None)] * 3
        behind = [slice(None)] * 3
        ahead[axis], behind[axis] = slice(0, -1), slice(1, None)
        out[tuple(ahead)] += flux
        out[tuple(behind)] -= flux
    return out


@pytest.mark.parametrize("shape", [(9, 7, 6), (1, 5, 4), (6, 1, 1)])
def test_wrapped_laplacian_equals_numpy(shape):
    rng = np.random.default_rng(7)
    phase = rng.uniform(-12, 12, shape).astype(np.float32)
    spacing = (20.0, 25.0, 30.0)
    weights = np.array([1 / h**2 for h in spacing], np.float32)
    out = np.empty(shape, np.float32)
    for start in range(shape[0]):  # plane by plane, as slabs do
        _fused.wrapped_laplacian(phase, weights, start, start + 1, out[start:start + 1])
    np.testing.assert_array_equal(out, _wrapped_laplacian_numpy(phase, spacing))


def test_laplacian_unwrapping_of_a_smooth_phase_is_exact_up_to_2pi():
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in (12, 14, 10)), indexing="ij")
    truth = (6 * z + 4 * y * y - 3 * x).astype(np.float32)
    wrapped = (truth - 2 * np.pi * np.round(truth / (2 * np.pi))).astype(np.float32)
    unwrapped = unwrap_laplacian(wrapped, (20.0, 20.0, 25.0))
    shift = unwrapped - truth
    assert np.ptp(shift) < 1e-3
    assert abs(shift.mean() / (2 * np.pi) - round(shift.mean() / (2 * np.pi))) < 1e-3


def test_spectrum_products_equal_numpy():
    rng = np.random.default_rng(8)
    spectrum = (rng.standard_normal((6, 5, 4)) + 1j * rng.standard_normal((6, 5, 4))
                ).astype(np.complex64)
    factor = rng.standard_normal((6, 5, 4)).astype(np.float32)
    out = np.empty_like(spectrum)
    _fused.multiply_spectrum(spectrum, factor, out)
    np.testing.assert_array_equal(out, spectrum * factor)
    _fused.multiply_spectrum(spectrum, factor, spectrum)  # in place
    np.testing.assert_array_equal(spectrum, out)



def test_smv_products_equal_numpy(monkeypatch):
    monkeypatch.setattr(backend, "SLAB_VOXELS", 40)  # several slabs
    rng = np.random.default_rng(9)
    kernel, mask = ((rng.standard_normal((6, 5, 4)) + 1j * rng.standard_normal((6, 5, 4))
                     ).astype(np.complex64) for _ in range(2))
    smv = kernel.real.copy()
    high_pass = np.empty(smv.shape, np.float32)
    _fused.smv_products(kernel, mask, high_pass)
    np.testing.assert_array_equal(high_pass, np.subtract(1, smv))
    np.testing.assert_array_equal(kernel, mask * smv)


@pytest.mark.parametrize("clear", [(slice(1, 6), slice(2, 4), slice(0, 5)),
                                   (slice(4, 3), slice(0, 5), slice(0, 5))])
def test_new_claims_and_claim_equal_numpy(monkeypatch, clear):
    monkeypatch.setattr(backend, "SLAB_VOXELS", 30)  # several slabs
    rng = np.random.default_rng(10)
    shape = (7, 6, 5)
    mean = rng.random(shape).astype(np.float32)
    claimed = rng.random(shape) > 0.7
    threshold = np.float32(0.4)
    eroded = np.zeros(shape, bool)
    eroded[clear] = mean[clear] > threshold
    expected = eroded & ~claimed
    new = np.empty(shape, bool)
    assert _fused.new_claims(mean, threshold, clear, claimed, new) == expected.any()
    np.testing.assert_array_equal(new, expected)
    filtered, combined = rng.random(shape).astype(np.float32), np.zeros(shape, np.float32)
    want_combined, want_claimed = combined.copy(), claimed | new
    np.copyto(want_combined, filtered, where=new)
    _fused.claim(filtered, new, combined, claimed)
    np.testing.assert_array_equal(combined, want_combined)
    np.testing.assert_array_equal(claimed, want_claimed)

def test_all_finite_finds_one_bad_voxel_in_any_slab(monkeypatch):
    monkeypatch.setattr(backend, "SLAB_VOXELS", 4)
    volume = np.zeros((7, 3, 2), np.float32)
    assert backend.all_finite(volume)
    for value in (np.nan, np.inf, -np.inf):
        bad = volume.copy()
        bad[5, 2, 1] = value
        assert not backend.all_finite(bad)


@pytest.mark.parametrize("inv_h2", [(1.0, 1.0, 1.0), (1.0, 0.25, 0.64)])
@pytest.mark.parametrize("fourth", [False, True])
def test_dirichlet_pass_equals_the_array_namespace_form(inv_h2, fourth):
    """LBV's Laplacian, its residual and its Jacobi sweep: the compiled visit per voxel
    against the array-namespace form (the GPU's), on an irregular mask with the
    fourth-order stencil where it fits."""
    from napari_mrmicro.core.qsm.multigrid import DirichletLaplacian

    rng = np.random.default_rng(11)
    region = np.pad(rng.random((18, 15, 13)) > 0.06, 1)
    interior = region.copy()
    for axis in range(3):
        interior &= np.roll(region, 1, axis) & np.roll(region, -1, axis)
    full = interior.copy()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        for shift in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            full &= np.roll(region, shift, (a, b))
    assert not fourth or full.sum() > 50
    v = rng.standard_normal(region.shape).astype(np.float32)  # also outside: a field
    rhs = (rng.standard_normal(region.shape) * interior).astype(np.float32)
    compiled = DirichletLaplacian(interior, inv_h2, full if fourth else None)
    reference = DirichletLaplacian(interior, inv_h2, full if fourth else None)
    reference.xp = _OtherNamespace()
    gain = np.float32(0.15)
    for args in ((v,), (v, rhs), (v, rhs, gain)):
        expected = reference._pass(*args)
        assert np.abs(expected).max() > 0
        np.testing.assert_array_equal(compiled._pass(*args), expected)
