"""The "Morphometry" dock in a real viewer: measure, sort, export, select, centerline, plot."""

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt
from scipy.spatial import cKDTree

from napari_mrmicro.widgets.morphometry import MorphometryWidget, column_header

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
                              metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    viewer.add_image(labels.astype(np.float32) * 10 + 1, scale=SCALE, units="µm", name="mrm")
    widget = MorphometryWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Morphometry")
    return viewer, widget, layer, length


def table_column(widget, header):
    headers = [widget.table.horizontalHeaderItem(c).text()
               for c in range(widget.table.columnCount())]
    col = headers.index(header)
    return [widget.table.item(r, col).data(Qt.ItemDataRole.DisplayRole)
            for r in range(widget.table.rowCount())]


def test_measure_table_export_select_centerline(dock, qtbot, tmp_path):
    viewer, widget, layer, length = dock
    assert widget.labels_layer.value is layer
    widget.image_layer.value = viewer.layers["mrm"]
    widget.measure()
    qtbot.waitUntil(lambda: widget.results is not None, timeout=60_000)
    assert widget.table.rowCount() == 2
    assert column_header("volume_um3") == "volume (µm³)"
    sphere = 4 / 3 * np.pi * 160.0**3
    volumes = dict(zip(table_column(widget, "label"), table_column(widget, "volume (µm³)")))
    assert volumes[1] == pytest.approx(sphere, rel=0.02)
    assert table_column(widget, "mean intensity") == pytest.approx([11.0, 21.0])

    # Sorting is numeric: the tube (label 2) is a little smaller than the sphere.
    col = [widget.table.horizontalHeaderItem(c).text()
           for c in range(widget.table.columnCount())].index("volume (µm³)")
    widget.table.sortItems(col, Qt.SortOrder.AscendingOrder)
    assert table_column(widget, "label") == [2, 1]
    assert table_column(widget, "volume (µm³)") == sorted(volumes.values())

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
    qtbot.waitUntil(lambda: "segmentation centerline 2" in viewer.layers, timeout=10_000)
    shapes = viewer.layers["segmentation centerline 2"]
    assert tuple(shapes.scale) == pytest.approx(SCALE)
    assert [str(u) for u in shapes.units] == ["micrometer"] * 3
    assert shapes.metadata["mrmicro"]["acquisition"]["b0_tesla"] == 9.4
    meta = shapes.metadata["mrmicro"]["centerline"]
    assert meta["label"] == 2 and meta["length_um"] == pytest.approx(length, rel=0.01)
    # The path overlays the tube: its vertices (voxel coordinates) lie inside label 2.
    vertices = np.round(shapes.data[0][5:-5]).astype(int)
    assert np.mean(layer.data[tuple(vertices.T)] == 2) > 0.95
    points = viewer.layers["segmentation sections 2"]
    assert len(points.data) == 40 and "area_um2" in points.features
    inner = points.features["area_um2"].to_numpy()[5:-5]
    # The tube radius is only 3 voxels along z: single sections scatter by several per cent.
    assert inner.mean() == pytest.approx(np.pi * 60.0**2, rel=0.02)
    np.testing.assert_allclose(inner, np.pi * 60.0**2, rtol=0.08)
    line = widget.figure.axes[0].lines[0]
    assert len(line.get_xdata()) == 40
    assert np.nanmax(line.get_ydata()) == pytest.approx(np.pi * 60.0**2 / 1e6, rel=0.1)

    viewer.layers["mrm"].visible = False
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.angles = (0.0, -40.0, 70.0)
    layer.opacity = 0.3
    layer.blending = "translucent_no_depth"  # let the centerline show through the tube
    shapes.edge_width = 1.5
    shot = viewer.screenshot(path="/tmp/morphometry_dock.png", canvas_only=False, flash=False)
    assert shot[..., :3].std() > 5


def test_bad_layer_reports_instead_of_crashing(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = MorphometryWidget(viewer)
    assert widget.measure() is None  # no Labels layer: an error notification, no worker
    viewer.add_labels(np.zeros((4, 5), np.uint8))
    assert widget.labels_layer.value is not None
    assert widget.measure() is None  # 2-D
    with pytest.raises(ValueError, match="Measure"):
        widget.export_csv("unused.csv")
