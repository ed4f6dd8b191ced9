"""Bruker ParaVision reconstructed images: ``pdata/<P>/2dseq`` described by ``visu_pars``.

A study folder holds scans ``<study>/<E>/`` with ``acqp``, ``method`` and processed data
``pdata/<P>/`` holding ``2dseq`` (headerless frames), ``visu_pars`` and ``reco``
(ParaVision 6/360 "Visu" parameters; JCAMP-DX, read by :mod:`napari_mrmicro.io.jcamp`).
See REFERENCES.md "Other formats" and the ParaVision parameter manual (Visu chapter).

``visu_pars`` parameters used:

- ``VisuCoreSize`` / ``VisuCoreExtent`` / ``VisuCoreUnits``: matrix and extent (mm) of one
  frame, x first; ``VisuCoreDim`` 2 or 3, ``VisuCoreDimDesc`` all ``spatial``.
- ``VisuCoreFrameCount`` frames, stored one after the other; ``VisuCoreWordType``
  (``_8BIT_UNSGN_INT``, ``_16BIT_SGN_INT``, ``_32BIT_SGN_INT``, ``_32BIT_FLOAT``) and
  ``VisuCoreByteOrder`` (``littleEndian``/``bigEndian``).
- ``VisuCoreDataSlope`` / ``VisuCoreDataOffs``: per frame, value = raw·slope + offset.
- ``VisuFGOrderDesc``: frame groups ``(length, <FG_NAME>, <comment>, dep_start, n_dep)``,
  the first varying fastest; ``VisuGroupDepVals`` ``(<Param>, start)`` names the
  parameters that vary with a group (e.g. ``VisuCorePosition`` with ``FG_SLICE``).
- ``VisuCoreOrientation`` (rows: read, phase, slice directions) and ``VisuCorePosition``
  (mm, the first voxel of a frame, in subject coordinates).
- ``VisuAcqDiffusionBMatrix``: each ``FG_DIFFUSION`` frame's b-matrix in the subject frame,
  turned into the array axes (``acquisition["b_matrix_s_per_mm2"]``, :func:`_b_matrices`).
- ``VisuCoreDiskSliceOrder``: with ``disk_reverse_slice_order`` the slices are stored
  last first; z is flipped so that index 0 is the first ``VisuCorePosition`` (as ITK's
  Bruker2dseqImageIO does).

The array is ``(echo, <other groups, outermost first>, [slice or z], y, x)``:
``FG_SLICE`` with 2-D frames becomes the z axis (spacing from the positions along the
slice normal, else ``VisuCoreFrameThickness``); ``FG_ECHO`` the leading echo axis;
``FG_COMPLEX`` (real, imaginary) is combined into complex64. Any other group
(``FG_CYCLE``, ``FG_MOVIE``, ``FG_DIFFUSION``, ``FG_IRMODE`` ...) stays a leading axis
labelled by its name (``cycle``, ``movie`` ...).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from napari_mrmicro.core import geometry
from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.io._common import (LAZY_BYTES, FormatError, Volume,
                                       check_scaled_range, check_size, sequence_kind,
                                       unit_to_um)
from napari_mrmicro.io.jcamp import read_jcamp

WORD_TYPES = {"_8BIT_UNSGN_INT": "u1", "_16BIT_SGN_INT": "i2", "_32BIT_SGN_INT": "i4",
              "_32BIT_FLOAT": "f4"}
BYTE_ORDERS = {"littleEndian": "<", "bigEndian": ">"}
_SUBJECT_KEYS = {"VisuSubjectId": "id", "VisuSubjectName": "name",
                 "VisuStudyId": "study_id", "VisuStudyDate": "study_date",
                 "VisuExperimentNumber": "experiment", "VisuProcessingNumber": "processing"}
#: ``VisuCoreDataUnits`` that are a value unit of the plugin (DESIGN.md "Values carry units").
VALUE_UNITS = ("Hz", "ppm", "rad")


# --------------------------------------------------------------------------- locating


def _pdata_number(folder: Path):
    return int(folder.name) if folder.name.isdigit() else None


def _locate(path: Path) -> tuple:
    """(2dseq, visu_pars, other pdata numbers) for a scan, pdata, 2dseq or visu_pars path."""
    if path.is_file() and path.name == "2dseq":
        folder = path.parent
    elif path.is_file() and path.name == "visu_pars":
        in_pdata = (path.parent / "2dseq").exists() or path.parent.parent.name == "pdata"
        folder = path.parent if in_pdata else _scan_pdata(path.parent, path)[0]
    elif path.is_dir() and (path / "2dseq").exists():
        folder = path
    elif path.is_dir():
        folder = _scan_pdata(path, path)[0]
    else:
        raise FormatError(path, "not a Bruker 2dseq, visu_pars, pdata or scan folder")
    others = []
    if folder.parent.name == "pdata":
        others = [n for n in _pdata_numbers(folder.parent) if n != _pdata_number(folder)]
    seq, visu = folder / "2dseq", folder / "visu_pars"
    if not seq.is_file():
        raise FormatError(seq, "the 2dseq image file is missing")
    if not visu.is_file():
        raise FormatError(seq, f"no visu_pars beside the 2dseq (looked for {visu})")
    return seq, visu, others


def _pdata_numbers(pdata: Path) -> list:
    return sorted(n for n in (_pdata_number(p) for p in pdata.iterdir() if p.is_dir())
                  if n is not None and (pdata / str(n) / "2dseq").is_file()
                  and (pdata / str(n) / "visu_pars").is_file())


def _scan_pdata(scan: Path, asked: Path) -> tuple:
    """The lowest-numbered ``pdata/<P>`` of a scan folder with 2dseq + visu_pars."""
    pdata = scan / "pdata"
    numbers = _pdata_numbers(pdata) if pdata.is_dir() else []
    if not numbers:
        raise FormatError(asked, "no pdata/<P> folder with 2dseq and visu_pars")
    return pdata / str(numbers[0]), numbers[1:]


def can_read(path: Path) -> bool:
    """True for a Bruker scan folder, ``pdata/<P>`` folder, ``2dseq`` or ``visu_pars``."""
    try:
        path = Path(path)
        if not (path.is_dir() or path.name in ("2dseq", "visu_pars")):
            return False
        _, visu, _ = _locate(path)
        with open(visu, "rb") as f:
            return f.read(2) == b"##"
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- header


def _numbers(header: dict, key: str, where, kind=float, length=None) -> list | None:
    """A flat list of numbers from a parameter (None when absent); refuse anything else."""
    if key not in header:
        return None
    value = header[key]
    declared = header.get("_size_mismatch", {}).get(key)
    if declared is not None:
        raise FormatError(where, f"{key} declares size {declared} but holds "
                                 f"{len(value)} values")
    flat = value if isinstance(value, list) else [value]
    flat = [x for v in flat for x in (v if isinstance(v, list) else [v])]
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
    if kind is int:
        ok = ok and all(isinstance(v, int) for v in flat)
    if not ok or (length is not None and len(flat) != length):
        want = f"{length} " if length is not None else ""
        raise FormatError(where, f"{key} = {str(value)[:80]} is not {want}"
                                 f"{'integers' if kind is int else 'numbers'}")
    return [kind(v) for v in flat]


def _strings(header: dict, key: str) -> list:
    value = header.get(key)
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _one(header: dict, key: str, default=None):
    """A scalar parameter; ParaVision sometimes writes it as a one-element array."""
    value = header.get(key, default)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _frame_groups(header: dict, visu: Path, frames: int) -> list:
    """Frame groups, fastest first: dicts with name, length, comment, parameters."""
    desc = header.get("VisuFGOrderDesc")
    if desc is None or _one(header, "VisuFGOrderDescDim") == 0:
        return [{"name": "FG_FRAME", "length": frames, "comment": "", "parameters": []}] \
            if frames > 1 else []
    if isinstance(desc, list) and desc and not isinstance(desc[0], list):
        desc = [desc]
    dep_vals = header.get("VisuGroupDepVals") or []
    if isinstance(dep_vals, list) and dep_vals and not isinstance(dep_vals[0], list):
        dep_vals = [dep_vals]
    groups = []
    for item in desc if isinstance(desc, list) else [desc]:
        if not (isinstance(item, list) and len(item) >= 2 and isinstance(item[0], int)
                and not isinstance(item[0], bool) and item[0] >= 1
                and isinstance(item[1], str)):
            raise FormatError(visu, f"VisuFGOrderDesc entry {str(item)[:80]} is not "
                                    "(length, <FG_NAME>, <comment>, start, count)")
        params = []
        if len(item) >= 5 and all(isinstance(v, int) for v in item[3:5]):
            chosen = dep_vals[item[3]:item[3] + item[4]]
            params = [d[0] for d in chosen if isinstance(d, list) and d
                      and isinstance(d[0], str)]
        groups.append({"name": item[1], "length": item[0],
                       "comment": item[2] if len(item) > 2 else "", "parameters": params})
    total = math.prod(g["length"] for g in groups)
    if total != frames:
        raise FormatError(visu, f"the frame groups {[g['name'] for g in groups]} hold "
                                f"{total} frames but VisuCoreFrameCount = {frames}")
    return groups


def _rows(header: dict, key: str, groups: list, width: int, visu: Path):
    """A per-frame parameter as rows (n, width) and the groups it varies with."""
    values = _numbers(header, key, visu)
    if not values or len(values) % width:
        return None, []
    rows = np.asarray(values, dtype=float).reshape(-1, width)
    deps = [i for i, g in enumerate(groups) if key in g["parameters"]]
    if not any(g["parameters"] for g in groups):  # no VisuGroupDepVals: guess from count
        single = [i for i, g in enumerate(groups) if g["length"] == len(rows)]
        deps = [] if len(rows) == 1 else list(range(len(groups))) \
            if len(rows) == math.prod(g["length"] for g in groups) else single[:1]
    if len(rows) != math.prod(groups[i]["length"] for i in deps):
        return None, []
    return rows, deps


# --------------------------------------------------------------------------- geometry


def _slice_step_mm(header: dict, groups: list, slice_index: int, visu: Path):
    """Signed distance between the first two slices along the slice normal, or None."""
    positions, deps = _rows(header, "VisuCorePosition", groups, 3, visu)
    orient, _ = _rows(header, "VisuCoreOrientation", groups, 9, visu)
    if positions is None or orient is None or slice_index not in deps:
        return None
    stride = math.prod(groups[i]["length"] for i in deps if i < slice_index)
    step = float(np.dot(positions[stride] - positions[0], orient[0, 6:9]))
    return step if math.isfinite(step) and abs(step) > 1e-9 else None


def _per_slice(rows: np.ndarray, deps: list, groups: list, index: int | None, n: int):
    """The row of each of the ``n`` slices of group ``index`` (the others at their first)."""
    if index is None or index not in deps:
        return np.repeat(rows[:1], n, axis=0)
    stride = math.prod(groups[i]["length"] for i in deps if i < index)
    return rows[np.arange(n) * stride]


def _packages(header: dict, groups: list, slice_index, frame_spacing: tuple, nslices: int,
              visu: Path) -> list:
    """Runs of slices sharing one orientation, each with its world affine.

    Returns ``[(start, stop, world_affine_um or None, reverse)]`` along the array's z
    axis (one entry covering everything for 3-D frames or a single orientation). The
    affine maps voxel ``(z, y, x)`` to µm RAS+ in napari order: ParaVision's subject
    coordinates (LPS+) with x and y negated, the in-plane axes along the
    ``VisuCoreOrientation`` rows scaled by the voxel size, the slice axis from one
    ``VisuCorePosition`` to the next (else the frame thickness along the normal).
    ``reverse`` is True when the slice axis runs against the right-handed direction
    (ParaVision's NIfTI export reverses it, REFERENCES.md "ParaVision geometry"); the
    affine returned already describes the reversed axis.
    """
    positions, pdeps = _rows(header, "VisuCorePosition", groups, 3, visu)
    orient, odeps = _rows(header, "VisuCoreOrientation", groups, 9, visu)
    if positions is None or orient is None:
        return [(0, nslices, None, False)]
    positions = _per_slice(positions, pdeps, groups, slice_index, nslices)
    rotations = _per_slice(orient, odeps, groups, slice_index, nslices).reshape(-1, 3, 3)
    if not all(np.allclose(r @ r.T, np.eye(3), atol=1e-4) for r in rotations) \
            or not np.all(np.isfinite(positions)):
        return [(0, nslices, None, False)]
    starts = [0] + [k for k in range(1, nslices)
                    if not np.allclose(rotations[k], rotations[k - 1], atol=1e-6)]
    thickness = _first(header, "VisuCoreFrameThickness", visu)
    out = []
    for start, stop in zip(starts, starts[1:] + [nslices]):
        rot = rotations[start]
        spacing_x = [v / 1000.0 for v in frame_spacing]  # mm, x first; 2 or 3 values
        columns = [spacing_x[0] * rot[0], spacing_x[1] * rot[1]]
        if len(frame_spacing) == 3:
            columns.append(spacing_x[2] * rot[2])
        elif stop - start > 1:
            columns.append(positions[start + 1] - positions[start])
        else:
            step = thickness if thickness and thickness > 0 else spacing_x[0]
            columns.append(step * rot[2])
        xyz = np.eye(4)
        xyz[:3, :3] = geometry.LPS_TO_RAS @ np.stack(columns, axis=1)
        xyz[:3, 3] = geometry.LPS_TO_RAS @ positions[start]
        reverse = bool(np.linalg.det(xyz[:3, :3]) < 0)
        if reverse:  # the last slice first, so that (x, y, slice) is right-handed
            xyz[:3, 3] += xyz[:3, 2] * (stop - start - 1)
            xyz[:3, 2] *= -1
        try:
            world = geometry.check_world_affine(geometry.from_xyz_affine(xyz, 1e3), 3)
        except ValueError:
            return [(0, nslices, None, False)]
        out.append((start, stop, world, reverse))
    return out


def _b0_direction(world: np.ndarray, subject_position: str | None):
    """B0 (the bore axis) in array axis order, for a subject lying head or feet first:
    the bore runs along the subject's S-I axis, world axis 0."""
    if not subject_position or not subject_position.split("_")[0] in ("Head", "Foot"):
        return None
    rotation = world[:3, :3] / geometry.voxel_sizes(world)[None, :]
    direction = rotation.T @ np.array([1.0, 0.0, 0.0])
    if direction[np.argmax(np.abs(direction))] < 0:
        direction = -direction
    return tuple(float(v) for v in np.round(direction, 12))


def _frame_spacing_um(header: dict, size: list, visu: Path) -> tuple:
    """Voxel size of one frame, x first, in µm."""
    extent = _numbers(header, "VisuCoreExtent", visu, length=len(size))
    if extent is None:
        raise FormatError(visu, "VisuCoreExtent (the frame's size in mm) is missing")
    units = _strings(header, "VisuCoreUnits") or ["mm"] * len(size)
    factors = [unit_to_um(u) for u in units]
    if len(factors) != len(size) or None in factors:
        raise FormatError(visu, f"VisuCoreUnits {units} are not lengths for each axis")
    spacing = tuple(e * f / n for e, f, n in zip(extent, factors, size))
    if not all(s > 0 and math.isfinite(s) for s in spacing):
        raise FormatError(visu, f"VisuCoreExtent {extent} gives no positive voxel size")
    return spacing


# --------------------------------------------------------------------------- acquisition


def _first(header: dict, key: str, visu: Path):
    values = _numbers(header, key, visu)
    return values[0] if values else None


def excitation_angle(method: dict) -> float | None:
    """The excitation pulse's flip angle (degrees) from a ``method`` file: the third field of
    ``ExcPulse1`` (ParaVision 6 and 360) or ``ExcPulse`` (ParaVision 5), else None.

    ``ACQ_flip_angle`` and ``VisuAcqFlipAngle`` hold the refocusing angle in spin-echo
    methods (180° in the PV360 RARE scan 5, whose ExcPulse1 is 90°)."""
    for key in ("ExcPulse1", "ExcPulse"):
        pulse = method.get(key)
        if isinstance(pulse, (list, tuple)) and len(pulse) > 2:
            angle = pulse[2]
            if isinstance(angle, (int, float)) and 0 < angle <= 360:
                return float(angle)
    return None


def encoding(method: dict, where, visu: dict | None = None) -> dict:
    """How the scan was encoded and how long it took, as :class:`Acquisition` extras:

    - ``echo_train``: echoes per excitation (``VisuAcqEchoTrainLength``, else the method's
      ``PVM_RareFactor``, or EPI's ``PVM_EpiNEchoes`` per ``NSegments``);
    - ``echo_spacing_ms`` where the train is longer than 1 (RARE: ``PVM_EchoTime`` is the
      echo spacing, the effective TE is the echo time; EPI: ``PVM_EpiEchoSpacing``);
    - ``phase_steps``: acquired phase-encode steps per average, the product of
      ``PVM_EncMatrix`` beyond the readout: partial Fourier and zero filling leave the
      image matrix larger (FLASH scan 6: 96 steps for 128 rows);
    - ``epi_direction``: for EPI, +1 when the train runs through increasing phase-encode
      steps (``PVM_EncSteps1``), −1 when decreasing (the sign of its off-resonance shift);
    - ``multislice``: 2-D slices interleaved within one TR (``PVM_SpatDimEnum`` 2D);
    - ``scan_time_s``: the scanner's own figure (``VisuAcqScanTime``/``PVM_ScanTime``).

    :func:`~napari_mrmicro.core.physics.protocol_summary` computes the scan time from the
    first four with TR and the averages; it matches the stated one on real scans."""
    visu = visu or {}
    out = {}
    train = _numbers(visu, "VisuAcqEchoTrainLength", where) or \
        _numbers(method, "PVM_RareFactor", where)
    epi = _strings(method, "PVM_IsEpiScan")[:1] == ["Yes"]
    if not train and epi:
        echoes = _numbers(method, "PVM_EpiNEchoes", where)
        segments = _numbers(method, "NSegments", where) or [1]
        train = [echoes[0] / segments[0]] if echoes and segments[0] >= 1 else None
    if train and train[0] >= 1 and float(train[0]).is_integer():
        out["echo_train"] = int(train[0])
        spacing = _numbers(method, "PVM_EpiEchoSpacing" if epi else "PVM_EchoTime", where)
        if out["echo_train"] > 1 and spacing and spacing[0] > 0:
            out["echo_spacing_ms"] = spacing[0]
    steps = np.diff(_numbers(method, "PVM_EncSteps1", where) or [])
    if epi and steps.size and (np.all(steps > 0) or np.all(steps < 0)):
        out["epi_direction"] = 1 if steps[0] > 0 else -1
    encoded = _numbers(method, "PVM_EncMatrix", where)
    if encoded and len(encoded) >= 2 and all(n >= 1 for n in encoded):
        out["phase_steps"] = int(math.prod(encoded[1:]))
    dims = _strings(method, "PVM_SpatDimEnum")
    if dims:
        out["multislice"] = dims[0].strip("<>").upper() == "2D"
    time_ms = _numbers(visu, "VisuAcqScanTime", where) or \
        _numbers(method, "PVM_ScanTime", where)
    if time_ms and time_ms[0] > 0:
        out["scan_time_s"] = time_ms[0] / 1000.0
    return out


def _series(header: dict, visu: Path, groups: list) -> dict:
    """The inversion time(s) of an inversion-recovery scan (``ti_ms``) and the TR of each
    frame of a variable-TR series such as RARE-VTR (``tr_series_ms``; ``tr_ms`` is then
    its first frame's), from ``VisuAcqInversionTime`` / ``VisuAcqRepetitionTime`` when
    they vary with one frame group (the leading axis) or, for TI, hold one value > 0."""
    out = {}
    for key, name in (("VisuAcqInversionTime", "ti_ms"),
                      ("VisuAcqRepetitionTime", "tr_series_ms")):
        rows, deps = _rows(header, key, groups, 1, visu)
        if rows is None or not np.all(rows > 0):
            continue
        series = len(rows) > 1 and len(deps) == 1 \
            and groups[deps[0]]["name"] not in ("FG_SLICE", "FG_ECHO")
        if series or (name == "ti_ms" and len(rows) == 1):
            out[name] = tuple(float(v) for v in rows[:, 0])
    return out


def _b_matrices(header: dict, groups: list, visu: Path) -> np.ndarray | None:
    """Each diffusion-weighted frame's b-matrix (s/mm², (n, 3, 3)) in ParaVision's subject
    coordinates, the frame of ``VisuCoreOrientation``: ``VisuAcqDiffusionBMatrix`` (PV 6 and
    360) varying with the ``FG_DIFFUSION`` group, or None.

    The method's ``PVM_DwBMat`` holds the same matrices in the gradient (read, phase,
    slice) frame; on real PV 6.0.1 and PV 360.3.6 DTI scans (axial and 2° oblique, head
    prone) ``VisuAcqDiffusionBMatrix = T·Gᵀ·PVM_DwBMat·G·Tᵀ`` with ``G`` =
    ``PVM_SPackArrGradOrient`` and the same ``T`` that turns ``G`` into
    ``VisuCoreOrientation``: ParaVision states both in one frame, which this reader takes
    as it takes the orientation, without re-deriving the patient-position conventions."""
    rows, deps = _rows(header, "VisuAcqDiffusionBMatrix", groups, 9, visu)
    diffusion = [i for i, g in enumerate(groups) if g["name"] == "FG_DIFFUSION"]
    if rows is None or deps != diffusion or len(diffusion) != 1:
        return None
    b = rows.reshape(-1, 3, 3)
    if not np.all(np.isfinite(b)) or np.any(np.trace(b, axis1=1, axis2=2) < 0):
        raise FormatError(visu, "VisuAcqDiffusionBMatrix holds NaN or a negative b-value")
    return b


def subject_to_array(world: np.ndarray) -> np.ndarray:
    """The 3×3 matrix taking a direction in ParaVision's subject coordinates (LPS+, the
    frame of ``VisuCoreOrientation``) to the array axes ``(z, y, x)`` of a volume placed
    by ``world`` (voxel to µm RAS+ in napari order)."""
    rotation = world[:3, :3] / geometry.voxel_sizes(world)[None, :]
    to_napari = geometry.LPS_TO_RAS[::-1]  # LPS x, y, z -> RAS in (S, A, R) order
    return rotation.T @ to_napari


def _scan_method(visu: Path) -> dict:
    """The ``method`` of the scan that ``<scan>/pdata/<n>/visu_pars`` belongs to ({} when
    the 2dseq was copied without its scan folder or the file does not parse)."""
    path = visu.parent.parent.parent / "method"
    if visu.parent.parent.name != "pdata" or not path.is_file():
        return {}
    try:
        return read_jcamp(path)
    except (OSError, ValueError):
        return {}


def _acquisition(header: dict, visu: Path, matrix: tuple, fov_um: tuple | None,
                 groups: list) -> dict:
    """The :class:`~napari_mrmicro.core.Acquisition` fields visu_pars states (the flip angle
    from the excitation pulse in the scan's ``method``, when it is there)."""
    out = {}
    if fov_um is not None:
        out["matrix"], out["fov_um"] = matrix, fov_um
    nucleus = _strings(header, "VisuAcqImagedNucleus")
    if nucleus and nucleus[0] in GAMMA_BAR_MHZ_PER_T:
        out["nucleus"] = nucleus[0]
    echo_times = _numbers(header, "VisuAcqEchoTime", visu)
    echoes = [g["length"] for g in groups if g["name"] == "FG_ECHO"]
    if echo_times and (not echoes or len(echo_times) == echoes[0]):
        out["te_ms"] = tuple(echo_times) if echoes else (echo_times[0],)
    for key, name in (("VisuAcqRepetitionTime", "tr_ms"), ("VisuAcqFlipAngle", "flip_deg"),
                      ("VisuAcqNumberOfAverages", "averages")):
        value = _first(header, key, visu)
        if value is not None and (value > 0 or name == "flip_deg"):
            out[name] = int(value) if name == "averages" else value
    out.update(_series(header, visu, groups))
    method = _scan_method(visu)
    excitation = excitation_angle(method)
    if excitation is not None:
        out["flip_deg"] = excitation
    out.update(encoding(method, visu, header))
    # The imaging frequency (acqp BF1) is what a field map in Hz is relative to, and what
    # the raw reader derives B0 from; VisuMagneticFieldStrength is ParaVision's nominal
    # field (9.40219 T against 400.30774 MHz / γ̄ = 9.40185 T for the rodent field map,
    # 36 ppm apart). Both readers of one scan give the same B0 and Larmor frequency.
    field = _first(header, "VisuMagneticFieldStrength", visu)
    frequency = _first(header, "VisuAcqImagingFrequency", visu)
    if frequency and frequency > 0:
        out["b0_tesla"] = frequency / GAMMA_BAR_MHZ_PER_T[out.get("nucleus", "1H")]
    elif field and field > 0:
        out["b0_tesla"] = field
    phase_dir = _strings(header, "VisuAcqImagePhaseEncDir")
    if phase_dir and phase_dir[0] in ("col_dir", "row_dir"):
        out["readout_axis"] = 2 if phase_dir[0] == "col_dir" else 1
    pixel_bw = _first(header, "VisuAcqPixelBandwidth", visu)
    if pixel_bw and pixel_bw > 0:
        out["bandwidth_hz"] = pixel_bw * matrix[out.get("readout_axis", 2)]
    echo_type = " ".join(_strings(header, "VisuAcqEchoSequenceType")).lower()
    sequence = " ".join(_strings(header, "VisuAcqSequenceName"))
    if "gradient" in echo_type:
        kind = "gradient_echo"
    elif "spin" in echo_type:
        kind = "spin_echo"
    else:  # the stated echo type wins; the sequence name only when there is none
        kind = None if echo_type else sequence_kind(sequence)
    if kind:
        out["sequence"] = kind
    return out


# --------------------------------------------------------------------------- reading


def _scaling(header: dict, visu: Path, frames: int):
    """Per-frame slope and offset arrays, or None when all are 1 and 0."""
    slope = _numbers(header, "VisuCoreDataSlope", visu) or [1.0]
    offset = _numbers(header, "VisuCoreDataOffs", visu) or [0.0]
    for key, values in (("VisuCoreDataSlope", slope), ("VisuCoreDataOffs", offset)):
        if len(values) not in (1, frames) or not all(math.isfinite(v) for v in values):
            raise FormatError(visu, f"{key} holds {len(values)} values for {frames} frames")
    if all(s == 1 for s in slope) and all(o == 0 for o in offset):
        return None
    ones = np.ones(frames, np.float32)
    return np.asarray(slope, np.float32) * ones, np.asarray(offset, np.float32) * ones


def _label(name: str, used: set) -> str:
    label = name[3:].lower() if name.startswith("FG_") else name.lower()
    label = label or "frame"
    while label in used:
        label += "_"
    used.add(label)
    return label


def _core(header: dict, visu: Path) -> tuple:
    """Validated (frame size x first, frame count, on-disk dtype) from visu_pars."""
    size = _numbers(header, "VisuCoreSize", visu, kind=int)
    if not size or not all(n >= 1 for n in size):
        raise FormatError(visu, f"VisuCoreSize = {header.get('VisuCoreSize')} is not a "
                                "list of positive integers")
    if len(size) not in (2, 3):
        raise FormatError(visu, f"{len(size)}-D frames: only 2-D and 3-D images are read")
    dim = _one(header, "VisuCoreDim", len(size))
    if dim != len(size):
        raise FormatError(visu, f"VisuCoreDim = {dim} but VisuCoreSize has {len(size)} sizes")
    kinds = _strings(header, "VisuCoreDimDesc")
    if any(k != "spatial" for k in kinds):
        raise FormatError(visu, f"VisuCoreDimDesc {kinds}: only spatial frames are images")
    frames = _one(header, "VisuCoreFrameCount", 1)
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise FormatError(visu, f"VisuCoreFrameCount = {frames!r} is not a positive integer")
    word = _one(header, "VisuCoreWordType")
    if word not in WORD_TYPES:
        raise FormatError(visu, f"unsupported VisuCoreWordType {word!r} (known: "
                                f"{', '.join(WORD_TYPES)})")
    order = _one(header, "VisuCoreByteOrder", "littleEndian")
    if order not in BYTE_ORDERS:
        raise FormatError(visu, f"unknown VisuCoreByteOrder {order!r}")
    return size, frames, np.dtype(BYTE_ORDERS[order] + WORD_TYPES[word])


def _pixels(seq: Path, dtype, shape: tuple, frame_ndim: int, scaling, complex_axis,
            lazy: bool):
    """The 2dseq as (groups outermost first, frame axes), scaled, complex combined."""
    if lazy:
        data = np.memmap(seq, dtype=dtype, mode="r", shape=shape)
        if scaling is not None or complex_axis is not None:
            import dask.array as da

            data = da.from_array(data, chunks=(1,) * (len(shape) - frame_ndim)
                                 + shape[-frame_ndim:])
    else:
        data = np.fromfile(seq, dtype=dtype).reshape(shape)
        data = data.astype(dtype.newbyteorder("="), copy=False)
    if scaling is not None:
        slope, offset = (s.reshape(shape[:-frame_ndim] + (1,) * frame_ndim) for s in scaling)
        data = data.astype(np.float32) * slope + offset
    if complex_axis is not None:
        real, imag = (data[(slice(None),) * complex_axis + (part,)].astype(np.float32)
                      for part in (0, 1))
        data = real + np.complex64(1j) * imag
    return data


def _slices(header: dict, groups: list, size: list, visu: Path) -> tuple:
    """(FG_SLICE group index that becomes z or None, its spacing in µm, source, step)."""
    index = next((i for i, g in enumerate(groups) if g["name"] == "FG_SLICE"), None)
    if len(size) != 2 or index is None:
        return None, None, "VisuCoreExtent", None
    step = _slice_step_mm(header, groups, index, visu)
    if step is not None:
        return index, abs(step) * 1000.0, "VisuCoreExtent, VisuCorePosition", step
    thickness = _first(header, "VisuCoreFrameThickness", visu)
    if thickness and thickness > 0:
        return index, thickness * 1000.0, "VisuCoreExtent, VisuCoreFrameThickness", None
    return None, None, "VisuCoreExtent", None  # no slice spacing: slices stay a leading axis


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read a ParaVision ``2dseq`` with its ``visu_pars``: the first of :func:`read_all`.

    A scan whose slices have different orientations (a tripilot) gives one Volume per
    orientation; this returns the first, with ``metadata["packages"]`` saying how many
    there are (:func:`read_all` returns them all).
    """
    return read_all(path, lazy)[0]


def read_all(path: Path, lazy: bool | None = None) -> list:
    """Read a ParaVision ``2dseq`` as one Volume per slice orientation, placed in world µm.

    Parameters
    ----------
    path : Path
        Scan folder (lowest-numbered ``pdata/<P>`` with images), ``pdata/<P>`` folder,
        ``2dseq`` or ``visu_pars``.
    lazy : bool, optional
        Memory-map the 2dseq (a dask array when slopes or complex frames need
        arithmetic). Default: lazy above ``LAZY_BYTES``.

    Returns
    -------
    list of Volume
        ``affine_um`` from ``VisuCorePosition``/``VisuCoreOrientation`` (µm RAS+, see
        :func:`_packages`); a 2-D frame with a stated position is a one-slice 3-D volume
        in its plane. Slices run so that ``(x, y, slice)`` is right-handed, as in
        ParaVision's own NIfTI export.
    """
    seq, visu, other_pdata = _locate(Path(path))
    header = read_jcamp(visu)
    size, frames, dtype = _core(header, visu)
    file_bytes = seq.stat().st_size
    if file_bytes == 0:
        raise FormatError(seq, "the 2dseq file is empty")
    check_size(seq, math.prod(size) * frames * dtype.itemsize, file_bytes)

    groups = _frame_groups(header, visu, frames)
    frame_spacing = _frame_spacing_um(header, size, visu)
    scaling = _scaling(header, visu, frames)
    check_scaled_range(visu, dtype, scaling, "VisuCoreDataSlope/VisuCoreDataOffs")
    complex_index = next((i for i, g in enumerate(groups) if g["name"] == "FG_COMPLEX"), None)
    if complex_index is not None and groups[complex_index]["length"] != 2:
        raise FormatError(visu, f"FG_COMPLEX has {groups[complex_index]['length']} frames, "
                                "expected 2 (real, imaginary)")
    slice_index, slice_um, spacing_source, slice_step = _slices(header, groups, size, visu)

    # 2dseq layout: outermost group first, then the frame's (z,) y, x
    axis_of = {i: len(groups) - 1 - i for i in range(len(groups))}
    complex_axis = axis_of.pop(complex_index) if complex_index is not None else None
    if complex_axis is not None:
        axis_of = {i: a - (a > complex_axis) for i, a in axis_of.items()}
    data = _pixels(seq, dtype, tuple(g["length"] for g in reversed(groups))
                   + tuple(reversed(size)), len(size), scaling, complex_axis,
                   file_bytes > LAZY_BYTES if lazy is None else lazy)

    used = {"z", "y", "x"}
    labels = {i: _label(g["name"], used) for i, g in enumerate(groups)
              if i in axis_of and i != slice_index}
    echo = [i for i in labels if labels[i] == "echo"]
    rest = sorted((i for i in labels if i not in echo), key=lambda i: axis_of[i])
    lead = echo + rest + ([slice_index] if slice_index is not None else [])
    order_axes = [axis_of[i] for i in lead] + list(range(len(axis_of), data.ndim))
    if order_axes != list(range(data.ndim)):
        data = data.transpose(order_axes)
    spacing = ((slice_um,) if slice_um else ()) + tuple(reversed(frame_spacing))
    reverse = _one(header, "VisuCoreDiskSliceOrder") == "disk_reverse_slice_order"
    if reverse and len(spacing) == 3:  # so that z index 0 is the first VisuCorePosition
        data = data[..., ::-1, :, :]
    packages = [(0, 1, None, False)]
    if len(spacing) == 3 or len(size) == 2:
        nslices = data.shape[-3] if len(spacing) == 3 else 1
        packages = _packages(header, groups, slice_index, frame_spacing, nslices, visu)
    if len(spacing) == 2 and packages[0][2] is not None:  # one frame placed in its plane
        data = data[..., None, :, :]
        thickness = _first(header, "VisuCoreFrameThickness", visu)
        spacing = (thickness * 1000.0 if thickness and thickness > 0 else spacing[1],) \
            + spacing
    ndim = len(spacing)
    axis_labels = tuple(labels[i] for i in echo + rest) + ("z", "y", "x")[3 - ndim:]

    matrix = tuple(data.shape[-ndim:])
    fov_um = tuple(n * s for n, s in zip(matrix, spacing))
    if ndim == 2:
        thickness = _first(header, "VisuCoreFrameThickness", visu)
        matrix = (1,) + matrix
        fov_um = (thickness * 1000.0,) + fov_um if thickness and thickness > 0 else None
    scan = seq.parent.parent.parent if seq.parent.parent.name == "pdata" else None
    protocol = _strings(header, "VisuAcquisitionProtocol")
    name = " ".join(filter(None, [protocol[0] if protocol else "",
                                  f"E{scan.name}" if scan else "", f"P{seq.parent.name}"]))
    metadata = {
        "format": "bruker",
        "source": str(seq),
        "header": header,
        "acquisition": _acquisition(header, visu, matrix, fov_um, groups),
        "frame_groups": [{k: g[k] for k in ("name", "length", "comment")} for g in groups],
        "frame_type": _one(header, "VisuCoreFrameType"),
        "word_type": _one(header, "VisuCoreWordType"),
        "byte_order": _one(header, "VisuCoreByteOrder", "littleEndian"),
        "disk_slice_order": "reverse" if reverse else "normal",
        "scaled": scaling is not None,
        "spacing_source": spacing_source,
        "pdata": seq.parent.name,
        "other_pdata": [str(n) for n in other_pdata],
        "subject": {v: header[k] for k, v in _SUBJECT_KEYS.items() if k in header},
    }
    if slice_step is not None:
        metadata["slice_step_um"] = slice_step * 1000.0
    if _strings(header, "VisuCoreDataUnits"):
        metadata["unit"] = " ".join(_strings(header, "VisuCoreDataUnits"))
    unit = metadata.get("unit", "").strip()
    if unit in VALUE_UNITS:
        metadata["value_unit"] = unit
    subject_position = _one(header, "VisuSubjectPosition")
    if subject_position:
        metadata["subject_position"] = str(subject_position)
    acquisition = metadata.pop("acquisition")
    b_subject = _b_matrices(header, groups, visu)
    volumes = []
    for number, (start, stop, world, flip) in enumerate(packages):
        part = data if len(packages) == 1 else data[..., start:stop, :, :]
        if flip and ndim == 3:
            part = part[..., ::-1, :, :]
        step = spacing if world is None else tuple(float(v) for v in
                                                   geometry.voxel_sizes(world))
        acq = dict(acquisition)
        if "matrix" in acq and world is not None:
            acq["matrix"] = tuple(part.shape[-3:])
            acq["fov_um"] = tuple(n * v for n, v in zip(acq["matrix"], step))
        b0 = None if world is None else _b0_direction(world, subject_position)
        if b0 is not None:
            acq["b0_direction"] = b0
        if b_subject is not None and world is not None and axis_labels[0] == "diffusion" \
                and data.ndim == 4:
            turn = subject_to_array(world)
            acq["b_matrix_s_per_mm2"] = (turn @ b_subject @ turn.T).tolist()
        meta = {**metadata, "acquisition": acq}
        if world is not None:
            meta["slice_axis_reversed"] = flip
        title = name
        if len(packages) > 1:
            meta["packages"], meta["package"] = len(packages), number
            title = f"{name} {_plane(world)}"
        volumes.append(Volume(part, step, meta, axis_labels=axis_labels, name=title,
                              origin_um=None if world is None else tuple(world[:3, 3]),
                              affine_um=world))
    return volumes


def _plane(world) -> str:
    """Anatomical plane of a slice from its normal (the world axis the slice axis runs
    along most): axial (S), coronal (A) or sagittal (R)."""
    if world is None:
        return "slices"
    normal = np.abs(world[:3, 0])
    return ("axial", "coronal", "sagittal")[int(np.argmax(normal))]
