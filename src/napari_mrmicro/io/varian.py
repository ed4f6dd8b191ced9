"""Agilent/Varian imaging raw data: a ``.fid`` folder with ``fid`` and ``procpar``
(VnmrJ User Programming manual, "Data file structures"; Agilent's Xrecon; REFERENCES.md
"Other formats").

What nmrglue does and what this module adds
-------------------------------------------
nmrglue (BSD; Helmus & Jaroniec, J Biomol NMR 2013;55:355) parses both files:
``nmrglue.varian.read_procpar`` the parameters, ``get_fileheader``/``fileheader2dic`` the
32-byte big-endian fid header (``nblocks``, ``ntraces``, ``np``, ``ebytes``, ``tbytes``,
``bbytes``, ``vers_id``, ``status``, ``nbheaders``) and ``read_fid`` the blocks, as
complex traces in file order. nmrglue is an NMR library: it knows nothing of imaging, and
it allocates its arrays from the header's sizes without checking them against the file.
So this module keeps, on top of nmrglue:

- the *checks* before nmrglue reads a byte: the header against the file size and against
  ``procpar`` (a truncated or corrupt fid is refused naming the file and the parameter,
  nothing is allocated from header sizes alone);
- the *imaging layout*: which loop each trace belongs to (``seqcon``), where each
  phase-encode step lands (``petable``/``pelist``), slice order (``pss``), receivers;
- the *units*: ``lro``/``lpe``/``lpe2``/``pro``/``ppe``/``pss`` in cm, ``thk`` in mm,
  ``te``/``tr``/``esp`` in s, ``sfrq`` in MHz, ``psi``/``phi``/``theta`` in degrees;
- the *placement*: the data->world affine from the Euler angles and offsets;
- the *refusal of spectra*: 1-D/2-D NMR (no phase encoding) is not an image.

Parameters used
---------------
``np`` (2 x readout points), ``nv``/``nv2`` phase encodes, ``pss`` slice positions (cm;
``ns`` slices), ``ne`` echoes, ``rcvrs`` (``y``/``n`` per receiver), ``seqcon`` (echo,
slice, pe1, pe2, pe3 loops: ``c`` compressed within a block, ``s`` standard = separate
blocks, ``n`` unused), ``lro``/``lpe``/``lpe2`` (FOV, cm), ``pro``/``ppe``/``ppe2`` (FOV
offsets, cm), ``thk`` (mm), ``te``/``tr``/``esp`` (s), ``flip1`` (deg), ``sfrq`` (MHz),
``tn`` (nucleus), ``sw`` (Hz, the full receiver bandwidth), ``nt`` (averages),
``ti`` (s; an inversion time only where ``ir`` is ``y``: VnmrJ keeps a value while
inversion is off), ``seqfil``, ``pelist`` or ``petable`` (phase-encode table), ``psi``/``phi``/``theta``.

Layout (as Xrecon reads it): traces within a block run, fastest first, echo, compressed
slice, compressed pe1, compressed pe2; blocks run receiver, standard slice, standard
pe1, standard pe2. Phase-encode steps are centred on 0 (``-nv/2 .. nv/2-1``) and land on
k index ``step + nv // 2``; without a table they are acquired in that linear order. The
table is ``pelist`` or the file named by ``petable`` inside the ``.fid`` folder
(``t1 =`` values, ``t2 =`` for pe2). Slices are sorted by ``pss``.

Orientation (VnmrJ's Euler convention, as its FDF writer fills ``orientation[]``): the
rows of :func:`orientation_matrix` are the read, phase and slice directions in the
magnet's gradient frame (x, y, z). It equals ``diag(-1, -1, 1) · R`` with ``R`` the
extrinsic z-x-z rotation by (-psi, theta, phi), so it is orthonormal with determinant
+1 for every angle, and so ``affine_um`` (the same in napari's reversed axis order on
both sides) has a positive determinant. psi = phi = theta = 0 reads along -x,
phase-encodes along -y and selects transverse slices along +z; theta = 90 gives coronal
slices (normal +y), theta = psi = 90 sagittal ones (normal -x), as VnmrJ names its
planes. The magnet frame is taken as RAS+ (x -> R, y -> A, z -> S): a
microscopy specimen has no anatomical frame the scanner records. The image's FOV centre
(voxel ``N // 2`` on each axis, where the centred inverse FFT puts it) sits at ``pro``
along read and ``ppe`` along phase; slice ``k`` at the ``k``-th smallest ``pss``; a 3-D
slab's centre at ``ppe2`` (or ``pss`` when there is no ``ppe2``).

Arrayed acquisitions other than receivers and standard loops, EPI, spiral, radial and
spectroscopy are refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.core.geometry import from_xyz_affine
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume, read_text_header, sequence_kind
from napari_mrmicro.io.bruker_raw import kspace_volume, stated_acquisition

#: Bytes of the fid file header and of one block header (VnmrJ "Data file structures").
FILE_HEADER_BYTES, BLOCK_HEADER_BYTES = 32, 28
NUCLEI = {"H1": "1H", "C13": "13C"}
CM_TO_UM = 1e4
_NON_CARTESIAN = re.compile(r"epi|spiral|radial|ute|zte|prop|csi|press|steam|spuls|s2pul",
                            re.IGNORECASE)
_TABLE_LINE = re.compile(r"^\s*(t\d+)\s*=\s*(.*)$")


def _locate(path: Path) -> tuple:
    if path.is_dir():
        fid, procpar = path / "fid", path / "procpar"
    elif path.name == "fid":
        fid, procpar = path, path.parent / "procpar"
    else:
        raise FormatError(path, "not a Varian .fid folder or fid file")
    if not fid.is_file():
        if any(fid.parent.glob("*.fdf")):
            raise FormatError(path, "a VnmrJ image folder (.img: procpar and FDF images); "
                                    "FDF is not read: open the experiment's .fid folder")
        raise FormatError(path, f"a VnmrJ procpar without its raw data: no fid file in "
                                f"{fid.parent} (a .fid folder holds fid and procpar)")
    if not procpar.is_file():
        raise FormatError(fid, f"no procpar beside the fid (looked for {procpar})")
    return fid, procpar


def can_read(path: Path) -> bool:
    """True for a folder (or a ``fid``) with a text ``procpar``: a VnmrJ experiment, even
    with its fid missing or cut short, which :func:`read` then names as the problem."""
    try:
        path = Path(path)
        if not (path.is_dir() or path.name == "fid"):
            return False
        procpar = (path if path.is_dir() else path.parent) / "procpar"
        with open(procpar, "rb") as f:
            start = f.read(64)
        return bool(start) and start[:1].isalpha() and b"\0" not in start
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- procpar


def read_procpar(path: Path) -> dict:
    """``procpar`` as {name: value}, parsed by ``nmrglue.varian.read_procpar``: numbers
    for real parameters, text for strings; a list when the parameter holds several."""
    import nmrglue

    read_text_header(path)  # refuse empty or binary files before nmrglue parses them
    try:
        raw = nmrglue.varian.read_procpar(str(path))
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        raise FormatError(path, f"not a Varian procpar ({error})") from None
    if not raw:
        raise FormatError(path, "the procpar holds no parameters")
    out = {}
    for name, entry in raw.items():
        values = list(entry.get("values", []))
        if entry.get("basictype") == "1":
            try:
                values = [float(v) for v in values]
            except ValueError:
                raise FormatError(path, f"{name}: {values[:4]} are not numbers") from None
            values = [int(v) if v.is_integer() and abs(v) < 2**53 else v for v in values]
        out[name] = values[0] if len(values) == 1 else values
    return out


def _number(params: dict, key: str, default=None):
    value = params.get(key, default)
    if isinstance(value, list):
        value = value[0] if value else default
    return value if isinstance(value, (int, float)) and math.isfinite(value) else default


def _count(params: dict, key: str, where, default=1) -> int:
    value = _number(params, key, default)
    if not isinstance(value, int) or value < 0 or value > 2**24:
        raise FormatError(where, f"{key} = {params.get(key)!r} is not a sensible count")
    return max(value, 1)


def _values(params: dict, key: str) -> list:
    value = params.get(key)
    return value if isinstance(value, list) else ([] if value is None else [value])


def _refuse_spectrum(params: dict, procpar: Path) -> None:
    """An NMR spectrum (1-D, or 2-D with ``ni`` increments) has no phase encoding: no
    ``seqcon`` imaging loops, no pe1 loop, or ``nv`` 0."""
    seqcon = str(params.get("seqcon") or "").strip()
    nv = _number(params, "nv", 0)
    if not seqcon or (len(seqcon) > 2 and seqcon[2] == "n") or not nv or nv < 1:
        ni = _number(params, "ni", 0) or 0
        kind = "2-D NMR" if ni > 1 else "1-D NMR"
        raise FormatError(procpar, f"a spectrum, not an image: seqcon = {seqcon!r}, nv = "
                                   f"{params.get('nv')!r} (no phase encoding; {kind}, "
                                   f"seqfil {params.get('seqfil')!r})")


def _tables(folder: Path, params: dict, where) -> tuple:
    """Phase-encode tables {"t1": [...], "t2": [...]} from pelist or the petable file, and
    where they came from (None without a table)."""
    pelist = [v for v in _values(params, "pelist") if isinstance(v, (int, float))]
    if len(pelist) > 1:
        return {"t1": [int(v) for v in pelist]}, "pelist"
    name = params.get("petable")
    if not isinstance(name, str) or not name.strip() or name.strip() == "n":
        return {}, None
    table = folder / Path(name.strip()).name
    if not table.is_file():
        raise FormatError(where, f"petable {name!r} is not in the .fid folder ({table})")
    tables, current = {}, None
    for line in read_text_header(table).splitlines():
        match = _TABLE_LINE.match(line)
        if match:
            current, line = match.group(1), match.group(2)
            tables[current] = []
        if current is None:
            continue
        try:
            tables[current] += [int(v) for v in line.split()]
        except ValueError:
            raise FormatError(table, f"table {current}: {line.strip()[:40]!r} is not "
                                     "integers") from None
    return tables, f"petable {table.name}"


def _indices(table: list | None, count: int, name: str, where) -> np.ndarray:
    """k index of each acquired step: table value + count // 2, or linear order."""
    if table is None:
        return np.arange(count)
    if len(table) != count:
        raise FormatError(where, f"phase-encode table {name} holds {len(table)} values for "
                                 f"{count} steps")
    index = np.asarray(table, np.int64) + count // 2
    if np.unique(index).size != count or index.min() < 0 or index.max() >= count:
        raise FormatError(where, f"phase-encode table {name} is not a permutation of "
                                 f"{-(count // 2)}..{count - count // 2 - 1}")
    return index


