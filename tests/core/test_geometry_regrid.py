"""regridded_affine: zero-filled and cropped grids keep the field of view in place."""

import numpy as np

from napari_mrmicro.core.geometry import regridded_affine, world_points


def test_zero_fill_keeps_the_centre_voxel_and_the_field_of_view():
    rotation = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * [500.0, 80.0, 60.0]
    affine[:3, 3] = [10.0, -20.0, 30.0]
    shape, new = (18, 128, 255), (18, 256, 510)
    out = regridded_affine(affine, shape, new)
    np.testing.assert_allclose(np.linalg.norm(out[:3, :3], axis=0), [500.0, 40.0, 30.0])
    centre_old = world_points(affine, [[s // 2 for s in shape]])
    centre_new = world_points(out, [[s // 2 for s in new]])
    np.testing.assert_allclose(centre_new, centre_old, atol=1e-9)
    # the same field of view (the period of the centred FFT): N x voxel on each axis
    fov = lambda a, s: np.linalg.norm(a[:3, :3], axis=0) * s
    np.testing.assert_allclose(fov(out, new), fov(affine, shape))


def test_axes_limit_the_regridding():
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    out = regridded_affine(affine, (5, 8, 8), (10, 16, 16), axes=(-2, -1))
    np.testing.assert_allclose(np.diag(out)[:3], [2.0, 1.5, 2.0])
