"""Dock "Relaxometry": a multi-echo magnitude layer -> T2 or T2* map (ms) and S0."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FloatSpinBox, Label, LineEdit,
                              SpinBox)
from napari.utils.notifications import show_info

from napari_mrmicro._layers import SEQUENTIAL, like, relaxation_limits
from napari_mrmicro.core.relaxometry import (METHODS, NOISE_FLOOR, fit_record,
                                             fit_relaxation, relaxation_name)
from napari_mrmicro.widgets._dock import (JobDock, chosen_mask, layer_picker, mask_picker,
                                          numbers_field, restore_defaults_button)
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker



def _echoes(layer) -> bool:
    """A layer of several echoes of a volume: (echo, z, y, x), real values."""
    return layer.ndim == 4 and not np.iscomplexobj(layer.data) and layer.data.shape[0] >= 2


class RelaxometryWidget(Container, JobDock):
    """T2 (spin echoes) or T2* (gradient echoes) and S0, fitted voxel by voxel to the
    magnitude of several echoes (:func:`~napari_mrmicro.core.relaxometry.fit_relaxation`).

    The echo times come from the layer's acquisition and stay editable; the fit runs in a
    worker with progress and can be cancelled; the map (ms, 0 where not fitted) lies where
    the magnitude lies.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.magnitude = layer_picker(
            self.viewer, "magnitude", ("magnitude",), where=_echoes,
            tooltip="Magnitude of several echoes (echo, z, y, x), e.g. a multi-echo spin "
                    "echo (T2) or gradient echo (T2*) reconstruction.")
        self.te = LineEdit(label="TE (ms)", tooltip="Echo times in ms, comma-separated, one "
                                                    "per echo, increasing (from the layer's "
                                                    "acquisition when known).")
        self.quantity = Label(label="maps")
        self.method = ComboBox(
            label="fit", choices=list(METHODS), value="nonlinear",
            tooltip="nonlinear: least squares on the signal (the best estimate under "
                    "Gaussian noise); loglinear: on its logarithm, weighted by S² (fastest); "
                    "arlo: auto-regression on linear operations (Pei et al., MRM "
                    "2015;73:843), equally spaced echoes.")
        self.floor = FloatSpinBox(
            label="noise floor (σ)", min=0.0, max=100.0, step=0.5, value=NOISE_FLOOR,
            tooltip="Each voxel's echoes are used while its signal stays above this many σ "
                    "of the noise (measured in the background), 0–100: the Rician floor "
                    "of later echoes would make T2 read long. 0 uses every echo.")
        self.skip = SpinBox(
            label="skip first echoes", min=0, max=100, value=0,
            tooltip="Leave out this many first echoes (0–100). A multi-echo spin echo's "
                    "first echo lacks the stimulated echoes of the later ones and lies off "
                    "their decay: skip 1 for T2 (Milford et al., PLoS One 2015).")
        self.mask_source = mask_picker(
            self.viewer, "Voxels to fit: those with signal (the first echo above the noise "
                         "floor, noise specks dropped), or the non-zero voxels of a Labels "
                         "layer.")
        self.s0 = CheckBox(text="add S0 layer", value=False,
                           tooltip="Also add S0, the signal extrapolated to TE 0 (proton "
                                   "density × receive field).")
        super().__init__(widgets=[
            self.magnitude, self.te, self.quantity, self.method, self.floor, self.skip,
            self.mask_source, self.s0,
            *self.job_controls("Fit")])
        self.insert(len(self) - 2, restore_defaults_button(self, after=self._read_metadata))
        self.native.layout().addStretch()
        self.magnitude.changed.connect(self._read_metadata)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._read_metadata()

    def _acquisition(self) -> dict:
        layer = self.magnitude.value
        return ((layer.metadata.get("mrmicro") or {}).get("acquisition") or {}) if layer else {}

    def _read_metadata(self, *_):
        acq = self._acquisition()
        if acq.get("te_ms"):
            self.te.value = ", ".join(f"{t:g}" for t in acq["te_ms"])
        self.quantity.value = relaxation_name(acq) + " (ms)"

    def request(self) -> dict:
        """Everything the core needs, read from the widgets (ValueError names a field)."""
        layer = self.magnitude.value
        if layer is None:
            raise ValueError("choose a magnitude layer of several echoes (echo, z, y, x)")
        data = layer.data  # read in the worker (fit_relaxation), not on the GUI thread
        mask = chosen_mask(self.mask_source, data.shape[1:], "the echoes")
        return dict(magnitude=data, te_ms=numbers_field(self.te.value, "TE (ms)", data.shape[0]),
                    method=self.method.value, mask=mask, floor=self.floor.value,
                    skip_echoes=self.skip.value)

    def run(self, *_):
        """Fit in a worker; the map (and S0) arrive as layers."""
        request = self.checked_request("Relaxometry")
        if request is None:
            return None
        source, quantity = self.magnitude.value, relaxation_name(self._acquisition())
        worker = progress_worker(lambda report: fit_relaxation(
            **request, callback=lambda fraction: report(fraction, "fit")), "Relaxometry")
        return self.start_job(worker, "Relaxometry", lambda fit: self._add_results(
            fit, request, source, quantity), running="fitting…")

    def _add_results(self, fit, request, source, quantity):
        record = fit_record(fit, request["method"], request["te_ms"], request["floor"],
                            request["skip_echoes"], quantity)
        meta = {**source.metadata.get("mrmicro", {}), "source": source.name,
                "relaxometry": record}
        common = like(source, ndim=3)
        t2 = fit.t2_ms()
        values = t2[fit.fitted]
        low, high = (np.percentile(values, (1, 99)) if values.size else (0.0, 0.0))
        layers = [(t2, {**common, "name": f"{quantity} (ms, {request['method']})",
                        "colormap": SEQUENTIAL, "contrast_limits": relaxation_limits(values),
                        "metadata": {"mrmicro": {**meta, "value_unit": "ms"}}}, "image")]
        if self.s0.value:
            layers.append((fit.s0, {**common, "name": f"S0 ({request['method']})",
                                    "visible": False, "metadata": {"mrmicro": meta}},
                           "image"))
        add_layers(self.viewer, layers)
        floor = "" if fit.noise_sigma is None else \
            f"; echoes above {request['floor']:g}σ = {request['floor'] * fit.noise_sigma:.4g}"
        self.status.value = (f"{quantity} in {record['fitted_voxels']} voxels: {low:.3g} … "
                             f"{high:.3g} ms (1st-99th percentile){floor}")
        show_info(f"Relaxometry done: {self.status.value}")
