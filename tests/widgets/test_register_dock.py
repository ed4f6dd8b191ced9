"""The "Register" dock in a real viewer: an optical-like volume (nm units, other contrast)
rendered from an MRM-like one through a known similarity transform, and a 2-D section."""

import re

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mrmicro.core.landmarks import landmark_affine
from napari_mrmicro.core.reslice import oblique_plane_affine, reslice
from napari_mrmicro.core.transforms import (apply_affine, box_corners_um, displacement_error_um,
                                            rigid_affine, rotation_matrix)
from napari_mrmicro.io.transform_files import read_itk_affine, read_transform_json
from napari_mrmicro.widgets.register import (RegisterWidget, array_affine_um, checkerboard,
                                             points_world_um)

from dock_checks import screenshot

pytestmark = pytest.mark.gui

SHAPE_F, S_F = (24, 40, 40), np.full(3, 40.0)            # MRM: 40 µm voxels
T_F = np.array([100.0, -200.0, 300.0])                   # its translate (µm)
SHAPE_M, S_M = (36, 56, 56), np.full(3, 20.0)            # optical: 20 µm voxels, in nm
T_M_NM = np.array([-5000.0, 12_000.0, 7_000.0])


def _tissue(seed=0):
    """One random tissue layout in two unrelated contrasts (MRM, optical), fixed grid."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=SHAPE_F), 3)
    labels = np.digitize(field, np.quantile(field, [0.3, 0.55, 0.8]))
    mrm = ndi.gaussian_filter(np.array([0.0, 1.0, 0.4, 0.7], np.float32)[labels], 0.7)
    optical = ndi.gaussian_filter(np.array([0.5, 0.1, 1.0, 0.0], np.float32)[labels], 0.7)
    return mrm + rng.normal(0, 0.02, SHAPE_F).astype(np.float32), optical, rng


def _truth():
    """Similarity, moving array frame → fixed array frame (µm): 1.15×, ~6°, shifted."""
    c_f = (np.asarray(SHAPE_F) - 1) / 2 * S_F
    c_m = (np.asarray(SHAPE_M) - 1) / 2 * S_M
    out = np.eye(4)
    out[:3, :3] = 1.15 * rotation_matrix((4.0, -3.0, 2.5))
    out[:3, 3] = c_f + np.array([12.0, -30.0, 25.0]) - out[:3, :3] @ c_m
    return out


@pytest.fixture
def scene(make_napari_viewer):
    mrm, optical_truth, rng = _tissue()
    truth = _truth()
    optical = reslice(optical_truth, S_F, truth, SHAPE_M, S_M)
    viewer = make_napari_viewer(show=True)
    fixed = viewer.add_image(mrm, name="MRM", scale=S_F, translate=T_F, units="µm")
    moving = viewer.add_image(optical, name="optical", scale=S_M * 1000, translate=T_M_NM,
                              units="nm", colormap="magma")
    dock = RegisterWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Register")
    dock.fixed.value, dock.moving.value = fixed, moving
    return viewer, dock, fixed, moving, truth, optical_truth, rng


def _finish(qtbot, dock, worker):
    """Wait for the fit: its ``finished`` may fire before a waitSignal could connect (a
    landmark fit takes milliseconds), so wait for the dock's own slot, connected before
    the start, which re-enables "Fit" after the result is applied."""
    assert worker is not None and not dock.fit_button.enabled
    qtbot.waitUntil(lambda: dock.fit_button.enabled, timeout=120_000)


def _world_um(layer, index):
    """Where napari draws voxel ``index`` of a layer, µm (napari's own transform)."""
    factor = 1e-3 if str(layer.units[-1]) == "nanometer" else 1.0
    return np.asarray(layer.data_to_world(index), dtype=float) * factor


def test_landmarks_fit_undo_views_and_export(scene, qtbot, tmp_path, logged):
    viewer, dock, fixed, moving, truth, optical_truth, rng = scene
    fixed_pts, moving_pts = dock.add_landmark_layers()
    assert (fixed_pts.name, moving_pts.name) == ("fixed landmarks", "moving landmarks")
    assert str(moving_pts.units[0]) == "nanometer"
    # Landmarks in each image's world: fixed in µm, moving in nm (before registration the
    # optical layer sits where its own translate puts it).
    fixed_arr = rng.uniform([150, 300, 300], [800, 1300, 1300], (8, 3))
    moving_arr = apply_affine(np.linalg.inv(truth), fixed_arr) + rng.normal(0, 1.0, (8, 3))
    fixed_pts.data = fixed_arr + T_F
    moving_pts.data = moving_arr * 1000 + T_M_NM

    dock.method.value = "landmarks: similarity"
    _finish(qtbot, dock, dock.fit())
    assert "Register: landmarks: similarity → 'optical' affine set" in logged.messages
    expected = landmark_affine(moving_arr, fixed_arr, "similarity")
    np.testing.assert_allclose(array_affine_um(moving, fixed), expected.affine, atol=1e-6)
    # napari draws every optical voxel where the fit puts it, over the MRM voxel the truth
    # says (µm, across nm/µm units; 1 µm landmark noise, a lever arm of ~1 mm).
    for index in box_corners_um(SHAPE_M, S_M) / S_M:
        drawn = _world_um(moving, index)
        np.testing.assert_allclose(drawn, T_F + apply_affine(expected.affine,
                                                             (index * S_M)[None])[0], atol=1e-6)
        assert np.linalg.norm(drawn - T_F - apply_affine(truth, (index * S_M)[None])[0]) < 10
    # The moving landmarks followed their image onto the fixed ones.
    np.testing.assert_allclose(points_world_um(moving_pts), points_world_um(fixed_pts),
                               atol=4.0)
    # Residuals per pair: table and Points features.
    assert dock.table.rowCount() == 8
    shown = [float(dock.table.item(r, 1).text()) for r in range(8)]
    np.testing.assert_allclose(shown, expected.residuals_um, atol=0.006)
    np.testing.assert_allclose(moving_pts.features["residual_um"], expected.residuals_um)
    assert dock.rms.value.startswith(f"RMS {expected.rms_um:.2f} µm")

    # Blend and checkerboard views.
    blending = moving.blending
    dock.blend.value = True
    assert moving.blending == "additive" and moving.colormap.name == "magenta"
    assert fixed.colormap.name == "green"
    dock.square.value = 200.0
    board = dock.add_checkerboard()
    assert board.data.shape == SHAPE_F and tuple(board.scale) == pytest.approx(tuple(S_F))
    assert board.name == "checkerboard 200 µm MRM | optical"  # the view and its setting
    resampled = reslice(moving.data, S_M, np.linalg.inv(expected.affine), SHAPE_F, S_F)
    covered = resampled > 0
    # The registered optical volume, resampled on the MRM grid, is the optical truth.
    assert np.corrcoef(resampled[covered], optical_truth[covered])[0, 1] > 0.97
    parity = (np.indices(SHAPE_F) * S_F[:, None, None, None] // 200.0).sum(0) % 2
    f_lo, f_hi = np.percentile(fixed.data, [1, 99])
    np.testing.assert_allclose(board.data[parity == 0],
                               np.clip((fixed.data - f_lo) / (f_hi - f_lo), 0, 1)[parity == 0],
                               atol=1e-5)
    lo, hi = np.percentile(resampled, [1, 99])
    np.testing.assert_allclose(board.data[parity == 1],
                               np.clip((resampled - lo) / (hi - lo), 0, 1)[parity == 1],
                               atol=1e-5)
    viewer.window._qt_window.resize(1400, 900)
    viewer.layers.selection.active = moving
    board.visible = False
    viewer.reset_view()
    viewer.dims.set_point(0, (T_F[0] + 12 * S_F[0]) * 1000)   # world in nm (finest unit)
    shot = screenshot(viewer, "register")
    assert shot[..., :3].std() > 10
    dock.blend.value = False
    assert moving.blending == blending and moving.colormap.name == "magma"

    # Export: JSON (core convention) and ITK, round trips.
    record = read_transform_json(dock.export_transform(tmp_path / "t.json"))
    np.testing.assert_allclose(record["affine"], expected.affine, atol=1e-9)
    assert record["moving_layer"] == "optical" and record["kind"] == "similarity"
    np.testing.assert_allclose(record["moving_origin_um"], T_M_NM / 1000)
    np.testing.assert_allclose(read_itk_affine(dock.export_transform(tmp_path / "t.tfm")),
                               expected.affine, atol=1e-9)

    # Undo restores the optical layer's own pose, and its landmarks with it.
    dock.undo()
    np.testing.assert_allclose(moving.affine.affine_matrix, np.eye(4))
    np.testing.assert_allclose(moving_pts.affine.affine_matrix, np.eye(4))
    assert not dock.undo_button.enabled


def test_mutual_information_refines_a_perturbed_pose(scene, qtbot):
    viewer, dock, fixed, moving, truth, _, _ = scene
    centre = (np.asarray(SHAPE_F) - 1) / 2 * S_F
    start = rigid_affine((2.0, -1.5, 1.0), (40.0, -30.0, 35.0), centre_um=centre) @ truth
    dock.apply_affine_um(start)
    corners = box_corners_um(SHAPE_M, S_M)
    assert displacement_error_um(start, truth, corners).max() > 60.0
    dock.method.value = "mutual information (3-D)"
    _finish(qtbot, dock, dock.fit())
    fitted = array_affine_um(moving, fixed)
    # Rigid refinement of a similarity truth: within one MRM voxel over the optical stack.
    assert displacement_error_um(fitted, truth, corners).max() < S_F[0]
    assert len(dock.undo_stack) == 2
    dock.undo()
    np.testing.assert_allclose(array_affine_um(moving, fixed), start, atol=1e-9)
    # From a rigid start (the optical stack's 1.15× scale unknown) only "fit shrinkage"
    # finds it, and says the optical tissue is the smaller by 13 %.
    rigid_start = start @ np.diag([1 / 1.15, 1 / 1.15, 1 / 1.15, 1.0])
    dock.apply_affine_um(rigid_start)
    dock.shrink.value = True
    _finish(qtbot, dock, dock.fit())
    assert displacement_error_um(array_affine_um(moving, fixed), truth, corners).max() < S_F[0]
    assert dock.last_fit["scale"] == pytest.approx(1.15, rel=0.01)
    assert re.search(r"; scale 1\.1[45]\d \(moving shrunk 1[23]\.\d%\)", dock.rms.value)


def test_cancelled_fit_says_so_and_leaves_the_pose(scene, qtbot, logged):
    """Cancel ends the mutual-information fit within a second: the core search reports
    before every metric evaluation, so the job itself stops there."""
    import time

    viewer, dock, fixed, moving, *_ = scene
    dock.method.value = "mutual information (3-D)"
    pose = moving.affine.affine_matrix.copy()
    worker = dock.fit()
    qtbot.wait(200)
    start = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=5_000):
        worker.quit()
    assert time.perf_counter() - start < 1.0
    qtbot.waitUntil(lambda: dock.fit_button.enabled, timeout=5_000)
    assert "Mutual-information registration: cancelled" in logged.messages
    np.testing.assert_array_equal(moving.affine.affine_matrix, pose)
    assert not dock.undo_button.enabled


def test_section_placed_fitted_and_resliced(make_napari_viewer, qtbot):
    mrm, optical_truth, rng = _tissue(1)
    centre = (np.asarray(SHAPE_F) - 1) / 2 * S_F + np.array([40.0, 0.0, 0.0])
    sec_shape, sec_spacing = (60, 60), np.array([20.0, 20.0])
    plane = oblique_plane_affine(centre, (3.0, 6.0, -4.0), sec_shape, sec_spacing)
    section = reslice(optical_truth, S_F, plane, sec_shape, sec_spacing)
    viewer = make_napari_viewer()
    fixed = viewer.add_image(mrm, name="MRM", scale=S_F, translate=T_F, units="µm")
    optical = viewer.add_image(section, name="section", scale=sec_spacing * 1000,
                               translate=(3000.0, -2000.0), units="nm")
    dock = RegisterWidget(viewer)
    dock.fixed.value, dock.moving.value = fixed, optical
    assert dock.section_z.value == pytest.approx(T_F[0] + (SHAPE_F[0] - 1) / 2 * S_F[0])

    dock.section_z.value = 500.0
    placed = dock.place_section()
    assert placed.data.shape == (1,) + sec_shape and "section" not in viewer.layers[:-1]
    assert placed.axis_labels[0] == fixed.axis_labels[0]  # the scene's z keeps its name
    assert viewer.layers.index(placed) == 1 and dock.moving.value is placed
    # On its plane: pixel (j, i) at z = 500 µm, its own (y, x) position kept.
    np.testing.assert_allclose(_world_um(placed, (0, 2, 3)), [500.0, 3 + 40.0, -2 + 60.0])
    # One MRM slice thick, not broadcast over the stack.
    assert placed.extent.world[1, 0] - placed.extent.world[0, 0] == pytest.approx(0.0)
    assert str(placed.units[0]) == "nanometer"

    fixed_pts, moving_pts = dock.add_landmark_layers()
    local = np.column_stack([np.zeros(6), rng.uniform(100, 1100, (6, 2))])
    fixed_pts.data = apply_affine(plane, local) + T_F
    moving_pts.data = (local + [0.0, 3000 / 1000, -2000 / 1000]) * 1000
    dock.method.value = "landmarks: rigid"
    _finish(qtbot, dock, dock.fit())
    fitted = array_affine_um(placed, fixed)
    grid = box_corners_um((1,) + sec_shape, (1.0, *sec_spacing))
    assert displacement_error_um(fitted, plane, grid).max() < 1e-6

    resliced = dock.add_resliced()
    assert resliced.data.shape == (1,) + sec_shape
    np.testing.assert_array_equal(resliced.data[0],
                                  reslice(mrm, S_F, fitted, sec_shape, sec_spacing))
    np.testing.assert_allclose(resliced.affine.affine_matrix, placed.affine.affine_matrix)
    board = dock.add_checkerboard()
    assert board.data.shape == (1,) + sec_shape

    # The plane search refines a pose 2 voxels and 2° off (worst corner 2.5 voxels).
    off = rigid_affine((0.0, 2.0, 0.0), (80.0, 0.0, 0.0), centre_um=centre)
    dock.apply_affine_um(off @ plane)
    assert displacement_error_um(off @ plane, plane, grid).max() > 2.5 * S_F[0]
    dock.method.value = "section plane search (2-D in 3-D)"
    _finish(qtbot, dock, dock.fit())
    assert displacement_error_um(array_affine_um(placed, fixed), plane, grid).max() < 0.5 * S_F[0]
    # ... and from a rough placement: 6 voxels deeper and 4° off (the depth scan finds it)
    rough = rigid_affine((4.0, 0.0, 0.0), (-240.0, 0.0, 0.0), centre_um=centre) @ plane
    dock.apply_affine_um(rough)
    assert displacement_error_um(rough, plane, grid).max() > 6 * S_F[0]
    _finish(qtbot, dock, dock.fit())
    assert displacement_error_um(array_affine_um(placed, fixed), plane, grid).max() < 0.5 * S_F[0]
    # ... and from one turned 120° on its slide and 7 and 4 voxels off within its plane:
    # every in-plane angle is tried, and offsets within the dock's reach (none: fails)
    turned = rigid_affine((120.0, 0.0, 0.0), (0.0, 280.0, -160.0), centre_um=centre) @ plane
    dock.apply_affine_um(turned)
    assert displacement_error_um(turned, plane, grid).max() > 20 * S_F[0]
    dock.reach.value = 320.0
    _finish(qtbot, dock, dock.fit())
    assert displacement_error_um(array_affine_um(placed, fixed), plane, grid).max() < 0.5 * S_F[0]

    # Undo all the way back: the 2-D layer returns.
    while dock.undo_stack:
        dock.undo()
    assert viewer.layers["section"] is optical and optical.ndim == 2


SECTION_SHAPE, NOMINAL = (60, 60), np.array([20.0, 20.0])  # the section's pixels, µm
SECTION_CENTRE = (np.asarray(SHAPE_F) - 1) / 2 * S_F + np.array([40.0, 0.0, 0.0])


def _section_plane():
    """The plane of the section's nominal pixel grid in the MRM (fixed array µm)."""
    return oblique_plane_affine(SECTION_CENTRE, (3.0, 6.0, -4.0), SECTION_SHAPE, NOMINAL)


def _section_search(make_napari_viewer, qtbot, truth, option, start_degrees):
    """Cut the optical contrast on ``truth`` (the plane of the section's nominal pixel
    grid, mirrored or scaled), place the section, and run the plane search from a rough
    rigid start (``start_degrees`` off about the normal, 2 voxels deep) with the dock's
    check box ``option`` off, then on; returns the dock, the worst-corner errors (voxels)
    and the MRM with its placed section."""
    mrm, optical_truth, _ = _tissue(1)
    section = reslice(optical_truth, S_F, truth, SECTION_SHAPE, NOMINAL)
    viewer = make_napari_viewer()
    fixed = viewer.add_image(mrm, name="MRM", scale=S_F, translate=T_F, units="µm")
    optical = viewer.add_image(section, name="section", scale=NOMINAL, units="µm")
    dock = RegisterWidget(viewer)
    dock.fixed.value, dock.moving.value = fixed, optical
    placed = dock.place_section()
    dock.method.value = "section plane search (2-D in 3-D)"
    grid = box_corners_um((1,) + SECTION_SHAPE, (1.0, *NOMINAL))
    rough = rigid_affine((start_degrees, 0.0, 0.0), (-80.0, 0.0, 0.0),
                         centre_um=SECTION_CENTRE) @ _section_plane()
    errors = []
    for ticked in (False, True):
        dock.apply_affine_um(rough)
        getattr(dock, option).value = ticked
        _finish(qtbot, dock, dock.fit())
        errors.append(displacement_error_um(array_affine_um(placed, fixed), truth,
                                            grid).max() / S_F[0])
    return dock, errors, mrm, placed


def test_a_section_face_down_found_when_it_may_be_mirrored(make_napari_viewer, qtbot):
    """A section mounted face down is the mirror image of its plane: the search finds it
    with "may be mirrored" ticked (a pose that flips the section's x), not without."""
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = (SECTION_SHAPE[1] - 1) * NOMINAL[1]
    face_down = _section_plane() @ flip  # pixel (j, i) shows the plane's (j, n - 1 - i)
    dock, errors, mrm, placed = _section_search(make_napari_viewer, qtbot, face_down,
                                                "mirror", 30.0)
    assert errors[0] > 3 and errors[1] < 0.5, f"worst-corner errors {errors} voxels"
    assert np.linalg.det(placed.affine.affine_matrix[:3, :3]) < 0  # shown flipped
    resliced = dock.add_resliced()  # the MRM resliced on the found plane matches the section
    assert np.corrcoef(resliced.data[0].ravel(), reslice(
        mrm, S_F, face_down, SECTION_SHAPE, NOMINAL).ravel())[0, 1] > 0.95


def test_a_shrunk_section_found_and_its_shrinkage_shown(make_napari_viewer, qtbot):
    """A histological section 15 % smaller than the tissue in the MRM: a rigid search
    cannot match it; with "fit shrinkage" the plane and the scale (1/0.85) are found."""
    centre_um = [0.0, *((np.asarray(SECTION_SHAPE) - 1) / 2 * NOMINAL)]
    shrunk = _section_plane() @ rigid_affine((0.0, 0.0, 0.0), (0.0, 0.0, 0.0),
                                             centre_um=centre_um, scale=1 / 0.85)
    dock, errors, _, _ = _section_search(make_napari_viewer, qtbot, shrunk, "shrink", 20.0)
    assert errors[0] > 1 and errors[1] < 0.5, f"worst-corner errors {errors} voxels"
    assert dock.last_fit["scale"] == pytest.approx(1 / 0.85, rel=0.01)
    assert re.search(r"; scale 1\.1[78]\d \(moving shrunk 1[45]\.\d%\)",
                     dock.rms.value), dock.rms.value


def test_checkerboard_parity():
    a, b = np.zeros((4, 6)), np.ones((4, 6))
    board = checkerboard(a, b, (10.0, 10.0), 20.0)
    assert board[0, 0] == 0 and board[0, 2] == 1 and board[2, 0] == 1 and board[2, 2] == 0
    assert board[1, 1] == 0


def test_refuses_mismatched_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="a")
    dock = RegisterWidget(viewer)
    assert dock.fit() is None            # one layer: nothing to register
    viewer.add_points(np.zeros((3, 2)), name="p")
    viewer.add_image(np.zeros((8, 8)), name="b")
    dock.fixed.value, dock.moving.value = viewer.layers["a"], viewer.layers["b"]
    dock.fixed_points.value = dock.moving_points.value = viewer.layers["p"]
    assert dock.fit() is None            # the same Points layer for both


