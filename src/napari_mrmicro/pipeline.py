"""Pipelines: steps and parameters in a TOML file, run on one specimen after another.

A pipeline file lists steps in order; each step names what it runs and takes the same
parameters as the dock that does it interactively::

    name = "cochlea atlas"

    [[step]]
    run = "recon"            # k-space -> magnitude (and phase)
    window = "hann"

    [[step]]
    run = "echo"             # keep the first echo of a multi-echo scan
    index = 0

    [[step]]
    run = "smooth"
    sigma_um = 20.0

    [[step]]
    run = "threshold"        # Otsu when no threshold is given

    [[step]]
    run = "components"       # connected parts of the mask
    connectivity = 1

    [[step]]
    run = "measure"          # -> regions.csv

    [[step]]
    run = "save"
    image = "magnitude.ome.zarr"
    labels = "labels.ome.zarr"

Steps work on the specimen's volumes by role — ``kspace``, ``image`` (magnitude),
``phase``, ``labels`` — and tables (written as ``<table>.csv``). Image steps run chunk by
chunk (:mod:`napari_mrmicro.core.chunked`), so volumes larger than memory pass through;
FFT steps (``recon``) estimate their memory first and refuse when it will not fit.

:func:`run_specimen` writes one specimen's outputs into ``<out>/<specimen>/`` atomically (a
temporary folder renamed when complete, with ``done.json`` holding the pipeline digest);
a failure writes ``<out>/<specimen>.error.txt`` instead. A rerun skips specimens whose
``done.json`` matches the pipeline, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_mrmicro.io import Volume
from napari_mrmicro.io._common import LAZY_BYTES

DONE = "done.json"
#: Roles of the volumes a specimen carries between steps.
ROLES = ("kspace", "image", "phase", "labels", "chi", "t2", "s0", "t1", "m0", "t1_sd", "b1",
         "md", "fa", "ad", "rd", "dec")
_SUFFIXES = (".ome.zarr", ".zarr", ".nii.gz", ".nii", ".headfile", ".ome.tiff", ".ome.tif",
             ".tiff", ".tif", ".h5", ".mrd", ".tnt", ".fid")


# --------------------------------------------------------------------------- files


def load_volume(path, lazy: bool | None = None) -> Volume:
    """Read any volume napari-mrmicro reads, OME-Zarr included (lazily above
    :data:`~napari_mrmicro.io._common.LAZY_BYTES` unless ``lazy`` says otherwise)."""
    from napari_mrmicro.io import omezarr, read_volume

    path = Path(path)
    if omezarr.can_read(path):
        volume = read_volume(path, lazy=True if lazy is None else lazy)
        if lazy is None and volume.data.nbytes <= LAZY_BYTES:  # large k-space stays on disk
            volume.data = np.asarray(volume.data)  # until recon has checked its memory
        return volume
    return read_volume(path, lazy=lazy)


def scan_input(path, reconstructs: bool) -> Path:
    """What a ParaVision scan folder stands for: its raw data (``fid``,
    ``rawdata.job0``) when the work ``reconstructs``, else its image (read from
    ``pdata/1/2dseq``). A ValueError when a reconstruction is asked of a scan that kept no
    raw data. Any other path is returned as given."""
    from napari_mrmicro.io import bruker, bruker_raw

    path = Path(path)
    if not reconstructs or not path.is_dir():
        return path
    if bruker_raw.can_read(path):
        return next(path / name for name in bruker_raw.RAW_NAMES if (path / name).is_file())
    if (path / "acqp").is_file() and bruker.can_read(path):
        raise ValueError(f"{path}: this ParaVision scan kept no raw data ("
                         f"{' or '.join(bruker_raw.RAW_NAMES)}), only the scanner's image "
                         "(pdata/1/2dseq): leave out the recon step to work on that image")
    return path


def specimen_inputs(inputs, pipeline: Pipeline) -> list[Path]:
    """The inputs with each ParaVision study folder replaced by its scan folders: those
    with raw data when the pipeline starts with ``recon``, else those with an image (a
    study is several specimens, one per scan)."""
    from napari_mrmicro.io import bruker, bruker_raw, paravision_study

    reconstructs = pipeline.reconstructs
    has = bruker_raw.can_read if reconstructs else bruker.can_read
    out = []
    for path in map(Path, inputs):
        if not paravision_study.can_read(path):
            out.append(path)
            continue
        scans = [scan for scan in paravision_study.scans(path) if has(scan)]
        if not scans:
            what = f"raw data ({' or '.join(bruker_raw.RAW_NAMES)}) for a pipeline that " \
                "starts with recon" if reconstructs else "a pdata image"
            raise ValueError(f"{path}: no scan of this ParaVision study has {what}")
        out.extend(scans)
    return out


def save_volume(path, volume: Volume, **options) -> list[str]:
    """Write a volume in the format its name asks for (``.zarr``: OME-Zarr), atomically."""
    from napari_mrmicro.io import omezarr, write_volume

    if str(path).lower().endswith(omezarr.WRITE_SUFFIXES):
        return omezarr.write(Path(path), volume, **options)
    return write_volume(path, volume, **options)


def unwarp_epi(image: Volume, field: Volume, echo_spacing_ms: float | None = None,
               direction: int | None = None) -> Volume:
    """An EPI image with its off-resonance distortion along the phase encode undone by a
    field map (:mod:`napari_mrmicro.core.epi_distortion`).

    The echo spacing and the direction the train runs through the phase encode come from
    the image's acquisition (ParaVision states both) unless given. The field map is in Hz,
    or in ppm converted with the image's B0; it is resampled onto the image through both
    world placements, or taken as is when neither is placed and the grids agree. Leading
    axes (echoes, repetitions) are unwarped alike.
    """
    import dataclasses

    from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
    from napari_mrmicro.core.epi_distortion import phase_encode_shift, unwarp
    from napari_mrmicro.core.reslice import resample_onto_grid

    done = image.metadata.get("unwarped")
    if done:
        raise ValueError(f"the image is already unwarped (with {done.get('field_map')!r}): "
                         "unwarping it again would shift it twice")
    stated = image.metadata.get("acquisition") or {}
    acquisition = {**(stated.get("extra") or {}), **stated}  # Acquisition.to_dict() nests
    spacing = echo_spacing_ms or acquisition.get("echo_spacing_ms")
    direction = direction or acquisition.get("epi_direction")
    if spacing is None or direction is None:
        raise ValueError("the image does not state its EPI echo spacing and phase-encode "
                         "direction; give them (--echo-spacing-ms, --direction)")
    values = np.asarray(field.data, np.float64)
    unit = field.metadata.get("value_unit")
    if unit == "ppm" and acquisition.get("b0_tesla"):
        values = values * acquisition["b0_tesla"] * GAMMA_BAR_MHZ_PER_T[
            acquisition.get("nucleus", "1H")]
    elif unit != "Hz":
        raise ValueError(f"the field map must be in Hz (or ppm, with the image's B0); its "
                         f"values are in {unit or 'no stated unit'}")
    data = np.asarray(image.data)
    if len(image.spacing_um) != 3 or values.ndim != 3:
        raise ValueError("3-D image and field map volumes are needed")
    spatial = data.shape[-3:]
    if image.affine_um is not None and field.affine_um is not None:
        hz, covered = resample_onto_grid(values, field.affine_um, spatial, image.affine_um)
    elif values.shape == spatial:
        hz, covered = values, np.ones(spatial, bool)
    else:
        raise ValueError("the field map is neither placed in world space with the image "
                         "nor on its grid")
    if covered.mean() < 0.5:
        raise ValueError(f"the field map covers {100 * covered.mean():.0f} % of the image: "
                         "not the same region")
    axis = 1 if acquisition.get("readout_axis", 2) == 2 else 2  # the other in-plane axis
    shift = phase_encode_shift(hz, spacing, spatial[axis], direction)
    out = np.stack([unwarp(v, shift, axis) for v in data.reshape(-1, *spatial)])
    return dataclasses.replace(
        image, data=out.reshape(data.shape), name=f"{image.name or 'image'} unwarped",
        metadata={**image.metadata, "unwarped": {
            "field_map": field.name or str(field.metadata.get("source", "")),
            "echo_spacing_ms": float(spacing), "direction": int(direction),
            "axis": "zyx"[axis], "max_shift_px": float(np.abs(shift).max()),
            "covered_percent": float(100 * covered.mean())}})


def role_of(volume: Volume) -> str:
    """The role an input volume starts with: ``kspace``, ``labels`` or ``image``."""
    from napari_mrmicro.io import kspace_codec

    if kspace_codec.is_kspace(volume.metadata):
        return "kspace"
    return "labels" if volume.layer_type == "labels" else "image"


def _paravision_name(path: Path) -> str | None:
    """``<study>_<scan>`` for a ParaVision study's numbered scan folder or a file of it
    (``<study>/<scan>``, ``<study>/<scan>/fid``, ``<study>/<scan>/pdata/<n>/2dseq``,
    ``_<n>`` added for a processed image other than the first), so that the scans of one
    study, and the same scan number of two studies, name different specimens. None for
    another layout."""
    folder = path if path.is_dir() else path.parent
    reco = None
    if folder.parent.name == "pdata" and path.name in ("2dseq", "visu_pars"):
        reco, folder = folder.name, folder.parent.parent
    if not folder.name.isdigit() or not folder.parent.name:
        return None
    return f"{folder.parent.name}_{folder.name}" + (f"_{reco}" if reco not in (None, "1")
                                                     else "")


def specimen_name(path) -> str:
    """A specimen's name from its input path (the file or folder name without suffixes;
    for a scanner's fixed file name, its folder's, or ``<study>_<scan>`` in a ParaVision
    study).

    The path is made absolute first (``.`` is the current folder's name, links are not
    followed); a path without a name (``/``) is refused, so a specimen always has a
    folder of its own.
    """
    path = Path(os.path.abspath(path))
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    else:
        if name in ("2dseq", "visu_pars", "fid", "rawdata.job0", "headfile"):
            name = _paravision_name(path) or path.parent.name
        elif name.isdigit() and (path / "acqp").is_file():  # a ParaVision scan folder
            name = _paravision_name(path) or name
    if not name or name in (".", ".."):
        raise ValueError(f"{path}: no specimen name can be derived from this path; name "
                         "the file or folder")
    return name


def _plain_name(name, what: str) -> str:
    """``name`` when it is a plain file name (no folder part, not hidden), else ValueError."""
    if not isinstance(name, str) or not name.strip() or name.startswith(".") \
            or Path(name).name != name or "\\" in name or name in (DONE,):
        raise ValueError(f"{what} = {name!r} must be a file name inside the specimen's "
                         "output folder (no folder part, not hidden)")
    return name


def write_table(path, table: dict) -> Path:
    """Write a table of columns as CSV atomically: a killed or failed write leaves the old
    file (or none) and its temporary is cleaned by the next write."""
    from napari_mrmicro.core.morphometry import write_table_csv
    from napari_mrmicro.io._common import atomic_output

    with atomic_output(path) as tmp:
        write_table_csv(table, tmp)
    return Path(path)


# --------------------------------------------------------------------------- steps


@dataclass
class Specimen:
    """What a pipeline carries for one specimen: volumes by role, tables, outputs."""

    name: str
    out_dir: Path
    volumes: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    written: list = field(default_factory=list)
    threads: int = -1
    claimed: dict = field(default_factory=dict)

    def need(self, role: str, step: str) -> Volume:
        if role not in self.volumes:
            have = ", ".join(sorted(self.volumes)) or "nothing"
            hint = " (an image is already reconstructed: give raw k-space, e.g. a ParaVision " \
                "scan folder or its fid/rawdata.job0)" if role == "kspace" and "image" in \
                self.volumes else ""
            raise ValueError(f"step {step!r} needs a {role} volume; the specimen has {have}"
                             + hint)
        return self.volumes[role]

    def output(self, name, what: str) -> Path:
        """The path of output file ``name``: checked to lie inside :attr:`out_dir` and to be
        claimed by no other output of this specimen."""
        _plain_name(name, what)
        folder = self.out_dir.resolve()
        path = (folder / name).resolve()
        if path.parent != folder:
            raise ValueError(f"{what} = {name!r} must be a file name inside the specimen's "
                             "output folder")
        if path in self.claimed:
            raise ValueError(f"{what} = {name!r}: {self.claimed[path]} writes {name} already")
        self.claimed[path] = what
        return path


def _derived(volume: Volume, data, **changes) -> Volume:
    """A volume computed from ``volume`` on its spatial grid: its metadata (not the
    k-space or pyramid keys) and its placement in the world, rotation included."""
    meta = {k: v for k, v in volume.metadata.items() if k not in ("kspace", "pyramid")}
    affine = None if volume.affine_um is None else np.array(volume.affine_um, dtype=float)
    return Volume(data, volume.spacing_um, meta, origin_um=volume.origin_um,
                  name=changes.pop("name", volume.name),
                  layer_type=changes.pop("layer_type", "image"), affine_um=affine)


def _check_recon_memory(volume: Volume, zero_fill) -> None:
    """Refuse, before the k-space is loaded, a reconstruction whose peak (the k-space in
    memory, :func:`~napari_mrmicro.core.recon.estimate_recon_bytes`, magnitude and phase)
    will not fit."""
    from napari_mrmicro.core.memory import check_memory
    from napari_mrmicro.core.recon import estimate_recon_bytes

    shape = tuple(int(n) for n in volume.data.shape)
    factors = np.broadcast_to(np.asarray(zero_fill, dtype=float), (3,))
    full = math.prod(shape[:-3]) * math.prod(int(round(n * f))
                                              for n, f in zip(shape[-3:], factors))
    loaded = isinstance(volume.data, np.ndarray) and volume.data.dtype == np.complex64
    check_memory((0 if loaded else 8 * math.prod(shape))
                 + estimate_recon_bytes(shape, zero_fill) + 8 * full,
                 f"recon of k-space {shape} with zero-fill {zero_fill}",
                 advice="a smaller zero-fill factor, fewer echoes or coils at a time")


def recon_step(s: Specimen, window=None, zero_fill: float = 1.0, partial_fourier=None,
               cs=None, lam: float = 0.005, iterations: int = 50, acceleration: float = 1.0):
    """k-space -> magnitude (``image``) and, for complex images, ``phase`` (radians).

    Parameters as the Reconstruction dock: ``window`` (``"hann"``, ``"hamming"``,
    ``"tukey"``, a dict such as ``{name = "tukey", alpha = 0.3}``, or None), ``zero_fill``,
    ``partial_fourier`` (``{axis = -2, method = "pocs", fraction = 0.625}``), ``cs``
    (``"l1_wavelet"`` or ``"tv"`` for compressed sensing, with ``lam``, ``iterations`` and a
    retrospective ``acceleration`` when the data are fully sampled). The k-space's acquired
    mask is used: partial Fourier is completed where the mask says so, and compressed
    sensing runs on the mask the scanner sampled.
    """
    from napari_mrmicro.core import backend, cs_reconstruct, image_parts, reconstruct
    from napari_mrmicro.core.geometry import regridded_affine
    from napari_mrmicro.core.sampling import acquired_or_retrospective_mask
    from napari_mrmicro.io import kspace_codec

    volume = s.need("kspace", "recon")
    if not cs:
        _check_recon_memory(volume, zero_fill)
    kspace = kspace_codec.volume_to_kspace(volume)
    acq = kspace.acquisition
    if cs:
        mask = acquired_or_retrospective_mask(kspace, acceleration)
        image = cs_reconstruct(kspace, mask=mask, method=cs, lam=lam, iterations=iterations)
        zero_fill = 1.0
    else:
        image = reconstruct(kspace, window=window, zero_fill=zero_fill,
                            partial_fourier=partial_fourier, workers=s.threads)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    parts = image_parts(image)
    # zero-filling regrids the k-space axes only (not the slices of a multi-slice scan)
    grid, shape = tuple(acq.matrix), tuple(parts["magnitude"].shape[-3:])
    spacing = tuple(v * g / n for v, g, n in zip(acq.voxel_um, grid, shape))
    affine = (None if volume.affine_um is None
              else regridded_affine(volume.affine_um, grid, shape))
    meta = {**kspace_codec.image_metadata(volume.metadata), "acquisition": acq.to_dict(),
            "recon": {"window": window, "zero_fill": zero_fill,
                      "partial_fourier": partial_fourier, "cs": cs},
            "device": backend.resolve()}
    s.volumes.pop("kspace")
    s.volumes["image"] = Volume(parts["magnitude"], spacing, meta, origin_um=volume.origin_um,
                                name=f"{s.name} magnitude", affine_um=affine)
    if "phase" in parts:
        s.volumes["phase"] = Volume(parts["phase"], spacing, dict(meta),
                                    origin_um=volume.origin_um, name=f"{s.name} phase",
                                    affine_um=affine)


def echo_step(s: Specimen, index: int = 0):
    """Keep one echo of a multi-echo ``image`` (and ``phase``); 3-D volumes pass unchanged."""
    for role in ("image", "phase"):
        volume = s.volumes.get(role)
        if volume is None or len(volume.data.shape) == len(volume.spacing_um):
            continue
        count = volume.data.shape[0]
        if not -count <= index < count:
            raise ValueError(f"echo: index {index} is not one of the {count} echoes")
        s.volumes[role] = _derived(volume, volume.data[index])


def _b0_direction(volume: Volume, given=None) -> tuple:
    """B0 in the volume's array axes, as the QSM dock takes it: ``given``, else from the
    grid's rotation in the world, else the acquisition's ``b0_direction``, else (1, 0, 0)."""
    from napari_mrmicro.core.qsm.field_map import b0_direction_of_grid

    if given is not None:
        return tuple(given)
    placed = None if volume.affine_um is None else \
        b0_direction_of_grid(volume.affine_um, volume.spacing_um)
    acq = volume.metadata.get("acquisition") or {}
    return tuple(placed or acq.get("b0_direction") or (1.0, 0.0, 0.0))


def qsm_step(s: Specimen, method: str = "tv", background: str = "lbv",
             unwrap: str = "region_growing", erode_um: float = 0.0, lam: float | None = None,
             max_iter: int = 250, tkd_threshold: float = 0.15, mask_from_labels: bool = False,
             te_ms=None, b0_tesla: float | None = None, b0_direction=None,
             phase_unit: str | None = None, boundary_passes: int | None = None):
    """Magnitude (``image``) and ``phase`` (echo, z, y, x) -> susceptibility ``chi`` (ppm).

    Parameters as the QSM dock (:func:`napari_mrmicro.core.qsm.pipeline.qsm`). Echo times
    and B0 come from the acquisition the images carry unless given, B0's direction from
    the grid's rotation in the world, else the acquisition's; the phase is in
    ``phase_unit`` ("rad" or "deg"), by default the unit its file states, else radians;
    ``mask_from_labels`` uses the non-zero ``labels`` as the specimen mask (default: the
    voxels with signal and a phase linear in TE, signal voids out); ``boundary_passes``
    caps the passes after the background removal (default
    :data:`~napari_mrmicro.core.qsm.pipeline.BOUNDARY_PASSES`). Every stage checks its
    memory before it starts.
    """
    from napari_mrmicro.core import backend
    from napari_mrmicro.core.qsm.pipeline import BOUNDARY_PASSES, qsm

    passes = BOUNDARY_PASSES if boundary_passes is None else boundary_passes

    magnitude, phase = s.need("image", "qsm"), s.need("phase", "qsm")
    acq = magnitude.metadata.get("acquisition") or {}
    te_ms = te_ms if te_ms is not None else acq.get("te_ms")
    b0_tesla = b0_tesla if b0_tesla is not None else acq.get("b0_tesla")
    b0_direction = _b0_direction(magnitude, b0_direction)
    if te_ms is None or b0_tesla is None:
        raise ValueError("qsm: the magnitude file states no echo times or B0; give te_ms "
                         "and b0_tesla")
    mask = np.asarray(s.need("labels", "qsm").data) != 0 if mask_from_labels else None
    stated = phase.metadata.get("value_unit")
    phase_unit = phase_unit or (stated if stated in ("rad", "deg") else "rad")
    chi = qsm(np.asarray(magnitude.data), np.asarray(phase.data), te_ms, b0_tesla,
              magnitude.spacing_um, tuple(b0_direction), mask=mask, method=method,
              unwrap=unwrap, background=background, erode_um=erode_um, lam=lam,
              max_iter=max_iter, tkd_threshold=tkd_threshold,
              nucleus=acq.get("nucleus", "1H"), phase_unit=phase_unit, boundary_passes=passes)
    volume = _derived(magnitude, chi, name=f"{s.name} χ")
    volume.metadata.update(value_unit="ppm", device=backend.resolve(), qsm={
        "method": method, "background": background, "boundary_passes": passes,
        "unwrap": unwrap, "te_ms": list(te_ms), "b0_tesla": b0_tesla})
    s.volumes["chi"] = volume


def qsm_field_step(s: Specimen, method: str = "tv", background: str = "lbv",
                   lam: float | None = None, max_iter: int = 250, tkd_threshold: float = 0.15,
                   mask_from_labels: bool = False, field_unit: str | None = None,
                   larmor_mhz: float | None = None, b0_direction=None,
                   boundary_passes: int | None = None, erode_um: float = 0.0):
    """A scanner's field map (``image``, z, y, x, in Hz or ppm) -> susceptibility ``chi``.

    As the QSM dock's field-map input (:func:`~napari_mrmicro.core.qsm.qsm_from_field`):
    the unit is the file's ``value_unit`` unless ``field_unit`` says; Hz are divided by
    the Larmor frequency, ``larmor_mhz`` or γ̄·B0 of the file's acquisition (its imaging
    frequency); B0's direction comes from the grid's rotation in the world, else the
    acquisition's, unless given; the mask is the non-zero ``labels`` with
    ``mask_from_labels``, else where the map is non-zero and finite (scanners zero it
    where there is no signal), eroded by ``erode_um`` µm
    (:func:`~napari_mrmicro.core.qsm.field_map.field_map_mask`); ``boundary_passes`` as
    for :func:`qsm_step`.
    """
    from napari_mrmicro.core import backend
    from napari_mrmicro.core.physics import larmor_hz as larmor_of
    from napari_mrmicro.core.qsm.pipeline import BOUNDARY_PASSES
    from napari_mrmicro.core.qsm.field_map import field_map_mask, qsm_from_field

    volume = s.need("image", "qsm_field")
    field = np.asarray(volume.data)
    if field.ndim != 3:
        raise ValueError(f"qsm_field: the field map must be 3-D (z, y, x), got {field.shape}")
    unit = field_unit or volume.metadata.get("value_unit")
    if unit not in ("Hz", "ppm"):
        stated = "no unit for its values" if unit is None else f"its values in {unit!r}"
        raise ValueError(f"qsm_field: the file states {stated}, not a field in Hz or ppm; "
                         "give field_unit (Hz or ppm) if it is a field map")
    acq = volume.metadata.get("acquisition") or {}
    larmor_hz = None
    if unit == "Hz":
        if larmor_mhz is None and not acq.get("b0_tesla"):
            raise ValueError("qsm_field: a field in Hz needs the Larmor frequency; the file "
                             "states no B0: give larmor_mhz")
        larmor_hz = float(larmor_mhz) * 1e6 if larmor_mhz is not None else \
            larmor_of(acq["b0_tesla"], acq.get("nucleus", "1H"))
    b0_direction = _b0_direction(volume, b0_direction)
    passes = BOUNDARY_PASSES if boundary_passes is None else boundary_passes
    if mask_from_labels:
        mask = np.asarray(s.need("labels", "qsm_field").data) != 0
    else:
        mask = field_map_mask(field, volume.spacing_um, erode_um)
    chi, _, _ = qsm_from_field(field, mask, volume.spacing_um, tuple(b0_direction),
                               field_unit=unit, larmor_hz=larmor_hz, method=method,
                               background=background, lam=lam, max_iter=max_iter,
                               tkd_threshold=tkd_threshold, boundary_passes=passes)
    result = _derived(volume, chi, name=f"{s.name} χ")
    result.metadata.update(value_unit="ppm", device=backend.resolve(), qsm={
        "method": method, "background": background, "boundary_passes": passes,
        "field_unit": unit, "erode_um": float(erode_um),
        "larmor_mhz": None if larmor_hz is None else larmor_hz * 1e-6,
        "b0_direction": [float(v) for v in b0_direction]})
    s.volumes["chi"] = result


def _series_image(s: Specimen, step: str, what: str) -> Volume:
    """The specimen's ``image`` when it holds volumes along one leading axis, else a
    ValueError saying the ``step`` needs ``what``."""
    image = s.need("image", step)
    if image.data.ndim != len(image.spacing_um) + 1:
        raise ValueError(f"{step}: needs {what}; the image is {image.data.ndim}-D "
                         f"{tuple(image.axis_labels)} {tuple(image.data.shape)}")
    return image


def relax_step(s: Specimen, method: str = "nonlinear", te_ms=None, floor: float = 3.0,
               noise_sigma: float | None = None, mask_from_labels: bool = False,
               skip_echoes: int = 0):
    """Multi-echo magnitude (``image``, echo, z, y, x) -> ``t2`` (ms; T2* for gradient
    echoes) and ``s0`` (:func:`~napari_mrmicro.core.relaxometry.fit_relaxation`).

    Echo times come from the acquisition the image carries unless given; echoes are used
    while above ``floor``·σ, σ measured in the background unless given; the voxels fitted
    are the non-zero ``labels`` with ``mask_from_labels``, else those with signal;
    ``skip_echoes`` first echoes are left out (a spin-echo train's first echo).
    """
    from napari_mrmicro.core.relaxometry import fit_record, fit_relaxation, relaxation_name

    image = _series_image(s, "relax", "the echoes of a volume (echo, z, y, x)")
    acq = image.metadata.get("acquisition") or {}
    te_ms = te_ms if te_ms is not None else acq.get("te_ms")
    if te_ms is None:
        raise ValueError("relax: the image states no echo times; give te_ms")
    mask = np.asarray(s.need("labels", "relax").data) != 0 if mask_from_labels else None
    fit = fit_relaxation(np.asarray(image.data), te_ms, method, mask=mask,
                         noise_sigma=noise_sigma, floor=floor, skip_echoes=skip_echoes)
    quantity = relaxation_name(acq)
    record = fit_record(fit, method, te_ms, floor, skip_echoes, quantity)
    for role, data, name, unit in (("t2", fit.t2_ms(), quantity, "ms"),
                                   ("s0", fit.s0, "S0", image.metadata.get("value_unit"))):
        volume = _derived(image, data, name=f"{s.name} {name}")
        volume.metadata.update(value_unit=unit, relaxometry=record)
        s.volumes[role] = volume


#: Where each T1 experiment's varied parameter lies in an acquisition: a series over the
#: images' leading axis (ParaVision's VisuAcqInversionTime, a RARE-VTR's TRs, or the
#: series :func:`t1_series` stacked), else the one value of a single scan.
T1_SERIES = {"vfa": ("flip_series_deg", "flip_deg"),
             "saturation_recovery": ("tr_series_ms", "tr_ms"),
             "inversion_recovery": ("ti_ms", "ti_ms")}


def t1_series(volumes: list, method: str, names: list, values=None) -> Volume:
    """One image per flip angle, TR or TI (separate scans of one specimen, ``names`` for
    the messages) stacked into ``(point, z, y, x)`` in the order of the varied parameter,
    its values (``values``, else each scan's own) in the acquisition's series key
    (:data:`T1_SERIES`); the scans must share their grid and placement, and a VFA its
    TR."""
    series_key, single_key = T1_SERIES[method]
    first = volumes[0]
    if values is not None and len(values) != len(volumes):
        raise ValueError(f"t1: {len(values)} values for {len(volumes)} images")
    given, values, trs = values, [], []
    for index, (volume, name) in enumerate(zip(volumes, names)):
        if volume.data.ndim != len(volume.spacing_um):
            raise ValueError(f"t1: {name} holds {tuple(volume.data.shape)} "
                             f"{tuple(volume.axis_labels)}: give one volume per scan, or "
                             "the whole series as one input")
        _same_grid(volume, first, f"t1: {name}", str(names[0]))
        acq = volume.metadata.get("acquisition") or {}
        value = acq.get(single_key) if given is None else given[index]
        value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
        if not isinstance(value, (int, float)):
            raise ValueError(f"t1: {name} states no {single_key}; give the values")
        values.append(float(value))
        trs.append(acq.get("tr_ms"))
    if method == "vfa" and len({t for t in trs if t is not None}) > 1:
        raise ValueError(f"t1: a variable flip angle series needs one TR; the scans have "
                         f"TR {trs} ms")
    order = np.argsort(values, kind="stable")
    data = np.stack([np.asarray(volumes[i].data, dtype=np.float32) for i in order])
    stacked = _derived(first, data)
    acq = dict(first.metadata.get("acquisition") or {})
    acq[series_key] = tuple(values[i] for i in order)
    stacked.metadata["acquisition"] = acq
    stacked.metadata["t1_sources"] = [str(names[i]) for i in order]
    return stacked


def _same_grid(volume: Volume, reference: Volume, what: str, of: str) -> None:
    """ValueError unless ``volume`` has the spatial shape and placement (within 1 nm) of
    ``reference``."""
    n = len(reference.spacing_um)
    if tuple(volume.data.shape[-n:]) != tuple(reference.data.shape[-n:]) or not np.allclose(
            volume.world_affine_um(), reference.world_affine_um(), rtol=0, atol=1e-3):
        raise ValueError(f"{what} {tuple(volume.data.shape)} is not on the grid of {of} "
                         f"{tuple(reference.data.shape)} (the same shape and placement are "
                         "needed: resample it first)")


def t1_step(s: Specimen, method: str, flip_deg=None, tr_ms=None, ti_ms=None,
            noise_sigma: float | None = None, mask_from_labels: bool = False):
    """Images at several flip angles, TRs or TIs (``image``, point, z, y, x) -> ``t1`` (ms),
    ``m0`` and ``t1_sd`` (ms, the standard error)
    (:func:`~napari_mrmicro.core.t1_mapping.fit_t1`).

    The varied parameter comes from the acquisition the image carries (:data:`T1_SERIES`)
    unless given; a VFA's TR likewise; a ``b1`` volume (relative transmit field) scales
    the flip angles; the voxels fitted are the non-zero ``labels`` with
    ``mask_from_labels``, else those with signal in the brightest image.
    """
    from napari_mrmicro.core.t1_mapping import VARIED, fit_record, fit_t1

    image = _series_image(s, "t1", "a series of volumes (point, z, y, x)")
    acq = image.metadata.get("acquisition") or {}
    given = {"flip_deg": flip_deg, "tr_ms": tr_ms, "ti_ms": ti_ms}
    name = VARIED[method][0]
    if given[name] is None:
        given[name] = acq.get(T1_SERIES[method][0])
        if given[name] is None:
            raise ValueError(f"t1: the image states no {name} series; give {name}")
    if method == "vfa":
        tr = acq.get("tr_ms") if given["tr_ms"] is None else given["tr_ms"]
        if tr is None:
            raise ValueError("t1: the image states no TR; give tr_ms")
        if np.size(tr) != 1:
            raise ValueError(f"t1: a variable flip angle series has one TR, got {tr}")
        given["tr_ms"] = float(np.ravel(tr)[0])
    b1 = s.volumes.get("b1")
    if b1 is not None:
        _same_grid(b1, image, "t1: the B1 map", "the images")
    mask = np.asarray(s.need("labels", "t1").data) != 0 if mask_from_labels else None
    fit = fit_t1(np.asarray(image.data), method, **given, mask=mask, noise_sigma=noise_sigma,
                 b1=None if b1 is None else np.asarray(b1.data, dtype=np.float32))
    source = None if b1 is None else str(b1.name or b1.metadata.get("source") or "a B1 map")
    record = fit_record(fit, method, given[name], source,
                        given["tr_ms"] if method == "vfa" else None)
    for role, data, label, unit in (("t1", fit.t1_ms(), "T1", "ms"),
                                    ("t1_sd", fit.t1_sd_ms(), "T1 SD", "ms"),
                                    ("m0", fit.m0, "M0", image.metadata.get("value_unit"))):
        volume = _derived(image, data, name=f"{s.name} {label}")
        volume.metadata.update(value_unit=unit, relaxometry=record)
        s.volumes[role] = volume


#: The maps a diffusion fit gives: role (the fit's method, but for the colour map, drawn
#: in the image's world axes) -> (name, unit).
DIFFUSION_MAPS = {"md": ("MD", "µm²/ms"), "fa": ("FA", None), "ad": ("AD", "µm²/ms"),
                  "rd": ("RD", "µm²/ms"), "dec": ("FA colour", None)}


def diffusion_maps(fit, image: Volume, record: dict, prefix: str) -> dict:
    """The maps of a :class:`~napari_mrmicro.core.diffusion_tensor.DiffusionFit` as volumes
    on ``image``'s grid, by role (:data:`DIFFUSION_MAPS`; the ADC alone, as ``md``, for
    the ``"adc"`` model; ``dec`` is RGB, the principal direction coloured in the world
    axes of ``image``'s placement), with ``s0``; each carries ``record`` as
    ``metadata["diffusion"]``."""
    from napari_mrmicro.core import geometry

    acq = {k: v for k, v in (image.metadata.get("acquisition") or {}).items()
           if k != "b_matrix_s_per_mm2"}
    world = image.world_affine_um()[-4:, -4:]
    rotation = world[:3, :3] / geometry.voxel_sizes(world)[None, :]
    out = {}
    roles = DIFFUSION_MAPS if fit.model == "tensor" else {"md": ("ADC", "µm²/ms")}
    for role, (name, unit) in roles.items():
        if role == "dec":  # 8-bit RGB, as colour maps are stored and shown
            data = np.round(fit.direction_colors(rotation) * 255).astype(np.uint8)
        else:
            data = getattr(fit, role)()
        volume = _derived(image, data, name=f"{prefix} {name}")
        volume.metadata.update(acquisition=acq, diffusion=record)
        volume.metadata.pop("value_unit", None)
        if unit:
            volume.metadata["value_unit"] = unit
        if role == "dec":
            volume.metadata["rgb"] = True
        out[role] = volume
    out["s0"] = _derived(image, fit.s0, name=f"{prefix} S0")
    out["s0"].metadata.update(acquisition=acq, diffusion=record)
    return out


def dti_step(s: Specimen, model: str = "tensor", method: str = "wls",
             noise_sigma: float | None = None, mask_from_labels: bool = False):
    """Diffusion-weighted images (``image``, one per b-matrix, point, z, y, x) -> ``md``
    (µm²/ms), ``fa``, ``ad``, ``rd``, ``dec`` (FA-weighted direction colour, RGB) and
    ``s0``; the ADC alone as ``md`` for ``model = "adc"``
    (:func:`~napari_mrmicro.core.diffusion_tensor.fit_diffusion`).

    The b-matrices come from the image's acquisition (``b_matrix_s_per_mm2``: ParaVision's
    own, or an FSL table beside a NIfTI); the voxels fitted are the non-zero ``labels``
    with ``mask_from_labels``, else those with signal in the least-weighted images.
    """
    from napari_mrmicro.core.diffusion_tensor import fit_diffusion, fit_record

    image = _series_image(s, "dti", "diffusion-weighted volumes (point, z, y, x)")
    b = (image.metadata.get("acquisition") or {}).get("b_matrix_s_per_mm2")
    if b is None:
        raise ValueError("dti: the image states no b-matrices (a ParaVision 6/360 DTI scan "
                         "states them in its visu_pars; for a NIfTI put its FSL table beside "
                         "it as <name>.bval and <name>.bvec)")
    mask = np.asarray(s.need("labels", "dti").data) != 0 if mask_from_labels else None
    fit = fit_diffusion(np.asarray(image.data), b, model=model, method=method, mask=mask,
                        noise_sigma=noise_sigma)
    s.volumes.update(diffusion_maps(fit, image, fit_record(fit, method, b), s.name))


def smooth_step(s: Specimen, sigma_um: float):
    """Gaussian smoothing of ``image`` with σ in µm (chunked)."""
    from napari_mrmicro.core.chunked import gaussian_filter_chunked

    volume = s.need("image", "smooth")
    s.volumes["image"] = _derived(volume, gaussian_filter_chunked(
        volume.data, sigma_um, volume.spacing_um))


def threshold_step(s: Specimen, threshold: float | None = None):
    """``labels`` = 1 where ``image`` exceeds ``threshold`` (Otsu's when not given)."""
    from napari_mrmicro.core.chunked import threshold_chunked

    volume = s.need("image", "threshold")
    mask = threshold_chunked(volume.data, threshold)
    s.volumes["labels"] = _derived(volume, mask.astype(np.uint8), layer_type="labels",
                                   name=f"{s.name} mask")


def components_step(s: Specimen, connectivity: int = 1):
    """``labels`` = the connected parts of the ``labels`` mask, numbered 1..n (chunked)."""
    from napari_mrmicro.core.chunked import connected_components_chunked

    volume = s.need("labels", "components")
    labels, count = connected_components_chunked(volume.data, connectivity)
    s.volumes["labels"] = _derived(volume, labels, layer_type="labels",
                                   name=f"{s.name} parts")
    s.volumes["labels"].metadata["components"] = count


def measure_step(s: Specimen, table: str = "regions", chunked: bool | None = None,
                 intensity: bool | str = False):
    """Table of every label in ``labels`` (``<table>.csv``).

    In memory (:func:`~napari_mrmicro.core.morphometry.region_table`: volume, surface,
    shape, position, intensity statistics of ``image`` with ``intensity = true``, or of
    another role, e.g. ``intensity = "t2"`` after ``relax`` or ``"fa"`` after ``dti``:
    over its fitted voxels) or, for volumes larger than memory (``chunked = true``,
    default when the labels are lazy), chunk by chunk
    (:func:`~napari_mrmicro.core.chunked.region_volumes_chunked`: counts, volumes,
    centroids). Centroids are world positions (the volume's placement).
    """
    from napari_mrmicro.core.chunked import region_volumes_chunked
    from napari_mrmicro.core.morphometry import centroids_in_world, region_table
    from napari_mrmicro.core.relaxometry import valid_voxels

    s.output(f"{_plain_name(table, 'measure: table')}.csv", "measure: table")
    volume = s.need("labels", "measure")
    data = volume.data
    if chunked is None:
        chunked = hasattr(data, "compute") and not isinstance(data, np.ndarray) \
            and data.nbytes > 256 * 2**20
    world = volume.world_affine_um()  # centroids in the world
    if chunked:
        s.tables[table] = centroids_in_world(region_volumes_chunked(data, volume.spacing_um),
                                             volume.spacing_um, world)
        return
    image, valid = None, None
    if intensity is not False:
        role = "image" if intensity is True else intensity
        if role not in ROLES:
            raise ValueError(f"measure: intensity = {intensity!r}: true, or a volume role "
                             f"{ROLES}")
        source = s.need(role, "measure")
        image = np.asarray(source.data)
        valid = valid_voxels(image, source.metadata)  # a fitted map's fitted voxels
    s.tables[table] = region_table(np.asarray(data), volume.spacing_um, intensity=image,
                                   affine_um=world, intensity_valid=valid)


def save_step(s: Specimen, **files):
    """Write volumes by role: ``image = "magnitude.ome.zarr"``, ``labels = "labels.tif"``...

    File names are relative to the specimen's output folder; the suffix picks the format.
    """
    for role, name in files.items():
        if role not in ROLES:
            raise ValueError(f"save: {role!r} is not a volume role; use {ROLES}")
        path = s.output(name, f"save: {role}")
        s.written += save_volume(path, s.need(role, "save"))


STEPS = {"recon": recon_step, "echo": echo_step, "qsm": qsm_step, "qsm_field": qsm_field_step,
         "relax": relax_step, "t1": t1_step, "dti": dti_step,
         "smooth": smooth_step, "threshold": threshold_step,
         "components": components_step, "measure": measure_step, "save": save_step}


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class Pipeline:
    """Steps ``(name, parameters)`` in order, and where they were described."""

    steps: tuple
    name: str = "pipeline"
    source: str = "<text>"

    @property
    def reconstructs(self) -> bool:
        """Whether the pipeline starts from raw k-space (its first step is ``recon``)."""
        return bool(self.steps) and self.steps[0][0] == "recon"

    @property
    def digest(self) -> str:
        """SHA-256 of the steps and their parameters: a changed pipeline reruns specimens."""
        text = json.dumps([[n, p] for n, p in self.steps], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _check_step(source: str, index: int, entry) -> tuple:
    import inspect

    where = f"{source}: step {index + 1}"
    if not isinstance(entry, dict) or "run" not in entry:
        raise ValueError(f"{where}: each [[step]] needs run = one of {sorted(STEPS)}")
    params = dict(entry)
    name = params.pop("run")
    if name not in STEPS:
        raise ValueError(f"{where}: unknown step {name!r}; choose one of {sorted(STEPS)}")
    signature = inspect.signature(STEPS[name])
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    allowed = [p for p in signature.parameters if p != "s"]
    unknown = sorted(set(params) - set(allowed)) if not accepts_any else []
    if unknown:
        raise ValueError(f"{where} ({name}): unknown parameter(s) {unknown}; "
                         f"{name} takes {[p for p in allowed]}")
    required = [p.name for p in signature.parameters.values() if p.name != "s"
                and p.default is p.empty and p.kind != p.VAR_KEYWORD]
    missing = [p for p in required if p not in params]
    if missing:
        raise ValueError(f"{where} ({name}): missing parameter(s) {missing}")
    return name, params


def parse_pipeline(text: str, source: str = "<text>") -> Pipeline:
    """A pipeline from TOML text; errors name ``source``, the step and the parameter."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(doc) - {"name", "step"})
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}; a pipeline has "
                         "name = \"...\" and [[step]] tables")
    entries = doc.get("step")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: no [[step]] tables")
    steps = tuple(_check_step(source, i, e) for i, e in enumerate(entries))
    return Pipeline(steps, str(doc.get("name", Path(source).stem)), source)


def load_pipeline(path) -> Pipeline:
    """Read a pipeline TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such pipeline file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (TOML) file") from None
    return parse_pipeline(text, str(path))


def in_context(error: Exception, where: str) -> Exception:
    """``error`` again, its message prefixed by ``where`` and its type kept (a
    :class:`FormatError` keeps its file; an error that cannot be rebuilt becomes a
    RuntimeError naming its type), so a batch reports what went wrong and where."""
    from napari_mrmicro.io import FormatError

    if isinstance(error, FormatError):
        return FormatError(error.path, f"{error.problem} ({where})")
    try:
        again = type(error)(f"{where}: {error}")
    except Exception:  # noqa: BLE001 - a constructor with other arguments
        return RuntimeError(f"{where}: {type(error).__name__}: {error}")
    return again if str(again) == f"{where}: {error}" else \
        RuntimeError(f"{where}: {type(error).__name__}: {error}")


def run_steps(pipeline: Pipeline, input_path, out_dir, threads: int = -1,
              device: str = "cpu") -> Specimen:
    """Run every step on one input, writing into ``out_dir`` (which must exist); the
    reconstruction and QSM steps run on ``device`` (:mod:`~napari_mrmicro.core.backend`)."""
    import dask

    from napari_mrmicro.core.backend import use_device

    volume = load_volume(scan_input(input_path, pipeline.reconstructs))
    specimen = Specimen(specimen_name(input_path), Path(out_dir), threads=threads)
    specimen.volumes[role_of(volume)] = volume
    settings = {"scheduler": "threads"} if threads == -1 else \
        {"scheduler": "threads", "num_workers": threads}
    with dask.config.set(settings), use_device(device):
        for index, (name, params) in enumerate(pipeline.steps):
            try:
                STEPS[name](specimen, **params)
            except (ValueError, TypeError, MemoryError, OSError) as error:
                raise in_context(error, f"{input_path}: step {index + 1} ({name})") \
                    from error
    for table, columns in specimen.tables.items():
        path = specimen.out_dir.resolve() / f"{table}.csv"  # claimed by its measure step
        specimen.written.append(str(write_table(path, columns)))
    return specimen


@dataclass
class SpecimenResult:
    """How one specimen went: ``status`` is "done", "skipped" or "failed"."""

    name: str
    input: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    outputs: list = field(default_factory=list)


def is_done(out_root, name: str, pipeline: Pipeline) -> bool:
    """True when ``<out_root>/<name>/done.json`` records this pipeline's digest."""
    try:
        done = json.loads((Path(out_root) / name / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(done, dict) and done.get("pipeline_digest") == pipeline.digest


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary name, so it is complete or absent."""
    from napari_mrmicro.io._common import remove_stale_temporaries, temporary_name

    remove_stale_temporaries(path)
    prefix, suffix = temporary_name(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _previous_result(folder: Path) -> bool:
    """True for a folder an earlier run of a pipeline wrote (it holds ``done.json``)."""
    return (folder / DONE).is_file()


def _check_target(input_path, target: Path) -> None:
    """Refuse a specimen folder that would hold (and so replace) the input itself, or
    that exists and is not an earlier result."""
    source = Path(input_path).resolve()
    if source == target or target in source.parents:
        raise ValueError(f"the output folder {target} holds its input {input_path}; choose "
                         "another output folder")
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()
                                    or not _previous_result(target)):
        raise ValueError(f"{target} exists and is not a result of mrmicro (no {DONE}); "
                         "refusing to replace it: move it away or choose another output "
                         "folder")


def run_specimen(pipeline: Pipeline, input_path, out_root, threads: int = -1,
                 force: bool = False, device: str = "cpu") -> SpecimenResult:
    """Run the pipeline on one input into ``<out_root>/<name>/``, atomically; never raises
    for a failing specimen (the result says why and ``<name>.error.txt`` is written).
    ``device`` is where the reconstruction and QSM steps run ("gpu": CuPy on a CUDA
    device); it is recorded in ``done.json`` but not in the pipeline's digest, since both
    devices give the same result within float32 rounding.

    The specimen writes nothing outside its own folder but its error file: every output
    name is checked to lie inside it, and an existing ``<out_root>/<name>`` is replaced only
    when it is an earlier result (it holds ``done.json``). Raises ValueError only for an
    input path from which no specimen name can be derived.
    """
    from napari_mrmicro.io._common import atomic_output

    out_root = Path(out_root).resolve()
    name = specimen_name(input_path)
    target = out_root / name
    if target.parent != out_root:
        raise ValueError(f"{input_path}: specimen name {name!r} is not a folder name")
    if not force and is_done(out_root, name, pipeline):
        return SpecimenResult(name, str(input_path), "skipped")
    error_file = out_root / f"{name}.error.txt"
    start = time.perf_counter()
    try:
        _check_target(input_path, target)
        with atomic_output(target, directory=True, replaces=_previous_result) as tmp:
            specimen = run_steps(pipeline, input_path, tmp, threads, device)
            outputs = sorted(str(Path(p).relative_to(tmp.resolve())) for p in specimen.written)
            done = {"pipeline": pipeline.name, "pipeline_digest": pipeline.digest,
                    "steps": [[n, p] for n, p in pipeline.steps], "input": str(input_path),
                    "device": device,
                    "outputs": outputs, "seconds": round(time.perf_counter() - start, 3),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_text_atomic(tmp / DONE, json.dumps(done, indent=2, default=str))
    except Exception as error:  # noqa: BLE001 - one specimen's failure must not stop a batch
        message = str(error) if str(input_path) in str(error) else f"{input_path}: {error}"
        with contextlib.suppress(OSError):
            write_text_atomic(error_file, f"{message}\n\n{traceback.format_exc()}")
        return SpecimenResult(name, str(input_path), "failed", time.perf_counter() - start,
                              f"{type(error).__name__}: {message}")
    error_file.unlink(missing_ok=True)
    return SpecimenResult(name, str(input_path), "done", time.perf_counter() - start,
                          outputs=outputs)


def check_names(inputs) -> list[str]:
    """Specimen names of the inputs; raises ValueError when two inputs share one."""
    names = [specimen_name(p) for p in inputs]
    seen = {}
    for path, name in zip(inputs, names):
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} would both write specimen {name!r}; "
                             "rename one")
        seen[name] = path
    return names
