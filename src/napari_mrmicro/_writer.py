"""npe2 writers: a napari layer to CIVM, ImageJ TIFF or NIfTI, keeping µm spacing."""

from __future__ import annotations

from pathlib import Path

from napari_mrmicro._layers import layer_to_volume
from napari_mrmicro.io import kspace_codec, write_volume


class LayerWriteError(OSError):
    """A layer the chosen format cannot store as asked.

    napari treats a ValueError from a writer as "this writer does not apply" and hides its
    message, so refusals travel as an OSError that reaches the user.
    """


def _write(path: str, data, meta: dict, layer_type: str, **options) -> list[str]:
    try:
        volume = layer_to_volume(data, meta, layer_type)
        if str(path).lower().endswith(".zarr") and kspace_codec.is_kspace(volume.metadata):
            volume = kspace_codec.layer_volume(volume)  # the k-space, not its log-magnitude
        return write_volume(path, volume, **options)
    except ValueError as error:
        raise LayerWriteError(str(error)) from error


def _write_series(path: str, data, meta: dict, **options) -> list[str]:
    """A multi-file series (headfile + slices): its folder is created when its parent
    exists, and removed again if the write fails."""
    folder = Path(path).parent
    created = not folder.exists() and folder.parent.is_dir()
    if created:
        folder.mkdir()
    try:
        return _write(path, data, meta, "image", **options)
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def write_civm(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as a CIVM headfile plus big-endian uint16 slices.

    Data that uint16 cannot hold exactly are refused (use the float32 writer).
    """
    return _write_series(path, data, meta)


def write_civm_f32(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as a CIVM headfile plus big-endian float32 ``.f32`` slices."""
    return _write_series(path, data, meta, dtype="f32")


# npe2 passes no layer type, so each (format, layer type) pair in napari.yaml is its own
# command: the layer type is the one napari matched, never a guess from the layer state.

def write_imagej_tiff(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as an ImageJ TIFF with µm spacing."""
    return _write(path, data, meta, "image")


def write_imagej_tiff_labels(path: str, data, meta: dict) -> list[str]:
    """Write a labels layer as an ImageJ TIFF with µm spacing."""
    return _write(path, data, meta, "labels")


def write_nifti(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as NIfTI with its placement (needs the ``nifti`` extra)."""
    return _write(path, data, meta, "image")


def write_nifti_labels(path: str, data, meta: dict) -> list[str]:
    """Write a labels layer as NIfTI with its placement (needs the ``nifti`` extra)."""
    return _write(path, data, meta, "labels")


def write_omezarr(path: str, data, meta: dict) -> list[str]:
    """Write an image layer as an OME-Zarr multiscale pyramid in µm; a k-space layer as its
    k-space (complex data, acquired mask, echo position, trajectory), losslessly."""
    return _write(path, data, meta, "image")


def write_omezarr_labels(path: str, data, meta: dict) -> list[str]:
    """Write a labels layer as an OME-Zarr multiscale pyramid in µm."""
    return _write(path, data, meta, "labels")
