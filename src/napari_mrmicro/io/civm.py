"""Duke CIVM image series: a headfile plus one headerless file per slice.

The images folder (usually ``<runno>images/``) holds ``<runno>.headfile`` (see
:mod:`napari_mrmicro.io.headfile`) and slices ``<runno>imx.NNNN.raw``, numbered from 1
with 4 digits: ``dim_Y`` rows of ``dim_X`` big-endian uint16 values, x fastest
(``.f32`` slices: big-endian float32). ``fovx/fovy/fovz`` are in mm, ``te`` in ms,
``tr`` in µs. Layout as written by the CIVM pipeline (civmscripts); see REFERENCES.md
"Duke CIVM headfile and slices". Files written here add ``mrmicro_slope`` and
``mrmicro_intercept`` when data were mapped linearly to uint16 (value = raw·slope +
intercept).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_mrmicro.core import geometry
from napari_mrmicro.core.acquisition import Acquisition, acquisition_from_headfile
from napari_mrmicro.io._common import (LAZY_BYTES, FormatError, Volume,
                                       check_scaled_range, process_alive, remove_stale_temporaries,
                                       temporary_name)
from napari_mrmicro.io.headfile import format_headfile, parse_value, read_headfile

WRITE_SUFFIXES = (".headfile",)

_DIMS = ("dim_Z", "dim_Y", "dim_X")
_FOVS = ("fovz", "fovy", "fovx")
#: Headfile key holding the world placement (voxel (z, y, x) -> µm RAS+, napari order; 4:4).
AFFINE_KEY = "mrmicro_affine_um"
_SLICE = re.compile(r"(?P<prefix>.*?\D)?(?P<number>\d{4,})\.(?P<ext>raw|f32)", re.IGNORECASE)
_ON_DISK = {"raw": np.dtype(">u2"), "f32": np.dtype(">f4")}
_HEADFILE_MAX_BYTES = 4 * 2**20
_U16_MAX = 65535
_F32_MAX = float(np.finfo(np.float32).max)
#: Acquisition field -> the headfile keys :meth:`Acquisition.to_headfile` writes for it.
_ACQUISITION_KEYS = {
    "te_ms": ("te", "ne", "mrmicro_te_ms"), "tr_ms": ("tr",), "flip_deg": ("alpha",),
    "b0_tesla": ("B_tesla",), "nucleus": ("U_nucleus",), "sequence": ("S_PSDname",),
    "averages": ("nex",), "bandwidth_hz": ("mrmicro_bandwidth_hz",),
    "temperature_k": ("mrmicro_temperature_k",), "b0_direction": ("mrmicro_b0_direction",),
    "readout_axis": ("mrmicro_readout_axis",),
    "max_gradient_mT_per_m": ("mrmicro_max_gradient_mT_per_m",),
}


# --------------------------------------------------------------------------- reading


def _series_headfile(path: Path) -> dict | None:
    """The parsed header when ``path`` is a text headfile with dim_X/Y/Z, else None."""
    try:
        size = path.stat().st_size
        if not path.is_file() or not 0 < size <= _HEADFILE_MAX_BYTES:
            return None
        with open(path, "rb") as f:
            head = f.read(512)
        if b"\x00" in head:
            return None
        header = read_headfile(path)
    except (OSError, FormatError):
        return None
    return header if all(k in header for k in _DIMS) else None


def _locate(path: Path) -> Path:
    """The headfile for a headfile, an images folder or a slice file in one."""
    if path.is_file() and path.suffix.lower() == ".headfile":
        if _series_headfile(path) is None:
            read_headfile(path)  # raises the precise text error, if there is one
            raise FormatError(path, "not a CIVM headfile: dim_X, dim_Y and dim_Z are needed")
        return path
    folder = path if path.is_dir() else path.parent
    if path.is_file() and not _SLICE.fullmatch(path.name):
        raise FormatError(path, "not a CIVM headfile or slice (<runno>...NNNN.raw/.f32)")
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() == ".headfile"
                   and _series_headfile(p) is not None)
    if len(found) > 1:
        named = [p for p in found if f"{p.stem}images" == folder.name]
        found = named or found
    if not found:
        raise FormatError(path, f"no CIVM headfile with dim_X/dim_Y/dim_Z in {folder}")
    if len(found) > 1:
        raise FormatError(path, f"several CIVM headfiles in {folder} "
                                f"({', '.join(p.name for p in found)}); open one of them")
    return found[0]


def can_read(path: Path) -> bool:
    """True for a CIVM headfile, its images folder, or a ``.raw``/``.f32`` slice in it."""
    try:
        path = Path(path)
        if not (path.is_dir() or path.suffix.lower() in (".headfile", ".raw", ".f32")):
            return False
        _locate(path)
    except (OSError, FormatError):
        return False
    return True


def _dims(headfile: Path, header: dict) -> tuple:
    """``(dim_Z, dim_Y, dim_X)`` as positive ints."""
    out = []
    for key in _DIMS:
        value = header.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FormatError(headfile, f"{key}={value!r}: needs a positive whole number")
        out.append(value)
    return tuple(out)


def _slice_files(headfile: Path, header: dict, nz: int) -> tuple:
    """The slice files 1..nz of this series and their type (``"raw"`` or ``"f32"``)."""
    folder = headfile.parent
    groups = {}
    for name in sorted(os.listdir(folder)):
        match = _SLICE.fullmatch(name)
        if match and (folder / name).is_file():
            key = (match["prefix"] or "", match["ext"].lower())
            groups.setdefault(key, {}).setdefault(int(match["number"]), folder / name)
    runnos = [str(header["U_runno"])] if header.get("U_runno") not in (None, "") else []
    runnos.append(headfile.stem)
    for runno in runnos:
        owned = {key: files for key, files in groups.items() if key[0].startswith(runno)}
        if owned:
            groups = owned
            break
    if not groups:
        raise FormatError(folder, f"no slice files (<runno>imx.NNNN.raw or .f32) next to "
                                  f"{headfile.name}")
    complete = [key for key, files in groups.items()
                if all(n in files for n in range(1, nz + 1))]
    if complete:
        best = min(complete, key=lambda k: (k[0] != f"{runnos[0]}imx.", k[1] != "raw",
                                            len(k[0]), k[0]))
        return [groups[best][n] for n in range(1, nz + 1)], best[1], f"{best[0]}NNNN.{best[1]}"
    present = {key: sum(1 for n in files if 1 <= n <= nz) for key, files in groups.items()}
    prefix, ext = max(groups, key=present.get)
    files, missing, n = groups[(prefix, ext)], [], 1
    while len(missing) < 10 and n <= nz:  # at most len(files) + 10 steps
        if n not in files:
            missing.append(n)
        n += 1
    count = nz - present[(prefix, ext)]
    more = ", ..." if count > len(missing) else ""
    raise FormatError(folder, f"{count} of the {nz} slices (dim_Z in {headfile.name}) are "
                              f"missing: {prefix}NNNN.{ext} with NNNN = "
                              f"{', '.join(f'{m:04d}' for m in missing)}{more}")


def _scaling(headfile: Path, header: dict):
    """``(slope, intercept)`` from mrmicro_slope/intercept, or None."""
    if header.get("mrmicro_slope") is None and header.get("mrmicro_intercept") is None:
        return None
    slope, intercept = header.get("mrmicro_slope"), header.get("mrmicro_intercept")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
               for v in (slope, intercept)) or slope == 0:
        raise FormatError(headfile, f"mrmicro_slope={slope!r}, mrmicro_intercept="
                                    f"{intercept!r}: need both, finite, the slope non-zero")
    check_scaled_range(headfile, np.dtype(np.uint16), (slope, intercept),
                       "mrmicro_slope/mrmicro_intercept")
    return float(slope), float(intercept)


def _load_slice(path: Path, disk: np.dtype, shape: tuple, scaling) -> np.ndarray:
    """One slice as a native-endian ``(1, y, x)`` array, scaled to float32 if asked."""
    raw = np.fromfile(path, dtype=disk, count=shape[0] * shape[1])
    if raw.size != shape[0] * shape[1]:
        raise FormatError(path, f"slice truncated while reading: {raw.size} of "
                                f"{shape[0] * shape[1]} values")
    raw = raw.reshape((1,) + shape)
    if scaling is not None:
        return (raw * scaling[0] + scaling[1]).astype(np.float32)
    return raw.astype(disk.newbyteorder("="))


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a CIVM series from its headfile, images folder or one of its slices.

    Parameters
    ----------
    path : Path
        ``<runno>.headfile``, the folder holding it, or a slice file next to it.
    lazy : bool, optional
        Return a dask array with one chunk per slice file. Default: lazy above
        ``LAZY_BYTES``.

    Returns
    -------
    Volume
        ``(z, y, x)`` uint16 or float32 (float32 also for scaled series); spacing from
        ``fov*`` (mm) / ``dim_*``, or 1 µm with ``metadata["spacing_known"] = False``.
    """
    path = Path(path)
    finish_interrupted_writes(path if path.is_dir() else path.parent)
    headfile = _locate(path)
    header = read_headfile(headfile)
    nz, ny, nx = _dims(headfile, header)
    files, ext, pattern = _slice_files(headfile, header, nz)
    disk = _ON_DISK[ext]
    slice_bytes = ny * nx * disk.itemsize
    for file in files:  # every size checked before anything is allocated
        size = file.stat().st_size
        if size != slice_bytes:
            raise FormatError(file, f"slice holds {size} bytes but {headfile.name} says "
                                    f"dim_X={nx} x dim_Y={ny} {disk.name[1:]} values = "
                                    f"{slice_bytes} bytes")
    scaling = _scaling(headfile, header)
    dtype = np.dtype(np.float32) if scaling else disk.newbyteorder("=")
    fovs = [header.get(k) for k in _FOVS]
    spacing_known = all(isinstance(f, (int, float)) and not isinstance(f, bool)
                        and np.isfinite(f) and f > 0 for f in fovs)
    spacing = (tuple(f * 1000.0 / n for f, n in zip(fovs, (nz, ny, nx), strict=True))
               if spacing_known else (1.0, 1.0, 1.0))
    if lazy is None:
        lazy = nz * ny * nx * dtype.itemsize > LAZY_BYTES
    if lazy:
        import dask.array as da
        from dask.base import tokenize

        stamp = [(str(f), f.stat().st_mtime_ns) for f in files]
        data = da.map_blocks(
            lambda block_id=None: _load_slice(files[block_id[0]], disk, (ny, nx), scaling),
            chunks=((1,) * nz, (ny,), (nx,)), dtype=dtype, meta=np.empty((0, 0, 0), dtype),
            name=f"civm-{tokenize(stamp, scaling)}")
    else:
        data = np.empty((nz, ny, nx), dtype=dtype)
        for z, file in enumerate(files):
            data[z] = _load_slice(file, disk, (ny, nx), scaling)[0]
    metadata = {
        "format": "civm", "source": str(path), "headfile": str(headfile), "header": header,
        "acquisition": acquisition_from_headfile(header), "slice_files": pattern,
        "dtype_on_disk": f"{'uint16' if ext == 'raw' else 'float32'} big-endian",
        "spacing_known": spacing_known,
        "spacing_source": "fovx/fovy/fovz (mm) / dim" if spacing_known
        else "none in the headfile (1 µm assumed)",
    }
    if scaling:
        metadata["scaling"] = {"slope": scaling[0], "intercept": scaling[1]}
    runno = header.get("U_runno")
    affine = geometry.stored_affine(header.get(AFFINE_KEY), 3)
    origin = None
    if affine is not None:  # written by napari-mrmicro: the world placement, µm RAS+
        spacing = tuple(float(v) for v in geometry.voxel_sizes(affine))
        origin = tuple(float(v) for v in affine[:3, 3])
        if geometry.is_axis_aligned(affine):
            affine = None
    return Volume(data, spacing, metadata, origin_um=origin, affine_um=affine,
                  name=str(runno) if runno not in (None, "") else headfile.stem)


