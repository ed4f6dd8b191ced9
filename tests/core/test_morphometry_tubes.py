"""Centerlines, cross-sections and distortion calibration against analytic tubes."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_mrmicro.core.centerline import (
    centerline, path_distances_um, path_length_um, resample_path)
from napari_mrmicro.core.cross_sections import cross_section_areas, cross_sections, path_tangents
from napari_mrmicro.core.distortion import (
    correct_area, correct_path_length, distortion_profile)


def helix_tube(shape, spacing, radius_um, pitch_um, tube_um, turns, ramp=False):
    """A flat-capped tube of radius ``tube_um`` around a helix about the z axis.

    Returns (mask, true centerline length in µm, densely sampled helix (M, 3) µm). With
    ``ramp`` the mask holds partial-volume fractions (a linear ramp one coarse voxel wide
    across the wall) instead of 0/1.
    """
    spacing = np.asarray(spacing, float)
    centre = np.array(shape) * spacing / 2 + [0.0, 0.37, -0.21]
    rise = pitch_um / (2 * np.pi)
    speed = np.hypot(radius_um, rise)
    t = np.linspace(0, 2 * np.pi * turns, int(2 * np.pi * turns * speed / (0.05 * spacing.min())))
    curve = np.column_stack([centre[0] + rise * (t - t[-1] / 2),
                             centre[1] + radius_um * np.cos(t + 0.3),
                             centre[2] + radius_um * np.sin(t + 0.3)])
    points = np.indices(shape).reshape(3, -1).T * spacing
    width = spacing.max()
    near = np.all(np.abs(points - centre) <= np.abs(curve - centre).max(axis=0)
                  + tube_um + width, axis=1)
    distance = np.full(len(points), np.inf)
    nearest = np.zeros(len(points), dtype=int)
    distance[near], nearest[near] = cKDTree(curve).query(points[near],
                                                         distance_upper_bound=tube_um + width)
    inside_caps = (nearest > 0) & (nearest < len(curve) - 1)  # nearest point is not an end
    if ramp:
        values = np.clip(0.5 + (tube_um - distance) / width, 0, 1) * inside_caps
        mask = values.reshape(shape).astype(np.float32)
    else:
        mask = ((distance <= tube_um) & inside_caps).reshape(shape)
    return mask, t[-1] * speed, curve


ISO_HELIX = dict(shape=(56, 84, 84), spacing=(1.0, 1.0, 1.0), radius_um=28.0, pitch_um=24.0,
                 tube_um=6.0, turns=1.25)
# 50 x 25 x 25 µm voxels: the tube radius is 6 voxels along z, 12 in-plane.
ANISO_HELIX = dict(shape=(36, 84, 84), spacing=(50.0, 25.0, 25.0), radius_um=700.0,
                   pitch_um=750.0, tube_um=300.0, turns=1.1)


@pytest.fixture(scope="module", params=[ISO_HELIX, ANISO_HELIX], ids=["iso", "aniso"])
def helix(request):
    p = request.param
    mask, length, curve = helix_tube(**p)
    path = centerline(mask, p["spacing"])
    return p, mask, length, curve, path


def test_centerline_length_within_one_percent(helix):
    p, mask, length, curve, path = helix
    assert path_length_um(path) == pytest.approx(length, rel=0.01)
    # It follows the helix and runs cap to cap.
    deviation = cKDTree(curve).query(path)[0]
    voxel = max(p["spacing"])
    assert np.median(deviation) < 0.5 * voxel and deviation.max() < 2 * voxel
    ends = sorted([np.linalg.norm(path[0] - curve[0]), np.linalg.norm(path[-1] - curve[0])])
    assert ends[0] < 1.5 * voxel
    assert min(np.linalg.norm(path[[0, -1]] - curve[-1], axis=1)) < 1.5 * voxel
    # Equal steps of about the finest spacing.
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.std() < 0.01 * steps.mean() and steps.max() <= min(p["spacing"]) * 1.001


def test_cross_sections_binary_mask(helix):
    p, mask, length, curve, path = helix
    r = p["tube_um"]
    stations = resample_path(path, count=60)
    sections = cross_sections(mask, stations, p["spacing"])
    inner = (sections.distance_um > 2 * r) & (sections.distance_um
                                               < sections.distance_um[-1] - 2 * r)
    error = sections.areas_um2[inner] / (np.pi * r**2) - 1
    # each section within 2 % of πr² at r = 6 voxels: a 0/1 mask's area is the mean over a
    # thin slab of planes, which removes the ±3 % digitization scatter of single cuts
    assert abs(error.mean()) < 0.005
    assert np.abs(error).max() < 0.02
    assert np.median(sections.min_diameter_um[inner]) == pytest.approx(2 * r, rel=0.03)
    assert np.median(sections.max_diameter_um[inner]) == pytest.approx(2 * r, rel=0.07)
    np.testing.assert_array_equal(cross_section_areas(mask, stations, p["spacing"]),
                                  sections.areas_um2)
    assert sections.distance_um[-1] == pytest.approx(path_length_um(stations))


@pytest.mark.parametrize("params", [ISO_HELIX, ANISO_HELIX], ids=["iso", "aniso"])
def test_cross_sections_partial_volume_mask_each_within_two_percent(params):
    fractions, length, _ = helix_tube(**params, ramp=True)
    r = params["tube_um"]
    path = centerline(fractions >= 0.5, params["spacing"])
    assert path_length_um(path) == pytest.approx(length, rel=0.01)
    stations = resample_path(path, count=50)
    areas = cross_section_areas(fractions, stations, params["spacing"])
    along = path_distances_um(stations)
    inner = (along > r) & (along < along[-1] - r)
    np.testing.assert_allclose(areas[inner], np.pi * r**2, rtol=0.02)


def test_axis_aligned_slice_overstates_a_spiral():
    """The reason for perpendicular sections: a z slice through the helix cuts it obliquely."""
    mask, _, _ = helix_tube(**ISO_HELIX)
    z = mask.shape[0] // 2
    from scipy import ndimage as ndi

    parts, count = ndi.label(mask[z])
    largest = np.bincount(parts.ravel())[1:].max()
    assert largest > 2 * np.pi * ISO_HELIX["tube_um"] ** 2


def test_centerline_between_points():
    mask, length, curve = helix_tube(**ISO_HELIX)
    spacing = ISO_HELIX["spacing"]
    k = len(curve)
    a, b = curve[k // 5], curve[4 * k // 5]
    path = centerline(mask, spacing, points_um=np.array([a, b]))
    np.testing.assert_allclose(path[0], a)
    np.testing.assert_allclose(path[-1], b)
    assert path_length_um(path) == pytest.approx(0.6 * length, rel=0.01)


def test_even_width_bar_has_a_centerline():
    """Lee thinning deletes a square bar of even width entirely; we still find its axis."""
    mask = np.zeros((40, 16, 16), bool)
    mask[5:35, 4:12, 4:12] = True
    spacing = (2.0, 1.0, 1.0)
    path = centerline(mask, spacing)
    assert path_length_um(path) == pytest.approx(30 * 2.0, abs=2.0)
    np.testing.assert_allclose(np.median(path[:, 1:], axis=0), [7.5, 7.5], atol=0.6)
    areas = cross_section_areas(mask, resample_path(path, count=9)[2:-2], spacing)
    np.testing.assert_allclose(areas, 64.0, rtol=0.01)


def test_bad_inputs_and_outside_points():
    spacing = (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        centerline(np.zeros((5, 5, 5), bool), spacing)
    single = np.zeros((5, 5, 5), bool)
    single[2, 2, 2] = True
    with pytest.raises(ValueError, match="centerline"):
        centerline(single, spacing)
    with pytest.raises(ValueError, match="points_um"):
        centerline(np.ones((5, 5, 5)), spacing, points_um=[[0, 0, 0]])
    with pytest.raises(ValueError, match="fractions"):
        cross_sections(np.full((5, 5, 5), 2.0), [[1, 1, 1], [2, 2, 2]], spacing)
    with pytest.raises(ValueError, match="path_um"):
        cross_sections(np.ones((5, 5, 5)), [[1, 1, 1]], spacing)
    with pytest.raises(ValueError, match="repeated"):
        path_tangents([[0, 0, 0], [0, 0, 0], [1, 0, 0]])
    mask = np.zeros((20, 20, 20), bool)
    mask[2:18, 6:14, 6:14] = True  # 8 x 8 voxels: linear interpolation rounds its corners a bit
    sections = cross_sections(mask, [[10, 9.5, 9.5], [11, 9.5, 9.5], [12, 9.5, 9.5]], spacing)
    np.testing.assert_allclose(sections.areas_um2, 64.0, rtol=0.01)
    np.testing.assert_allclose(sections.min_diameter_um, 8.0, rtol=0.02)
    # The diagonal: the interpolated mask's 0.5 line cuts each voxel corner by ≈ 0.3 µm.
    np.testing.assert_allclose(sections.max_diameter_um, 8.0 * np.sqrt(2) - 0.6, atol=0.1)
    outside = cross_sections(mask, [[10, 9.5, 2.0], [11, 9.5, 2.0]], spacing)
    assert np.isnan(outside.areas_um2).all() and np.isnan(outside.max_diameter_um).all()
    with pytest.raises(ValueError, match="different connected parts"):
        other = mask.copy()
        other[2:18, 1:4, 1:4] = True
        centerline(other, spacing, points_um=[[5, 9.5, 9.5], [5, 2.0, 2.0]])


# -- distortion calibration --------------------------------------------------------------------

ALPHA = 0.1 / 80.0**2  # true position u maps to u (1 + α|u|²): +10 % at 80 µm


def _undistort(r_image):
    """True distance from the centre for a distance in the distorted image (Newton)."""
    r = np.array(r_image, dtype=float)
    for _ in range(30):
        r -= (r * (1 + ALPHA * r * r) - r_image) / (1 + 3 * ALPHA * r * r)
    return r


def distorted_tube(shape=(48, 48, 160), diameter=14.6):
    """A straight tube (slightly tilted, off-lattice) imaged with a radial magnification that
    grows with the squared distance from the FOV centre (voxel N // 2)."""
    centre = (np.array(shape) // 2).astype(float)
    image = np.indices(shape).reshape(3, -1).T - centre
    r_image = np.linalg.norm(image, axis=1)
    scale = np.divide(_undistort(r_image), r_image, out=np.ones_like(r_image),
                      where=r_image > 0)
    true = image * scale[:, None]
    axis = np.array([0.05, 0.1, 1.0]) / np.linalg.norm([0.05, 0.1, 1.0])
    rel = true - [0.37, 4.61, 0.0]
    along = rel @ axis
    radial = np.linalg.norm(rel - along[:, None] * axis, axis=1)
    return ((radial <= diameter / 2) & (np.abs(along) <= 70)).reshape(shape)


def test_distortion_profile_recovers_the_magnification():
    diameter = 14.6
    mask = distorted_tube(diameter=diameter)
    profile = distortion_profile(mask, (1.0, 1.0, 1.0), diameter)
    assert profile.tubes == 1
    assert profile.fov_centre_um == (24.0, 24.0, 80.0)
    r = np.array([15.0, 30.0, 45.0, 55.0])
    analytic = (1 + ALPHA * _undistort(r) ** 2) ** 2 - 1  # in-plane magnification squared
    np.testing.assert_allclose(profile.area_error(r), analytic, atol=0.015)
    assert profile.area_error(55.0) > 0.06  # well above the fit's noise
    # Correcting the measured areas removes the trend.
    inner = profile.relative_area_error
    true_area = np.pi * diameter**2 / 4
    measured = (1 + inner) * true_area
    points = np.column_stack([np.full(len(measured), 24.0), np.full(len(measured), 24.0),
                              80.0 + profile.distance_um])
    corrected = correct_area(measured, points, profile)
    assert abs(corrected.mean() / true_area - 1) < 0.005
    far = profile.distance_um > 45
    assert abs(corrected[far].mean() / true_area - 1) < 0.015
    assert "rms residual" in profile.report() and "mm" in profile.report()
    # A path along which the area error is e: its length shrinks by √(1 + e).
    path = np.array([[24.0, 24.0, 80.0 + d] for d in np.linspace(40, 50, 11)])
    expected = sum(np.linalg.norm(b - a) / np.sqrt(1 + profile.area_error((a[2] + b[2]) / 2 - 80))
                   for a, b in zip(path[:-1], path[1:]))
    assert correct_path_length(path, profile) == pytest.approx(expected)


def test_distortion_refuses_short_tubes():
    mask = np.zeros((20, 20, 20), bool)
    mask[8:12, 8:12, 8:12] = True
    with pytest.raises(ValueError, match="three diameters"):
        distortion_profile(mask, (1.0, 1.0, 1.0), 4.0)
    with pytest.raises(ValueError, match="true_diameter_um"):
        distortion_profile(mask, (1.0, 1.0, 1.0), -1.0)


def test_measure_duct_and_area_plot(tmp_path):
    from napari_mrmicro.core.morphometry import measure_duct, write_area_plot, write_table_csv

    mask, length, _ = helix_tube(**ISO_HELIX)
    labels = mask.astype(np.uint8) * 3
    labels[:4, :4, :4] = 1
    table, path, sections = measure_duct(labels, ISO_HELIX["spacing"], label=3, sections=30)
    assert table["label"].tolist() == [1, 3]
    assert path_length_um(path) == pytest.approx(length, rel=0.01)
    assert len(sections) == 30
    png = write_area_plot(sections, tmp_path / "area.png", title="duct")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    csv_path = write_table_csv(sections.as_table(), tmp_path / "sections.csv")
    header = csv_path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "distance_um,area_um2,min_diameter_um,max_diameter_um,z_um,y_um,x_um"
