"""ImageJ hyperstacks, OME-TIFF and plain TIFF: the optical-microscopy side.

Reads TIFF files through ``tifffile`` and turns their calibration into µm:

- ImageJ hyperstacks: the ``ImageDescription`` holds ``unit`` (``micron``, ``um``,
  ``\\u00B5m``, ``nm``...), optional ``yunit``/``zunit``, ``spacing`` (z step),
  ``xorigin``/``yorigin``/``zorigin`` (pixels); X/YResolution hold pixels per unit
  (ImageJ ``ij/io/TiffDecoder.java`` and ``ij/io/FileSaver.java``).
- OME-TIFF: ``Pixels`` ``PhysicalSizeX/Y/Z`` with ``PhysicalSize*Unit`` (µm when absent),
  ``Channel`` ``Name``/``Color`` and ``Plane`` ``PositionX/Y/Z``
  (OME Data Model, https://docs.openmicroscopy.org/ome-model/).
- Plain TIFF: X/YResolution with ResolutionUnit inch or centimetre (TIFF 6.0, section 8).

Microscopes' files: a Micro-Manager multi-position OME-TIFF (one OME Image per stage
position, and an ImageJ description beside the OME-XML) gives one volume per position
(:func:`read_all`), placed at its stage position (``Plane`` ``PositionX/Y/Z`` else
``StageLabel``). A multi-file OME-TIFF whose companion files are absent is refused with
their names (tifffile would fill their planes with zeros). A file without any calibration
is flagged ``metadata["uncalibrated"]``: its layers are in napari's ``pixel`` units.

Writes ImageJ hyperstacks (uint8, uint16, int16 or float32 only, µm units, z spacing and
origin) and keeps the napari-mrmicro metadata (axis labels, layer type, acquisition) as one
JSON line in the ImageJ ``Info`` property, so a round trip restores them.
NIH Image TIFFs (private tag 43314) are left to :mod:`napari_mrmicro.io.nih_tiff`.
"""

from __future__ import annotations

import enum
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from napari_mrmicro.core import geometry
from napari_mrmicro.io._common import (
    LAZY_BYTES, PAYLOAD_KEY, FormatError, Volume, apply_payload, atomic_output, parse_payload,
    payload_dtype, payload_text, unit_to_s, unit_to_um,
)

WRITE_SUFFIXES = (".tif", ".tiff")

#: NIH Image private tag, read by :mod:`napari_mrmicro.io.nih_tiff`.
NIH_TAG = 43314
#: OME length units beyond :data:`~napari_mrmicro.io._common.UNIT_TO_UM`.
_OME_UNITS_UM = {"å": 1e-4, "Å": 1e-4, "pm": 1e-6}
#: TIFF ResolutionUnit codes to µm (1 = none; 4 and 5 are tifffile extensions).
_RESUNIT_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Bytes per value of the TIFF field types 0-18 (BYTE ... IFD8); unknown types count 1.
_TYPE_BYTES = np.array([1, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 1, 1, 8, 8, 8], float)
_SPATIAL = "ZYX"
_GENERIC = "IQS"  # tifffile's codes for page sequences and unlabelled axes
_FLOAT32_EXACT_INT = 2**24


# ---------------------------------------------------------------------------- reading

def can_read(path: Path) -> bool:
    """True for a ``.tif``/``.tiff`` file that is not an NIH Image TIFF, and for one whose
    structure tifffile cannot parse: :func:`read` then says what is wrong with it, rather
    than the file being called a format we do not read."""
    try:
        path = Path(path)
        if not path.is_file() or not path.name.lower().endswith(WRITE_SUFFIXES):
            return False
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return False
    except OSError:  # a sniff never raises
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return NIH_TAG not in tif.pages.first.tags
    except Exception:  # noqa: BLE001 - any parse failure is the file's, named by read()
        return True


def read(path: Path, lazy: bool | None = None) -> Volume:
    """The first volume of :func:`read_all` (the first stage position of a multi-position
    OME-TIFF; ``metadata["positions"]`` says how many there are)."""
    return _read_series(Path(path), 0, lazy)


