"""Encoded positions (off-resonance shift, gradient non-linearity) against a direct
float64 computation of each voxel's source."""

import numpy as np
import pytest

from napari_mrmicro.core import _slabs
from napari_mrmicro.core.encoding import encode

SHAPE, SPACING = (20, 24, 28), (10.0, 12.5, 8.0)


def reference_sources(field, pixels_per_ppm, axis, c, radius):
    """Source coordinate of every voxel, unrounded (float64)."""
    offsets = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in SHAPE], indexing="ij")
    r2 = sum((o * d) ** 2 for o, d in zip(offsets, SPACING))
    k = c / radius**2
    scale = np.ones_like(r2)
    for _ in range(2):
        scale = 1.0 / (1.0 + k * r2 * scale**2)
    sources = [o * scale + (n - 1) / 2 for o, n in zip(offsets, SHAPE)]
    if field is not None:
        sources[axis] = sources[axis] + field * pixels_per_ppm
    return sources


@pytest.mark.parametrize("c, shift, axis", [(0.0, 3.0, 2), (0.0, -2.0, 0), (0.08, 0.0, 2),
                                            (-0.05, 0.0, 1), (0.08, 2.5, 1)])
def test_each_voxel_takes_the_label_of_its_source(c, shift, axis):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 250, SHAPE).astype(np.uint8)
    field = rng.uniform(-1, 1, SHAPE).astype(np.float32) if shift else None
    radius = 0.5 * max(n * d for n, d in zip(SHAPE, SPACING))
    out, out_field = encode(labels, SPACING, readout_axis=axis, field_ppm=field,
                            pixels_per_ppm=shift, nonlinearity=c, radius_um=radius)
    sources = reference_sources(field, shift, axis, c, radius)
    # float32 arithmetic may round the other way within 1e-3 of a half voxel
    clear = np.all([np.abs(s - np.floor(s) - 0.5) > 1e-3 for s in sources], axis=0)
    index = tuple(np.clip(np.floor(s + 0.5), 0, n - 1).astype(int)
                  for s, n in zip(sources, SHAPE))
    assert clear.mean() > 0.98
    np.testing.assert_array_equal(out[clear], labels[index][clear])
    if field is not None:
        np.testing.assert_array_equal(out_field[clear], field[index][clear])
    moved = np.mean(out != labels)
    assert moved > 0.2  # the test moves many voxels


def test_nothing_moves_without_shift_or_nonlinearity():
    labels = np.zeros(SHAPE, np.uint8)
    field = np.ones(SHAPE, np.float32)
    out, out_field = encode(labels, SPACING, field_ppm=field, pixels_per_ppm=0.0)
    assert out is labels and out_field is field


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
