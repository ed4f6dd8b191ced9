"""Volume <-> napari LayerData: physical scale, units, axis labels and metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_mrmicro.core import geometry
from napari_mrmicro.io import Volume, kspace_codec, unit_to_um

UM = "µm"


#: Value units a layer may carry in ``metadata["mrmicro"]["value_unit"]``.
VALUE_UNITS = ("a.u.", "Hz", "ppm", "rad", "ms")
#: Quantities signed around 0 (field, frequency offset, phase) get a diverging colormap.
SIGNED_UNITS = ("Hz", "ppm")
DIVERGING = "bwr"
#: Relaxation times (T2, T2* maps in ms, 0 where not fitted) get a sequential colormap.
TIME_UNITS = ("ms",)
SEQUENTIAL = "magma"


def _without(values: tuple, axis: int | None) -> tuple:
    return values if axis is None else values[:axis] + values[axis + 1:]


def _without_axis(matrix: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return matrix
    keep = [i for i in range(matrix.shape[0]) if i != axis]
    return matrix[np.ix_(keep, keep)]


def placement(volume: Volume, nd: int, channel_axis: int | None = None) -> dict:
    """napari ``scale``, ``translate`` and (when rotated) ``affine`` placing ``volume``.

    An axis-aligned grid is ``scale`` = voxel size and ``translate`` = first voxel; a
    rotated or flipped one (``volume.affine_um``) is ``scale`` = voxel size and ``affine``
    = the rest (rotation, reflection, translation), as napari composes ``affine ∘ scale``.
    Leading axes get their :meth:`~napari_mrmicro.io.Volume.lead_steps` (a time axis its
    step in s, echo or channel axes 1); ``channel_axis`` is dropped as napari splits it
    into layers.
    """
    n = len(volume.spacing_um)
    lead = nd - n
    world = geometry.check_world_affine(volume.world_affine_um(), n)
    scale, rest = geometry.split_scale(world)
    steps = tuple(step for step, _ in volume.lead_steps()[:lead])
    out = {"scale": _without(steps + scale, channel_axis)}
    if geometry.is_axis_aligned(world):
        out["translate"] = _without((0.0,) * lead + tuple(world[:n, n]), channel_axis)
    else:
        out["translate"] = (0.0,) * len(out["scale"])
        out["affine"] = _without_axis(geometry.embed_affine(rest, nd), channel_axis)
    return out


def _length_unit(volume: Volume) -> str:
    """µm, or napari's ``pixel`` for a file without any calibration."""
    return "pixel" if volume.metadata.get("uncalibrated") else UM


def value_unit(metadata: dict) -> str:
    """The unit of the values (``"a.u."`` unless the file or a dock states one)."""
    unit = metadata.get("value_unit") or "a.u."
    return unit if unit in VALUE_UNITS else "a.u."


#: Percentile of |value| (non-zero voxels) at which a signed map's contrast saturates: the
#: few extreme values (a field map next to air) would otherwise wash out the rest.
SIGNED_PERCENTILE = 99.5
#: Most values the contrast percentile looks at (evenly spaced planes of a larger map, so a
#: memory-mapped file is read in a few contiguous runs, not page by page).
CONTRAST_SAMPLE = 2**22


def value_display(volume: Volume, name: str) -> dict:
    """Name with the value unit; for signed quantities (Hz, ppm) a diverging colormap with
    contrast limits symmetric about 0, at the :data:`SIGNED_PERCENTILE` of the magnitude of
    the non-zero values (the slider's range still spans them all); for relaxation times
    (ms) a sequential one (:func:`relaxation_limits`)."""
    unit = value_unit(volume.metadata)
    out = {"metadata": {"mrmicro": {**volume.metadata, "value_unit": unit}}}
    if unit == "a.u." or volume.layer_type != "image":
        return out
    suffix = f" ({unit})"
    out["name"] = name if name.endswith(suffix) else name + suffix  # a saved layer has it
    if unit in SIGNED_UNITS + TIME_UNITS:
        out["colormap"] = DIVERGING if unit in SIGNED_UNITS else SEQUENTIAL
        values = _nonzero_sample(volume.data)
        if unit in SIGNED_UNITS:
            limit = float(np.percentile(np.abs(values), SIGNED_PERCENTILE)) \
                if values.size else 0.0
            out["contrast_limits"] = (-(limit or 1.0), limit or 1.0)
        elif values.size:
            out["contrast_limits"] = relaxation_limits(values)
    return out


