"""Dock "Diffusion tensor": diffusion-weighted images -> mean diffusivity (or ADC), FA,
the FA-weighted direction colour map, and optionally AD, RD and S0."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label
from napari.utils.notifications import show_info

from napari_mrmicro._layers import SEQUENTIAL, like, relaxation_limits
from napari_mrmicro.core.diffusion_tensor import (METHODS, check_b_matrices, fit_diffusion,
                                                  fit_record, floor_advice, scheme_summary,
                                                  tensor_determined)
from napari_mrmicro.widgets._dock import (JobDock, chosen_mask, layer_picker, mask_picker,
                                          restore_defaults_button)
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker

MODELS = (("tensor", "tensor"), ("ADC (one diffusivity)", "adc"))


def _acquisition(layer) -> dict:
    return (layer.metadata.get("mrmicro") or {}).get("acquisition") or {}


def _b_matrix(layer):
    """The b-matrices a layer's acquisition states, or None."""
    return _acquisition(layer).get("b_matrix_s_per_mm2")


def _diffusion_series(layer) -> bool:
    """A real (point, z, y, x) layer stating one b-matrix per point."""
    b = _b_matrix(layer)
    return layer.ndim == 4 and not np.iscomplexobj(layer.data) and b is not None \
        and len(b) == layer.data.shape[0]


#: Most voxels given a principal-direction glyph (every voxel of each slice, thinned
#: in-plane beyond).
MAX_GLYPHS = 100_000


def direction_glyphs(fit, scale, rotation) -> tuple[np.ndarray, np.ndarray]:
    """Vectors-layer data (2N, 2, 3) of the principal direction at N fitted voxels: a line
    through each voxel's centre, as long as FA × 0.9 × the in-plane spacing between glyphs
    (every voxel in every slice, every k-th in-plane beyond :data:`MAX_GLYPHS`), in the
    data coordinates of a layer with ``scale``; and their colours (2N, 4), the direction's
    world axes as RGB (red R-L, green A-P, blue S-I)."""
    scale = np.asarray(scale, dtype=float)
    fitted = fit.fitted
    step = max(1, int(np.ceil(np.sqrt(np.count_nonzero(fitted) / MAX_GLYPHS))))
    chosen = np.zeros_like(fitted)
    chosen[:, ::step, ::step] = fitted[:, ::step, ::step]
    where = np.nonzero(chosen)
    direction = fit.principal[(slice(None), *where)].T  # (N, 3) unit, physical, array axes
    length = fit.fa()[where] * 0.9 * step * scale[1:].min()
    half = direction * (length / 2)[:, None] / scale  # µm -> data units
    centre = np.stack(where, axis=1).astype(float)
    data = np.concatenate([np.stack([centre, half], 1), np.stack([centre, -half], 1)])
    colour = np.abs(direction @ np.asarray(rotation).T)[:, ::-1]  # world (S, A, R) -> RGB
    colour = np.column_stack([colour, np.ones(len(colour))])
    return data, np.concatenate([colour, colour])


def world_rotation(kwargs: dict) -> np.ndarray:
    """The rotation of a 3-D layer's array axes in the world (its affine without scale)."""
    affine = kwargs.get("affine")
    if affine is None:
        return np.eye(3)
    linear = np.asarray(affine, dtype=float)[:3, :3]
    return linear / np.linalg.norm(linear, axis=0)[None, :]


