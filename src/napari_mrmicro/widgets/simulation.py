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
    SpinBox,
)
from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractSpinBox, QSizePolicy
from napari.utils.notifications import show_error, show_info

from napari_mrmicro._layers import layer_geometry, tissue_features, volume_to_layer_data
from napari_mrmicro.core import Acquisition, backend
from napari_mrmicro.core.diffusion_tensor import diffusion_scheme
from napari_mrmicro.core.memory import GIB, available_memory_bytes
from napari_mrmicro.core.physics import REFERENCE_SNR, format_duration, protocol_summary
from napari_mrmicro.core.simulate import simulation_memory_bytes
from napari_mrmicro.widgets._dock import (
    JobDock, device_picker, device_suffix, layer_picker, on_device, restore_defaults_button)
from napari_mrmicro.io import Volume
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
#: The specimen is built on a grid this many times finer than the image on every axis.
FINE = 2
SEQUENCES = {"spin_echo": "SE", "gradient_echo": "GRE"}

#: What each input means, its unit and range, and where the physics comes from.
TIPS = {
    "preset": "Protocols MR microscopists start from; every field below can then be edited.",
    "specimen": "Digital specimen to image: a 9.4 T cochlea (fluid-filled turns in bone), a "
                "human tooth (enamel, dentine, pulp), a water tube (distortion calibration), "
                "¹³C microdiamonds; or 'image layer' to use an image as proton density.",
    "pd_layer": "Image layer used as proton density (0–1 after scaling to its maximum); it "
                "keeps its physical size, centred in the field of view (cropped where larger, "
                "air around it where smaller); an uncalibrated image is stretched to the FOV.",
    "b0": "Main field B0 in tesla (0.05–30 T). Signal ∝ B0² and coil noise ∝ B0^¼, so SNR ∝ "
          "B0^7/4 in the coil-noise regime of microscopy probes (Hoult & Richards, J Magn "
          "Reson 1976;24:71).",
    "nucleus": "¹H (γ/2π 42.577 MHz/T, thermal polarization) or ¹³C (10.708 MHz/T, "
               "hyperpolarized: see '13C polarization').",
    "sequence": "Spin echo refocuses static dephasing (T2 weighting); gradient echo keeps it "
                "(T2* weighting and the phase QSM needs).",
    "te": "Echo time(s) in ms, comma-separated, one per echo (e.g. '3, 6, 9' for a multi-echo "
          "GRE). Longer TE: more T2/T2* decay and more field phase.",
    "tr": "Repetition time in ms (0.1–100 000). Saturation 1 − e^(−TR/T1); scan time = TR × "
          "phase encodes × averages.",
    "flip": "Excitation flip angle in degrees (0.1–180). For a spoiled gradient echo the "
            "Ernst angle cos α = e^(−TR/T1) maximises signal (Ernst & Anderson, Rev Sci "
            "Instrum 1966;37:93).",
    "matrix": "Voxels on each axis (z, y, x), 1–2048. Voxel size = FOV / matrix; memory and "
              "time grow with the product.",
    "fov": "Field of view on each axis (z, y, x) in mm (0.01–500). Voxel size = FOV / matrix.",
    "bandwidth": "Full receiver bandwidth in kHz (0.1–2000). Noise ∝ √bandwidth; readout "
                 "gradient G = BW / (γ̄ · FOV_read); chemical shift in pixels = δ·γ̄·B0 / "
                 "(BW / N_read).",
    "averages": "Signal averages (1–10 000): SNR ∝ √averages, time ∝ averages.",
    "sample_t": "Sample temperature in K (1–400). Thermal magnetization M0 ∝ B0 / T (Curie's "
                "law); free-water diffusion also depends on it.",
    "coil_t": "Receive coil temperature in K (1–400): coil noise ∝ √T_coil; a cryogenic "
              "probe (≈ 20–80 K) gains up to 2–4× SNR (Black et al., Science "
              "1993;259:793).",
    "readout": "Axis read out by the frequency-encoding gradient: chemical-shift, "
               "susceptibility and T2* blur appear along it.",
    "max_gradient": "Strongest gradient the system gives, in mT/m (1–100 000; microscopy "
                    "inserts 1000–3000 mT/m). A protocol that needs more is flagged.",
    "polarization": "¹³C hyperpolarization in % (0.001–100): magnetization spent by each "
                    "excitation, no T1 recovery (optically hyperpolarized microdiamonds: Ajoy et al., Sci Adv 2018;4:eaar5492).",
    "directions": "0: no diffusion weighting. 6–256: also simulate a diffusion-prepared "
                  "series, one image at b 0 and one per direction (spread evenly over a "
                  "hemisphere), each tissue weighted by its diffusion tensor (the cochlear "
                  "nerve is fibrous): a layer the Diffusion tensor dock fits. One TE.",
    "b_value": "b-value of the diffusion directions in s/mm² (1–30 000); fixed tissue keeps "
               "signal up to a few thousand (e^(−b·D): D 2 µm²/ms at b 1000 leaves 14 %).",
    "nonlinearity": "Gradient non-linearity in % at the FOV edge (0–20): voxels are displaced "
                    "by a radial map growing with distance from the FOV centre, as in a tube "
                    "calibration (Doran et al., Phys Med Biol 2005;50:1343).",
    "relaxation": "T1/T2/T2* signal weighting of each tissue (spin echo ρ(1−e^(−TR/T1))"
                  "e^(−TE/T2); spoiled gradient echo with flip α and T2*).",
    "noise": "Complex Gaussian noise with σ from bandwidth, averages, temperatures and B0.",
    "diffusion": "Attenuation exp(−b·D) of each k-space sample by the imaging gradients (Torrey, "
                 "Phys Rev 1956;104:563); it limits resolution below ≈ 10 µm.",
    "readout_decay": "T2/T2* decay during the readout: a blur (point-spread function) along "
                     "the readout axis.",
    "chemical_shift": "Fat/water chemical shift: displacement δ·γ̄·B0 / (BW/N_read) pixels "
                      "along the readout.",
    "susceptibility": "Field of the susceptibility distribution (dipole convolution; Marques & "
                      "Bowtell, Concepts Magn Reson 2005;25B:65): phase ∝ TE and readout "
                      "displacement ΔB/G.",
    "truth": "Also add the specimen's true proton density, susceptibility, field and tissue "
             "labels (hidden), to compare with reconstructions and QSM.",
}

