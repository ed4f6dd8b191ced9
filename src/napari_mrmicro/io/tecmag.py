"""Tecmag TNMR ``.tnt`` raw data, as written by the console of MR microscopes such as the
2.35 T system of REFERENCES.md (TNMR manual, "A1 - TNMR File Format").

What nmrglue does and what this module adds
-------------------------------------------
``nmrglue.tecmag.read`` (BSD; Helmus & Jaroniec, J Biomol NMR 2013;55:355) parses the
file: the magic ``TNT1.xxx``, the tagged sections (4-byte tag, uint32 flag, uint32
length, payload), the ``TMAG`` acquisition record (``actual_npts``: the four acquired
dimensions, readout first; ``ob_freq`` MHz; ``sw`` Hz, the full receiver bandwidth;
``scans``; ``nuclei``; ``sequence``), the ``TMG2`` display record and ``DATA``,
little-endian complex64 with the first dimension fastest. It also reads old ``TNT1.001``
files, whose ``PSEQ`` (pulse sequence) section carries no length: the four bytes there
are the start of its version text (``"1.12"``, i.e. 842083889 as a length). nmrglue is
an NMR library, so this module adds on top of it:

- the *checks* nmrglue leaves to ``assert`` statements (gone under ``python -O``) or to a
  memory map of whatever size the header claims: the ``TMAG``, ``DATA`` and ``TMG2``
  sections against the file size and ``DATA`` against ``actual_npts``, before nmrglue
  reads them (sections after those, such as ``PSEQ``, are nmrglue's business);
- the *imaging* reading: readout (dim 1) -> x, dim 2 -> y (phase encode), dim 3 -> z
  (second phase encode, or slices when the sidecar says ``multislice``), dim 4 -> echo;
  the phase-encode order and the field of view;
- the *refusal of spectra*: TNMR records no imaging gradients or field of view, so a
  file is taken for an image only when it has a phase-encode dimension (dim 2 or 3
  above 1) *and* a sidecar says it is one; a single FID or a 2-D NMR experiment is
  refused as "a spectrum, not an image".

TNMR keeps the field of view and phase-encode order in the pulse-sequence tables, not in
standard fields, so they come from a JSON sidecar ``<name>.json`` beside the file:

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
from pathlib import Path

import numpy as np
from nmrglue.fileio.tecmag import TNTMAGIC_RE, TNTTLV, TNTTMAG, TNTTMG2

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T, SEQUENCES
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume, read_text_header, sequence_kind
from napari_mrmicro.io.bruker_raw import kspace_volume, stated_acquisition

#: The sections this module reads, with their sizes (None: DATA, sized by actual_npts).
NEEDED = {"TMAG": TNTTMAG.itemsize, "DATA": None, "TMG2": TNTTMG2.itemsize}
#: Most sections accepted before the file is taken for garbage.
MAX_SECTIONS = 256
#: TNMR nucleus names -> ours.
NUCLEI = {"1H": "1H", "H1": "1H", "13C": "13C", "C13": "13C"}
SIDECAR_KEYS = ("fov_mm", "multislice", "phase_encode_steps_y", "phase_encode_steps_z",
                "te_ms", "tr_ms", "flip_deg", "sequence", "nucleus")


def can_read(path: Path) -> bool:
    """True for a ``.tnt`` file starting with the ``TNT1.xxx`` magic."""
    try:
        path = Path(path)
        if not path.is_file() or path.suffix.lower() != ".tnt":
            return False
        with open(path, "rb") as f:
            return TNTMAGIC_RE.match(f.read(8)) is not None
    except OSError:
        return False


def _sections(path: Path) -> tuple:
    """(magic, {tag: length}) once TMAG, DATA and TMG2 are found and lie inside the file.

    Sections after them are listed with the bytes left when their length runs past the
    end (old ``PSEQ``) and not followed further.
    """
    size = path.stat().st_size
    sections = {}
    with open(path, "rb") as f:
        magic = f.read(8)
        if TNTMAGIC_RE.match(magic) is None:
            raise FormatError(path, f"magic {magic[:8]!r} is not TNT1.xxx (not a TNMR file)")
        while len(sections) <= MAX_SECTIONS:
            raw = f.read(TNTTLV.itemsize)
            if len(raw) < TNTTLV.itemsize:
                break
            record = np.frombuffer(raw, TNTTLV)[0]
            tag = record["tag"].decode("latin-1")
            offset, length = f.tell(), int(record["length"])
            if offset + length > size:
                if all(n in sections for n in NEEDED):
                    sections[tag] = size - offset
                    break
                raise FormatError(path, f"section {tag!r} of {length} bytes runs past the "
                                        f"end of the {size}-byte file (truncated)")
            sections[tag] = length
            f.seek(length, 1)
        else:
            raise FormatError(path, f"more than {MAX_SECTIONS} sections: not a TNMR file")
    for tag, expected in NEEDED.items():
        if tag not in sections:
            raise FormatError(path, f"no {tag} section")
        if expected is not None and sections[tag] != expected:
            raise FormatError(path, f"{tag} section holds {sections[tag]} bytes, expected "
                                    f"{expected}")
    return magic.decode("latin-1"), sections


def _plain(value):
    """A header value from nmrglue as JSON-friendly Python (text cut at its first NUL)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).split(b"\0")[0].decode("latin-1").strip()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value] if value.dtype.kind == "S" else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def read_header(path: Path) -> tuple:
    """(header, data) of a ``.tnt`` file: sizes checked here, parsed by nmrglue.

    Returns
    -------
    header : dict
        ``version`` (the magic), ``sections`` ({tag: bytes}), ``TMAG`` and ``TMG2``
        (nmrglue's fields as JSON-friendly values).
    data : ndarray
        complex64, shape ``actual_npts`` (readout first).
    """
    import nmrglue

    path = Path(path)
    version, sections = _sections(path)
    # actual_npts: the second field of TMAG, right after the magic and the TMAG tag
    with open(path, "rb") as f:
        f.seek(8 + TNTTLV.itemsize)
        tmag = np.frombuffer(f.read(TNTTMAG.itemsize), TNTTMAG)[0]
    npts = [int(n) for n in tmag["actual_npts"]]
    if any(n < 1 or n > 2**24 for n in npts):
        raise FormatError(path, f"actual_npts {npts} are not sensible dimensions")
    if math.prod(npts) * 8 != sections["DATA"]:
        raise FormatError(path, f"header implies {math.prod(npts) * 8} bytes (actual_npts "
                                f"{npts} x 8) but the DATA section holds {sections['DATA']}")
    try:
        dic, data = nmrglue.tecmag.read(str(path))
    except (AssertionError, KeyError, ValueError, UnicodeDecodeError, OSError) as error:
        raise FormatError(path, f"nmrglue cannot read it ({error!r})") from None
    header = {"version": version, "sections": sections,
              "TMAG": {n: _plain(dic[n]) for n in TNTTMAG.names if n in dic},
              "TMG2": {n: _plain(v) for n, v in dic.items() if n not in TNTTMAG.names}}
    return header, np.asarray(data, np.complex64)


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