def relaxation_limits(values: np.ndarray) -> tuple:
    """Contrast limits of a relaxation time map from its fitted (non-zero) values: from 0,
    the black of voxels not fitted, to the 99th percentile, so that the shortest times
    keep a colour apart from the background (from the 1st percentile they were black)."""
    high = float(np.percentile(values, 99)) if np.size(values) else 1.0
    return (0.0, high if high > 0 else 1.0)


def _nonzero_sample(data) -> np.ndarray:
    """The finite non-zero values of evenly spaced planes of an in-memory array (at most
    :data:`CONTRAST_SAMPLE` values); empty for lazy data."""
    if not isinstance(data, np.ndarray) or not data.size:
        return np.empty(0)
    plane = data[0].size if data.ndim > 1 else 1
    count = min(len(data), max(1, CONTRAST_SAMPLE // plane))
    values = np.asarray(data[np.linspace(0, len(data) - 1, count).round().astype(int)]).ravel()
    return values[np.isfinite(values) & (values != 0)]


def unit_factors_um(units) -> tuple:
    """µm per unit on each axis: the one rule for layer units.

    Length units convert (nm, µm, mm ...); other units (``pixel``, ``s``) give None. A
    layer with no length unit at all (napari's default ``pixel`` everywhere, or an
    uncalibrated optical file) is taken at 1 µm per unit on every axis.
    """
    factors = tuple(unit_to_um(str(u)) for u in units)
    if all(f is None for f in factors):
        return (1.0,) * len(factors)
    return factors


@dataclass
class LayerGeometry:
    """Where a layer's spatial axes (its trailing axes in a length unit, at most 3) sit.

    Attributes
    ----------
    spacing_um : tuple of float
        Voxel size of the spatial axes.
    affine_um : ndarray
        ``(n+1, n+1)`` voxel index -> world µm of the spatial axes (layer ``affine``,
        ``translate``, ``rotate``, ``shear`` and ``scale`` composed, units applied).
    units : tuple of str
        The layer's units, one per axis.
    calibrated : bool
        False when no axis has a length unit (then 1 unit is taken as 1 µm).
    """

    spacing_um: tuple
    affine_um: np.ndarray
    units: tuple
    calibrated: bool

    @property
    def origin_um(self) -> tuple:
        """World position of voxel 0."""
        return tuple(float(v) for v in self.affine_um[:-1, -1])


def layer_geometry(layer) -> LayerGeometry:
    """:class:`LayerGeometry` of a napari layer, or of a layer state dict (npe2 writers)."""
    state = layer if isinstance(layer, dict) else {
        "scale": layer.scale, "translate": layer.translate, "rotate": layer.rotate,
        "shear": layer.shear, "affine": layer.affine.affine_matrix, "units": layer.units,
        "ndim": layer.ndim}
    ndim = int(state.get("ndim") or len(state.get("scale") or ()))
    from napari.utils.transforms import Affine

    inner = Affine(scale=state.get("scale", (1.0,) * ndim),
                   translate=state.get("translate", (0.0,) * ndim),
                   rotate=state.get("rotate"), shear=state.get("shear"), ndim=ndim)
    outer = state.get("affine")
    outer = np.eye(ndim + 1) if outer is None else np.asarray(
        getattr(outer, "affine_matrix", outer), dtype=float)
    full = outer @ inner.affine_matrix
    units = tuple(str(u) for u in state.get("units") or ("pixel",) * ndim)
    factors = unit_factors_um(units)
    n = 0
    for f in reversed(factors):
        if f is None or n == 3:
            break
        n += 1
    if n == 0:
        raise ValueError(f"the layer's last axis has no length unit (units {units})")
    keep = list(range(ndim - n, ndim)) + [ndim]
    spatial = full[np.ix_(keep, keep)]
    spatial[:n, :] *= np.asarray(factors[ndim - n:])[:, None]
    return LayerGeometry(tuple(float(v) for v in geometry.voxel_sizes(spatial)), spatial,
                         units, any(unit_to_um(u) is not None for u in units))


def like(layer, **changes) -> dict:
    """Layer keyword arguments placing a result exactly where ``layer`` sits (same
    ``scale``, ``translate``, ``affine``, ``units``, ``axis_labels``), plus ``changes``.

    ``layer`` is a napari layer or a LayerData keyword dict. With ``ndim`` in ``changes``
    the trailing axes are kept (a 3-D result of a 4-D echo layer).
    """
    get = layer.get if isinstance(layer, dict) else (lambda key: getattr(layer, key, None))
    ndim = changes.pop("ndim", None)
    out = {}
    for key in ("scale", "translate", "units"):  # the labels stay: axis 0 is now along S
        value = get(key)
        if value is not None:
            value = tuple(value)
            out[key] = value if ndim is None else value[len(value) - ndim:]
    affine = get("affine")
    if affine is not None:
        matrix = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
        if ndim is not None:
            matrix = matrix[np.ix_(*[list(range(matrix.shape[0] - ndim - 1,
                                                matrix.shape[0]))] * 2)]
        out["affine"] = matrix
    return {**out, **changes}


def volume_to_layer_data(volume: Volume, name: str | None = None) -> list[tuple]:
    """LayerData tuples for a Volume; complex data become magnitude and phase layers. A
    grid whose axes the scanner stored permuted against the world (a sagittal or coronal
    slab) comes with its array axes reordered (:func:`world_aligned`)."""
    layers = _layer_data(volume, name)
    if kspace_codec.is_kspace(volume.metadata):  # the codec's metadata is in array order
        return layers
    return [world_aligned(data, kwargs, kind, len(volume.spacing_um))
            for data, kwargs, kind in layers]


def world_aligned(data, kwargs: dict, kind: str, n: int) -> tuple:
    """``(data, kwargs, kind)`` with the last ``n`` axes in the order of the world axes they
    lie closest to, and ``affine``, ``scale`` and ``units`` to match: the
    same voxels in the same world places, as nibabel's ``io_orientation`` chooses.

    napari draws a 2-D slice through the displayed rows and columns of a layer's affine; an
    affine that permutes the axes (ParaVision stores a sagittal map as (z, y, x) with its
    first axis along world R) leaves that block singular and the canvas fails to draw
    (napari #2616). Only the residual rotation is left in the affine. The permutation
    (new axis i = stored axis ``order[i]``) is recorded as ``metadata["mrmicro"]
    ["array_axes_from_file"]``. Channel-split and RGB layers are left as they are."""
    affine = kwargs.get("affine")
    if affine is None or "channel_axis" in kwargs or kwargs.get("rgb"):
        return data, kwargs, kind
    affine = np.asarray(affine, dtype=float)
    nd = affine.shape[0] - 1
    lead = nd - n
    block = np.abs(affine[lead:nd, lead:nd])
    closest = {}  # world axis -> the stored axis along it, the most decided world axis first
    for world in np.argsort(-block.max(axis=1)):
        free = [j for j in range(n) if j not in closest.values()]
        closest[int(world)] = free[int(np.argmax(block[world, free]))]
    order = [closest[world] for world in range(n)]
    if order == list(range(n)):
        return data, kwargs, kind
    axes = list(range(lead)) + [lead + j for j in order]
    levels = data if isinstance(data, list) else [data]
    if not all(hasattr(level, "transpose") for level in levels):
        return data, kwargs, kind
    levels = [level.transpose(axes) for level in levels]
    out = dict(kwargs)
    new_affine = affine.copy()
    new_affine[:, :nd] = affine[:, axes]
    out["affine"] = new_affine
    for key in ("scale", "translate", "units"):  # the labels stay: axis 0 is now along S
        if out.get(key) is not None and len(out[key]) == nd:
            out[key] = tuple(out[key][a] for a in axes)
    meta = dict(out.get("metadata", {}).get("mrmicro", {}))
    meta["array_axes_from_file"] = tuple(order)
    acquisition = meta.get("acquisition")
    b0 = (acquisition or {}).get("b0_direction")
    if b0 is not None and len(b0) == n:  # stated in array-axis order: follow the axes
        meta["acquisition"] = {**acquisition, "b0_direction": [b0[a] for a in order]}
    b = (acquisition or {}).get("b_matrix_s_per_mm2")
    if b is not None and n == 3:  # each image's b-matrix likewise
        meta["acquisition"] = {**meta["acquisition"], "b_matrix_s_per_mm2": np.asarray(
            b, dtype=float)[:, order][:, :, order].tolist()}
    out["metadata"] = {**out.get("metadata", {}), "mrmicro": meta}
    return (levels if isinstance(data, list) else levels[0]), out, kind


def _layer_data(volume: Volume, name: str | None) -> list[tuple]:
    data = volume.data
    rgb = bool(volume.metadata.get("rgb"))
    nd = data.ndim - rgb  # napari dimensions: the RGB sample axis is not one
    lead = nd - len(volume.spacing_um)
    axis = volume.channel_axis
    kwargs = {
        **placement(volume, nd, axis),
        "units": _without(tuple(unit for _, unit in volume.lead_steps()[:lead])
                          + (_length_unit(volume),) * len(volume.spacing_um), axis),
        "axis_labels": _without(volume.axis_labels[:nd], axis),
        "metadata": {"mrmicro": volume.metadata},
    }
    if rgb:
        kwargs["rgb"] = True
    if axis is not None:
        kwargs["channel_axis"] = axis
        kwargs.update(_channel_display(volume.metadata.get("channels") or [],
                                       data.shape[axis], name or volume.name or "MRM"))
    name = name or volume.name or "MRM"
    if kspace_codec.is_kspace(volume.metadata):  # log-magnitude shown, complex data kept
        shown, meta = kspace_codec.layer_data(volume)
        return [(shown, {**kwargs, "colormap": "magma", "metadata": {"mrmicro": meta},
                         "name": name if name.endswith("k-space") else f"{name} k-space"},
                 "image")]
    if np.issubdtype(data.dtype, np.complexfloating):
        xp = _array_module(data)
        magnitude = {**kwargs, "name": f"{name} magnitude", "colormap": "gray"}
        phase = {**kwargs, "name": f"{name} phase (rad)", "colormap": "twilight_shifted",
                 "contrast_limits": (-np.pi, np.pi), "visible": False,
                 "metadata": {"mrmicro": {**volume.metadata, "value_unit": "rad"}}}
        return [(xp.abs(data).astype(np.float32), magnitude, "image"),
                (xp.angle(data).astype(np.float32), phase, "image")]
    if axis is None:
        kwargs["name"] = name
        kwargs.update(value_display(volume, name))
    if volume.layer_type == "labels" and tissue_features(volume.metadata):
        kwargs["features"] = tissue_features(volume.metadata)  # hover shows the tissue
    pyramid = volume.metadata.get("pyramid")
    if pyramid:  # OME-Zarr: napari shows the levels without loading the full volume
        meta = {k: v for k, v in volume.metadata.items() if k != "pyramid"}
        kwargs.update(multiscale=True, metadata={"mrmicro": meta})
        return [(list(pyramid), kwargs, volume.layer_type)]
    return [(data, kwargs, volume.layer_type)]


def tissue_features(metadata: dict) -> dict | None:
    """Labels features naming each tissue (``index`` = label value, ``name``) from
    ``metadata["tissues"]`` ({label value: name}), or None when the metadata names none."""
    tissues = (metadata or {}).get("tissues")
    if not isinstance(tissues, dict):
        return None
    named = sorted((int(k), str(v)) for k, v in tissues.items()
                   if str(k).lstrip("-").isdigit())
    if not named:
        return None
    return {"index": np.array([k for k, _ in named]),
            "name": np.array([v for _, v in named], dtype=object)}


def _channel_display(channels: list, count: int, name: str) -> dict:
    """Per-channel names, colormaps and contrast limits that the file states."""
    if len(channels) != count:
        return {"name": [f"{name} [{i}]" for i in range(count)]}
    out = {"name": [c.get("name") or f"{name} [{i}]" for i, c in enumerate(channels)]}
    if all("color" in c for c in channels):
        from napari.utils.colormaps import Colormap

        out["colormap"] = [
            Colormap([[0, 0, 0, 1], [*(int(c["color"][k:k + 2], 16) / 255 for k in (1, 3, 5)), 1]],
                     name=f"{c.get('name') or i} {c['color']}")
            for i, c in enumerate(channels)]
    if all("contrast_limits" in c for c in channels):
        out["contrast_limits"] = [tuple(c["contrast_limits"]) for c in channels]
    return out


def _array_module(data):
    if hasattr(data, "compute"):
        import dask.array

        return dask.array
    return np


def layer_to_volume(data, meta: dict, layer_type: str = "image") -> Volume:
    """A Volume from a napari layer's data and state (as npe2 writers receive them).

    The placement comes from :func:`layer_geometry` (spatial axes: the trailing axes in a
    length unit; a layer without any length unit is taken in µm): an axis-aligned layer
    gives ``origin_um``, a rotated or flipped one ``affine_um``.
    """
    ndim = np.ndim(data) if not hasattr(data, "ndim") else data.ndim
    geo = layer_geometry({**meta, "ndim": ndim})
    origin = geo.origin_um if any(geo.origin_um) else None
    affine = None if geometry.is_axis_aligned(geo.affine_um) else geo.affine_um
    metadata = dict((meta.get("metadata") or {}).get("mrmicro") or {})
    labels = meta.get("axis_labels")
    return Volume(np.asarray(data), geo.spacing_um, metadata, origin_um=origin,
                  axis_labels=tuple(labels) if labels and len(labels) == ndim else None,
                  layer_type=layer_type, name=meta.get("name"), affine_um=affine)
