"""What every format module shares: the Volume record, errors, units, atomic writes and the
napari-mrmicro metadata payload that writable formats embed as JSON."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_mrmicro.core import geometry

#: Volumes above this many bytes open lazily (memory map or dask) unless told otherwise.
LAZY_BYTES = 256 * 2**20

#: Prefix of the text (TIFF ``Info`` line, NIfTI extension) that carries our payload as JSON.
PAYLOAD_KEY = "napari-mrmicro = "
#: Payload keys naming the format and header a volume was first read from.
_SOURCE_KEYS = ("source_format", "source_header")
#: Metadata saying how the values were computed (the reconstruction's, QSM's, the
#: relaxation and diffusion fits' settings, an EPI's unwarping, the device), written with every volume so
#: a file read back later still says which method made it.
PROCESSING_KEYS = ("recon", "qsm", "relaxometry", "diffusion", "unwarped", "device")
#: Metadata describing an optical image's channels (name, colour, wavelengths), kept when
#: it is converted.
CHANNEL_KEYS = ("channels",)
#: Metadata saying the spacing is not the file's (1 µm assumed on some or every axis): a
#: converted uncalibrated image stays uncalibrated instead of turning into 1 µm voxels.
CALIBRATION_KEYS = ("spacing_known", "spacing_source", "uncalibrated")

#: Length units to µm; keys are lower case. Covers ImageJ, OME, NIfTI and Bruker spellings.
UNIT_TO_UM = {
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "km": 1e9, "inch": 25.4e3, "in": 25.4e3, "ft": 304.8e3, "foot": 304.8e3, "feet": 304.8e3,
    "mi": 1609.344e6, "mile": 1609.344e6,
}


#: Time units to s; keys are lower case. Covers NIfTI, NGFF, OME and ImageJ spellings.
UNIT_TO_S = {
    "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "usec": 1e-6, "microsecond": 1e-6,
    "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0,
}


class FormatError(ValueError):
    """A file that cannot be read or written as asked; the message names the file."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


_GRADIENT_ECHO = re.compile(r"flash|fisp|mge|gefi|gre|gems|mdeft|fieldmap|ute|zte|epi|"
                            r"(?<![a-z])ge(?![a-z])", re.IGNORECASE)
_SPIN_ECHO = re.compile(r"rare|msme|mems|sems|turbo|spin|(?<![a-z])f?se(?![a-z])",
                        re.IGNORECASE)


def sequence_kind(name: str) -> str | None:
    """``gradient_echo`` or ``spin_echo`` from a method or sequence name (ParaVision,
    VnmrJ, TNMR, ISMRMRD), else None; a name with both kinds of token counts as a gradient
    echo."""
    if _GRADIENT_ECHO.search(name):
        return "gradient_echo"
    if _SPIN_ECHO.search(name):
        return "spin_echo"
    return None


def unit_to_um(unit: str | None) -> float | None:
    """Factor from a length unit name to µm, or None when the unit is not a length."""
    if unit is None:
        return None
    return UNIT_TO_UM.get(str(unit).strip().lower())


def unit_to_s(unit: str | None) -> float | None:
    """Factor from a time unit name to s, or None when the unit is not a time."""
    if unit is None:
        return None
    return UNIT_TO_S.get(str(unit).strip().lower())


