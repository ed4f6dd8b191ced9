"""npe2 reader: any format :mod:`napari_mrmicro.io` reads, as layers in physical units."""

from __future__ import annotations

from pathlib import Path

from napari_mrmicro._layers import volume_to_layer_data
from napari_mrmicro.io import paravision_study, read_volumes, reader_for


def get_reader(path):
    """Return a reader when napari-mrmicro can read ``path`` (or every path given), else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or any(reader_for(p) is None for p in paths):
        return None
    return read_layers


def read_layers(path) -> list[tuple]:
    """LayerData tuples for one path or a list of paths."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = []
    for p in paths:  # a tripilot or a multi-position file: one layer (set) per volume
        volumes = read_volumes(p)
        shown = paravision_study.shown_scan(volumes) \
            if reader_for(p) == "paravision_study" else None
        for i, volume in enumerate(volumes):
            for data, kwargs, kind in volume_to_layer_data(
                    volume, name=volume.name or _display_name(p)):
                hidden = shown is not None and i != shown
                layers.append((data, {**kwargs, "visible": False} if hidden else kwargs,
                               kind))
    return layers


def _display_name(path) -> str:
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".headfile", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    if name in ("2dseq", "visu_pars", "headfile", "Dimensions"):
        return path.parent.name
    return name