def read_all(path: Path, lazy: bool | None = None) -> list:
    """One Volume per stage position (OME Image) of an OME-TIFF, else ``[read(path)]``.

    Micro-Manager writes each position of a multi-position acquisition as its own OME
    Image (its own TIFF series), with the stage position in ``StageLabel`` and ``Plane``
    ``PositionX/Y/Z``: each becomes a volume placed at its stage position.
    """
    path = Path(path)
    first = _read_series(path, 0, lazy)
    return [first] + [_read_series(path, i, lazy)
                      for i in range(1, first.metadata.get("positions", 1))]


def _read_series(path: Path, index: int, lazy: bool | None) -> Volume:
    """Read series ``index`` of an ImageJ, OME or plain TIFF with its spacing in µm.

    Parameters
    ----------
    path : Path
        The TIFF file.
    lazy : bool, optional
        Memory-map (contiguous, uncompressed data) or load page by page with dask.
        Default: lazy above ``LAZY_BYTES``.

    Returns
    -------
    Volume
        Leading non-spatial axes (``t``, ``channel``, ...) first, then ``(z,) y, x``;
        RGB(A) data keep the sample axis last (``metadata["rgb"]``).
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    if path.stat().st_size == 0:
        raise FormatError(path, "the file is empty")
    _check_ifds(path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise FormatError(path, f"not a readable TIFF file ({exc})") from exc
    with tif:
        try:
            nih = NIH_TAG in tif.pages.first.tags
            series = tif.series[index]
            kind = series.kind
        except Exception as exc:
            raise FormatError(path, f"corrupt TIFF structure ({exc!r})") from exc
        if nih:
            raise FormatError(path, "an NIH Image TIFF; read it with the nih_tiff module")
        ome_xml = tif.ome_metadata if tif.is_ome and kind == "ome" else None
        if tif.is_imagej and kind not in ("imagej", "ome"):
            raise FormatError(path, f"the ImageJ description promises "
                                    f"{tif.imagej_metadata.get('images')} images that the "
                                    "file does not hold")
        if ome_xml:
            _check_companions(path, ome_xml)
        _check_extent(path, series)
        page = series.keyframe
        ome = _parse_ome(ome_xml, index) if ome_xml else None
        ij = tif.imagej_metadata if tif.is_imagej and not ome else None
        ours = _our_info(ij)
        header = _header(tif, ij, ome)
        axes, shape = series.axes, tuple(series.shape)
        if not shape or min(shape) < 1:
            raise FormatError(path, f"image dimensions {dict(zip(axes, shape))}: width, "
                                    "height and every other axis need at least 1")
        rgb = (axes.endswith("S") and shape[-1] in (3, 4)
               and int(page.photometric) in (2, 6))  # RGB, YCbCr (decoded to RGB)
        calibration = _calibration(page, ij, ome, _spatial_axes(axes, rgb))
        if lazy is None:
            lazy = series.nbytes > LAZY_BYTES
        try:
            if not lazy:
                data = series.asarray()
            elif series.dataoffset is not None:
                data = tifffile.memmap(path, series=index, mode="r")
            else:
                data = _dask_pages(path, series, index)
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(path, f"cannot decode the image data ({exc})") from exc
        positions = _position_count(tif, ome)
        other_series = [{"axes": s.axes, "shape": list(s.shape), "dtype": str(s.dtype)}
                        for s in tif.series[max(positions, 1):]]

    data, codes = _to_napari_order(path, data, axes, rgb)
    written = (ours or {}).get("axes")
    if isinstance(written, str) and written != codes and sorted(written) == sorted(codes):
        data = data.transpose([codes.index(a) for a in written])  # our own axis order
        codes = written
    labels = _axis_labels(codes, rgb)
    channel_axis = codes.index("C") if "C" in codes else None
    metadata = {
        "format": "tiff",
        "source": str(path),
        "header": header,
        "acquisition": {},
        "kind": "ome" if ome else "imagej" if ij else "tiff",
        "unit": calibration["unit"],
        "spacing_source": calibration["source"],
        "spacing_known": calibration["known"],
    }
    if other_series:  # series that are not stage positions are not read
        metadata["other_series"] = other_series
    if not calibration["calibrated"]:
        metadata["uncalibrated"] = True  # layers in "pixel" units
    if positions > 1:
        metadata["positions"], metadata["position"] = positions, index
        stage = (ome or {}).get("StageLabel", {}).get("Name")
        name_position = stage or f"position {index}"
    if rgb:
        metadata["rgb"] = True
    single = 1 if ome and len(ome["Channels"]) == 1 else 0  # its name, colour: metadata
    channels = _channels(ij, ome, data.shape[channel_axis] if channel_axis is not None
                         else single)
    if channels:
        metadata["channels"] = channels
    step = _time_step_s(ij, ome) if "T" in codes else None
    if step:
        metadata["time_step_s"] = step
    labels, layer_type, name = apply_payload(ours, metadata, labels)
    if positions > 1:
        name = f"{Path(path).name.split('.')[0]} {name_position}"
    data = _restore_dtype(data, payload_dtype(ours, data))
    spacing, origin = calibration["spacing"], calibration["origin"]
    affine = geometry.stored_affine((ours or {}).get("affine_um"), len(spacing))
    if affine is not None:  # written by us from a rotated volume
        spacing = tuple(float(v) for v in geometry.voxel_sizes(affine))
        origin = tuple(float(v) for v in affine[:-1, -1])
    return Volume(data, spacing, metadata, origin_um=origin, axis_labels=labels,
                  channel_axis=channel_axis, layer_type=layer_type, name=name,
                  affine_um=affine)


def _check_ifds(path: Path) -> None:
    """Walk the IFD chain; refuse IFDs, tag values or a chain that run past the file end.

    Each IFD is a 2- (BigTIFF 8-) byte entry count, 12- (20-) byte entries of tag, type,
    count and value-or-offset, and the offset of the next IFD (TIFF 6.0, section 2;
    BigTIFF: https://www.awaresystems.be/imaging/tiff/bigtiff.html).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8 or head[:4] not in _TIFF_MAGIC:
            raise FormatError(path, "not a TIFF file (no II*/MM* signature)")
        order = "<" if head[:2] == b"II" else ">"
        big = head[2:4] in (b"+\x00", b"\x00+")
        if big and len(head) < 16:
            raise FormatError(path, "truncated: the BigTIFF header needs 16 bytes")
        word = "u8" if big else "u4"
        count_bytes, inline = (8, 8) if big else (2, 4)
        offset = int(np.frombuffer(head[8:16] if big else head[4:8], order + word)[0])
        entry = np.dtype([("tag", order + "u2"), ("type", order + "u2"),
                          ("count", order + word), ("value", order + word)])
        seen = set()
        while offset:
            if offset in seen:
                raise FormatError(path, f"the IFD chain loops back to offset {offset}")
            seen.add(offset)
            if offset + count_bytes > size:
                raise FormatError(path, f"truncated: an IFD at offset {offset} lies beyond "
                                        f"the end of the {size}-byte file")
            fh.seek(offset)
            n = int(np.frombuffer(fh.read(count_bytes), order + ("u8" if big else "u2"))[0])
            end = offset + count_bytes + n * entry.itemsize + inline
            if end > size:
                raise FormatError(path, f"truncated: the IFD at offset {offset} ends at byte "
                                        f"{end} of a {size}-byte file")
            block = fh.read(n * entry.itemsize + inline)
            entries = np.frombuffer(block[:n * entry.itemsize], entry)
            types = entries["type"].astype(np.intp)
            known = types < len(_TYPE_BYTES)
            nbytes = entries["count"] * np.where(known, _TYPE_BYTES[types * known], 1.0)
            outside = (nbytes > inline) & (entries["value"] + nbytes > size)
            if outside.any():
                tag = int(entries["tag"][outside][0])
                raise FormatError(path, f"truncated: the value of tag {tag} in the IFD at "
                                        f"offset {offset} lies beyond the end of the file")
            offset = int(np.frombuffer(block[n * entry.itemsize:], order + word)[0])


def _check_extent(path: Path, series) -> None:
    """Refuse image data that would lie beyond the end of the file."""
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
        if end > size:
            raise FormatError(path, f"truncated: the image data need {end} bytes but the "
                                    f"file holds {size}")
        return
    for page in series.pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
        if ends and max(ends) > size:
            raise FormatError(path, f"truncated: page {page.index} needs {max(ends)} "
                                    f"bytes but the file holds {size}")


def _spatial_axes(axes: str, rgb: bool) -> str:
    """The spatial axes in the output: ``YX`` or ``ZYX`` (a lone page sequence is z)."""
    core = axes[:-1] if rgb else axes
    if "Z" in core or sum(a in _GENERIC for a in core) == 1:
        return "ZYX"
    return "YX"


def _to_napari_order(path: Path, data, axes: str, rgb: bool):
    """Transpose to (leading..., [Z,] Y, X[, S]); return the data and their axis codes."""
    core = axes[:-1] if rgb else axes
    if "Y" not in core or "X" not in core:
        raise FormatError(path, f"TIFF series axes {axes!r} have no Y and X image plane")
    if "Z" not in core and sum(a in _GENERIC for a in core) == 1:
        core = "".join("Z" if a in _GENERIC else a for a in core)
    order = ([i for i, a in enumerate(core) if a not in _SPATIAL]
             + [core.index(a) for a in _SPATIAL if a in core] + ([len(core)] if rgb else []))
    codes = "".join((core + "S")[i] for i in order)
    if order != list(range(len(order))):
        data = data.transpose(order)
    return data, codes


def _time_step_s(ij: dict | None, ome: dict | None) -> float | None:
    """A time series' step in s: OME ``TimeIncrement`` (unit ``TimeIncrementUnit``, s by
    default) or ImageJ's ``finterval`` (unit ``tunit``, s by default); None when neither
    states a positive one."""
    stated = []
    if ome:
        pixels = ome["Pixels"]
        stated.append((pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s")))
    if ij:
        stated.append((ij.get("finterval"), _decode_unicode(ij.get("tunit")) or "s"))
    for value, unit in stated:
        value, factor = _float(value), unit_to_s(unit)
        if value and value > 0 and factor:
            return value * factor
    return None


def _axis_labels(codes: str, rgb: bool) -> tuple:
    names = {"T": "t", "C": "channel", "Z": "z", "Y": "y", "X": "x"}
    labels = [names.get(c) or tifffile.TIFF.AXES_NAMES.get(c, c).lower() for c in codes]
    if rgb:
        labels[-1] = "rgb"
    return tuple(labels)


def _calibration(page, ij: dict | None, ome: dict | None, spatial: str) -> dict:
    """Spacing (µm, in ``spatial`` order), origin, unit and where each number came from."""
    sizes, source, origin, unit = {}, {}, None, None
    if ome:
        pixels = ome["Pixels"]
        for axis in spatial:
            value = _float(pixels.get(f"PhysicalSize{axis}"))
            factor = _ome_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
            if value and value > 0 and factor:
                sizes[axis] = value * factor
                source[axis] = f"OME PhysicalSize{axis}"
        unit = pixels.get("PhysicalSizeXUnit", "µm")
        origin = _stage_position(ome, spatial)
    resolution = _resolution(page)
    if ij:
        unit = _decode_unicode(ij.get("unit")) or None
        factor = unit_to_um(unit) or _RESUNIT_UM.get(int(page.resolutionunit))
        factors = {"X": factor,
                   "Y": unit_to_um(_decode_unicode(ij.get("yunit"))) or factor,
                   "Z": unit_to_um(_decode_unicode(ij.get("zunit"))) or factor}
        tags = {"X": "XResolution", "Y": "YResolution"}
        for i, axis in enumerate("XY"):
            if axis not in sizes and resolution[i] and factors[axis]:
                sizes[axis] = factors[axis] / resolution[i]
                source[axis] = f"ImageJ unit={unit} and {tags[axis]}"
        spacing = _float(ij.get("spacing"))
        if "Z" in spatial and "Z" not in sizes and spacing and spacing > 0 and factors["Z"]:
            sizes["Z"] = spacing * factors["Z"]
            source["Z"] = f"ImageJ spacing and unit={unit}"
    else:
        factor = _RESUNIT_UM.get(int(page.resolutionunit))
        unit = unit or {25400.0: "inch", 1e4: "cm", 1e3: "mm", 1.0: "µm"}.get(factor)
        for i, axis in enumerate("XY"):
            if axis not in sizes and resolution[i] and factor:
                sizes[axis] = factor / resolution[i]
                source[axis] = f"{axis}Resolution per {unit}"
    known = all(axis in sizes for axis in spatial)
    if "X" in sizes:  # a missing y or z step follows x, as for square pixels / cubes
        for axis in spatial:
            if axis not in sizes:
                sizes[axis] = sizes["X"]
                source[axis] = "assumed equal to x"
    for axis in spatial:
        if axis not in sizes:
            sizes[axis] = 1.0
            source[axis] = "unknown: 1 µm assumed"
    pixels_origin = [_float((ij or {}).get(f"{a.lower()}origin")) for a in spatial]
    if origin is None and all(p is not None for p in pixels_origin):  # ImageJ: in pixels
        origin = tuple(-p * sizes[a] for p, a in zip(pixels_origin, spatial))
    calibrated = any(not text.startswith(("unknown", "assumed")) for text in source.values())
    return {"spacing": tuple(sizes[a] for a in spatial), "known": known, "unit": unit,
            "source": {a.lower(): source[a] for a in spatial}, "origin": origin,
            "calibrated": calibrated}


def _stage_position(ome: dict, spatial: str):
    """Stage position (µm) of the first plane, ``Plane`` ``PositionX/Y/Z`` else the
    ``StageLabel`` X/Y/Z; an axis the file does not state is at 0. None without any."""
    plane = _first_plane(ome["Planes"])
    stage = ome.get("StageLabel") or {}
    out, stated = [], False
    for axis in spatial:
        for source, key in ((plane, f"Position{axis}"), (stage, axis)):
            value = _float(source.get(key))
            factor = _ome_unit(source.get(f"{key}Unit", "µm"))
            if value is not None and factor:
                out.append(value * factor)
                stated = True
                break
        else:
            out.append(0.0)
    return tuple(out) if stated else None


def _resolution(page) -> tuple:
    """(x, y) pixels per unit, None where the tag is absent, zero or not finite."""
    tags = page.tags
    values = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name)
        value = None
        if tag is not None:
            num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
            value = num / den if den else None
        values.append(value if value and math.isfinite(value) and value > 0 else None)
    return tuple(values)


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _decode_unicode(text) -> str:
    """ImageJ escapes non-ASCII units as ``\\u00B5m``; undo that."""
    if text is None:
        return ""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(text))


def _ome_unit(unit) -> float | None:
    unit = str(unit).strip()
    return unit_to_um(unit) or _OME_UNITS_UM.get(unit) or _OME_UNITS_UM.get(unit.lower())


def _position_count(tif, ome: dict | None) -> int:
    """Stage positions of an OME-TIFF: one per OME Image when each is a TIFF series of
    the same axes, shape and type (else the further images are other series)."""
    count = (ome or {}).get("image_count", 1)
    if count < 2 or len(tif.series) < count:
        return 1
    first = tif.series[0]
    same = all(s.kind == "ome" and (s.axes, s.shape, s.dtype) == (first.axes, first.shape,
                                                                  first.dtype)
               for s in tif.series[:count])
    return count if same else 1


def _check_companions(path: Path, xml: str) -> None:
    """Refuse a multi-file OME-TIFF whose companion files are absent (tifffile would fill
    their planes with zeros), naming the missing files."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return
    own = (root.get("UUID") or "").strip()
    names = {e.get("FileName") for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "UUID"
             and e.get("FileName") and (e.text or "").strip() != own}  # own: this file
    missing = sorted(n for n in names if not (path.parent / n).is_file())
    if missing:
        raise FormatError(path, f"the OME-XML puts planes in companion files that are "
                                f"missing beside it: {', '.join(missing)}")


def _parse_ome(xml: str | None, index: int = 0) -> dict | None:
    """OME Image ``index``: Pixels attributes, channels, planes, stage label and the
    image count."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None

    def local(tag):
        return tag.rsplit("}", 1)[-1]

    images = [e for e in root if local(e.tag) == "Image"]
    if len(images) <= index:
        return None
    image = images[index]
    pixels = next((e for e in image if local(e.tag) == "Pixels"), None)
    if pixels is None:
        return None
    stage = next((e for e in image if local(e.tag) == "StageLabel"), None)
    return {
        "Image": dict(image.attrib),
        "StageLabel": {} if stage is None else dict(stage.attrib),
        "Pixels": dict(pixels.attrib),
        "Channels": [dict(e.attrib) for e in pixels if local(e.tag) == "Channel"],
        "Planes": [dict(e.attrib) for e in pixels if local(e.tag) == "Plane"],
        "image_count": len(images),
    }


def _first_plane(planes: list) -> dict:
    """The Plane at TheZ = TheT = TheC = 0 (else the first listed), or {}."""
    for plane in planes:
        if all(plane.get(k, "0") == "0" for k in ("TheZ", "TheT", "TheC")):
            return plane
    return planes[0] if planes else {}


def _channels(ij: dict | None, ome: dict | None, count: int) -> list:
    """Per-channel name, colour (``#rrggbb``) and display range when the file states them."""
    if count == 0:
        return []
    out = [{} for _ in range(count)]
    if ome and len(ome["Channels"]) == count:
        for entry, channel in zip(out, ome["Channels"]):
            if channel.get("Name"):
                entry["name"] = channel["Name"]
            color = channel.get("Color", "")
            if re.fullmatch(r"-?\d+", color):  # signed 32-bit RGBA
                rgba = int(color) & 0xFFFFFFFF
                entry["color"] = f"#{rgba >> 8:06x}"
    if ij:
        luts = ij.get("LUTs") or []
        if len(luts) == count:
            for entry, lut in zip(out, luts):
                r, g, b = (int(v) for v in np.asarray(lut)[:, -1])
                entry["color"] = f"#{r:02x}{g:02x}{b:02x}"
        ranges = ij.get("Ranges")
        if ranges is not None and len(ranges) == 2 * count:
            for entry, i in zip(out, range(count)):
                entry["contrast_limits"] = [float(ranges[2 * i]), float(ranges[2 * i + 1])]
    return out if any(out) else []


def _our_info(ij: dict | None) -> dict | None:
    """The JSON napari-mrmicro wrote into the ImageJ ``Info`` property, if any."""
    info = (ij or {}).get("Info")
    if not isinstance(info, str):
        return None
    for line in info.splitlines():
        if line.startswith(PAYLOAD_KEY):
            return parse_payload(line)
    return None


def _restore_dtype(data, target: np.dtype | None):
    """Give integer data written as uint16/float32 their ``target`` dtype back when every
    value fits it exactly."""
    if target is None:
        return data
    if target.kind == "b":
        return data.astype(bool)
    info = np.iinfo(target)
    if data.size and (data.min() < info.min or data.max() > info.max
                      or (data.dtype.kind == "f" and not np.all(np.mod(data, 1) == 0))):
        return data
    return data.astype(target)


def _jsonable(value, limit: int = 256):
    """A JSON-friendly copy of a tag or metadata value (long arrays summarised)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, limit) for k, v in value.items()}
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
            if text.isprintable():
                return text
        except UnicodeDecodeError:
            pass
        return f"<{len(value)} bytes>"
    if isinstance(value, np.ndarray):
        if value.size > limit:
            return f"<array {value.shape} {value.dtype}>"
        return value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) > limit:
            return f"<{len(value)} values>"
        return [_jsonable(v, limit) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _header(tif, ij: dict | None, ome: dict | None) -> dict:
    header = {
        "tags": {tag.name: _jsonable(tag.value) for tag in tif.pages.first.tags.values()},
        "series": [{"axes": s.axes, "shape": list(s.shape), "dtype": str(s.dtype),
                    "kind": s.kind} for s in tif.series],
    }
    if ij:
        header["imagej"] = _jsonable(ij)
    if ome:
        header["ome"] = {k: v for k, v in ome.items() if k != "Planes"}
        header["ome"]["first_plane"] = _first_plane(ome["Planes"])  # the XML: tags
    return header


class _PageReader:
    """Reads single pages of one series from one shared TiffFile (opened on first use)."""

    def __init__(self, path: Path, index: int = 0):
        self.path = path
        self.index = index
        self._lock = threading.Lock()
        self._tif = None

    def __call__(self, index: int, shape: tuple, dtype) -> np.ndarray:
        with self._lock:
            if self._tif is None:
                self._tif = tifffile.TiffFile(self.path)
            page = self._tif.series[self.index].pages[index]
            if page is None:  # a plane the OME metadata lists but the file lacks
                return np.zeros(shape, dtype)
            return page.asarray().reshape(shape)

    def __del__(self):  # the dask array that held the reader is gone: close the file
        if self._tif is not None:
            self._tif.close()


def _dask_pages(path: Path, series, series_index: int = 0):
    """A dask array of a series with one chunk per TIFF page."""
    import dask.array as da

    page_shape = tuple(series.keyframe.shape)
    count = len(series.pages)
    if count * math.prod(page_shape) != math.prod(series.shape):
        raise FormatError(path, f"series shape {series.shape} is not {count} pages of "
                                f"{page_shape}")
    reader = _PageReader(path, series_index)

    def block(block_info=None):
        index = block_info[None]["chunk-location"][0]
        return reader(index, page_shape, series.dtype)[None]

    stack = da.map_blocks(block, dtype=series.dtype,
                          chunks=((1,) * count,) + tuple((n,) for n in page_shape),
                          meta=np.empty((0,) * (1 + len(page_shape)), series.dtype))
    return stack.reshape(tuple(series.shape))


# ---------------------------------------------------------------------------- writing

def write(path: Path, volume: Volume) -> list[str]:
    """Write ``volume`` as an ImageJ hyperstack with µm calibration.

    Spatial axes become ``[Z]YX``. One leading axis becomes ImageJ channels (``C``) when
    it is the volume's ``channel_axis``, otherwise frames (``T``: echoes, time points);
    with two leading axes the channel axis (or the second) is ``C`` and the other ``T``.
    RGB volumes (``metadata["rgb"]``) are written as ImageJ RGB (uint8 only).

    ImageJ holds uint8, uint16, signed 16-bit (which ImageJ opens as unsigned plus 32768
    with a calibration function that gives the signed values back) and float32: other
    integers (labels too) become uint16 when their values fit, else int16, else float32
    when every value is exact in float32 (|v| ≤ 2**24), else the write is refused.
    float64 becomes float32 (ImageJ's own convention; precision beyond float32 is lost).
    Complex data are refused. The original dtype, axis labels, layer type and acquisition
    go into the ``Info`` property as JSON and come back on read.

    Returns
    -------
    list of str
        The path written.
    """
    path = Path(path)
    rgb = bool(volume.metadata.get("rgb"))
    data = np.asarray(volume.data)
    original = data.dtype
    nspatial = len(volume.spacing_um)
    if nspatial not in (2, 3):
        raise FormatError(path, f"ImageJ TIFF needs 2 or 3 spatial axes, not {nspatial}")
    nlead = data.ndim - nspatial - rgb
    if nlead < 0 or nlead > 2:
        raise FormatError(path, f"ImageJ hyperstacks hold at most two axes besides z, y, x; "
                                f"this volume has shape {data.shape}")
    data = _imagej_dtype(path, data, rgb)

    lead_axes = _lead_axes(nlead, volume.channel_axis)
    ours = "".join(lead_axes) + "ZYX"[3 - nspatial:] + ("S" if rgb else "")
    order = sorted(range(len(ours)), key=lambda i: "TZCYXS".index(ours[i]))
    data = data.transpose(order)
    axes = "".join(ours[i] for i in order)

    spacing = volume.spacing_um
    z_um, y_um, x_um = ((None,) + spacing if nspatial == 2 else spacing)
    meta = {"axes": axes, "unit": "um" if not volume.metadata.get("uncalibrated") else "pixel",
            "Info": payload_text(volume, "tiff", original, axes=ours,
                                 **_rotation_payload(volume)) + "\n"}
    if z_um is not None:
        meta["spacing"] = z_um
    seconds = [step for step, unit in volume.lead_steps() if unit == "second"]
    if seconds and "T" in ours:
        meta["finterval"], meta["tunit"] = seconds[0], "sec"
    if volume.origin_um is not None:
        for axis, o, s in zip("zyx"[3 - nspatial:], volume.origin_um, spacing):
            meta[f"{axis}origin"] = -o / s  # ImageJ origins are in pixels
    options = {"photometric": "rgb"} if rgb else {}
    with atomic_output(path) as tmp:
        try:
            tifffile.imwrite(tmp, data, imagej=True, resolution=(1.0 / x_um, 1.0 / y_um),
                             metadata=meta, **options)
        except ValueError as exc:
            raise FormatError(path, f"tifffile cannot write this as ImageJ TIFF ({exc})") \
                from exc
    return [str(path)]


def _rotation_payload(volume: Volume) -> dict:
    """ImageJ has no rotation: a rotated or flipped placement travels in our payload."""
    affine = volume.affine_um
    if affine is None or geometry.is_axis_aligned(affine):
        return {}
    return {"affine_um": np.asarray(affine).tolist()}


def _lead_axes(nlead: int, channel_axis: int | None) -> list:
    if nlead == 0:
        return []
    if nlead == 1:
        return ["C" if channel_axis == 0 else "T"]
    return ["C", "T"] if channel_axis == 0 else ["T", "C"]


def _imagej_dtype(path: Path, data: np.ndarray, rgb: bool) -> np.ndarray:
    """Convert to uint8/uint16/int16/float32 without changing any value, or refuse."""
    dtype = data.dtype
    if rgb:
        if dtype != np.uint8:
            raise FormatError(path, f"ImageJ RGB images are 8 bits per sample, not {dtype}")
        return data
    if dtype.kind == "c":
        raise FormatError(path, "ImageJ TIFF cannot hold complex data; save magnitude and "
                                "phase as separate layers, or write NIfTI (.nii)")
    if dtype in (np.uint8, np.uint16, np.int16, np.float32):
        return data
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype.kind == "f":
        finite = data[np.isfinite(data)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise FormatError(path, "values exceed the float32 range ImageJ TIFF holds")
        return data.astype(np.float32)
    if dtype.kind in "iu":
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if low >= 0 and high <= 255 and dtype.itemsize == 1:
            return data.astype(np.uint8)
        if low >= 0 and high <= 65535:
            return data.astype(np.uint16)
        if low >= -32768 and high <= 32767:
            return data.astype(np.int16)
        if max(-low, high) <= _FLOAT32_EXACT_INT:
            return data.astype(np.float32)
        raise FormatError(path, f"{dtype} values {low}..{high} cannot be stored exactly in "
                                "ImageJ TIFF (uint8, uint16, int16 or float32 up to 2**24); "
                                "write .nii or .headfile instead")
    raise FormatError(path, f"ImageJ TIFF cannot hold {dtype} data")
