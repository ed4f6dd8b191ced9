"""Legacy MR microscopy folders of the NIH Image era.

Older MR microscopes (e.g. a 2.35 T dental system) left one folder per scan: the images
as one TIFF stack (often an NIH Image TIFF, see :mod:`napari_mrmicro.io.nih_tiff`) or as
numbered slices (``name.001``, ``name001.tif``, ``name.0001.raw``), next to free-form text
files named ``headfile``, ``Convert Info_auto``, ``Convert Info_fixed`` and
``Dimensions`` (any subset; matched case-insensitively, ``.txt`` allowed). No published
specification exists, so the texts are parsed tolerantly:

- a line ``key: value``, ``key = value`` or ``key<TAB>value`` (the first of the three
  separators wins) with a short key (≤ 5 words, ≤ 48 characters, starting with a
  letter) is an entry; every other line is kept verbatim as free text. CR, LF and CRLF
  line ends are all accepted; text that is not UTF-8 is read as Latin-1 (which maps the
  Mac Roman ``µ`` correctly).
- keys are recognised case-insensitively after dropping ``_ - . #`` and a bracketed unit
  (``FOV (mm)``); an axis may follow or precede the name (``fov x``, ``x dim``,
  ``fovx``). Recognised names (see ``ALIASES``): voxel size (``voxel size``, ``pixel
  size``, ``resolution``…), FOV (``fov``, ``field of view``), image size (``matrix``,
  ``dimensions``, ``width``, ``height``…), slice count, slice thickness, species, date,
  software, field (``B0``, ``field strength``), TE, TR and averages.
- values may hold several numbers (``256 x 256 x 60``, read x, y, z as written) with
  units (``25 mm``, ``100 um``, ``0.1mm``, ``97.66 µm``); a unit written once at the end
  applies to the numbers before it. Lengths without any unit are assumed to be mm for
  FOVs below 500 and for voxel sizes below 1, µm otherwise (MR microscopy voxels are
  1–1000 µm, FOVs 1–100 mm); such guesses are listed in ``metadata["assumed_units"]``.
  A resolution of unitless integers ≥ 16 (``Resolution: 256 x 256``) is an image size,
  an image size with length units (``Dimensions: 25 x 25 mm``) a FOV, and a
  ``Dimensions`` line of two or three bare integers the image size x, y(, z).

Voxel size, first found wins (``metadata["spacing_source"]``):

1. ``voxel size`` in ``Convert Info_fixed`` (the corrected conversion record);
2. FOV / image size from any text file (image size from the texts, else the image), or a
   voxel size stated in the other text files;
3. the TIFF's own calibration (NIH Image header, ImageJ or resolution tags);
4. 1 µm with ``metadata["spacing_known"] = False``.

The slice spacing comes from a third voxel/FOV value, else ``slice thickness``, else a
single (isotropic) voxel size, else the in-plane x spacing (``z_spacing_assumed``).

Raw slices need the image width and height in the texts; each slice file must hold
exactly width × height × 1 or 2 bytes, read as uint8 or big-endian uint16 (the Macintosh
default; MR magnitude images are non-negative).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import tifffile

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.io import nih_tiff
from napari_mrmicro.io._common import (
    LAZY_BYTES, FormatError, Volume, read_text_header, unit_to_um,
)

#: The text files, in the order their statements are preferred.
TEXT_FILES = ("Convert Info_fixed", "Convert Info_auto", "headfile", "Dimensions")
#: Suffixes of raw slice files ("" for ``name.001``).
RAW_SUFFIXES = ("", ".raw", ".dat")
_NUMBERED = re.compile(r"^(?P<stem>.*?)(?P<num>\d+)(?P<ext>\.(?:tiff?|raw|dat))?$", re.I)

#: Recognised key spellings (after normalising) for each field.
ALIASES = {
    "voxel": ("voxel size", "voxel", "voxelsize", "voxel dimensions", "voxel dims",
              "voxel spacing", "pixel size", "pixelsize", "pixel spacing",
              "pixel dimensions", "resolution", "spatial resolution", "image resolution",
              "in plane resolution", "inplane resolution"),
    "fov": ("fov", "field of view", "fov size", "field of view size"),
    "matrix": ("matrix", "matrix size", "dimensions", "dimension", "image dimensions",
               "image size", "dims", "dim", "size", "image matrix", "array size"),
    "width": ("width", "pixels per line", "columns", "image width"),
    "height": ("height", "lines", "rows", "image height"),
    "slices": ("slices", "number of slices", "nslices", "n slices", "slice count",
               "no of slices", "nr of slices", "num slices", "number of images", "images"),
    "slice_thickness": ("slice thickness", "thickness", "slice spacing", "slice distance",
                        "slice separation", "slice interval"),
    "species": ("species", "specimen", "sample", "animal", "organism", "object"),
    "date": ("date", "scan date", "acquisition date", "study date", "date of scan",
             "exam date", "scanned", "date acquired"),
    "software": ("software", "program", "software version", "converted with",
                 "converted by", "converter", "created by", "application"),
    "b0": ("field", "field strength", "b0", "magnet", "magnetic field"),
    "te": ("te", "echo time"),
    "tr": ("tr", "repetition time"),
    "averages": ("averages", "nex", "na", "number of averages", "accumulations"),
}
_BARE_SIZE = re.compile(r"^\d+(?:\s*[xX×,]\s*\d+|\s+\d+){1,2}$")
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_AXES = "xyz"
_TIME_MS = {"ms": 1.0, "msec": 1.0, "s": 1e3, "sec": 1e3, "us": 1e-3, "µs": 1e-3}


# ----------------------------------------------------------------------------- texts

def parse_text(text: str) -> dict:
    """Entries and free text of one info file.

    Returns
    -------
    dict
        ``{"entries": {key: value}, "free_text": [line, ...]}``; keys as written, values
        stripped strings (a list when a key repeats).
    """
    entries, free = {}, []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        cuts = [i for i in (line.find(":"), line.find("="), line.find("\t")) if i > 0]
        key = line[:min(cuts)].strip() if cuts else ""
        if key and len(key) <= 48 and len(key.split()) <= 5 and key[0].isalpha():
            value = line[min(cuts) + 1:].strip()
            if key in entries:
                previous = entries[key]
                entries[key] = (previous if isinstance(previous, list)
                                else [previous]) + [value]
            else:
                entries[key] = value
        else:
            free.append(stripped)
    return {"entries": entries, "free_text": free}


def recognise(key: str):
    """``(field, axis, unit_hint)`` of a key, or None when it is not a recognised name."""
    k = key.lower()
    hint = None
    bracket = re.search(r"[(\[]\s*([^)\]]+?)\s*[)\]]", k)
    if bracket:  # "FOV (mm)", "TE [ms]"
        hint = bracket.group(1)
        k = k[:bracket.start()] + k[bracket.end():]
    k = " ".join(re.sub(r"[_\-.#:]+", " ", k).split())
    candidates = [(k, None)]
    if len(k) > 1 and k[-1] in _AXES:
        candidates.append((k[:-1].rstrip(), k[-1]))
    if len(k) > 2 and k[0] in _AXES and k[1] == " ":
        candidates.append((k[2:], k[0]))
    for base, axis in candidates:
        name = _CANONICAL.get(base)
        if name == "width":
            return "matrix", "x", hint
        if name == "height":
            return "matrix", "y", hint
        if name:
            return name, axis, hint
    return None


def quantities(value: str) -> list:
    """Numbers of a value with the unit word after each (or the next one written).

    ``"25 x 25 x 12.5 mm"`` -> ``[(25.0, "mm"), (25.0, "mm"), (12.5, "mm")]``.
    """
    text = re.sub(r"(?<=[\d\sa-zµμ])[xX×*](?=\s*[-+]?[\d.])", " , ", str(value))
    tokens = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[A-Za-zµμ]+", text)
    out = []
    for i, token in enumerate(tokens):
        if token[-1].isdigit() or token[-1] == ".":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            unit = nxt if nxt and not (nxt[-1].isdigit() or nxt[-1] == ".") else None
            out.append([float(token), unit])
    for i in range(len(out) - 2, -1, -1):  # "25 x 25 mm": the unit also applies before
        if out[i][1] is None:
            out[i][1] = out[i + 1][1]
    return [tuple(q) for q in out]


# ---------------------------------------------------------------------------- finding

def _text_files(folder: Path) -> dict:
    """The info files present in ``folder``: ``{canonical name: path}``."""
    wanted = {}
    for name in TEXT_FILES:
        wanted[name.lower()] = name
        wanted[name.lower() + ".txt"] = name
    found = {}
    for entry in os.scandir(folder):
        name = wanted.get(entry.name.lower())
        if name and entry.is_file() and name not in found:
            found[name] = Path(entry.path)
    return found


def _find_images(folder: Path):
    """``("stack", [path])``, ``("tiff", [slices])``, ``("raw", [slices])`` or None.

    Slices are ordered by number; the largest numbered group wins; TIFFs before raw.
    """
    texts = {n.lower() for n in TEXT_FILES} | {n.lower() + ".txt" for n in TEXT_FILES}
    tiffs, groups = [], {}
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith(".") or name.lower() in texts or not entry.is_file():
            continue
        match = _NUMBERED.match(name)
        ext = (match.group("ext") or "").lower() if match else Path(name).suffix.lower()
        if ext in nih_tiff.TIFF_SUFFIXES:
            tiffs.append(Path(entry.path))
        if match and (ext in nih_tiff.TIFF_SUFFIXES or ext in RAW_SUFFIXES):
            key = (match.group("stem"), ext)
            groups.setdefault(key, []).append((int(match.group("num")), match.group("num"),
                                               Path(entry.path)))
    best = {}
    for (stem, ext), members in groups.items():
        kind = "tiff" if ext in nih_tiff.TIFF_SUFFIXES else "raw"
        if len(members) > len(best.get(kind, ((), ()))[1]):
            best[kind] = ((stem, ext), sorted(members))
    if "tiff" in best and len(best["tiff"][1]) > 1:
        return ("tiff",) + best["tiff"]
    if len(tiffs) == 1:
        return "stack", None, [(1, "1", tiffs[0])]
    if "raw" in best:
        return ("raw",) + best["raw"]
    return None


def _folder_of(path: Path) -> Path | None:
    if path.is_dir():
        return path
    if path.is_file() and path.name.lower() in ("headfile", "dimensions",
                                                "headfile.txt", "dimensions.txt"):
        return path.parent
    return None


def can_read(path) -> bool:
    """True for a folder (or its ``headfile``/``Dimensions``) with info texts and images."""
    try:
        folder = _folder_of(Path(path))
        return (folder is not None and bool(_text_files(folder))
                and _find_images(folder) is not None)
    except Exception:  # noqa: BLE001 - a sniff never raises
        return False


# ---------------------------------------------------------------------------- reading

class _Facts:
    """Recognised statements of all info files, in ``TEXT_FILES`` order."""

    def __init__(self, header: dict):
        self.items = []  # (file, key, field, axis, hint, value)
        for fname in TEXT_FILES:
            for key, value in header.get(fname, {}).get("entries", {}).items():
                found = recognise(key)
                if found:
                    for single in value if isinstance(value, list) else [value]:
                        field = _reclassify(key, found[0], found[2], single)
                        self.items.append((fname, key, field, *found[1:], single))
        for line in header.get("Dimensions", {}).get("free_text", []):
            if _BARE_SIZE.match(line):  # a Dimensions file holding just "256 x 256 x 60"
                self.items.append(("Dimensions", "", "matrix", None, None, line))
        self.assumed = []

    def get(self, field, files=TEXT_FILES):
        return [item for item in self.items if item[2] == field and item[0] in files]

    def text(self, field):
        found = self.get(field)
        return found[0][5] if found else None

    def lengths(self, item, kind: str) -> list:
        """Lengths in µm of one statement; unitless ones by the documented guess."""
        fname, key, _, _, hint, value = item
        out = []
        for number, unit in quantities(value):
            factor = unit_to_um(unit or hint)
            if factor is None and (unit or hint) is None:
                limit = 500.0 if kind == "fov" else 1.0
                factor = 1000.0 if number < limit else 1.0
                note = (f"{fname}: {key} = {value!r} taken as "
                        f"{'mm' if factor == 1000.0 else 'µm'}")
                if note not in self.assumed:
                    self.assumed.append(note)
            if factor is not None and number > 0:
                out.append(number * factor)
        return out

    def per_axis(self, field: str, files=TEXT_FILES, kind: str = "voxel") -> dict:
        """``{"x", "y", "z"}`` lengths in µm; ``"iso"`` for a single unaxed value."""
        out = {}
        for item in self.get(field, files):
            values = self.lengths(item, kind)
            if not values:
                continue
            if item[3]:
                out.setdefault(item[3], values[0])
            elif len(values) == 1:
                out.setdefault("iso", values[0])
            else:
                for axis, v in zip(_AXES, values):
                    out.setdefault(axis, v)
        return out

    def matrix(self) -> dict:
        """Image size stated in the texts: ``{"x", "y", "z"}`` voxel counts."""
        out = {}
        for item in self.get("matrix"):
            numbers = [int(n) for n, _ in quantities(item[5]) if n >= 1 and n == int(n)]
            if not numbers:
                continue
            if item[3]:
                out.setdefault(item[3], numbers[0])
            elif len(numbers) == 1:
                out.setdefault("x", numbers[0])
                out.setdefault("y", numbers[0])
            else:
                for axis, n in zip(_AXES, numbers):
                    out.setdefault(axis, n)
        slices = [int(n) for item in self.get("slices")
                  for n, _ in quantities(item[5])[:1] if n >= 1]
        if slices:
            out.setdefault("z", slices[0])
        return out


def _reclassify(key: str, field: str, hint: str | None, value: str) -> str:
    """An image size written with length units is a FOV (``Dimensions: 25 x 25 mm``); a
    ``resolution`` of unitless integers ≥ 16 is an image size (``Resolution: 256 x 256``).
    """
    found = quantities(value)
    if not found:
        return field
    lengths = [bool(unit_to_um(unit or hint)) for _, unit in found]
    if field == "matrix" and any(lengths):
        return "fov"
    if ("resolution" in key.lower() and not any(lengths) and hint is None
            and all(n == int(n) and n >= 16 for n, _ in found)):
        return "matrix"
    return field


def _read_texts(folder: Path) -> dict:
    header = {}
    for name, path in _text_files(folder).items():
        text = "" if path.stat().st_size == 0 else read_text_header(path)
        header[name] = parse_text(text)
    return header


def _missing_name(stem: str, ext: str, width: str, number: int) -> str:
    return f"{stem}{number:0{len(width)}d}{ext}"


def _check_numbering(folder: Path, key, members, expected: int | None, source: str):
    """Refuse gaps in the numbering and a slice count that disagrees with the texts."""
    stem, ext = key
    numbers = [m[0] for m in members]
    width = members[0][1]
    gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise FormatError(folder / _missing_name(stem, ext, width, gaps[0]),
                          f"slice {gaps[0]} is missing ({len(gaps)} gap(s) between slices "
                          f"{numbers[0]} and {numbers[-1]})")
    if expected is not None and expected > len(members):
        raise FormatError(folder / _missing_name(stem, ext, width, numbers[-1] + 1),
                          f"missing: {source} states {expected} slices, the folder holds "
                          f"{len(members)}")
    if expected is not None and expected < len(members):
        raise FormatError(folder, f"{source} states {expected} slices but the folder holds "
                                  f"{len(members)} numbered slices")


def _tiff_volume(path: Path, lazy: bool | None) -> Volume:
    if nih_tiff.can_read(path):
        return nih_tiff.read(path, lazy=lazy)
    from napari_mrmicro.io import tiff

    return tiff.read(path, lazy=lazy)


def _slice_pixels(path: Path):
    """One TIFF slice's pixels (NIH slices inverted when min-is-white)."""
    return np.asarray(_tiff_volume(path, lazy=False).data)


