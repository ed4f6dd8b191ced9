"""Dock "Dual-mode particles": the same particles (e.g. microdiamonds) in MR and optical
images — detection in each, optional point-set registration, one-to-one matching — shown as
Points and Vectors layers in world µm, with a summary (matched fraction, mean offset,
scatter and each mode's localisation precision)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractSpinBox, QLabel

from napari_mrmicro.core.particles import (
    _particle_sigma,
    detect_particles,
    localisation_precision_um,
    match_particles,
    particle_affine,
)
from napari_mrmicro.core.transforms import apply_affine
from napari_mrmicro.widgets._dock import (JobDock, exclusive, layer_picker,
                                          restore_defaults_button)
from napari_mrmicro.widgets._worker import progress_worker
from napari_mrmicro.widgets.register import gray_data, origin_um, spacing_um, world_affine_um

UM = "µm"
REGISTER = ("off", "rigid", "similarity", "affine")
NAMES = {"mr": "MR particles", "optical": "optical particles", "offsets": "particle offsets"}


def result_names(mr_diameter_um, optical_diameter_um, register, gate_um) -> dict:
    """Layer names with the method and its key settings, e.g. ``MR particles (LoG ⌀100
    µm)`` and ``particle offsets (rigid ICP, gate 100 µm)``."""
    fit = "" if register == "off" else f"{register} ICP, "
    return {"mr": f"{NAMES['mr']} (LoG ⌀{mr_diameter_um:g} µm)",
            "optical": f"{NAMES['optical']} (LoG ⌀{optical_diameter_um:g} µm)",
            "offsets": f"{NAMES['offsets']} ({fit}gate {gate_um:g} µm)"}

#: What each input means, its unit and range, and where the method comes from.
TIPS = {
    "mr_layer": "MR image showing the particles (e.g. ¹³C magnitude of hyperpolarized "
                "microdiamonds). Magnitude images are offered; k-space, phase and optical "
                "layers, and the optical layer chosen below, are not.",
    "optical_layer": "Optical image of the same particles (fluorescence stack, µm or nm). "
                     "Optical layers are offered first; never the MR layer chosen above.",
    "diameter": "Apparent spot diameter in µm (> 0): particle size convolved with the "
                "imaging PSF. Sets the scale of the Laplacian-of-Gaussian detector, σ = d / "
                "(2√ndim) (Lindeberg, Int J Comput Vis 1998;30:79).",
    "threshold": "Minimum normalised LoG response, in image units (≥ 0). 'auto' (0): 5 "
                 "robust standard deviations (1.4826 × MAD) above the median response.",
    "separation": "Minimum distance between two detections in µm (≥ 0): a peak is kept only "
                  "if it is the largest within ± this distance. 'auto' (0): the spot radius; "
                  "raise it above the Gibbs ringing distance in unapodized MR images.",
    "max_distance": "Gate in µm (> 0): an MR and an optical particle further apart are never "
                    "paired. One-to-one matching by the Hungarian algorithm (Kuhn, Nav Res "
                    "Logist Q 1955;2:83).",
    "register": "Fit the optical set onto the MR set before matching: iterative closest "
                "point (Besl & McKay, IEEE PAMI 1992;14:239) with a rigid, similarity (with "
                "scale) or affine model; 'off' matches the sets where they are.",
}


def _auto_box(label, value, tip, maximum=1e6, step=10.0):
    """A spin box whose 0 reads "auto" (the core default)."""
    box = FloatSpinBox(label=label, min=0.0, max=maximum, step=step, value=value,
                       tooltip=TIPS[tip])
    box.native.setSpecialValueText("auto")
    box.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
    box.native.setMinimumWidth(60)
    return box


def _vector(values) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in values) + ")"


def detect_in_layer(layer, diameter_um, threshold, min_distance_um):
    """Particle centres of an image layer in world µm, with its precision bounds (µm) per
    axis and the image, spacing and array-frame centres they came from."""
    image, spacing = gray_data(layer), spacing_um(layer)
    array_um = detect_particles(image, spacing, diameter_um, threshold=threshold or None,
                                min_distance_um=min_distance_um or None)
    sigma = _particle_sigma(image.ndim, diameter_um, None)
    precision = (localisation_precision_um(image, spacing, array_um, sigma) if len(array_um)
                 else np.empty((0, image.ndim)))
    world = apply_affine(world_affine_um(layer), array_um + origin_um(layer))
    return world, precision


class ParticlesWidget(Container, JobDock):
    """Detect & match particles seen in two modes (MR and optical).

    Detection: scale-normalised LoG (Lindeberg 1998) per layer, in µm; precision: the
    Cramér–Rao bound (Thompson et al. 2002); registration of the two sets: iterative
    closest point (Besl & McKay 1992) when asked; matching: gated Hungarian assignment.
    Offsets are MR → optical, in world µm (after the registration, when one is run).
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.mr_layer = layer_picker(self.viewer, "MR layer", ("magnitude",),
                                     others=(lambda: getattr(self, "optical_layer", None),),
                                     tooltip=TIPS["mr_layer"])
        self.optical_layer = layer_picker(self.viewer, "optical layer", ("optical",),
                                          others=(lambda: getattr(self, "mr_layer", None),),
                                          tooltip=TIPS["optical_layer"])
        exclusive(self.mr_layer, self.optical_layer)
        self.mr_diameter = _auto_box("", 100.0, "diameter")
        self.mr_threshold = _auto_box("", 0.0, "threshold", step=0.01)
        self.mr_separation = _auto_box("", 0.0, "separation")
        self.opt_diameter = _auto_box("", 50.0, "diameter")
        self.opt_threshold = _auto_box("", 0.0, "threshold", step=0.01)
        self.opt_separation = _auto_box("", 0.0, "separation")
        self.max_distance = FloatSpinBox(label="max match distance (µm)", min=0.001,
                                         max=1e6, step=10.0, value=100.0,
                                         tooltip=TIPS["max_distance"])
        self.register = ComboBox(label="register sets", choices=REGISTER, value="off",
                                 tooltip=TIPS["register"])
        self.summary = QLabel()
        row = lambda label, *widgets: Container(  # noqa: E731
            widgets=widgets, layout="horizontal", labels=False, label=label)
        header = [Label(value=text) for text in ("⌀ (µm)", "threshold", "min sep. (µm)")]
        super().__init__(widgets=[
            self.mr_layer, self.optical_layer, row("", *header),
            row("MR", self.mr_diameter, self.mr_threshold, self.mr_separation),
            row("optical", self.opt_diameter, self.opt_threshold, self.opt_separation),
            self.max_distance, self.register])
        self.extend([restore_defaults_button(self), *self.job_controls("Detect && match")])
        for label in header:
            label.native.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.native.layout().addWidget(self.summary)
        self.native.layout().addStretch()
        self.result = None
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)

    def run(self, *_):
        """Detect in both layers, register (if asked) and match, in a worker."""
        mr, optical = self.mr_layer.value, self.optical_layer.value
        if mr is None or optical is None or mr is optical:
            show_error("Dual-mode particles: choose two different layers (MR and optical)")
            return None
        if mr.ndim != optical.ndim or mr.ndim not in (2, 3):
            show_error(f"Dual-mode particles: {mr.name!r} is {mr.ndim}-D and "
                       f"{optical.name!r} {optical.ndim}-D; both must be 2-D or both 3-D")
            return None
        params = {
            "mr": (mr, self.mr_diameter.value, self.mr_threshold.value,
                   self.mr_separation.value),
            "optical": (optical, self.opt_diameter.value, self.opt_threshold.value,
                        self.opt_separation.value)}
        for mode, (_, diameter, _, _) in params.items():
            if diameter <= 0:
                show_error(f"Dual-mode particles: give the {mode} spot diameter (µm)")
                return None
        gate, kind = self.max_distance.value, self.register.value

        def job(report):
            found = {}
            for fraction, mode in ((0.0, "mr"), (0.4, "optical")):
                report(fraction, f"detecting ({mode})")
                found[mode] = detect_in_layer(*params[mode])
            report(0.8, "matching")
            mr_um, opt_um = found["mr"][0], found["optical"][0]
            fit, mapped = None, opt_um
            if kind != "off":
                fit, _ = particle_affine(opt_um, mr_um, gate, kind)
                mapped = apply_affine(fit.affine, opt_um)
            match = match_particles(mr_um, mapped, gate)
            report(1.0)
            return {"mr_um": mr_um, "optical_um": opt_um, "fit": fit, "match": match,
                    "precision_um": {m: f[1] for m, f in found.items()},
                    "names": result_names(params["mr"][1], params["optical"][1], kind, gate)}

        return self.start_job(progress_worker(job, "Dual-mode particles"),
                              "Dual-mode particles", self._show)

    def _replace(self, key, name, add, data, metadata=None, **kwargs):
        """Add a result layer, removing the one an earlier run made for ``key``."""
        for layer in list(self.viewer.layers):
            if ((layer.metadata or {}).get("mrmicro") or {}).get("particles") == key:
                self.viewer.layers.remove(layer)
        meta = {"mrmicro": {**((metadata or {}).get("mrmicro") or {}), "particles": key}}
        return add(data, name=name, units=UM, metadata=meta, **kwargs)

    def _show(self, result):
        self.result = result
        match, ndim, names = result["match"], result["mr_um"].shape[1], result["names"]
        size = float(self.max_distance.value) / 2
        features = {}
        for mode in ("mr", "optical"):
            paired = np.zeros(len(result[f"{mode}_um"]), bool)
            paired[match.pairs[:, 0 if mode == "mr" else 1]] = True
            bound = result["precision_um"][mode].reshape(-1, ndim)
            features[mode] = {"matched": paired, **{
                f"precision_{axis}_um": bound[:, i]
                for i, axis in enumerate("zyx"[-ndim:])}}
        self._replace("mr", names["mr"], self.viewer.add_points, result["mr_um"], ndim=ndim,
                      size=size, face_color="transparent", border_color="cyan",
                      border_width=0.15, features=features["mr"])
        fit = result["fit"]
        # Registered: the optical particles are drawn where the fit maps them (their data
        # stay where the optical image has them), so the offsets end on them.
        self._replace("optical", names["optical"], self.viewer.add_points,
                      result["optical_um"], ndim=ndim, size=size * 0.6, face_color="magenta",
                      border_color="magenta", features=features["optical"],
                      affine=np.eye(ndim + 1) if fit is None else fit.affine,
                      metadata={"mrmicro": {"registered": fit is not None}})
        starts = result["mr_um"][match.pairs[:, 0]] if len(match.pairs) else \
            np.empty((0, ndim))
        vectors = np.stack([starts, match.offsets_um], axis=1) if len(starts) else \
            np.empty((0, 2, ndim))
        self._replace("offsets", names["offsets"], self.viewer.add_vectors, vectors, ndim=ndim,
                      edge_color="yellow", edge_width=size / 8, vector_style="arrow",
                      features={"distance_um": match.distances_um})
        self.summary.setText(self.summary_text(result))
        self.status.value = f"{len(match.pairs)} pairs matched"
        show_info(f"Dual-mode particles: {len(match.pairs)} pairs matched")

    @staticmethod
    def summary_text(result) -> str:
        """The summary label's rich text (µm, axes z, y, x)."""
        match, fit = result["match"], result["fit"]
        n_mr, n_opt = len(result["mr_um"]), len(result["optical_um"])
        lines = [f"detected: MR {n_mr}, optical {n_opt}",
                 f"matched: {len(match.pairs)} ({100 * match.fraction_a:.0f} % of MR, "
                 f"{100 * match.fraction_b:.0f} % of optical)"]
        if len(match.pairs):
            lines += [f"mean offset MR→optical: {_vector(match.mean_offset_um)} µm",
                      f"scatter (SD): {_vector(match.scatter_um)} µm"]
        for mode, label in (("mr", "MR"), ("optical", "optical")):
            bound = result["precision_um"][mode]
            finite = bound[np.all(np.isfinite(bound), axis=1)]
            if len(finite):
                lines.append(f"precision {label} (median CRB): "
                             f"{_vector(np.median(finite, axis=0))} µm")
        if fit is not None:
            lines.append(f"registered ({len(match.pairs)} pairs): RMS {fit.rms_um:.1f} µm")
        return "<br>".join(lines) + "<br><small>axes (z, y, x)</small>"