#: How the planner's SNR relates to the one the Reconstruction dock measures.
SNR_NOTE = (
    f"<small>Planner SNR: fully relaxed pure water (ρ = 1) in one voxel over the noise σ, for "
    f"a reference probe ({REFERENCE_SNR:g} at (25 µm)³, 9.4 T, 298 K). The Reconstruction "
    f"dock measures mean specimen signal (Otsu mask) over σ from the background: lower by "
    f"the specimen's mean of proton density × relaxation weighting ρ(1−e<sup>−TR/T1</sup>)"
    f"e<sup>−TE/T2</sup> × diffusion and partial-volume losses. Close to the planner's for "
    f"fluid-filled specimens (TR ≫ T1, TE ≪ T2), several times lower for short-T2 or "
    f"low-density tissue (dentine, enamel, bone).</small>")


class SimulationWidget(Container, JobDock):
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
        tip = TIPS.get
        self.preset = ComboBox(label="preset", choices=list(PRESETS), tooltip=tip("preset"))
        self.specimen = ComboBox(label="specimen", choices=SPECIMENS + ("image layer",),
                                 tooltip=tip("specimen"))
        self.pd_layer = layer_picker(self.viewer, "proton density", ("magnitude",),
                                     tooltip=tip("pd_layer"), nullable=True)
        self.pd_layer.visible = False
        self.b0 = FloatSpinBox(label="B0 (T)", min=0.05, max=30.0, step=0.05, tooltip=tip("b0"))
        self.nucleus = ComboBox(label="nucleus", choices=["1H", "13C"], tooltip=tip("nucleus"))
        self.sequence = ComboBox(label="sequence", choices=list(SEQUENCES),
                                 tooltip=tip("sequence"))
        self.te = LineEdit(label="TE (ms), one per echo", tooltip=tip("te"))
        self.tr = FloatSpinBox(label="TR (ms)", min=0.1, max=100_000.0, step=10.0,
                               tooltip=tip("tr"))
        self.flip = FloatSpinBox(label="flip (°)", min=0.1, max=180.0, tooltip=tip("flip"))
        self.matrix = [SpinBox(label=a, min=1, max=2048, tooltip=tip("matrix")) for a in AXES]
        self.fov = [FloatSpinBox(label=a, min=0.01, max=500.0, step=0.1, tooltip=tip("fov"))
                    for a in AXES]
        self.bandwidth = FloatSpinBox(label="bandwidth (kHz)", min=0.1, max=2000.0, step=1.0,
                                      tooltip=tip("bandwidth"))
        self.averages = SpinBox(label="averages", min=1, max=10_000, tooltip=tip("averages"))
        self.sample_t = FloatSpinBox(label="sample T (K)", min=1.0, max=400.0,
                                     tooltip=tip("sample_t"))
        self.coil_t = FloatSpinBox(label="coil T (K)", min=1.0, max=400.0, value=298.0,
                                   tooltip=tip("coil_t"))
        self.readout = ComboBox(label="readout axis", choices=list(AXES), tooltip=tip("readout"))
        self.max_gradient = FloatSpinBox(label="max gradient (mT/m)", min=1.0, max=100_000.0,
                                         tooltip=tip("max_gradient"))
        self.polarization = FloatSpinBox(label="13C polarization (%)", min=0.001, max=100.0,
                                         value=10.0, tooltip=tip("polarization"))
        self.nonlinearity = FloatSpinBox(label="gradient non-linearity (%)", min=0.0,
                                         max=20.0, step=0.5, value=0.0,
                                         tooltip=tip("nonlinearity"))
        self.directions = SpinBox(label="diffusion directions", min=0, max=256, value=0,
                                  tooltip=tip("directions"))
        self.b_value = FloatSpinBox(label="b (s/mm²)", min=1.0, max=30_000.0, step=100.0,
                                    value=1000.0, tooltip=tip("b_value"))
        self.effects = {name: CheckBox(text=name.replace("_", " "), value=True, tooltip=tip(name))
                        for name in ("relaxation", "noise", "diffusion", "readout_decay",
                                     "chemical_shift", "susceptibility")}
        self.truth = CheckBox(text="add ground-truth layers", value=True, tooltip=tip("truth"))
        self.device = device_picker(
            "the susceptibility field and the k-space Fourier transforms run (specimen, "
            "encoding, relaxation and noise stay on the CPU)")
        self.summary = Label(label="")
        self.snr_note = Label(label="", value=SNR_NOTE)
        row = lambda label, widgets: Container(  # noqa: E731
            widgets=widgets, layout="horizontal", label=label, labels=False)
        checks = list(self.effects.values())
        super().__init__(widgets=[
            self.preset, self.specimen, self.pd_layer, self.b0, self.nucleus, self.sequence,
            self.te, self.tr, self.flip, row("matrix (z, y, x)", self.matrix),
            row("FOV (z, y, x) mm", self.fov), self.bandwidth, self.averages, self.sample_t,
            self.coil_t, self.readout, self.max_gradient, self.polarization,
            self.nonlinearity, self.directions, self.b_value,
            row("effects", checks[:2]), row("", checks[2:4]),
            row("", checks[4:]), self.truth,
            self.device,
            self.summary, self.snr_note, *self.job_controls("Simulate")])
        for box in self.matrix + self.fov:  # three to a row: no +/- buttons
            box.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.native.setMinimumWidth(50)
        for label in (self.summary, self.snr_note):
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding,  # the column's width
                                       QSizePolicy.Policy.Preferred)
            label.native.setWordWrap(True)
            label.native.setTextFormat(Qt.TextFormat.RichText)
        self.reference = None
        self.memory_problem = None
        self.preset.changed.connect(self._apply_preset)
        self.specimen.changed.connect(self._specimen_changed)
        self.b_value.visible = False  # shown with diffusion directions
        self.directions.changed.connect(lambda n: setattr(self.b_value, "visible", n > 0))
        for widget in self._protocol_widgets():
            widget.changed.connect(self.update_summary)
        self.viewer.layers.events.inserted.connect(self.pd_layer.reset_choices)
        self.viewer.layers.events.removed.connect(self.pd_layer.reset_choices)
        self._apply_preset(self.preset.value)
        self.insert(len(self) - 2, restore_defaults_button(self, after=self.update_summary))

    def _protocol_widgets(self):
        return [self.b0, self.nucleus, self.sequence, self.te, self.tr, self.flip,
                *self.matrix, *self.fov, self.bandwidth, self.averages, self.sample_t,
                self.coil_t, self.readout, self.max_gradient, self.specimen,
                self.directions, self.b_value]

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
            self.run_button.enabled = False
            self.run_button.tooltip = str(error)
            return
        needed, available = self.memory_needed(acq), available_memory_bytes()
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
            *([("diffusion series", f"{self.directions.value + 1} images, "
                                    f"{format_duration(s['scan_time_s'] * (self.directions.value + 1))} (h:mm)")]
              if self.directions.value else []),
            ("memory (simulation)", f"{needed / GIB:.2f} of {available / GIB:.1f} GiB"),
        ]
        table = "".join(f"<tr><td>{k}</td><td align='right'><b>{v}</b></td></tr>"
                        for k, v in rows)
        warnings = "".join(f"<p style='color:#e5c07b'>⚠ {w}</p>" for w in s["warnings"])
        self.memory_problem = None
        if needed > available:
            self.memory_problem = (
                f"Simulate is off: this simulation needs about {needed / GIB:.1f} GiB but "
                f"{available / GIB:.1f} GiB of memory is free; use a smaller matrix")
            warnings += f"<p style='color:#e06c75'><b>⛔ {self.memory_problem}.</b></p>"
        self.summary.value = f"<table width='100%'>{table}</table>{warnings}"
        self.last_summary = s
        if self.worker is None:
            self.run_button.enabled = self.memory_problem is None
        self.run_button.tooltip = self.memory_problem or (
            "Simulate this protocol in the background: k-space, magnitude, phase and "
            "(optionally) ground-truth layers are added.")

    @staticmethod
    def memory_needed(acq: Acquisition) -> int:
        """Bytes the dock's simulation needs: the specimen on the grid FINE× finer than
        the matrix, through :func:`~napari_mrmicro.core.simulate.simulation_memory_bytes`,
        plus the specimen itself (labels and density)."""
        fine = tuple(FINE * n for n in acq.matrix)
        return simulation_memory_bytes(fine, acq, (FINE,) * 3) + int(np.prod(fine)) * 5

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
                geometry = layer_geometry(self.pd_layer.value)  # its own size, when known
                pd_image = (pd_image, geometry.spacing_um if geometry.calibrated else None)
            device = backend.check_device(self.device.value)
            scheme = None
            if self.directions.value:
                if len(acq.te_ms) > 1:
                    raise ValueError("diffusion directions: a diffusion series has one TE")
                if self.directions.value < 6:
                    raise ValueError("diffusion directions: 0, or 6 or more for a tensor")
                scheme = diffusion_scheme(self.directions.value, self.b_value.value)
        except (ValueError, RuntimeError) as error:
            show_error(f"MR Simulation: {error}")
            return None
        if self.memory_problem is not None:
            show_error(f"MR Simulation: {self.memory_problem}")
            return None
        specimen, polarization = self.specimen.value, self.polarization.value / 100.0
        worker = progress_worker(on_device(device, lambda report: _simulate(
            specimen, acq, effects, pd_image, polarization, report, scheme)), "MR simulation")
        return self.start_job(worker, "MR Simulation",
                              lambda result: self._add_results(result, device))

    def _finished(self):
        super()._finished()
        self.update_summary()  # Simulate stays off for a protocol beyond the free memory

    def _add_results(self, result, device):
        kspace, specimen, tissues, series = result
        name = result_name(specimen, kspace.acquisition) + device_suffix(device)
        layers = kspace_layers(kspace, name, truth=self.truth.value)
        if series is not None:
            images, b = series
            acq = {**kspace.acquisition.to_dict(), "b_matrix_s_per_mm2": b.tolist()}
            acq["extra"] = {k: v for k, v in acq.get("extra", {}).items()
                            if k != "diffusion_b_matrix_s_per_mm2"}
            layers += volume_to_layer_data(Volume(
                images, kspace.acquisition.voxel_um, {"acquisition": acq, "source": name},
                origin_um=tuple(kspace.truth.get("origin_um", (0.0, 0.0, 0.0))),
                axis_labels=("diffusion", "z", "y", "x"),
                name=f"{name} DWI {len(b) - 1} directions b {np.trace(b[-1]):g}"))
        for layer in add_layers(self.viewer, layers):
            layer.metadata["mrmicro"]["device"] = device
            if isinstance(layer, Labels):  # the truth labels: tissue names on hover
                layer.metadata["mrmicro"]["tissues"] = dict(enumerate(tissues))
                layer.features = tissue_features(layer.metadata["mrmicro"])
        self.status.value = f"{name}: noise σ = {kspace.truth['sigma']:.4g}"
        show_info(f"MR Simulation: {name} done, noise σ = {kspace.truth['sigma']:.4g}")


