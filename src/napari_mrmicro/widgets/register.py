"""Dock "Register": overlay optical microscopy on MRM in physical space.

Layers keep their own units (an optical layer may be in nm, MRM in µm; napari ≥ 0.7 draws
both in one physical space) and their own ``scale``/``translate``. A registration is a core
matrix ``A`` (moving array frame → fixed array frame, µm, see
:mod:`napari_mrmicro.core.transforms`), shown by setting the moving layer's ``affine``
(no resampling). Landmarks are clicked in two Points layers in world coordinates; the fit
(landmarks, mutual information 3-D ↔ 3-D, or a 2-D section's plane in a 3-D volume) runs in
a worker. A 2-D section in a 3-D scene is *placed* (explicitly, or by the first action that
needs it): it becomes a ``(1, ny, nx)`` layer, one MRM slice thick, whose affine puts it on
its plane, so it is not broadcast across every slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
)
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QFileDialog,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
)

from napari_mrmicro._layers import like
from napari_mrmicro._layers import unit_factors_um as layer_unit_factors_um
from napari_mrmicro.core.landmarks import landmark_affine
from napari_mrmicro.core.register import (affine_scale, mutual_information_affine,
                                          section_plane_affine, section_scale)
from napari_mrmicro.core.reslice import reslice
from napari_mrmicro.core.transforms import apply_affine, translation_affine
from napari_mrmicro.io.transform_files import write_itk_affine, write_transform_json
from napari_mrmicro.widgets._dock import exclusive, layer_picker, restore_defaults_button
from napari_mrmicro.widgets._worker import progress_worker

UM = "µm"
METHODS = {
    "landmarks: rigid": "rigid",
    "landmarks: similarity": "similarity",
    "landmarks: affine": "affine",
    "mutual information (3-D)": "mutual_information",
    "section plane search (2-D in 3-D)": "section_plane",
}
FIXED_POINTS, MOVING_POINTS = "fixed landmarks", "moving landmarks"
ITK_SUFFIXES = (".tfm", ".txt")


# -- layer plumbing: physical space of a layer, in µm ----------------------------------------

def unit_factors_um(layer) -> np.ndarray:
    """µm per layer unit on each axis (:func:`napari_mrmicro._layers.unit_factors_um`: a
    layer without any length unit is taken at 1 µm per unit); every axis must be spatial."""
    factors = layer_unit_factors_um(layer.units)
    if any(f is None for f in factors):
        raise ValueError(f"layer {layer.name!r}: every axis needs a length unit, got "
                         f"{tuple(str(u) for u in layer.units)}")
    return np.asarray(factors, dtype=float)


def _check_plain(layer) -> None:
    if not (np.allclose(layer.rotate, np.eye(layer.ndim)) and np.allclose(layer.shear, 0)):
        raise ValueError(f"layer {layer.name!r} has a rotate/shear; put its pose in 'affine'")


def spacing_um(layer) -> np.ndarray:
    """Voxel size of a layer in µm."""
    return np.asarray(layer.scale, dtype=float) * unit_factors_um(layer)


def origin_um(layer) -> np.ndarray:
    """Position of voxel 0 (the layer's ``translate``) in µm."""
    return np.asarray(layer.translate, dtype=float) * unit_factors_um(layer)


def world_affine_um(layer) -> np.ndarray:
    """The layer's ``affine`` acting on µm: ``F · affine · F⁻¹``, ``F`` its unit factors."""
    _check_plain(layer)
    f = np.append(unit_factors_um(layer), 1.0)
    return (f[:, None] * layer.affine.affine_matrix) / f[None, :]


def layer_affine(world_um, layer) -> np.ndarray:
    """A µm world affine as the matrix to set on ``layer`` (in the layer's units)."""
    f = np.append(unit_factors_um(layer), 1.0)
    return (np.asarray(world_um) / f[:, None]) * f[None, :]


def array_affine_um(moving, fixed) -> np.ndarray:
    """The core matrix ``A`` (moving array frame → fixed array frame, µm) that the two
    layers' current ``affine``, ``translate``, ``scale`` and units express:
    ``A = T(−t_f) · W_f⁻¹ · W_m · T(t_m)``."""
    _same_ndim(moving, fixed)
    return (translation_affine(-origin_um(fixed)) @ np.linalg.inv(world_affine_um(fixed))
            @ world_affine_um(moving) @ translation_affine(origin_um(moving)))


def moving_world_affine_um(affine_um, moving, fixed) -> np.ndarray:
    """The moving layer's µm world affine that shows core matrix ``A`` over the fixed layer:
    ``W_m = W_f · T(t_f) · A · T(−t_m)``."""
    return (world_affine_um(fixed) @ translation_affine(origin_um(fixed)) @ affine_um
            @ translation_affine(-origin_um(moving)))


def points_world_um(points) -> np.ndarray:
    """A Points layer's coordinates in world µm, ``(N, ndim)``."""
    physical = (np.asarray(points.data, dtype=float) * np.asarray(points.scale)
                + np.asarray(points.translate))
    return apply_affine(world_affine_um(points), physical * unit_factors_um(points))


def world_to_array_um(world_um, layer) -> np.ndarray:
    """World µm points → the layer's array frame (``index × spacing_um``)."""
    return (apply_affine(np.linalg.inv(world_affine_um(layer)), world_um)
            - origin_um(layer))


def gray_data(layer) -> np.ndarray:
    """The layer's full-resolution data as a real array (RGB → mean of the channels)."""
    data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    if layer.rgb:
        data = data[..., :3].mean(axis=-1)
    if np.iscomplexobj(data):
        raise ValueError(f"layer {layer.name!r} is complex; use its magnitude layer")
    return data


def is_placed_section(layer) -> bool:
    """A 2-D section held as a ``(1, ny, nx)`` layer (see ``place_section``)."""
    return layer.ndim == 3 and layer.data.shape[0] == 1 and "section" in \
        layer.metadata.get("mrmicro", {})


def _same_ndim(moving, fixed):
    if moving.ndim != fixed.ndim:
        raise ValueError(f"moving layer {moving.name!r} is {moving.ndim}-D, fixed "
                         f"{fixed.name!r} {fixed.ndim}-D: place a 2-D section on its plane "
                         "first")
    if fixed.ndim not in (2, 3):
        raise ValueError(f"layers must be 2-D or 3-D (one echo, one channel), got "
                         f"{fixed.ndim}-D {fixed.name!r}")


def _normalised(image) -> np.ndarray:
    """Image scaled so its 1st–99th percentiles span 0–1 (for side-by-side display)."""
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1).astype(np.float32)