# --------------------------------------------------------------------------- writing


def _value_range(path: Path, data, nz: int) -> dict:
    """Range and flags of the data, one slice at a time (dask/memmap friendly)."""
    stats = {"lo": np.inf, "hi": -np.inf, "nan": False, "inf": False, "fraction": False}
    for z in range(nz):
        plane = np.asarray(data[z])
        if plane.dtype.kind not in "biuf":
            raise FormatError(path, f"cannot write {plane.dtype} data as CIVM slices")
        if plane.dtype.kind == "f":
            finite = np.isfinite(plane)
            stats["nan"] |= bool(np.isnan(plane).any())
            stats["inf"] |= bool(np.isinf(plane).any())
            plane = plane[finite]
            stats["fraction"] |= bool((plane != np.rint(plane)).any())
        if plane.size:
            stats["lo"] = min(stats["lo"], float(plane.min()))
            stats["hi"] = max(stats["hi"], float(plane.max()))
    return stats


def _encoding(path: Path, stats: dict, dtype: str, scale: bool):
    """``(disk dtype, (slope, intercept) or None)`` for the write, or a FormatError."""
    if dtype in ("f32", "float32"):
        if scale:
            raise FormatError(path, "scale=True writes uint16 slices; it cannot be combined "
                                    "with dtype='f32'")
        if stats["inf"] or max(abs(stats["lo"]), abs(stats["hi"])) > _F32_MAX:
            raise FormatError(path, "infinite values or values beyond the float32 range "
                                    "cannot be stored")
        return _ON_DISK["f32"], None
    if dtype not in ("auto", "u16", "uint16"):
        raise FormatError(path, f"dtype={dtype!r}: choose 'auto', 'u16' or 'f32'")
    lo, hi = stats["lo"], stats["hi"]
    reasons = [text for flag, text in (
        (stats["nan"], "NaN values"), (stats["inf"], "infinite values"),
        (lo < 0, f"negative values (min {lo:g})"), (hi > _U16_MAX, f"values above 65535 "
                                                                   f"(max {hi:g})"),
        (stats["fraction"], "fractional values")) if flag]
    if not reasons:
        return _ON_DISK["raw"], None
    if not scale:
        raise FormatError(path, f"the data do not fit uint16 slices exactly ({', '.join(reasons)});"
                                " pass dtype='f32' to store float32 slices, or scale=True to "
                                "map them linearly to 0..65535 (mrmicro_slope/intercept in the "
                                "headfile; reading restores the values to within slope/2)")
    if stats["nan"] or stats["inf"]:
        raise FormatError(path, "scale=True needs finite data (NaN or infinite values "
                                "found); pass dtype='f32' to keep NaN")
    return _ON_DISK["raw"], ((hi - lo) / _U16_MAX if hi > lo else 1.0, lo)