@dataclass
class Volume:
    """An image read from or written to a file, in physical units.

    Attributes
    ----------
    data : array-like
        numpy array, memory map or dask array. Spatial axes are the last
        ``len(spacing_um)`` ones in ``(z, y, x)`` order; leading axes are e.g. echo or
        channel. Complex data stay complex.
    spacing_um : tuple of float
        Voxel size of the spatial axes in µm.
    metadata : dict
        ``format``, ``source``, ``header`` (the parsed header, all keys kept),
        ``acquisition`` (:class:`~napari_mrmicro.core.Acquisition` fields the file
        states) and anything format-specific.
    origin_um : tuple of float or None
        Physical position of the first voxel's centre, when the file says.
    axis_labels : tuple of str or None
        One label per data axis; default ``(..., "z", "y", "x")``.
    channel_axis : int or None
        Axis holding channels that should become separate layers.
    layer_type : {"image", "labels"}
    name : str or None
    affine_um : ndarray or None
        The full data->world transform of the spatial axes, ``(n+1, n+1)`` for ``n =
        len(spacing_um)``: voxel index ``(z, y, x, 1)`` -> world µm in napari's axis order
        of RAS+ (``(S, A, R)`` for an unrotated axial volume), voxel size included (its
        column norms are ``spacing_um``). None when the file states no orientation; then
        the placement is ``origin_um`` + ``spacing_um`` along the axes.
    """

    data: object
    spacing_um: tuple
    metadata: dict = field(default_factory=dict)
    origin_um: tuple | None = None
    axis_labels: tuple | None = None
    channel_axis: int | None = None
    layer_type: str = "image"
    name: str | None = None
    affine_um: np.ndarray | None = None

    def world_affine_um(self) -> np.ndarray:
        """Voxel index → world µm: ``affine_um``, else the axis-aligned grid of the spacing
        with voxel 0 at ``origin_um`` (at 0 when the file places nothing)."""
        if self.affine_um is not None:
            return np.asarray(self.affine_um, dtype=float)
        return geometry.grid_affine(self.spacing_um, self.origin_um)

    def placed(self) -> bool:
        """Whether a file stated where the volume is (an affine or voxel 0's position), not
        the default of voxel 0 at the origin; a file we wrote for an unplaced volume says
        so in its payload (``metadata["placed"]``), though its format holds a position."""
        if isinstance(self.metadata.get("placed"), bool):
            return self.metadata["placed"]
        return self.affine_um is not None or self.origin_um is not None

    def lead_steps(self) -> tuple:
        """``(step, unit)`` of each leading (non-spatial) axis: the axis labelled ``t``
        carries ``metadata["time_step_s"]`` in seconds when the file states it (a time
        series' repetition time); every other one is counted in steps of 1 ``pixel``."""
        lead = len(self.data.shape) - len(self.spacing_um)
        step = self.metadata.get("time_step_s")
        timed = isinstance(step, (int, float)) and math.isfinite(step) and step > 0
        return tuple((float(step), "second") if timed and label == "t" else (1.0, "pixel")
                     for label in self.axis_labels[:lead])

    def __post_init__(self):
        ndim = len(self.data.shape)
        count = np.size(self.spacing_um)
        if not 1 <= count <= ndim:
            raise ValueError(f"Volume: {count} spacings for {ndim}-D data")
        self.spacing_um = geometry.as_spacing(self.spacing_um, count, "Volume spacing_um")
        if self.origin_um is not None:
            self.origin_um = tuple(float(o) for o in self.origin_um)
        if self.axis_labels is None:
            spatial = ("z", "y", "x")[-len(self.spacing_um):]
            lead = ndim - len(spatial)
            names = ("echo",) if lead == 1 and self.channel_axis is None else ()
            if self.channel_axis is not None and lead == 1:
                names = ("channel",)
            if len(names) != lead:
                names = tuple(f"axis{i}" for i in range(lead))
            self.axis_labels = names + spatial
        self.axis_labels = tuple(self.axis_labels)
        if len(self.axis_labels) != ndim:
            raise ValueError(f"Volume: {len(self.axis_labels)} axis labels for {ndim}-D data")


def check_size(path, expected_bytes: int, actual_bytes: int | None = None) -> None:
    """Refuse a header that promises more (or other) bytes than the file holds."""
    actual = os.path.getsize(path) if actual_bytes is None else actual_bytes
    if expected_bytes != actual:
        raise FormatError(path, f"header implies {expected_bytes} bytes of image data but "
                                f"the file holds {actual}")