# --------------------------------------------------------------------------- fid


def _file_header(fid: Path) -> dict:
    """The fid header as nmrglue parses it, checked against itself and the file size
    before any data are read."""
    from nmrglue.fileio import varian as ngv

    size = fid.stat().st_size
    if size < FILE_HEADER_BYTES:
        raise FormatError(fid, f"{size} bytes is too short for a Varian fid header")
    with open(fid, "rb") as f:
        fields = ngv.fileheader2dic(ngv.get_fileheader(f))
    status = fields["status"]
    if not fields["S_DATA"] or fields["S_SPEC"]:
        raise FormatError(fid, f"status 0x{status & 0xffff:x}: the file holds no FID data "
                               "(spectra or empty)")
    dtype = ngv.find_dtype(fields)
    if fields["ebytes"] != dtype.itemsize:
        raise FormatError(fid, f"ebytes = {fields['ebytes']} but status says "
                               f"{dtype.str[1:]}")
    for name in ("nblocks", "ntraces", "np"):
        if fields[name] < 1:
            raise FormatError(fid, f"{name} = {fields[name]} in the file header")
    if fields["np"] % 2 or fields["tbytes"] != fields["np"] * fields["ebytes"] or \
            fields["nbheaders"] < 0 or fields["bbytes"] != fields["ntraces"] * \
            fields["tbytes"] + fields["nbheaders"] * BLOCK_HEADER_BYTES:
        raise FormatError(fid, f"inconsistent file header {fields}")
    expected = FILE_HEADER_BYTES + fields["nblocks"] * fields["bbytes"]
    if expected != size:
        raise FormatError(fid, f"header implies {expected} bytes (nblocks {fields['nblocks']}"
                               f" x bbytes {fields['bbytes']} + {FILE_HEADER_BYTES}) but the "
                               f"file holds {size}: truncated, or a corrupt header")
    fields["word_type"] = str(dtype)
    return fields