def checkerboard(a, b, spacing, square_um) -> np.ndarray:
    """``a`` on the even squares, ``b`` on the odd ones of a ``square_um`` checkerboard laid
    on a grid of ``spacing`` (µm per axis)."""
    index = np.indices(a.shape, sparse=True)
    parity = sum((i * s // square_um).astype(int) for i, s in zip(index, spacing)) % 2
    return np.where(parity == 0, a, b).astype(np.float32)


def _shown(action):
    """A button handler running ``action`` and showing a ValueError as a napari error."""
    def handler(*_):
        try:
            return action()
        except ValueError as error:
            show_error(f"Register: {error}")
            return None
    return handler


def _table(headers) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.setMaximumHeight(130)
    return table


class RegisterWidget(Container):
    """Register a moving (optical) layer onto a fixed (MRM) layer in physical space.

    Landmark fits (rigid, similarity, affine; Umeyama 1991) or rigid Mattes
    mutual-information refinement (3-D ↔ 3-D, or the plane of a 2-D section in the
    volume) set the moving layer's ``affine``; "Undo" walks back. Views: additive
    green/magenta blend and a checkerboard at the fixed grid. Export as JSON or ITK.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.fixed = layer_picker(
            self.viewer, "fixed (MRM)", ("magnitude", "susceptibility", "field map"),
            others=(lambda: getattr(self, "moving", None),),
            tooltip="Reference volume that stays where it is (usually the MR microscopy "
                    "scan, world µm; a χ or field map too, e.g. for iron histology); MR "
                    "images are offered first, never the moving layer.")
        self.moving = layer_picker(
            self.viewer, "moving (optical)",
            ("optical", "magnitude", "susceptibility", "field map"),
            others=(lambda: self.fixed,),
            tooltip="Volume or 2-D section mapped onto the fixed one (e.g. optical "
                    "microscopy; any length unit); optical layers are offered first, never "
                    "the fixed layer.")
        exclusive(self.fixed, self.moving)
        self.section_z = FloatSpinBox(min=-1e9, max=1e9, step=10.0,
                                      tooltip="Where a 2-D section sits along the fixed "
                                              "volume's z axis, in µm.")
        self.place_button = PushButton(text="Place section on its plane")
        self.landmarks_button = PushButton(text="Add landmark layers")
        self.fixed_points = ComboBox(label="fixed points", choices=self._points_layers,
                                     tooltip="Points layer of landmarks on the fixed volume, "
                                             "paired with the moving points in order.")
        self.moving_points = ComboBox(label="moving points", choices=self._points_layers,
                                      tooltip="Points layer of the same landmarks on the "
                                              "moving volume, in the same order.")
        self.method = ComboBox(label="method", choices=list(METHODS),
                               value="landmarks: similarity",
                               tooltip="Landmarks: least-squares rigid / similarity (with "
                                       "scale) / affine fit (Umeyama, IEEE PAMI 1991;13:376); "
                                       "needs at least 4 point pairs in 3-D (3 in 2-D), not "
                                       "collinear (not coplanar for affine). Mutual "
                                       "information: rigid 3-D intensity registration "
                                       "(Viola & Wells, IJCV 1997;24:137). Section plane "
                                       "search: finds a 2-D section's plane in the 3-D scan.")
        self.reach = FloatSpinBox(min=0.0, max=1e6, step=50.0, value=0.0,
                                  tooltip="Section plane search: how far off within its "
                                          "plane (µm, each in-plane axis) the section's "
                                          "placement may be. 0 searches the depth and "
                                          "every in-plane angle; a reach also tries offsets "
                                          "in steps of the coarsest level's voxel, at a cost "
                                          "growing with its square.")
        self.mirror = CheckBox(text="may be mirrored",
                               tooltip="Section plane search: the section may lie face down "
                                       "on its slide; also try it mirrored (twice the "
                                       "search). The pose found may then flip the section.")
        self.shrink = CheckBox(text="fit shrinkage",
                               tooltip="Mutual information and section plane search: also "
                                       "fit the moving tissue's size (an isotropic scale; "
                                       "in-plane for a section), from starts between 10 % "
                                       "swollen and 30 % shrunk: fixation, histology and "
                                       "clearing shrink or swell tissue. The scale found is "
                                       "shown after the fit.")
        self.fit_button = PushButton(text="Fit")
        self.undo_button = PushButton(text="Undo", enabled=False)
        self.rms = Label(value="")
        self.blend = CheckBox(text="blend", tooltip="Show fixed in green and moving in "
                                                  "magenta, additive: aligned structures "
                                                  "turn white.")
        self.square = FloatSpinBox(min=1.0, max=1e6, step=50.0, value=200.0,
                                   tooltip="Checkerboard square size in µm (1–10⁶).")
        self.checker_button = PushButton(text="Checkerboard")
        self.reslice_button = PushButton(text="Reslice MRM to match this section")
        self.export_button = PushButton(text="Export transform…")
        row = lambda label, *widgets: Container(  # noqa: E731
            widgets=widgets, layout="horizontal", labels=False, label=label)
        super().__init__(widgets=[
            self.fixed, self.moving,
            row("section z (µm)", self.section_z, self.place_button),
            self.landmarks_button, self.fixed_points, self.moving_points, self.method,
            row("in-plane reach (µm)", self.reach), row("", self.mirror, self.shrink),
            row("", self.fit_button, self.undo_button),
            self.rms,
            row("views", self.blend, self.square, Label(value="µm squares"),
                self.checker_button),
            self.reslice_button, self.export_button])
        self.table = _table(["pair", "residual (µm)"])
        self.native.layout().insertWidget(11, self.table)
        self.rms.native.setWordWrap(True)  # a long fit summary wraps, never widens the dock
        self.native.layout().addStretch()
        self.square.native.setDecimals(0)
        self.square.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
        self.undo_stack: list[tuple[str, Callable]] = []
        self.last_fit: dict = {}
        self.worker = None
        self._blend_state = None
        self.place_button.changed.connect(_shown(self.place_section))
        self.landmarks_button.changed.connect(_shown(self.add_landmark_layers))
        self.fit_button.changed.connect(self.fit)
        self.undo_button.changed.connect(self.undo)
        self.blend.changed.connect(self.set_blend)
        self.checker_button.changed.connect(self.add_checkerboard)
        self.reslice_button.changed.connect(self.add_resliced)
        self.export_button.changed.connect(self._export_dialog)
        self.fixed.changed.connect(self._centre_section_z)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._centre_section_z()
        self.append(restore_defaults_button(self, after=self._centre_section_z))

    # -- choices --------------------------------------------------------------------------

    def _points_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, Points)]

    def _centre_section_z(self, *_):
        """Default plane for a section: the fixed volume's middle (world z, µm)."""
        fixed = self.fixed.value
        if fixed is None or fixed.ndim != 3:
            return
        try:
            centre = (np.asarray(fixed.data.shape) - 1) / 2 * spacing_um(fixed) + origin_um(fixed)
            self.section_z.value = float(apply_affine(world_affine_um(fixed), centre[None])[0, 0])
        except ValueError:  # units or pose the dock refuses; said when an action needs them
            return

    def _layers(self):
        fixed, moving = self.fixed.value, self.moving.value
        if fixed is None or moving is None or fixed is moving:
            raise ValueError("choose two different image layers: fixed (MRM) and moving "
                             "(optical)")
        return fixed, moving

    def _ready(self):
        """Fixed and moving layers of equal ndim, placing a 2-D section in a 3-D scene."""
        fixed, moving = self._layers()
        if fixed.ndim == 3 and moving.ndim == 2:
            moving = self.place_section()
        _same_ndim(moving, fixed)
        return fixed, moving

    # -- actions --------------------------------------------------------------------------

    def place_section(self, *_):
        """Turn the 2-D moving layer into a ``(1, ny, nx)`` layer lying on the plane
        z = "section z" (µm, fixed world) of the 3-D scene; returns the new layer."""
        fixed, moving = self._layers()
        if moving.ndim != 2 or fixed.ndim != 3:
            raise ValueError(f"place a 2-D section ({moving.name!r} is {moving.ndim}-D) in "
                             f"a 3-D scene ({fixed.name!r} is {fixed.ndim}-D)")
        _check_plain(moving)
        f2 = unit_factors_um(moving)
        factors = np.concatenate([[f2[0]], f2])
        world2 = world_affine_um(moving)
        world3 = np.eye(4)
        world3[1:, 1:] = world2
        world3[0, 3] = self.section_z.value
        z_thickness = spacing_um(fixed)[0]  # shown on the one MRM slice it crosses
        units = (moving.units[0],) + tuple(moving.units)
        state = {key: getattr(moving, key) for key in ("colormap", "contrast_limits",
                                                       "gamma", "opacity", "blending",
                                                       "visible", "rgb")}
        meta = {**moving.metadata.get("mrmicro", {}),
                "section": {"spacing_um": tuple(spacing_um(moving).tolist())}}
        data = ([level[None] for level in moving.data] if moving.multiscale
                else moving.data[None])
        placed = Image(data, name=moving.name, multiscale=moving.multiscale,
                       scale=(z_thickness / factors[0],) + tuple(moving.scale),
                       translate=(0.0,) + tuple(moving.translate), units=units,
                       # the fixed volume's label: napari names the world axis after it
                       axis_labels=(tuple(fixed.axis_labels)[-3],) + tuple(moving.axis_labels),
                       metadata={**moving.metadata, "mrmicro": meta}, **state)
        placed.affine = (np.diag(np.append(1 / factors, 1)) @ world3
                         @ np.diag(np.append(factors, 1)))
        index = self.viewer.layers.index(moving)
        self.viewer.layers.remove(moving)
        self.viewer.layers.insert(index, placed)
        self.moving.value = placed

        def restore():
            if placed in self.viewer.layers:
                self.viewer.layers.remove(placed)
            self.viewer.layers.insert(min(index, len(self.viewer.layers)), moving)
            self.moving.value = moving

        self._push(f"place {moving.name!r}", restore)
        show_info(f"Register: {moving.name!r} placed on the plane z = "
                  f"{self.section_z.value:g} µm")
        return placed

    def add_landmark_layers(self, *_):
        """Two Points layers to click landmark pairs in (same order in both), each in its
        image's world (units, and following its affine)."""
        fixed, moving = self._ready()
        made = []
        for name, image, colour in ((FIXED_POINTS, fixed, "cyan"),
                                    (MOVING_POINTS, moving, "orange")):
            if name in self.viewer.layers:
                made.append(self.viewer.layers[name])
                continue
            extent = np.ptp(np.asarray(image.extent.world), axis=0)
            points = self.viewer.add_points(
                np.empty((0, image.ndim)), ndim=image.ndim, name=name, units=image.units,
                affine=image.affine.affine_matrix, face_color=colour, border_color="white",
                size=float(max(extent[-2:].max(), 1e-9)) / 40,
                features={"pair": np.empty(0, int), "residual_um": np.empty(0)},
                feature_defaults={"pair": 0, "residual_um": np.nan})
            made.append(points)
        self.fixed_points.value, self.moving_points.value = made
        self.viewer.layers.selection.active = made[0]
        made[0].mode = "add"
        return made

    def fit(self, *_):
        """Run the chosen method in a worker; the result is applied to the moving layer."""
        try:
            fixed, moving = self._ready()
            job, desc = self._job(METHODS[self.method.value], fixed, moving)
        except ValueError as error:
            show_error(f"Register: {error}")
            return None
        worker = progress_worker(job, desc)
        worker.returned.connect(lambda result: self._apply_fit(result, fixed, moving))
        worker.errored.connect(lambda e: show_error(f"Register: {e}"))
        worker.finished.connect(lambda: setattr(self.fit_button, "enabled", True))
        self.fit_button.enabled = False
        worker.start()
        self.worker = worker
        return worker

    def _job(self, method, fixed, moving):
        """The fit to run off the GUI thread, ``job(report) -> dict``, and its name."""
        start = array_affine_um(moving, fixed)
        if method in ("rigid", "similarity", "affine"):
            fixed_pts, moving_pts = self.fixed_points.value, self.moving_points.value
            if fixed_pts is None or moving_pts is None or fixed_pts is moving_pts:
                raise ValueError("choose the fixed and moving landmark Points layers (Add "
                                 "landmark layers, then click pairs in the same order)")
            if len(fixed_pts.data) != len(moving_pts.data):
                raise ValueError(f"{len(fixed_pts.data)} fixed but {len(moving_pts.data)} "
                                 "moving landmarks: click them in pairs")
            fixed_um = world_to_array_um(points_world_um(fixed_pts), fixed)
            moving_um = world_to_array_um(points_world_um(moving_pts), moving)

            def job(report):
                report(0.1, f"{method} landmark fit")
                fit = landmark_affine(moving_um, fixed_um, method)
                report(1.0)
                return {"affine": fit.affine, "rms_um": fit.rms_um,
                        "residuals_um": fit.residuals_um, "kind": method}
            return job, "Landmark registration"
        fixed_data = gray_data(fixed)
        if method == "mutual_information":
            if fixed.ndim != 3 or is_placed_section(moving):
                raise ValueError("mutual information (3-D) registers two volumes; for a "
                                 "2-D section use the section plane search")
            moving_data, shrink = gray_data(moving), self.shrink.value

            def job(report):
                report(0.05, "mutual information, coarse to fine")
                fit = mutual_information_affine(
                    moving_data, spacing_um(moving), fixed_data, spacing_um(fixed), start,
                    scale=shrink, callback=lambda done, total: report(0.05 + 0.95 * done / total))
                report(1.0)
                return {"affine": fit.affine, "mutual_information": fit.mutual_information,
                        "kind": "mutual_information", "scale": affine_scale(fit.affine)}
            return job, "Mutual-information registration"
        if not is_placed_section(moving) or fixed.ndim != 3:
            raise ValueError("the section plane search needs a 2-D section (moving) and a "
                             "3-D volume (fixed)")
        section, reach = gray_data(moving)[0], float(self.reach.value)
        mirror, shrink = self.mirror.value, self.shrink.value

        def job(report):
            report(0.05, "section plane search")
            fit = section_plane_affine(
                section, spacing_um(moving)[1:], fixed_data, spacing_um(fixed), start,
                reach_um=reach, mirror=mirror, scale=shrink,
                callback=lambda done, total: report(0.05 + 0.95 * done / total))
            report(1.0)
            return {"affine": fit.affine, "mutual_information": fit.mutual_information,
                    "kind": "section_plane", "scale": section_scale(fit.affine)}
        return job, "Section plane search"

    def _apply_fit(self, result, fixed, moving):
        self.apply_affine_um(result["affine"], fixed, moving)
        self.last_fit = {k: v for k, v in result.items() if k != "affine"}
        self.table.setRowCount(0)
        residuals = result.get("residuals_um")
        if residuals is not None:
            self._show_residuals(residuals)
            self.rms.value = f"RMS {result['rms_um']:.2f} µm over {len(residuals)} pairs"
        else:
            self.rms.value = f"mutual information {result['mutual_information']:.3f} nats"
            scale = result.get("scale", 1.0)
            if abs(scale - 1) > 5e-4:
                self.rms.value += (f"; scale {scale:.3f} (moving "
                                   f"{'shrunk' if scale > 1 else 'swollen'} "
                                   f"{abs(1 - 1 / scale):.1%})")
        show_info(f"Register: {self.method.value} → {moving.name!r} affine set")

    def _show_residuals(self, residuals):
        self.table.setRowCount(len(residuals))
        for row, value in enumerate(residuals):
            self.table.setItem(row, 0, QTableWidgetItem(str(row + 1)))
            self.table.setItem(row, 1, QTableWidgetItem(f"{value:.2f}"))
        for points in (self.fixed_points.value, self.moving_points.value):
            points.features = {"pair": np.arange(1, len(residuals) + 1),
                               "residual_um": np.asarray(residuals, dtype=float)}
            points.text = {"string": "{pair}: {residual_um:.1f} µm", "color": "white",
                           "anchor": "upper_left", "size": 9}

    def apply_affine_um(self, affine_um, fixed=None, moving=None):
        """Show core matrix ``A`` by setting the moving layer's ``affine`` (the moving
        landmarks follow their image); pushes the previous state on the undo stack."""
        if fixed is None:
            fixed, moving = self._layers()
        old_world = world_affine_um(moving)
        new_world = moving_world_affine_um(affine_um, moving, fixed)
        followers = [p for p in self._points_layers()
                     if p is self.moving_points.value and p.ndim == moving.ndim]
        saved = [(layer, layer.affine.affine_matrix.copy()) for layer in [moving, *followers]]
        moving.affine = layer_affine(new_world, moving)
        step = new_world @ np.linalg.inv(old_world)
        for points in followers:
            points.affine = layer_affine(step @ world_affine_um(points), points)

        def restore():
            for layer, matrix in saved:
                layer.affine = matrix

        self._push(f"affine of {moving.name!r}", restore)

    def _push(self, description, restore):
        self.undo_stack.append((description, restore))
        self.undo_button.enabled = True

    def undo(self, *_):
        """Restore the state before the last fit or placement."""
        if not self.undo_stack:
            return
        description, restore = self.undo_stack.pop()
        restore()
        self.last_fit = {}
        self.undo_button.enabled = bool(self.undo_stack)
        show_info(f"Register: undid {description}")

    def set_blend(self, on: bool):
        """Fixed green, moving magenta added on top (grey where they agree); off restores."""
        try:
            fixed, moving = self._layers()
        except ValueError as error:
            show_error(f"Register: {error}")
            return
        if on:
            self._blend_state = [(layer, layer.colormap.name, layer.blending)
                                 for layer in (fixed, moving)]
            fixed.colormap, moving.colormap = "green", "magenta"
            moving.blending = "additive"
        elif self._blend_state:
            for layer, colormap, blending in self._blend_state:
                layer.colormap, layer.blending = colormap, blending
            self._blend_state = None

    def _resliced_moving(self, fixed, moving):
        """(fixed image, moving image resampled on it, grid spacing µm, layer kwargs)."""
        affine = array_affine_um(moving, fixed)
        if is_placed_section(moving):  # the section's own grid: MRM resliced on its plane
            section = gray_data(moving)[0]
            plane = reslice(gray_data(fixed), spacing_um(fixed), affine, section.shape,
                            spacing_um(moving)[1:])
            return plane[None], section[None], spacing_um(moving), like(moving)
        target = gray_data(fixed)
        resampled = reslice(gray_data(moving), spacing_um(moving), np.linalg.inv(affine),
                            target.shape, spacing_um(fixed))
        return target, resampled, spacing_um(fixed), like(fixed)

    def add_checkerboard(self, *_):
        """A new layer alternating fixed and resampled moving in squares of "square" µm."""
        try:
            fixed, moving = self._ready()
            a, b, grid, like = self._resliced_moving(fixed, moving)
        except ValueError as error:
            show_error(f"Register: {error}")
            return None
        board = checkerboard(_normalised(a), _normalised(b), grid, self.square.value)
        return self.viewer.add_image(board, name=f"checkerboard {self.square.value:g} µm "
                                                   f"{fixed.name} | {moving.name}",
                                     colormap="gray", contrast_limits=(0, 1), **like)

    def add_resliced(self, *_):
        """The fixed (MRM) volume sampled on the moving section's plane and pixel grid: a
        2-D image shown as a ``(1, ny, nx)`` layer on the section's plane."""
        try:
            fixed, moving = self._ready()
            if not is_placed_section(moving):
                raise ValueError("reslicing matches a 2-D section: choose one as moving")
            plane, _, _, like = self._resliced_moving(fixed, moving)
        except ValueError as error:
            show_error(f"Register: {error}")
            return None
        meta = {"source": fixed.name, "plane_affine_um": array_affine_um(moving, fixed),
                "section": {"spacing_um": tuple(spacing_um(moving)[1:].tolist())}}
        return self.viewer.add_image(plane, name=f"{fixed.name} resliced to {moving.name}",
                                     colormap="gray", metadata={"mrmicro": meta}, **like)

    def export_transform(self, path) -> Path:
        """Write the current moving → fixed matrix (core convention, µm): ITK text for
        ``.tfm``/``.txt``, else JSON with the layers' names, spacings and origins."""
        fixed, moving = self._layers()
        affine = array_affine_um(moving, fixed)
        path = Path(path)
        if path.suffix.lower() in ITK_SUFFIXES:
            return write_itk_affine(path, affine)
        extra = {k: (float(v) if np.isscalar(v) and not isinstance(v, str) else v)
                 for k, v in self.last_fit.items()}
        return write_transform_json(
            path, affine, moving.name, fixed.name, **extra,
            moving_spacing_um=spacing_um(moving).tolist(),
            fixed_spacing_um=spacing_um(fixed).tolist(),
            moving_origin_um=origin_um(moving).tolist(),
            fixed_origin_um=origin_um(fixed).tolist())

    def _export_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(
            self.native, "Export transform", "transform.json",
            "Transform (*.json);;ITK transform (*.tfm *.txt)")
        if path:
            try:
                show_info(f"Register: wrote {self.export_transform(path)}")
            except (ValueError, OSError) as error:
                show_error(f"Register: {error}")
