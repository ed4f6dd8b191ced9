"""Bruker ParaVision raw data: a scan folder's ``fid`` (PV 5-7) or ``rawdata.job0`` (PV 360)
with its ``acqp`` and ``method`` (JCAMP-DX, read by :mod:`napari_mrmicro.io.jcamp`).

Layout (ParaVision "Raw data" chapter, as Bruker's pvtools ``readBrukerRaw`` /
``convertRawToFrame`` / ``convertFrameToCKData`` apply it; REFERENCES.md "Other formats"):

- One *scan* is one readout from every active receiver: for each receiver in turn
  ``ACQ_size[0]`` real values (it counts real values, i.e. 2 x the complex readout
  points), real/imaginary interleaved. In a PV <= 7 ``fid`` with ``GO_block_size =
  Standard_KBlock_Format`` each scan (all receivers together) is zero-padded to a multiple
  of 1024 bytes; ``rawdata.job0`` (PV 360) is continuous and takes its scan size per
  receiver, again in real values, from ``ACQ_jobs[0][0]``.
- Word type ``GO_raw_data_format`` (``GO_32BIT_SGN_INT``, ``GO_16BIT_SGN_INT``,
  ``GO_32BIT_FLOAT``), or in PV 360 ``ACQ_ScanPipeJobSettings`` (``STORE_64bit_float``,
  ``STORE_32bit_signed``) / ``ACQ_word_size``; byte order ``BYTORDA`` (``little``/``big``).
- Scans run, fastest first: ``ACQ_phase_factor`` (lines of one echo train), the ``NI``
  objects (echo images x slices, echo fastest; object ``ACQ_obj_order[i]`` is acquired
  i-th), the remaining ``ACQ_size[1] / ACQ_phase_factor`` phase-encode groups,
  ``ACQ_size[2]`` second phase-encode steps (3-D), then ``NR`` repetitions.
- The k-space grid is ``round(PVM_AntiAlias * PVM_Matrix)`` (reduced by ``PVM_EncZf``
  zero-filling); phase-encode line ``i`` sits at ``PVM_EncSteps1[i] + N // 2`` (steps are
  centred on 0), ``PVM_EncSteps2`` likewise; a readout shorter than the grid (partial
  echo) fills its end. ``EchoAcqMode = allEchoes`` (bipolar MGE) reverses every second
  echo's readout.

Readout oversampling is kept: the x axis is the acquired readout, its field of view
``PVM_Fov[0] x`` the oversampling, so the voxel size is still ``PVM_Fov / PVM_Matrix``.
Accumulated averages (``PVM_NAverages``) are summed by the scanner already. Repetitions
(``NR > 1``), non-Cartesian methods (UTE, ZTE, radial, spiral), EPI and spectroscopy are
refused with a message naming the method.

This module also holds :func:`kspace_volume`, which the other raw-data readers
(:mod:`~napari_mrmicro.io.ismrmrd`, :mod:`~napari_mrmicro.io.varian`,
:mod:`~napari_mrmicro.io.tecmag`) share.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T, Acquisition
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume, check_size
from napari_mrmicro.io.bruker import _numbers, _one, _strings
from napari_mrmicro.io.jcamp import read_jcamp

WORD_TYPES = {"GO_32BIT_SGN_INT": "i4", "GO_16BIT_SGN_INT": "i2", "GO_32BIT_FLOAT": "f4"}
PIPE_WORD_TYPES = {"STORE_64bit_float": "f8", "STORE_32bit_signed": "i4"}
ACQ_WORD_SIZES = {"_32_BIT": "i4", "_16_BIT": "i2"}
BYTE_ORDERS = {"little": "<", "big": ">"}
RAW_NAMES = ("fid", "rawdata.job0")
#: Bytes a PV <= 7 ``Standard_KBlock_Format`` scan is padded to a multiple of.
KBLOCK = 1024
#: Most k-space grid points per acquired sample a header may ask for (undersampling
#: bound): a larger grid is taken for a corrupt header rather than allocated.
MAX_GRID_PER_SAMPLE = 64
_NON_CARTESIAN = re.compile(r"ute|zte|spiral|radial|propeller|epsi|epi|csi|press|steam|"
                            r"nspect|singlepulse|cpmg", re.IGNORECASE)
_GRADIENT_ECHO = re.compile(r"flash|fisp|mge|gefi|gre|gems|mdeft|fieldmap|"
                            r"(?<![a-z])ge(?![a-z])", re.IGNORECASE)
_SPIN_ECHO = re.compile(r"rare|msme|mems|sems|turbo|spin|(?<![a-z])f?se(?![a-z])",
                        re.IGNORECASE)


# --------------------------------------------------------------------------- shared


def stated_acquisition(stated: dict, where) -> tuple:
    """(Acquisition with defaults for what is missing, the stated fields normalised).

    Raises FormatError naming ``where`` when the stated values are not a valid protocol.
    """
    try:
        acquisition = Acquisition.from_dict(stated)
    except (TypeError, ValueError) as error:
        raise FormatError(where, f"the header's protocol is not valid: {error}") from None
    full = acquisition.to_dict()
    return acquisition, {k: full[k] for k in stated}


def kspace_volume(kspace: KSpace, fmt: str, source, header: dict, stated: dict,
                  name: str | None = None, **extra) -> Volume:
    """The :class:`Volume` of raw k-space read from a file.

    ``data`` is the complex k-space array, ``spacing_um`` the image voxel size
    (FOV / matrix); ``metadata`` holds ``format``, ``source``, ``header``, the
    ``acquisition`` fields the file states, ``kspace: True``, ``multislice``,
    ``coil_axis`` and ``extra``.
    """
    labels = ("echo", "z", "y", "x")
    if kspace.coil_axis is not None:
        labels = ("coil",) + labels
    metadata = {"format": fmt, "source": str(source), "header": header,
                "acquisition": stated, "kspace": True, "multislice": kspace.multislice,
                "coil_axis": kspace.coil_axis, **extra}
    if kspace.sampled is not None:
        metadata["sampled_fraction"] = float(kspace.sampled.mean())
    return Volume(kspace.data, kspace.acquisition.voxel_um, metadata, axis_labels=labels,
                  name=name)


def sequence_kind(name: str) -> str | None:
    """``gradient_echo`` or ``spin_echo`` from a method or sequence name, else None."""
    if _GRADIENT_ECHO.search(name):
        return "gradient_echo"
    if _SPIN_ECHO.search(name):
        return "spin_echo"
    return None


# --------------------------------------------------------------------------- locating


def _locate(path: Path) -> tuple:
    """(raw data file, acqp, method) for a scan folder or its fid/rawdata.job0."""
    if path.is_dir():
        folder = path
        raw = next((path / n for n in RAW_NAMES if (path / n).is_file()), None)
        if raw is None:
            raise FormatError(path, "no fid or rawdata.job0 in the scan folder")
    elif path.name in RAW_NAMES:
        folder, raw = path.parent, path
    else:
        raise FormatError(path, "not a Bruker scan folder, fid or rawdata.job0")
    acqp, method = folder / "acqp", folder / "method"
    for part in (acqp, method):
        if not part.is_file():
            raise FormatError(raw, f"no {part.name} beside the raw data (looked for {part})")
    return raw, acqp, method


def can_read(path: Path) -> bool:
    """True for a Bruker scan folder with acqp + fid/rawdata.job0, or that raw file."""
    try:
        path = Path(path)
        if not (path.is_dir() or path.name in RAW_NAMES):
            return False
        _, acqp, _ = _locate(path)
        with open(acqp, "rb") as f:
            return f.read(2) == b"##"
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- header


def _int(header: dict, key: str, where, default=None) -> int | None:
    value = _one(header, key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(where, f"{key} = {str(value)[:60]} is not a non-negative integer")
    return value


def _dtype(acqp: dict, raw: Path, where) -> np.dtype:
    order = _one(acqp, "BYTORDA", "little")
    if order not in BYTE_ORDERS:
        raise FormatError(where, f"unknown BYTORDA {order!r} (known: little, big)")
    settings = acqp.get("ACQ_ScanPipeJobSettings")
    store = None
    if raw.name != "fid" and isinstance(settings, list) and settings:
        first = settings[0] if isinstance(settings[0], list) else settings
        store = next((v for v in first if isinstance(v, str) and v.startswith("STORE_")),
                     None)
    if store is not None:
        if store not in PIPE_WORD_TYPES:
            raise FormatError(where, f"unknown ACQ_ScanPipeJobSettings word type {store!r} "
                                     f"(known: {', '.join(PIPE_WORD_TYPES)})")
        code = PIPE_WORD_TYPES[store]
    elif "GO_raw_data_format" in acqp:
        word = _one(acqp, "GO_raw_data_format")
        if word not in WORD_TYPES:
            raise FormatError(where, f"unknown GO_raw_data_format {word!r} (known: "
                                     f"{', '.join(WORD_TYPES)})")
        code = WORD_TYPES[word]
    else:
        word = _one(acqp, "ACQ_word_size")
        if word not in ACQ_WORD_SIZES:
            raise FormatError(where, f"no GO_raw_data_format and unknown ACQ_word_size "
                                     f"{word!r}")
        code = ACQ_WORD_SIZES[word]
    return np.dtype(BYTE_ORDERS[order] + code)


def _refuse_non_cartesian(acqp: dict, method: dict, where) -> None:
    names = [str(_one(method, "Method", "")), str(_one(acqp, "ACQ_method", "")),
             str(_one(acqp, "PULPROG", ""))]
    label = next((n for n in names if n), "?")
    if "PVM_SpiralMode" in method or "NPro" in method:
        kind = "spiral" if "PVM_SpiralMode" in method else "radial"
        raise FormatError(where, f"method {label}: {kind} (non-Cartesian) k-space is not "
                                 "supported")
    for name in names:
        match = _NON_CARTESIAN.search(name)
        if match:
            kind = match.group().lower()
            what = ("echo-planar (needs line reversal and ghost correction)"
                    if kind == "epi" else "non-Cartesian or spectroscopic")
            raise FormatError(where, f"method {name}: {what} acquisitions are not supported")
    if any(d.lower().startswith("spectroscopic") for d in _strings(acqp, "ACQ_dim_desc")):
        raise FormatError(where, f"method {label}: spectroscopic dimensions are not images")


def _receivers(acqp: dict, method: dict, where) -> int:
    count = _int(method, "PVM_EncNReceivers", where)
    if count is None:
        for key in ("ACQ_ReceiverSelectPerChan", "ACQ_ReceiverSelect"):
            chosen = _strings(acqp, key)
            if chosen:
                count = sum(c.lower() == "yes" for c in chosen)
                break
    return count or 1


def _grid_size(method: dict, axis: int, acquired: int, where) -> int:
    """k-space grid length along ``axis``: round(PVM_AntiAlias x PVM_Matrix), reduced by
    PVM_EncZf zero filling; ``acquired`` when the method does not say."""
    matrix = _numbers(method, "PVM_Matrix", where)
    if not matrix or len(matrix) <= axis:
        return acquired
    anti = _numbers(method, "PVM_AntiAlias", where) or []
    zf = _numbers(method, "PVM_EncZf", where) or []
    size = round((anti[axis] if len(anti) > axis else 1.0) * matrix[axis])
    if len(zf) > axis and zf[axis] > 0:
        size -= 2 * math.floor((size - size / zf[axis]) / 2)
    return max(int(size), acquired) if axis == 0 else int(size)


def _step_indices(method: dict, key: str, count: int, grid: int, where) -> np.ndarray:
    """Grid index of each acquired phase-encode step: ``step + grid // 2``."""
    steps = _numbers(method, key, where, kind=int)
    if steps is None:
        steps = list(range(-(count // 2), count - count // 2))
    if len(steps) != count:
        raise FormatError(where, f"{key} holds {len(steps)} steps for {count} acquired "
                                 "phase-encode lines")
    index = np.asarray(steps, dtype=np.int64) + grid // 2
    if index.min() < 0 or index.max() >= grid:
        raise FormatError(where, f"{key} steps {min(steps)}..{max(steps)} do not fit the "
                                 f"{grid}-line k-space grid")
    return index


def _geometry(acqp: dict, method: dict, grid: tuple, dim: int, slices: int, where):
    """Field of view (z, y, x) in µm of the grid; z is the slice stack for 2-D."""
    fov = _numbers(method, "PVM_Fov", where)
    scale = 1000.0
    if not fov:
        fov, scale = _numbers(acqp, "ACQ_fov", where), 10000.0  # cm
    if not fov or len(fov) < dim or not all(f > 0 for f in fov[:dim]):
        raise FormatError(where, "neither PVM_Fov nor ACQ_fov gives the field of view")
    matrix = _numbers(method, "PVM_Matrix", where) or []
    sizes = (grid[2], grid[1], grid[0])[:dim]  # x, y (, z): the method's axis order
    fov_um = [fov[i] * scale / (matrix[i] if len(matrix) > i else sizes[i]) * sizes[i]
              for i in range(dim)]
    if dim == 3:
        return tuple(reversed(fov_um)), "PVM_Fov"
    distance = _numbers(method, "PVM_SPackArrSliceDistance", where)
    thick = (_numbers(method, "PVM_SliceThick", where)
             or _numbers(acqp, "ACQ_slice_thick", where))
    if slices > 1 and distance and distance[0] > 0:
        step, source = distance[0] * 1000.0, "PVM_SPackArrSliceDistance"
    elif thick and thick[0] > 0:
        step, source = thick[0] * 1000.0, "PVM_SliceThick"
    else:
        raise FormatError(where, "no PVM_SliceThick or slice distance for the 2-D slices")
    return (step * slices, fov_um[1], fov_um[0]), source


def _acquisition(acqp: dict, method: dict, echoes: int, matrix: tuple, fov_um: tuple,
                 where) -> dict:
    out = {"matrix": matrix, "fov_um": fov_um, "readout_axis": 2}
    nucleus = _one(acqp, "NUC1")
    if nucleus in GAMMA_BAR_MHZ_PER_T:
        out["nucleus"] = nucleus
    frequency = _numbers(acqp, "BF1", where) or _numbers(acqp, "SFO1", where)
    if frequency and frequency[0] > 0:
        out["b0_tesla"] = frequency[0] / GAMMA_BAR_MHZ_PER_T[out.get("nucleus", "1H")]
    echo_times = _numbers(acqp, "ACQ_echo_time", where) or []
    first = _numbers(method, "PVM_EchoTime", where)
    if len(echo_times) >= echoes:
        out["te_ms"] = tuple(echo_times[:echoes])
    elif first and echoes == 1:
        out["te_ms"] = (first[0],)
    tr = _numbers(method, "PVM_RepetitionTime", where) or _numbers(
        acqp, "ACQ_repetition_time", where)
    if tr and tr[0] > 0:
        out["tr_ms"] = tr[0]
    flip = _numbers(acqp, "ACQ_flip_angle", where)
    if flip:
        out["flip_deg"] = flip[0]
    bandwidth = _numbers(method, "PVM_EffSWh", where) or _numbers(acqp, "SW_h", where)
    if bandwidth and bandwidth[0] > 0:
        out["bandwidth_hz"] = bandwidth[0]
    averages = _numbers(method, "PVM_NAverages", where) or _numbers(acqp, "NA", where)
    if averages and averages[0] >= 1:
        out["averages"] = int(averages[0])
    kind = sequence_kind(" ".join(str(_one(h, k, "")) for h, k in (
        (method, "Method"), (acqp, "ACQ_method"), (acqp, "PULPROG"))))
    if kind:
        out["sequence"] = kind
    return out


# --------------------------------------------------------------------------- reading


def _scan_values(acqp: dict, raw: Path, size0: int, where) -> int:
    """Real values per receiver in one scan."""
    jobs = acqp.get("ACQ_jobs")
    if raw.name != "fid" and isinstance(jobs, list) and jobs:
        first = jobs[0] if isinstance(jobs[0], list) else jobs
        if first and isinstance(first[0], int) and not isinstance(first[0], bool):
            return first[0]
    return size0


def _load(path: Path) -> tuple:
    raw, acqp_path, method_path = _locate(Path(path))
    acqp, method = read_jcamp(acqp_path), read_jcamp(method_path)
    where = acqp_path
    _refuse_non_cartesian(acqp, method, where)
    size = _numbers(acqp, "ACQ_size", where, kind=int)
    dim = _int(acqp, "ACQ_dim", where, len(size) if size else None)
    if not size or dim not in (2, 3) or len(size) != dim:
        raise FormatError(where, f"ACQ_dim = {dim} with ACQ_size = {size}: only 2-D and 3-D "
                                 "Cartesian images are read")
    if size[0] % 2 or min(size) < 1:
        raise FormatError(where, f"ACQ_size = {size}: the readout must be an even, positive "
                                 "number of real values")
    dtype = _dtype(acqp, raw, where)
    receivers = _receivers(acqp, method, where)
    echoes = (_int(method, "PVM_NEchoImages", where)
              or _int(acqp, "ACQ_n_echo_images", where) or 1)
    objects = _int(acqp, "NI", where, 1)
    repetitions = _int(acqp, "NR", where, 1)
    phase_factor = _int(acqp, "ACQ_phase_factor", where, 1) or 1
    slices = _int(acqp, "NSLICES", where, 1) if dim == 2 else 1
    if repetitions != 1:
        raise FormatError(where, f"NR = {repetitions} repetitions: read one repetition at a "
                                 "time is not supported; only NR = 1 is read")
    if objects != echoes * slices or objects < 1:
        raise FormatError(where, f"NI = {objects} objects, but {echoes} echo images x "
                                 f"{slices} slices = {echoes * slices}")
    pe1, pe2 = size[1], (size[2] if dim == 3 else 1)
    if pe1 % phase_factor:
        raise FormatError(where, f"ACQ_size[1] = {pe1} is not a multiple of "
                                 f"ACQ_phase_factor = {phase_factor}")
    per_receiver = _scan_values(acqp, raw, size[0], where)
    if per_receiver % 2 or per_receiver < 2:
        raise FormatError(where, f"{per_receiver} real values per scan is not complex data")
    block = per_receiver * receivers * dtype.itemsize
    padded = raw.name == "fid" and _one(acqp, "GO_block_size") == "Standard_KBlock_Format"
    if padded:
        block = -(-block // KBLOCK) * KBLOCK
    scans = objects * pe1 * pe2
    check_size(raw, scans * block)

    flat = np.fromfile(raw, dtype=dtype).reshape(scans, block // dtype.itemsize)
    points = per_receiver // 2
    values = flat[:, :per_receiver * receivers].reshape(scans, receivers, points, 2)
    lines = values[..., 0].astype(np.float32) + np.complex64(1j) * values[..., 1]
    # scans, fastest first: phase factor, objects, phase-encode groups, second phase encode
    lines = lines.reshape(pe2, pe1 // phase_factor, objects, phase_factor, receivers, points)
    lines = lines.transpose(2, 0, 1, 3, 4, 5).reshape(objects, pe2, pe1, receivers, points)

    order = _numbers(acqp, "ACQ_obj_order", where, kind=int) or list(range(objects))
    if sorted(order) != list(range(objects)):
        raise FormatError(where, f"ACQ_obj_order {order[:16]} is not a permutation of the "
                                 f"{objects} objects")
    obj = np.asarray(order)
    echo_of, slice_of = obj % echoes, obj // echoes
    if echoes > 1 and _one(method, "EchoAcqMode") == "allEchoes":
        odd = echo_of % 2 == 1  # bipolar readout: sample t holds k index (N - t) mod N
        lines[odd] = np.roll(lines[odd, ..., ::-1], 1, axis=-1)

    nx = _grid_size(method, 0, points, where)
    ny = _grid_size(method, 1, pe1, where)
    y_index = _step_indices(method, "PVM_EncSteps1", pe1, ny, where)
    if dim == 3:
        nz = _grid_size(method, 2, pe2, where)
        z_index = _step_indices(method, "PVM_EncSteps2", pe2, nz, where)
        z_of = np.broadcast_to(z_index[None, :, None], (objects, pe2, pe1))
    else:
        nz = slices
        z_of = np.broadcast_to(slice_of[:, None, None], (objects, pe2, pe1))
    e_of = np.broadcast_to(echo_of[:, None, None], (objects, pe2, pe1))
    y_of = np.broadcast_to(y_index[None, None, :], (objects, pe2, pe1))
    if receivers * echoes * nz * ny * nx > MAX_GRID_PER_SAMPLE * lines.size:
        raise FormatError(where, f"the k-space grid {(nz, ny, nx)} (PVM_Matrix x "
                                 f"PVM_AntiAlias) is more than {MAX_GRID_PER_SAMPLE} x the "
                                 f"{lines.size} acquired samples")
    targets = (e_of * nz + z_of) * ny + y_of
    if np.unique(targets).size != targets.size:
        raise FormatError(where, "the phase-encode tables place two scans on the same "
                                 "k-space line")
    start = nx - points  # partial echo: the acquired samples fill the end of the grid
    data = np.zeros((receivers, echoes, nz, ny, nx), np.complex64)
    data[:, e_of, z_of, y_of, start:] = lines.transpose(3, 0, 1, 2, 4)
    sampled = np.zeros((nz, ny, nx), bool)
    sampled[z_of, y_of, start:] = True

    fov_um, spacing_source = _geometry(acqp, method, (nz, ny, nx), dim, slices, where)
    matrix = (nz, ny, nx)
    stated = _acquisition(acqp, method, echoes, matrix, fov_um, where)
    acquisition, stated = stated_acquisition(stated, where)
    if receivers == 1:
        data = data[0]
    kspace = KSpace(data, acquisition, sampled=None if sampled.all() else sampled,
                    coil_axis=0 if receivers > 1 else None, multislice=dim == 2)
    header = {"acqp": acqp, "method": method}
    matrix_read = _numbers(method, "PVM_Matrix", where)
    extra = {"raw_file": raw.name, "word_type": str(dtype), "kblock_padded": padded,
             "spacing_source": spacing_source, "receivers": receivers,
             "readout_oversampling": nx / matrix_read[0] if matrix_read else 1.0}
    scan = raw.parent
    name = " ".join(filter(None, [str(_one(acqp, "ACQ_scan_name", "") or ""),
                                  f"E{scan.name}", "k-space"]))
    return kspace, raw, header, stated, name, extra


def read_kspace(path: Path) -> KSpace:
    """Read a ParaVision scan's raw data as :class:`~napari_mrmicro.core.kspace.KSpace`.

    Parameters
    ----------
    path : Path
        Scan folder (with ``acqp``, ``method`` and ``fid`` or ``rawdata.job0``) or the
        raw data file.

    Returns
    -------
    KSpace
        ``(echo, z, y, x)`` complex64, or ``(coil, echo, z, y, x)`` for several
        receivers; DC at ``N // 2``. 2-D scans are ``multislice`` (z = slices).
    """
    return _load(path)[0]


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a ParaVision scan's raw k-space as a :class:`Volume`.

    The lines are reordered into k-space, so the data are always read into memory
    (``lazy`` is accepted for the io contract and has no effect).
    """
    kspace, raw, header, stated, name, extra = _load(path)
    return kspace_volume(kspace, "bruker_raw", raw, header, stated, name=name, **extra)
