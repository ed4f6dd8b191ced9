"""ISMRMRD / MRD raw data in HDF5 (Inati et al., "ISMRM Raw data format: a proposed
standard for MRI raw datasets", Magn. Reson. Med. 77:411, 2017; ismrmrd.readthedocs.io).

A file holds a group (``/dataset``) with

- ``xml``: the XML header (``ismrmrdHeader``): ``encoding/encodedSpace`` ``matrixSize``
  and ``fieldOfView_mm``, ``reconSpace``, ``encodingLimits`` (``center`` of each
  encoding step), ``trajectory``; ``sequenceParameters`` ``TR``/``TE`` (ms),
  ``flipAngle_deg``, ``sequence_type``; ``acquisitionSystemInformation``
  ``systemFieldStrength_T``, ``receiverChannels``; ``experimentalConditions``
  ``H1resonanceFrequency_Hz``.
- ``data``: one compound record per readout: ``head`` (flags, ``number_of_samples``,
  ``active_channels``, ``discard_pre/post``, ``center_sample``, ``sample_time_us``,
  ``position``, ``slice_dir``, ``idx`` counters ``kspace_encode_step_1/2``, ``average``,
  ``slice``, ``contrast``, ``phase``, ``repetition``, ``set``), ``traj`` and ``data``
  (float32, real/imaginary interleaved, channel by channel).

Choices made here:

- Each readout is placed so that its ``center_sample`` lands on ``N // 2`` of the encoded
  readout (reversed readouts, flag ``ACQ_IS_REVERSE``, mirrored about it, their first
  sample at k = +N/2 going to -N/2, the same line of the periodic DFT); phase-encode
  steps so that ``encodingLimits`` ``center`` lands on ``N // 2``. A ``center_sample`` of
  0 with a full-length readout means "not set" and is taken as ``N // 2``.
- Readout oversampling is kept: the x axis is the encoded space (often 2 x the recon
  matrix), its field of view the encoded one, so the voxel size is encoded FOV / encoded
  matrix; ``metadata["readout_oversampling"]`` says by how much.
- Averages (``idx.average``) and repeated lines are averaged (complex mean).
- Noise scans (``ACQ_IS_NOISE_MEASUREMENT``) are left out of k-space; their per-channel
  standard deviation and covariance go to ``metadata["noise"]``. Navigator, phase
  correction, feedback, dummy, calibration-only and phase-stabilisation scans are left
  out and counted.
- Non-Cartesian encodings (``trajectory`` radial, spiral, goldenangle, epi, other) keep
  each acquisition's ``traj`` (``trajectory_dimensions`` x samples, sample by sample):
  the readouts of each contrast, in acquisition order, become
  ``(echo, readouts, samples)`` with :attr:`KSpace.trajectory` in cycles per FOV on the
  ``encodedSpace`` matrix (kx, ky, kz -> image order z, y, x). The MRD standard leaves the
  unit open; trajectories within ±0.5 are taken as relative to the matrix (Gadgetron's
  and MRIReco's convention, κ = k·N), larger ones within ±N/2 as cycles per FOV already.
  One more dimension than the encoding has (Gadgetron's spiral: kx, ky, weight) is the
  density-compensation weight, used as stored (reconstruction expects k-space cells:
  one Cartesian cell = 1). Averages stay separate readouts (the density weights
  share them out); multi-slice non-Cartesian data are refused.
- Repetitions, phases and sets with more than one value and multi-slab 3-D are refused.

Reading needs ``h5py``; the header is parsed with the standard library.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import h5py
import numpy as np

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume, sequence_kind
from napari_mrmicro.io.bruker_raw import MAX_GRID_PER_SAMPLE, kspace_volume, stated_acquisition

SUFFIXES = (".h5", ".hdf5", ".mrd", ".ismrmrd")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: ISMRMRD acquisition flags (bit numbers, 1-based) of scans that are not image k-space.
SKIPPED_FLAGS = {20: "parallel_calibration", 23: "navigation", 24: "phase_correction",
                 26: "hp_feedback", 27: "dummy_scan", 28: "rt_feedback",
                 29: "surface_coil_correction", 30: "phase_stabilization_reference",
                 31: "phase_stabilization"}
NOISE_FLAG, CAL_AND_IMAGING_FLAG, REVERSE_FLAG = 19, 21, 22


def _flag(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags & np.uint64(1 << (bit - 1))) != 0


# --------------------------------------------------------------------------- header


def _scalar(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _element_dict(element) -> object:
    """An XML element as JSON-friendly values: leaves become numbers or text, repeated
    tags lists."""
    children = list(element)
    if not children:
        return _scalar((element.text or "").strip())
    grouped = {}
    for child in children:
        grouped.setdefault(child.tag.rpartition("}")[2], []).append(_element_dict(child))
    return {tag: values[0] if len(values) == 1 else values
            for tag, values in grouped.items()}


def parse_header(text, where) -> dict:
    """Parse the ISMRMRD XML header into a dict (tags without namespace)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise FormatError(where, f"the XML header is not valid XML: {error}") from None
    if root.tag.rpartition("}")[2] != "ismrmrdHeader":
        raise FormatError(where, f"the XML header's root is <{root.tag}>, not "
                                 "<ismrmrdHeader>")
    value = _element_dict(root)
    return value if isinstance(value, dict) else {}


