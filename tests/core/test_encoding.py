"""Encoded positions (off-resonance shift, gradient non-linearity) against a direct
float64 computation of each voxel's source."""

import numpy as np
import pytest

from napari_mrmicro.core import _slabs
from napari_mrmicro.core.encoding import encode

SHAPE, SPACING = (20, 24, 28), (10.0, 12.5, 8.0)


def reference_sources(field, pixels_per_ppm, axis, c, radius, shape=SHAPE):
    """Source coordinate of every voxel, unrounded (float64)."""
    offsets = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    r2 = sum((o * d) ** 2 for o, d in zip(offsets, SPACING))
    a = c / radius**2 * r2
    scale = 1.0 / (1.0 + a)
    for _ in range(20):  # Newton on s + a·s³ = 1, to convergence
        scale -= (scale + a * scale**3 - 1) / (1 + 3 * a * scale**2)
    sources = [o * scale + (n - 1) / 2 for o, n in zip(offsets, shape)]
    if field is not None:
        sources[axis] = sources[axis] + field * pixels_per_ppm
    return sources


@pytest.mark.parametrize("c, shift, axis, shape", [
    (0.0, 3.0, 2, SHAPE), (0.0, -2.0, 0, SHAPE), (0.08, 0.0, 2, SHAPE), (-0.05, 0.0, 1, SHAPE),
    (0.08, 2.5, 1, SHAPE), (0.3, 1.5, 2, (9, 15, 13))])
def test_each_voxel_takes_the_label_of_its_source(c, shift, axis, shape):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 250, shape).astype(np.uint8)
    field = rng.uniform(-1, 1, shape).astype(np.float32) if shift else None
    radius = 0.5 * max(n * d for n, d in zip(shape, SPACING))
    out, out_field, _ = encode(labels, SPACING, readout_axis=axis, field_ppm=field,
                               pixels_per_ppm=shift, nonlinearity=c, radius_um=radius)
    sources = reference_sources(field, shift, axis, c, radius, shape)
    # float32 arithmetic may round the other way within 1e-3 of a half voxel
    clear = np.all([np.abs(s - np.floor(s) - 0.5) > 1e-3 for s in sources], axis=0)
    index = tuple(np.clip(np.floor(s + 0.5), 0, n - 1).astype(int)
                  for s, n in zip(sources, shape))
    assert clear.mean() > 0.98
    np.testing.assert_array_equal(out[clear], labels[index][clear])
    if field is not None:
        np.testing.assert_array_equal(out_field[clear], field[index][clear])
    moved = np.mean(out != labels)
    assert moved > 0.2  # the test moves many voxels


def test_nothing_moves_without_shift_or_nonlinearity():
    labels = np.zeros(SHAPE, np.uint8)
    field = np.ones(SHAPE, np.float32)
    out, out_field, density = encode(labels, SPACING, field_ppm=field, pixels_per_ppm=0.0)
    assert out is labels and out_field is field and density is None


def test_result_does_not_depend_on_the_number_of_cores(monkeypatch):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 9, (64, 32, 32)).astype(np.uint8)
    field = rng.uniform(-1, 1, labels.shape).astype(np.float32)
    kwargs = dict(field_ppm=field, pixels_per_ppm=2.0, nonlinearity=0.05, radius_um=400.0)
    many = encode(labels, (12.5,) * 3, **kwargs)
    monkeypatch.setattr(_slabs, "core_count", lambda: 1)
    one = encode(labels, (12.5,) * 3, **kwargs)
    for a, b in zip(many, one):
        np.testing.assert_array_equal(a, b)


def source_map(u, c, radius):
    """Continuous source position (voxels from the centre) of encoded positions ``u``
    (..., 3), by Newton to convergence in float64."""
    a = c / radius**2 * ((u * SPACING) ** 2).sum(axis=-1)
    s = 1.0 / (1.0 + a)
    for _ in range(30):
        s -= (s + a * s**3 - 1) / (1 + 3 * a * s**2)
    return u * s[..., None]


@pytest.mark.parametrize("c, shape", [(0.08, SHAPE), (-0.05, SHAPE), (0.3, (9, 15, 13))])
def test_density_is_the_jacobian_of_the_nonlinearity(c, shape):
    """Against the determinant of central differences (step 1e-4 voxel) of the float64
    source map; a readout shift does not change it."""
    radius = 0.5 * max(n * d for n, d in zip(shape, SPACING))
    labels = np.zeros(shape, np.uint8)
    field = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    _, _, density = encode(labels, SPACING, nonlinearity=c, radius_um=radius)
    u = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"), -1)
    h = 1e-4
    columns = [(source_map(u + h * e, c, radius) - source_map(u - h * e, c, radius)) / (2 * h)
               for e in np.eye(3)]
    jacobian = np.linalg.det(np.stack(columns, -1))
    np.testing.assert_allclose(density, np.abs(jacobian), rtol=1e-4)
    _, _, shifted = encode(labels, SPACING, field_ppm=field, pixels_per_ppm=2.0,
                           nonlinearity=c, radius_um=radius)
    np.testing.assert_array_equal(shifted, density)
    assert encode(labels, SPACING, field_ppm=field, pixels_per_ppm=2.0)[2] is None


def test_a_nonlinearity_that_folds_the_encoding_is_refused():
    labels = np.zeros(SHAPE, np.uint8)
    radius = 0.5 * max(n * d for n, d in zip(SHAPE, SPACING))
    with pytest.raises(ValueError, match="folds the encoding"):
        encode(labels, SPACING, nonlinearity=-0.2, radius_um=radius)
    encode(labels, SPACING, nonlinearity=0.5, radius_um=radius)  # outwards never folds
