"""Dock "Morphometry": a Labels layer -> region table, centerline and cross-sections, and the
distortion calibration that corrects them.

Measure runs :func:`napari_mrmicro.core.morphometry.region_table` in a worker thread and shows
the table (sortable, units in the headers, volumes in mm³ and areas in mm² when those are the
natural units, CSV export). The table also becomes the Labels layer's ``features`` (hovering a
label shows its row) and the two are linked both ways: selecting a row selects the label,
picking a label selects its row. Tissue names from the layer's metadata are a ``name`` column.

"Centerline + cross-sections" measures the selected label along its course: the centerline
becomes a Vectors layer drawn as a line (visible, projected, in 2-D and in 3-D), the section
stations a Points layer (area and diameters as features), and the area against distance along
the path is plotted in the dock.

"Distortion calibration": the selected label of a scan of a tube of known diameter gives the
relative area error e against distance from the FOV centre
(:func:`napari_mrmicro.core.distortion.distortion_profile`), plotted and saved as a profile;
with "correct with profile" on, cross-section areas are divided by (1 + e) and the centerline
length by √(1 + e) segment by segment.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QFileDialog, QTableWidget, QTableWidgetItem

from napari_mrmicro._layers import layer_geometry, layer_to_volume, like
from napari_mrmicro.core.centerline import centerline, path_length_um, resample_path
from napari_mrmicro.core.cross_sections import cross_sections
from napari_mrmicro.core.distortion import (
    correct_area,
    correct_path_length,
    distortion_profile,
    plot_distortion,
    read_distortion_profile,
    write_distortion_profile,
)
from napari_mrmicro.core.morphometry import plot_area_profile, region_table, write_table_csv
from napari_mrmicro.core.relaxometry import valid_voxels
from napari_mrmicro.widgets._dock import JobDock, layer_picker, restore_defaults_button
from napari_mrmicro.widgets._worker import progress_worker

_UNITS = (("_um3", "µm³"), ("_mm3", "mm³"), ("_um2", "µm²"), ("_mm2", "mm²"), ("_um", "µm"),
          ("_vox", "voxel"), ("_ms", "ms"), ("_ppm", "ppm"), ("_Hz", "Hz"), ("_rad", "rad"))
#: Intensity statistics that take the intensity layer's value unit.
_IN_VALUE_UNIT = ("mean_intensity", "std_intensity", "min_intensity", "max_intensity")

#: What each input means, its unit and range, and where the method comes from.
TIPS = {
    "labels": "Labels layer to measure (0 = background, every other value one region), "
              "3-D (z, y, x) in µm. A segmentation saved by another program (ITK-SNAP, "
              "Fiji) opens as an image: right-click it in the layer list, Convert to Labels.",
    "intensity": "Optional image on the same grid (magnitude, field map, susceptibility, "
                 "T2 map): adds mean, SD and integrated intensity per label.",
    "sections": "Cross-sections along the centerline (2–100 000), evenly spaced in arc "
                "length; each is the area of the label cut perpendicular to the path.",
    "diameter": "Known inner diameter of the calibration tube in µm (> 0), e.g. from the "
                "manufacturer or a caliper.",
    "correct": "Divide cross-section areas by (1 + e(r)) and centerline segments by √(1 + e(r)), "
               "e(r) the calibrated area error at distance r from the FOV centre (gradient "
               "non-linearity: Janke et al., Magn Reson Med 2004;52:115). Assumes the same "
               "matrix and FOV as the tube scan.",
}


def column_header(name: str) -> str:
    """A table key with its unit suffix shown as a unit: ``volume_um3`` -> ``volume (µm³)``."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return f"{name[:-len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def with_value_unit(table: dict, unit: str | None) -> dict:
    """The intensity statistics keyed with the intensity's value unit when it is one of
    :data:`_UNITS` (``mean_intensity`` -> ``mean_intensity_ms`` for a T2 map)."""
    if not any(suffix == f"_{unit}" for suffix, _ in _UNITS):
        return table
    return {(f"{k}_{unit}" if k in _IN_VALUE_UNIT else k): v for k, v in table.items()}


def natural_units(table: dict) -> dict:
    """The table as a person reads it: volumes in mm³ when the median region is at least
    0.001 mm³ (else µm³), surface areas in mm² when the median is at least 0.01 mm²; tissue
    names, when present, right after the label."""
    out = dict(table)
    volumes = np.asarray(table.get("volume_um3", []), float)
    if "volume_mm3" in out and "volume_um3" in out:
        big = len(volumes) and np.nanmedian(volumes) >= 1e6
        del out["volume_um3" if big else "volume_mm3"]
    areas = np.asarray(table.get("surface_area_um2", []), float)
    if len(areas) and np.any(np.isfinite(areas)) and np.nanmedian(areas) >= 1e4:
        out = {("surface_area_mm2" if k == "surface_area_um2" else k):
               (np.asarray(v, float) / 1e6 if k == "surface_area_um2" else v)
               for k, v in out.items()}
    return out


def tissue_names(layer, labels) -> list[str] | None:
    """Names of ``labels`` from the layer's ``metadata["mrmicro"]["tissues"]`` (a mapping of
    label value to name), or None when the layer names none of them."""
    tissues = ((layer.metadata or {}).get("mrmicro") or {}).get("tissues") or {}
    if not isinstance(tissues, dict):
        return None
    names = {int(k): str(v) for k, v in tissues.items() if str(k).lstrip("-").isdigit()}
    if not any(int(label) in names for label in labels):
        return None
    return [names.get(int(label), "") for label in labels]


class MorphometryWidget(Container, JobDock):
    """Region table, centerline and cross-sections of a Labels layer, in physical units."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.labels_layer = layer_picker(self.viewer, "labels", ("labels",), kind=Labels,
                                         tooltip=TIPS["labels"])
        self.image_layer = layer_picker(
            self.viewer, "intensity", ("magnitude", "field map", "susceptibility",
                                       "relaxation map", "phase"),
            tooltip=TIPS["intensity"], nullable=True)
        self.image_layer.value = None
        self.measure_button = PushButton(text="Measure", tooltip="Measure every label "
                                         "(volume, surface, shape, position, intensity).")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="Stop the running measurement.")
        self.export_button = PushButton(text="Export CSV…", enabled=False,
                                        tooltip="Save the table (full precision, µm units).")
        self.sections = SpinBox(label="sections", value=200, min=2, max=100_000,
                                tooltip=TIPS["sections"])
        self.centerline_button = PushButton(
            text="Centerline + cross-sections",
            tooltip="Centerline (Lee skeleton, longest path, smoothed) of the selected label "
                    "and its cross-sectional areas along it.")
        self.tube_diameter = FloatSpinBox(label="tube ⌀ (µm)", value=1000.0, min=0.001,
                                          max=1e6, step=10.0, tooltip=TIPS["diameter"])
        self.calibrate_button = PushButton(
            text="Calibrate from tube",
            tooltip="The selected label is the lumen of a tube scan: plot its area error "
                    "against distance from the FOV centre and keep the fitted profile.")
        self.save_profile_button = PushButton(text="Save profile…", enabled=False,
                                              tooltip="Save the calibration as JSON.")
        self.load_profile_button = PushButton(text="Load profile…",
                                              tooltip="Load a saved calibration (JSON).")
        self.correct = CheckBox(text="correct with profile", value=False, enabled=False,
                                tooltip=TIPS["correct"])
        self.profile_label = Label(value="no distortion profile")
        row = lambda *widgets: Container(widgets=widgets, layout="horizontal",  # noqa: E731
                                         labels=False)
        self.extend([self.labels_layer, self.image_layer,
                     row(self.measure_button, self.cancel_button, self.export_button),
                     self.sections, self.centerline_button,
                     Label(value="<b>Distortion calibration</b>"), self.tube_diameter,
                     row(self.calibrate_button, self.save_profile_button,
                         self.load_profile_button),
                     self.correct, self.profile_label])
        self.append(restore_defaults_button(self))
        self.profile_label.native.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(160)
        self.figure = Figure(figsize=(4, 2.6), layout="tight")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.canvas.setVisible(False)  # shown with its first plot, not as an empty box
        self.native.layout().addWidget(self.table)
        self.native.layout().addWidget(self.canvas)

        self.results: dict[str, np.ndarray] | None = None
        self.shown: dict[str, np.ndarray] | None = None
        self.path_um: np.ndarray | None = None
        self.cross_sections = None
        self.profile = None
        self._measured_layer = None
        self.measure_button.changed.connect(self.measure)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(self._export_dialog)
        self.centerline_button.changed.connect(self.measure_centerline)
        self.calibrate_button.changed.connect(self.calibrate)
        self.save_profile_button.changed.connect(self._save_profile_dialog)
        self.load_profile_button.changed.connect(self._load_profile_dialog)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.labels_layer.changed.connect(self._labels_chosen)
        self._labels_chosen(self.labels_layer.value)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)

    def _labels_chosen(self, layer):
        """A tube scan that states its diameter fills in the calibration's diameter; with no
        intensity image chosen, the first one on the labels' grid (shape, scale and affine)
        is proposed."""
        meta = ((getattr(layer, "metadata", None) or {}).get("mrmicro") or {})
        if meta.get("tube_inner_diameter_um"):
            self.tube_diameter.value = float(meta["tube_inner_diameter_um"])
        if layer is not None and self.image_layer.value is None:
            self.image_layer.value = next(
                (image for image in self.image_layer.choices if image is not None
                 and image.data.shape == layer.data.shape
                 and np.allclose(image.scale, layer.scale)
                 and np.allclose(image.affine.affine_matrix, layer.affine.affine_matrix)),
                None)

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

    def _selected_mask(self):
        layer, volume = self._labels_volume()
        label = int(layer.selected_label)
        mask = np.asarray(volume.data) == label
        if not mask.any():
            raise ValueError(f"label {label} is not in {layer.name}: pick it in the layer "
                             "or the table")
        return layer, volume, label, mask

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
        labels, spacing = np.asarray(volume.data), volume.spacing_um
        meta = {} if intensity is None else \
            (self.image_layer.value.metadata.get("mrmicro") or {})
        unit = meta.get("value_unit")
        valid = None if intensity is None else valid_voxels(intensity, meta)  # a fit's gaps
        world = layer_geometry(layer).affine_um  # centroids where napari shows them
        job = (lambda report: region_table(labels, spacing, intensity, affine_um=world,
                                           intensity_valid=valid,
                                           progress=lambda done, total: report(
                                               done / max(total, 1), "labels")))
        worker = progress_worker(job, "Measuring labels")
        worker.returned.connect(lambda table: self.show_table(with_value_unit(table, unit),
                                                              layer))
        return self.start_job(worker, "Morphometry", button=self.measure_button)

    def measure_centerline(self, *_):
        """Centerline and cross-sections of the selected label, in a worker thread."""
        count = self.sections.value

        def job(mask, spacing, report):
            report(0.0, "centerline")
            path = centerline(mask, spacing)
            stations = resample_path(path, count=min(count, len(path)))
            return path, cross_sections(mask, stations, spacing, progress=lambda done, total:
                                        report(0.3 + 0.7 * done / total, "cross-sections"))

        return self._on_selected_label("Centerline of label {label}", job,
                                       self._add_centerline, self.centerline_button)

    def calibrate(self, *_):
        """Fit the distortion profile of the selected label (a tube of known diameter)."""
        diameter = self.tube_diameter.value

        def job(mask, spacing, report):
            report(0.0, "tube centerlines and sections")
            return distortion_profile(mask, spacing, diameter)

        return self._on_selected_label("Distortion calibration", job,
                                       lambda layer, volume, label, profile:
                                       self.set_profile(profile), self.calibrate_button)

    def _on_selected_label(self, desc, job, done, button):
        """Run ``job(mask, spacing_um, report)`` on the selected label in a worker; its
        result goes to ``done(layer, volume, label, result)``."""
        try:
            layer, volume, label, mask = self._selected_mask()
        except ValueError as error:
            show_error(f"Morphometry: {error}")
            return None
        spacing = volume.spacing_um
        worker = progress_worker(lambda report: job(mask, spacing, report),
                                 desc.format(label=label))
        worker.returned.connect(lambda result: done(layer, volume, label, result))
        return self.start_job(worker, "Morphometry", button=button)

    # -- results -------------------------------------------------------------------------------

    def show_table(self, table: dict[str, np.ndarray], layer=None):
        """Fill the dock's table (numeric sorting, units in the headers) and make it the
        Labels layer's features."""
        self.results = table
        layer = layer if layer is not None else self.labels_layer.value
        shown = natural_units(table)
        names = tissue_names(layer, table["label"]) if layer is not None else None
        if names is not None:
            shown = {"label": shown["label"], "name": np.array(names, dtype=object),
                     **{k: v for k, v in shown.items() if k != "label"}}
        self.shown = shown
        columns = list(shown)
        rows = len(table["label"])
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(rows)
        self.table.setHorizontalHeaderLabels([column_header(n) for n in columns])
        for col, name in enumerate(columns):
            for row, value in enumerate(shown[name]):
                self.table.setItem(row, col, _item(value))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        self.export_button.enabled = rows > 0
        if layer is not None:
            self._link(layer, shown)
        show_info(f"Morphometry: {rows} label(s) measured")

    def _link(self, layer, shown):
        """The table as the layer's features (napari shows the row when hovering a label),
        and the layer's selected label selecting its row."""
        layer.features = {"index": np.asarray(shown["label"]),
                          **{k: np.asarray(v) for k, v in shown.items() if k != "label"}}
        if self._measured_layer is not layer:
            if self._measured_layer is not None:
                self._measured_layer.events.selected_label.disconnect(self._label_selected)
            layer.events.selected_label.connect(self._label_selected)
            self._measured_layer = layer

    def _label_selected(self, event=None):
        layer = self._measured_layer
        if layer is None or self.results is None:
            return
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and int(item.data(Qt.ItemDataRole.DisplayRole)) == \
                    int(layer.selected_label):
                if {i.row() for i in self.table.selectedItems()} != {row}:
                    self.table.selectRow(row)
                return
        self.table.clearSelection()

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
        if int(layer.selected_label) != label:
            layer.selected_label = label

    def _add_centerline(self, layer, volume, label, result):
        path_um, sections = result
        self.path_um = path_um
        spacing = np.asarray(volume.spacing_um)
        meta = dict((layer.metadata or {}).get("mrmicro") or {})
        length = path_length_um(path_um)
        corrected = self.correct.value and self.profile is not None
        suffix = ""
        if corrected:
            length = correct_path_length(path_um, self.profile)
            sections = _corrected_sections(sections, self.profile)
            suffix = ", distortion-corrected"
        self.cross_sections = sections
        meta["centerline"] = {"label": label, "source": layer.name, "length_um": length,
                              "distortion_corrected": corrected}
        # where the labels sit: scale, translate and the affine (a scanner's placement)
        common = like(layer, axis_labels=tuple(layer.axis_labels))
        names = tissue_names(layer, [label])
        what = f"label {label}" + (f" ({names[0]})" if names and names[0] else "")
        # The path as line segments: a 3-D layer (shown in 3-D, and where it crosses the
        # slice in 2-D) and its (y, x) projection, a 2-D layer napari draws on every slice
        # (shown in 2-D only), so the centerline is visible wherever the slider is.
        points = path_um / spacing
        segments = np.stack([points[:-1], np.diff(points, axis=0)], axis=1)
        along = {"distance_um": np.cumsum(np.r_[0.0, np.linalg.norm(
            np.diff(path_um, axis=0), axis=1)])[:-1]}
        name = f"{layer.name} {what} centerline {length / 1000:.3f} mm{suffix}"
        style = {"edge_width": 1.5, "edge_color": "yellow", "vector_style": "line",
                 "features": along, "metadata": {"mrmicro": meta}}
        path3d = self.viewer.add_vectors(segments, name=name, **style, **common)
        flat = self.viewer.add_vectors(
            segments[:, :, 1:], name=f"{name} (y, x projection)", **style,
            **like(layer, ndim=2, axis_labels=tuple(layer.axis_labels)[1:]))
        self._follow_ndisplay(path3d, flat)
        self.viewer.add_points(sections.path_um / spacing, features=sections.as_table(),
                               face_color="area_um2", face_colormap="viridis", size=3,
                               name=f"{layer.name} {what} {len(sections)} sections{suffix}",
                               metadata={"mrmicro": meta}, **common)
        self._plot(plot_area_profile, sections,
                   title=f"{what}: centerline {length / 1000:.3f} mm{suffix}")
        show_info(f"Morphometry: {what} centerline {length:.1f} µm, "
                  f"{len(sections)} cross-sections{suffix}")

    def _plot(self, draw, *args, **options):
        """``draw(axes, *args, **options)`` on a fresh figure, shown in the dock."""
        self.figure.clear()
        draw(self.figure.add_subplot(), *args, **options)
        self.canvas.setVisible(True)
        self.canvas.draw_idle()

    def _follow_ndisplay(self, path3d, flat):
        """Show the 3-D path in 3-D and its projection in 2-D."""
        def update(*_):
            three = self.viewer.dims.ndisplay == 3
            path3d.visible, flat.visible = three, not three

        self.viewer.dims.events.ndisplay.connect(update)
        update()

    # -- distortion profile --------------------------------------------------------------------

    def set_profile(self, profile):
        """Use ``profile`` (a DistortionProfile): plot it, allow saving and correcting."""
        self.profile = profile
        self.save_profile_button.enabled = self.correct.enabled = True
        worst = profile.area_error(profile.distance_um.max())
        self.profile_label.value = (
            f"tube ⌀ {profile.true_diameter_um:g} µm: area error "
            f"{100 * worst:+.2f} % at {profile.distance_um.max() / 1000:.2f} mm from the FOV "
            f"centre (rms {100 * profile.rms_residual:.2f} %)")
        self._plot(plot_distortion, profile)
        show_info("Morphometry: distortion profile ready")

    def _save_profile_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self.native, "Save distortion profile",
                                              "distortion.json", "JSON (*.json)")
        if path and self.profile is not None:
            write_distortion_profile(self.profile, path)

    def _load_profile_dialog(self, *_):
        path, _ = QFileDialog.getOpenFileName(self.native, "Load distortion profile", "",
                                              "JSON (*.json)")
        if path:
            try:
                self.set_profile(read_distortion_profile(path))
            except ValueError as error:
                show_error(f"Morphometry: {error}")


def _item(value) -> QTableWidgetItem:
    item = QTableWidgetItem()
    if isinstance(value, (bool, np.bool_)):
        item.setData(Qt.ItemDataRole.DisplayRole, "yes" if value else "no")
    elif isinstance(value, (int, np.integer)):
        item.setData(Qt.ItemDataRole.DisplayRole, int(value))
    elif isinstance(value, str):
        item.setData(Qt.ItemDataRole.DisplayRole, value)
    else:
        item.setData(Qt.ItemDataRole.DisplayRole, float(f"{value:.6g}"))
    return item


def _corrected_sections(sections, profile):
    """Cross-sections with areas ÷ (1 + e) and diameters ÷ √(1 + e) at their stations."""
    from dataclasses import replace

    areas = correct_area(sections.areas_um2, sections.path_um, profile)
    scale = np.sqrt(sections.areas_um2 / np.where(areas > 0, areas, np.nan))
    return replace(sections, areas_um2=areas, min_diameter_um=sections.min_diameter_um / scale,
                   max_diameter_um=sections.max_diameter_um / scale)


def _layer_volume(layer, layer_type):
    return layer_to_volume(layer.data, {"scale": layer.scale, "units": layer.units,
                                        "translate": layer.translate,
                                        "metadata": layer.metadata}, layer_type)