def _get(header: dict, *keys):
    """A nested header value; lists (repeated tags) give their first entry on the way."""
    value = header
    for key in keys:
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _list(value) -> list:
    return value if isinstance(value, list) else ([] if value is None else [value])


def _positive(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


# --------------------------------------------------------------------------- file


def _group(f, where):
    if "dataset" in f:
        return f["dataset"]
    groups = [g for g in f.values() if isinstance(g, h5py.Group) and "xml" in g]
    if len(groups) != 1:
        raise FormatError(where, "no ISMRMRD dataset group (with xml and data) in the file")
    return groups[0]


def can_read(path: Path) -> bool:
    """True for an HDF5 file (``.h5``, ``.hdf5``, ``.mrd``, ``.ismrmrd``) holding an ISMRMRD
    dataset with ``xml`` and ``data``."""
    try:
        path = Path(path)
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            return False
        with open(path, "rb") as f:
            if f.read(8) != HDF5_SIGNATURE:
                return False
        with h5py.File(path, "r") as f:
            group = _group(f, path)
            return "xml" in group and "data" in group
    except (OSError, ValueError):
        return False


def _xml_text(group, where) -> str:
    if "xml" not in group:
        raise FormatError(where, "the ISMRMRD dataset has no xml header")
    raw = group["xml"][()]
    raw = raw.ravel()[0] if isinstance(raw, np.ndarray) and raw.size else raw
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw.strip():
        raise FormatError(where, "the ISMRMRD xml header is empty")
    return raw


def _records(group, where) -> tuple:
    """(heads, float32 data list) of all acquisitions."""
    if "data" not in group:
        raise FormatError(where, "the ISMRMRD dataset has no acquisitions (no data)")
    dataset = group["data"]
    names = dataset.dtype.names or ()
    if "head" not in names or "data" not in names:
        raise FormatError(where, f"/data records have fields {names}, expected head, traj, "
                                 "data")
    if dataset.shape[0] == 0:
        raise FormatError(where, "the ISMRMRD dataset holds no acquisitions")
    heads = dataset["head"]
    needed = ("flags", "number_of_samples", "active_channels", "idx", "center_sample")
    if any(n not in (heads.dtype.names or ()) for n in needed):
        raise FormatError(where, "acquisition headers lack the ISMRMRD fields "
                                 f"{', '.join(needed)}")
    return heads, dataset


def _samples(chunks, rows: np.ndarray, channels: int, samples: int, where) -> np.ndarray:
    """(n, channels, samples) complex64 of the chosen acquisitions' float32 ``chunks``."""
    expected = 2 * channels * samples
    sizes = np.fromiter((chunks[i].size for i in rows), np.int64, rows.size)
    if np.any(sizes != expected):
        bad = int(np.argmax(sizes != expected))
        raise FormatError(where, f"acquisition {rows[bad]} holds {sizes[bad]} values but "
                                 f"its header implies {expected}")
    stacked = np.stack([np.asarray(chunks[i], np.float32) for i in rows])
    return stacked.view(np.complex64).reshape(rows.size, channels, samples)


def _noise(chunks, heads, rows, where) -> dict | None:
    if not rows.size:
        return None
    channels = int(heads["active_channels"][rows[0]])
    samples = int(heads["number_of_samples"][rows[0]])
    if np.any(heads["active_channels"][rows] != channels) or np.any(
            heads["number_of_samples"][rows] != samples):
        raise FormatError(where, "noise scans differ in channels or samples")
    noise = _samples(chunks, rows, channels, samples, where)
    values = noise.transpose(1, 0, 2).reshape(channels, -1)
    values = values - values.mean(axis=1, keepdims=True)
    covariance = values @ values.conj().T / max(values.shape[1] - 1, 1)
    return {"scans": int(rows.size), "samples": int(values.shape[1]),
            "std": np.sqrt(np.diag(covariance).real).tolist(),
            "covariance_real": covariance.real.tolist(),
            "covariance_imag": covariance.imag.tolist()}


# --------------------------------------------------------------------------- k-space


def _encoding(header: dict, where) -> tuple:
    """Encoded matrix (z, y, x), encoded FOV (z, y, x) in µm, recon FOV x in µm."""
    matrix = [_get(header, "encoding", "encodedSpace", "matrixSize", a) for a in "zyx"]
    fov = [_get(header, "encoding", "encodedSpace", "fieldOfView_mm", a) for a in "zyx"]
    if not all(isinstance(m, int) and 1 <= m <= 65535 for m in matrix):
        raise FormatError(where, f"encodedSpace matrixSize {matrix} is not three positive "
                                 "integers")
    if not all(_positive(f) for f in fov):
        raise FormatError(where, f"encodedSpace fieldOfView_mm {fov} is not positive")
    recon_x = _positive(_get(header, "encoding", "reconSpace", "fieldOfView_mm", "x"))
    return tuple(matrix), tuple(f * 1000.0 for f in fov), recon_x and recon_x * 1000.0


def _centre(header: dict, name: str, size: int) -> int:
    centre = _get(header, "encoding", "encodingLimits", name, "center")
    return centre if isinstance(centre, int) and not isinstance(centre, bool) else size // 2


def _counter(idx, name: str, where) -> np.ndarray:
    if name not in (idx.dtype.names or ()):
        raise FormatError(where, f"acquisition headers lack idx.{name}")
    return idx[name].astype(np.int64)


def _slice_step_um(heads, rows, slices) -> float | None:
    """Distance between the first two slices along slice_dir, from the positions (mm)."""
    names = heads.dtype.names or ()
    if slices < 2 or "position" not in names or "slice_dir" not in names:
        return None
    slice_of = heads["idx"]["slice"][rows]
    first = [rows[np.argmax(slice_of == s)] for s in (0, 1) if np.any(slice_of == s)]
    if len(first) < 2:
        return None
    normal = np.asarray(heads["slice_dir"][first[0]], float)
    step = float(np.dot(np.asarray(heads["position"][first[1]], float)
                        - np.asarray(heads["position"][first[0]], float), normal))
    return abs(step) * 1000.0 if math.isfinite(step) and abs(step) > 1e-9 else None


def _acquisition(header: dict, heads, rows, echoes: int, averages: int) -> dict:
    out = {"readout_axis": 2}
    field = _positive(_get(header, "acquisitionSystemInformation", "systemFieldStrength_T"))
    frequency = _positive(_get(header, "experimentalConditions", "H1resonanceFrequency_Hz"))
    if frequency:  # the reference of the phase; the field strength may be nominal
        out["b0_tesla"] = frequency / 1e6 / GAMMA_BAR_MHZ_PER_T["1H"]
    elif field:
        out["b0_tesla"] = field
    parameters = _get(header, "sequenceParameters") or {}
    echo_times = [t for t in _list(parameters.get("TE")) if isinstance(t, (int, float))]
    if len(echo_times) >= echoes:
        out["te_ms"] = tuple(echo_times[:echoes])
    tr = [t for t in _list(parameters.get("TR")) if _positive(t)]
    if tr:
        out["tr_ms"] = float(tr[0])
    flip = [a for a in _list(parameters.get("flipAngle_deg")) if isinstance(a, (int, float))]
    if flip:
        out["flip_deg"] = float(flip[0])
    kind = sequence_kind(str(parameters.get("sequence_type") or ""))
    if kind:
        out["sequence"] = kind
    dwell = heads["sample_time_us"][rows] if "sample_time_us" in heads.dtype.names else []
    if len(dwell) and dwell[0] > 0:
        out["bandwidth_hz"] = 1e6 / float(dwell[0])
    out["averages"] = averages
    return out


def _trajectory_units(traj: np.ndarray, matrix: tuple, where) -> tuple:
    """(κ in cycles per FOV, the unit found): ±0.5 relative to the matrix, or cycles/FOV."""
    limit = np.asarray(matrix, dtype=float)
    largest = np.abs(traj).reshape(-1, traj.shape[-1]).max(axis=0)
    if np.all(largest <= 0.5 + 1e-3):
        return traj * limit.astype(np.float32), "relative to the encoded matrix (±0.5)"
    if np.all(largest <= limit / 2 + 0.5):
        return traj, "cycles per FOV"
    raise FormatError(where, f"traj reaches {largest.round(3).tolist()}: beyond ±0.5 and "
                             f"beyond ±N/2 of the encoded matrix {tuple(matrix)}")


def _noncartesian(dataset, heads, rows, echo, slices, acquisition, name, where) -> tuple:
    """(KSpace with a trajectory, extra metadata) of non-Cartesian acquisitions."""
    nz, ny, nx = acquisition.matrix
    ndim = 3 if nz > 1 else 2
    if slices > 1:
        raise FormatError(where, f"non-Cartesian ({name!r}) with {slices} slices: only one "
                                 "slice or 3-D slab is read")
    names = heads.dtype.names or ()
    dims = heads["trajectory_dimensions"][rows].astype(np.int64) \
        if "trajectory_dimensions" in names else np.zeros(rows.size, np.int64)
    if "traj" not in (dataset.dtype.names or ()) or np.any(dims != dims[0]) \
            or dims[0] not in (ndim, ndim + 1):
        raise FormatError(where, f"non-Cartesian trajectory {name!r} but the acquisitions "
                                 f"carry no {ndim}-D traj (trajectory_dimensions "
                                 f"{sorted(set(dims.tolist()))})")
    dims = int(dims[0])
    channels = int(heads["active_channels"][rows[0]])
    samples = int(heads["number_of_samples"][rows[0]])
    pre = heads["discard_pre"][rows] if "discard_pre" in names else np.zeros(1)
    post = heads["discard_post"][rows] if "discard_post" in names else np.zeros(1)
    if np.any(pre != pre[0]) or np.any(post != post[0]) or pre[0] + post[0] >= samples:
        raise FormatError(where, "non-Cartesian readouts differ in discard_pre/post (or "
                                 "discard them all)")
    keep = slice(int(pre[0]), samples - int(post[0]))
    stored = dataset.fields("traj")[()]
    sizes = np.fromiter((stored[i].size for i in rows), np.int64, rows.size)
    if np.any(sizes != dims * samples):
        bad = int(rows[np.argmax(sizes != dims * samples)])
        raise FormatError(where, f"acquisition {bad} holds {stored[bad].size} trajectory "
                                 f"values, not trajectory_dimensions x samples = "
                                 f"{dims * samples}")
    echoes = int(echo.max()) + 1
    per_echo = [rows[echo == e] for e in range(echoes)]
    if len({r.size for r in per_echo}) != 1:
        raise FormatError(where, "contrasts hold different numbers of non-Cartesian readouts")
    positions = [np.stack([np.asarray(stored[i], np.float32).reshape(samples, dims)[keep]
                           for i in r]) for r in per_echo]
    if any(not np.array_equal(p, positions[0]) for p in positions[1:]):
        raise FormatError(where, "contrasts are sampled on different trajectories")
    positions = positions[0]
    density = positions[..., ndim] if dims > ndim else None
    # (kx, ky[, kz]) -> image order; units to cycles per FOV of the encoded matrix
    kappa, units = _trajectory_units(positions[..., :ndim][..., ::-1],
                                     (nz, ny, nx)[-ndim:], where)
    chunks = dataset.fields("data")[()]
    data = np.stack([_samples(chunks, r, channels, samples, where)[..., keep]
                     for r in per_echo])  # (echo, readouts, channels, samples)
    data = data.transpose(2, 0, 1, 3)
    kspace = KSpace(data if channels > 1 else data[0], acquisition,
                    coil_axis=0 if channels > 1 else None, trajectory=kappa,
                    density=None if density is None else density.astype(np.float32))
    return kspace, {"trajectory_type": name, "trajectory_units": units,
                    "spacing_source": "encodedSpace fieldOfView_mm"}


def _load(path: Path) -> tuple:
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such ISMRMRD file")
    try:
        with h5py.File(path, "r") as f:
            return _from_group(_group(f, path), path)
    except OSError as error:  # truncated or damaged HDF5
        raise FormatError(path, f"not a readable HDF5 file ({error})") from None


def _from_group(group, path: Path) -> tuple:
    """Read the acquisitions of an open ISMRMRD dataset group into k-space."""
    header = parse_header(_xml_text(group, path), path)
    (nz, ny, nx), fov_um, recon_fov_x = _encoding(header, path)
    heads, dataset = _records(group, path)
    flags = heads["flags"].astype(np.uint64)
    noise_rows = np.flatnonzero(_flag(flags, NOISE_FLAG))
    skipped = {name: int(np.count_nonzero(_flag(flags, bit) & ~_flag(
        flags, CAL_AND_IMAGING_FLAG))) for bit, name in SKIPPED_FLAGS.items()}
    keep = ~_flag(flags, NOISE_FLAG)
    for bit in SKIPPED_FLAGS:
        keep &= ~(_flag(flags, bit) & ~_flag(flags, CAL_AND_IMAGING_FLAG))
    rows = np.flatnonzero(keep)
    if not rows.size:
        raise FormatError(path, "the dataset holds no image k-space acquisitions")
    if "encoding_space_ref" in heads.dtype.names and np.any(
            heads["encoding_space_ref"][rows] != 0):
        raise FormatError(path, "acquisitions of several encoding spaces: only one is "
                                "read")
    channels = int(heads["active_channels"][rows[0]])
    samples = int(heads["number_of_samples"][rows[0]])
    if channels < 1 or samples < 1 or np.any(heads["active_channels"][rows] != channels) \
            or np.any(heads["number_of_samples"][rows] != samples):
        raise FormatError(path, "image acquisitions differ in active_channels or "
                                "number_of_samples (or hold none)")
    idx = heads["idx"][rows]
    for name in ("phase", "repetition", "set"):
        values = np.unique(_counter(idx, name, path))
        if values.size > 1:
            raise FormatError(path, f"idx.{name} takes {values.size} values: only one "
                                    f"{name} is read")
    echo = _counter(idx, "contrast", path)
    slice_ = _counter(idx, "slice", path)
    step1 = _counter(idx, "kspace_encode_step_1", path)
    step2 = _counter(idx, "kspace_encode_step_2", path)
    echoes, slices = int(echo.max()) + 1, int(slice_.max()) + 1
    trajectory = str(_get(header, "encoding", "trajectory") or "cartesian")
    if trajectory.lower() != "cartesian":
        averages = int(np.unique(_counter(idx, "average", path)).size)
        stated = _acquisition(header, heads, rows, echoes, averages)
        stated.update(matrix=(nz, ny, nx), fov_um=fov_um)
        acquisition, stated = stated_acquisition(stated, path)
        kspace, extra = _noncartesian(dataset, heads, rows, echo, slices, acquisition,
                                      trajectory, path)
        noise = _noise(dataset.fields("data")[()], heads, noise_rows, path)
        extra.update(noise=noise, skipped_scans={k: v for k, v in skipped.items() if v},
                     readout_oversampling=fov_um[2] / recon_fov_x if recon_fov_x else 1.0)
        return kspace, header, stated, extra
    multislice = nz == 1
    if not multislice and slices > 1:
        raise FormatError(path, f"3-D encoding with {slices} slices (multi-slab) is not "
                                "supported")
    grid_z = slices if multislice else nz
    grid = channels * echoes * grid_z * ny * nx
    if grid > MAX_GRID_PER_SAMPLE * rows.size * channels * samples:
        raise FormatError(path, f"the encoded matrix {(nz, ny, nx)} x {echoes} echoes "
                                f"x {channels} channels is more than "
                                f"{MAX_GRID_PER_SAMPLE} x the acquired samples")
    y = step1 - _centre(header, "kspace_encoding_step_1", ny) + ny // 2
    z = slice_ if multislice else step2 - _centre(header, "kspace_encoding_step_2", nz) \
        + nz // 2
    for name, values, size in (("kspace_encode_step_1", y, ny),
                               ("kspace_encode_step_2", z, grid_z)):
        if values.min() < 0 or values.max() >= size:
            raise FormatError(path, f"idx.{name} places lines outside the {size}-line "
                                    "encoded matrix")
    centre = heads["center_sample"][rows].astype(np.int64)
    unset = (centre == 0) & (samples == nx)
    centre[unset] = nx // 2
    names = heads.dtype.names
    pre = heads["discard_pre"][rows].astype(np.int64) if "discard_pre" in names else 0
    post = heads["discard_post"][rows].astype(np.int64) if "discard_post" in names else 0
    sign = np.where(_flag(flags[rows], REVERSE_FLAG), -1, 1)
    t = np.arange(samples)
    x = nx // 2 + sign[:, None] * (t[None, :] - centre[:, None])
    x[x == nx] = 0  # a reversed readout starts at k = +N/2, the same DFT line as -N/2
    valid = (t[None, :] >= np.asarray(pre).reshape(-1, 1)) & (
        t[None, :] < samples - np.asarray(post).reshape(-1, 1))
    if np.any(valid & ((x < 0) | (x >= nx))):
        raise FormatError(path, f"readouts of {samples} samples around center_sample do "
                                f"not fit the {nx}-point encoded readout")
    chunks = dataset.fields("data")[()]
    data = _samples(chunks, rows, channels, samples, path)
    noise = _noise(chunks, heads, noise_rows, path)
    averages = int(np.unique(_counter(idx, "average", path)).size)
    stated = _acquisition(header, heads, rows, echoes, averages)
    step_um = _slice_step_um(heads, rows, slices) if multislice else None

    line = ((echo * grid_z + z) * ny + y)[:, None] * nx
    flat = (line + x)[valid]
    size = echoes * grid_z * ny * nx
    counts = np.bincount(flat, minlength=size)
    values = data.transpose(1, 0, 2)[:, valid]  # (channel, kept samples)
    out = np.empty((channels, size), np.complex64)
    for c in range(channels):
        out[c].real = np.bincount(flat, values[c].real, minlength=size)
        out[c].imag = np.bincount(flat, values[c].imag, minlength=size)
    out /= np.maximum(counts, 1)
    out = out.reshape(channels, echoes, grid_z, ny, nx)
    sampled = counts.reshape(echoes, grid_z, ny, nx).any(axis=0)

    if multislice:  # encoded z FOV is the slice thickness
        fov_um = ((step_um or fov_um[0]) * grid_z,) + fov_um[1:]
    stated.update(matrix=(grid_z, ny, nx), fov_um=fov_um)
    acquisition, stated = stated_acquisition(stated, path)
    kspace = KSpace(out if channels > 1 else out[0], acquisition,
                    sampled=None if sampled.all() else sampled,
                    coil_axis=0 if channels > 1 else None, multislice=multislice)
    extra = {"noise": noise, "skipped_scans": {k: v for k, v in skipped.items() if v},
             "readout_oversampling": fov_um[2] / recon_fov_x if recon_fov_x else 1.0,
             "center_sample_unset": bool(unset.any()),
             "spacing_source": ("acquisition positions" if step_um else
                                "encodedSpace fieldOfView_mm")}
    return kspace, header, stated, extra


def read_kspace(path: Path) -> KSpace:
    """Read ISMRMRD/MRD HDF5 raw data as :class:`~napari_mrmicro.core.kspace.KSpace`.

    Returns
    -------
    KSpace
        ``(echo, z, y, x)`` complex64, or ``(coil, echo, z, y, x)`` for several channels;
        DC at ``N // 2``; 2-D encodings are ``multislice`` (z = ``idx.slice``).
    """
    return _load(path)[0]


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read ISMRMRD/MRD HDF5 raw k-space as a :class:`Volume`.

    Readouts are placed into k-space, so the data are always read into memory (``lazy``
    is accepted for the io contract and has no effect).
    """
    kspace, header, stated, extra = _load(path)
    return kspace_volume(kspace, "ismrmrd", path, header, stated,
                         name=f"{Path(path).stem} k-space", **extra)
