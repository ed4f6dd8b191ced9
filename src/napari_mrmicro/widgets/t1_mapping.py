"""Dock "T1 mapping": magnitude images at several flip angles, TRs or inversion times ->
T1 map (ms), and M0 and the standard error of T1."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, Select
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QSizePolicy

from napari_mrmicro._layers import SEQUENTIAL, layer_geometry, like, relaxation_limits
from napari_mrmicro.core.t1_mapping import VARIED, angle_advice, fit_record, fit_t1
from napari_mrmicro.io import Volume
from napari_mrmicro.pipeline import T1_SERIES, t1_series
from napari_mrmicro.widgets._dock import (JobDock, chosen_mask, layer_picker,
                                          layers_with_role, mask_picker, numbers_field,
                                          restore_defaults_button)
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker

EXPERIMENTS = (("variable flip angle (VFA)", "vfa"),
               ("saturation recovery (variable TR)", "saturation_recovery"),
               ("inversion recovery", "inversion_recovery"))
TITLES = {"vfa": "flip angles (°)", "saturation_recovery": "TR (ms)",
          "inversion_recovery": "TI (ms)"}


def _magnitude(layer) -> bool:
    """A real 3-D volume, or a 4-D series of them."""
    return layer.ndim in (3, 4) and not np.iscomplexobj(layer.data)


def _acquisition(layer) -> dict:
    return (layer.metadata.get("mrmicro") or {}).get("acquisition") or {}


def _single(value):
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value


def experiment_of(layers) -> str | None:
    """The experiment the layers' acquisitions describe, or None when they do not say:
    a 4-D series of TIs or TRs, or scans that differ in TI, flip angle or TR."""
    if len(layers) == 1 and layers[0].ndim == 4:
        acq = _acquisition(layers[0])
        for method in ("inversion_recovery", "saturation_recovery"):
            series = acq.get(T1_SERIES[method][0])
            if isinstance(series, (list, tuple)) and len(series) == layers[0].data.shape[0]:
                return method
        return None
    for method in ("inversion_recovery", "vfa", "saturation_recovery"):
        values = [_single(_acquisition(layer).get(T1_SERIES[method][1])) for layer in layers]
        if len(values) > 1 and all(isinstance(v, (int, float)) for v in values) \
                and len(set(values)) == len(values):
            return method
    return None


class T1MappingWidget(Container, JobDock):
    """T1 and M0 fitted voxel by voxel (:func:`~napari_mrmicro.core.t1_mapping.fit_t1`):
    one 4-D series layer (a ParaVision inversion-recovery or RARE-VTR scan) or several
    3-D layers, one per flip angle, TR or TI. The values come from the layers'
    acquisitions and stay editable; the map lies where the images lie.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.experiment = ComboBox(
            label="experiment", choices=EXPERIMENTS, value="vfa",
            tooltip="VFA: spoiled gradient echoes at several flip angles and one TR "
                    "(DESPOT1; give a B1 map at high field). Saturation recovery: several "
                    "TRs (RARE-VTR). Inversion recovery: several TIs (a three-parameter "
                    "fit, unbiased by an imperfect inversion or a short TR).")
        self.images = Select(
            label="images", choices=self._image_choices,
            tooltip="One 4-D series (point, z, y, x), or several 3-D magnitude volumes on "
                    "one grid, one per flip angle, TR or TI (Ctrl-click to select).")
        rows = self.images.native.fontMetrics().height() * 5 + 8
        self.images.native.setMaximumHeight(rows)  # five layers shown; the rest scroll
        self.images.native.setSizePolicy(QSizePolicy.Policy.Expanding,
                                         QSizePolicy.Policy.Maximum)
        self.values = LineEdit(label=TITLES["vfa"], tooltip="The varied parameter of each "
                               "image, comma-separated, in the order of the images as "
                               "listed (from the layers' acquisitions when known).")
        self.tr = LineEdit(label="TR (ms)", tooltip="VFA: the one repetition time in ms (from "
                                                    "the layers' acquisitions when known).")
        self.b1 = layer_picker(
            self.viewer, "B1 map", ("magnitude",), nullable=True, where=lambda l: l.ndim == 3,
            tooltip="VFA: the relative transmit field (acting over nominal flip angle) on "
                    "the images' grid. Without it T1 is as good as the nominal angles: at "
                    "7-21 T B1 varies 10-30 % over a specimen, and T1 about twice that.")
        self.mask_source = mask_picker(
            self.viewer, "Voxels to fit: those with signal in the brightest image, or the "
                         "non-zero voxels of a Labels layer.")
        self.m0 = CheckBox(text="add M0 layer", value=False,
                           tooltip="Also add M0, the signal of full relaxation at 90°.")
        self.sd = CheckBox(text="add T1 standard error layer", value=False,
                           tooltip="Also add the standard error of T1 (ms) under the "
                                   "measured noise: where the protocol measures T1 well.")
        super().__init__(widgets=[
            self.experiment, self.images, self.values, self.tr, self.b1, self.mask_source,
            self.m0, self.sd, *self.job_controls("Fit T1")])
        self.insert(len(self) - 2, restore_defaults_button(self, after=self._read_metadata))
        self.native.layout().addStretch()
        self.experiment.changed.connect(self._read_metadata)
        self.images.changed.connect(self._images_chosen)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._read_metadata()

    def _image_choices(self, _widget=None):
        return [(layer.name, layer) for layer in layers_with_role(
            self.viewer, ("magnitude",), where=_magnitude)]

    def _chosen(self) -> list:
        """The selected layers in the layer list's order."""
        chosen = list(self.images.value or [])
        return [layer for layer in self.viewer.layers if any(layer is c for c in chosen)]

    def _images_chosen(self, *_):
        """The experiment the chosen images state (which reads their values), else their
        values for the experiment chosen."""
        found = experiment_of(self._chosen())
        if found is not None and found != self.experiment.value:
            self.experiment.value = found
        else:
            self._read_metadata()

    def _read_metadata(self, *_):
        method = self.experiment.value
        self.values.label = TITLES[method]
        self.tr.visible = self.b1.visible = method == "vfa"
        layers = self._chosen()
        series_key, single_key = T1_SERIES[method]
        if len(layers) == 1 and layers[0].ndim == 4:
            found = _acquisition(layers[0]).get(series_key)
        else:
            found = [_single(_acquisition(layer).get(single_key)) for layer in layers]
        if found and all(isinstance(v, (int, float)) for v in found):
            self.values.value = ", ".join(f"{v:g}" for v in found)
        trs = {_acquisition(layer).get("tr_ms") for layer in layers} - {None}
        if method == "vfa" and len(trs) == 1:
            self.tr.value = f"{trs.pop():g}"

    def request(self) -> dict:
        """Everything the worker needs, read from the widgets (ValueError names a field)."""
        method, layers = self.experiment.value, self._chosen()
        if not layers:
            raise ValueError("choose the images: one 4-D series, or one 3-D layer per "
                             f"{VARIED[method][0]}")
        if len(layers) > 1 and any(layer.ndim != 3 for layer in layers):
            raise ValueError("choose one 4-D series, or several 3-D volumes")
        count = layers[0].data.shape[0] if len(layers) == 1 else len(layers)
        if len(layers) == 1 and layers[0].ndim != 4:
            raise ValueError(f"{layers[0].name!r} is one volume: choose one per "
                             f"{VARIED[method][0]}, or a 4-D series")
        values = numbers_field(self.values.value, TITLES[method], count)
        timing = {VARIED[method][0]: values}
        if method == "vfa":
            timing["tr_ms"] = numbers_field(self.tr.value, "TR (ms)", 1)[0]
        volumes = []
        for layer in layers:  # the data unread: the worker stacks them
            geometry = layer_geometry(layer)
            volumes.append(Volume(layer.data, geometry.spacing_um,
                                  dict(layer.metadata.get("mrmicro") or {}),
                                  affine_um=geometry.affine_um))
        mask = chosen_mask(self.mask_source, layers[0].data.shape[-3:], "the images")
        b1 = self.b1.value if method == "vfa" else None
        if b1 is not None and tuple(b1.data.shape) != tuple(layers[0].data.shape[-3:]):
            raise ValueError(f"the B1 map {tuple(b1.data.shape)} is not on the images' "
                             f"grid {tuple(layers[0].data.shape[-3:])}")
        return {"method": method, "volumes": volumes, "names": [l.name for l in layers],
                "timing": timing, "mask": mask, "b1": None if b1 is None else b1.data,
                "b1_name": None if b1 is None else b1.name}

    def run(self, *_):
        """Fit in a worker; the map (and M0, the standard error) arrive as layers."""
        request = self.checked_request("T1 mapping")
        if request is None:
            return None
        source = self._chosen()[0]
        worker = progress_worker(lambda report: _fit(request, report), "T1 mapping")
        return self.start_job(worker, "T1 mapping", lambda result: self._add_results(
            *result, request, source), running="fitting…")

    def _add_results(self, fit, timing, request, source):
        method = request["method"]
        record = fit_record(fit, method, timing[VARIED[method][0]], request["b1_name"],
                            timing.get("tr_ms"))
        meta = {**(source.metadata.get("mrmicro") or {}), "source": source.name,
                "relaxometry": record}
        common = like(source, ndim=3)
        t1 = fit.t1_ms()
        values = t1[fit.fitted]
        low, high = (np.percentile(values, (1, 99)) if values.size else (0.0, 0.0))
        label = dict((v, k) for k, v in EXPERIMENTS)[method]
        layers = [(t1, {**common, "name": f"T1 (ms, {label})", "colormap": SEQUENTIAL,
                        "contrast_limits": relaxation_limits(values),
                        "metadata": {"mrmicro": {**meta, "value_unit": "ms"}}}, "image")]
        if self.sd.value:
            sd = fit.t1_sd_ms()
            layers.append((sd, {**common, "name": "T1 standard error (ms)", "visible": False,
                                "colormap": SEQUENTIAL,
                                "contrast_limits": relaxation_limits(sd[fit.fitted]),
                                "metadata": {"mrmicro": {**meta, "value_unit": "ms"}}},
                           "image"))
        if self.m0.value:
            layers.append((fit.m0, {**common, "name": f"M0 ({label})", "visible": False,
                                    "metadata": {"mrmicro": meta}}, "image"))
        add_layers(self.viewer, layers)
        advice = f"; {angle_advice(t1, timing['tr_ms'])}" if method == "vfa" else ""
        self.status.value = (f"T1 in {record['fitted_voxels']} voxels: {low:.4g} … "
                             f"{high:.4g} ms (1st-99th percentile); noise σ "
                             f"{fit.noise_sigma:.3g}{advice}")
        show_info(f"T1 mapping done: {self.status.value}")


def _fit(request: dict, report):
    """The dock's job: stack the images (several layers, in the order of their values)
    and fit; returns the fit and the timing in the images' order."""
    method, volumes, timing = request["method"], request["volumes"], dict(request["timing"])
    name = VARIED[method][0]
    if len(volumes) > 1:
        report(0.0, "stacking")
        series = t1_series(volumes, method, request["names"], timing[name])
        timing[name] = series.metadata["acquisition"][T1_SERIES[method][0]]
        data = series.data
    else:
        data = np.asarray(volumes[0].data, dtype=np.float32)
    b1 = None if request["b1"] is None else np.asarray(request["b1"], dtype=np.float32)
    return fit_t1(data, method, **timing, b1=b1, mask=request["mask"],
                  callback=lambda fraction: report(fraction, "fit")), timing