def _agrees(stated, wanted) -> bool:
    if stated is None:
        return False
    if isinstance(stated, str) or isinstance(wanted, str):
        return stated == wanted
    a, b = np.atleast_1d(np.asarray(stated, float)), np.atleast_1d(np.asarray(wanted, float))
    return a.shape == b.shape and bool(np.all(a == b))


def _header(path: Path, volume: Volume, runno: str, shape: tuple, spacing: tuple,
            scaling) -> dict:
    """The original CIVM header updated with geometry, runno, acquisition and scaling."""
    meta = volume.metadata or {}
    header = dict(meta.get("header") or {}) if meta.get("format") == "civm" else {}
    for key in ("mrmicro_slope", "mrmicro_intercept", AFFINE_KEY) + _FOVS:
        header.pop(key, None)
    nz, ny, nx = shape
    header.update(dim_X=nx, dim_Y=ny, dim_Z=nz, U_runno=parse_value(runno))
    fov_um = tuple(s * n for s, n in zip(spacing, shape, strict=True))
    if meta.get("spacing_known", True):
        header.update(fovx=fov_um[2] / 1000.0, fovy=fov_um[1] / 1000.0,
                      fovz=fov_um[0] / 1000.0)
    fields = {k: v for k, v in (meta.get("acquisition") or {}).items()
              if k in _ACQUISITION_KEYS and v is not None}
    if fields:
        try:
            protocol = Acquisition.from_dict({**fields, "matrix": shape, "fov_um": fov_um})
            keys = protocol.to_headfile()
        except (ValueError, TypeError, IndexError) as error:
            raise FormatError(path, f"acquisition metadata cannot be written: {error}") from None
        for name in fields:
            if not _agrees(acquisition_from_headfile(header).get(name),
                           getattr(protocol, name)):
                header.update({k: keys[k] for k in _ACQUISITION_KEYS[name]})
    if scaling:
        header.update(mrmicro_slope=scaling[0], mrmicro_intercept=scaling[1])
    placed = volume.affine_um is not None or volume.origin_um is not None
    if placed and len(volume.spacing_um) == 3:
        header[AFFINE_KEY] = volume.world_affine_um().tolist()
    return header