def _traces(fid: Path) -> np.ndarray:
    """All traces, (nblocks * ntraces, np / 2) complex64 in file order, read by nmrglue
    (call after :func:`_file_header` has checked the sizes). ``read_fid_ntraces`` reads any
    number of traces per block; ``read_fid`` hands several on to it leaving its own handle
    of the file open."""
    import nmrglue

    try:
        _, data = nmrglue.varian.read_fid_ntraces(str(fid), as_2d=True)
    except (ValueError, OSError) as error:
        raise FormatError(fid, f"nmrglue cannot read the blocks ({error})") from None
    return np.asarray(data, np.complex64)


# --------------------------------------------------------------------------- geometry


def orientation_matrix(psi: float, phi: float, theta: float) -> np.ndarray:
    """Rows: the read, phase and slice directions in the magnet frame (x, y, z).

    VnmrJ's Euler convention, as its FDF writer fills ``orientation[]`` (angles in
    degrees): ``diag(-1, -1, 1)`` times the extrinsic z-x-z rotation by
    ``(-psi, theta, phi)``; orthonormal with determinant +1.
    """
    ps, ph, th = np.radians([psi, phi, theta])
    cps, sps, cph, sph, cth, sth = (np.cos(ps), np.sin(ps), np.cos(ph), np.sin(ph),
                                    np.cos(th), np.sin(th))
    return np.array([
        [-cph * cps - sph * cth * sps, -cph * sps + sph * cth * cps, -sph * sth],
        [-sph * cps + cph * cth * sps, -sph * sps - cph * cth * cps, cph * sth],
        [-sth * sps, sth * cps, cth]])