def _tiff_slices(paths: list, lazy: bool | None):
    """Stack TIFF slices, checking that all have the first slice's shape and type."""
    first = _tiff_volume(paths[0], lazy=False)
    shape, dtype = tuple(first.data.shape), first.data.dtype
    if len(shape) != 2:
        raise FormatError(paths[0], f"a slice of shape {shape}; expected a 2-D image")
    for path in paths[1:]:
        try:
            with tifffile.TiffFile(path) as tif:
                other = (tuple(tif.series[0].shape), np.dtype(tif.series[0].dtype))
        except Exception as exc:  # noqa: BLE001 - any unreadable slice
            raise FormatError(path, f"not a readable TIFF slice ({exc})") from exc
        if other != (shape, dtype):
            raise FormatError(path, f"slice of shape {other[0]} and type {other[1]} "
                                    f"differs from {paths[0].name}'s {shape} {dtype}")
    if lazy is None:
        lazy = len(paths) * first.data.nbytes > LAZY_BYTES
    if lazy:
        import dask.array as da
        from dask import delayed

        data = da.stack([da.from_delayed(delayed(_slice_pixels)(p), shape, dtype)
                         for p in paths])
    else:
        data = np.stack([np.asarray(first.data)] + [_slice_pixels(p) for p in paths[1:]])
    return data, first


