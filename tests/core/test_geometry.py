"""World affines (µm, RAS+, napari order) and the spacing contract."""

import numpy as np
import pytest

from napari_mrmicro.core import geometry


def test_as_spacing_number_or_one_per_axis():
    assert geometry.as_spacing(25) == (25.0, 25.0, 25.0)
    assert geometry.as_spacing((1, 2), ndim=2) == (1.0, 2.0)
    for bad in ((1.0, 2.0), (1.0, -1.0, 1.0), (1.0, np.nan, 1.0), "abc", None):
        with pytest.raises(ValueError, match="voxel_um"):
            geometry.as_spacing(bad, name="voxel_um")


def test_nifti_affine_round_trip_and_voxel_mapping():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    xyz = np.eye(4)
    xyz[:3, :3] = q * [0.1, 0.2, 0.5]  # mm, columns i, j, k
    xyz[:3, 3] = [3.0, -4.0, 5.0]
    world = geometry.from_xyz_affine(xyz, 1e3)
    np.testing.assert_allclose(geometry.to_xyz_affine(world, 1e3), xyz, atol=1e-12)
    ijk = np.array([[2.0, 3.0, 4.0]])
    expected_ras_um = (xyz[:3, :3] @ ijk[0] + xyz[:3, 3]) * 1e3
    got = geometry.world_points(world, ijk[:, ::-1])[0]  # (k, j, i) -> (S, A, R)
    np.testing.assert_allclose(got[::-1], expected_ras_um, atol=1e-9)
    np.testing.assert_allclose(geometry.voxel_sizes(world), [500.0, 200.0, 100.0])


def test_split_scale_recomposes():
    a = geometry.from_xyz_affine(np.diag([-0.1, 0.2, 0.5, 1.0]), 1e3)
    a[:3, 3] = (1.0, 2.0, 3.0)
    scale, rest = geometry.split_scale(a)
    assert scale == pytest.approx((500.0, 200.0, 100.0))
    np.testing.assert_allclose(rest @ np.diag(scale + (1.0,)), a)
    assert not geometry.is_axis_aligned(a)
    assert geometry.is_axis_aligned(geometry.grid_affine((1, 2, 3), (4, 5, 6)))


def test_embed_affine_leading_axes_identity():
    a = geometry.grid_affine((2.0, 3.0), (1.0, 1.0))
    out = geometry.embed_affine(a, 4)
    assert out.shape == (5, 5)
    np.testing.assert_allclose(out[2:4, 2:4], np.diag([2.0, 3.0]))
    np.testing.assert_allclose(out[:2, :2], np.eye(2))


def test_check_world_affine_refuses_singular():
    with pytest.raises(ValueError, match="singular"):
        geometry.check_world_affine(np.diag([1.0, 0.0, 1.0, 1.0]), 3)


def test_axis_directions_name_where_each_array_axis_runs():
    from napari_mrmicro.core.geometry import axis_directions

    assert axis_directions(np.diag([2.0, 3.0, 4.0, 1.0])) == [("S", 0.0), ("A", 0.0),
                                                                ("R", 0.0)]
    turn = np.eye(4)  # axis 1 tilted 30° from A towards R; axis 0 runs inferior
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    turn[:3, :3] = [[-1, 0, 0], [0, c, -s], [0, s, c]]
    (a, da), (b, db), (r, dr) = axis_directions(turn)
    assert (a, b, r) == ("I", "A", "R") and da == 0.0
    assert db == pytest.approx(30.0) and dr == pytest.approx(30.0)
    # a 2-D image's plane is A-R (napari's y, x)
    assert axis_directions(np.diag([-2.0, 3.0, 1.0])) == [("P", 0.0), ("R", 0.0)]