def check_scaled_range(path, stored: np.dtype, scaling, keys: str) -> None:
    """Refuse a linear scaling ``value = stored·slope + offset`` (``scaling`` = (slope,
    offset), scalars or per-frame arrays, or None) that can give values beyond float32:
    the data would read as infinities. Integer data are bounded by their type's range,
    float data by their own values."""
    if scaling is None:
        return
    slope, offset = (np.abs(np.asarray(v, dtype=np.float64)) for v in scaling)
    stored = np.dtype(stored)
    top = float(max(abs(np.iinfo(stored).min), np.iinfo(stored).max)) \
        if stored.kind in "iu" else 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        largest = slope * top + offset
    if not np.all(np.isfinite(largest)) or float(np.max(largest)) > float(np.finfo(np.float32).max):
        raise FormatError(path, f"{keys} = {np.max(slope):g}/{np.max(offset):g} scale "
                                f"{stored.name} values beyond the float32 range")


def read_text_header(path, max_bytes: int = 4 * 2**20) -> str:
    """Read a small text header, refusing binary or huge files."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise FormatError(path, "the file is empty")
    if size > max_bytes:
        raise FormatError(path, f"{size} bytes is too large for a text header")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise FormatError(path, "binary data where a text header was expected")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


#: Temporaries of ``.<name>.<random>[.<pid>].part`` (writes) and ``.old`` (replaced outputs).
_TEMPORARY = r"[a-z0-9_]+(?:\.(?P<pid>\d+))?\.(?:part|old)"


def process_alive(pid: int) -> bool:
    """True while process ``pid`` (on this machine) runs; True when that cannot be told,
    so a temporary is never taken for stale by mistake."""
    if pid <= 0:
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        try:
            import psutil
        except ImportError:
            return True
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def temporary_name(path) -> tuple:
    """``(prefix, suffix)`` of the temporaries written for ``path`` by this process."""
    return f".{Path(path).name}.", f".{os.getpid()}.part"


def stale_temporaries(path) -> list[Path]:
    """Temporaries left next to ``path`` by writes of ``path`` whose process is gone.

    Only names :func:`temporary_name` gives for exactly this ``path`` match (``.a.b.x.part``
    belongs to ``a.b``, never to ``a``); temporaries of a process still running are kept.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.") + _TEMPORARY)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    stale = []
    for name in names:
        match = pattern.fullmatch(name)
        if match and not (match["pid"] and process_alive(int(match["pid"]))):
            stale.append(parent / name)
    return stale


