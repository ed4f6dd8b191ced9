"""File formats of MR and optical microscopy, each in a small module.

Every format module offers ``can_read(path) -> bool`` (a cheap sniff that never raises)
and ``read(path, lazy=None) -> Volume``; writable formats add
``write(path, volume, **options) -> list[str]`` and ``WRITE_SUFFIXES``.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

from napari_mrmicro.io._common import FormatError, Volume, unit_to_s, unit_to_um
from napari_mrmicro.io.headfile import read_headfile, write_headfile

#: Readers in the order they are tried: specific sniffs before generic ones.
READERS = ("civm", "omezarr", "nih_folder", "bruker", "bruker_raw", "paravision_study",
           "varian", "ismrmrd", "tecmag", "nih_tiff", "tiff", "nifti")
#: Writers, looked up by the output name's suffix.
WRITERS = ("civm", "tiff", "nifti", "omezarr")


def _module(name: str):
    return importlib.import_module(f"napari_mrmicro.io.{name}")


def reader_for(path) -> str | None:
    """Name of the format module that claims ``path``, or None."""
    path = Path(path)
    if not path.exists():
        return None
    for name in READERS:
        try:
            module = _module(name)
        except ImportError:  # an optional dependency is missing
            continue
        if module.can_read(path):
            return name
    return None


def read_volume(path, lazy: bool | None = None) -> Volume:
    """Read an MR or optical microscopy volume in physical units.

    Parameters
    ----------
    path : str or Path
        A file, or a folder (CIVM images folder, NIH Image folder, Bruker scan folder).
    lazy : bool, optional
        Memory-map or dask-load instead of reading into memory. Default: lazy when the
        image data exceed 256 MiB.
    """
    path = Path(path)
    if path.suffix.lower() == ".headfile" and not path.exists():
        # a write killed while committing may have moved the old headfile aside
        _module("civm").finish_interrupted_write(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    name = reader_for(path)
    if name is None:
        raise FormatError(path, "not a format napari-mrmicro reads (CIVM headfile, NIH "
                                "Image, ImageJ/OME-TIFF, NIfTI, Bruker 2dseq or raw fid, "
                                "Agilent/Varian fid, ISMRMRD, Tecmag .tnt, OME-Zarr)")
    with foreign_errors_named(path):
        return _module(name).read(path, lazy=lazy)


@contextlib.contextmanager
def foreign_errors_named(path):
    """Turn an exception a format library raises on a bad file (tifffile, nibabel, zarr,
    numpy, struct, zlib, an empty AssertionError...) into ``FormatError(path, reason)``;
    FormatError and MemoryError pass unchanged."""
    try:
        yield
    except (FormatError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - any library's complaint about this file
        reason = str(error).strip() or "no message"
        raise FormatError(path, f"unreadable ({type(error).__name__}: {reason})") from error


def read_volumes(path, lazy: bool | None = None) -> list[Volume]:
    """Every volume a path holds: one per orientation of a ParaVision tripilot, one per
    stage position of a multi-position OME-TIFF, every scan's image of a ParaVision study,
    else ``[read_volume(path)]``."""
    path = Path(path)
    name = reader_for(path)
    module = _module(name) if name else None
    if module is not None and hasattr(module, "read_all"):
        with foreign_errors_named(path):
            return module.read_all(path, lazy=lazy)
    return [read_volume(path, lazy=lazy)]


def writer_for(path) -> str | None:
    """Name of the format module that writes files named like ``path``, or None."""
    lower = str(path).lower()
    for name in WRITERS:
        if lower.endswith(_module(name).WRITE_SUFFIXES):
            return name
    return None


def write_volume(path, volume: Volume, **options) -> list[str]:
    """Write ``volume`` atomically in the format its name asks for; return the paths.

    ``.headfile`` (CIVM headfile + raw slices), ``.tif``/``.tiff`` (ImageJ TIFF with µm
    spacing), ``.nii``/``.nii.gz`` (NIfTI, needs nibabel), ``.zarr`` (OME-Zarr pyramid). ``options`` go to the format's
    writer (e.g. ``dtype="f32"`` or ``scale=True`` for CIVM).
    """
    name = writer_for(path)
    if name is None:
        raise FormatError(path, "unknown output type; use .headfile, .tif, .nii(.gz) or .zarr")
    if volume.metadata.get("rgb") and name != "tiff":  # its colour axis is no spatial one
        raise FormatError(path, "an RGB volume (a colour map) is written as TIFF (.tif): "
                                "the other formats would take its colours for an axis")
    return _module(name).write(Path(path), volume, **options)


__all__ = ["FormatError", "Volume", "read_headfile", "read_volume", "read_volumes",
           "reader_for", "unit_to_s", "unit_to_um", "write_headfile", "write_volume",
           "writer_for"]