def _raw_slices(paths: list, nx: int, ny: int, source: str, lazy: bool | None):
    """Stack raw slices of ``nx`` × ``ny`` uint8 or big-endian uint16 pixels."""
    sizes = [p.stat().st_size for p in paths]
    for path, size in zip(paths, sizes):
        if size != sizes[0]:
            raise FormatError(path, f"{size} bytes, but {paths[0].name} holds {sizes[0]}")
    bytes_per_pixel = {nx * ny: 1, 2 * nx * ny: 2}.get(sizes[0])
    if bytes_per_pixel is None:
        raise FormatError(paths[0], f"{sizes[0]} bytes is neither {nx}×{ny} 8-bit nor "
                                    f"16-bit pixels ({source})")
    stored = np.dtype("u1" if bytes_per_pixel == 1 else ">u2")
    native = stored.newbyteorder("=")
    if lazy is None:
        lazy = sum(sizes) > LAZY_BYTES
    if lazy:
        import dask.array as da

        data = da.stack([da.from_array(np.memmap(p, stored, "r", shape=(ny, nx)),
                                       chunks=(ny, nx)) for p in paths]).astype(native)
    else:
        data = np.stack([np.fromfile(p, stored).reshape(ny, nx) for p in paths])
        data = data.astype(native, copy=False)
    return data, str(stored)


