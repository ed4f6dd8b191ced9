"""reslice: oblique planes and slabs through analytic volumes match the analytic values."""

import numpy as np
import pytest

from napari_mrmicro.core.register import reslice
from napari_mrmicro.core.reslice import oblique_plane_affine, sample_volume
from napari_mrmicro.core.transforms import apply_affine

SHAPE = (30, 40, 50)
SPACING = np.array([20.0, 15.0, 10.0])   # anisotropic voxels, µm


def _world_grid():
    return np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)],
                                indexing="ij"), axis=-1)


def _local_points(out_shape, out_spacing):
    """Output-grid local coordinates (µm) in reslice's convention, (N, 3)."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(out_shape, out_spacing)],
                        indexing="ij")
    local = np.zeros((grids[0].size, 3))
    for k, g in enumerate(grids):
        local[:, 3 - len(out_shape) + k] = g.ravel()
    return local


def _inside(points):
    upper = (np.asarray(SHAPE) - 1) * SPACING
    return np.all((points >= 0) & (points <= upper), axis=1)


def test_oblique_plane_through_a_linear_volume_is_exact():
    gradient = np.array([0.3, -0.2, 0.5])                 # per µm
    volume = (_world_grid() @ gradient + 7.0).astype(np.float64)
    out_shape, out_spacing = (35, 45), (8.0, 12.0)
    plane = oblique_plane_affine((290, 300, 245), (25.0, -30.0, 40.0), out_shape, out_spacing)
    out = reslice(volume, SPACING, plane, out_shape, out_spacing)
    world = apply_affine(plane, _local_points(out_shape, out_spacing))
    inside = _inside(world)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out.ravel()[inside], (world @ gradient + 7.0)[inside],
                               rtol=1e-5, atol=1e-3)
    assert np.all(out.ravel()[~inside] == 0)             # cval outside
    # The centre pixel sits at the requested centre.
    centre = apply_affine(plane, [[0, (35 - 1) / 2 * 8.0, (45 - 1) / 2 * 12.0]])
    np.testing.assert_allclose(centre, [[290, 300, 245]], atol=1e-9)


def test_oblique_plane_through_a_smooth_volume_cubic():
    k = 2 * np.pi / np.array([300.0, 250.0, 200.0])       # wavelengths ≫ voxels
    grid = _world_grid()
    volume = np.sin(grid @ k).astype(np.float32)
    out_shape, out_spacing = (40, 40), (7.0, 7.0)
    plane = oblique_plane_affine((290, 290, 245), (15.0, 35.0, -20.0), out_shape, out_spacing)
    out = reslice(volume, SPACING, plane, out_shape, out_spacing, order=3)
    world = apply_affine(plane, _local_points(out_shape, out_spacing))
    inside = _inside(world)
    err = np.abs(out.ravel()[inside] - np.sin(world @ k)[inside])
    assert err.max() < 2e-3


def test_slab_and_axial_plane():
    volume = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    # Angles 0: a plane of constant z; centred so the grid coincides with voxel centres.
    plane = oblique_plane_affine((11 * 20.0, (SHAPE[1] - 1) / 2 * 15, (SHAPE[2] - 1) / 2 * 10),
                                 (0, 0, 0), SHAPE[1:], SPACING[1:])
    np.testing.assert_allclose(reslice(volume, SPACING, plane, SHAPE[1:], SPACING[1:]),
                               volume[11], atol=1e-6)
    slab = reslice(volume, SPACING, np.eye(4), (4, 40, 50), SPACING)
    np.testing.assert_allclose(slab, volume[:4], atol=1e-6)
    labels = (volume > 0.5).astype(np.uint8)
    nearest = reslice(labels, SPACING, np.eye(4), (4, 40, 50), SPACING, order=0)
    assert nearest.dtype == np.uint8
    np.testing.assert_array_equal(nearest, labels[:4])


def test_sample_volume_points():
    volume = (_world_grid() @ [1.0, 2.0, 3.0]).astype(np.float32)
    pts = np.array([[10.0, 20.0, 30.0], [123.4, 56.7, 89.0]])
    np.testing.assert_allclose(sample_volume(volume, SPACING, pts), pts @ [1.0, 2.0, 3.0],
                               rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(volume=np.zeros(SHAPE, complex)), "complex"),
    (dict(plane_affine=np.eye(3)), "4×4"),
    (dict(out_shape=(0, 5)), "out_shape"),
    (dict(out_spacing_um=(1.0, -1.0)), "out_spacing_um"),
    (dict(spacing_um=(1.0, 1.0)), "spacing_um"),
    (dict(order=7), "order"),
])
def test_bad_input(kwargs, message):
    args = dict(volume=np.zeros(SHAPE, np.float32), spacing_um=SPACING, plane_affine=np.eye(4),
                out_shape=(5, 5), out_spacing_um=(1.0, 1.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        reslice(**args)
