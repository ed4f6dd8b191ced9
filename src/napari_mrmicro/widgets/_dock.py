"""What every dock shares: a scroll area that fits a laptop screen, layer pickers that know
a layer's role, the device a job runs on, starting and cancelling a job, and "restore
defaults".

napari docks a magicgui widget by its ``native`` QWidget, so magicgui's own
``scrollable=True`` (which puts the scroll area *around* ``native``) is lost on docking.
The manifest therefore registers the classes at the bottom of this module: each builds
its dock inside a :class:`ScrollingDock`, a QScrollArea around it.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from magicgui.widgets.bases import ValueWidget
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QScrollArea,
                            QSizePolicy, QVBoxLayout, QWidget)

from napari_mrmicro.core import backend
from napari_mrmicro.io import kspace_codec

#: Tallest a dock asks to be (px): two docks stacked still fit a 900 px screen.
MAX_HINT_HEIGHT = 420
#: Characters a drop-down keeps visible before it elides: long layer names and presets
#: would otherwise widen the whole dock (the list that opens shows them in full).
COMBO_CHARACTERS = 14

ROLES = ("k-space", "magnitude", "phase", "field map", "susceptibility", "relaxation map",
         "labels", "optical")
#: The role of a simulation's ground-truth layer (``metadata["mrmicro"]["truth"]``).
TRUTH_ROLES = {"proton_density": "magnitude", "chi_ppm": "susceptibility",
               "field_ppm": "field map"}


class ScrollingDock(QScrollArea):
    """A QScrollArea around a magicgui dock: scrolls vertically, never horizontally."""

    def __init__(self, dock: Container):
        super().__init__()
        self.dock = dock
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(dock.native)
        self.setObjectName(type(dock).__name__)
        for combo in dock.native.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(COMBO_CHARACTERS)
        self._fit_widths()

    def _fit_widths(self) -> None:
        """Minimum widths from the fonts in use: drop-downs as wide as
        :data:`COMBO_CHARACTERS` (not their longest item), and each column of row labels as
        wide as its longest label. Run again when shown, once napari's style sheet has set
        the fonts: magicgui sizes the labels with the unstyled font, which cuts the longest
        ones short in a narrow dock."""
        for combo in self.widget().findChildren(QComboBox):
            # an explicit minimum: the layout would take the hint Qt cached from the items
            combo.setMinimumWidth(combo.sizeHint().width())
        for column in [self.widget(), *self.widget().findChildren(QWidget)]:
            labels = _row_labels(column)
            if labels:
                widest = max(label.fontMetrics().horizontalAdvance(label.text())
                             for label in labels)
                for label in labels:
                    label.setMinimumWidth(widest + 4)
        self.updateGeometry()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._fit_widths()
        super().showEvent(event)

    def _width(self) -> int:
        """As wide as the dock's contents need: they never scroll sideways."""
        return (self.widget().minimumSizeHint().width()
                + self.verticalScrollBar().sizeHint().width() + 2)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        """As narrow as the rows allow (wrapped notes and summaries take that width), so a
        laptop screen keeps most of its width for the canvas."""
        inner = self.widget().sizeHint()
        return QSize(self._width(), min(inner.height(), MAX_HINT_HEIGHT))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(self._width(), 60)  # nine docks stacked fit a 900 px screen

    def reset_choices(self, *_):
        """napari calls this on layer changes: the dock's pickers refresh."""
        self.dock.reset_choices()


def _row_labels(column: QWidget) -> list:
    """The labels of a magicgui column's rows (each row: a label, then its input)."""
    if not isinstance(column.layout(), QVBoxLayout):
        return []
    labels = []
    for row in column.children():
        if isinstance(row, QWidget) and isinstance(row.layout(), QHBoxLayout):
            first = row.layout().itemAt(0)
            label = first.widget() if first is not None else None
            if isinstance(label, QLabel) and not label.wordWrap():
                labels.append(label)
    return labels


# -- layer roles ------------------------------------------------------------------------------


def layer_role(layer) -> str | None:
    """What a layer is to the docks: one of :data:`ROLES`, or None when it does not say.

    From ``metadata["mrmicro"]``: an explicit ``role``; complex ``kspace`` data; the value
    unit (rad: phase; Hz: field map; ppm: field map, or susceptibility when the layer
    holds χ; ms: a T2 or T2* map); a TIFF without an MR acquisition is optical; a simulation's ground truth by
    :data:`TRUTH_ROLES`; any other layer with an MR acquisition is a magnitude image. Labels layers are labels.
    """
    if isinstance(layer, Labels):
        return "labels"
    if not isinstance(layer, Image):
        return None
    meta = (layer.metadata or {}).get("mrmicro") or {}
    if meta.get("role") in ROLES:
        return meta["role"]
    if kspace_codec.is_kspace(meta):
        return "k-space"
    unit = meta.get("value_unit")
    if unit == "rad":
        return "phase"
    if unit == "ms":
        return "relaxation map"
    if unit == "Hz":
        return "field map"
    if unit == "ppm":
        chi = meta.get("truth") == "chi_ppm" or "susceptib" in layer.name.lower() \
            or "χ" in layer.name
        return "susceptibility" if chi else "field map"
    if meta.get("format") in ("tiff", "ome-tiff") and not meta.get("acquisition"):
        return "optical"
    if meta.get("truth") in TRUTH_ROLES:
        return TRUTH_ROLES[meta["truth"]]
    if meta.get("acquisition"):
        return "magnitude"
    return None