def _refuse_spectrum(path: Path, npts: list, side_path) -> None:
    points, ny, nz, n4 = npts
    if ny == 1 and nz == 1:
        raise FormatError(path, f"a spectrum, not an image: {n4} FID(s) of {points} points "
                                "and no phase-encode dimension (actual_npts "
                                f"{npts})")
    if side_path is None:
        raise FormatError(path, f"a spectrum, not an image, as far as the file says: "
                                f"actual_npts {npts} may be 2-D NMR, and TNMR records no "
                                "imaging gradients or field of view; to read it as "
                                f"k-space put {path.with_suffix('.json').name} (fov_mm, "
                                "...) beside it")


def _load(path: Path) -> tuple:
    path = Path(path)
    header, samples = read_header(path)
    npts = header["TMAG"]["actual_npts"]
    side, side_path = _sidecar(path)
    _refuse_spectrum(path, npts, side_path)
    points, ny, nz, echoes = npts
    header["sidecar"] = side
    data = samples.transpose(3, 2, 1, 0)  # (echo, z, y, x)
    y = _indices(side.get("phase_encode_steps_y"), ny, "phase_encode_steps_y", side_path)
    z = _indices(side.get("phase_encode_steps_z"), nz, "phase_encode_steps_z", side_path)
    multislice = bool(side.get("multislice", False))
    if multislice and "phase_encode_steps_z" in side:
        raise FormatError(side_path, "multislice data have no phase_encode_steps_z")
    kspace_data = np.empty(data.shape, np.complex64)
    kspace_data[:, z[:, None], y[None, :]] = data

    tmag = header["TMAG"]
    stated = {"matrix": (nz, ny, points), "readout_axis": 2}
    nucleus = side.get("nucleus") or NUCLEI.get(tmag["nuclei"][0])
    if nucleus:
        stated["nucleus"] = nucleus
    frequency = tmag["ob_freq"][0]  # MHz
    if frequency > 0:
        stated["b0_tesla"] = frequency / GAMMA_BAR_MHZ_PER_T[nucleus or "1H"]
    if tmag["sw"][0] > 0:
        stated["bandwidth_hz"] = float(tmag["sw"][0])
    if tmag["scans"] >= 1:
        stated["averages"] = int(tmag["scans"])
    kind = side.get("sequence") or sequence_kind(tmag["sequence"])
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
    acquisition, normalised = stated_acquisition({**stated, "fov_um": fov_um}, side_path)
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
        phase-encode order from the JSON sidecar.
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
