"""NIH Image TIFF: TIFFs carrying NIH Image's binary header in private tag 43314.

NIH Image (Wayne Rasband, NIH, Macintosh, 1987–2000s) saved 8-bit images and stacks as
big-endian TIFFs with ``PhotometricInterpretation`` 0 (0 is white) and a copy of its
512-byte file header in tag 43314 ("NIHImageHeader"). The field layout follows
tifffile's ``TIFF.NIH_IMAGE_HEADER`` except that ``CurveFitType`` is one byte (ImageJ reads
it so), and the meaning follows ImageJ's ``ij/io/TiffDecoder.decodeNIHImageHeader``:

- the header is always read big-endian (ImageJ reads it with Java's ``DataInput``);
- pixel width = 1 / ``XScale`` when ``Version`` > 106 and ``XScale`` ≠ 0;
- unit = ``UnitsID``, plus 5 when ``Version`` ≤ 153; codes 5–13 are nm, µm, mm, cm, m,
  km, inch, ft, mi (another code is uncalibrated unless ``XUnit`` spells a length unit);
- pixel height = width / ``PixelAspectRatio`` when ``Version`` > 140 and the ratio ≠ 0;
- slice spacing (pixel depth) = ``SliceSpacing`` for stacks (``nSlices`` ≥ 2).

Differences from ImageJ, all on the side of using what the file states: ImageJ decodes
the tag only when its count is 256 and reads ``SliceSpacing`` only for 8-bit stacks; here
any tag whose 312 header bytes lie inside the file is decoded, and ``SliceSpacing`` is used
for every stack. A header whose ``Version`` is implausible big-endian but plausible
little-endian (a PC port's file) is read little-endian. ``InvertedTable`` is recorded but
not applied, as in ImageJ; ``PhotometricInterpretation`` 0 is applied by inverting the
values (``max - v``) so the image displays the right way round.

Without a usable NIH calibration the TIFF resolution tags are used as ImageJ reads them
(inch or cm; 72 dpi means uncalibrated). Reading is eager unless ``lazy``: contiguous
uncompressed data (all NIH Image files) are memory-mapped, wrapped in dask when byte
swapping or inversion is needed; other layouts are read page by page through dask.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import tifffile

from napari_mrmicro.io._common import LAZY_BYTES, FormatError, Volume, unit_to_um

NIH_TAG = 43314
TIFF_SUFFIXES = (".tif", ".tiff")

#: NIH Image header as stored in tag 43314; offsets match ImageJ's TiffDecoder
#: (Version 12, XScale 160, UnitsID 172, fit type byte 182, nSlices 260, aspect 272).
NIH_HEADER = np.dtype([
    ("FileID", "S8"), ("nLines", "i2"), ("PixelsPerLine", "i2"), ("Version", "i2"),
    ("OldLutMode", "i2"), ("OldnColors", "i2"), ("Colors", "u1", (3, 32)),
    ("OldColorStart", "i2"), ("ColorWidth", "i2"), ("ExtraColors", "u2", (6, 3)),
    ("nExtraColors", "i2"), ("ForegroundIndex", "i2"), ("BackgroundIndex", "i2"),
    ("XScale", "f8"), ("Unused2", "i2"), ("Unused3", "i2"), ("UnitsID", "i2"),
    ("p1x", "i2"), ("p1y", "i2"), ("p2x", "i2"), ("p2y", "i2"),
    ("CurveFitType", "u1"), ("Unused4", "u1"), ("nCoefficients", "i2"), ("Coeff", "f8", 6),
    ("UMsize", "u1"), ("UM", "S15"), ("UnusedBoolean", "u1"), ("BinaryPic", "u1"),
    ("SliceStart", "i2"), ("SliceEnd", "i2"), ("ScaleMagnification", "f4"),
    ("nSlices", "i2"), ("SliceSpacing", "f4"), ("CurrentSlice", "i2"),
    ("FrameInterval", "f4"), ("PixelAspectRatio", "f4"), ("ColorStart", "i2"),
    ("ColorEnd", "i2"), ("nColors", "i2"), ("Fill1", "u2", 3), ("Fill2", "u2", 3),
    ("Table", "u1"), ("LutMode", "u1"), ("InvertedTable", "u1"), ("ZeroClip", "u1"),
    ("XUnitSize", "u1"), ("XUnit", "S11"), ("StackType", "i2"),
]).newbyteorder(">")

#: ImageJ's unit table for (shifted) NIH Image UnitsID codes.
NIH_UNITS = {5: "nm", 6: "µm", 7: "mm", 8: "cm", 9: "m", 10: "km", 11: "inch", 12: "ft",
             13: "mi"}
_VERSIONS = range(1, 1000)  # NIH Image versions are 3-digit numbers (e.g. 162 for 1.62)


def _is_tiff_name(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def can_read(path) -> bool:
    """True for a .tif/.tiff whose first page carries the NIH Image header tag 43314."""
    path = Path(path)
    if not (path.is_file() and _is_tiff_name(path)):
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return NIH_TAG in tif.pages.first.tags
    except Exception:  # noqa: BLE001 - a sniff never raises
        return False


def _jsonable(value):
    """Header values as JSON types: Mac Roman text, lists, None for NaN/inf."""
    if isinstance(value, bytes):
        return value.decode("mac_roman").rstrip("\x00")
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _positive(value) -> float | None:
    return float(value) if value is not None and 0 < value < math.inf else None


def decode_nih_header(raw: bytes) -> dict:
    """NIH Image header fields from the 312 bytes at tag 43314's offset.

    Read big-endian like ImageJ; little-endian only when that alone gives a plausible
    ``Version``. Strings are cut to their stated lengths (``UM``, ``XUnit``).
    """
    if len(raw) < NIH_HEADER.itemsize:
        raise ValueError(f"{len(raw)} bytes, the NIH Image header needs "
                         f"{NIH_HEADER.itemsize}")
    record = np.frombuffer(raw[:NIH_HEADER.itemsize], dtype=NIH_HEADER)[0]
    order = ">"
    if record["Version"] not in _VERSIONS:
        swapped = np.frombuffer(raw[:NIH_HEADER.itemsize],
                                dtype=NIH_HEADER.newbyteorder("<"))[0]
        if swapped["Version"] in _VERSIONS:
            record, order = swapped, "<"
    header = {name: _jsonable(record[name]) for name in NIH_HEADER.names}
    header["UM"] = header["UM"][: header["UMsize"]]
    header["XUnit"] = header["XUnit"][: header["XUnitSize"]]
    header["byteorder"] = order
    return header


def nih_calibration(header: dict) -> dict:
    """Spatial calibration from an NIH header, following ImageJ.

    Returns a dict with ``unit`` (str or None), ``pixel_width``, ``pixel_height`` and
    ``slice_spacing`` in that unit (None when the header does not state them).
    """
    version = header["Version"]
    out = {"unit": None, "pixel_width": None, "pixel_height": None, "slice_spacing": None}
    if version not in _VERSIONS:
        return out
    code = header["UnitsID"] + (5 if version <= 153 else 0)
    out["unit"] = NIH_UNITS.get(code)
    if out["unit"] is None and unit_to_um(header["XUnit"]):  # "other units" spelled out
        out["unit"] = header["XUnit"]
    scale = _positive(header["XScale"])
    if version > 106 and scale:
        out["pixel_width"] = out["pixel_height"] = 1.0 / scale
        aspect = _positive(header["PixelAspectRatio"])
        if version > 140 and aspect:
            out["pixel_height"] = out["pixel_width"] / aspect
    if header["nSlices"] >= 2:
        out["slice_spacing"] = _positive(header["SliceSpacing"])
    return out


def _read_nih_header(path: Path, tif: tifffile.TiffFile) -> dict | None:
    tag = tif.pages.first.tags.get(NIH_TAG)
    if tag is None:
        return None
    size = os.path.getsize(path)
    if tag.valueoffset + NIH_HEADER.itemsize > size:
        raise FormatError(path, f"the NIH Image header at byte {tag.valueoffset} runs past "
                                f"the end of the {size}-byte file")
    fh = tif.filehandle
    fh.seek(tag.valueoffset)
    header = decode_nih_header(fh.read(NIH_HEADER.itemsize))
    header["tag_count"] = int(tag.count)
    return header


def _resolution_calibration(page) -> dict | None:
    """Resolution tags as ImageJ reads them: inch or cm; 72 dpi means uncalibrated."""
    unit = {2: "inch", 3: "cm"}.get(int(page.resolutionunit))
    res = page.resolution
    if unit is None or not all(r > 0 for r in res) or (unit == "inch" and res[0] == 72):
        return None
    return {"unit": unit, "factor": unit_to_um(unit), "yx": (1.0 / res[1], 1.0 / res[0]),
            "z": None}


def _calibration(header: dict, tif: tifffile.TiffFile) -> dict:
    """Best calibration: NIH header, else resolution tags, else none."""
    nih = nih_calibration(header)
    if nih["unit"] and nih["pixel_width"]:
        return {"unit": nih["unit"], "factor": unit_to_um(nih["unit"]),
                "yx": (nih["pixel_height"], nih["pixel_width"]),
                "z": nih["slice_spacing"], "source": "nih_header"}
    found = _resolution_calibration(tif.pages.first)
    if found:
        return {**found, "source": "resolution_tags"}
    return {"unit": None, "factor": None, "yx": None, "z": None, "source": "default"}


def _check_strips(path: Path, pages) -> None:
    size = os.path.getsize(path)
    for i, page in enumerate(pages):
        if page is None:
            raise FormatError(path, f"page {i} of the stack cannot be read (truncated?)")
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > size:
            raise FormatError(path, f"image data of page {page.index} end at byte "
                                    f"{max(ends, default=0)} but the file holds {size} "
                                    "bytes (truncated?)")


def _invert(data, bits: int):
    """Values of a min-is-white image turned min-is-black (``max - v``)."""
    if data.dtype.kind == "b":
        return ~data
    if data.dtype.kind == "u":
        return data.dtype.type((1 << bits) - 1) - data
    return ~data  # signed: -1 - v maps the range onto itself reversed


def _pixels(path: Path, tif: tifffile.TiffFile, series, lazy: bool, invert: bool):
    """The series' pixels, native-endian, inverted when asked; lazy if asked."""
    bits = series.keyframe.bitspersample
    native = series.dtype.newbyteorder("=")
    if not lazy:
        data = series.asarray().astype(native, copy=False)
        return _invert(data, bits) if invert else data
    import dask.array as da

    if series.dataoffset is not None:  # contiguous and uncompressed: one memory map
        stored = series.dtype.newbyteorder(tif.byteorder)
        mm = np.memmap(path, dtype=stored, mode="r", offset=series.dataoffset,
                       shape=series.shape)
        if stored.isnative and not invert:
            return mm
        chunks = (1,) * (mm.ndim - 2) + mm.shape[-2:]
        data = da.from_array(mm, chunks=chunks).astype(native)
    else:  # strips or compression: one delayed page read per slice
        from dask import delayed

        shape = series.keyframe.shape
        slices = [da.from_delayed(delayed(tifffile.imread)(path, key=page.index),
                                  shape=shape, dtype=native) for page in series.pages]
        data = da.stack(slices).reshape(series.shape)
    return data.map_blocks(_invert, bits, dtype=native) if invert else data


