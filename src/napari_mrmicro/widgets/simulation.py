"""Dock "MR Simulation": plan an acquisition (trade-offs shown live) and simulate it."""

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
from napari.layers import Image
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractSpinBox
from napari.utils.notifications import show_error, show_info

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core.physics import protocol_summary
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets._worker import progress_worker

#: Protocols users start from.
PRESETS = {
    "2.35 T dental (100 µm, 3D SE)": dict(
        specimen="tooth", b0_tesla=2.35, nucleus="1H", sequence="spin_echo", te_ms=(2.4,),
        tr_ms=600.0, flip_deg=90.0, matrix=(256, 128, 128),
        fov_um=(25_000.0, 12_500.0, 12_500.0), bandwidth_hz=25_000.0, averages=1,
        temperature_k=295.0, readout_axis=0, max_gradient_mT_per_m=250.0),
    "9.4 T temporal bone (25 µm, overnight)": dict(
        specimen="cochlea", b0_tesla=9.4, nucleus="1H", sequence="spin_echo", te_ms=(9.0,),
        tr_ms=700.0, flip_deg=90.0, matrix=(256, 256, 256), fov_um=(6_400.0,) * 3,
        bandwidth_hz=50_000.0, averages=1, temperature_k=293.0, readout_axis=2,
        max_gradient_mT_per_m=1000.0),
    "9.4 T cochlea quick look (50 µm, 3D GRE)": dict(
        specimen="cochlea", b0_tesla=9.4, nucleus="1H", sequence="gradient_echo",
        te_ms=(3.0, 6.0, 9.0), tr_ms=40.0, flip_deg=15.0, matrix=(128, 128, 128),
        fov_um=(6_400.0,) * 3, bandwidth_hz=50_000.0, averages=1, temperature_k=293.0,
        readout_axis=2, max_gradient_mT_per_m=1000.0),
    "9.4 T microdiamonds, hyperpolarized 13C": dict(
        specimen="microdiamonds", b0_tesla=9.4, nucleus="13C", sequence="gradient_echo",
        te_ms=(1.0,), tr_ms=5.0, flip_deg=5.0, matrix=(32, 64, 64),
        fov_um=(1_600.0, 3_200.0, 3_200.0), bandwidth_hz=25_000.0, averages=1,
        temperature_k=293.0, readout_axis=2, max_gradient_mT_per_m=1000.0),
}
SPECIMENS = ("cochlea", "tooth", "tube", "microdiamonds")
AXES = {"z": 0, "y": 1, "x": 2}