def _acquisition(facts: _Facts, matrix: dict) -> dict:
    """Acquisition fields the texts state."""
    out = {}
    if all(a in matrix for a in _AXES):
        out["matrix"] = (matrix["z"], matrix["y"], matrix["x"])
        fov = facts.per_axis("fov", kind="fov")
        if "iso" in fov:
            fov.setdefault("x", fov["iso"])
            fov.setdefault("y", fov["iso"])
        thickness = facts.per_axis("slice_thickness")
        if "z" not in fov and "iso" in thickness:
            fov["z"] = thickness["iso"] * matrix["z"]
        if all(a in fov for a in _AXES):
            out["fov_um"] = (fov["z"], fov["y"], fov["x"])
    for item in facts.get("b0"):
        for number, unit in quantities(item[5])[:1]:
            unit = (unit or item[4] or "t").lower()  # a bare number is in tesla
            if number > 0 and unit in ("t", "tesla"):
                out.setdefault("b0_tesla", number)
            elif number > 0 and unit == "mhz":  # ¹H frequency
                out.setdefault("b0_tesla", number / GAMMA_BAR_MHZ_PER_T["1H"])
    for field, name in (("te", "te_ms"), ("tr", "tr_ms")):
        for item in facts.get(field):
            units = [(n, (u or item[4] or "ms").lower()) for n, u in quantities(item[5])]
            times = [n * _TIME_MS[u] for n, u in units if u in _TIME_MS and n > 0]
            if times and name not in out:  # a bare number is in ms
                out[name] = tuple(times) if field == "te" else times[0]
    for item in facts.get("averages")[:1]:
        numbers = quantities(item[5])
        if numbers and numbers[0][0] >= 1:
            out["averages"] = int(numbers[0][0])
    return out


