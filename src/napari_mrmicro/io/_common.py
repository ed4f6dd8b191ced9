"""What every format module shares: the Volume record, errors, units, atomic writes and the
napari-mrmicro metadata payload that writable formats embed as JSON."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Volumes above this many bytes open lazily (memory map or dask) unless told otherwise.
LAZY_BYTES = 256 * 2**20

#: Prefix of the text (TIFF ``Info`` line, NIfTI extension) that carries our payload as JSON.
PAYLOAD_KEY = "napari-mrmicro = "
#: Payload keys naming the format and header a volume was first read from.
_SOURCE_KEYS = ("source_format", "source_header")

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


class FormatError(ValueError):
    """A file that cannot be read or written as asked; the message names the file."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def unit_to_um(unit: str | None) -> float | None:
    """Factor from a length unit name to µm, or None when the unit is not a length."""
    if unit is None:
        return None
    return UNIT_TO_UM.get(str(unit).strip().lower())


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

    def __post_init__(self):
        self.spacing_um = tuple(float(s) for s in self.spacing_um)
        ndim = len(self.data.shape)
        if not 1 <= len(self.spacing_um) <= ndim:
            raise ValueError(f"Volume: {len(self.spacing_um)} spacings for {ndim}-D data")
        if not all(np.isfinite(s) and s > 0 for s in self.spacing_um):
            raise ValueError(f"Volume: spacing_um {self.spacing_um} must be positive")
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


@contextlib.contextmanager
def atomic_output(path, directory: bool = False):
    """Yield a temporary path next to ``path``; move it into place only on success.

    With ``directory=True`` the temporary path is a fresh folder that replaces ``path``
    as a whole. On any error the temporary output is removed and an existing ``path``
    is left as it was.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(path, f"the folder {parent} does not exist")
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                            dir=parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
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
    writer converted it for the file), name, acquisition and the format and header the
    volume was first read from, plus the format-specific ``extra`` keys.
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
    if md.get("format") == fmt:  # read from this format: pass on what it carried
        payload.update({k: md[k] for k in _SOURCE_KEYS if k in md})
    elif md.get("format"):
        payload.update(source_format=md["format"], source_header=md.get("header"))
    return PAYLOAD_KEY + json.dumps(payload, default=str, ensure_ascii=True)


def parse_payload(text: str | bytes) -> dict | None:
    """The payload of a text starting with :data:`PAYLOAD_KEY`; None if it is not a JSON object."""
    try:
        value = json.loads(text[len(PAYLOAD_KEY):])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def apply_payload(payload: dict | None, metadata: dict, labels: tuple) -> tuple:
    """Restore a read payload: acquisition and source go into ``metadata`` (in place).

    Returns
    -------
    tuple
        ``(axis_labels, layer_type, name)``: the payload's labels when their number fits
        ``labels``, else ``labels``; ``"image"`` and None without a payload.
    """
    if not payload:
        return labels, "image", None
    metadata["acquisition"] = dict(payload.get("acquisition") or {})
    metadata.update({k: payload[k] for k in _SOURCE_KEYS if k in payload})
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