def _write_slice(file: Path, plane, disk: np.dtype, scaling) -> None:
    plane = np.asarray(plane)
    if scaling:
        plane = np.clip(np.rint((plane.astype(np.float64) - scaling[1]) / scaling[0]),
                        0, _U16_MAX)
    np.ascontiguousarray(plane, dtype=disk).tofile(file)


def _journal(path: Path) -> Path:
    """The commit journal of the series ``path`` (a headfile): present only while the
    staged series is being moved into place."""
    return path.parent / f".{path.name}.commit.json"


def _own_name(path: Path, name) -> bool:
    """True for the headfile's own name or one of its ``<runno>imx.NNNN.raw/.f32`` slices."""
    if not isinstance(name, str) or name != Path(name).name:
        return False
    own = re.compile(re.escape(path.stem) + r"imx\.\d{4,}\.(?:raw|f32)", re.IGNORECASE)
    return name == path.name or own.fullmatch(name) is not None


def _move_in(path: Path, staging: Path, files: list, delete: list, done: list) -> None:
    """Move the staged ``files`` into place and the old series' files (those replaced and
    those in ``delete``) aside into ``staging/.replaced``, noting each step in ``done``;
    steps already taken by an interrupted run are skipped, so this can run again."""
    folder, replaced = path.parent, staging / ".replaced"
    replaced.mkdir(exist_ok=True)
    for name in files:  # slices first, the headfile last
        if not (staging / name).exists():
            continue  # moved in already
        if os.path.lexists(folder / name):
            os.replace(folder / name, replaced / name)
            done.append(("aside", name))
        os.replace(staging / name, folder / name)
        done.append(("in", name))
    for name in delete:
        if os.path.lexists(folder / name):
            os.replace(folder / name, replaced / name)
            done.append(("aside", name))