def read(path, lazy: bool | None = None) -> Volume:
    """Read an NIH Image TIFF (tag 43314) image or stack in µm, as ImageJ calibrates it.

    Calibration: the NIH header, else the TIFF resolution tags (inch/cm), else 1 µm with
    ``metadata["spacing_known"] = False``. Pages become ``(z, y, x)``; RGB samples a
    leading channel axis. Min-is-white images are inverted (``metadata["inverted"]``).

    Parameters
    ----------
    path : str or Path
    lazy : bool, optional
        Memory-map (or dask-load) instead of reading; default when the pixels exceed
        ``LAZY_BYTES``.

    Raises
    ------
    FormatError
        Not a TIFF, no NIH Image header, truncated, or not an image stack.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise FormatError(path, "the file is empty")
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on bad files
        raise FormatError(path, f"not a readable TIFF ({exc})") from exc
    with tif:
        header = _read_nih_header(path, tif)
        if header is None:
            raise FormatError(path, "no NIH Image header (TIFF tag 43314)")
        if not tif.series:
            raise FormatError(path, "the TIFF holds no image")
        series = tif.series[0]
        axes = series.axes
        if len(axes) - ("S" in axes) > 3:
            raise FormatError(path, f"TIFF series with axes {axes!r}; expected an image "
                                    "or a stack of images")
        _check_strips(path, series.pages)
        if header["nSlices"] > len(series.pages):
            raise FormatError(path, f"the NIH header counts {header['nSlices']} slices but "
                                    f"the file holds {len(series.pages)} (truncated?)")
        photometric = int(series.keyframe.photometric)
        invert = photometric == 0 and series.dtype.kind in "ubi"
        if lazy is None:
            lazy = series.nbytes > LAZY_BYTES
        data = _pixels(path, tif, series, lazy, invert)
        cal = _calibration(header, tif)

    channel_axis = None
    if "S" in axes:
        data = data.transpose((axes.index("S"),) + tuple(i for i, a in enumerate(axes)
                                                         if a != "S"))
        channel_axis = 0
    n_spatial = data.ndim - (channel_axis is not None)
    if cal["factor"]:
        y_um, x_um = (v * cal["factor"] for v in cal["yx"])
        z_um = cal["z"] * cal["factor"] if cal["z"] else x_um
    else:
        y_um = x_um = z_um = 1.0
    spacing = (z_um, y_um, x_um)[-n_spatial:]
    if not all(0 < v < math.inf for v in spacing):
        raise FormatError(path, f"absurd calibration: {spacing} µm per pixel")
    metadata = {
        "format": "nih_tiff", "source": str(path), "header": header, "acquisition": {},
        "unit": cal["unit"], "spacing_known": cal["factor"] is not None,
        "spacing_source": cal["source"], "inverted": invert,
        "photometric": photometric, "byteorder": tif.byteorder,
    }
    if n_spatial == 3 and cal["factor"] and not cal["z"]:
        metadata["z_spacing_assumed"] = True  # the file gives no slice spacing
    return Volume(data, spacing, metadata, channel_axis=channel_axis, name=path.stem)

