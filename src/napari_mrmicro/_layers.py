"""Volume <-> napari LayerData: physical scale, units, axis labels and metadata."""

from __future__ import annotations

import numpy as np

from napari_mrmicro.io import Volume, unit_to_um

UM = "µm"


def _without(values: tuple, axis: int | None) -> tuple:
    return values if axis is None else values[:axis] + values[axis + 1:]


def volume_to_layer_data(volume: Volume, name: str | None = None) -> list[tuple]:
    """LayerData tuples for a Volume; complex data become magnitude and phase layers."""
    data = volume.data
    rgb = bool(volume.metadata.get("rgb"))
    nd = data.ndim - rgb  # napari dimensions: the RGB sample axis is not one
    lead = nd - len(volume.spacing_um)
    origin = volume.origin_um or (0.0,) * len(volume.spacing_um)
    axis = volume.channel_axis
    kwargs = {
        "scale": _without((1.0,) * lead + volume.spacing_um, axis),
        "translate": _without((0.0,) * lead + tuple(origin), axis),
        "units": _without(("pixel",) * lead + (UM,) * len(volume.spacing_um), axis),
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
    if volume.metadata.get("kspace"):  # raw k-space: log-magnitude shown, complex kept
        meta = {**volume.metadata, "kspace": np.asarray(data)}
        return [(np.log1p(np.abs(meta["kspace"])).astype(np.float32),
                 {**kwargs, "name": f"{name} k-space", "colormap": "magma",
                  "metadata": {"mrmicro": meta}}, "image")]
    if np.issubdtype(data.dtype, np.complexfloating):
        xp = _array_module(data)
        magnitude = {**kwargs, "name": f"{name} magnitude", "colormap": "gray"}
        phase = {**kwargs, "name": f"{name} phase", "colormap": "twilight_shifted",
                 "contrast_limits": (-np.pi, np.pi), "visible": False}
        return [(xp.abs(data).astype(np.float32), magnitude, "image"),
                (xp.angle(data).astype(np.float32), phase, "image")]
    if axis is None:
        kwargs["name"] = name
    pyramid = volume.metadata.get("pyramid")
    if pyramid:  # OME-Zarr: napari shows the levels without loading the full volume
        meta = {k: v for k, v in volume.metadata.items() if k != "pyramid"}
        kwargs.update(multiscale=True, metadata={"mrmicro": meta})
        return [(list(pyramid), kwargs, volume.layer_type)]
    return [(data, kwargs, volume.layer_type)]


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

    Spatial axes are the trailing axes whose unit is a length; their scale becomes µm.
    A layer whose units are all napari's default ``pixel`` is taken to be in µm.
    """
    ndim = np.ndim(data) if not hasattr(data, "ndim") else data.ndim
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * ndim))
    units = tuple(str(u) for u in meta.get("units") or ("pixel",) * ndim)
    factors = [unit_to_um(u) for u in units]
    if all(f is None for f in factors):
        factors = [1.0] * ndim
    n_spatial = 0
    for f in reversed(factors):
        if f is None or n_spatial == 3:
            break
        n_spatial += 1
    spacing = tuple(s * f for s, f in zip(scale[ndim - n_spatial:], factors[ndim - n_spatial:]))
    translate = meta.get("translate")
    origin = None
    if translate is not None and any(float(t) for t in translate):
        origin = tuple(float(t) * f for t, f in zip(translate[ndim - n_spatial:],
                                                    factors[ndim - n_spatial:]))
    metadata = dict((meta.get("metadata") or {}).get("mrmicro") or {})
    labels = meta.get("axis_labels")
    return Volume(np.asarray(data), spacing, metadata, origin_um=origin,
                  axis_labels=tuple(labels) if labels and len(labels) == ndim else None,
                  layer_type=layer_type, name=meta.get("name"))