def remove_stale_temporaries(path) -> None:
    """Delete :func:`stale_temporaries` of ``path`` (files or folders); an ``.old`` copy
    of a folder output is moved back first when the output itself is missing (a write
    killed between its two renames)."""
    path = Path(path)
    for stale in stale_temporaries(path):
        kept = stale / path.name
        if stale.name.endswith(".old") and kept.is_dir() and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(kept, path)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_directory(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` at ``path``; an existing ``path`` is swapped out atomically
    (or, where the system cannot swap, renamed aside first and restored by the next write
    if a kill falls between the two renames)."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    prefix, suffix = temporary_name(path)
    old = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix.replace(".part", ".old"),
                                dir=path.parent))
    os.replace(path, old / path.name)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(path, directory: bool = False, replaces=None):
    """Yield a temporary path next to ``path``; move it into place only on success.

    With ``directory=True`` the temporary path is a fresh folder that replaces ``path``
    as a whole, in one atomic swap. On any error the temporary output is removed and an
    existing ``path`` is left as it was; temporaries of earlier writes of ``path`` that
    were killed are removed first.

    Parameters
    ----------
    replaces : callable(Path) -> bool, optional
        For ``directory=True``: True when an existing folder at ``path`` is a previous
        output that may be replaced (default: any folder; an empty folder always is).
        Anything else at ``path``
        (a file, a link, a folder ``replaces`` disowns) is refused, never deleted.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(path, f"the folder {parent} does not exist")
    if not path.name or path.name in (".", ".."):
        raise FormatError(path, "needs a file name")
    remove_stale_temporaries(path)
    if os.path.lexists(path):
        if directory and (path.is_symlink() or not path.is_dir() or (
                replaces is not None and any(path.iterdir()) and not replaces(path))):
            raise FormatError(path, "exists and is not an earlier output of this kind; "
                                    "refusing to replace it (move it away first)")
        if not directory and (path.is_dir() and not path.is_symlink()):
            raise FormatError(path, "is a folder; refusing to replace it with a file")
    prefix, suffix = temporary_name(path)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            _replace_directory(tmp, path)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def payload_text(volume: Volume, fmt: str, dtype: np.dtype, **extra) -> str:
    """``napari-mrmicro = {json}``: what a ``fmt`` file cannot say about ``volume`` itself.

    The JSON holds the axis labels, layer type, ``dtype`` (the data's dtype before the
    writer converted it for the file), name, acquisition, how the values were computed
    (:data:`PROCESSING_KEYS`), optical channels, whether the spacing was only assumed
    (:data:`CALIBRATION_KEYS`) or the placement (:meth:`Volume.placed`), and the format and
    header the volume was first read from, plus the format-specific ``extra`` keys.
    """
    md = volume.metadata
    payload = {
        "version": 1,
        "axis_labels": list(volume.axis_labels),
        "layer_type": volume.layer_type,
        "dtype": str(dtype),
        "name": volume.name,
        "acquisition": md.get("acquisition") or {},
        **extra,
    }
    if md.get("value_unit"):  # Hz, ppm, rad: what the values are
        payload["value_unit"] = md["value_unit"]
    payload.update({k: md[k] for k in PROCESSING_KEYS + CHANNEL_KEYS if md.get(k) is not None})
    if not spacing_known(md):
        payload.update({k: md[k] for k in CALIBRATION_KEYS if k in md})
    if not volume.placed():
        payload["placed"] = False
    if md.get("format") == fmt:  # read from this format: pass on what it carried
        payload.update({k: md[k] for k in _SOURCE_KEYS if k in md})
    elif md.get("format"):
        payload.update(source_format=md["format"], source_header=md.get("header"))
    return PAYLOAD_KEY + json.dumps(payload, default=str, ensure_ascii=True)


def spacing_known(metadata: dict) -> bool:
    """False when the volume's spacing was assumed (1 µm), not read from its file."""
    return metadata.get("spacing_known", True) is not False \
        and not metadata.get("uncalibrated")


def parse_payload(text: str | bytes) -> dict | None:
    """The payload of a text starting with :data:`PAYLOAD_KEY`; None if it is not a JSON object."""
    try:
        value = json.loads(text[len(PAYLOAD_KEY):])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def apply_payload(payload: dict | None, metadata: dict, labels: tuple) -> tuple:
    """Restore a read payload: acquisition, processing and source go into ``metadata``
    (in place).

    Returns
    -------
    tuple
        ``(axis_labels, layer_type, name)``: the payload's labels when their number fits
        ``labels``, else ``labels``; ``"image"`` and None without a payload.
    """
    if not payload:
        return labels, "image", None
    metadata["acquisition"] = dict(payload.get("acquisition") or {})
    if isinstance(payload.get("value_unit"), str):
        metadata["value_unit"] = payload["value_unit"]
    metadata.update({k: payload[k] for k in _SOURCE_KEYS + PROCESSING_KEYS + CHANNEL_KEYS
                     + CALIBRATION_KEYS if k in payload})
    if payload.get("placed") is False:
        metadata["placed"] = False
    if len(payload.get("axis_labels") or ()) == len(labels):
        labels = tuple(payload["axis_labels"])
    return labels, payload.get("layer_type", "image"), payload.get("name")


def payload_dtype(payload: dict | None, data) -> np.dtype | None:
    """The bool or integer dtype the payload records for in-memory ``data``, when it is
    not their dtype already; None otherwise (lazy data keep their stored dtype)."""
    original = (payload or {}).get("dtype")
    if original is None or not isinstance(data, np.ndarray) or isinstance(data, np.memmap):
        return None
    try:
        target = np.dtype(original)
    except TypeError:
        return None
    if target == data.dtype or target.kind not in "biu":
        return None
    return target