def world_affine(params: dict, matrix: tuple, spacing_um: tuple,
                 slice_positions_cm=None) -> np.ndarray | None:
    """Voxel ``(z, y, x)`` -> world µm in napari's order of RAS+ (the magnet frame).

    Parameters
    ----------
    params : dict
        ``procpar``: ``psi``/``phi``/``theta`` (degrees), ``pro``/``ppe``/``ppe2`` (cm).
    matrix : tuple of int
        ``(slices or pe2, pe1, read)`` voxels.
    spacing_um : tuple of float
        Voxel size, ``(z, y, x)``.
    slice_positions_cm : sequence of float, optional
        Sorted ``pss`` of a multi-slice scan (slice ``k`` at the ``k``-th); for 3-D
        ``None``: the slab centre (``ppe2``, else ``pss``) sits at voxel ``nz // 2``.

    Returns
    -------
    ndarray or None
        4 x 4; None when the procpar states no ``psi``/``phi``/``theta``.
    """
    angles = [_number(params, key) for key in ("psi", "phi", "theta")]
    if any(a is None for a in angles):
        return None
    rows = orientation_matrix(*angles)  # read, phase, slice in (x, y, z)
    nz, ny, nx = matrix
    dz, dy, dx = (s / CM_TO_UM for s in spacing_um)
    pro, ppe = _number(params, "pro", 0.0), _number(params, "ppe", 0.0)
    if slice_positions_cm is not None:
        first_slice = float(slice_positions_cm[0])
    else:
        centre = _number(params, "ppe2", _number(params, "pss", 0.0))
        first_slice = centre - (nz // 2) * dz
    xyz = np.eye(4)  # voxel (read i, phase j, slice k) -> magnet (x, y, z) in cm
    xyz[:3, :3] = rows.T * np.array([dx, dy, dz])
    xyz[:3, 3] = rows.T @ np.array([pro - (nx // 2) * dx, ppe - (ny // 2) * dy,
                                     first_slice])
    return from_xyz_affine(xyz, unit_um=CM_TO_UM)


# --------------------------------------------------------------------------- reading


def _load(path: Path) -> tuple:
    fid, procpar = _locate(Path(path))
    params = read_procpar(procpar)
    _refuse_spectrum(params, procpar)
    sequence = str(params.get("seqfil") or "")
    if _NON_CARTESIAN.search(sequence):
        raise FormatError(fid, f"sequence {sequence}: EPI, non-Cartesian and spectroscopy "
                               "acquisitions are not supported")
    seqcon = str(params.get("seqcon") or "")
    if not re.fullmatch(r"[cns]{5}", seqcon):
        raise FormatError(procpar, f"seqcon = {seqcon!r} is not five of c, s, n")
    fields = _file_header(fid)
    points = _count(params, "np", procpar) // 2
    nv = _count(params, "nv", procpar)
    nv2 = _count(params, "nv2", procpar, 1) if seqcon[3] != "n" else 1
    positions = [v for v in _values(params, "pss") if isinstance(v, (int, float))] or [0.0]
    slices = len(positions)
    if _number(params, "ns") not in (None, slices):
        raise FormatError(procpar, f"ns = {params['ns']} but pss holds {slices} positions")
    echoes = _count(params, "ne", procpar, 1)
    rcvrs = str(params.get("rcvrs") or "y")
    receivers = max(rcvrs.count("y"), 1)
    if seqcon[0] == "s" and echoes > 1:
        raise FormatError(procpar, "echoes in standard (block) loops are not supported")
    if 2 * points != fields["np"]:
        raise FormatError(fid, f"np = {fields['np']} in the fid but {2 * points} in procpar")
    # (name, length, compressed?) of the loops, fastest first
    loops = [("slice", slices, seqcon[1]), ("pe1", nv, seqcon[2]), ("pe2", nv2, seqcon[3])]
    traces = echoes * math.prod(n for _, n, c in loops if c == "c")
    blocks = receivers * math.prod(n for _, n, c in loops if c == "s")
    if fields["ntraces"] != traces or fields["nblocks"] != blocks:
        raise FormatError(fid, f"the fid holds {fields['nblocks']} blocks of "
                               f"{fields['ntraces']} traces, but seqcon {seqcon} with "
                               f"{receivers} receivers, ns {slices}, nv {nv}, nv2 {nv2}, ne "
                               f"{echoes} gives {blocks} of {traces} (arrayed parameters "
                               f"{params.get('array')!r} are not supported)")
    for name, length, c in loops:
        if c == "n" and length > 1:
            raise FormatError(procpar, f"seqcon {seqcon} has no {name} loop but it has "
                                       f"{length} values")
    tables, table_source = _tables(fid.parent, params, procpar)

    lines = _traces(fid).reshape(blocks, traces, points)
    # C-order shape: standard loops (slowest first), receiver, compressed loops, echo
    standard = [(n, length) for n, length, c in reversed(loops) if c == "s"]
    compressed = [(n, length) for n, length, c in reversed(loops) if c == "c"]
    order = [n for n, _ in standard] + ["receiver"] + [n for n, _ in compressed] + ["echo"]
    shape = [length for _, length in standard] + [receivers] + \
        [length for _, length in compressed] + [echoes, points]
    lines = lines.reshape(shape)
    for name, length, c in loops:
        if c == "n":
            order.append(name)
            lines = lines[..., None, :]
    wanted = ["receiver", "echo", "slice", "pe2", "pe1"]
    lines = lines.transpose([order.index(n) for n in wanted] + [len(order)])
    # lines: (receiver, echo, slice, pe2, pe1, readout) in acquisition order
    y = _indices(tables.get("t1"), nv, "t1", procpar)
    z = _indices(tables.get("t2"), nv2, "t2", procpar) if nv2 > 1 else np.zeros(1, int)
    slice_rank = np.argsort(np.argsort(positions, kind="stable"), kind="stable")
    multislice = nv2 == 1
    shape_z = slices if multislice else nv2
    data = np.zeros((receivers, echoes, shape_z, nv, points), np.complex64)
    if multislice:
        data[:, :, slice_rank[:, None], y[None, :]] = lines[:, :, :, 0]
    else:
        if slices != 1:
            raise FormatError(procpar, f"3-D encoding with {slices} slabs is not supported")
        data[:, :, z[:, None], y[None, :]] = lines[:, :, 0]

    fov_cm = [_number(params, k) for k in ("lpe2", "lpe", "lro")]
    if not all(f and f > 0 for f in fov_cm[1:]):
        raise FormatError(procpar, f"lro/lpe = {fov_cm[2]}/{fov_cm[1]}: no field of view")
    ordered = None
    if multislice:
        ordered = np.sort(np.asarray(positions, float))
        steps = np.diff(ordered) * CM_TO_UM
        thickness = _number(params, "thk")
        if slices > 1 and np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-3):
            step, source = float(steps[0]), "pss"
        elif thickness and thickness > 0:
            step, source = thickness * 1000.0, "thk"  # thk is in mm
        else:
            raise FormatError(procpar, "no evenly spaced pss and no thk for the slices")
        fov_z = step * slices
    else:
        if not fov_cm[0] or fov_cm[0] <= 0:
            raise FormatError(procpar, "lpe2 (the 3-D field of view) is missing")
        fov_z, source = fov_cm[0] * CM_TO_UM, "lpe2"
    matrix = (shape_z, nv, points)
    fov_um = (fov_z, fov_cm[1] * CM_TO_UM, fov_cm[2] * CM_TO_UM)
    stated = _acquisition(params, echoes, matrix, fov_um)
    acquisition, stated = stated_acquisition(stated, procpar)
    kspace = KSpace(data if receivers > 1 else data[0], acquisition,
                    coil_axis=0 if receivers > 1 else None, multislice=multislice)
    # unevenly spaced slices (spacing from thk) have no affine placement
    affine = world_affine(params, matrix, acquisition.voxel_um, ordered) \
        if source != "thk" or slices == 1 else None
    extra = {"receivers": receivers, "seqcon": seqcon, "word_type": fields["word_type"],
             "spacing_source": f"lro, lpe, {source}",
             "phase_encode_table": table_source,
             "orientation_deg": {k: _number(params, k) for k in ("psi", "phi", "theta")}}
    return kspace, fid, {"procpar": params, "fid_header": fields}, stated, extra, affine


def _acquisition(params: dict, echoes: int, matrix: tuple, fov_um: tuple) -> dict:
    out = {"matrix": matrix, "fov_um": fov_um, "readout_axis": 2}
    nucleus = NUCLEI.get(str(params.get("tn") or ""))
    if nucleus:
        out["nucleus"] = nucleus
    sfrq = _number(params, "sfrq")  # MHz
    if sfrq and sfrq > 0:
        out["b0_tesla"] = sfrq / GAMMA_BAR_MHZ_PER_T[nucleus or "1H"]
    te = [v for v in _values(params, "te") if isinstance(v, (int, float))]  # s
    esp = _number(params, "esp")
    if len(te) >= echoes:
        out["te_ms"] = tuple(t * 1000.0 for t in te[:echoes])
    elif te and (echoes == 1 or (esp and esp > 0)):
        out["te_ms"] = tuple((te[0] + i * (esp or 0.0)) * 1000.0 for i in range(echoes))
    for key, name, factor in (("tr", "tr_ms", 1000.0), ("flip1", "flip_deg", 1.0),
                              ("sw", "bandwidth_hz", 1.0), ("nt", "averages", 1)):
        value = _number(params, key)
        if value is not None and (value > 0 or name == "flip_deg"):
            out[name] = int(value) if name == "averages" else value * factor
    kind = sequence_kind(str(params.get("seqfil") or ""))
    if kind:
        out["sequence"] = kind
    inversion = [v for v in _values(params, "ti") if isinstance(v, (int, float)) and v > 0]
    if str(params.get("ir") or "").strip().lower() == "y" and inversion:  # s; `ti` is
        out["ti_ms"] = tuple(t * 1000.0 for t in inversion)  # kept while ir is 'n'
    return out


def read_kspace(path: Path) -> KSpace:
    """Read a Varian ``.fid`` folder as :class:`~napari_mrmicro.core.kspace.KSpace`.

    Returns
    -------
    KSpace
        ``(echo, z, y, x)`` complex64, ``(coil, echo, z, y, x)`` for several receivers;
        DC at ``N // 2``; 2-D scans are ``multislice`` with slices sorted by ``pss``.
    """
    return _load(path)[0]


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a Varian ``.fid`` folder's raw k-space as a :class:`Volume`.

    ``affine_um`` places the reconstructed image (see the module notes on orientation).
    Traces are reordered into k-space, so the data are always read into memory (``lazy``
    is accepted for the io contract and has no effect).
    """
    kspace, fid, header, stated, extra, affine = _load(path)
    volume = kspace_volume(kspace, "varian", fid, header, stated,
                           name=f"{fid.parent.stem} k-space", **extra)
    volume.affine_um = affine
    return volume
