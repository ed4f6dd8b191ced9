"""Dock "QSM": multi-echo magnitude and phase layers, or a field map -> susceptibility (ppm)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    SpinBox,
)
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info

from napari_mrmicro._layers import layer_geometry, like
from napari_mrmicro.core import backend
from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.core.qsm.field_map import (b0_direction_of_grid, field_map_mask,
                                               qsm_from_field)
from napari_mrmicro.core.qsm.pipeline import (
    BACKGROUNDS, BOUNDARY_PASSES, METHODS, UNWRAPPERS, QSMResult, qsm_stages)
from napari_mrmicro.widgets._dock import (
    JobDock,
    device_picker,
    device_suffix,
    exclusive,
    layer_picker,
    layer_role,
    layers_with_role,
    numbers_field,
    on_device,
    restore_defaults_button,
)
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker


def spatial_spacing_um(layer) -> tuple:
    """Voxel size (µm) of a layer's three spatial axes (:func:`~napari_mrmicro._layers.
    layer_geometry`: the trailing length axes; a layer without units counts 1 µm each)."""
    spacing = layer_geometry(layer).spacing_um
    if len(spacing) != 3:
        raise ValueError(f"layer {layer.name!r} has {len(spacing)} spatial axes in a length "
                         f"unit (units {tuple(str(u) for u in layer.units)}); QSM needs 3")
    return spacing


#: The dock's two inputs.
ECHOES, FIELD_MAP = "magnitude + phase", "field map"
SIGNAL_MASK, NONZERO_MASK = "signal (noise, phase)", "non-zero field"


def b0_direction_of(layer) -> tuple | None:
    """B0 in the layer's array axes from its world affine, or None when the layer is not
    rotated (then the acquisition's ``b0_direction`` applies)."""
    geometry = layer_geometry(layer)
    return b0_direction_of_grid(geometry.affine_um, geometry.spacing_um)


def _volume(layer) -> bool:
    """A layer QSM can read: 3-D, or echoes × 3-D."""
    return layer.ndim >= 3


class QSMWidget(Container, JobDock):
    """Quantitative susceptibility mapping from magnitude and phase layers or a field map.

    TE, B0 and B0 direction come from the layers' ``metadata["mrmicro"]["acquisition"]``
    and stay editable; B0 direction from the layer's world affine when it is rotated (an
    oblique slab); the voxel size from the layer scale. A field map's unit (Hz or ppm)
    comes from its ``value_unit``, the Larmor frequency from the acquisition's B0. The
    pipeline runs in a worker with per-stage progress and can be cancelled; χ is shown
    with a diverging colormap centred on 0, contrast limits from robust percentiles, and
    the status line says what the automatic mask left out.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.source = ComboBox(label="input", choices=[ECHOES, FIELD_MAP], value=ECHOES,
                               tooltip="Start from gradient-echo magnitude and phase "
                                       "(one or more echoes), or from a field map (Hz or ppm).")
        self.magnitude = layer_picker(
            self.viewer, "magnitude", ("magnitude",), nullable=True, where=_volume,
            others=(lambda: getattr(self, "phase", None),),
            tooltip="Magnitude image(s) (echo, z, y, x): weights the echo fit and the "
                    "automatic mask.")
        self.phase = layer_picker(
            self.viewer, "phase", ("phase",), nullable=True, where=_volume,
            others=(lambda: self.magnitude,),
            tooltip="Wrapped phase of the same echoes (rad or deg); phase "
                    "= 2π·γ̄·B0·field(ppm)·1e-6·TE.")
        exclusive(self.magnitude, self.phase)
        self.phase_unit = ComboBox(label="phase unit", choices=["rad", "deg"], value="rad",
                                   tooltip="Unit of the phase values: radians (−π…π) or degrees.")
        self.field = layer_picker(self.viewer, "field map", ("field map",), nullable=True,
                                  where=_volume, tooltip="Total field map (e.g. a scanner "
                                  "B0 map) in Hz or ppm.")
        self.field.visible = False
        self.field_unit = ComboBox(label="field unit", choices=["Hz", "ppm"], value="Hz",
                                   visible=False, tooltip="Unit of the field map: Hz "
                                   "(divided by the Larmor frequency) or ppm.")
        self.larmor = FloatSpinBox(label="Larmor (MHz)", min=0.0, max=2000.0, step=0.001,
                                   value=400.2, visible=False,
                                   tooltip="¹H Larmor frequency in MHz (Hz → ppm), "
                                           "42.577 MHz/T × B0.")
        self.te = LineEdit(label="TE (ms)", tooltip="Echo times in ms, comma-separated, one per echo "
                                                      "(from the layer's acquisition when known).")
        self.b0 = FloatSpinBox(label="B0 (T)", min=0.01, max=30.0, step=0.1, value=9.4,
                               tooltip="Main field in tesla (0.01–30): converts phase to ppm.")
        self.direction = LineEdit(label="B0 direction (z, y, x)", value="1, 0, 0",
                                  tooltip="B0 unit vector in the array axes (z, y, x); from "
                                          "the layer's world affine for oblique slabs.")
        self.spacing = Label(label="voxel (µm)")
        self.mask_source = ComboBox(label="mask", choices=self._mask_choices,
                                    tooltip="Region where χ is computed: automatic (signal "
                                            "above noise, reliable phase) or a Labels layer.")
        self.erode = FloatSpinBox(label="erode mask (µm)", min=0.0, max=10_000.0, value=0.0,
                                  tooltip="Shrink the mask by this distance in µm (0–10 000): "
                                          "drops unreliable edge voxels.")
        self.unwrap = ComboBox(label="unwrapping", choices=list(UNWRAPPERS),
                               tooltip="Phase unwrapping: region growing (quality-guided) or "
                                       "Laplacian (Schofield & Zhu, Opt Lett 2003;28:1194).")
        self.background = ComboBox(label="background removal", choices=list(BACKGROUNDS),
                                   tooltip="Remove the field of sources outside the mask: LBV "
                                           "(Zhou et al., NMR Biomed 2014;27:312), V-SHARP (Wu "
                                           "et al., MRM 2012;67:137) or PDF (Liu et al., NMR "
                                           "Biomed 2011;24:1129). Passes then put back the "
                                           "local field each removal takes near the "
                                           "specimen's surface (PDF needs the most: slowest). "
                                           "LBV suits specimens in fluid or Fomblin; for an "
                                           "in vivo head with air around it, cut by the field "
                                           "of view, PDF does better.")
        self.passes = SpinBox(label="boundary passes", min=0, max=BOUNDARY_PASSES,
                              value=BOUNDARY_PASSES,
                              tooltip=f"At most this many passes (0–{BOUNDARY_PASSES}) that "
                                      "put back the local field the background removal "
                                      "took; they stop by themselves near their fixed "
                                      "point. 0: the background removal alone, as "
                                      "published.")
        self.method = ComboBox(label="inversion", choices=list(METHODS), value="tv",
                               tooltip="Dipole inversion: total variation, TKD (Shmueli et "
                                       "al., MRM 2009;62:1510), Tikhonov, or MEDI (Liu et "
                                       "al., MRM 2011;66:777).")
        self.lam = FloatSpinBox(label="λ (0: paper default)", min=0.0, max=1.0, step=1e-4,
                                value=0.0, tooltip="Regularization weight (0–1); 0 uses "
                                "the value the method's paper recommends.")
        self.iterations = SpinBox(label="max iterations", min=1, max=5000, value=250,
                                  tooltip="Most iterations of the iterative steps (1–5000).")
        self.intermediates = CheckBox(text="add intermediate layers", value=False,
                                      tooltip="Also add the unwrapped phase, total and local "
                                              "field and mask as layers.")
        self.device = device_picker(
            "Laplacian unwrapping, background removal (LBV, V-SHARP, PDF), the dipole field "
            "and every inversion run (the echo fit, the mask and region-growing unwrapping "
            "stay on the CPU)")
        super().__init__(widgets=[
            self.source, self.magnitude, self.phase, self.phase_unit, self.field,
            self.field_unit, self.larmor, self.te, self.b0, self.direction, self.spacing,
            self.mask_source, self.erode, self.unwrap, self.background, self.passes,
            self.method, self.lam,
            self.iterations, self.intermediates, self.device,
            *self.job_controls("Run QSM")])  # its status: the mask report, a sentence
        self.insert(len(self) - 2, restore_defaults_button(self, after=self._read_metadata))
        self.native.layout().addStretch()  # a tall dock keeps its rows together at the top
        self.phase.changed.connect(self._read_metadata)
        self.field.changed.connect(self._read_metadata)
        self.source.changed.connect(self._show_inputs)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._pick_defaults()

    def _mask_choices(self, _widget=None):
        default = NONZERO_MASK if self.source.value == FIELD_MAP else SIGNAL_MASK
        return [default] + layers_with_role(self.viewer, ("labels",), kind=Labels)

    def _show_inputs(self, *_):
        field = self.source.value == FIELD_MAP
        # a field map needs the Larmor frequency, not B0 and TE (the phase's conversion)
        for widget in (self.magnitude, self.phase, self.phase_unit, self.te, self.b0,
                       self.unwrap):
            widget.visible = not field
        for widget in (self.field, self.field_unit, self.larmor):
            widget.visible = field
        self.mask_source.reset_choices()
        self._read_metadata()

    def _pick_defaults(self):
        """Preselect the layers whose name, else whose role (:func:`~napari_mrmicro.
        widgets._dock.layer_role`), states magnitude, phase or field map; a layer is never
        preselected for a role neither states, nor for two inputs, and the field-map input is chosen when
        only a field map (Hz or ppm values) is open."""
        def field_like(layer):
            unit = layer.metadata.get("mrmicro", {}).get("value_unit")
            return unit in ("Hz", "ppm") or "field" in layer.name.lower()

        self.magnitude.value = self.phase.value = None
        for combo, role, wanted in (
                (self.magnitude, "magnitude", lambda layer: "magnitude" in layer.name),
                (self.phase, "phase", lambda layer: "phase" in layer.name),
                (self.field, "field map", field_like)):
            layers = [layer for layer in combo.choices if layer is not None]
            named = ([layer for layer in layers if wanted(layer)]
                     or [layer for layer in layers if layer_role(layer) == role])
            combo.value = named[-1] if named else None
        if self.phase.value is None and self.field.value is not None:
            self.source.value = FIELD_MAP
        self._read_metadata()

    def _source_layer(self):
        return self.field.value if self.source.value == FIELD_MAP else self.phase.value

    def _read_metadata(self, *_):
        layer = self._source_layer()
        if layer is None:
            return
        mrmicro = layer.metadata.get("mrmicro", {})
        acq = mrmicro.get("acquisition") or {}
        if acq.get("te_ms"):
            self.te.value = ", ".join(f"{t:g}" for t in acq["te_ms"])
        if acq.get("b0_tesla"):
            self.b0.value = acq["b0_tesla"]
            nucleus = acq.get("nucleus", "1H")
            self.larmor.value = GAMMA_BAR_MHZ_PER_T.get(nucleus, 42.577478) * acq["b0_tesla"]
        direction = b0_direction_of(layer) or acq.get("b0_direction")
        if direction:
            # rounded, + 0.0: a component of -0.0 or -1e-17 reads "0", not "-0" or "-1e-17"
            self.direction.value = ", ".join(f"{round(v, 9) + 0.0:.4g}" for v in direction)
        if mrmicro.get("value_unit") in ("Hz", "ppm"):
            self.field_unit.value = mrmicro["value_unit"]
        self.spacing.value = " × ".join(f"{s:.3g}" for s in spatial_spacing_um(layer))

    def _mask(self, shape):
        if isinstance(self.mask_source.value, Labels):
            mask = np.asarray(self.mask_source.value.data) > 0
            if mask.shape != shape:
                raise ValueError(f"the mask layer {mask.shape} does not match the image {shape}")
            return mask
        return None

    def request(self) -> dict:
        """Everything the core needs, read from the widgets (ValueError names a field)."""
        direction = numbers_field(self.direction.value, "B0 direction", 3)
        common = dict(b0_direction=direction, method=self.method.value,
                      background=self.background.value, lam=self.lam.value or None,
                      max_iter=self.iterations.value, boundary_passes=self.passes.value)
        if self.source.value == FIELD_MAP:
            layer = self.field.value
            if layer is None:
                raise ValueError("choose a field map layer")
            field = np.asarray(layer.data)
            if field.ndim != 3:
                raise ValueError(f"the field map must be 3-D (z, y, x), got {field.shape}")
            unit = self.field_unit.value
            if unit == "Hz" and not self.larmor.value > 0:
                raise ValueError("Larmor (MHz) must be positive for a field map in Hz")
            # mask None: the map's own (field_map_mask), eroded in the worker
            return dict(common, field=field, mask=self._mask(field.shape),
                        spacing_um=spatial_spacing_um(layer), erode_um=self.erode.value,
                        field_unit=unit, larmor_hz=self.larmor.value * 1e6)
        magnitude, phase = self.magnitude.value, self.phase.value
        if magnitude is None or phase is None:
            raise ValueError("choose a magnitude and a phase layer")
        mag, ph = np.asarray(magnitude.data), np.asarray(phase.data)
        if mag.shape != ph.shape:
            raise ValueError(f"magnitude {mag.shape} and phase {ph.shape} differ in shape")
        echoes = 1 if ph.ndim == 3 else ph.shape[0]
        te = numbers_field(self.te.value, "TE (ms)", echoes)
        return dict(common, magnitude=mag, phase=ph, te_ms=te, b0_tesla=self.b0.value,
                    spacing_um=spatial_spacing_um(phase), mask=self._mask(ph.shape[-3:]),
                    unwrap=self.unwrap.value, erode_um=self.erode.value,
                    phase_unit=self.phase_unit.value)

    def run(self, *_):
        """Run the pipeline in a worker; χ (and intermediates) arrive as layers."""
        try:
            request = self.request()
            device = backend.check_device(self.device.value)
        except (ValueError, RuntimeError) as error:
            show_error(f"QSM: {error}")
            return None
        source = self._source_layer()
        worker = progress_worker(on_device(device, lambda report: compute(
            request, lambda stage, fraction: report(fraction, stage))), "QSM")
        return self.start_job(worker, "QSM", lambda result: self._add_results(
            result, request, source, device))

    def _add_results(self, result, request, source, device):
        meta = {**source.metadata.get("mrmicro", {}), "source": source.name,
                "value_unit": "ppm", "device": device,
                "qsm": {k: v for k, v in request.items()
                        if k not in ("magnitude", "phase", "mask", "field")}}
        meta.pop("kspace", None)
        common = like(source, ndim=3)  # where the phase layer sits, rotation included
        inside = result.chi_ppm[result.local_mask]
        limit = float(np.percentile(np.abs(inside), 99.5)) if inside.size else 1.0
        name = chi_name(request) + device_suffix(device)
        layers = [(result.chi_ppm, {**common, "name": name, "colormap": "PiYG",
                                    "contrast_limits": (-limit, limit),
                                    "metadata": {"mrmicro": {**meta, "unit": "ppm",
                                                             "value_unit": "ppm"}}},
                   "image")]
        if self.intermediates.value and result.unwrapped_phase is not None:
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
                                          "metadata": {"mrmicro": meta}}, "image")]
        if self.intermediates.value:  # a field map has no phase or total field to add
            layers += [
                (result.local_field_ppm, {**common, "name": "local field (ppm)",
                                          "colormap": "PiYG", "visible": False,
                                          "metadata": {"mrmicro": meta}}, "image"),
                (result.local_mask.astype(np.uint8), {**common, "name": "QSM mask",
                                                      "visible": False,
                                                      "metadata": {"mrmicro": meta}},
                 "labels")]
        add_layers(self.viewer, layers)
        self.status.value = (f"χ in mask: {np.percentile(inside, 1):.3f} … "
                             f"{np.percentile(inside, 99):.3f} ppm")
        if result.mask_report is not None:
            self.status.value += f"; {result.mask_report.summary()}"
        show_info(f"QSM done: {self.status.value}")


def chi_name(request: dict) -> str:
    """The χ layer's name: the inversion, its λ when one was set, and the background
    removal with its boundary passes when they are capped below the default, e.g.
    ``"χ (ppm, tv λ0.002, lbv)"`` or ``"χ (ppm, tv, pdf, 0 passes)"``."""
    lam = f" λ{request['lam']:g}" if request.get("lam") else ""
    passes = request.get("boundary_passes", BOUNDARY_PASSES)
    capped = f", {passes} passes" if passes < BOUNDARY_PASSES else ""
    return f"χ (ppm, {request['method']}{lam}, {request['background']}{capped})"


def compute(request: dict, progress) -> QSMResult:
    """The core call for a dock request: the echo pipeline, or χ from a field map (then
    the result has no unwrapped phase, total field = the map in ppm)."""
    if "field" not in request:
        return qsm_stages(**request, progress=progress)
    options = {k: v for k, v in request.items() if k not in ("field", "mask", "spacing_um",
                                                              "b0_direction", "erode_um")}
    mask = request["mask"]
    if mask is None:  # scanners zero the map where it has no signal
        mask = field_map_mask(request["field"], request["spacing_um"], request["erode_um"])
    chi, local, local_mask = qsm_from_field(
        request["field"], mask, request["spacing_um"], request["b0_direction"],
        report=progress, **options)
    return QSMResult(chi, mask, local_mask, None, None, local, None)