def _spacing(facts: _Facts, matrix: dict, shape: tuple, tiff_volume: Volume | None):
    """(z, y, x) spacing in µm, its source and whether z was assumed."""
    shape_axes = {"x": shape[-1], "y": shape[-2], "z": shape[0] if len(shape) == 3 else 1}
    thickness = facts.per_axis("slice_thickness").get("iso")

    def finish(xy: dict, z_from):
        x = xy.get("x", xy.get("iso"))
        y = xy.get("y", x)
        z = xy.get("z") or thickness or z_from
        return (z or x, y, x), z is None

    voxel = facts.per_axis("voxel", files=("Convert Info_fixed",))
    if "x" in voxel or "iso" in voxel:
        spacing, assumed = finish(voxel, voxel.get("iso"))
        return spacing, "Convert Info_fixed: voxel size", assumed
    fov = facts.per_axis("fov", kind="fov")
    if "x" in fov or "iso" in fov:
        n = {a: matrix.get(a, shape_axes[a]) for a in _AXES}
        fx = fov.get("x", fov.get("iso"))
        per = {"x": fx / n["x"], "y": fov.get("y", fx) / n["y"]}
        if "z" in fov:
            per["z"] = fov["z"] / n["z"]
        spacing, assumed = finish(per, None)
        return spacing, "text: FOV / image size", assumed
    voxel = facts.per_axis("voxel", files=TEXT_FILES[1:])
    if "x" in voxel or "iso" in voxel:
        spacing, assumed = finish(voxel, voxel.get("iso"))
        return spacing, "text: voxel size", assumed
    if tiff_volume is not None and tiff_volume.metadata.get("spacing_known"):
        cal = tiff_volume.spacing_um
        z_known = len(cal) == 3 and not tiff_volume.metadata.get("z_spacing_assumed")
        spacing, assumed = finish({"x": cal[-1], "y": cal[-2]},
                                  cal[0] if z_known else None)
        return spacing, f"tiff: {tiff_volume.metadata['format']}", assumed
    return (1.0, 1.0, 1.0), "default", False


