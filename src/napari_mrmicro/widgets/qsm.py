"""Dock "QSM": multi-echo magnitude and phase layers -> susceptibility map (ppm)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from napari_mrmicro._layers import layer_geometry, like
from napari_mrmicro.core.qsm.pipeline import BACKGROUNDS, METHODS, UNWRAPPERS, qsm_stages
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker


def _numbers(text: str, name: str, count: int | None = None) -> tuple:
    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a list of numbers") from None
    if not values or (count is not None and len(values) != count):
        raise ValueError(f"{name}: expected {count or 'at least one'} number(s), got {text!r}")
    return values


def spatial_spacing_um(layer) -> tuple:
    """Voxel size (µm) of a layer's three spatial axes (:func:`~napari_mrmicro._layers.
    layer_geometry`: the trailing length axes; a layer without units counts 1 µm each)."""
    spacing = layer_geometry(layer).spacing_um
    if len(spacing) != 3:
        raise ValueError(f"layer {layer.name!r} has {len(spacing)} spatial axes in a length "
                         f"unit (units {tuple(str(u) for u in layer.units)}); QSM needs 3")
    return spacing


class QSMWidget(Container):
    """Quantitative susceptibility mapping from magnitude and phase layers.

    TE, B0 and B0 direction come from the layers' ``metadata["mrmicro"]["acquisition"]``
    and stay editable; the voxel size comes from the layer scale. The pipeline runs in a
    worker with per-stage progress and can be cancelled; χ is shown with a diverging
    colormap centred on 0, contrast limits from robust percentiles.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.magnitude = ComboBox(label="magnitude", choices=self._images)
        self.phase = ComboBox(label="phase", choices=self._images)
        self.te = LineEdit(label="TE (ms)")
        self.b0 = FloatSpinBox(label="B0 (T)", min=0.01, max=30.0, step=0.1, value=9.4)
        self.direction = LineEdit(label="B0 direction (z, y, x)", value="1, 0, 0")
        self.spacing = Label(label="voxel (µm)")
        self.mask_source = ComboBox(label="mask", choices=self._mask_choices)
        self.erode = FloatSpinBox(label="erode mask (µm)", min=0.0, max=10_000.0, value=0.0)
        self.unwrap = ComboBox(label="unwrapping", choices=list(UNWRAPPERS))
        self.background = ComboBox(label="background removal", choices=list(BACKGROUNDS))
        self.method = ComboBox(label="inversion", choices=list(METHODS), value="tv")
        self.lam = FloatSpinBox(label="λ (0: paper default)", min=0.0, max=1.0, step=1e-4,
                                value=0.0)
        self.iterations = SpinBox(label="max iterations", min=1, max=5000, value=250)
        self.intermediates = CheckBox(text="add intermediate layers", value=False)
        self.run_button = PushButton(text="Run QSM")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        super().__init__(widgets=[
            self.magnitude, self.phase, self.te, self.b0, self.direction, self.spacing,
            self.mask_source, self.erode, self.unwrap, self.background, self.method, self.lam,
            self.iterations, self.intermediates,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                      labels=False), self.status])
        self.worker = None
        self.phase.changed.connect(self._read_metadata)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._pick_defaults()

    def _images(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)
                and layer.ndim >= 3 and "kspace" not in layer.metadata.get("mrmicro", {})]

    def _mask_choices(self, _widget=None):
        return ["threshold (Otsu)"] + [layer for layer in self.viewer.layers
                                       if isinstance(layer, Labels)]

    def _pick_defaults(self):
        """Preselect layers named like magnitude/phase (as our docks and readers name them)."""
        for combo, word in ((self.magnitude, "magnitude"), (self.phase, "phase")):
            named = [layer for layer in combo.choices if word in layer.name]
            if named:
                combo.value = named[-1]
        self._read_metadata()

    def _read_metadata(self, *_):
        layer = self.phase.value
        if layer is None:
            return
        acq = layer.metadata.get("mrmicro", {}).get("acquisition") or {}
        if acq.get("te_ms"):
            self.te.value = ", ".join(f"{t:g}" for t in acq["te_ms"])
        if acq.get("b0_tesla"):
            self.b0.value = acq["b0_tesla"]
        if acq.get("b0_direction"):
            self.direction.value = ", ".join(f"{v:.4g}" for v in acq["b0_direction"])
        try:
            self.spacing.value = " × ".join(f"{s:.3g}" for s in spatial_spacing_um(layer))
        except ValueError as error:  # said again when the pipeline is started
            self.spacing.value = str(error)

    def request(self) -> dict:
        """Everything the pipeline needs, read from the widgets (ValueError names a field)."""
        magnitude, phase = self.magnitude.value, self.phase.value
        if magnitude is None or phase is None:
            raise ValueError("choose a magnitude and a phase layer")
        mag, ph = np.asarray(magnitude.data), np.asarray(phase.data)
        if mag.shape != ph.shape:
            raise ValueError(f"magnitude {mag.shape} and phase {ph.shape} differ in shape")
        echoes = 1 if ph.ndim == 3 else ph.shape[0]
        te = _numbers(self.te.value, "TE (ms)", echoes)
        direction = _numbers(self.direction.value, "B0 direction", 3)
        mask = None
        if isinstance(self.mask_source.value, Labels):
            mask = np.asarray(self.mask_source.value.data) > 0
        lam = self.lam.value or None
        return dict(magnitude=mag, phase=ph, te_ms=te, b0_tesla=self.b0.value,
                    spacing_um=spatial_spacing_um(phase), b0_direction=direction, mask=mask,
                    method=self.method.value, unwrap=self.unwrap.value,
                    background=self.background.value, erode_um=self.erode.value, lam=lam,
                    max_iter=self.iterations.value)

    def run(self, *_):
        """Run the pipeline in a worker; χ (and intermediates) arrive as layers."""
        try:
            request = self.request()
        except ValueError as error:
            show_error(f"QSM: {error}")
            return None
        source = self.phase.value
        worker = progress_worker(lambda report: qsm_stages(
            **request, progress=lambda stage, fraction: report(fraction, stage)), "QSM")
        worker.returned.connect(lambda result: self._add_results(result, request, source))
        worker.errored.connect(lambda e: show_error(f"QSM: {e}"))
        worker.finished.connect(self._finished)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = "running…"
        worker.start()
        self.worker = worker
        return worker

    def cancel(self, *_):
        """Stop the pipeline at its next stage or iteration."""
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelled"

    def _finished(self):
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def _add_results(self, result, request, source):
        meta = {**source.metadata.get("mrmicro", {}), "source": source.name,
                "qsm": {k: v for k, v in request.items()
                        if k not in ("magnitude", "phase", "mask")}}
        meta.pop("kspace", None)
        common = like(source, ndim=3)  # where the phase layer sits, rotation included
        inside = result.chi_ppm[result.local_mask]
        limit = float(np.percentile(np.abs(inside), 99.5)) if inside.size else 1.0
        layers = [(result.chi_ppm, {**common, "name": f"χ (ppm, {request['method']})",
                                    "colormap": "PiYG", "contrast_limits": (-limit, limit),
                                    "metadata": {"mrmicro": {**meta, "unit": "ppm",
                                                             "value_unit": "ppm"}}},
                   "image")]
        if self.intermediates.value:
            unwrapped = result.unwrapped_phase
            if unwrapped.ndim == 4 and unwrapped.shape[0] == 1:
                unwrapped = unwrapped[0]
            layers += [
                (unwrapped, {**(like(source) if source.ndim == unwrapped.ndim else common),
                             "name": "unwrapped phase (rad)", "visible": False,
                             "metadata": {"mrmicro": {**meta, "value_unit": "rad"}}},
                 "image"),
                (result.total_field_ppm, {**common, "name": "total field (ppm)",
                                          "colormap": "PiYG", "visible": False,
                                          "metadata": {"mrmicro": meta}}, "image"),
                (result.local_field_ppm, {**common, "name": "local field (ppm)",
                                          "colormap": "PiYG", "visible": False,
                                          "metadata": {"mrmicro": meta}}, "image"),
                (result.local_mask.astype(np.uint8), {**common, "name": "QSM mask",
                                                      "visible": False,
                                                      "metadata": {"mrmicro": meta}},
                 "labels"),
            ]
        add_layers(self.viewer, layers)
        self.status.value = (f"χ in mask: {np.percentile(inside, 1):.3f} … "
                             f"{np.percentile(inside, 99):.3f} ppm")
        show_info(f"QSM done: {self.status.value}")