class SimulationWidget(Container):
    """Protocol planner and simulator.

    Every change updates the predicted voxel size, Larmor frequency, readout gradient,
    b-value and diffusion loss, chemical-shift and T2* blur in pixels, SNR (absolute for
    water and relative to the chosen preset) and scan time, with warnings for protocols
    the hardware or physics will not allow. "Simulate" runs
    :func:`napari_mrmicro.core.simulate.simulate` in a worker thread and adds k-space,
    magnitude, phase and (optionally) ground-truth layers.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.preset = ComboBox(label="preset", choices=list(PRESETS))
        self.specimen = ComboBox(label="specimen", choices=SPECIMENS + ("image layer",))
        self.pd_layer = ComboBox(label="proton density", choices=self._image_layers,
                                 nullable=True, visible=False)
        self.b0 = FloatSpinBox(label="B0 (T)", min=0.05, max=30.0, step=0.05)
        self.nucleus = ComboBox(label="nucleus", choices=["1H", "13C"])
        self.sequence = ComboBox(label="sequence", choices=["spin_echo", "gradient_echo"])
        self.te = LineEdit(label="TE (ms), one per echo")
        self.tr = FloatSpinBox(label="TR (ms)", min=0.1, max=100_000.0, step=10.0)
        self.flip = FloatSpinBox(label="flip (°)", min=0.1, max=180.0)
        self.matrix = [SpinBox(label=a, min=1, max=2048) for a in AXES]
        self.fov = [FloatSpinBox(label=a, min=0.01, max=500.0, step=0.1) for a in AXES]
        self.bandwidth = FloatSpinBox(label="bandwidth (kHz)", min=0.1, max=2000.0, step=1.0)
        self.averages = SpinBox(label="averages", min=1, max=10_000)
        self.sample_t = FloatSpinBox(label="sample T (K)", min=1.0, max=400.0)
        self.coil_t = FloatSpinBox(label="coil T (K)", min=1.0, max=400.0, value=298.0)
        self.readout = ComboBox(label="readout axis", choices=list(AXES))
        self.max_gradient = FloatSpinBox(label="max gradient (mT/m)", min=1.0, max=100_000.0)
        self.polarization = FloatSpinBox(label="13C polarization (%)", min=0.001, max=100.0,
                                         value=10.0)
        self.nonlinearity = FloatSpinBox(label="gradient non-linearity (%)", min=0.0,
                                         max=20.0, step=0.5, value=0.0)
        self.effects = {name: CheckBox(text=name.replace("_", " "), value=True)
                        for name in ("relaxation", "noise", "diffusion", "readout_decay",
                                     "chemical_shift", "susceptibility")}
        self.truth = CheckBox(text="add ground-truth layers", value=True)
        self.summary = Label(label="")
        self.run_button = PushButton(text="Simulate")
        row = lambda label, widgets: Container(  # noqa: E731
            widgets=widgets, layout="horizontal", label=label, labels=False)
        checks = list(self.effects.values())
        super().__init__(widgets=[
            self.preset, self.specimen, self.pd_layer, self.b0, self.nucleus, self.sequence,
            self.te, self.tr, self.flip, row("matrix (z, y, x)", self.matrix),
            row("FOV (z, y, x) mm", self.fov), self.bandwidth, self.averages, self.sample_t,
            self.coil_t, self.readout, self.max_gradient, self.polarization,
            self.nonlinearity, row("effects", checks[:3]), row("", checks[3:]), self.truth,
            self.summary, self.run_button])
        for box in self.matrix + self.fov:  # three to a row: no +/- buttons
            box.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.native.setMinimumWidth(50)
        self.summary.native.setWordWrap(True)
        self.summary.native.setTextFormat(Qt.TextFormat.RichText)
        self.reference = None
        self.preset.changed.connect(self._apply_preset)
        self.specimen.changed.connect(self._specimen_changed)
        for widget in self._protocol_widgets():
            widget.changed.connect(self.update_summary)
        self.run_button.changed.connect(self.run)
        self.viewer.layers.events.inserted.connect(self.pd_layer.reset_choices)
        self.viewer.layers.events.removed.connect(self.pd_layer.reset_choices)
        self._apply_preset(self.preset.value)

    def _image_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _protocol_widgets(self):
        return [self.b0, self.nucleus, self.sequence, self.te, self.tr, self.flip,
                *self.matrix, *self.fov, self.bandwidth, self.averages, self.sample_t,
                self.coil_t, self.readout, self.max_gradient]

    def _specimen_changed(self, value):
        self.pd_layer.visible = value == "image layer"

    def _apply_preset(self, name):
        values = PRESETS[name]
        self.specimen.value = values["specimen"]
        self.b0.value, self.nucleus.value = values["b0_tesla"], values["nucleus"]
        self.sequence.value = values["sequence"]
        self.te.value = ", ".join(f"{t:g}" for t in values["te_ms"])
        self.tr.value, self.flip.value = values["tr_ms"], values["flip_deg"]
        for widget, n in zip(self.matrix, values["matrix"]):
            widget.value = n
        for widget, f in zip(self.fov, values["fov_um"]):
            widget.value = f / 1000.0
        self.bandwidth.value = values["bandwidth_hz"] / 1000.0
        self.averages.value, self.sample_t.value = values["averages"], values["temperature_k"]
        self.readout.value = list(AXES)[values["readout_axis"]]
        self.max_gradient.value = values["max_gradient_mT_per_m"]
        self.reference = self.acquisition()
        self.update_summary()

    def acquisition(self) -> Acquisition:
        """The protocol the widgets describe (raises ValueError naming a bad field)."""
        try:
            te = tuple(float(t) for t in self.te.value.replace(";", ",").split(",") if t.strip())
        except ValueError:
            raise ValueError(f"TE: {self.te.value!r} is not a list of numbers in ms") from None
        if not te or min(te) <= 0:
            raise ValueError("TE: give at least one positive echo time in ms")
        return Acquisition(
            matrix=tuple(w.value for w in self.matrix),
            fov_um=tuple(w.value * 1000.0 for w in self.fov), b0_tesla=self.b0.value,
            nucleus=self.nucleus.value, sequence=self.sequence.value, te_ms=te,
            tr_ms=self.tr.value, flip_deg=self.flip.value,
            bandwidth_hz=self.bandwidth.value * 1000.0, averages=self.averages.value,
            temperature_k=self.sample_t.value, readout_axis=AXES[self.readout.value],
            max_gradient_mT_per_m=self.max_gradient.value,
            extra={"coil_temperature_k": self.coil_t.value})

    def update_summary(self, *_):
        """Recompute the planner's figures for the current protocol."""
        try:
            acq = self.acquisition()
            s = protocol_summary(acq, reference=self.reference)
        except ValueError as error:
            self.summary.value = f"<b style='color:#e06c75'>{error}</b>"
            return
        voxel = " × ".join(f"{v:.1f}" for v in s["voxel_um"])
        rows = [
            ("voxel", f"{voxel} µm"),
            ("Larmor", f"{s['larmor_mhz']:.3f} MHz"),
            ("readout gradient", f"{s['readout_gradient_mT_per_m']:.0f} mT/m"),
            ("b-value (echo / max)", f"{s['b_value_s_per_mm2']:.1f} / "
                                     f"{s['b_value_max_s_per_mm2']:.1f} s/mm²"),
            ("diffusion loss (free water)", f"{100 * s['diffusion_loss']:.1f} %"),
            ("fat–water shift", f"{s['chemical_shift_px']:.2f} px"),
            ("T2* blur (20 ms)", f"{s['t2star_blur_px']:.2f} px"),
            ("diffusion limit", f"{s['diffusion_limited_um']:.1f} µm"),
            ("SNR (water)", f"{s['snr_water']:.1f}"),
            ("SNR vs preset", f"× {s['snr_relative']:.3g}"),
            ("scan time", f"{s['scan_time']} (h:mm)"),
        ]
        table = "".join(f"<tr><td>{k}</td><td align='right'><b>{v}</b></td></tr>"
                        for k, v in rows)
        warnings = "".join(f"<p style='color:#e5c07b'>⚠ {w}</p>" for w in s["warnings"])
        self.summary.value = f"<table width='100%'>{table}</table>{warnings}"
        self.last_summary = s

    def run(self, *_):
        """Simulate in a worker thread; results arrive as layers."""
        try:
            acq = self.acquisition()
            effects = dict(gradient_nonlinearity=self.nonlinearity.value / 100.0,
                           **{k: w.value for k, w in self.effects.items()})
            pd_image = None
            if self.specimen.value == "image layer":
                if self.pd_layer.value is None:
                    raise ValueError("proton density: choose an Image layer")
                pd_image = np.asarray(self.pd_layer.value.data, dtype=np.float32)
        except ValueError as error:
            show_error(f"MR Simulation: {error}")
            return None
        specimen, polarization = self.specimen.value, self.polarization.value / 100.0
        worker = progress_worker(lambda report: _simulate(
            specimen, acq, effects, pd_image, polarization, report), "MR simulation")
        worker.returned.connect(self._add_results)
        worker.errored.connect(lambda e: show_error(f"MR Simulation: {e}"))
        self.run_button.enabled = False
        worker.finished.connect(lambda: setattr(self.run_button, "enabled", True))
        worker.start()
        self.worker = worker
        return worker

    def _add_results(self, result):
        kspace, name = result
        add_layers(self.viewer, kspace_layers(kspace, name, truth=self.truth.value))
        show_info(f"MR Simulation: {name} done, noise σ = {kspace.truth['sigma']:.4g}")


def _simulate(specimen_name, acq, effects, pd_image, polarization, report):
    """The dock's job: build the specimen on a 2× finer grid and simulate."""
    from napari_mrmicro.core.simulate import Effects, simulate
    from napari_mrmicro.core.specimens import make_specimen, specimen_from_image

    fine = tuple(2 * n for n in acq.matrix)
    spacing = tuple(v / 2 for v in acq.voxel_um)
    report(0.0, "building specimen")
    if pd_image is not None:
        specimen = specimen_from_image(pd_image, fine, spacing)
    else:
        specimen = make_specimen(specimen_name, fine, spacing)
    kspace = simulate(specimen, acq, seed=0, effects=Effects(**effects),
                      polarization=polarization,
                      progress=lambda stage, fraction: report(0.05 + 0.95 * fraction, stage))
    return kspace, specimen.name if pd_image is None else "image"
