"""NIfTI-1/NIfTI-2 images (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs) through nibabel.

Format: the NIfTI-1 header (https://nifti.nimh.nih.gov/nifti-1, ``nifti1.h``) and NIfTI-2
(https://nifti.nimh.nih.gov/nifti-2). Voxels are stored with x varying fastest, so the
array nibabel returns is ``(x, y, z[, t, ...])``; it is reversed here to napari's
``(..., z, y, x)``. ``pixdim`` are in the spatial unit of ``xyzt_units`` (metre, mm or
micron; "unknown" is taken as mm, the NIfTI tools' convention, and flagged).
``scl_slope``/``scl_inter`` are applied here in float32.

Orientation: the sform (when its code is set), else the qform, gives ``Volume.affine_um``:
voxel ``(z, y, x)`` to world µm RAS+ in napari's axis order (:mod:`napari_mrmicro.core.geometry`),
so rotations and flips are kept and layers sit where the scanner put them. The qform, sform,
their codes and the axis codes (``nibabel.aff2axcodes``) are kept in ``metadata["header"]``.
Scaled data (``scl_slope``/``scl_inter``) become float32; unscaled integers stay integers.

Writing uses micron units (``xyzt_units`` = micron), so ``pixdim`` hold the µm spacing
itself: typical MRM voxel sizes (25 µm, 12.5 µm) are exact in NIfTI-1's float32 fields,
whereas their mm values (0.025) are not; nibabel and ITK-based tools (ITK-SNAP, ANTs,
3D Slicer) convert micron to their own units. napari-mrmicro metadata (axis labels, layer
type, acquisition) travel as JSON in a NIfTI "comment" header extension (code 6).
nibabel is an optional dependency: ``pip install napari-mrmicro[nifti]``.

Diffusion-weighted series: a 4-D image with an FSL gradient table beside it
(:mod:`~napari_mrmicro.io.fsl_gradients`) gets each volume's b-matrix in
``acquisition["b_matrix_s_per_mm2"]`` (array axes z, y, x), unless its own extension
holds one.

Label volumes: ``intent_code`` NIFTI_INTENT_LABEL (1002: "each voxel is an index into a set
of labels") or NIFTI_INTENT_NEURONAME (1003) on integer data opens as labels (the comment
extension, when there is one, has the last word); labels are written with 1002.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from napari_mrmicro.core import geometry
from napari_mrmicro.io._common import (
    LAZY_BYTES, PAYLOAD_KEY, FormatError, Volume, apply_payload, atomic_output,
    check_scaled_range, parse_payload,
    payload_dtype, payload_text, unit_to_s,
)
from napari_mrmicro.io.fsl_gradients import (find_gradient_files, read_gradient_table,
                                             write_gradient_table)

WRITE_SUFFIXES = (".nii", ".nii.gz")

#: ``intent_code`` values of label volumes: NIFTI_INTENT_LABEL, NIFTI_INTENT_NEURONAME.
_LABEL_INTENTS = (1002, 1003)
#: NIfTI spatial unit names (nibabel's spelling) to µm; "unknown" is taken as mm.
_SPACE_UM = {"meter": 1e6, "mm": 1e3, "micron": 1.0, "unknown": 1e3}
#: deflate never compresses better than about 1032:1, so a .nii.gz header that promises
#: more than this many bytes per compressed byte is lying.
_MAX_DEFLATE_RATIO = 1032
_MAGIC = {348: (344, (b"n+1\x00", b"ni1\x00")), 540: (4, (b"n+2\x00", b"ni2\x00"))}


def _nibabel():
    try:
        import nibabel
    except ImportError as exc:
        raise ImportError("reading and writing NIfTI needs nibabel: "
                          "pip install napari-mrmicro[nifti]") from exc
    return nibabel


# ---------------------------------------------------------------------------- reading

def _sniff(head: bytes, single_file: bool) -> bool:
    """True when ``head`` starts a NIfTI-1/2 header (either byte order)."""
    if len(head) < 348:
        return False
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size in _MAGIC and len(head) >= size:
            at, (single, pair) = _MAGIC[size]
            return head[at:at + 4] == (single if single_file else pair)
    return False


def _check_raw_header(path: Path, head: bytes, single_file: bool) -> None:
    """Refuse what nibabel would silently repair: ``dim[0]`` outside 1..7 and a
    ``vox_offset`` that is not a whole byte count past the header (NIfTI-1: float32)."""
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size in _MAGIC:
            break
    if size == 348:
        ndim = struct.unpack(order + "h", head[40:42])[0]
        offset = struct.unpack(order + "f", head[108:112])[0]
    else:
        ndim = struct.unpack(order + "q", head[16:24])[0]
        offset = struct.unpack(order + "q", head[168:176])[0]
    if not 1 <= ndim <= 7:
        raise FormatError(path, f"dim[0] = {ndim}: a NIfTI image has 1 to 7 dimensions")
    lowest = size + 4 if single_file else 0
    if not (math.isfinite(offset) and offset == int(offset) and offset >= lowest):
        raise FormatError(path, f"vox_offset = {offset!r}: the image data must start at a "
                                f"whole byte at or after {lowest}")


def _head(path: Path) -> bytes:
    """The first 540 bytes of the header (decompressed for ``.gz``)."""
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read(540)
        except (OSError, EOFError, zlib.error) as exc:
            raise FormatError(path, f"not a complete gzip stream ({exc})") from exc
    with open(path, "rb") as fh:
        return fh.read(540)


def can_read(path: Path) -> bool:
    """True for ``.nii``, ``.nii.gz`` and ``.hdr`` (with its ``.img``) carrying a NIfTI magic."""
    try:
        path = Path(path)
        name = path.name.lower()
        if not path.is_file() or not name.endswith((".nii", ".nii.gz", ".hdr")):
            return False
        if name.endswith(".hdr"):
            return _sniff(_head(path), False) and _image_file(path).is_file()
        return _sniff(_head(path), True)
    except Exception:  # a sniff never raises
        return False


def _image_file(hdr: Path) -> Path:
    """The ``.img`` beside a ``.hdr`` (same case as the header's suffix)."""
    return hdr.with_suffix(".IMG" if hdr.suffix.isupper() else ".img")


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a NIfTI image in napari order with its spacing in µm.

    Parameters
    ----------
    path : Path
        ``.nii``, ``.nii.gz`` or the ``.hdr`` of a pair.
    lazy : bool, optional
        Memory-map uncompressed data (default: above ``LAZY_BYTES``). ``.nii.gz`` is
        always read into memory (gzip streams cannot be memory-mapped); data with
        ``scl_slope``/``scl_inter`` scaling become a dask array of the memory map.

    Returns
    -------
    Volume
        ``(..., t, z, y, x)``: the NIfTI axes reversed.
    """
    path = Path(path)
    nib = _nibabel()
    if not path.is_file():
        raise FormatError(path, "no such file")
    if path.stat().st_size == 0:
        raise FormatError(path, "the file is empty")
    pair = path.name.lower().endswith(".hdr")
    head = _head(path)
    if not _sniff(head, not pair):
        raise FormatError(path, "not a NIfTI-1/NIfTI-2 file (no n+1/ni1/n+2/ni2 magic)")
    _check_raw_header(path, head, not pair)
    if pair and not _image_file(path).is_file():
        raise FormatError(path, f"the image file {_image_file(path).name} is missing")
    try:
        img = nib.load(path, mmap="r")
    except Exception as exc:
        hint = "truncated or corrupt gzip stream, or " if path.suffix.lower() == ".gz" else ""
        raise FormatError(path, f"{hint}unreadable NIfTI header (nibabel: {exc})") from exc
    hdr = img.header
    shape = tuple(int(n) for n in img.shape)
    dtype = np.dtype(hdr.get_data_dtype())
    if not shape or min(shape) < 1:
        raise FormatError(path, f"invalid image dimensions {shape}")
    if dtype.fields is not None:
        raise FormatError(path, f"structured (RGB/RGBA) NIfTI data {dtype} are not supported")
    nbytes = math.prod(shape) * dtype.itemsize
    _check_size(path, img, nbytes)

    space, time = hdr.get_xyzt_units()
    factor = _SPACE_UM.get(space, 1e3)
    nspatial = min(len(shape), 3)
    zooms = list(_as_written(hdr.get_zooms()))
    steps = [abs(z) if math.isfinite(z) and z != 0 else None for z in zooms[:nspatial]]
    spacing = tuple((s if s else 1.0) * factor for s in reversed(steps))
    affine = _as_written(img.affine)
    origin = tuple(affine[:nspatial, 3][::-1] * factor)
    world = _world_affine(hdr, affine, nspatial, factor)
    if world is not None:
        spacing = tuple(float(v) for v in geometry.voxel_sizes(world))

    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    scaled = (slope, inter) != (1.0, 0.0)
    if scaled:
        check_scaled_range(path, dtype, (slope, inter), "scl_slope/scl_inter")
    gz = path.name.lower().endswith(".gz")
    if lazy is None:
        lazy = nbytes > LAZY_BYTES
    try:
        raw = img.dataobj.get_unscaled().T  # memory map in (..., z, y, x) order
        if lazy and not gz:
            data = raw
            if scaled:
                import dask.array as da
                data = da.from_array(raw, chunks=(1,) * (raw.ndim - 2) + raw.shape[-2:])
                data = _scale(data, slope, inter)
        else:
            data = np.ascontiguousarray(raw, dtype=raw.dtype.newbyteorder("="))
            if scaled:
                data = _scale(data, slope, inter)
    except Exception as exc:
        raise FormatError(path, f"cannot read the image data ({exc})") from exc

    ours = _our_extension(hdr)
    lead = len(shape) - nspatial
    labels = tuple(("t", "u", "v", "w")[:lead][::-1]) + ("z", "y", "x")[3 - nspatial:]
    metadata = {
        "format": "nifti",
        "source": str(path),
        "header": _header_dict(nib, img, slope, inter),
        "acquisition": {},
        "unit": space,
        "spacing_known": space != "unknown" and all(steps),
    }
    if space == "unknown":
        metadata["unit_assumed"] = "mm"
    if lead and len(zooms) > 3 and unit_to_s(time) and math.isfinite(zooms[3]) \
            and zooms[3] > 0:  # pixdim[4] in xyzt_units' time unit: the repetition time
        metadata["time_step_s"] = zooms[3] * unit_to_s(time)
    labels, layer_type, name = apply_payload(ours, metadata, labels)
    gradients = find_gradient_files(path) if lead == 1 else None
    if gradients and "b_matrix_s_per_mm2" not in metadata["acquisition"]:
        metadata["acquisition"]["b_matrix_s_per_mm2"] = read_gradient_table(
            *gradients, affine, shape[3]).tolist()
        metadata["gradient_table"] = [str(p) for p in gradients]
    if ours is None and int(hdr["intent_code"]) in _LABEL_INTENTS and dtype.kind in "biu" \
            and not scaled:
        layer_type = "labels"
    channel_axis = (ours or {}).get("channel_axis")
    if channel_axis not in range(lead):
        channel_axis = None
    target = payload_dtype(ours, data)
    if target is not None and data.dtype.kind in "biu":  # labels stored as int32
        data = data.astype(target)
    return Volume(data, spacing, metadata, origin_um=origin, axis_labels=labels,
                  channel_axis=channel_axis, layer_type=layer_type, name=name,
                  affine_um=world)


def _scale(data, slope: float, inter: float):
    """``raw · scl_slope + scl_inter`` in float32 (complex64 for complex data)."""
    kind = np.complex64 if np.iscomplexobj(data) else np.float32
    return data.astype(kind) * kind(slope) + kind(inter)


def _as_written(values) -> np.ndarray:
    """Header numbers (stored as float32) as the decimals they were written from: 0.05 mm
    is 0.05, not float32's 0.0500000007 (a 50 µm voxel read as 50.0000007 µm)."""
    single = np.asarray(values, dtype=np.float32)
    return np.array([float(np.format_float_positional(v, unique=True)) if np.isfinite(v)
                     else float(v) for v in single.ravel()]).reshape(single.shape)


def _world_affine(hdr, affine: np.ndarray, nspatial: int, factor: float):
    """The world affine (µm, RAS+, napari order) of the spatial axes from the sform (if
    its code is set), else the qform (NIfTI-1 methods 3 and 2, as nibabel's
    ``get_best_affine``); None when neither is set (method 1: no orientation) or the
    transform is singular."""
    if not (int(hdr["sform_code"]) or int(hdr["qform_code"])):
        return None
    keep = list(range(nspatial)) + [3]
    try:
        world = geometry.from_xyz_affine(affine[np.ix_(keep, keep)], factor)
        return geometry.check_world_affine(world, nspatial)
    except ValueError:
        return None


def _check_size(path: Path, img, nbytes: int) -> None:
    """Refuse a header promising more voxel bytes than the file (or gzip stream) holds."""
    offset = int(img.dataobj.offset)  # img.header has vox_offset reset by nibabel
    data_path = Path(img.file_map["image"].filename)
    size = os.path.getsize(data_path)
    if not data_path.name.lower().endswith(".gz"):
        if offset + nbytes > size:
            raise FormatError(path, f"the header implies {offset + nbytes} bytes "
                                    f"({img.shape} voxels of {img.get_data_dtype()}) but "
                                    f"{data_path.name} holds {size}")
        return
    if offset + nbytes > size * _MAX_DEFLATE_RATIO:
        raise FormatError(path, f"the header implies {offset + nbytes} bytes, more than "
                                f"{size} compressed bytes can hold")
    with open(data_path, "rb") as fh:  # gzip trailer: uncompressed size modulo 2**32
        fh.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", fh.read(4))[0]
    if (offset + nbytes) % 2**32 > isize:
        raise FormatError(path, f"the header implies {offset + nbytes} bytes but the gzip "
                                f"stream holds {isize} (truncated or wrong dimensions)")


def _header_dict(nib, img, slope: float, inter: float) -> dict:
    """Every header field, JSON-friendly, plus affines, codes and axis codes."""
    hdr = img.header
    out = {key: _jsonable(hdr[key]) for key in hdr.keys()}
    # nibabel resets these in img.header on load; the data proxy keeps the file's values
    out["scl_slope"], out["scl_inter"] = slope, inter
    out["vox_offset"] = float(img.dataobj.offset)
    qform, qcode = hdr.get_qform(coded=True)
    sform, scode = hdr.get_sform(coded=True)
    out.update(
        qform=None if qform is None else np.asarray(qform).tolist(),
        sform=None if sform is None else np.asarray(sform).tolist(),
        qform_code=int(qcode), sform_code=int(scode),
        affine=np.asarray(img.affine).tolist(),
        axcodes=list(nib.aff2axcodes(img.affine)),
        extensions=[{"code": int(e.get_code()), "content": _jsonable(e.get_content())}
                    for e in hdr.extensions],
    )
    return out


def _jsonable(value):
    value = np.asarray(value) if isinstance(value, np.generic) else value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SV":
            value = value.tobytes()
        else:
            items = value.tolist()
            return [_finite(v) for v in items] if isinstance(items, list) else _finite(items)
    if isinstance(value, bytes):
        return value.rstrip(b"\x00").decode("latin-1")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return _finite(value)
    return str(value)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _our_extension(hdr) -> dict | None:
    """The JSON napari-mrmicro wrote into a comment extension, if any."""
    for ext in hdr.extensions:
        content = ext.get_content()
        if isinstance(content, bytes) and content.startswith(PAYLOAD_KEY.encode()):
            return parse_payload(content.rstrip(b"\x00"))
    return None


# ---------------------------------------------------------------------------- writing

def write(path: Path, volume: Volume) -> list[str]:
    """Write ``volume`` as NIfTI-1 (``.nii`` or gzip-compressed ``.nii.gz``).

    The spacing goes into ``pixdim`` in µm with ``xyzt_units`` = micron; the sform and
    qform (code 1, scanner) hold ``volume.affine_um`` (else ``diag(spacing)`` plus the
    origin) in NIfTI's (x, y, z) order. Up to four leading
    axes (echo, channel...) become NIfTI dimensions 4-7 with step 1, except a time axis
    (label ``t`` with ``metadata["time_step_s"]``) just before z: its step in s. Data keep their
    dtype (complex64 included) except bool -> uint8, float16 -> float32 and 64-bit
    integers that fit int32 -> int32 (the widest integer most NIfTI tools read); the
    original dtype comes back on read through the JSON extension.

    A diffusion series (one leading axis, ``acquisition["b_matrix_s_per_mm2"]``) also gets
    its FSL table beside it (:func:`~napari_mrmicro.io.fsl_gradients.write_gradient_table`).

    Returns
    -------
    list of str
        The paths written.
    """
    nib = _nibabel()
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(WRITE_SUFFIXES):
        raise FormatError(path, "NIfTI output needs a .nii or .nii.gz name")
    data = np.asarray(volume.data)
    nspatial = len(volume.spacing_um)
    lead = data.ndim - nspatial
    if nspatial == 1 or (nspatial == 2 and lead) or lead > 4:
        raise FormatError(path, f"NIfTI holds (x, y[, z]) plus up to 4 further axes with z; "
                                f"cannot store shape {data.shape} with {nspatial} spatial axes")
    original = data.dtype
    data = _nifti_dtype(path, data)
    world = volume.world_affine_um()
    spacing = tuple(geometry.voxel_sizes(world)[::-1])  # x, y, z
    xyz = geometry.to_xyz_affine(world, 1.0)  # µm: xyzt_units = micron
    affine = np.eye(4)
    keep = list(range(nspatial)) + [3]
    affine[np.ix_(keep, keep)] = xyz

    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    img = nib.Nifti1Image(data.T, affine, header=header)
    steps = volume.lead_steps()[::-1]  # NIfTI's 4th dimension is the axis before z
    img.header.set_zooms(tuple(spacing) + tuple(step for step, _ in steps))
    img.header.set_xyzt_units("micron", "sec" if steps and steps[0][1] == "second"
                              else "unknown")
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    if volume.layer_type == "labels":
        img.header.set_intent("label")
    img.header["descrip"] = b"napari-mrmicro"
    img.header.extensions.append(
        nib.nifti1.Nifti1Extension("comment", payload_text(
            volume, "nifti", original, channel_axis=volume.channel_axis).encode()))

    with atomic_output(path) as tmp, open(tmp, "wb") as raw:
        if name.endswith(".gz"):
            level = nib.openers.Opener.default_compresslevel
            with gzip.GzipFile(filename=path.name[:-3], mode="wb", fileobj=raw,
                               compresslevel=level) as stream:
                img.to_file_map({"image": nib.fileholders.FileHolder(fileobj=stream)})
        else:
            img.to_file_map({"image": nib.fileholders.FileHolder(fileobj=raw)})
    b = (volume.metadata.get("acquisition") or {}).get("b_matrix_s_per_mm2")
    if b is not None and lead == 1 and nspatial == 3 and len(b) == data.shape[0]:
        return [str(path)] + write_gradient_table(path, b, affine)
    return [str(path)]


def _nifti_dtype(path: Path, data: np.ndarray) -> np.ndarray:
    """A dtype NIfTI-1 holds, without changing any value."""
    dtype = data.dtype
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype == np.float16:
        return data.astype(np.float32)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if not data.size or (data.min() >= info.min and data.max() <= info.max):
            return data.astype(np.int32)
        return data
    if dtype.kind in "iufc":
        return data
    raise FormatError(path, f"NIfTI cannot hold {dtype} data")