class DiffusionWidget(Container, JobDock):
    """The diffusion tensor (or one ADC) fitted voxel by voxel
    (:func:`~napari_mrmicro.core.diffusion_tensor.fit_diffusion`) to a diffusion-weighted
    series whose acquisition states each image's b-matrix (a ParaVision DTI scan; a NIfTI
    with its FSL bval/bvec beside it). Maps lie where the images lie; the colour map's
    red, green and blue are the world's R-L, A-P and S-I.
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.images = layer_picker(
            self.viewer, "images", ("magnitude",), where=_diffusion_series,
            tooltip="Diffusion-weighted magnitudes (point, z, y, x) stating their b-matrices: "
                    "a ParaVision DTI scan, or a NIfTI opened with <name>.bval/<name>.bvec "
                    "beside it.")
        self.scheme = Label(label="scheme")
        self.model = ComboBox(
            label="model", choices=MODELS, value="tensor",
            tooltip="tensor: six elements and S0, from 6 or more non-collinear directions "
                    "(MD, FA, AD, RD, direction). ADC: one diffusivity, e.g. from several "
                    "b-values along one direction.")
        self.method = ComboBox(
            label="fit", choices=list(METHODS), value="wls",
            tooltip="wls: least squares on log S weighted by the predicted signal squared "
                    "(Salvador 2005; the usual choice); ols: unweighted; nlls: least squares "
                    "on the signal itself (Koay 2006), slower; rician: on the squared "
                    "magnitude against S² + 2σ² (σ measured in the background), unbiased "
                    "where points reach the noise floor, as free fluid at high b does.")
        self.mask_source = mask_picker(
            self.viewer, "Voxels to fit: those with signal in the least-weighted images "
                         "(noise measured in the background), or the non-zero voxels of a "
                         "Labels layer.")
        self.colour = CheckBox(text="add direction colour map", value=True,
                               tooltip="The principal direction as RGB weighted by FA: red "
                                       "R-L, green A-P, blue S-I of the world.")
        self.glyphs = CheckBox(text="add direction glyphs", value=False,
                               tooltip="A line along the principal direction through each "
                                       "fitted voxel (thinned beyond 100 000), as long as FA, "
                                       "coloured by its world direction.")
        self.extra = CheckBox(text="add AD, RD and S0 layers", value=False,
                              tooltip="Also add the axial and radial diffusivities (µm²/ms) "
                                      "and S0, the signal without diffusion weighting.")
        super().__init__(widgets=[
            self.images, self.scheme, self.model, self.method, self.mask_source, self.colour,
            self.glyphs, self.extra, *self.job_controls("Fit")])
        self.insert(len(self) - 2, restore_defaults_button(self, after=self._read_metadata))
        self.native.layout().addStretch()
        self.images.changed.connect(self._read_metadata)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self._read_metadata()

    def _read_metadata(self, *_):
        layer = self.images.value
        if layer is None:
            self.scheme.value = "no diffusion series open"
            return
        b = _b_matrix(layer)
        self.scheme.value = scheme_summary(b)
        self.model.value = "tensor" if tensor_determined(b) else "adc"

    def request(self) -> dict:
        """Everything the core needs, read from the widgets (ValueError names a field)."""
        layer = self.images.value
        if layer is None:
            raise ValueError("choose a diffusion-weighted series stating its b-matrices")
        data = layer.data  # read in the worker (fit_diffusion), not on the GUI thread
        b = check_b_matrices(_b_matrix(layer), data.shape[0], "images")
        mask = chosen_mask(self.mask_source, data.shape[1:], "the images")
        return dict(images=data, b_matrix=b, model=self.model.value,
                    method=self.method.value, mask=mask)

    def run(self, *_):
        """Fit and derive the maps in a worker; they arrive as layers."""
        request = self.checked_request("Diffusion tensor")
        if request is None:
            return None
        source = self.images.value
        common = like(source, ndim=3)
        wanted = {"colour": self.colour.value, "glyphs": self.glyphs.value,
                  "extra": self.extra.value}
        worker = progress_worker(lambda report: _maps(
            fit_diffusion(**request, callback=lambda fraction: report(fraction, "fit")),
            common, wanted), "Diffusion tensor")
        return self.start_job(worker, "Diffusion tensor", lambda result: self._add_results(
            *result, request, source, common), running="fitting…")

    def _add_results(self, fit, maps, request, source, common):
        record = fit_record(fit, request["method"], request["b_matrix"])
        acq = {k: v for k, v in _acquisition(source).items() if k != "b_matrix_s_per_mm2"}
        meta = {**source.metadata.get("mrmicro", {}), "acquisition": acq,
                "source": source.name, "diffusion": record}
        diffusivity = {"colormap": SEQUENTIAL, "contrast_limits": maps["limits"],
                       "metadata": {"mrmicro": {**meta, "value_unit": "µm²/ms"}}}
        name = "MD" if fit.model == "tensor" else "ADC"
        layers = [(maps["md"], {**common, **diffusivity,
                                "name": f"{name} (µm²/ms, {request['method']})"}, "image")]
        if "fa" in maps:
            layers.append((maps["fa"], {**common, "name": "FA", "colormap": "gray",
                                        "contrast_limits": (0.0, 1.0),
                                        "metadata": {"mrmicro": meta}}, "image"))
        if "rgb" in maps:
            layers.append((maps["rgb"], {**common, "name": "FA colour (R-L, A-P, S-I)",
                                         "rgb": True, "metadata": {"mrmicro": {
                                             **meta, "rgb": True}}}, "image"))
        if "glyphs" in maps:
            vectors, colours = maps["glyphs"]
            layers.append((vectors, {
                **common, "name": "principal directions", "edge_color": colours,
                "edge_width": 0.15,  # data pixels: a sixth of a voxel
                "vector_style": "line", "metadata": {"mrmicro": meta}}, "vectors"))
        for key, label in (("ad", "AD (µm²/ms)"), ("rd", "RD (µm²/ms)")):
            if key in maps:
                layers.append((maps[key], {**common, **diffusivity, "name": label,
                                           "visible": False}, "image"))
        if "s0" in maps:
            layers.append((maps["s0"], {**common, "name": "S0", "visible": False,
                                        "metadata": {"mrmicro": meta}}, "image"))
        add_layers(self.viewer, layers)
        summary = f"{name} median {maps['md_median']:.3g} µm²/ms in " \
                  f"{record['fitted_voxels']} voxels"
        if "fa" in maps:
            summary += f"; FA median {maps['fa_median']:.2f}"
            if fit.negative_eigenvalues:
                summary += f"; {fit.negative_eigenvalues} voxels with a negative eigenvalue"
        advice = floor_advice(fit.floor_fraction, request["method"])
        if advice:
            summary += f". {advice[0].upper()}{advice[1:]}"
        self.status.value = summary
        show_info(f"Diffusion tensor done: {summary}")


def _maps(fit, common: dict, wanted: dict) -> tuple:
    """The fit and the arrays its layers show, computed in the worker (not on the GUI
    thread): MD (or ADC) with its contrast limits and median, and for a tensor FA, the
    colour map, the glyphs, AD and RD as ``wanted``; S0 with ``wanted["extra"]``."""
    md = fit.md()
    fitted = md[fit.fitted]
    maps = {"md": md, "limits": relaxation_limits(fitted),
            "md_median": float(np.median(fitted)) if fitted.size else 0.0}
    if fit.model == "tensor":
        rotation = world_rotation(common)
        maps["fa"] = fit.fa()
        maps["fa_median"] = float(np.median(maps["fa"][fit.fitted])) if fitted.size else 0.0
        if wanted["colour"]:
            maps["rgb"] = np.round(fit.direction_colors(rotation) * 255).astype(np.uint8)
        if wanted["glyphs"]:
            maps["glyphs"] = direction_glyphs(fit, common.get("scale", (1.0,) * 3), rotation)
        if wanted["extra"]:
            maps["ad"], maps["rd"] = fit.ad(), fit.rd()
    if wanted["extra"]:
        maps["s0"] = fit.s0
    return fit, maps
