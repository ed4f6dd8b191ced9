"""Mutual-information registration across contrasts: 3-D ↔ 3-D and a 2-D section ↔ 3-D."""

from functools import partial

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mrmicro.core.mutual_information import mutual_information
from napari_mrmicro.core.register import (affine_scale, mutual_information_affine, reslice,
                                          section_plane_affine, section_scale)
from napari_mrmicro.core.reslice import oblique_plane_affine
from napari_mrmicro.core.transforms import (apply_affine, box_corners_um, displacement_error_um,
                                            rigid_affine, rotation_angle_deg)

N = 48
VOXEL_UM = 30.0
SPACING = np.full(3, VOXEL_UM)


def _specimen(seed=0):
    """Two 'modalities' of one random tissue layout: 4 tissues with unrelated,
    non-monotonic intensities (e.g. MRM proton density vs optical), blurred, with noise."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(N, N, N)), 4)
    labels = np.digitize(field, np.quantile(field, [0.3, 0.55, 0.8])).astype(np.uint8)
    mrm = ndi.gaussian_filter(np.array([0.0, 1.0, 0.4, 0.7], np.float32)[labels], 0.7)
    optical = ndi.gaussian_filter(np.array([0.5, 0.1, 1.0, 0.0], np.float32)[labels], 0.7)
    mrm += rng.normal(0, 0.03, mrm.shape).astype(np.float32)
    return labels, mrm, optical, rng


def _offset(degrees, voxels, centre):
    """A rigid perturbation of ``degrees`` and ``voxels`` (norms), about ``centre``."""
    return rigid_affine((degrees / np.sqrt(3),) * 3, (voxels * VOXEL_UM / np.sqrt(3),) * 3,
                        centre_um=centre)


def test_mutual_information_values():
    labels, mrm, optical, rng = _specimen()
    remapped = np.array([3.0, 0.0, 2.0, 1.0])[labels]          # a bijective, non-monotonic map
    self_mi = mutual_information(labels.astype(float), labels.astype(float))
    assert mutual_information(labels.astype(float), remapped) == pytest.approx(self_mi, rel=1e-6)
    # 4 equiprobable-ish tissues: MI = their entropy ≤ ln 4.
    assert 1.2 < self_mi <= np.log(4) + 1e-9
    assert mutual_information(mrm, optical) > 0.5
    assert mutual_information(mrm, rng.random(mrm.shape)) < 0.02
    with pytest.raises(ValueError, match="constant"):
        mutual_information(np.ones((8, 8)), rng.random((8, 8)))


@pytest.mark.parametrize("seed, voxels", [(1, 5.0), (3, 8.0)])
def test_3d_refinement_across_contrasts(seed, voxels):
    """From 5° and 5 or 8 voxels off (seed 3 at 8 voxels: the old metric, which dropped
    samples mapped outside and used 32 bins at every level, ended 76 voxels away)."""
    labels, mrm, optical, rng = _specimen(seed)
    centre = (N - 1) / 2 * SPACING
    truth = rigid_affine((4.0, -3.0, 2.0), (90.0, -60.0, 45.0), centre_um=centre)
    # The optical volume (moving) sees the tissue at fixed point truth·x.
    moving = reslice(optical, SPACING, truth, (N, N, N), SPACING)
    moving += rng.normal(0, 0.03, moving.shape).astype(np.float32)
    start = _offset(5.0, voxels, centre) @ truth
    corners = box_corners_um((N, N, N), SPACING)
    assert displacement_error_um(start, truth, corners).max() > voxels * VOXEL_UM
    fit = mutual_information_affine(moving, SPACING, mrm, SPACING, start, samples=5000)
    err = displacement_error_um(fit.affine, truth, corners).max() / VOXEL_UM
    assert err < 1.0, f"worst-corner error {err:.2f} voxels"
    assert rotation_angle_deg(fit.affine @ np.linalg.inv(truth)) < 1.0
    assert fit.mutual_information > 0.5 and fit.evaluations > 0


def test_two_scans_on_one_grid_stay_in_place():
    """Two contrasts of one texture sampled on the same grid (two scans of one slab) with
    independent noise, fitted from their true pose: samples on voxel centres made every
    pose off the grid score better than the truth (MI's grid artefact), and the fit
    drifted 25–43 µm (a quarter voxel and more); off-grid samples keep it in place."""
    shape, spacing = (18, 64, 64), (500.0, 100.0, 100.0)
    texture = ndi.gaussian_filter(np.random.default_rng(1).normal(size=shape), (0.8, 2, 2))
    texture /= texture.std()
    for seed in range(3):
        noise = np.random.default_rng(10 + seed)
        fixed = (texture + 0.6 * noise.normal(size=shape)).astype(np.float32)
        moving = (texture**2 + 0.6 * noise.normal(size=shape)).astype(np.float32)
        fit = mutual_information_affine(moving, spacing, fixed, spacing, seed=seed)
        assert np.abs(fit.affine[:3, 3]).max() < 5.0, fit.affine
        assert rotation_angle_deg(fit.affine) < 0.05


@pytest.mark.parametrize("size", [0.75, 1.1])
def test_3d_scale_of_shrunk_or_swollen_tissue_found(size):
    """The optical volume sees the tissue at ``size`` times its size in the MRM (cleared
    or fixed tissue shrinks or swells): a rigid fit misses it by voxels; with
    ``scale=True`` it is found, with the scale 1/size within 1.5 %."""
    labels, mrm, optical, rng = _specimen(0)
    centre = (N - 1) / 2 * SPACING
    truth = rigid_affine((4.0, -3.0, 2.0), (30.0, -40.0, 20.0), centre_um=centre,
                         scale=1 / size)
    moving = reslice(optical, SPACING, truth, (N, N, N), SPACING)
    moving += rng.normal(0, 0.03, moving.shape).astype(np.float32)
    start = _offset(5.0, 5.0, centre) @ rigid_affine((4.0, -3.0, 2.0), (30.0, -40.0, 20.0),
                                                     centre_um=centre)
    _rigid_misses_scaled_finds(
        partial(mutual_information_affine, moving, SPACING, mrm, SPACING, start, samples=5000),
        truth, box_corners_um((N, N, N), SPACING), affine_scale, 1 / size, 0.015, 3)


def test_3d_volumes_in_unrelated_frames_start_from_their_centres():
    """An optical stack at its stage position, 100 voxels off the MRM: the centres are
    aligned first, then the pose found; voxel sizes 1000 times off are refused."""
    labels, mrm, optical, rng = _specimen(1)
    centre = (N - 1) / 2 * SPACING
    truth = rigid_affine((4.0, -3.0, 2.0), (90.0, -60.0, 45.0), centre_um=centre)
    moving = reslice(optical, SPACING, truth, (N, N, N), SPACING)
    far = rigid_affine((0.0, 0.0, 0.0), (0.0, 100 * VOXEL_UM, -100 * VOXEL_UM)) @ truth
    fit = mutual_information_affine(moving, SPACING, mrm, SPACING, far, samples=5000)
    corners = box_corners_um((N, N, N), SPACING)
    assert displacement_error_um(fit.affine, truth, corners).max() < VOXEL_UM
    with pytest.raises(ValueError, match="do not overlap"):
        mutual_information_affine(moving, SPACING, mrm, SPACING * 1000, samples=5000)


def _rigid_misses_scaled_finds(register, truth, corners, scale_of, expected, rel, missed):
    """``register(scale=False)`` ends over ``missed`` voxels (worst corner) from ``truth``
    with scale 1; ``register(scale=True)`` within a voxel, its scale ``expected``."""
    fits = [register(scale=scale) for scale in (False, True)]
    errors = [displacement_error_um(f.affine, truth, corners).max() / VOXEL_UM for f in fits]
    assert errors[0] > missed and errors[1] < 1.0, f"worst-corner errors {errors} voxels"
    assert scale_of(fits[0].affine) == pytest.approx(1.0)
    assert scale_of(fits[1].affine) == pytest.approx(expected, rel=rel)


def _section_case(seed):
    """An MRM volume, an optical section cut from its other contrast on an oblique plane,
    that plane, the section's pixel spacing and its local centre."""
    labels, mrm, optical, rng = _specimen(seed)
    shape, spacing = (64, 64), np.array([20.0, 20.0])       # finer optical pixels
    truth = oblique_plane_affine((N - 1) / 2 * SPACING + [40.0, -30.0, 20.0],
                                 (10.0, 20.0, -15.0), shape, spacing)
    section = reslice(optical, SPACING, truth, shape, spacing)
    section += rng.normal(0, 0.03, shape).astype(np.float32)
    local_centre = [0.0, (shape[0] - 1) / 2 * spacing[0], (shape[1] - 1) / 2 * spacing[1]]
    return mrm, section, truth, spacing, local_centre


def _section_error(section, spacing, mrm, start, truth):
    fit = section_plane_affine(section, spacing, mrm, SPACING, start, samples=4000)
    corners = np.column_stack([np.zeros(4), box_corners_um(section.shape, spacing)])
    return fit, displacement_error_um(fit.affine, truth, corners).max() / VOXEL_UM


def test_section_pose_found_in_the_volume():
    mrm, section, truth, spacing, local_centre = _section_case(2)
    start = truth @ _offset(3.0, 3.0, local_centre)
    corners = np.column_stack([np.zeros(4), box_corners_um(section.shape, spacing)])
    assert displacement_error_um(start, truth, corners).max() > 3 * VOXEL_UM
    fit, err = _section_error(section, spacing, mrm, start, truth)
    assert err < 1.0, f"worst-corner error {err:.2f} voxels"
    # The found plane reslices the MRM volume into the section's anatomy.
    found = reslice(mrm, SPACING, fit.affine, section.shape, spacing)
    assert mutual_information(section, found) > 0.8 * mutual_information(
        section, reslice(mrm, SPACING, truth, section.shape, spacing))
    assert apply_affine(fit.affine, [local_centre]).shape == (1, 3)


def test_samples_outside_the_moving_image_carry_no_information():
    """Mapped outside the moving image, samples fall in an 'outside' bin: the MI of the
    rest is not inflated by leaving them out (the small-overlap bias)."""
    from napari_mrmicro.core.mutual_information import MattesMetric
    labels, mrm, optical, _ = _specimen()
    fixed, moving = mrm.ravel(), optical.ravel()
    metric = MattesMetric(fixed, (moving.min(), moving.max()))
    everything = metric(moving, np.ones(moving.size, bool))
    assert everything == pytest.approx(metric(moving))  # all inside: plain Mattes MI
    assert everything == pytest.approx(mutual_information(mrm, optical))
    half = np.arange(moving.size) < moving.size // 2
    inside_half = MattesMetric(fixed[half], (moving.min(), moving.max()))(moving[half])
    with_outside = metric(moving, half)
    assert with_outside < 0.6 * inside_half  # about half: the outside half tells nothing


def test_coarse_levels_use_fewer_bins():
    from napari_mrmicro.core.register import _level_bins
    assert [_level_bins(32, n) for n in (100, 256, 1024, 4096, 10000)] == [8, 8, 16, 32, 32]
    assert _level_bins(16, 10000) == 16


@pytest.mark.parametrize("normal_voxels, degrees", [(-3, 0), (2, 0), (4, 0), (12, 0),
                                                    (-15, 0), (10, 5)])
def test_section_pose_found_from_a_plane_off_along_its_normal(normal_voxels, degrees):
    """Seed 3's section, started off along its normal (and turned): before the outside bin
    and the per-level bins the coarse level preferred a pose 13–70 voxels away even from
    2 voxels off; the depth scan finds it from anywhere along the normal."""
    mrm, section, truth, spacing, local_centre = _section_case(3)
    start = truth @ rigid_affine((degrees, degrees / 2, 0), (normal_voxels * VOXEL_UM, 0, 0),
                                 centre_um=local_centre)
    _, err = _section_error(section, spacing, mrm, start, truth)
    assert err < 1.0, f"worst-corner error {err:.2f} voxels"


def test_depth_scan_moves_the_plane_along_its_normal_inside_the_volume():
    from napari_mrmicro.core.register import _along_normal
    mrm, section, truth, spacing, local_centre = _section_case(3)
    box = (np.asarray(mrm.shape) - 1) * SPACING
    poses = _along_normal(truth, local_centre, box, 60.0)
    centre = apply_affine(truth, [local_centre])[0]
    normal = truth[:3, 0]
    shifts = [float(np.dot(apply_affine(p, [local_centre])[0] - centre, normal))
              for p in poses]
    assert len(poses) > 10 and 0.0 not in shifts
    # steps of 60 µm, in order, on both sides of the start (which is not repeated)
    np.testing.assert_allclose(np.diff(sorted(shifts + [0.0])), 60.0)
    assert shifts == sorted(shifts) and shifts[0] < 0 < shifts[-1]
    for pose, shift in zip(poses, shifts):
        np.testing.assert_allclose(pose[:3, :3], truth[:3, :3])  # the same orientation
        assert np.all((apply_affine(pose, [local_centre])[0] >= -1e-6)
                      & (apply_affine(pose, [local_centre])[0] <= box + 1e-6))
    # one step beyond each end leaves the volume
    for shift in (shifts[0] - 60.0, shifts[-1] + 60.0):
        outside = centre + shift * normal
        assert np.any((outside < 0) | (outside > box))
    # a start whose centre lies outside the volume gets no scan
    far = truth.copy()
    far[:3, 3] += 10 * box.max() * truth[:3, 1]
    assert _along_normal(far, local_centre, box, 60.0) == []


@pytest.mark.parametrize("degrees, normal_voxels, tilt", [(105, 7, 0), (195, -5, 5),
                                                           (285, 2, 8)])
def test_section_found_at_any_in_plane_angle(degrees, normal_voxels, tilt):
    """A section lies on its slide at any angle: the search tries 24 turns about its
    normal (with the depth scan), screens them on two levels and refines the best few.
    With the start's orientation only, the same starts end tens of voxels away."""
    mrm, section, truth, spacing, local_centre = _section_case(3)
    start = truth @ rigid_affine((degrees, tilt, tilt / 2), (normal_voxels * VOXEL_UM, 0, 0),
                                 centre_um=local_centre)
    _, err = _section_error(section, spacing, mrm, start, truth)
    assert err < 1.0, f"worst-corner error {err:.2f} voxels"
    fit = section_plane_affine(section, spacing, mrm, SPACING, start, samples=4000, turns=1)
    corners = np.column_stack([np.zeros(4), box_corners_um(section.shape, spacing)])
    assert displacement_error_um(fit.affine, truth, corners).max() > 5 * VOXEL_UM


@pytest.mark.parametrize("shift_voxels, degrees", [((6, 0), 0), ((5, 5), 100)])
def test_section_found_off_in_its_plane_within_the_reach(shift_voxels, degrees):
    mrm, section, truth, spacing, local_centre = _section_case(3)
    start = truth @ rigid_affine((degrees, 0, 0), (0, *np.multiply(shift_voxels, VOXEL_UM)),
                                 centre_um=local_centre)
    corners = np.column_stack([np.zeros(4), box_corners_um(section.shape, spacing)])
    errors = [displacement_error_um(section_plane_affine(
        section, spacing, mrm, SPACING, start, samples=4000, reach_um=reach).affine,
        truth, corners).max() / VOXEL_UM for reach in (0.0, 10 * VOXEL_UM)]
    assert errors[0] > 5 and errors[1] < 1.0, f"worst-corner errors {errors} voxels"


def test_a_mirrored_section_found_with_a_reflecting_pose():
    mrm, section, truth, spacing, local_centre = _section_case(3)
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = 2 * local_centre[2]
    start = truth @ rigid_affine((200.0, 0.0, 0.0), (-6 * VOXEL_UM, 0, 0),
                                 centre_um=local_centre)
    fit = section_plane_affine(section[:, ::-1], spacing, mrm, SPACING, start, samples=4000,
                               mirror=True)
    corners = np.column_stack([np.zeros(4), box_corners_um(section.shape, spacing)])
    assert displacement_error_um(fit.affine, truth @ flip, corners).max() < VOXEL_UM
    assert np.linalg.det(fit.affine[:3, :3]) < 0


@pytest.mark.parametrize("size", [0.8, 0.95, 1.08])
def test_a_shrunk_or_swollen_section_found_with_its_scale(size):
    """A section whose tissue is ``size`` times that in the volume (histology shrinks
    by 10–30 %): found with ``scale=True``, its scale 1/size within 1 %; a rigid search
    misses it by over a voxel (by tens of voxels at 20 % shrinkage)."""
    _, mrm, optical, rng = _specimen(1)
    shape, nominal = (64, 64), np.array([20.0, 20.0])
    plane = oblique_plane_affine((N - 1) / 2 * SPACING + [40.0, -30.0, 20.0],
                                 (10.0, 20.0, -15.0), shape, nominal / size)
    section = reslice(optical, SPACING, plane, shape, nominal / size)
    section += rng.normal(0, 0.03, shape).astype(np.float32)
    truth = plane @ np.diag([1.0, 1 / size, 1 / size, 1.0])  # from the nominal pixel µm
    local_centre = [0.0, 31.5 * 20.0, 31.5 * 20.0]
    start = oblique_plane_affine((N - 1) / 2 * SPACING + [40.0, -30.0, 20.0],
                                 (10.0, 20.0, -15.0), shape, nominal) @ rigid_affine(
        (40.0, 3.0, 0.0), (3 * VOXEL_UM, 0.0, 0.0), centre_um=local_centre)
    _rigid_misses_scaled_finds(
        partial(section_plane_affine, section, nominal, mrm, SPACING, start, samples=4000),
        truth, np.column_stack([np.zeros(4), box_corners_um(shape, nominal)]), section_scale,
        1 / size, 0.01, 1)


def test_a_section_placed_off_the_volume_is_searched_from_its_centre():
    """An optical section keeps its stage position, unrelated to the scanner's frame: a
    start 100 voxels off in-plane is moved to the volume's centre and the plane found."""
    mrm, section, truth, spacing, local_centre = _section_case(3)
    start = truth @ rigid_affine((30.0, 0.0, 0.0), (0.0, 100 * VOXEL_UM, -60 * VOXEL_UM),
                                 centre_um=local_centre)
    _, err = _section_error(section, spacing, mrm, start, truth)
    assert err < 1.0, f"worst-corner error {err:.2f} voxels"


def test_a_section_that_cannot_overlap_the_volume_is_refused():
    """Voxel sizes 1000 times off (nm taken for µm): at every pose tried nearly all of the
    section lies outside the volume and MI is 0, which is an error, not a fit."""
    mrm, section, _, _, _ = _section_case(3)
    with pytest.raises(ValueError, match="no pose tried puts the section inside the volume"):
        section_plane_affine(section, 20_000.0, mrm, SPACING, samples=4000)


@pytest.mark.parametrize("kwargs, message", [(dict(turns=0), "turns"),
                                             (dict(reach_um=-1.0), "reach_um"),
                                             (dict(reach_um=np.inf), "reach_um"),
                                             (dict(turns=10**6), "fewer turns"),
                                             (dict(reach_um=1e6, mirror=True, scale=True),
                                              "smaller reach_um")])
def test_bad_section_search_arguments(kwargs, message):
    mrm, section, _, spacing, _ = _section_case(3)
    with pytest.raises(ValueError, match=message):
        section_plane_affine(section, spacing, mrm, SPACING, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels=(1, 2)), "levels"),
    (dict(samples=10), "samples"),
    (dict(fixed_mask=np.zeros((N, N, N), bool)), "fixed_mask is empty"),
    (dict(initial_affine=np.eye(3)), "initial_affine"),
])
def test_bad_arguments(kwargs, message):
    _, mrm, optical, _ = _specimen()
    with pytest.raises(ValueError, match=message):
        mutual_information_affine(optical, SPACING, mrm, SPACING, **kwargs)


def test_nan_and_constant_images_refused():
    _, mrm, optical, _ = _specimen()
    bad = optical.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="moving contains NaN"):
        mutual_information_affine(bad, SPACING, mrm, SPACING)
    with pytest.raises(ValueError, match="constant"):
        section_plane_affine(np.ones((32, 32)), 20.0, mrm, SPACING)


def test_progress_callback_reports_and_a_raise_stops_the_search():
    _, mrm, optical, _ = _specimen(2)
    calls = []

    class Stop(Exception):
        pass

    def callback(done, total):
        calls.append((done, total))
        if len(calls) == 25:
            raise Stop

    with pytest.raises(Stop):
        mutual_information_affine(optical, SPACING, mrm, SPACING, samples=2000,
                                  callback=callback)
    assert len(calls) == 25 and calls[0] == (0, 3 * 800)
    assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(Stop):
        section_plane_affine(optical[N // 2], SPACING[1:], mrm, SPACING, samples=2000,
                             callback=lambda *_: (_ for _ in ()).throw(Stop()))
