"""Bruker ParaVision raw data: a scan folder's ``fid`` (PV 5-7) or ``rawdata.job0`` (PV 360)
with its ``acqp`` and ``method`` (JCAMP-DX, read by :mod:`napari_mrmicro.io.jcamp`),
placed on the grid ParaVision reconstructs so that a plain centred FFT gives the vendor's
image (``pdata/1/2dseq``).

Layout (ParaVision "Raw data" chapter and Bruker's pvtools ``readBrukerRaw`` /
``convertRawToFrame`` / ``convertFrameToCKData``; REFERENCES.md "Real instrument files"):

- One *scan* is one readout from every active receiver: for each receiver in turn the
  readout's real/imaginary pairs. In a PV <= 7 ``fid`` with ``GO_block_size =
  Standard_KBlock_Format`` each scan is zero-padded to a multiple of 1024 bytes and its
  length is ``ACQ_size[0]`` real values. ``rawdata.job0`` (PV 360) is continuous; its scan
  length is ``ACQ_jobs[0][0]`` real values per receiver, and the stored ``ACQ_size`` is a
  placeholder (``1024 1``), so the encoding comes from the method (``PVM_EncMatrix``).
- Word type ``GO_raw_data_format`` (PV <= 7), or in PV 360 the ``STORE_<bits>bit_<kind>``
  field of ``ACQ_ScanPipeJobSettings`` (its first field is the storage mode,
  ``STORE_processed``), else ``ACQ_word_size``; byte order ``BYTORDA``.
- Scans run, fastest first: the lines of one segment (``ACQ_phase_factor``; a RARE echo
  train of ``PVM_RareFactor`` lines, which PV 360 stores with ``ACQ_phase_factor = 1``), the
  ``NI`` objects (echo images x slices, echo fastest; the i-th acquired object is
  ``ACQ_obj_order[i]``, interleaved slices), the remaining segments, the second phase
  encode (3-D), then ``NR`` repetitions. Averages (``NA``, ``NAE``) are accumulated by the
  scanner.
- Phase-encode line ``i`` sits at ``PVM_EncSteps1[i] + N // 2`` (``PVM_EncSteps2`` in 3-D),
  with ``N`` the vendor's reconstruction grid: ``RECO_ft_size`` of ``pdata/1/reco`` when
  the scan has one, else ``PVM_Matrix x PVM_AntiAlias``; lines beyond the encoded matrix
  (``PVM_EncZf`` zero filling, partial Fourier) stay zero. The readout's echo sample
  (``PVM_EchoPosition`` % of the samples) sits at ``N // 2``, so an asymmetric echo leaves
  the start of the readout empty. ``sampled`` marks what was acquired.
- ParaVision applies the slice package's phase offsets in its reconstruction as a k-space
  phase ramp (``RECO_rotate - 0.5`` of the FOV per frame, else ``PVM_SPackArrPhase1Offset /
  PVM_Fov``); the reader applies the same ramp, so the image covers the planned FOV.
  ``EchoAcqMode = allEchoes`` (bipolar MGE) reverses every second echo's readout.

Measured on a PV 360.3.6 study (``realdata/bruker_pv/pv360_rodent``): the zero-filled
centred iFFT of FLASH scan 6 (partial echo, ``PVM_EncZf`` 1.34) and RARE scan 5 (16-line
echo trains) correlates 1.000 slice by slice with Bruker's own 2dseq.

Readout oversampling is kept: the x axis is the acquired readout, its field of view
``PVM_Fov[0] x`` the oversampling, so the voxel size is still ``PVM_Fov / PVM_Matrix``.
Spiral and radial methods (``PVM_SpiralNbOfInterleaves``, ``NPro``) are read as acquired,
``(echo, readouts, samples)``, with the trajectory of the scan's ``traj`` file
(:mod:`~napari_mrmicro.io.bruker_traj`), for gridding by NUFFT; without a ``traj`` they are
refused in one line. Spectroscopy is refused with a message naming the method.

Single-shot echo-planar scans (``PVM_IsEpiScan``) hold one echo train per object and scan:
a navigator (``PVM_EpiPrefixNavSize``), samples ParaVision's reconstruction discards, then
``PVM_EpiNEchoes`` ramp-sampled readouts. Each train is regridded on the scan's measured
trajectory (``PVM_EpiTrajAdjkx``), every second line reversed, the polarity phase
(``PVM_EpiTrajAdjb0``) removed, and the Nyquist ghost corrected: ParaVision's adjustment
(``PVM_EpiPhaseCorrection``, one (φ0, φ1) per receiver and object in acquisition order, as
ParaVision applies it before sorting the slices) refined per object and receiver by image
entropy, or found by image entropy alone when the method has none
(:mod:`napari_mrmicro.core.epi`); the lines then go onto the grid as above. Scan 7 of the
PV 360.3.6 study (30 echoes of 80 samples, partial Fourier 30 of 40 lines), zero-filled
image against Bruker's 2dseq, correlation median over slices (lowest): 0.994 (0.986);
the stored coefficients alone 0.993 (0.977) (ParaVision also updates them from each scan's
navigator); entropy alone 0.994 (0.986); no ghost correction 0.88; ramp samples taken as
equally spaced 0.21. The navigator's drift and amplitude stabilisation across repetitions
is not applied; segmented (multi-shot), asymmetric-readout and 3-D EPI are refused.

This module also holds :func:`kspace_volume`, which the other raw-data readers
(:mod:`~napari_mrmicro.io.ismrmrd`, :mod:`~napari_mrmicro.io.varian`,
:mod:`~napari_mrmicro.io.tecmag`) share.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T, Acquisition
from napari_mrmicro.core.epi import (correct_nyquist_ghost, fit_nyquist_ghost,
                                     regrid_echo_train)
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.io import kspace_codec
from napari_mrmicro.io._common import FormatError, Volume, sequence_kind
from napari_mrmicro.io import bruker
from napari_mrmicro.io.bruker import _numbers, _one, _strings
from napari_mrmicro.io.bruker_traj import read_trajectory
from napari_mrmicro.io.jcamp import read_jcamp

WORD_TYPES = {"GO_32BIT_SGN_INT": "i4", "GO_16BIT_SGN_INT": "i2", "GO_32BIT_FLOAT": "f4"}
PIPE_WORD_TYPES = {"STORE_64bit_float": "f8", "STORE_32bit_float": "f4",
                   "STORE_32bit_signed": "i4", "STORE_16bit_signed": "i2"}
_PIPE_WORD = re.compile(r"STORE_\d+bit_[a-z]+")
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
    full.update(full.pop("extra"))  # stated extras (echo train, scan time, ...) as given
    return acquisition, {k: full[k] for k in stated}


def kspace_volume(kspace: KSpace, fmt: str, source, header: dict, stated: dict,
                  name: str | None = None, **extra) -> Volume:
    """The :class:`Volume` of raw k-space read from a file, in the form of
    :func:`napari_mrmicro.io.kspace_codec.kspace_to_volume` (acquired mask, echo position
    and trajectory included); ``metadata`` also holds ``format``, ``source``, ``header``,
    the ``acquisition`` fields the file ``stated`` and ``extra``."""
    return kspace_codec.kspace_to_volume(
        kspace, {"format": fmt, "source": str(source), "header": header, **extra},
        stated=stated, name=name)


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


def _pipe_word_type(acqp: dict, where) -> str | None:
    """The word type of ``ACQ_ScanPipeJobSettings`` (PV 360), or None when it has none.

    The struct's fields are the storage mode (``STORE_processed``/``STORE_raw``), the word
    type (``STORE_32bit_signed``), then display and accumulation options; the word type is
    the one ``STORE_<bits>bit_<kind>`` field, wherever it stands.
    """
    settings = acqp.get("ACQ_ScanPipeJobSettings")
    if not isinstance(settings, list) or not settings:
        return None
    first = settings[0] if isinstance(settings[0], list) else settings
    words = [v for v in first if isinstance(v, str) and _PIPE_WORD.fullmatch(v)]
    if len(words) > 1:
        raise FormatError(where, f"ACQ_ScanPipeJobSettings names {len(words)} word types "
                                 f"{words}")
    if words and words[0] not in PIPE_WORD_TYPES:
        raise FormatError(where, f"unknown ACQ_ScanPipeJobSettings word type {words[0]!r} "
                                 f"(known: {', '.join(PIPE_WORD_TYPES)})")
    return PIPE_WORD_TYPES[words[0]] if words else None


def _dtype(acqp: dict, raw: Path, where) -> np.dtype:
    order = _one(acqp, "BYTORDA", "little")
    if order not in BYTE_ORDERS:
        raise FormatError(where, f"unknown BYTORDA {order!r} (known: little, big)")
    code = _pipe_word_type(acqp, where) if raw.name != "fid" else None
    if code is None and "GO_raw_data_format" in acqp:
        word = _one(acqp, "GO_raw_data_format")
        if word not in WORD_TYPES:
            raise FormatError(where, f"unknown GO_raw_data_format {word!r} (known: "
                                     f"{', '.join(WORD_TYPES)})")
        code = WORD_TYPES[word]
    elif code is None:
        word = _one(acqp, "ACQ_word_size")
        if word not in ACQ_WORD_SIZES:
            raise FormatError(where, f"no GO_raw_data_format and unknown ACQ_word_size "
                                     f"{word!r}")
        code = ACQ_WORD_SIZES[word]
    return np.dtype(BYTE_ORDERS[order] + code)


def _names(acqp: dict, method: dict) -> list:
    return [str(_one(method, "Method", "")), str(_one(acqp, "ACQ_method", "")),
            str(_one(acqp, "PULPROG", ""))]


def _is_epi(acqp: dict, method: dict) -> bool:
    """An echo-planar imaging scan (``PVM_IsEpiScan``, or EPI in the method's name)."""
    return _one(method, "PVM_IsEpiScan") == "Yes" or any(
        _NON_CARTESIAN.search(n) and _NON_CARTESIAN.search(n).group().lower() == "epi"
        for n in _names(acqp, method))


def _refuse_unsupported(acqp: dict, method: dict, where) -> None:
    names = _names(acqp, method)
    label = next((n for n in names if n), "?")
    if _is_epi(acqp, method) or _non_cartesian_readouts(method, where):
        return
    for name in names:
        match = _NON_CARTESIAN.search(name)
        if match:
            raise FormatError(where, f"method {name}: non-Cartesian or spectroscopic "
                                     "acquisitions are not supported")
    if any(d.lower().startswith("spectroscopic") for d in _strings(acqp, "ACQ_dim_desc")):
        raise FormatError(where, f"method {label}: spectroscopic dimensions are not images")


def _non_cartesian_readouts(method: dict, where) -> int | None:
    """Readouts of a non-Cartesian method (spiral interleaves, radial projections), or
    None for a Cartesian one."""
    for key in ("PVM_SpiralNbOfInterleaves", "NPro"):
        if key in method:
            count = _int(method, key, where)
            if not count:
                raise FormatError(where, f"{key} = {count}: a non-Cartesian scan needs at "
                                         "least one readout")
            return count
    if "PVM_SpiralMode" in method:
        raise FormatError(where, "a spiral method without PVM_SpiralNbOfInterleaves")
    return None


def _receivers(acqp: dict, method: dict, where) -> int:
    count = _int(method, "PVM_EncNReceivers", where)
    if count is None:
        for key in ("ACQ_ReceiverSelectPerChan", "ACQ_ReceiverSelect"):
            chosen = _strings(acqp, key)
            if chosen:
                count = sum(c.lower() == "yes" for c in chosen)
                break
    return count or 1


def _matrix_size(method: dict, axis: int, where) -> int | None:
    """round(PVM_AntiAlias x PVM_Matrix) along ``axis``, or None when the method does not
    give the matrix."""
    matrix = _numbers(method, "PVM_Matrix", where)
    if not matrix or len(matrix) <= axis:
        return None
    anti = _numbers(method, "PVM_AntiAlias", where) or []
    return int(round((anti[axis] if len(anti) > axis else 1.0) * matrix[axis]))


def _encoded_size(method: dict, axis: int, acquired: int, where) -> int:
    """Length of the encoded k-space along ``axis`` before the vendor's zero filling:
    :func:`_matrix_size` reduced by PVM_EncZf; ``acquired`` when the method does not say."""
    size = _matrix_size(method, axis, where)
    if size is None:
        return acquired
    zf = _numbers(method, "PVM_EncZf", where) or []
    if len(zf) > axis and zf[axis] > 0:
        size -= 2 * math.floor((size - size / zf[axis]) / 2)
    return int(size)


def _grid_size(reco: dict, method: dict, axis: int, acquired: int, where) -> int:
    """Length of the reconstruction grid along ``axis``: the vendor's ``RECO_ft_size``
    when the scan has a reco, else round(PVM_AntiAlias x PVM_Matrix), else ``acquired``."""
    ft = _numbers(reco, "RECO_ft_size", where, kind=int) if reco else None
    if ft and len(ft) > axis and ft[axis] >= acquired:
        return int(ft[axis])
    size = _matrix_size(method, axis, where)
    return acquired if size is None else max(size, acquired)


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


def _echo_sample(method: dict, points: int, encoded: int, where) -> int:
    """Readout samples acquired before the echo (k = 0).

    ``PVM_EchoPosition`` (% of the readout) where the method states it; otherwise the
    echo is taken at the centre of the encoded readout, the acquired samples filling its
    end (an asymmetric echo misses the start of k-space).
    """
    position = _numbers(method, "PVM_EchoPosition", where)
    if position:
        if not 0 <= position[0] <= 100:
            raise FormatError(where, f"PVM_EchoPosition = {position[0]} % is not within "
                                     "0..100")
        return int(round(position[0] / 100.0 * points))
    return encoded // 2 - (encoded - points)


def _fov_shifts(reco: dict, method: dict, objects: int, dim: int, where) -> np.ndarray:
    """Image shift of each object along the phase-encode axes, in fractions of the FOV.

    ParaVision applies the phase offsets of the slice package in its reconstruction, as a
    k-space phase ramp: ``RECO_rotate`` (per axis and frame, 0.5 meaning the plain centred
    transform). Without a reco the shift is ``PVM_SPackArrPhase1Offset / PVM_Fov[1]``
    (``Phase2Offset`` / ``PVM_Fov[2]`` in 3-D). The readout offset is applied by the
    receiver frequency at acquisition. Returns ``(objects, dim - 1)`` shifts for y (, z).
    """
    shifts = np.zeros((objects, dim - 1))
    rotate = reco.get("RECO_rotate") if reco else None
    if isinstance(rotate, list) and len(rotate) >= dim and all(
            isinstance(r, list) for r in rotate[:dim]):
        for axis in range(1, dim):
            values = _numbers({"r": rotate[axis]}, "r", where) or []
            if len(values) in (1, objects):
                shifts[:, axis - 1] = np.asarray(values) - 0.5
        return shifts
    fov = _numbers(method, "PVM_Fov", where) or []
    for axis, key in ((1, "PVM_SPackArrPhase1Offset"), (2, "PVM_SPackArrPhase2Offset")):
        offset = _numbers(method, key, where)
        if axis < dim and offset and len(fov) > axis and fov[axis] > 0:
            shifts[:, axis - 1] = offset[0] / fov[axis]
    return shifts


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
    rare = _numbers(method, "PVM_RareFactor", where)
    effective = _numbers(method, "EffectiveTE", where)
    if rare and rare[0] > 1 and effective and echoes == 1:
        out["te_ms"] = (effective[0],)  # RARE: PVM_EchoTime is the echo spacing
    elif len(echo_times) >= echoes:
        out["te_ms"] = tuple(echo_times[:echoes])
    elif first and echoes == 1 and not (rare and rare[0] > 1):
        out["te_ms"] = (first[0],)
    tr = _numbers(method, "PVM_RepetitionTime", where) or _numbers(
        acqp, "ACQ_repetition_time", where)
    if tr and tr[0] > 0:
        out["tr_ms"] = tr[0]
    excitation = bruker.excitation_angle(method)  # ACQ_flip_angle: refocusing in RARE
    flip = [excitation] if excitation else _numbers(acqp, "ACQ_flip_angle", where)
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
    out.update(bruker.encoding(method, where))
    return out


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """How the scans of one raw file map onto k-space (all counts from the headers)."""

    dim: int            # 2 (multi-slice) or 3
    points: int         # complex readout samples per receiver and scan
    receivers: int
    echoes: int
    slices: int         # 2-D slices (1 for 3-D)
    pe1: int            # acquired phase-encode lines
    pe2: int            # acquired second phase-encode steps (1 for 2-D)
    phase_factor: int   # consecutive lines of one segment (RARE echo train)
    repetitions: int
    dtype: np.dtype
    block: int          # bytes of one scan (all receivers), padding included
    padded: bool

    @property
    def objects(self) -> int:
        return self.echoes * self.slices

    @property
    def scans(self) -> int:
        """Scans in one repetition."""
        return self.objects * self.pe1 * self.pe2


def _dimension(acqp: dict, method: dict, where) -> int:
    spatial = str(_one(method, "PVM_SpatDimEnum", "") or "").strip("<>").upper()
    if spatial in ("2D", "3D"):
        return int(spatial[0])
    size = _numbers(acqp, "ACQ_size", where, kind=int)
    dim = _int(acqp, "ACQ_dim", where, len(size) if size else None)
    if dim not in (2, 3) or not size or len(size) != dim:
        raise FormatError(where, f"ACQ_dim = {dim} with ACQ_size = {size}: only 2-D and 3-D "
                                 "Cartesian images are read")
    return dim


def _layout(acqp: dict, method: dict, raw: Path, where, cartesian: bool = True) -> _Layout:
    """Sizes of the raw file from acqp and method.

    PV 360 keeps a placeholder ``ACQ_size`` in the stored acqp; its scan length is
    ``ACQ_jobs[0][0]`` (real values per receiver) and the encoding is the method's
    (``PVM_EncMatrix``, ``PVM_EncSteps1/2``). Older versions state both; the method wins
    where they differ, since it is what the sequence played out.
    """
    dim = _dimension(acqp, method, where)
    size = _numbers(acqp, "ACQ_size", where, kind=int) or []
    encoded = _numbers(method, "PVM_EncMatrix", where, kind=int) or []
    jobs = acqp.get("ACQ_jobs")
    values = None
    if raw.name != "fid" and isinstance(jobs, list) and jobs:
        first = jobs[0] if isinstance(jobs[0], list) else jobs
        if first and isinstance(first[0], int) and not isinstance(first[0], bool):
            values = first[0]
    if values is None:
        values = size[0] if size else None
    if not isinstance(values, int) or values < 2 or values % 2:
        raise FormatError(where, f"a scan of {values} real values (ACQ_jobs / ACQ_size) is "
                                 "not complex data")

    def lines(axis: int) -> int:
        if len(encoded) > axis and encoded[axis] >= 1:
            return int(encoded[axis])
        if len(size) > axis and size[axis] >= 1:
            return int(size[axis])
        raise FormatError(where, f"neither PVM_EncMatrix nor ACQ_size gives the number of "
                                 f"phase-encode steps along axis {axis}")

    pe1 = lines(1) if cartesian else 1
    pe2 = lines(2) if dim == 3 and cartesian else 1
    receivers = _receivers(acqp, method, where)
    echoes = (_int(method, "PVM_NEchoImages", where)
              or _int(acqp, "ACQ_n_echo_images", where) or 1)
    slices = (_int(acqp, "NSLICES", where, 1) or 1) if dim == 2 else 1
    objects = _int(acqp, "NI", where, echoes * slices)
    if objects != echoes * slices:
        raise FormatError(where, f"NI = {objects} objects, but {echoes} echo images x "
                                 f"{slices} slices = {echoes * slices}")
    phase_factor = _int(acqp, "ACQ_phase_factor", where, 1) or 1
    rare = _int(method, "PVM_RareFactor", where) or _int(acqp, "ACQ_rare_factor", where)
    if not cartesian:
        phase_factor = 1
    elif phase_factor == 1 and rare and rare > 1:
        phase_factor = rare  # PV 360 stores ACQ_phase_factor 1 for RARE echo trains
    if pe1 % phase_factor:
        raise FormatError(where, f"{pe1} phase-encode lines are not a multiple of the "
                                 f"{phase_factor} lines of one segment (ACQ_phase_factor / "
                                 "PVM_RareFactor)")
    repetitions = (_int(acqp, "NR", where) or _int(method, "PVM_NRepetitions", where) or 1)
    dtype = _dtype(acqp, raw, where)
    block = values * receivers * dtype.itemsize
    padded = raw.name == "fid" and _one(acqp, "GO_block_size") == "Standard_KBlock_Format"
    if padded:
        block = -(-block // KBLOCK) * KBLOCK
    return _Layout(dim, values // 2, receivers, echoes, slices, pe1, pe2, phase_factor,
                   repetitions, dtype, block, padded)


# --------------------------------------------------------------------------- reading


def _read_scans(raw: Path, layout: _Layout, scans: int, repetition: int) -> np.ndarray:
    """``(scans, receivers, points)`` complex64 of one repetition, padding dropped."""
    lay = layout
    flat = np.fromfile(raw, dtype=lay.dtype, count=scans * lay.block // lay.dtype.itemsize,
                       offset=repetition * scans * lay.block)
    flat = flat.reshape(scans, lay.block // lay.dtype.itemsize)
    values = flat[:, :2 * lay.points * lay.receivers].reshape(
        scans, lay.receivers, lay.points, 2)
    out = np.empty(values.shape[:-1], np.complex64)
    out.real, out.imag = values[..., 0], values[..., 1]
    return out


def _read_lines(raw: Path, layout: _Layout, repetition: int) -> np.ndarray:
    """``(objects, pe2, pe1, receivers, points)`` complex64 lines of one repetition."""
    lay = layout
    lines = _read_scans(raw, lay, lay.scans, repetition)
    # scans, fastest first: segment lines, objects, segments, second phase encode
    lines = lines.reshape(lay.pe2, lay.pe1 // lay.phase_factor, lay.objects,
                          lay.phase_factor, lay.receivers, lay.points)
    return lines.transpose(2, 0, 1, 3, 4, 5).reshape(
        lay.objects, lay.pe2, lay.pe1, lay.receivers, lay.points)


def _reco(folder: Path) -> dict:
    """The scan's first reconstruction parameters (``pdata/1/reco``), or {} if absent."""
    path = folder / "pdata" / "1" / "reco"
    return read_jcamp(path) if path.is_file() else {}


def _check_file_size(raw: Path, lay: _Layout, scans: int, counts: str) -> None:
    """Refuse, before anything is allocated, a raw file whose size is not what the header
    says: ``NR x scans x block`` bytes; ``counts`` names how ``scans`` was counted."""
    expected, actual = lay.repetitions * scans * lay.block, raw.stat().st_size
    if expected != actual:
        raise FormatError(raw, f"header implies {expected} bytes ({lay.repetitions} "
                               f"repetitions (NR) x {counts} x {lay.block}-byte scans) but "
                               f"the file holds {actual}")


def _repetition(lay: _Layout, repetition: int | None, where) -> int:
    if lay.repetitions > 1 and repetition is None:
        raise FormatError(where, f"NR = {lay.repetitions} repetitions: choose one "
                                 f"(mrmicro recon --repetition 0..{lay.repetitions - 1}; "
                                 "repetition= in Python), or open the scan's pdata 2dseq, "
                                 "which holds them all")
    repetition = repetition or 0
    if not 0 <= repetition < lay.repetitions:
        raise FormatError(where, f"repetition {repetition} of NR = {lay.repetitions} "
                                 "does not exist")
    return repetition


def _load_noncartesian(raw: Path, acqp: dict, method: dict, readouts: int,
                       repetition: int | None, where) -> tuple:
    """A spiral or radial scan: readouts as acquired and the ``traj`` beside them.

    Scans run, fastest first: objects (echo images), readouts (interleaves or
    projections), repetitions; one slice (2-D) or a 3-D volume.
    """
    lay = _layout(acqp, method, raw, where, cartesian=False)
    if lay.dim == 2 and lay.slices > 1:
        raise FormatError(where, f"{lay.slices} slices of a non-Cartesian 2-D method: only "
                                 "single-slice 2-D and 3-D trajectories are read")
    scans = lay.echoes * readouts
    _check_file_size(raw, lay, scans, f"{lay.echoes} echo images x {readouts} readouts "
                                      "(PVM_SpiralNbOfInterleaves / NPro)")
    repetition = _repetition(lay, repetition, where)
    trajectory = read_trajectory(raw.parent, acqp, method, lay.points, readouts)
    matrix = _numbers(method, "PVM_Matrix", where, kind=int)
    grid = tuple(reversed(matrix)) if lay.dim == 3 else (1, matrix[1], matrix[0])
    scans_data = _read_scans(raw, lay, scans, repetition)
    data = scans_data.reshape(readouts, lay.echoes, lay.receivers, lay.points)
    data = np.ascontiguousarray(data.transpose(2, 1, 0, 3))  # receiver, echo, readout, sample
    if lay.receivers == 1:
        data = data[0]
    fov_um, spacing_source = _geometry(acqp, method, grid, lay.dim, 1, where)
    stated = _acquisition(acqp, method, lay.echoes, grid, fov_um, where)
    acquisition, stated = stated_acquisition(stated, where)
    kspace = KSpace(data, acquisition, coil_axis=0 if lay.receivers > 1 else None,
                    trajectory=trajectory)
    extra = {"raw_file": raw.name, "word_type": lay.dtype.str, "kblock_padded": lay.padded,
             "spacing_source": spacing_source, "receivers": lay.receivers,
             "readouts": readouts, "repetition": repetition,
             "repetitions": lay.repetitions}
    name = " ".join(filter(None, [str(_one(acqp, "ACQ_scan_name", "") or ""),
                                  f"E{raw.parent.name}", "k-space"]))
    return kspace, raw, {"acqp": acqp, "method": method}, stated, name, extra


def _epi_train(method: dict, lay: _Layout, where) -> dict:
    """Where the echo train lies in an EPI scan, and ParaVision's readout corrections.

    One scan holds one shot of one object: ``PVM_EpiPrefixNavSize`` navigator samples
    (when ``PVM_EpiPrefixNavYes``), samples the reconstruction discards, then
    ``PVM_EpiNEchoes`` readouts of ``len(PVM_EpiTrajAdjkx)`` samples, which end the scan.
    """
    shots = _int(method, "PVM_EpiNShots", where, 1) or 1
    if shots > 1:
        raise FormatError(where, f"PVM_EpiNShots = {shots}: segmented (multi-shot) EPI is "
                                 "not reconstructed here, only single-shot; open the "
                                 "scan's pdata 2dseq instead")
    echoes = _int(method, "PVM_EpiNEchoes", where)
    if not echoes:
        raise FormatError(where, "an EPI method without PVM_EpiNEchoes (readouts per scan)")
    trajectory = _numbers(method, "PVM_EpiTrajAdjkx", where)
    if not trajectory or len(trajectory) < 2 or _one(method, "PVM_EpiTrajAdjYesNo") == "No":
        raise FormatError(where, "no measured EPI readout trajectory (PVM_EpiTrajAdjkx): "
                                 "ramp-sampled readouts cannot be regridded without it")
    asymmetry = _numbers(method, "PVM_EpiReadAsym", where)
    if asymmetry and asymmetry[0] != 0:
        raise FormatError(where, f"PVM_EpiReadAsym = {asymmetry[0]}: asymmetric EPI "
                                 "readouts are not reconstructed here")
    samples = len(trajectory)
    navigator = (_int(method, "PVM_EpiPrefixNavSize", where, 0) or 0
                 if _one(method, "PVM_EpiPrefixNavYes") == "Yes" else 0)
    stated = _int(method, "PVM_EpiNSamplesPerScan", where)
    if stated is not None and stated != lay.points:
        raise FormatError(where, f"PVM_EpiNSamplesPerScan = {stated} but a scan holds "
                                 f"{lay.points} complex samples (ACQ_jobs / ACQ_size)")
    start = lay.points - echoes * samples
    if start < navigator:
        raise FormatError(where, f"{echoes} readouts (PVM_EpiNEchoes) x {samples} samples "
                                 f"(PVM_EpiTrajAdjkx) and a {navigator}-sample navigator do "
                                 f"not fit a scan of {lay.points} samples")
    polarity = _numbers(method, "PVM_EpiTrajAdjb0", where)
    if polarity is not None and len(polarity) != samples:
        raise FormatError(where, f"PVM_EpiTrajAdjb0 holds {len(polarity)} values for the "
                                 f"{samples} samples of PVM_EpiTrajAdjkx")
    ghost = _numbers(method, "PVM_EpiPhaseCorrection", where)
    if ghost is not None:
        if len(ghost) != lay.receivers * lay.objects * 2:
            raise FormatError(where, f"PVM_EpiPhaseCorrection holds {len(ghost)} values, not "
                                     f"(phase, slope) for {lay.receivers} receivers x "
                                     f"{lay.objects} objects (NI)")
        ghost = np.asarray(ghost, np.float64).reshape(lay.receivers, lay.objects, 2)
    for key, values in (("PVM_EpiTrajAdjkx", trajectory), ("PVM_EpiTrajAdjb0", polarity),
                        ("PVM_EpiPhaseCorrection", ghost)):
        if values is not None and not np.all(np.isfinite(values)):
            raise FormatError(where, f"{key} holds values that are not finite")
    return {"echoes": echoes, "samples": samples, "start": start, "navigator": navigator,
            "trajectory": np.asarray(trajectory, np.float64),
            "polarity_phase": None if polarity is None else np.asarray(polarity),
            "ghost": ghost}


def _epi_layout(acqp: dict, method: dict, raw: Path, where) -> tuple:
    """(layout, echo train) of a single-shot multi-slice EPI scan, its file size checked;
    the layout counts the echoes as the phase-encode lines of one segment."""
    if _dimension(acqp, method, where) != 2:
        raise FormatError(where, "3-D EPI: only multi-slice (2-D) EPI is reconstructed "
                                 "here; open the scan's pdata 2dseq instead")
    lay = _layout(acqp, method, raw, where, cartesian=False)
    train = _epi_train(method, lay, where)
    _check_file_size(raw, lay, lay.objects, f"{lay.objects} objects (NI), one echo train "
                                            "each")
    return dataclasses.replace(lay, pe1=train["echoes"], phase_factor=train["echoes"]), train


def _read_epi_lines(raw: Path, lay: _Layout, train: dict, size: int, repetition: int,
                    rows: np.ndarray, grid_rows: int, where) -> tuple:
    """``(objects, 1, echoes, receivers, size)`` regridded, ghost-corrected lines of one
    repetition, the readout grid points they cover, and the ``(objects, receivers, 2)``
    ghost correction applied: the stored coefficients refined per train by image entropy
    (:func:`napari_mrmicro.core.epi.fit_nyquist_ghost`; ``rows`` are the echoes' rows on
    the ``grid_rows``-line phase-encode grid)."""
    scans = _read_scans(raw, lay, lay.objects, repetition)  # objects, receivers, points
    stop = train["start"] + train["echoes"] * train["samples"]
    trains = scans[..., train["start"]:stop].reshape(
        lay.objects, lay.receivers, train["echoes"], train["samples"])
    try:
        lines, covered = regrid_echo_train(trains, train["trajectory"], size,
                                           polarity_phase=train["polarity_phase"])
    except ValueError as error:  # a trajectory spanning more grid points than it samples
        raise FormatError(where, f"PVM_EpiTrajAdjkx does not fit the {size}-point readout "
                                 f"grid (PVM_Matrix): {error}") from None
    stored = train["ghost"]
    ghost = fit_nyquist_ghost(lines, rows, grid_rows,
                              start=None if stored is None else stored.transpose(1, 0, 2))
    correct_nyquist_ghost(lines, ghost)
    return lines.transpose(0, 2, 1, 3)[:, None], covered, ghost


def _load(path: Path, repetition: int | None = None) -> tuple:
    raw, acqp_path, method_path = _locate(Path(path))
    acqp, method = read_jcamp(acqp_path), read_jcamp(method_path)
    where = acqp_path
    _refuse_unsupported(acqp, method, where)
    readouts = _non_cartesian_readouts(method, where)
    if readouts is not None:
        return _load_noncartesian(raw, acqp, method, readouts, repetition, where)
    train = None
    if _is_epi(acqp, method):
        lay, train = _epi_layout(acqp, method, raw, where)
    else:
        lay = _layout(acqp, method, raw, where)
        _check_file_size(raw, lay, lay.scans, f"{lay.objects} objects (NI) x {lay.pe1} x "
                                              f"{lay.pe2} phase-encode steps (PVM_EncMatrix "
                                              "/ ACQ_size)")
    repetition = _repetition(lay, repetition, where)
    reco = _reco(raw.parent)

    # readout samples per line on the grid: as acquired, or the EPI regridding's matrix
    points = lay.points if train is None else _matrix_size(method, 0, where)
    if not points:
        raise FormatError(where, "an EPI method without PVM_Matrix (the readout grid)")
    nx = _grid_size(reco, method, 0, points, where)
    ny = _grid_size(reco, method, 1, lay.pe1, where)
    nz = _grid_size(reco, method, 2, lay.pe2, where) if lay.dim == 3 else lay.slices
    if lay.receivers * lay.echoes * nz * ny * nx > MAX_GRID_PER_SAMPLE * (
            lay.scans * lay.receivers * lay.points):
        raise FormatError(where, f"the k-space grid {(nz, ny, nx)} (PVM_Matrix x "
                                 f"PVM_AntiAlias) is more than {MAX_GRID_PER_SAMPLE} x the "
                                 f"{lay.scans * lay.receivers * lay.points} acquired samples")
    echo = (_echo_sample(method, points, _encoded_size(method, 0, points, where), where)
            if train is None else points // 2)
    start = nx // 2 - echo
    if not 0 <= start <= nx - points:
        raise FormatError(where, f"an echo at readout sample {echo} of {points} does not "
                                 f"fit the {nx}-sample grid (PVM_EchoPosition, PVM_Matrix)")
    y_index = _step_indices(method, "PVM_EncSteps1", lay.pe1, ny, where)
    z_index = (_step_indices(method, "PVM_EncSteps2", lay.pe2, nz, where)
               if lay.dim == 3 else None)
    order = _numbers(acqp, "ACQ_obj_order", where, kind=int) or list(range(lay.objects))
    if sorted(order) != list(range(lay.objects)):
        raise FormatError(where, f"ACQ_obj_order {order[:16]} is not a permutation of the "
                                 f"{lay.objects} objects")
    shifts = _fov_shifts(reco, method, lay.objects, lay.dim, where)

    if train is None:
        lines, columns = _read_lines(raw, lay, repetition), np.ones(points, bool)
    else:
        lines, columns, ghost = _read_epi_lines(raw, lay, train, points, repetition,
                                                y_index, ny, where)
    obj = np.asarray(order)
    echo_of, slice_of = obj % lay.echoes, obj // lay.echoes
    if lay.echoes > 1 and _one(method, "EchoAcqMode") == "allEchoes":
        odd = echo_of % 2 == 1  # bipolar readout: sample t holds k index (N - t) mod N
        lines[odd] = np.roll(lines[odd, ..., ::-1], 1, axis=-1)
    if np.any(shifts):  # the vendor's FOV shift: e^{-2πi s k} along each phase encode
        ramp = np.exp(-2j * np.pi * shifts[:, 0, None] * (y_index - ny // 2)[None])
        lines *= ramp[:, None, :, None, None].astype(np.complex64)
        if lay.dim == 3:
            ramp = np.exp(-2j * np.pi * shifts[:, 1, None] * (z_index - nz // 2)[None])
            lines *= ramp[:, :, None, None, None].astype(np.complex64)

    shape = (lay.objects, lay.pe2, lay.pe1)
    z_of = np.broadcast_to((z_index[None, :, None] if lay.dim == 3
                            else slice_of[:, None, None]), shape)
    e_of = np.broadcast_to(echo_of[:, None, None], shape)
    y_of = np.broadcast_to(y_index[None, None, :], shape)
    targets = (e_of * nz + z_of) * ny + y_of
    if np.unique(targets).size != targets.size:
        raise FormatError(where, "the phase-encode tables place two scans on the same "
                                 "k-space line")
    check_memory(8 * lay.receivers * lay.echoes * nz * ny * nx,
                 f"the k-space grid of {raw}", advice="a smaller RECO_ft_size")
    data = np.zeros((lay.receivers, lay.echoes, nz, ny, nx), np.complex64)
    data[:, e_of, z_of, y_of, start:start + points] = lines.transpose(3, 0, 1, 2, 4)
    sampled = np.zeros((nz, ny, nx), bool)
    sampled[z_of, y_of, start:start + points] = columns

    fov_um, spacing_source = _geometry(acqp, method, (nz, ny, nx), lay.dim, lay.slices, where)
    matrix = (nz, ny, nx)
    stated = _acquisition(acqp, method, lay.echoes, matrix, fov_um, where)
    acquisition, stated = stated_acquisition(stated, where)
    if lay.receivers == 1:
        data = data[0]
    kspace = KSpace(data, acquisition, sampled=None if sampled.all() else sampled,
                    coil_axis=0 if lay.receivers > 1 else None, multislice=lay.dim == 2,
                    echo_position=echo / points if train is None else None)
    header = {"acqp": acqp, "method": method}
    matrix_read = _numbers(method, "PVM_Matrix", where)
    extra = {"raw_file": raw.name, "word_type": lay.dtype.str, "kblock_padded": lay.padded,
             "spacing_source": spacing_source, "receivers": lay.receivers,
             "readout_oversampling": nx / matrix_read[0] if matrix_read else 1.0,
             "fov_shift": shifts[0].tolist(), "repetition": repetition,
             "repetitions": lay.repetitions, "reco_grid": bool(reco)}
    if train is not None:
        extra["epi"] = {"echoes": train["echoes"], "samples": train["samples"],
                        "navigator_samples": train["navigator"],
                        "regridded": "PVM_EpiTrajAdjkx",
                        "ghost_correction": ("PVM_EpiPhaseCorrection refined by image "
                                             "entropy" if train["ghost"] is not None
                                             else "image entropy"),
                        "ghost_phase_rad": np.round(ghost, 6).tolist()}
    scan = raw.parent
    scan_name = str(_one(acqp, "ACQ_scan_name", "") or "")
    name = " ".join(filter(None, [scan_name,
                                  "" if f"(E{scan.name})" in scan_name else f"E{scan.name}",
                                  f"rep {repetition + 1}/{lay.repetitions}"
                                  if lay.repetitions > 1 else "", "k-space"]))
    return kspace, raw, header, stated, name, extra


def _placed(path: Path, repetition: int | None) -> tuple:
    """:func:`_load`, then the scanner's geometry (:func:`_vendor_geometry`) applied: slices
    in the vendor's order and the B0 direction in array axes; also returns the affine."""
    kspace, raw, header, stated, name, extra = _load(path, repetition)
    affine, reversed_, direction = _vendor_geometry(kspace, raw.parent)
    if reversed_:  # multi-slice: z holds image-space slices, reorder them as the 2dseq
        kspace.data = np.ascontiguousarray(kspace.data[..., ::-1, :, :])
        if kspace.sampled is not None:
            kspace.sampled = np.ascontiguousarray(kspace.sampled[::-1])
    if direction is not None:
        stated = {**stated, "b0_direction": tuple(direction)}
        kspace.acquisition = Acquisition.from_dict({**kspace.acquisition.to_dict(),
                                                    "b0_direction": tuple(direction)})
    extra["geometry_source"] = "pdata/1 visu_pars" if affine is not None else None
    return kspace, raw, header, stated, name, extra, affine


def read_kspace(path: Path, repetition: int | None = None) -> KSpace:
    """Read a ParaVision scan's raw data as :class:`~napari_mrmicro.core.kspace.KSpace`.

    Parameters
    ----------
    path : Path
        Scan folder (with ``acqp``, ``method`` and ``fid`` or ``rawdata.job0``) or the
        raw data file.
    repetition : int, optional
        Which of ``NR`` repetitions to read; required when there are several.

    Returns
    -------
    KSpace
        ``(echo, z, y, x)`` complex64, or ``(coil, echo, z, y, x)`` for several
        receivers, on the vendor's reconstruction grid (``RECO_ft_size``, else
        ``PVM_Matrix x PVM_AntiAlias``) with DC at ``N // 2``; ``sampled`` marks the
        acquired samples (partial echo, partial Fourier, zero filling) and
        ``echo_position`` the asymmetric echo. 2-D scans are ``multislice`` (z = slices
        in the order of the scan's own reconstruction).
    """
    return _placed(path, repetition)[0]


def _vendor_geometry(kspace: KSpace, scan: Path):
    """(world affine, slices reversed, B0 direction) of the scan's own reconstruction.

    ParaVision computes the image geometry (``VisuCorePosition``/``VisuCoreOrientation``)
    in the reconstruction it writes beside the raw data, ``pdata/1``. When its frames are
    the grid of this k-space, the reconstruction of the raw data lies where the vendor's
    image lies, and gets its placement; otherwise (no pdata, a cropped or resized reco, a
    non-Cartesian scan) the placement is unknown and None is returned.
    """
    visu = scan / "pdata" / "1" / "2dseq"
    if kspace.trajectory is not None or not (visu.parent / "visu_pars").is_file():
        return None, False, None
    try:
        image = bruker.read(visu, lazy=True)
    except (FormatError, OSError, ValueError):
        return None, False, None
    images = image if isinstance(image, list) else [image]
    if len(images) != 1 or images[0].affine_um is None:
        return None, False, None
    image = images[0]
    reversed_ = bool(image.metadata.get("slice_axis_reversed"))
    if tuple(image.data.shape[-3:]) != tuple(kspace.acquisition.matrix) or (
            reversed_ and not kspace.multislice):
        return None, False, None
    direction = (image.metadata.get("acquisition") or {}).get("b0_direction")
    return image.affine_um, reversed_, direction


#: At most this many repetitions open together (:func:`read_all`, napari's reader); a scan
#: with more is reconstructed one repetition at a time or seen through its 2dseq.
OPEN_REPETITIONS = 16


def read_all(path: Path, lazy: bool | None = None) -> list[Volume]:
    """Every repetition of a ParaVision raw scan, each its own k-space :class:`Volume`
    (``rep i/NR`` in its name, ``metadata["repetition"]``), as napari opens them.

    A scan with one repetition gives ``[read(path)]``. Each repetition is read from its
    own part of the file (and an EPI's ghost is fitted on each); the memory for all of
    them is checked after the first. Above :data:`OPEN_REPETITIONS` the scan is refused
    with the ways to see it instead.
    """
    first = read(path, lazy, repetition=0)
    count = int(first.metadata.get("repetitions", 1))
    if count == 1:
        return [first]
    if count > OPEN_REPETITIONS:
        raise FormatError(path, f"NR = {count} repetitions, more than the "
                                f"{OPEN_REPETITIONS} opened together: reconstruct one "
                                f"(mrmicro recon --repetition 0..{count - 1}; repetition= "
                                "in Python), or open the scan's pdata 2dseq, which holds "
                                "them all")
    check_memory(count * np.asarray(first.data).nbytes,
                 f"{path}: the {count} repetitions of this raw scan",
                 advice="mrmicro recon --repetition for one at a time")
    return [first] + [read(path, lazy, repetition=i) for i in range(1, count)]


def read(path: Path, lazy: bool | None = None, repetition: int | None = None) -> Volume:
    """Read a ParaVision scan's raw k-space as a :class:`Volume`.

    The lines are reordered into k-space, so the data are always read into memory
    (``lazy`` is accepted for the io contract and has no effect). The volume is placed in
    world space like the scan's own reconstruction (``pdata/1``), slices in its order,
    when that reconstruction has the same grid (:func:`_vendor_geometry`).
    """
    kspace, raw, header, stated, name, extra, affine = _placed(path, repetition)
    volume = kspace_volume(kspace, "bruker_raw", raw, header, stated, name=name, **extra)
    volume.affine_um = affine
    return volume
