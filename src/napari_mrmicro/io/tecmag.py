"""Tecmag TNMR ``.tnt`` raw data, as written by the console of MR microscopes such as the
2.35 T system of REFERENCES.md (TNMR manual, "A1 - TNMR File Format"; the record layout
as nmrglue's ``nmrglue.fileio.tecmag`` transcribes it).

A file is the magic ``TNT1.xxx`` (8 bytes), then tagged sections: a 4-byte tag, a uint32
flag, a uint32 length and that many bytes. ``TMAG`` holds the acquisition record
(``actual_npts``: the four acquired dimensions, readout first; ``ob_freq`` MHz;
``sw`` Hz, the full receiver bandwidth; ``scans``; ``nuclei``; ``sequence``), ``DATA``
the samples as little-endian complex64 with the first dimension fastest, ``TMG2`` the
display settings, ``PSEQ`` the pulse sequence.

Imaging mapping: readout (dim 1) -> x, dim 2 -> y (phase encode), dim 3 -> z (second
phase encode, or slices when the sidecar says ``multislice``), dim 4 -> echo. TNMR keeps
the field of view and phase-encode order in the pulse-sequence tables, not in standard
fields, so they come from an optional JSON sidecar ``<name>.json`` beside the file:

``fov_mm`` [z, y, x]; ``multislice`` (bool); ``phase_encode_steps_y`` /
``phase_encode_steps_z`` (steps centred on 0 in acquisition order; default linear
``-N/2 .. N/2-1``); ``te_ms`` (list), ``tr_ms``, ``flip_deg``, ``sequence``
(``spin_echo``/``gradient_echo``), ``nucleus``.

Without ``fov_mm`` the spacing is 1 µm with ``metadata["spacing_known"] = False``. The echo
is taken to be centred in the readout (DC at sample ``N // 2``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from nmrglue.fileio.tecmag import TNTTMAG, TNTTMG2

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T, SEQUENCES
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume, check_size, read_text_header
from napari_mrmicro.io.bruker_raw import kspace_volume, sequence_kind, stated_acquisition

MAGIC = re.compile(rb"TNT1\.\d{3}")
SECTION = np.dtype([("tag", "S4"), ("flag", "<u4"), ("length", "<u4")])
#: Most sections accepted before the file is taken for garbage.
MAX_SECTIONS = 256
SIDECAR_KEYS = ("fov_mm", "multislice", "phase_encode_steps_y", "phase_encode_steps_z",
                "te_ms", "tr_ms", "flip_deg", "sequence", "nucleus")


def can_read(path: Path) -> bool:
    """True for a ``.tnt`` file starting with the ``TNT1.xxx`` magic."""
    try:
        path = Path(path)
        if not path.is_file() or path.suffix.lower() != ".tnt":
            return False
        with open(path, "rb") as f:
            return MAGIC.fullmatch(f.read(8)) is not None
    except OSError:
        return False


def _sections(path: Path) -> dict:
    """{tag: (offset, length)} of the file's tagged sections, checked against its size."""
    size = path.stat().st_size
    sections = {}
    with open(path, "rb") as f:
        magic = f.read(8)
        if MAGIC.fullmatch(magic) is None:
            raise FormatError(path, f"magic {magic[:8]!r} is not TNT1.xxx (not a TNMR file)")
        while True:
            raw = f.read(SECTION.itemsize)
            if len(raw) < SECTION.itemsize:
                break
            record = np.frombuffer(raw, SECTION)[0]
            offset, length = f.tell(), int(record["length"])
            if offset + length > size:
                raise FormatError(path, f"section {record['tag']!r} of {length} bytes runs "
                                        f"past the end of the {size}-byte file (truncated)")
            sections[record["tag"].decode("latin-1")] = (offset, length)
            if len(sections) > MAX_SECTIONS:
                raise FormatError(path, f"more than {MAX_SECTIONS} sections: not a TNMR file")
            f.seek(length, 1)
    return sections


def _record(path: Path, sections: dict, tag: str, dtype: np.dtype):
    if tag not in sections:
        raise FormatError(path, f"no {tag} section")
    offset, length = sections[tag]
    if length != dtype.itemsize:
        raise FormatError(path, f"{tag} section holds {length} bytes, expected "
                                f"{dtype.itemsize}")
    with open(path, "rb") as f:
        f.seek(offset)
        return np.frombuffer(f.read(length), dtype)[0]


def _plain(record) -> dict:
    """A structured record as JSON-friendly values (padding fields left out)."""
    out = {}
    for name in record.dtype.names:
        if name.startswith("space") or name in ("Boolean_space", "unused"):
            continue
        value = record[name]
        if record.dtype[name].names:
            out[name] = _plain(value)
        elif record.dtype[name].base.kind == "S":
            text = np.char.decode(np.asarray(value), "latin-1").tolist()
            out[name] = [t.rstrip("\0").strip() for t in text] if isinstance(text, list) \
                else text.rstrip("\0").strip()
        else:
            out[name] = np.asarray(value).tolist()
    return out