def layers_with_role(viewer, roles, kind=Image, exclude=(), where=None) -> list:
    """Layers of ``kind`` whose role is one of ``roles`` first (in the order of ``roles``),
    then those without a role; layers with another role, those in ``exclude`` and those
    ``where(layer)`` refuses are left out."""
    ranked, unknown = {role: [] for role in roles}, []
    for layer in viewer.layers:
        if not isinstance(layer, kind) or any(layer is other for other in exclude) \
                or (where is not None and not where(layer)):
            continue
        role = layer_role(layer)
        if role in ranked:
            ranked[role].append(layer)
        elif role is None:
            unknown.append(layer)
    return [layer for role in roles for layer in ranked[role]] + unknown


def layer_picker(viewer, label: str, roles, kind=Image, others=(), tooltip: str = "",
                 nullable: bool = False, where=None) -> ComboBox:
    """A ComboBox of the viewer's layers of the given roles (see :func:`layers_with_role`)
    that never offers the layer chosen in one of the ``others`` pickers (callables that
    return those pickers, so pickers can name each other)."""
    def choices(_widget=None):
        taken = [picker().value for picker in others if picker() is not None]
        return layers_with_role(viewer, roles, kind, [t for t in taken if t is not None],
                                where)

    return ComboBox(label=label, choices=choices, tooltip=tooltip, nullable=nullable)


#: The fit docks' default mask: the voxels with signal, found by the fit itself.
SIGNAL_MASK = "signal"


def mask_picker(viewer, tooltip: str) -> ComboBox:
    """A fit dock's "mask" choice: :data:`SIGNAL_MASK` or a Labels layer."""
    return ComboBox(label="mask", tooltip=tooltip, choices=lambda _widget=None: [
        SIGNAL_MASK] + layers_with_role(viewer, ("labels",), kind=Labels))


def chosen_mask(picker: ComboBox, shape: tuple, what: str):
    """The non-zero voxels of the Labels layer chosen in ``picker`` (None for the fit's
    own mask); ValueError unless they lie on the grid ``shape`` of ``what``."""
    if not isinstance(picker.value, Labels):
        return None
    mask = np.asarray(picker.value.data) != 0
    if mask.shape != tuple(shape):
        raise ValueError(f"the mask layer {mask.shape} does not match {what} {tuple(shape)}")
    return mask


def numbers_field(text: str, name: str, count: int | None = None) -> tuple:
    """The numbers of a comma-separated text field (``count`` of them when given);
    ValueError names the field."""
    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a list of numbers") from None
    if not values or (count is not None and len(values) != count):
        raise ValueError(f"{name}: expected {count or 'at least one'} number(s), got {text!r}")
    return values


def exclusive(*pickers: ComboBox) -> None:
    """Keep pickers that exclude each other's choice in step: a change in one refreshes
    the others' lists."""
    for picker in pickers:
        for other in pickers:
            if other is not picker:
                picker.changed.connect(lambda *_, o=other: o.reset_choices())


# -- the device a job runs on ----------------------------------------------------------------

#: The docks' "device" choices: (shown text, :mod:`~napari_mrmicro.core.backend` device).
DEVICE_CHOICES = (("CPU", "cpu"), ("GPU (CUDA)", "gpu"))
NO_GPU = "no CUDA device found: install napari-mrmicro[gpu] on a machine with an NVIDIA GPU"


class JobDock:
    """Run and Cancel of a dock with ``run_button``, ``cancel_button`` and, when it has
    one, ``status`` (a Label: "running…", "cancelled", or what the job found): one job at
    a time, its errors shown as ``"<title>: <error>"``."""

    worker = None
    status = None
    _job_button = None

    def job_controls(self, run_text: str, status_label: str = "") -> list:
        """The Run and Cancel buttons (in one row) and the status line (a sentence that
        wraps, headed ``status_label``), connected to :meth:`run` and :meth:`cancel`."""
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(
            text="Cancel", enabled=False,
            tooltip="Stop the running job within a second; it adds no layer.")
        self.status = Label(label=status_label)
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding,
                                         QSizePolicy.Policy.Preferred)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        return [Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                          labels=False), self.status]

    def checked_request(self, title: str):
        """The dock's ``request()``, or None after showing its ValueError headed ``title``
        (a field that does not hold what the job needs)."""
        try:
            return self.request()
        except ValueError as error:
            show_error(f"{title}: {error}")
            return None

    def start_job(self, worker, title: str, on_result=None, running: str = "running…",
                  button=None):
        """Connect ``worker`` (:func:`~._worker.progress_worker`) to ``on_result`` (when
        given) and the buttons, start it and return it. ``button`` (default
        ``run_button``) stays off while the job runs."""
        if on_result is not None:
            worker.returned.connect(on_result)
        worker.errored.connect(lambda e: show_error(f"{title}: {e}"))
        worker.finished.connect(self._finished)
        self._job_button = button or self.run_button
        self._job_button.enabled, self.cancel_button.enabled = False, True
        if self.status is not None:
            self.status.value = running  # never the last run's result
        self.worker = worker
        worker.start()
        return worker

    def cancel(self, *_):
        """Stop the job at its next progress report (stage, iteration or slab)."""
        if self.worker is not None:
            self.worker.quit()
            if self.status is not None:
                self.status.value = "cancelled"

    def _finished(self):
        self.worker = None
        self._job_button.enabled, self.cancel_button.enabled = True, False