def result_name(specimen: str, acq: Acquisition) -> str:
    """A simulation's layer name: specimen, field, sequence, voxel and echoes, e.g.
    ``cochlea 9.4 T GRE 50 µm 3 echoes``."""
    voxel = acq.voxel_um
    size = f"{voxel[0]:.3g}" if max(voxel) - min(voxel) < 1e-6 * max(voxel) else \
        "×".join(f"{v:.3g}" for v in voxel)
    echoes = f" {len(acq.te_ms)} echoes" if len(acq.te_ms) > 1 else ""
    return (f"{specimen} {acq.b0_tesla:g} T {acq.nucleus + ' ' if acq.nucleus != '1H' else ''}"
            f"{SEQUENCES.get(acq.sequence, acq.sequence)} {size} µm{echoes}")


def _simulate(specimen_name, acq, effects, pd_image, polarization, report, scheme=None):
    """The dock's job: build the specimen on a 2× finer grid and simulate; with a
    diffusion ``scheme`` (b-matrices) also the diffusion-prepared series, returned as its
    magnitudes and b-matrices (else None) after the plain scan's k-space."""
    from dataclasses import replace

    from napari_mrmicro.core.recon import reconstruct
    from napari_mrmicro.core.simulate import Effects, simulate
    from napari_mrmicro.core.specimens import make_specimen, specimen_from_image

    fine = tuple(FINE * n for n in acq.matrix)
    spacing = tuple(v / FINE for v in acq.voxel_um)
    report(0.0, "building specimen")
    if pd_image is not None:
        image, image_spacing = pd_image
        specimen = specimen_from_image(image, fine, spacing, image_spacing_um=image_spacing)
    else:
        specimen = make_specimen(specimen_name, fine, spacing)
    runs = 1 + (0 if scheme is None else len(scheme))
    kspace = simulate(specimen, acq, seed=0, effects=Effects(**effects),
                      polarization=polarization, progress=lambda stage, fraction: report(
                          0.05 + 0.95 * fraction / runs, stage))
    series = None
    if scheme is not None:
        images = np.empty((len(scheme),) + acq.matrix, np.float32)
        for index, b in enumerate(scheme, start=1):
            prepared = replace(acq, extra={**acq.extra,
                                           "diffusion_b_matrix_s_per_mm2": b.tolist()})
            done = simulate(specimen, prepared, seed=index, effects=Effects(**effects),
                            polarization=polarization, progress=lambda stage, fraction,
                            i=index: report(0.05 + 0.95 * (i + fraction) / runs,
                                            f"diffusion {i}/{runs - 1}"))
            images[index - 1] = np.abs(reconstruct(done)[0])
        series = (images, scheme)
    return kspace, specimen.name if pd_image is None else "image", specimen.tissue_names, \
        series
