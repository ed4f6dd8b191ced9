"""npe2 writers: a napari layer to CIVM, ImageJ TIFF or NIfTI, keeping µm spacing."""

from __future__ import annotations

from napari_mrmicro._layers import layer_to_volume
from napari_mrmicro.io import write_volume


class LayerWriteError(OSError):
    """A layer the chosen format cannot store as asked.

    napari treats a ValueError from a writer as "this writer does not apply" and hides its
    message, so refusals travel as an OSError that reaches the user.
    """


def _write(path: str, data, meta: dict, layer_type: str, **options) -> list[str]:
    try:
        return write_volume(path, layer_to_volume(data, meta, layer_type), **options)
    except ValueError as error:
        raise LayerWriteError(str(error)) from error


def write_civm(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as a CIVM headfile plus big-endian uint16 slices.

    Data that uint16 cannot hold exactly are refused (use the float32 writer).
    """
    return _write(path, data, meta, "image")


def write_civm_f32(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as a CIVM headfile plus big-endian float32 ``.f32`` slices."""
    return _write(path, data, meta, "image", dtype="f32")


def write_imagej_tiff(path: str, data, meta: dict) -> list[str]:
    """Write an image or labels layer as an ImageJ TIFF with µm spacing."""
    return _write(path, data, meta, _layer_type(meta))


def write_nifti(path: str, data, meta: dict) -> list[str]:
    """Write an image or labels layer as NIfTI (needs the ``nifti`` extra)."""
    return _write(path, data, meta, _layer_type(meta))


def write_omezarr(path: str, data, meta: dict) -> list[str]:
    """Write an image or labels layer as an OME-Zarr multiscale pyramid in µm."""
    return _write(path, data, meta, _layer_type(meta))


def _layer_type(meta: dict) -> str:
    """npe2 does not pass the layer type; a Labels layer's state has no contrast limits."""
    return "image" if "contrast_limits" in meta else "labels"