def device_picker(on_gpu: str) -> ComboBox:
    """A "device" choice, CPU (the default) or GPU (CUDA); ``on_gpu`` says which of the
    dock's steps run on the GPU. Without CuPy or a CUDA device
    (:func:`~napari_mrmicro.core.backend.gpu_available`) the GPU entry is greyed out and
    cannot be picked, and the tooltip says why."""
    picker = ComboBox(label="device", choices=DEVICE_CHOICES, value="cpu")
    tip = (f"Where the job runs: CPU (all cores) or GPU (CUDA, through CuPy), where "
           f"{on_gpu}. Results come back as ordinary layers; their metadata "
           "(mrmicro → device) and a GPU result's name say where they were computed.")
    try:
        backend.check_device("gpu")
    except RuntimeError as error:
        cause = str(error).removeprefix("device 'gpu' is not available: ")
        reason = f"GPU (CUDA) is off here: {NO_GPU}. Cause: {cause}."
        item = picker.native.model().item(picker.native.findData("gpu"))
        item.setEnabled(False)
        item.setToolTip(reason)
        tip += f"\n\n{reason}"
    picker.tooltip = tip
    return picker


def on_device(device: str, job):
    """``job(report)`` run with ``device`` as the default of every core call inside it
    (:func:`~napari_mrmicro.core.backend.use_device`). The default is a context variable,
    which a new thread does not inherit, so it is set here, in the thread that runs the
    job (:func:`~napari_mrmicro.widgets._worker.progress_worker` starts one per job)."""
    def run(report):
        with backend.use_device(device):
            return job(report)
    return run


def device_suffix(device: str) -> str:
    """What a result's layer name adds for ``device``: " GPU" for the GPU, else nothing."""
    return " GPU" if device == "gpu" else ""


# -- restore defaults -------------------------------------------------------------------------


def _value_widgets(container: Container):
    """The settings of a dock: its value widgets less layer pickers (callable choices: the
    user's) and status lines (Labels: the dock's)."""
    for widget in container:
        if isinstance(widget, Container):
            yield from _value_widgets(widget)
        elif isinstance(widget, ValueWidget) and not isinstance(widget, (PushButton, Label)) \
                and not (isinstance(widget, ComboBox) and callable(widget._default_choices)):
            yield widget


def restore_defaults_button(container: Container, after=None) -> PushButton:
    """A "Restore defaults" button that puts every setting of ``container`` back to the
    value it has now (call this at the end of the dock's constructor); ``after`` runs
    once the values are back (e.g. to redraw a summary)."""
    defaults = [(widget, widget.value) for widget in _value_widgets(container)]

    def restore(*_):
        for widget, value in defaults:
            widget.value = value
        if after is not None:
            after()

    button = PushButton(text="Restore defaults",
                        tooltip="Put every setting of this dock back to its default value "
                                "(layer choices are kept).")
    button.changed.connect(restore)
    return button


# -- the docks napari registers (napari.yaml) -------------------------------------------------


def _registered(module: str, cls: str, title: str) -> type:
    """A ScrollingDock class napari can build from the manifest (napari hands the viewer
    to a class whose ``__init__`` takes ``napari_viewer``)."""
    def __init__(self, napari_viewer):
        import importlib

        widget = getattr(importlib.import_module(f"napari_mrmicro.widgets.{module}"), cls)
        ScrollingDock.__init__(self, widget(napari_viewer))

    return type(f"{cls}Dock", (ScrollingDock,), {
        "__init__": __init__, "__module__": __name__,
        "__doc__": f"The {title!r} dock in a scroll area."})


simulation_dock = _registered("simulation", "SimulationWidget", "MR Simulation")
reconstruction_dock = _registered("reconstruction", "ReconstructionWidget", "MR Reconstruction")
qsm_dock = _registered("qsm", "QSMWidget", "QSM")
relaxometry_dock = _registered("relaxometry", "RelaxometryWidget", "Relaxometry")
t1_mapping_dock = _registered("t1_mapping", "T1MappingWidget", "T1 mapping")
diffusion_dock = _registered("diffusion", "DiffusionWidget", "Diffusion tensor")
morphometry_dock = _registered("morphometry", "MorphometryWidget", "Morphometry")
register_dock = _registered("register", "RegisterWidget", "Register")
particles_dock = _registered("particles", "ParticlesWidget", "Dual-mode particles")