def test_registration_onto_an_oblique_mr_scan_stays_registered(make_napari_viewer):
    """An MR layer placed by a rotated world affine (scale = voxel, affine = rotation +
    translation): the core matrix A set through the dock puts every optical voxel on the
    MR voxel A says, in napari's world."""
    from napari.layers import Layer

    from napari_mrmicro._layers import volume_to_layer_data
    from napari_mrmicro.core import geometry
    from napari_mrmicro.io import Volume

    world = np.eye(4)
    world[:3, :3] = rotation_matrix((20.0, -10.0, 35.0)) @ np.diag(S_F)
    world[:3, 3] = (-1500.0, 800.0, 2500.0)
    viewer = make_napari_viewer()
    (data, kwargs, kind), = volume_to_layer_data(
        Volume(np.zeros(SHAPE_F, np.float32), S_F, {}, affine_um=world, name="oblique MR"))
    fixed = viewer.add_layer(Layer.create(data, kwargs, kind))
    assert not np.allclose(fixed.affine.affine_matrix[:3, :3], np.eye(3))
    moving = viewer.add_image(np.zeros(SHAPE_M, np.float32), name="optical",
                              scale=S_M * 1000, translate=T_M_NM, units="nm")
    dock = RegisterWidget(viewer)
    dock.fixed.value, dock.moving.value = fixed, moving
    truth = _truth()
    dock.apply_affine_um(truth)
    np.testing.assert_allclose(array_affine_um(moving, fixed), truth, atol=1e-6)
    for index in geometry.corner_points(SHAPE_M):
        in_fixed = apply_affine(truth, (index * S_M)[None])[0] / S_F  # fixed voxel index
        np.testing.assert_allclose(np.asarray(moving.data_to_world(index)) / 1e3,  # nm
                                   fixed.data_to_world(in_fixed), atol=1e-3)