def _undo(path: Path, staging: Path, done: list) -> None:
    """Put the old series back after a failed :func:`_move_in` (in this process)."""
    folder = path.parent
    for step, name in reversed(done):
        if step == "in":
            os.replace(folder / name, staging / name)
        else:
            os.replace(staging / ".replaced" / name, folder / name)


def finish_interrupted_write(path: Path) -> None:
    """Complete a series write of headfile ``path`` that was killed while committing.

    The journal is written once the whole new series is staged, so an interrupted commit
    is rolled forward: the staged files still waiting are moved into place and the old
    series' files removed. A journal that names anything but this series' own files is
    refused. Without a journal nothing happens.
    """
    journal = _journal(path)
    if not journal.is_file():
        return
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
        staging = path.parent / plan["staging"]
        files, delete = list(plan["files"]), list(plan["delete"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FormatError(journal, f"unreadable commit journal ({error}); move it away to "
                                   "read the series as it is") from None
    if not (str(plan["staging"]).startswith(f".{path.name}.") and
            staging.parent == path.parent and all(_own_name(path, n) for n in files + delete)):
        raise FormatError(journal, "commit journal names files of another series")
    writer = plan.get("pid")
    if isinstance(writer, int) and writer != os.getpid() and process_alive(writer):
        raise FormatError(path, f"the series is being written by process {writer}; read it "
                                "when that write has finished")
    try:
        _move_in(path, staging, files, delete, [])
        journal.unlink()
    except OSError as error:
        raise FormatError(path, f"an interrupted write of this series cannot be completed "
                                f"({error})") from None
    shutil.rmtree(staging, ignore_errors=True)


def finish_interrupted_writes(folder: Path) -> None:
    """:func:`finish_interrupted_write` for every series in ``folder`` with a journal."""
    suffix = ".commit.json"
    for name in os.listdir(folder):
        if name.startswith(".") and name.lower().endswith(".headfile" + suffix):
            finish_interrupted_write(folder / name[1:-len(suffix)])


def _replaced_slices(path: Path, names: list) -> list:
    """The slices of the series at ``path`` that the new ``names`` leave over (deleted at
    the commit); refuses slice files of this run number that belong to no series here."""
    folder = path.parent
    existing = {n for n in os.listdir(folder) if n != path.name and _own_name(path, n)}
    if not existing:
        return []
    old = _series_headfile(path) if path.is_file() else None
    owned = set()
    if old is not None:
        with contextlib.suppress(FormatError, OSError):
            owned = {n for n in existing
                     if 1 <= int(_SLICE.fullmatch(n)["number"]) <= _dims(path, old)[0]}
    foreign = sorted(existing - owned)
    if foreign:
        raise FormatError(path, f"{folder} holds slices of no series here ({foreign[0]}"
                                f"{', ...' if len(foreign) > 1 else ''}); refusing to mix or "
                                "delete them: move them away first")
    return sorted(owned - set(names))


def _commit(path: Path, staging: Path, names: list, delete: list) -> None:
    """Record the staged series in a journal, then move it in.

    The journal is the commit point: a kill before it leaves the old series, a kill after
    it is rolled forward by the next read or write (:func:`finish_interrupted_write`). An
    error in this process puts the old series back.
    """
    journal, done = _journal(path), []
    tmp = staging / journal.name
    tmp.write_text(json.dumps({"staging": staging.name, "files": names + [path.name],
                               "delete": delete, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, journal)
    try:
        _move_in(path, staging, names + [path.name], delete, done)
    except BaseException:
        _undo(path, staging, done)
        journal.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    journal.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def write(path: Path, volume: Volume, dtype: str = "auto", scale: bool = False) -> list[str]:
    """Write ``volume`` as ``<folder>/<runno>.headfile`` plus ``<runno>imx.NNNN.raw`` slices.

    Parameters
    ----------
    path : Path
        The headfile to write; its stem is the run number; the folder must exist.
    volume : Volume
        Real 3-D ``(z, y, x)`` data, or 2-D written as one slice (z spacing = x spacing).
    dtype : {"auto", "u16", "f32"}
        ``"auto"``/``"u16"``: uint16 slices, only for data that fit exactly (whole
        numbers in 0..65535); ``"f32"``: big-endian float32 slices (NaN allowed).
    scale : bool
        Map data that do not fit uint16 linearly to 0..65535, recording
        ``mrmicro_slope``/``mrmicro_intercept`` so reading restores them.

    Returns
    -------
    list of str
        The slice paths, then the headfile.
    """
    path = Path(path)
    if path.suffix.lower() != ".headfile" or not path.stem:
        raise FormatError(path, "a CIVM series is written as <folder>/<runno>.headfile")
    data, spacing = volume.data, tuple(volume.spacing_um)
    if np.dtype(data.dtype).kind == "c":
        raise FormatError(path, "complex data cannot be written as CIVM slices; save the "
                                "magnitude and the phase as two series")
    if len(data.shape) == 2 and len(spacing) == 2:
        data, spacing = data[None], (spacing[1],) + spacing
    if len(data.shape) != 3 or len(spacing) != 3:
        raise FormatError(path, f"{len(data.shape)}-D data with axes {volume.axis_labels}: "
                                "a CIVM series holds one (z, y, x) volume; save each echo or "
                                "channel as its own series")
    if 0 in data.shape:
        raise FormatError(path, f"empty data of shape {tuple(data.shape)}")
    shape = tuple(int(n) for n in data.shape)
    disk, scaling = _encoding(path, _value_range(path, data, shape[0]), dtype, scale)
    runno = path.stem
    try:
        text = format_headfile(_header(path, volume, runno, shape, spacing, scaling))
    except ValueError as error:
        raise FormatError(path, f"header cannot be written: {error}") from None
    folder = path.parent
    if not folder.is_dir():
        raise FormatError(path, f"the folder {folder} does not exist")
    ext = "raw" if disk == _ON_DISK["raw"] else "f32"
    names = [f"{runno}imx.{z + 1:04d}.{ext}" for z in range(shape[0])]
    finish_interrupted_write(path)
    remove_stale_temporaries(path)
    for target in [path] + [folder / n for n in names]:
        if os.path.lexists(target) and (target.is_symlink() or not target.is_file()):
            raise FormatError(target, "exists and is not a file of a CIVM series; refusing "
                                      "to replace it (move it away first)")
    delete = _replaced_slices(path, names)
    prefix, suffix = temporary_name(path)
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=folder))
    try:
        for z, name in enumerate(names):
            _write_slice(staging / name, data[z], disk, scaling)
        (staging / path.name).write_bytes(text.encode("utf-8"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _commit(path, staging, names, delete)  # once committed, a failure is rolled forward
    return [str(folder / n) for n in names] + [str(path)]
