"""landmark_affine: known transforms recovered from noisy landmarks; degenerate input refused."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from skimage.transform import EuclideanTransform, SimilarityTransform

from napari_mrmicro.core.register import landmark_affine
from napari_mrmicro.core.transforms import (apply_affine, box_corners_um, displacement_error_um,
                                            rigid_affine, rotation_angle_deg, rotation_matrix)

VOXEL_UM = 20.0


def _random_similarity(rng, with_scale=True):
    affine = np.eye(4)
    scale = rng.uniform(0.8, 1.25) if with_scale else 1.0
    affine[:3, :3] = scale * Rotation.random(random_state=rng).as_matrix()
    affine[:3, 3] = rng.uniform(-500, 500, 3)
    return affine


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["rigid", "similarity"])
def test_random_transform_recovered_from_noisy_landmarks(seed, kind):
    rng = np.random.default_rng(seed)
    truth = _random_similarity(rng, with_scale=kind == "similarity")
    moving = rng.uniform(0, 2000, (30, 3))             # a 2 mm specimen, 20 µm voxels
    fixed = apply_affine(truth, moving) + rng.normal(0, 1.0, (30, 3))  # 1 µm click noise
    fit = landmark_affine(moving, fixed, kind)
    affine, rms = fit                                   # unpacks as DESIGN's pair
    rot_err = rotation_angle_deg(affine @ np.linalg.inv(truth))
    centre = moving.mean(axis=0, keepdims=True)
    trans_err = displacement_error_um(affine, truth, centre)[0]
    assert rot_err < 0.1
    assert trans_err < 0.1 * VOXEL_UM
    # The residuals are the noise: RMS of 3-D N(0, 1 µm) is √3 µm, less the fitted DOF.
    assert 1.2 < rms < 2.0
    np.testing.assert_allclose(fit.residuals_um,
                               np.linalg.norm(apply_affine(affine, moving) - fixed, axis=1))
    assert rms == pytest.approx(np.sqrt(np.mean(fit.residuals_um**2)))
    # Independent estimate (scikit-image's Umeyama implementation).
    peer = (SimilarityTransform if kind == "similarity" else EuclideanTransform).from_estimate(
        moving, fixed)
    np.testing.assert_allclose(affine, peer.params, atol=1e-8)


def test_exact_similarity_and_affine_are_exact():
    rng = np.random.default_rng(7)
    moving = rng.uniform(-100, 100, (6, 3))
    truth = rigid_affine((20, -35, 50), (10, 20, -30), centre_um=(5, 5, 5), scale=1.3)
    fit = landmark_affine(moving, apply_affine(truth, moving), "similarity")
    np.testing.assert_allclose(fit.affine, truth, atol=1e-10)
    assert fit.rms_um < 1e-9
    general = truth.copy()
    general[:3, :3] = rng.normal(size=(3, 3))
    fit = landmark_affine(moving, apply_affine(general, moving), "affine")
    np.testing.assert_allclose(fit.affine, general, atol=1e-9)


def test_reflection_is_never_returned_for_rigid():
    rng = np.random.default_rng(3)
    moving = rng.uniform(-50, 50, (10, 3))
    fixed = moving * np.array([1, 1, -1])           # a mirror image: no rotation fits exactly
    affine, rms = landmark_affine(moving, fixed, "rigid")
    assert np.linalg.det(affine[:3, :3]) == pytest.approx(1.0)
    assert rms > 1.0


def test_two_dimensional():
    rng = np.random.default_rng(1)
    moving = rng.uniform(0, 500, (8, 2))
    truth = np.eye(3)
    truth[:2, :2] = 0.9 * rotation_matrix(25.0)
    truth[:2, 2] = (12.0, -40.0)
    fit = landmark_affine(moving, apply_affine(truth, moving), "similarity")
    np.testing.assert_allclose(fit.affine, truth, atol=1e-10)
    assert rotation_angle_deg(fit.affine) == pytest.approx(25.0)


def test_coplanar_points_fix_a_rigid_but_not_an_affine_transform():
    rng = np.random.default_rng(2)
    plane = np.column_stack([np.zeros(6), rng.uniform(0, 100, (6, 2))])  # all at z = 0
    truth = rigid_affine((10, 20, 30), (1, 2, 3))
    fit = landmark_affine(plane, apply_affine(truth, plane), "rigid")
    np.testing.assert_allclose(fit.affine, truth, atol=1e-9)
    with pytest.raises(ValueError, match="coplanar .*; an affine fit needs points spanning 3 "
                                         "independent directions; fit a similarity or rigid"):
        landmark_affine(plane, apply_affine(truth, plane), "affine")


@pytest.mark.parametrize("moving, fixed, kind, message", [
    (np.zeros((3, 3)), np.zeros((3, 3)), "rigid", "at least 4"),
    (np.outer(np.arange(5.0), [1, 2, 3]), np.outer(np.arange(5.0), [1, 2, 3]), "similarity",
     "collinear"),
    (np.ones((5, 3)), np.ones((5, 3)), "rigid", "same point"),
    (np.eye(4, 3), np.eye(5, 3), "rigid", "same shape"),
    (np.r_[np.eye(4, 3), [[np.nan, 0, 0]]], np.eye(5, 3), "rigid", "NaN"),
    (np.eye(4, 3), np.eye(4, 3), "projective", "kind"),
    (np.zeros((5, 4)), np.zeros((5, 4)), "rigid", r"\(N, 2\) or \(N, 3\)"),
])
def test_bad_input_refused(moving, fixed, kind, message):
    with pytest.raises(ValueError, match=message):
        landmark_affine(moving, fixed, kind)


def test_collinear_fixed_points_refused():
    moving = np.random.default_rng(0).uniform(0, 10, (5, 3))
    fixed = np.outer(np.arange(5.0), [0, 0, 1])
    with pytest.raises(ValueError, match="fixed_um.*collinear"):
        landmark_affine(moving, fixed, "rigid")


def test_box_corners_bound_the_volume():
    corners = box_corners_um((3, 4, 5), (2.0, 1.0, 0.5))
    assert corners.shape == (8, 3)
    np.testing.assert_allclose(corners.max(axis=0), [4.0, 3.0, 2.0])