def test_opens_with_mr_fixed_and_optical_moving_never_one_layer_twice(make_napari_viewer):
    """Roles from metadata: the optical layer (added first) is not taken as fixed, the MR
    image is; a k-space layer is neither; a picker never offers the other's layer."""
    viewer = make_napari_viewer()
    optical = viewer.add_image(np.zeros((16, 16), np.float32), name="photo",
                               metadata={"mrmicro": {"format": "tiff"}})
    mr = viewer.add_image(np.zeros((8, 16, 16), np.float32), name="scan",
                          metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    viewer.add_image(np.zeros((8, 16, 16), np.float32), name="scan k-space",
                     metadata={"mrmicro": {"role": "k-space"}})
    dock = RegisterWidget(viewer)
    assert (dock.fixed.value, dock.moving.value) == (mr, optical)
    assert list(dock.fixed.choices) == [mr] and list(dock.moving.choices) == [optical]
    other = viewer.add_image(np.zeros((8, 16, 16), np.float32), name="second scan",
                             metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    assert list(dock.moving.choices) == [optical, other]  # optical first, then MR
    dock.moving.value = other
    assert other not in dock.fixed.choices and mr not in dock.moving.choices
    with pytest.raises(ValueError, match="not a valid choice"):
        dock.fixed.value = other


def test_restore_defaults_keeps_layers(scene):
    viewer, dock, fixed, moving, *_ = scene
    centre = dock.section_z.value
    dock.method.value, dock.square.value, dock.section_z.value = "landmarks: affine", 7.0, 0.0
    restore = next(w for w in dock if getattr(w, "text", None) == "Restore defaults")
    restore.changed.emit(True)
    assert (dock.method.value, dock.square.value) == ("landmarks: similarity", 200.0)
    assert dock.section_z.value == pytest.approx(centre)
    assert (dock.fixed.value, dock.moving.value) == (fixed, moving)


def test_a_micrometre_optical_plane_keeps_the_mr_z_slider(make_napari_viewer, tmp_path):
    """napari steps an axis by the finest layer scale on it, recomputed on every layer
    change (``viewer.dims.set_range`` does not last). A single optical plane is read as a
    2-D layer (no z axis) and a placed section is one MR slice thick, so a 1 µm plane next
    to a 100 µm MR scan leaves the z slider at the MR's slices."""
    import tifffile

    from napari_mrmicro._reader import read_layers

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((24, 40, 40), np.float32), name="MRM", scale=(100.0,) * 3,
                     units="µm", metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    assert viewer.dims.nsteps[0] == 24
    path = tmp_path / "plane.ome.tif"
    tifffile.imwrite(path, np.ones((1, 300, 300), np.uint16), metadata={
        "axes": "ZYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0, "PhysicalSizeZ": 1.0})
    (data, kwargs, kind), = read_layers(path)
    plane = viewer.add_image(data, **kwargs)
    assert plane.ndim == 2 and viewer.dims.nsteps[0] == 24
    dock = RegisterWidget(viewer)
    assert (dock.fixed.value.name, dock.moving.value) == ("MRM", plane)
    placed = dock.place_section()
    assert placed.ndim == 3 and placed.scale[0] == pytest.approx(100.0)
    assert viewer.dims.nsteps[0] == 24


def test_a_susceptibility_or_field_map_can_be_the_fixed_volume(make_napari_viewer):
    """Iron histology against QSM: the fixed picker offers χ and field maps after the MR
    magnitude images (it offered magnitude images only)."""
    viewer = make_napari_viewer()
    chi = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="χ (ppm)",
                           metadata={"mrmicro": {"value_unit": "ppm"}})
    field = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="B0 map (Hz)",
                             metadata={"mrmicro": {"value_unit": "Hz"}})
    mag = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="magnitude",
                           metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    dock = RegisterWidget(viewer)
    assert list(dock.fixed.choices) == [mag, chi, field]
    dock.fixed.value = chi
    assert chi not in dock.moving.choices and field in dock.moving.choices
