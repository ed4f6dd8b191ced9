"""Dock "Morphometry": a Labels layer -> region table, centerline and cross-sections.

Measure runs :func:`napari_mrmicro.core.morphometry.region_table` in a worker thread and shows
the table (sortable, units in the headers, CSV export); selecting a row selects that label.
"Centerline + cross-sections" measures the selected label along its course: the centerline
becomes a Shapes path, the section stations a Points layer (area and diameters as features),
and the area against distance along the path is plotted in the dock.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QFileDialog, QTableWidget, QTableWidgetItem

from napari_mrmicro._layers import layer_to_volume, like
from napari_mrmicro.core.centerline import centerline, path_length_um, resample_path
from napari_mrmicro.core.cross_sections import cross_sections
from napari_mrmicro.core.morphometry import plot_area_profile, region_table, write_table_csv

_UNITS = (("_um3", "µm³"), ("_mm3", "mm³"), ("_um2", "µm²"), ("_um", "µm"), ("_vox", "voxel"))


def column_header(name: str) -> str:
    """A table key with its unit suffix shown as a unit: ``volume_um3`` -> ``volume (µm³)``."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return f"{name[:-len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


class _ProgressRelay(QObject):
    """Carries (done, total) from a worker thread to the progress bar in the main thread."""

    step = Signal(int, int)
    stage = Signal(str)


class MorphometryWidget(Container):
    """Region table, centerline and cross-sections of a Labels layer, in physical units."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.labels_layer = ComboBox(label="labels", choices=self._layers_of(Labels))
        self.image_layer = ComboBox(label="intensity", choices=self._layers_of(Image),
                                    nullable=True, value=None)
        self.measure_button = PushButton(text="Measure")
        self.export_button = PushButton(text="Export CSV…", enabled=False)
        self.sections = SpinBox(label="sections", value=200, min=2, max=100_000)
        self.centerline_button = PushButton(text="Centerline + cross-sections")
        self.extend([self.labels_layer, self.image_layer, self.measure_button,
                     self.export_button, self.sections, self.centerline_button])
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(160)
        self.figure = Figure(figsize=(4, 2.6), layout="tight")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.native.layout().addWidget(self.table)
        self.native.layout().addWidget(self.canvas)

        self.results: dict[str, np.ndarray] | None = None
        self.path_um: np.ndarray | None = None
        self.cross_sections = None
        self.worker = None
        self._bar = None
        self._relay = _ProgressRelay()
        self._relay.step.connect(self._progress_step)
        self._relay.stage.connect(self._progress_stage)
        self.measure_button.changed.connect(self.measure)
        self.export_button.changed.connect(self._export_dialog)
        self.centerline_button.changed.connect(self.measure_centerline)
        self.table.itemSelectionChanged.connect(self._row_selected)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)

    def _layers_of(self, kind):
        return lambda _widget=None: [layer for layer in self.viewer.layers
                                     if isinstance(layer, kind)]

    # -- measuring -----------------------------------------------------------------------------

    def _labels_volume(self):
        layer = self.labels_layer.value
        if layer is None:
            raise ValueError("choose a Labels layer")
        volume = _layer_volume(layer, "labels")
        if volume.data.ndim != 3:
            raise ValueError(f"{layer.name}: a 3-D (z, y, x) Labels layer is needed, got "
                             f"{volume.data.ndim}-D")
        return layer, volume

    def measure(self, *_):
        """Measure every label in a worker thread; the table fills when it returns."""
        try:
            layer, volume = self._labels_volume()
            intensity = None
            if self.image_layer.value is not None:
                intensity = np.asarray(self.image_layer.value.data)
                if intensity.shape != volume.data.shape:
                    raise ValueError(f"intensity layer shape {intensity.shape} differs from the "
                                     f"labels {volume.data.shape}")
        except ValueError as error:
            show_error(f"Morphometry: {error}")
            return None
        worker = _measure_worker(np.asarray(volume.data), volume.spacing_um, intensity,
                                 self._relay.step.emit)
        worker.returned.connect(self.show_table)
        return self._start(worker, self.measure_button, "Measuring labels")

    def measure_centerline(self, *_):
        """Centerline and cross-sections of the selected label, in a worker thread."""
        try:
            layer, volume = self._labels_volume()
            label = int(layer.selected_label)
            mask = np.asarray(volume.data) == label
            if not mask.any():
                raise ValueError(f"label {label} is not in {layer.name}")
        except ValueError as error:
            show_error(f"Morphometry: {error}")
            return None
        worker = _centerline_worker(mask, volume.spacing_um, self.sections.value,
                                    self._relay.step.emit, self._relay.stage.emit)
        worker.returned.connect(lambda result: self._add_centerline(layer, volume, label, *result))
        return self._start(worker, self.centerline_button, f"Centerline of label {label}")

    def _start(self, worker, button, description):
        worker.errored.connect(lambda e: show_error(f"Morphometry: {e}"))
        button.enabled = False
        self._bar = progress(total=0, desc=description)

        def finished():
            button.enabled = True
            self._bar.close()
            self._bar = None

        worker.finished.connect(finished)
        worker.start()
        self.worker = worker
        return worker

    def _progress_step(self, done, total):
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)

    def _progress_stage(self, text):
        if self._bar is not None:
            self._bar.set_description(text)

    # -- results -------------------------------------------------------------------------------

    def show_table(self, table: dict[str, np.ndarray]):
        """Fill the dock's table (numeric sorting, units in the headers)."""
        self.results = table
        names = list(table)
        rows = len(table["label"])
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(names))
        self.table.setRowCount(rows)
        self.table.setHorizontalHeaderLabels([column_header(n) for n in names])
        for col, name in enumerate(names):
            for row, value in enumerate(table[name]):
                item = QTableWidgetItem()
                if isinstance(value, np.bool_):
                    item.setData(Qt.ItemDataRole.DisplayRole, "yes" if value else "no")
                elif isinstance(value, np.integer):
                    item.setData(Qt.ItemDataRole.DisplayRole, int(value))
                else:
                    item.setData(Qt.ItemDataRole.DisplayRole, float(f"{value:.6g}"))
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.export_button.enabled = rows > 0
        show_info(f"Morphometry: {rows} label(s) measured")

    def export_csv(self, path):
        """Write the last table as CSV (column names with units, full precision)."""
        if self.results is None:
            raise ValueError("nothing to export: press Measure first")
        return write_table_csv(self.results, path)

    def _export_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self.native, "Export morphometry table",
                                              "morphometry.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _row_selected(self):
        layer = self.labels_layer.value
        rows = {item.row() for item in self.table.selectedItems()}
        if layer is None or len(rows) != 1:
            return
        label = int(self.table.item(rows.pop(), 0).data(Qt.ItemDataRole.DisplayRole))
        layer.selected_label = label

    def _add_centerline(self, layer, volume, label, path_um, sections):
        self.path_um, self.cross_sections = path_um, sections
        spacing = np.asarray(volume.spacing_um)
        meta = dict((layer.metadata or {}).get("mrmicro") or {})
        length = path_length_um(path_um)
        meta["centerline"] = {"label": label, "source": layer.name, "length_um": length}
        common = like(layer)  # placed where the labels sit, rotation included
        self.viewer.add_shapes([path_um / spacing], shape_type="path", edge_color="yellow",
                               edge_width=1.0, name=f"{layer.name} centerline {label}",
                               metadata={"mrmicro": meta}, **common)
        self.viewer.add_points(sections.path_um / spacing, features=sections.as_table(),
                               face_color="area_um2", face_colormap="viridis", size=3,
                               name=f"{layer.name} sections {label}",
                               metadata={"mrmicro": meta}, **common)
        self.figure.clear()
        plot_area_profile(self.figure.add_subplot(), sections,
                          title=f"label {label}: centerline {length / 1000:.3f} mm")
        self.canvas.draw_idle()
        show_info(f"Morphometry: label {label} centerline {length:.1f} µm, "
                  f"{len(sections)} cross-sections")


def _layer_volume(layer, layer_type):
    return layer_to_volume(layer.data, {**like(layer), "metadata": layer.metadata},
                           layer_type)


@thread_worker
def _measure_worker(labels, spacing_um, intensity, report):
    return region_table(labels, spacing_um, intensity, progress=report)


@thread_worker
def _centerline_worker(mask, spacing_um, count, report, stage):
    path = centerline(mask, spacing_um)
    stations = resample_path(path, count=min(count, len(path)))
    stage("Cross-sections")
    return path, cross_sections(mask, stations, spacing_um, progress=report)
