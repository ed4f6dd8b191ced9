"""The "Morphometry" dock in a real viewer: measure, sort, export, select, centerline, plot."""

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt
from scipy.spatial import cKDTree

from napari_mrmicro.core.distortion import read_distortion_profile, write_distortion_profile
from napari_mrmicro.widgets.morphometry import MorphometryWidget, column_header

from dock_checks import Notices, screenshot, untipped

pytestmark = pytest.mark.gui

SCALE = (20.0, 10.0, 10.0)  # µm, anisotropic
SHAPE = (40, 72, 100)


def specimen():
    """Label 1: a sphere of radius 160 µm; label 2: a tube of radius 60 µm around a helix."""
    spacing = np.array(SCALE)
    points = np.indices(SHAPE).reshape(3, -1).T * spacing
    labels = np.zeros(len(points), np.uint8)
    labels[np.linalg.norm(points - [400.0, 363.0, 181.0], axis=1) <= 160.0] = 1
    t = np.linspace(0, 2 * np.pi, 4000)
    helix = np.column_stack([250 + 60 * t, 360 + 220 * np.cos(t), 620 + 220 * np.sin(t)])
    distance, nearest = cKDTree(helix).query(points, distance_upper_bound=70.0)
    labels[(distance <= 60.0) & (nearest > 0) & (nearest < len(helix) - 1)] = 2
    speed = np.hypot(60.0, 220.0)
    return labels.reshape(SHAPE), 2 * np.pi * speed


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    labels, length = specimen()
    layer = viewer.add_labels(labels, scale=SCALE, units="µm", name="segmentation",
                              metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4},
                                                    "tissues": {"0": "background",
                                                                "1": "sphere", "2": "duct"}}})
    viewer.add_image(labels.astype(np.float32) * 10 + 1, scale=SCALE, units="µm", name="mrm",
                     metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    widget = MorphometryWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Morphometry")
    return viewer, widget, layer, length


def table_column(widget, header):
    headers = [widget.table.horizontalHeaderItem(c).text()
               for c in range(widget.table.columnCount())]
    col = headers.index(header)
    return [widget.table.item(r, col).data(Qt.ItemDataRole.DisplayRole)
            for r in range(widget.table.rowCount())]


def test_measure_table_export_select_centerline(dock, qtbot, tmp_path, logged):
    viewer, widget, layer, length = dock
    assert widget.labels_layer.value is layer
    # the image on the labels' grid is proposed as intensity; no empty plot box yet
    assert widget.image_layer.value is viewer.layers["mrm"]
    assert not widget.canvas.isVisible()
    widget.measure()
    qtbot.waitUntil(lambda: widget.results is not None, timeout=60_000)
    assert widget.table.rowCount() == 2
    assert column_header("volume_um3") == "volume (µm³)"
    sphere = 4 / 3 * np.pi * 160.0**3
    # regions of 0.02 mm³: volumes shown in mm³, surfaces (0.3 mm²) in mm²
    volumes = dict(zip(table_column(widget, "label"), table_column(widget, "volume (mm³)")))
    assert volumes[1] == pytest.approx(sphere / 1e9, rel=0.02)
    assert "surface area (mm²)" in [widget.table.horizontalHeaderItem(c).text()
                                    for c in range(widget.table.columnCount())]
    assert table_column(widget, "name") == ["sphere", "duct"]  # tissue names
    # the table is the layer's features: hovering a label shows its row
    assert list(layer.features["index"]) == [1, 2]
    assert list(layer.features["name"]) == ["sphere", "duct"]
    assert layer.features["volume_mm3"][0] == pytest.approx(sphere / 1e9, rel=0.02)
    layer.selected_label = 2  # picking a label selects its row
    assert {i.row() for i in widget.table.selectedItems()} == {1}
    assert table_column(widget, "mean intensity") == pytest.approx([11.0, 21.0])

    # Sorting is numeric: the tube (label 2) is a little smaller than the sphere.
    col = [widget.table.horizontalHeaderItem(c).text()
           for c in range(widget.table.columnCount())].index("volume (mm³)")
    widget.table.sortItems(col, Qt.SortOrder.AscendingOrder)
    assert table_column(widget, "label") == [2, 1]
    assert table_column(widget, "volume (mm³)") == sorted(volumes.values())

    out = widget.export_csv(tmp_path / "morphometry.csv")
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == [1, 2]
    assert float(rows[0]["volume_um3"]) == pytest.approx(sphere, rel=0.02)

    widget.table.selectRow(1)  # the sphere, after sorting
    assert layer.selected_label == 1
    widget.table.selectRow(0)
    assert layer.selected_label == 2

    widget.sections.value = 40
    widget.measure_centerline()
    qtbot.waitUntil(lambda: widget.cross_sections is not None, timeout=60_000)
    qtbot.waitUntil(lambda: any("centerline" in x.name for x in viewer.layers), timeout=10_000)
    shapes, flat = [x for x in viewer.layers if "centerline" in x.name]
    assert shapes.name.startswith("segmentation label 2 (duct) centerline ")
    assert shapes.name.endswith(" mm") and f"{length / 1000:.2f}" in shapes.name
    assert tuple(shapes.scale) == pytest.approx(SCALE)
    assert [str(u) for u in shapes.units] == ["micrometer"] * 3
    assert shapes.metadata["mrmicro"]["acquisition"]["b0_tesla"] == 9.4
    meta = shapes.metadata["mrmicro"]["centerline"]
    assert meta["label"] == 2 and meta["length_um"] == pytest.approx(length, rel=0.01)
    # The path overlays the tube: its vertices (voxel coordinates) lie inside label 2 ...
    vertices = np.round(shapes.data[5:-5, 0]).astype(int)
    assert np.mean(layer.data[tuple(vertices.T)] == 2) > 0.95
    # ... and is drawn on every 2-D slice (its projection), in 3-D as the 3-D path
    assert flat.name.endswith("(y, x projection)") and flat.visible and not shapes.visible
    viewer.dims.set_point(0, 0.0)
    assert len(flat._view_data) == len(flat.data) == len(shapes.data)
    np.testing.assert_allclose(flat.data, shapes.data[:, :, 1:])
    points = viewer.layers["segmentation label 2 (duct) 40 sections"]
    assert len(points.data) == 40 and "area_um2" in points.features
    inner = points.features["area_um2"].to_numpy()[5:-5]
    # The tube radius is only 3 voxels along z: single sections scatter by several per cent.
    assert inner.mean() == pytest.approx(np.pi * 60.0**2, rel=0.02)
    np.testing.assert_allclose(inner, np.pi * 60.0**2, rtol=0.08)
    assert widget.canvas.isVisible()
    line = widget.figure.axes[0].lines[0]
    assert len(line.get_xdata()) == 40
    assert np.nanmax(line.get_ydata()) == pytest.approx(np.pi * 60.0**2 / 1e6, rel=0.1)

    viewer.layers["mrm"].visible = False
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    getattr(viewer, "scene", viewer).camera.angles = (0.0, -40.0, 70.0)  # scene: napari 0.9
    assert shapes.visible and not flat.visible
    layer.opacity = 0.3
    layer.blending = "translucent_no_depth"  # let the centerline show through the tube
    shot = screenshot(viewer, "morphometry")
    assert shot[..., :3].std() > 5
    viewer.dims.ndisplay = 2
    screenshot(viewer, "morphometry-2d")


def test_a_placed_scan_gets_its_centerline_and_centroids_where_napari_shows_it(
        make_napari_viewer, qtbot):
    """Labels placed by a scanner's affine (a ParaVision scan: rotated and far from the
    origin): the centerline layers and the table's centroids are in the labels' world. The
    layers got only the scale (drawn millimetres away) and the centroids were i × spacing."""
    from napari_mrmicro.core.transforms import rigid_affine

    viewer = make_napari_viewer()
    labels, _ = specimen()
    placement = rigid_affine((20.0, -10.0, 5.0), (-5000.0, 3000.0, -8000.0))
    layer = viewer.add_labels(labels, scale=SCALE, units="µm", name="scan", affine=placement)
    widget = MorphometryWidget(viewer)
    widget.labels_layer.value = layer
    widget.measure()
    qtbot.waitUntil(lambda: widget.table.rowCount() == 2, timeout=60_000)
    index = np.argwhere(labels == 1).mean(axis=0)
    expected = np.asarray(layer.data_to_world(index), float)  # napari's own world point
    shown = [float(table_column(widget, f"centroid {a} (µm)")[row]) for a in "zyx"
             for row in [table_column(widget, "label").index(1)]]
    np.testing.assert_allclose(shown, expected, atol=0.6)  # the table rounds to 1 µm
    widget.table.selectRow(table_column(widget, "label").index(2))
    widget.measure_centerline()
    qtbot.waitUntil(lambda: widget.cross_sections is not None, timeout=60_000)
    path3d, flat = [x for x in viewer.layers if "centerline" in x.name]
    world = np.array([path3d.data_to_world(v) for v in path3d.data[5:-5, 0]])
    inside = np.round([layer.world_to_data(w) for w in world]).astype(int)
    assert np.mean(labels[tuple(inside.T)] == 2) > 0.95
    np.testing.assert_allclose(flat.affine.affine_matrix, placement[1:, 1:])


def _tube_scan(error_at_edge=0.1):
    """A straight tube (⌀ 400 µm) along x, off-centre, in a scan whose magnification grows
    with distance from the FOV centre: the tube's radius scales by √(1 + e(r))."""
    spacing = np.array((25.0, 25.0, 25.0))
    shape = (48, 48, 96)
    centre = (np.array(shape) // 2) * spacing
    z, y, x = np.indices(shape) * spacing[:, None, None, None]
    r = np.sqrt((x - centre[2]) ** 2 + 300.0**2)  # the tube axis lies 300 µm off centre
    scale = np.sqrt(1 + error_at_edge * (r / 1200.0) ** 2)
    radial = np.hypot(z - centre[0] - 300.0, y - centre[1])
    return (radial <= 200.0 * scale).astype(np.uint8), spacing


def test_distortion_calibration_plot_profile_and_correction(make_napari_viewer, qtbot,
                                                            tmp_path):
    viewer = make_napari_viewer(show=True)
    mask, spacing = _tube_scan()
    layer = viewer.add_labels(mask, scale=tuple(spacing), units="µm", name="tube scan")
    widget = MorphometryWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Morphometry")
    assert untipped(widget) == []
    layer.selected_label = 1
    widget.tube_diameter.value = 400.0
    notices = Notices()
    widget.calibrate()
    qtbot.waitUntil(lambda: widget.profile is not None, timeout=60_000)
    profile = widget.profile
    # e(r) = 0.1 (r / 1.2 mm)²: 0.625 % at 300 µm, 7.3 % at 1.2 mm from the centre
    far = profile.distance_um.max()
    assert profile.area_error(far) == pytest.approx(0.1 * (far / 1200.0) ** 2, abs=0.02)
    assert profile.area_error(far) > profile.area_error(profile.distance_um.min()) + 0.02
    assert widget.correct.enabled and "area error" in widget.profile_label.value
    assert widget.figure.axes[0].get_xlabel() == "distance from FOV centre (mm)"
    saved = write_distortion_profile(profile, tmp_path / "tube.json")
    assert np.allclose(read_distortion_profile(saved).coefficients, profile.coefficients)
    # corrected cross-sections of the same tube come out at its true area
    widget.correct.value = True
    widget.sections.value = 30
    widget.measure_centerline()
    qtbot.waitUntil(lambda: widget.cross_sections is not None, timeout=60_000)
    inner = widget.cross_sections.areas_um2[8:-8]
    assert np.median(inner) == pytest.approx(np.pi * 200.0**2, rel=0.03)
    assert any(x.name.endswith("distortion-corrected") for x in viewer.layers)
    notices.close()
    assert not notices.errors
    screenshot(viewer, "morphometry-distortion")


def test_cancel_says_cancelled(dock, qtbot, logged):
    viewer, widget, layer, length = dock
    layer.selected_label = 2
    worker = widget.measure_centerline()
    with qtbot.waitSignal(worker.finished, timeout=1_000):
        widget.cancel_button.changed.emit(True)
    assert any(m.startswith("Centerline of label 2: cancelled") for m in logged.messages)
    assert widget.centerline_button.enabled
    assert not any("centerline" in x.name for x in viewer.layers)


def test_bad_layer_reports_instead_of_crashing(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = MorphometryWidget(viewer)
    assert widget.measure() is None  # no Labels layer: an error notification, no worker
    viewer.add_labels(np.zeros((4, 5), np.uint8))
    assert widget.labels_layer.value is not None
    assert widget.measure() is None  # 2-D
    with pytest.raises(ValueError, match="Measure"):
        widget.export_csv("unused.csv")