def _sidecar(path: Path) -> tuple:
    """(sidecar dict, its path or None), validated."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}, None
    try:
        values = json.loads(read_text_header(side))
    except ValueError as error:
        raise FormatError(side, f"not JSON ({error})") from None
    if not isinstance(values, dict):
        raise FormatError(side, "the sidecar must be a JSON object")
    unknown = sorted(set(values) - set(SIDECAR_KEYS))
    if unknown:
        raise FormatError(side, f"unknown keys {unknown} (known: {', '.join(SIDECAR_KEYS)})")
    fov = values.get("fov_mm")
    if fov is not None and not (isinstance(fov, list) and len(fov) == 3 and all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in fov)):
        raise FormatError(side, f"fov_mm {fov!r} is not three positive numbers (z, y, x)")
    if values.get("sequence") not in (None, *SEQUENCES):
        raise FormatError(side, f"sequence {values['sequence']!r} is not one of {SEQUENCES}")
    if values.get("nucleus") not in (None, *GAMMA_BAR_MHZ_PER_T):
        raise FormatError(side, f"nucleus {values['nucleus']!r} is not one of "
                                f"{sorted(GAMMA_BAR_MHZ_PER_T)}")
    for key in ("tr_ms", "flip_deg"):
        if key in values and not isinstance(values[key], (int, float)):
            raise FormatError(side, f"{key} {values[key]!r} is not a number")
    te = values.get("te_ms")
    if te is not None and not (isinstance(te, list) and te and all(
            isinstance(t, (int, float)) for t in te)):
        raise FormatError(side, f"te_ms {te!r} is not a list of numbers")
    return values, side


def _indices(steps, count: int, key: str, where) -> np.ndarray:
    if steps is None:
        return np.arange(count)
    if not (isinstance(steps, list) and all(isinstance(s, int) for s in steps)):
        raise FormatError(where, f"{key} is not a list of integers")
    index = np.asarray(steps, np.int64) + count // 2
    if len(steps) != count or np.unique(index).size != count or index.min() < 0 \
            or index.max() >= count:
        raise FormatError(where, f"{key} is not a permutation of "
                                 f"{-(count // 2)}..{count - count // 2 - 1} ({count} steps)")
    return index


def _load(path: Path) -> tuple:
    path = Path(path)
    sections = _sections(path)
    tmag = _record(path, sections, "TMAG", TNTTMAG)
    npts = [int(n) for n in tmag["actual_npts"]]
    if any(n < 1 or n > 2**24 for n in npts):
        raise FormatError(path, f"actual_npts {npts} are not sensible dimensions")
    if "DATA" not in sections:
        raise FormatError(path, "no DATA section")
    offset, length = sections["DATA"]
    check_size(path, math.prod(npts) * 8, length)
    points, ny, nz, echoes = npts
    data = np.fromfile(path, "<c8", count=math.prod(npts), offset=offset)
    data = data.reshape(echoes, nz, ny, points).astype(np.complex64)
    header = {"TMAG": _plain(tmag),
              "sections": {tag: length for tag, (_, length) in sections.items()}}
    if sections.get("TMG2", (0, 0))[1] == TNTTMG2.itemsize:
        header["TMG2"] = _plain(_record(path, sections, "TMG2", TNTTMG2))
    side, side_path = _sidecar(path)
    where = side_path or path
    header["sidecar"] = side
    y = _indices(side.get("phase_encode_steps_y"), ny, "phase_encode_steps_y", where)
    z = _indices(side.get("phase_encode_steps_z"), nz, "phase_encode_steps_z", where)
    multislice = bool(side.get("multislice", False))
    if multislice and "phase_encode_steps_z" in side:
        raise FormatError(where, "multislice data have no phase_encode_steps_z")
    kspace_data = np.empty_like(data)
    kspace_data[:, z[:, None], y[None, :]] = data

    tmag_plain = header["TMAG"]
    stated = {"matrix": (nz, ny, points), "readout_axis": 2}
    nucleus = side.get("nucleus") or next(
        (n for n in tmag_plain["nuclei"][:1] if n in GAMMA_BAR_MHZ_PER_T), None)
    if nucleus:
        stated["nucleus"] = nucleus
    frequency = tmag_plain["ob_freq"][0]
    if frequency > 0:
        stated["b0_tesla"] = frequency / GAMMA_BAR_MHZ_PER_T[nucleus or "1H"]
    if tmag_plain["sw"][0] > 0:
        stated["bandwidth_hz"] = float(tmag_plain["sw"][0])
    if tmag_plain["scans"] >= 1:
        stated["averages"] = int(tmag_plain["scans"])
    kind = side.get("sequence") or sequence_kind(tmag_plain["sequence"])
    if kind:
        stated["sequence"] = kind
    if side.get("te_ms") and len(side["te_ms"]) >= echoes:
        stated["te_ms"] = tuple(side["te_ms"][:echoes])
    for key in ("tr_ms", "flip_deg"):
        if key in side:
            stated[key] = float(side[key])
    if "fov_mm" in side:
        stated["fov_um"] = tuple(v * 1000.0 for v in side["fov_mm"])
    fov_um = stated.get("fov_um", stated["matrix"])  # else 1 µm placeholder voxels
    acquisition, normalised = stated_acquisition({**stated, "fov_um": fov_um}, where)
    stated = {k: normalised[k] for k in stated}
    kspace = KSpace(kspace_data, acquisition, multislice=multislice)
    extra = {"spacing_known": "fov_mm" in side,
             "spacing_source": f"sidecar {side_path.name}" if "fov_mm" in side else
             "none (1 µm placeholder)"}
    return kspace, header, stated, extra


def read_kspace(path: Path) -> KSpace:
    """Read a TNMR ``.tnt`` file as :class:`~napari_mrmicro.core.kspace.KSpace`.

    Returns
    -------
    KSpace
        ``(echo, z, y, x)`` complex64 with DC at ``N // 2``; the geometry and
        phase-encode order from the JSON sidecar when there is one.
    """
    return _load(path)[0]


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a TNMR ``.tnt`` file's raw k-space as a :class:`Volume`.

    Lines are reordered into k-space, so the data are always read into memory (``lazy``
    is accepted for the io contract and has no effect).
    """
    kspace, header, stated, extra = _load(path)
    return kspace_volume(kspace, "tecmag", path, header, stated,
                         name=f"{Path(path).stem} k-space", **extra)
