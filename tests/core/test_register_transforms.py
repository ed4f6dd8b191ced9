"""Transform conventions and files: rotation matrices, JSON and ITK round trips, and ITK's own
reading of our files (SimpleITK, test-only) against the documented text format."""

import json

import numpy as np
import pytest

from napari_mrmicro.core.reslice import reslice
from napari_mrmicro.io.transform_files import (affine_to_itk, read_itk_affine,
                                                 read_transform_json, write_itk_affine,
                                                 write_transform_json)
from napari_mrmicro.core.transforms import (apply_affine, check_affine, rigid_affine,
                                            rotation_angle_deg, rotation_matrix,
                                            translation_affine)

AFFINE = rigid_affine((12.0, -7.0, 25.0), (40.0, -25.0, 60.0), centre_um=(300, 500, 700),
                      scale=1.05)


def test_rotation_matrix_axes_and_sense():
    for angles in [(30, 0, 0), (0, 30, 0), (0, 0, 30), (10, 20, 30)]:
        r = rotation_matrix(angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
    # About z, +x turns towards +y; about y, +z towards +x; about x, +y towards +z.
    np.testing.assert_allclose(rotation_matrix((90, 0, 0)) @ [0, 0, 1], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix((0, 90, 0)) @ [1, 0, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix((0, 0, 90)) @ [0, 1, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(90.0) @ [0, 1], [1, 0], atol=1e-12)
    assert rotation_angle_deg(rigid_affine((0, 0, 37), 0)) == pytest.approx(37)


def test_rigid_affine_keeps_its_centre():
    c = np.array([[100.0, 200.0, 300.0]])
    a = rigid_affine((30, 40, 50), (0, 0, 0), centre_um=c[0])
    np.testing.assert_allclose(apply_affine(a, c), c)
    np.testing.assert_allclose(translation_affine([1, 2, 3])[:3, 3], [1, 2, 3])


@pytest.mark.parametrize("bad, message", [
    (np.eye(5), "3×3"), (np.full((4, 4), np.nan), "NaN"), (np.diag([1, 1, 0, 1.0]), "singular"),
    (np.eye(4) + np.eye(4, k=-3), "last row"),
])
def test_check_affine_refuses(bad, message):
    with pytest.raises(ValueError, match=message):
        check_affine(bad)


def test_json_round_trip(tmp_path):
    path = write_transform_json(tmp_path / "t.json", AFFINE, "optical", "MRM 13C",
                                kind="similarity", rms_um=1.5)
    record = read_transform_json(path)
    np.testing.assert_array_equal(record["affine"], AFFINE)
    assert record["moving_layer"] == "optical" and record["fixed_layer"] == "MRM 13C"
    assert record["units"] == "um" and record["axes"] == ["z", "y", "x"]
    assert record["kind"] == "similarity" and record["rms_um"] == 1.5
    raw = json.loads(path.read_text())
    raw["units"] = "mm"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="units"):
        read_transform_json(path)


@pytest.mark.parametrize("affine", [AFFINE, np.diag([2.0, 0.5, 1.0, 1.0]),
                                    np.array([[0.9, 0.1, 0, 5], [0, 1, 0.2, -3],
                                              [0.05, 0, 1.1, 7], [0, 0, 0, 1]])])
def test_itk_round_trip(tmp_path, affine):
    path = write_itk_affine(tmp_path / "t.tfm", affine)
    np.testing.assert_allclose(read_itk_affine(path), affine, rtol=0, atol=1e-12)


def test_itk_translation_file_by_hand(tmp_path):
    # Moving → fixed shifts (z, y, x) by (10, 20, 30) µm; ITK's fixed → moving transform
    # shifts (x, y, z) by (−0.03, −0.02, −0.01) mm.
    path = write_itk_affine(tmp_path / "t.txt", translation_affine([10.0, 20.0, 30.0]))
    lines = path.read_text().splitlines()
    assert lines[0] == "#Insight Transform File V1.0"
    assert lines[2] == "Transform: AffineTransform_double_3_3"
    params = np.array(lines[3].split(":")[1].split(), dtype=float)
    np.testing.assert_allclose(params, [1, 0, 0, 0, 1, 0, 0, 0, 1, -0.03, -0.02, -0.01])
    assert lines[4].split(":")[1].split() == ["0.0"] * 3


def test_itk_file_with_centre_maps_a_point_as_documented(tmp_path):
    # T(p) = M (p − c) + c + t: fixed (1, 0, 0) mm → moving M·(0.5, 0, 0) + (0.5, 0, 0) +
    # (1, 2, 3) = (1.5, 2.5, 3) mm; so moving (z, y, x) = (3000, 2500, 1500) µm maps to
    # fixed (0, 0, 1000) µm.
    path = tmp_path / "hand.tfm"
    path.write_text("#Insight Transform File V1.0\n#Transform 0\n"
                    "Transform: AffineTransform_double_3_3\n"
                    "Parameters: 0 -1 0 1 0 0 0 0 1 1 2 3\nFixedParameters: 0.5 0 0\n")
    affine = read_itk_affine(path)
    np.testing.assert_allclose(apply_affine(affine, [[3000.0, 2500.0, 1500.0]]),
                               [[0.0, 0.0, 1000.0]], atol=1e-9)
    sitk = pytest.importorskip("SimpleITK")  # test-only peer
    itk = sitk.ReadTransform(str(path))
    np.testing.assert_allclose(itk.TransformPoint((1.0, 0.0, 0.0)), (1.5, 2.5, 3.0))


def test_simpleitk_reads_our_file_and_resamples_like_reslice(tmp_path):
    sitk = pytest.importorskip("SimpleITK")  # test-only peer
    rng = np.random.default_rng(0)
    moving = rng.random((20, 24, 28)).astype(np.float32)
    sm, sf = np.array([30.0, 25.0, 20.0]), np.array([25.0, 25.0, 25.0])
    affine = rigid_affine((4.0, -3.0, 6.0), (20.0, -15.0, 10.0), centre_um=(250, 300, 280))
    path = write_itk_affine(tmp_path / "t.tfm", affine)
    itk = sitk.ReadTransform(str(path))
    q = np.array([[100.0, 200.0, 300.0]])               # a fixed point, (z, y, x) µm
    expected = apply_affine(np.linalg.inv(affine), q)[0][::-1] / 1000
    np.testing.assert_allclose(itk.TransformPoint(tuple(q[0][::-1] / 1000)), expected,
                               atol=1e-12)
    image = sitk.GetImageFromArray(moving)
    image.SetSpacing(tuple(sm[::-1] / 1000))
    ref = sitk.GetImageFromArray(np.zeros((18, 22, 24), np.float32))
    ref.SetSpacing(tuple(sf[::-1] / 1000))
    peer = sitk.GetArrayFromImage(sitk.Resample(image, ref, itk, sitk.sitkLinear, 0.0))
    ours = reslice(moving, sm, np.linalg.inv(affine), (18, 22, 24), sf)
    # ITK also extrapolates half a voxel beyond the edge voxel centres; compare inside both.
    inside = (peer != 0) & (ours != 0)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(ours[inside], peer[inside], atol=1e-5)


def test_itk_unsupported_transform(tmp_path):
    path = tmp_path / "bspline.tfm"
    path.write_text("#Insight Transform File V1.0\nTransform: BSplineTransform_double_3_3\n"
                    "Parameters: 1 2\nFixedParameters: 0\n")
    with pytest.raises(ValueError, match="unsupported ITK transform"):
        read_itk_affine(path)
    assert affine_to_itk(np.eye(4))[0].shape == (3, 3)