def read(path, lazy: bool | None = None) -> Volume:
    """Read a legacy MRM folder (info texts + TIFF stack or numbered slices) in µm.

    Parameters
    ----------
    path : str or Path
        The folder, or its ``headfile`` / ``Dimensions`` file.
    lazy : bool, optional
        dask (one chunk per slice) or memory map instead of reading; default when the
        image data exceed ``LAZY_BYTES``.

    Returns
    -------
    Volume
        ``(z, y, x)`` data; ``metadata["header"]`` holds every text file's entries and
        free text by file name; ``species``, ``date``, ``software`` when stated.

    Raises
    ------
    FormatError
        No info texts or images, missing slices, or sizes that disagree between the
        texts and the image files.
    """
    path = Path(path)
    folder = _folder_of(path)
    if folder is None:
        raise FormatError(path, "not a folder (or its headfile/Dimensions file)")
    header = _read_texts(folder)
    if not header:
        raise FormatError(folder, f"no info text ({', '.join(TEXT_FILES)})")
    found = _find_images(folder)
    if found is None:
        raise FormatError(folder, "no TIFF stack or numbered image slices")
    kind, key, members = found
    paths = [m[2] for m in members]
    facts = _Facts(header)
    matrix = facts.matrix()
    source = ", ".join(sorted({i[0] for i in facts.get("matrix") + facts.get("slices")}))
    metadata = {"format": "nih_folder", "source": str(folder), "header": header,
                "image_files": [p.name for p in paths]}
    tiff_volume = None
    if kind == "raw":
        if "x" not in matrix or "y" not in matrix:
            raise FormatError(folder, "raw slices need the image width and height "
                                      "(matrix/dimensions) in the info texts")
        _check_numbering(folder, key, members, matrix.get("z"), source)
        data, metadata["raw_dtype"] = _raw_slices(paths, matrix["x"], matrix["y"],
                                                  source, lazy)
    elif kind == "tiff":
        _check_numbering(folder, key, members, matrix.get("z"), source)
        data, tiff_volume = _tiff_slices(paths, lazy)
    else:
        tiff_volume = _tiff_volume(paths[0], lazy)
        data = tiff_volume.data
        if tiff_volume.channel_axis is not None or data.ndim not in (2, 3):
            raise FormatError(paths[0], f"image of shape {data.shape}; expected a "
                                        "grayscale image or stack")
        if data.ndim == 2:
            data = data[None]
        if "z" in matrix and matrix["z"] != data.shape[0]:
            raise FormatError(paths[0], f"{data.shape[0]} slices, but {source} states "
                                        f"{matrix['z']}")
    if tiff_volume is not None:
        metadata["tiff_metadata"] = {k: v for k, v in tiff_volume.metadata.items()
                                     if k not in ("source",)}
    stated = (matrix.get("y", data.shape[1]), matrix.get("x", data.shape[2]))
    if stated != tuple(data.shape[1:]):
        raise FormatError(paths[0], f"image of {data.shape[2]}×{data.shape[1]} pixels, "
                                    f"but {source} states {stated[1]}×{stated[0]}")
    spacing, metadata["spacing_source"], z_assumed = _spacing(facts, matrix, data.shape,
                                                             tiff_volume)
    metadata["spacing_known"] = metadata["spacing_source"] != "default"
    if z_assumed and metadata["spacing_known"]:
        metadata["z_spacing_assumed"] = True
    if facts.assumed:
        metadata["assumed_units"] = facts.assumed
    metadata["acquisition"] = _acquisition(facts, matrix)
    for field in ("species", "date", "software"):
        if facts.text(field):
            metadata[field] = facts.text(field)
    return Volume(data, spacing, metadata, name=folder.name)
