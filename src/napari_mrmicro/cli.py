"""``mrmicro``: the napari-mrmicro pipeline without a viewer.

Commands read a file, call the same core functions as the docks and write a file; ``run``
and ``batch`` apply a pipeline file (TOML, see :mod:`napari_mrmicro.pipeline`) to many
specimens, ``batch`` in parallel on dask.distributed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

EXIT_FAILED_SPECIMENS = 1
EXIT_BAD_INPUT = 2
EXIT_NO_MEMORY = 3
#: ``mrmicro convert`` loads an input whole only up to this size; larger ones stream.
CONVERT_LOAD_BYTES = 64 * 2**20

_EPILOG = ("Files: CIVM .headfile, ImageJ/OME .tif, NIfTI .nii(.gz), OME-Zarr .zarr folders, "
           "and raw k-space (Bruker fid/rawdata.job0, Agilent fid, ISMRMRD .h5, Tecmag .tnt) "
           "as input. Lengths in µm, times in ms, field in T. Exit status: 0 done, "
           "1 some specimens failed, 2 a file or parameter is wrong, 3 not enough memory.")
SPECIMENS = ("cochlea", "tooth", "tube", "microdiamonds")


def _numbers(kind=float, low: float | None = None, high: float | None = None,
             above: bool = False, many: bool = True):
    """An argparse type: one number (``many=False``) or a comma-separated list, each
    finite and within ``[low, high]`` (``(low, high]`` with ``above``): the physical
    range of the option, so nonsense is refused before any work starts."""
    def check(value):
        if not math.isfinite(value) or (low is not None and (value <= low if above
                                                             else value < low)) \
                or (high is not None and value > high):
            bound = "" if low is None else f"> {low:g}" if above else f">= {low:g}"
            bound += ("" if high is None else f"{' and ' if bound else ''}<= {high:g}")
            raise argparse.ArgumentTypeError(f"{value!r} is outside the range of this "
                                             f"option ({bound or 'finite'})")
        return value

    def parse(text: str):
        try:
            values = tuple(kind(v) for v in text.replace(";", ",").split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a comma-separated list of numbers' if many else 'a number'}"
            ) from None
        if not values or (len(values) > 1 and not many):
            raise argparse.ArgumentTypeError(f"{text!r}: give {'numbers' if many else 'one'}")
        values = tuple(check(v) for v in values)
        return values if many else values[0]
    return parse


def _one(kind=float, low=None, high=None, above=False):
    return _numbers(kind, low, high, above, many=False)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong command line in one line (exit status 2)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _report(volume_path, what: str) -> None:
    print(f"wrote {volume_path} ({what})")


# --------------------------------------------------------------------------- commands


def cmd_demo(args) -> int:
    from napari_mrmicro.demo import demo

    return demo(args.out_dir)


def cmd_simulate(args) -> int:
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.core.memory import check_memory
    from napari_mrmicro.core.simulate import Effects, simulation_memory_bytes
    from napari_mrmicro.io import Volume, kspace_codec
    from napari_mrmicro.pipeline import save_volume

    if not str(args.output).lower().endswith(".zarr"):
        raise ValueError(f"{args.output}: simulated k-space is saved as OME-Zarr; name the "
                         "output *.zarr (then `mrmicro recon` it)")
    matrix = args.matrix * 3 if len(args.matrix) == 1 else args.matrix
    fov = args.fov_mm * 3 if len(args.fov_mm) == 1 else args.fov_mm
    acq = Acquisition(matrix=matrix, fov_um=tuple(1000.0 * f for f in fov),
                      b0_tesla=args.b0_tesla, nucleus=args.nucleus, sequence=args.sequence,
                      te_ms=args.te_ms, tr_ms=args.tr_ms, flip_deg=args.flip_deg,
                      bandwidth_hz=args.bandwidth_khz * 1000.0, averages=args.averages,
                      temperature_k=args.temperature_k, readout_axis="zyx".index(args.readout))
    fine = tuple(2 * n for n in acq.matrix)  # the specimen at twice the resolution
    check_memory(simulation_memory_bytes(fine, acq, (2, 2, 2)),
                 f"simulate: a {fine} specimen for a {acq.matrix} matrix",
                 advice="a smaller --matrix")
    specimen = make_specimen(args.specimen, fine, tuple(v / 2 for v in acq.voxel_um),
                             seed=args.seed)
    kspace = simulate(specimen, acq, seed=args.seed,
                      effects=Effects(noise=not args.no_noise,
                                      gradient_nonlinearity=args.nonlinearity_percent / 100),
                      device=args.device)
    meta = {"format": "simulation", "source": f"mrmicro simulate {args.specimen}",
            "noise_sigma": float(kspace.truth["sigma"])}
    save_volume(args.output, kspace_codec.kspace_to_volume(kspace, meta,
                                                           name=f"{args.specimen} k-space"))
    _report(args.output, f"k-space (echo, z, y, x) {kspace.data.shape}, noise σ "
                         f"{kspace.truth['sigma']:.4g}")
    if args.truth:
        save_volume(args.truth, Volume(kspace.truth["labels"], acq.voxel_um,
                                       {"acquisition": acq.to_dict()}, layer_type="labels",
                                       name=f"{args.specimen} truth"))
        _report(args.truth, "true tissue labels")
    return 0


def _one_specimen(path: Path, out_dir: Path, steps: list, extra: dict | None = None,
                  volume=None):
    """Run pipeline steps in memory on the volume at ``path`` (or ``volume``, already read
    from it; plus ``extra`` volumes by role); return the Specimen."""
    from napari_mrmicro.pipeline import STEPS, Specimen, load_volume, role_of, specimen_name

    volume = load_volume(path) if volume is None else volume
    specimen = Specimen(specimen_name(path), out_dir)
    specimen.volumes[role_of(volume)] = volume
    specimen.volumes.update(extra or {})
    for name, params in steps:
        try:
            STEPS[name](specimen, **params)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from error
    return specimen


def cmd_recon(args) -> int:
    from napari_mrmicro.pipeline import save_volume, scan_input

    window = None if args.window == "none" else \
        {"name": "tukey", "alpha": args.tukey_alpha} if args.window == "tukey" else args.window
    partial = None
    if args.partial_fourier != "auto":
        partial = {"method": args.partial_fourier}
        if args.pf_axis is not None:
            partial["axis"] = "zyx".index(args.pf_axis) - 3
        if args.pf_fraction is not None:
            partial["fraction"] = args.pf_fraction
    from napari_mrmicro.core.backend import use_device

    source, volume = scan_input(args.input, reconstructs=True), None
    if args.repetition is not None:
        from napari_mrmicro.io import bruker_raw

        if not bruker_raw.can_read(source):
            raise ValueError(f"{args.input}: --repetition chooses among the NR repetitions "
                             "of ParaVision raw data (fid, rawdata.job0)")
        volume = bruker_raw.read(source, repetition=args.repetition)
    with use_device(args.device):
        specimen = _one_specimen(source, args.output.parent, [("recon", {
            "window": window, "zero_fill": args.zero_fill, "partial_fourier": partial,
            "cs": None if args.cs == "off" else args.cs, "lam": args.lam,
            "iterations": args.iterations, "acceleration": args.acceleration})],
            volume=volume)
    image, phase = specimen.volumes["image"], specimen.volumes.get("phase")
    if args.phase and phase is None:
        raise ValueError(f"{args.input}: the reconstruction has no phase (coils combined "
                         "by root-sum-of-squares)")
    if args.field_map is not None:
        image, phase = _unwarped(image, phase, args)
    save_volume(args.output, image)
    _report(args.output, f"magnitude {image.data.shape} at "
                         f"{' x '.join(f'{s:g}' for s in image.spacing_um)} µm"
                         + (" unwarped" if args.field_map is not None else ""))
    if args.phase:
        save_volume(args.phase, phase)
        _report(args.phase, "phase in radians")
    return 0


def _unwarped(image, phase, args) -> tuple:
    """``recon --field-map``: magnitude and phase unwarped together, as one complex image."""
    import dataclasses

    import numpy as np

    from napari_mrmicro.pipeline import load_volume, unwarp_epi

    signal = np.asarray(image.data) * (1 if phase is None else np.exp(
        1j * np.asarray(phase.data)))
    try:
        unwarped = unwarp_epi(dataclasses.replace(image, data=signal),
                              load_volume(args.field_map, lazy=False))
    except ValueError as error:
        raise ValueError(f"{args.input}, {args.field_map}: {error}") from error
    metadata = {"unwarped": unwarped.metadata["unwarped"]}
    image = dataclasses.replace(image, data=np.abs(unwarped.data).astype(np.float32),
                                metadata={**image.metadata, **metadata})
    if phase is not None:
        phase = dataclasses.replace(phase, data=np.angle(unwarped.data).astype(np.float32),
                                    metadata={**phase.metadata, **metadata})
    return image, phase


def cmd_qsm(args) -> int:
    from napari_mrmicro.pipeline import load_volume, save_volume

    extra = {"phase": load_volume(args.phase_input)}
    if args.mask is not None:
        extra["labels"] = load_volume(args.mask)
    params = {"method": args.method, "background": args.background, "unwrap": args.unwrap,
              "erode_um": args.erode_um, "lam": args.lam, "max_iter": args.max_iter,
              "tkd_threshold": args.tkd_threshold, "mask_from_labels": args.mask is not None,
              "te_ms": args.te_ms, "b0_tesla": args.b0_tesla, "b0_direction": args.b0_direction,
              "phase_unit": args.phase_unit, "boundary_passes": args.boundary_passes}
    from napari_mrmicro.core.backend import use_device

    with use_device(args.device):
        specimen = _one_specimen(args.input, args.output.parent, [("qsm", params)], extra)
    chi = specimen.volumes["chi"]
    save_volume(args.output, chi)
    _report(args.output, f"susceptibility in ppm, {args.method} inversion")
    return 0


def cmd_qsm_field(args) -> int:
    from napari_mrmicro.pipeline import load_volume, save_volume

    extra = {"labels": load_volume(args.mask)} if args.mask is not None else {}
    params = {"method": args.method, "background": args.background, "lam": args.lam,
              "max_iter": args.max_iter, "tkd_threshold": args.tkd_threshold,
              "mask_from_labels": args.mask is not None, "field_unit": args.unit,
              "larmor_mhz": args.larmor_mhz, "b0_direction": args.b0_direction,
              "boundary_passes": args.boundary_passes, "erode_um": args.erode_um}
    from napari_mrmicro.core.backend import use_device

    with use_device(args.device):
        specimen = _one_specimen(args.input, args.output.parent, [("qsm_field", params)],
                                 extra)
    chi = specimen.volumes["chi"]
    save_volume(args.output, chi)
    used = chi.metadata["qsm"]
    larmor = f", Larmor {used['larmor_mhz']:.4f} MHz" if used["larmor_mhz"] else ""
    _report(args.output, f"susceptibility in ppm from a field map in {used['field_unit']}"
                         f"{larmor}, {args.method} inversion")
    return 0


def cmd_relax(args) -> int:
    from napari_mrmicro.pipeline import load_volume, save_volume

    extra = {"labels": load_volume(args.mask)} if args.mask is not None else {}
    params = {"method": args.method, "te_ms": args.te_ms, "floor": args.floor,
              "noise_sigma": args.noise_sigma, "mask_from_labels": args.mask is not None,
              "skip_echoes": args.skip_echoes}
    specimen = _one_specimen(args.input, args.output.parent, [("relax", params)], extra)
    t2 = specimen.volumes["t2"]
    used = t2.metadata["relaxometry"]
    save_volume(args.output, t2)
    sigma = "" if used["noise_sigma"] is None else f", echoes above {args.floor:g}σ = " \
        f"{args.floor * used['noise_sigma']:.4g}"
    _report(args.output, f"{used['quantity']} in ms, {args.method} fit of "
                         f"{len(used['te_ms']) - args.skip_echoes} echoes{sigma}, "
                         f"{used['fitted_voxels']} voxels fitted")
    if args.s0 is not None:
        save_volume(args.s0, specimen.volumes["s0"])
        _report(args.s0, "S0, the signal extrapolated to TE 0")
    return 0


def cmd_t1(args) -> int:
    from napari_mrmicro.core.t1_mapping import VARIED, angle_advice
    from napari_mrmicro.pipeline import load_volume, save_volume, t1_series

    *inputs, output = args.paths
    if not inputs:
        raise ValueError("t1: give the input image(s) and the output path")
    name, unit = VARIED[args.method]
    timing = {"flip_deg": args.flip_deg, "tr_ms": args.tr_ms, "ti_ms": args.ti_ms}
    volumes = [load_volume(path) for path in inputs]
    series = volumes[0]
    if len(volumes) > 1:  # one file per value: given in the files' order, stacked sorted
        series = t1_series(volumes, args.method, inputs, timing[name])
        timing[name] = None  # the series states them now
    extra = {"labels": load_volume(args.mask)} if args.mask is not None else {}
    if args.b1 is not None:
        extra["b1"] = load_volume(args.b1)
    params = {"method": args.method, **timing, "noise_sigma": args.noise_sigma,
              "mask_from_labels": args.mask is not None}
    specimen = _one_specimen(inputs[0], output.parent, [("t1", params)], extra,
                             volume=series)
    t1 = specimen.volumes["t1"]
    used = t1.metadata["relaxometry"]
    save_volume(output, t1)
    values = ", ".join(f"{v:g}" for v in used[name])
    _report(output, f"T1 in ms, {args.method} fit of {len(used[name])} images ({name} "
                    f"{values} {unit}), {used['fitted_voxels']} voxels fitted")
    if args.method == "vfa" and used["fitted_voxels"]:
        print(f"  {angle_advice(t1.data, used['tr_ms'])}")
    for path, role, what in ((args.m0, "m0", "M0, the signal of full relaxation"),
                             (args.sd, "t1_sd", "the standard error of T1 in ms")):
        if path is not None:
            save_volume(path, specimen.volumes[role])
            _report(path, what)
    return 0


def cmd_dti(args) -> int:
    from napari_mrmicro.core.diffusion_tensor import floor_advice
    from napari_mrmicro.io import writer_for
    from napari_mrmicro.pipeline import load_volume, save_volume

    wanted = ((args.fa, "fa", "fractional anisotropy"), (args.ad, "ad", "axial diffusivity"),
              (args.rd, "rd", "radial diffusivity"),
              (args.colour, "dec", "FA-weighted principal direction, RGB (red R-L, green "
                                   "A-P, blue S-I)"), (args.s0, "s0", "S0, the signal at b 0"))
    if args.model == "adc" and any(path for path, role, _ in wanted if role != "s0"):
        raise ValueError("dti: FA, AD, RD and the colour map need the tensor model, not "
                         "'adc'")
    if args.colour is not None and writer_for(args.colour) != "tiff":
        raise ValueError(f"dti: {args.colour}: the colour map (RGB) is written as TIFF "
                         "(.tif)")
    if (args.bval is None) != (args.bvec is None):
        raise ValueError("dti: give --bval and --bvec together")
    volume = load_volume(args.input)
    if args.bval is not None:  # the table's vectors in the image's voxel axes, as FSL's
        from napari_mrmicro.core.geometry import to_xyz_affine
        from napari_mrmicro.io.fsl_gradients import read_gradient_table

        if volume.data.ndim != 4:
            raise ValueError(f"dti: {args.input} holds {tuple(volume.data.shape)}: a "
                             "gradient table needs a series (point, z, y, x)")
        acq = dict(volume.metadata.get("acquisition") or {})
        acq["b_matrix_s_per_mm2"] = read_gradient_table(
            args.bval, args.bvec, to_xyz_affine(volume.world_affine_um()[-4:, -4:]),
            volume.data.shape[0]).tolist()
        volume.metadata["acquisition"] = acq
    extra = {"labels": load_volume(args.mask)} if args.mask is not None else {}
    params = {"model": args.model, "method": args.method, "noise_sigma": args.noise_sigma,
              "mask_from_labels": args.mask is not None}
    specimen = _one_specimen(args.input, args.output.parent, [("dti", params)], extra,
                             volume=volume)
    md = specimen.volumes["md"]
    used = md.metadata["diffusion"]
    save_volume(args.output, md)
    shells = sorted({round(b) for b in used["b_values_s_per_mm2"]})
    negative = f", {used['negative_eigenvalues']} with a negative eigenvalue" \
        if used["negative_eigenvalues"] else ""
    _report(args.output, f"{'ADC' if args.model == 'adc' else 'mean diffusivity'} in µm²/ms"
                         f", {args.method} fit of {len(used['b_values_s_per_mm2'])} images "
                         f"(b {shells[0]}-{shells[-1]} s/mm²), {used['fitted_voxels']} "
                         f"voxels fitted{negative}")
    advice = floor_advice(used["floor_fraction"], args.method)
    if advice:
        print(f"  {advice}")
    for path, role, what in wanted:
        if path is not None:
            save_volume(path, specimen.volumes[role])
            _report(path, what)
    return 0


def cmd_unwarp(args) -> int:
    from napari_mrmicro.pipeline import load_volume, save_volume, unwarp_epi

    image, field = load_volume(args.input, lazy=False), load_volume(args.field_map, lazy=False)
    try:
        result = unwarp_epi(image, field, args.echo_spacing_ms, args.direction)
    except ValueError as error:
        raise ValueError(f"{args.input}, {args.field_map}: {error}") from error
    save_volume(args.output, result)
    used = result.metadata["unwarped"]
    _report(args.output, f"unwarped along {used['axis']} (shifts up to "
                         f"{used['max_shift_px']:.1f} px, the field map covers "
                         f"{used['covered_percent']:.0f} %)")
    return 0


def _whole_non_negative(data) -> bool:
    """True for an integer array without negative values (a label volume that does not
    say so), checked chunk by chunk for a lazy one."""
    import numpy as np

    if not np.issubdtype(data.dtype, np.integer):
        return False
    return bool(np.issubdtype(data.dtype, np.unsignedinteger) or data.min() >= 0)


def cmd_measure(args) -> int:
    from napari_mrmicro.pipeline import load_volume, write_table

    if args.threshold_otsu and args.intensity is not None:
        raise ValueError("--threshold-otsu measures the input image's own intensities; "
                         "leave out --intensity")
    extra = {"image": load_volume(args.intensity)} if args.intensity is not None else {}
    steps = [("measure", {"chunked": True if args.chunked else None,
                          "intensity": bool(extra) or args.threshold_otsu})]
    if args.threshold_otsu:  # the input is the image: label its parts first
        steps = [("echo", {"index": args.echo}), ("threshold", {}), ("components", {})] \
            + steps
    volume = load_volume(args.input)
    if not args.threshold_otsu and volume.layer_type != "labels":
        if not _whole_non_negative(volume.data):
            raise ValueError(f"{args.input}: an image, not a label volume: add "
                             "--threshold-otsu to measure its connected parts above Otsu's "
                             "threshold")
        volume.layer_type = "labels"  # a segmentation from another program (ITK-SNAP, Fiji)
        print(f"{args.input}: whole non-negative numbers "
              f"({_dtype_text(volume.data.dtype)}), read as a label volume")
    specimen = _one_specimen(args.input, args.output.parent, steps, extra, volume=volume)
    if args.threshold_otsu:
        print(f"labelled {specimen.volumes['labels'].metadata['components']} parts above "
              "Otsu's threshold")
    table = specimen.tables["regions"]
    write_table(args.output, table)
    _report(args.output, f"{len(table['label'])} regions, volumes in µm³ and mm³")
    return 0


def cmd_distortion_calibrate(args) -> int:
    import numpy as np

    from napari_mrmicro.core.distortion import (
        distortion_profile,
        plot_distortion,
        write_distortion_profile,
    )
    from napari_mrmicro.pipeline import load_volume

    volume = load_volume(args.tube)
    labels = np.asarray(volume.data)
    mask = labels == args.label if args.label is not None else labels > 0
    if not mask.any():
        what = "is labelled" if args.label is None else f"has label {args.label}"
        raise ValueError(f"{args.tube}: no voxel {what}")
    profile = distortion_profile(mask, volume.spacing_um, args.diameter_um, degree=args.degree)
    write_distortion_profile(profile, args.output)
    print(profile.report())
    _report(args.output, "distortion profile: areas ÷ (1 + e), lengths ÷ √(1 + e)")
    if args.plot is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), dpi=120, layout="tight")
        FigureCanvasAgg(figure)
        plot_distortion(figure.add_subplot(), profile)
        figure.savefig(args.plot, format="png")
        _report(args.plot, "area error against distance from the FOV centre")
    return 0


def cmd_distortion_correct(args) -> int:
    import numpy as np

    from napari_mrmicro.core.distortion import correct_sections_table, read_distortion_profile
    from napari_mrmicro.pipeline import write_table

    profile = read_distortion_profile(args.profile)
    try:
        rows = np.genfromtxt(args.sections, delimiter=",", names=True, dtype=float,
                             encoding="utf-8")
    except (OSError, ValueError) as error:
        raise ValueError(f"{args.sections}: cannot read the sections table ({error})") from None
    table = {name: np.atleast_1d(rows[name]) for name in rows.dtype.names or ()}
    corrected, length = correct_sections_table(table, profile)
    write_table(args.output, corrected)
    _report(args.output, f"{len(corrected['area_um2'])} sections corrected; centerline "
                         f"{length:.1f} µm after correction")
    return 0


def _points_csv(path: Path):
    """(N, 3) µm points from a CSV with a header (z_um, y_um, x_um or the first 3 columns)."""
    import numpy as np

    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        if len(lines) < 2:
            raise ValueError("no landmark rows below the header")
        rows = np.genfromtxt(lines, delimiter=",", names=True, dtype=float)
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as error:
        raise ValueError(f"{path}: cannot read landmarks ({error}); need a header and "
                         "three coordinate columns (z_um, y_um, x_um), one row per "
                         "landmark") from None
    names = rows.dtype.names or ()
    wanted = [n for n in ("z_um", "y_um", "x_um") if n in names] or list(names[:3])
    if len(wanted) != 3 or rows.size == 0:
        raise ValueError(f"{path}: need a header and three coordinate columns (z_um, y_um, "
                         "x_um) with one row per landmark")
    points = np.column_stack([np.atleast_1d(rows[n]) for n in wanted])
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: landmarks must be numbers")
    return points


def _frame_to_world(volume):
    """A volume's own frame (µm from voxel 0 along its axes: index × spacing) → world µm,
    from its file's placement."""
    import numpy as np

    return volume.world_affine_um() @ np.diag([1 / s for s in volume.spacing_um] + [1.0])


def cmd_register(args) -> int:
    import numpy as np

    from napari_mrmicro.core.register import (
        affine_scale,
        landmark_affine,
        mutual_information_affine,
        reslice,
        section_plane_affine,
        section_scale,
    )
    from napari_mrmicro.io import Volume
    from napari_mrmicro.io.transform_files import write_itk_affine, write_transform_json
    from napari_mrmicro.pipeline import load_volume, save_volume

    fixed, moving = load_volume(args.fixed, lazy=False), load_volume(args.moving, lazy=False)
    section = args.method == "section"
    for name, volume, ndim in (("fixed", fixed, 3), ("moving", moving, 2 if section else 3)):
        data = np.asarray(volume.data)
        if ndim == 2 and data.ndim == 3 and data.shape[0] == 1:
            data = data[0]  # a section stored as one slice
        if data.ndim != ndim:
            raise ValueError(f"{getattr(args, name)}: need a {ndim}-D "
                             f"({'y, x' if ndim == 2 else 'z, y, x'}) image, got shape "
                             f"{np.shape(volume.data)}")
    if not section and (args.reach_um or args.mirror):
        raise ValueError("--reach-um and --mirror apply to --method section only")
    fixed_data = np.asarray(fixed.data, np.float32)
    if args.method == "landmarks":
        if args.fixed_points is None or args.moving_points is None:
            raise ValueError("--method landmarks needs --fixed-points and --moving-points "
                             "(CSV files, one row per landmark in µm)")
        fit = landmark_affine(_points_csv(args.moving_points), _points_csv(args.fixed_points),
                              kind=args.kind)
        affine, detail = fit[0], {"kind": args.kind, "rms_um": float(fit[1])}
        print(f"{args.kind} fit to landmarks: RMS residual {fit[1]:.2f} µm")
    elif section:
        image = np.asarray(moving.data, np.float32).reshape(np.shape(moving.data)[-2:])
        spacing = tuple(moving.spacing_um)[-2:]
        fit = section_plane_affine(image, spacing, fixed_data, fixed.spacing_um,
                                   reach_um=args.reach_um, mirror=args.mirror,
                                   scale=args.scale)
        affine, scale = fit.affine, section_scale(fit.affine)
        detail = {"kind": "section_plane", "mutual_information": float(fit.mutual_information),
                  "scale": scale, "mirrored": bool(np.linalg.det(affine[:3, :3]) < 0)}
        print(f"section plane search: MI {fit.mutual_information:.3f} nats after "
              f"{fit.evaluations} evaluations; in-plane scale {scale:.4f}"
              + ("; mirrored" if detail["mirrored"] else ""))
    else:  # from where the two files put their volumes (two scans of one session)
        start = np.linalg.inv(_frame_to_world(fixed)) @ _frame_to_world(moving)
        fit = mutual_information_affine(np.asarray(moving.data, np.float32),
                                        moving.spacing_um, fixed_data, fixed.spacing_um,
                                        start, scale=args.scale)
        affine, scale = fit.affine, affine_scale(fit.affine)
        kind = "similarity" if args.scale else "rigid"
        detail = {"kind": kind, "mutual_information": float(fit.mutual_information),
                  "scale": scale}
        print(f"{kind} mutual-information fit: MI {fit.mutual_information:.3f} nats after "
              f"{fit.evaluations} evaluations; scale {scale:.4f}")
    if not section:  # the same transform between the two files' world coordinates
        detail["world_affine_um"] = (_frame_to_world(fixed) @ affine
                                     @ np.linalg.inv(_frame_to_world(moving)))
    output = str(args.output).lower()
    if output.endswith((".tfm", ".txt")):
        write_itk_affine(args.output, affine)
    else:
        write_transform_json(args.output, affine, Path(args.moving).name, Path(args.fixed).name,
                             **detail)
    _report(args.output, "section (0, y, x) µm → fixed µm, (z, y, x)" if section
            else "moving → fixed affine, µm, (z, y, x)")
    if args.resliced is None:
        return 0
    if section:  # the fixed volume on the section's plane and pixel grid
        data = reslice(fixed_data, fixed.spacing_um, affine, image.shape, spacing)
        save_volume(args.resliced, Volume(data, spacing, {
            "source": str(args.fixed), "resliced_on": str(args.moving)}))
        _report(args.resliced, "fixed volume resampled on the section's plane")
        return 0
    # the moving volume on the fixed grid, placed where the fixed one is
    data = reslice(np.asarray(moving.data, np.float32), moving.spacing_um,
                   np.linalg.inv(affine), np.shape(fixed.data), fixed.spacing_um)
    save_volume(args.resliced, Volume(data, fixed.spacing_um,
                                      {"source": str(args.moving), "registered_to":
                                       str(args.fixed)}, origin_um=fixed.origin_um,
                                      affine_um=fixed.affine_um))
    _report(args.resliced, "moving volume resampled on the fixed grid")
    return 0


#: Metadata ``mrmicro info --json`` leaves out: raw headers and array-valued entries.
_INFO_SKIP = ("header", "source_header", "pyramid", "kspace", "sampled", "trajectory",
              "density")


def _direction_text(direction) -> str:
    letter, degrees = direction
    return letter if degrees < 0.05 else f"{letter} ({degrees:.1f}° off)"


def _dtype_text(dtype) -> str:
    """A data type as a person reads it: ``int16``, and ``int16, big-endian`` for data in
    the other byte order than this machine's (numpy marks only those ``<`` or ``>``)."""
    import numpy as np

    dtype = np.dtype(dtype)
    order = {">": "big-endian", "<": "little-endian"}.get(dtype.byteorder)
    return f"{dtype.name}, {order}" if order else dtype.name


def _describe(volume, name: str) -> list[str]:
    """Lines saying what a volume is, in physical units, as a microscopist reads a header
    (``name`` when the volume has none)."""
    import numpy as np

    from napari_mrmicro.core.geometry import axis_directions
    from napari_mrmicro.io._common import PROCESSING_KEYS, spacing_known
    from napari_mrmicro.io import kspace_codec

    meta = volume.metadata
    shape = tuple(volume.data.shape)
    labels = ", ".join(volume.axis_labels)
    size = math.prod(shape) * np.dtype(volume.data.dtype).itemsize / 2**20
    kind = "k-space" if kspace_codec.is_kspace(meta) else volume.layer_type
    lines = [f"{volume.name or name}: {kind}, {_dtype_text(volume.data.dtype)} ({labels}) "
             f"{' × '.join(map(str, shape))}, {size:.1f} MiB"]
    spacing = volume.spacing_um
    fov = [s * n for s, n in zip(spacing, shape[-len(spacing):])]
    stated = "stated by the file" if spacing_known(meta) else "NOT stated by the file: assumed"
    lines.append(f"  voxel {' × '.join(f'{s:g}' for s in spacing)} µm ({stated}); field of "
                 f"view {' × '.join(f'{f:g}' for f in fov)} µm")
    placed = volume.world_affine_um()
    n = placed.shape[0] - 1
    first = ", ".join(f"{a} {v:.1f}" for a, v in zip("SAR"[3 - n:], placed[:n, n]))
    where = "placed by the file" if volume.placed() else "not placed: voxel 0 at the origin"
    lines.append(f"  world (µm, RAS+): first voxel at ({first}); array axes run "
                 f"{', '.join(_direction_text(d) for d in axis_directions(placed))}; "
                 f"{where}")
    unit = meta.get("value_unit") or "a.u."
    lines.append(f"  values: {unit}" + (f"; channels {', '.join(str(c.get('name', '?')) for c in meta['channels'])}"
                                        if meta.get("channels") else ""))
    acq = meta.get("acquisition") or {}
    if acq.get("b0_tesla"):
        te = ", ".join(f"{t:g}" for t in acq.get("te_ms") or ())
        facts = [f"{acq['b0_tesla']:.4g} T {acq.get('nucleus', '1H')}",
                 acq.get("sequence", "?"), f"TE {te} ms" if te else "",
                 f"TR {acq['tr_ms']:g} ms" if acq.get("tr_ms") else "",
                 f"flip {acq['flip_deg']:g}°" if acq.get("flip_deg") else "",
                 f"bandwidth {acq['bandwidth_hz'] / 1e3:g} kHz" if acq.get("bandwidth_hz")
                 else "", f"{acq['averages']} average{'s' if acq['averages'] != 1 else ''}"
                 if acq.get("averages") else ""]
        lines.append("  acquisition: " + ", ".join(f for f in facts if f))
    if acq.get("b_matrix_s_per_mm2") is not None:
        from napari_mrmicro.core.diffusion_tensor import scheme_summary

        lines.append(f"  diffusion: {scheme_summary(acq['b_matrix_s_per_mm2'])} (each "
                     "image's b-matrix stated)")
    if kind == "k-space":
        facts = [f"{100 * meta['sampled_fraction']:.1f} % of the grid acquired"
                 if meta.get("sampled_fraction") is not None else "",
                 f"echo at {100 * meta['echo_position']:.1f} % of the readout"
                 if meta.get("echo_position") is not None else "",
                 "non-Cartesian (trajectory)" if meta.get("trajectory") is not None else "",
                 f"{meta['receivers']} receivers" if (meta.get("receivers") or 1) > 1 else "",
                 f"repetition {meta['repetition'] + 1} of {meta['repetitions']}"
                 if (meta.get("repetitions") or 1) > 1 else ""]
        lines.append("  k-space: " + (", ".join(f for f in facts if f) or "fully sampled"))
    done = {k: meta[k] for k in PROCESSING_KEYS if meta.get(k)}
    if done:
        lines.append("  computed: " + "; ".join(f"{k} {v}" for k, v in done.items()))
    return lines


def cmd_info(args) -> int:
    import json

    import numpy as np

    from napari_mrmicro.io import read_volumes, reader_for

    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    volumes = read_volumes(args.input, lazy=True)
    if args.json:
        records = [{"name": v.name, "format": reader_for(args.input),
                    "shape": list(v.data.shape), "dtype": str(v.data.dtype),
                    "axis_labels": list(v.axis_labels), "layer_type": v.layer_type,
                    "spacing_um": list(v.spacing_um),
                    "origin_um": None if v.origin_um is None else list(v.origin_um),
                    "affine_um": None if v.affine_um is None
                    else np.asarray(v.affine_um).tolist(),
                    "metadata": {k: x for k, x in v.metadata.items() if k not in _INFO_SKIP}}
                   for v in volumes]
        print(json.dumps(records, indent=2, default=str))
        return 0
    print(f"{args.input}: {reader_for(args.input)}, {len(volumes)} volume"
          f"{'s' if len(volumes) > 1 else ''}")
    for volume in volumes:
        print("\n".join(_describe(volume, args.input.name)))
    return 0


def cmd_convert(args) -> int:
    import numpy as np

    from napari_mrmicro.io._common import spacing_known
    from napari_mrmicro.pipeline import load_volume, save_volume

    # Opened lazily (memory-mapped or dask) and loaded whole only when small: the writers
    # stream a lazy volume slab by slab.
    volume = load_volume(args.input, lazy=True)
    if not args.lazy and volume.data.nbytes <= CONVERT_LOAD_BYTES:
        volume.data = np.asarray(volume.data)
    options = {}
    if str(args.output).lower().endswith(".zarr"):
        options = {"chunks": args.chunks, "levels": args.levels}
    if args.labels:
        volume.layer_type = "labels"
    save_volume(args.output, volume, **options)
    assumed = "" if spacing_known(volume.metadata) else \
        " (not stated by the file: assumed, and written as such)"
    _report(args.output, f"{_dtype_text(volume.data.dtype)} {tuple(volume.data.shape)} at "
                         f"{' x '.join(f'{s:g}' for s in volume.spacing_um)} µm{assumed}")
    return 0


def _print_results(results) -> int:
    failed = [r for r in results if r.status == "failed"]
    for r in results:
        detail = f" in {r.seconds:.1f} s" if r.status == "done" else ""
        print(f"  [{r.status}] {r.name}{detail}" + (f": {r.error}" if r.error else ""))
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"{done} done, {skipped} skipped (already done), {len(failed)} failed")
    return EXIT_FAILED_SPECIMENS if failed else 0


def cmd_run(args) -> int:
    from napari_mrmicro.pipeline import (check_names, load_pipeline, run_specimen,
                                         specimen_inputs)

    pipeline = load_pipeline(args.pipeline)
    inputs = specimen_inputs(args.inputs, pipeline)
    check_names(inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Pipeline {pipeline.name!r}: {len(pipeline.steps)} steps, "
          f"{len(inputs)} specimen(s) -> {args.out}")
    results = []
    for path in inputs:
        results.append(run_specimen(pipeline, path, args.out, force=args.force,
                                    device=args.device))
        print(f"  {results[-1].name}: {results[-1].status}", flush=True)
    return _print_results(results)


def cmd_batch(args) -> int:
    from napari_mrmicro.batch import run_batch
    from napari_mrmicro.pipeline import load_pipeline, specimen_inputs

    pipeline = load_pipeline(args.pipeline)
    inputs = specimen_inputs(args.inputs, pipeline)
    where = args.scheduler or f"a local cluster of {args.workers or 'auto'} worker(s)"
    print(f"Pipeline {pipeline.name!r}: {len(inputs)} specimen(s) on {where} "
          f"-> {args.out}", flush=True)
    results = run_batch(pipeline, inputs, args.out, scheduler=args.scheduler,
                        n_workers=args.workers, force=args.force, device=args.device)
    return _print_results(results)


# --------------------------------------------------------------------------- parser


def _device(name: str) -> str:
    from napari_mrmicro.core.backend import check_device
    try:
        return check_device(name)
    except (ValueError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _device_name(name: str) -> str:
    from napari_mrmicro.core.backend import DEVICES
    if name not in DEVICES:
        raise argparse.ArgumentTypeError(f"device must be one of {DEVICES}, got {name!r}")
    return name


def _device_option(p, on_gpu: str, here: bool = True) -> None:
    """``--device``; checked on this machine when ``here`` (else only its name: a batch's
    workers check it where they run)."""
    p.add_argument("--device", type=_device if here else _device_name, default="cpu",
                   metavar="{cpu,gpu}", help="cpu (all cores) or gpu (CUDA through CuPy: pip "
                                             f"install 'napari-mrmicro[gpu]') for {on_gpu}")


def _qsm_method_options(p) -> None:
    """The inversion, background removal and boundary passes of ``qsm`` and ``qsm-field``."""
    p.add_argument("--method", choices=("tkd", "tikhonov", "tv", "medi"), default="tv",
                   help="dipole inversion (default tv)")
    p.add_argument("--background", choices=("lbv", "vsharp", "pdf"), default="lbv",
                   help="background field removal (default lbv, for specimens in fluid or "
                        "Fomblin; pdf for an in vivo head with air around it)")
    p.add_argument("--boundary-passes", type=_one(int, 0, 1e3), default=None,
                   help="at most this many passes that put back the local field the "
                        "background removal took (default 20; they stop by themselves "
                        "near their fixed point); 0: the removal alone, as published")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mrmicro", epilog=_EPILOG,
        description="MR microscopy without a viewer (napari-mrmicro): simulate, reconstruct, "
                    "measure and convert volumes in physical units, one file or a batch.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    def command(name, help_, func):
        p = commands.add_parser(name, help=help_, description=help_, epilog=_EPILOG)
        p.set_defaults(func=func)
        return p

    p = command("demo", "run the whole pipeline on embedded specimens and write the results",
                cmd_demo)
    p.add_argument("out_dir", nargs="?", default="mrmicro-demo", type=Path,
                   help="folder for the results (default: ./mrmicro-demo)")

    p = command("simulate", "simulate an MR microscopy scan of a digital specimen; writes "
                            "its k-space (OME-Zarr) for `mrmicro recon`", cmd_simulate)
    p.add_argument("specimen", choices=SPECIMENS, help="digital specimen")
    p.add_argument("output", type=Path, help="k-space output, a *.zarr folder")
    p.add_argument("--matrix", type=_numbers(int, 1, 4096), default=(64,), metavar="N[,N,N]",
                   help="voxels along z,y,x (default 64 each)")
    p.add_argument("--fov-mm", type=_numbers(float, 0.01, 1000.0), default=(6.4,), metavar="F[,F,F]",
                   help="field of view along z,y,x in mm (default 6.4)")
    p.add_argument("--b0-tesla", type=_one(float, 0.0, 50.0, above=True), default=9.4,
                   help="main field (default 9.4 T)")
    p.add_argument("--nucleus", choices=("1H", "13C"), default="1H")
    p.add_argument("--sequence", choices=("spin_echo", "gradient_echo"),
                   default="gradient_echo")
    p.add_argument("--te-ms", type=_numbers(float, 0.0, 1e4, above=True), default=(3.0, 6.0), metavar="TE[,TE...]",
                   help="echo times in ms, one per echo (default 3,6)")
    p.add_argument("--tr-ms", type=_one(float, 0.0, 1e6, above=True), default=40.0, help="repetition time (default 40 ms)")
    p.add_argument("--flip-deg", type=_one(float, 0.0, 180.0, above=True), default=15.0, help="flip angle (default 15°)")
    p.add_argument("--bandwidth-khz", type=_one(float, 0.0, 1e4, above=True), default=50.0,
                   help="full receiver bandwidth (default 50 kHz)")
    p.add_argument("--averages", type=_one(int, 1, 1e6), default=1)
    p.add_argument("--temperature-k", type=_one(float, 0.0, 1000.0, above=True), default=293.0, help="sample temperature")
    p.add_argument("--readout", choices=("z", "y", "x"), default="x", help="readout axis")
    p.add_argument("--nonlinearity-percent", type=_one(float, -50.0, 50.0), default=0.0,
                   help="gradient non-linearity at half the largest FOV (%%)")
    p.add_argument("--no-noise", action="store_true", help="simulate without noise")
    p.add_argument("--seed", type=_one(int, 0), default=0, help="seed of specimen and noise")
    p.add_argument("--truth", type=Path, help="also write the true tissue labels here")
    _device_option(p, "the susceptibility field and the k-space Fourier transforms; the "
                      "specimen, encoding, relaxation and noise run on the CPU")

    p = command("recon", "reconstruct k-space into magnitude (and phase) images", cmd_recon)
    p.add_argument("input", type=Path, help="k-space: raw scanner data (a ParaVision scan "
                                            "folder reads its fid/rawdata.job0) or a *.zarr "
                                            "from `mrmicro simulate`")
    p.add_argument("output", type=Path, help="magnitude image (.zarr, .tif, .nii, .headfile)")
    p.add_argument("--phase", type=Path, help="also write the phase (radians) here")
    p.add_argument("--repetition", type=_one(int, 0), help="which of a ParaVision scan's NR "
                                                           "repetitions (0 = first)")
    p.add_argument("--field-map", type=Path, help="EPI: undo the off-resonance shift along "
                                                  "the phase encode with this field map "
                                                  "(Hz or ppm; see `mrmicro unwarp`)")
    p.add_argument("--window", choices=("none", "hann", "hamming", "tukey"), default="none",
                   help="k-space apodization (default none)")
    p.add_argument("--tukey-alpha", type=_one(float, 0.0, 1.0), default=0.5)
    p.add_argument("--zero-fill", type=_one(float, 1.0, 64.0), default=1.0,
                   help="zero-fill factor >= 1 (voxels shrink by it; default 1)")
    p.add_argument("--partial-fourier", choices=("auto", "homodyne", "pocs"), default="auto",
                   help="partial-Fourier completion (auto: detected from the data)")
    p.add_argument("--pf-axis", choices=("z", "y", "x"),
                   help="the partly acquired axis (default: the one the data show partly "
                        "acquired, e.g. x for a ParaVision partial echo)")
    p.add_argument("--pf-fraction", type=_one(float, 0.5, 1.0, above=True), help="acquired fraction (default: detected)")
    p.add_argument("--cs", choices=("off", "l1_wavelet", "tv"), default="off",
                   help="compressed sensing for undersampled scans (default off)")
    p.add_argument("--acceleration", type=_one(float, 1.0, 64.0), default=1.0,
                   help="retrospective undersampling R of fully sampled data, for --cs")
    p.add_argument("--lam", type=_one(float, 0.0, above=True), default=0.005, help="CS regularisation (rel. to max)")
    p.add_argument("--iterations", type=_one(int, 1, 1e5), default=50, help="CS iterations")
    _device_option(p, "the reconstruction (non-Cartesian data by cuFINUFFT) and compressed "
                      "sensing; partial Fourier and coil combination run on the CPU")

    p = command("qsm", "quantitative susceptibility mapping: multi-echo magnitude and phase "
                       "-> susceptibility (ppm)", cmd_qsm)
    p.add_argument("input", type=Path, help="magnitude (echo, z, y, x), e.g. from `mrmicro "
                                            "recon`")
    p.add_argument("phase_input", type=Path, metavar="phase",
                   help="wrapped phase (in radians unless --phase-unit or the file says)")
    p.add_argument("output", type=Path, help="susceptibility map (ppm)")
    _qsm_method_options(p)
    p.add_argument("--unwrap", choices=("region_growing", "laplacian"),
                   default="region_growing", help="phase unwrapping")
    p.add_argument("--mask", type=Path, help="specimen mask or labels (default: the voxels "
                                             "with signal, signal voids out)")
    p.add_argument("--erode-um", type=_one(float, 0.0), default=0.0, help="erode the automatic mask (µm)")
    p.add_argument("--lam", type=_one(float, 0.0, above=True), help="regularisation weight (default: the method's)")
    p.add_argument("--max-iter", type=_one(int, 1, 1e5), default=250)
    p.add_argument("--tkd-threshold", type=_one(float, 0.0, 2 / 3, above=True), default=0.15,
                   help="TKD truncation of the dipole kernel, 0 < t <= 2/3 (default 0.15)")
    p.add_argument("--te-ms", type=_numbers(float, 0.0, 1e4, above=True),
                   help="echo times in ms (default: from the file)")
    p.add_argument("--b0-tesla", type=_one(float, 0.0, 50.0, above=True),
                   help="main field (default: from the file)")
    p.add_argument("--b0-direction", type=_numbers(float, -1.0, 1.0), metavar="Z,Y,X",
                   help="B0 unit vector in (z, y, x) (default: from the grid's rotation in "
                        "the world, else the file's, else 1,0,0)")
    p.add_argument("--phase-unit", choices=("rad", "deg"),
                   help="unit of the phase (default: as the phase file states, else rad)")
    _device_option(p, "Laplacian unwrapping, background removal (LBV, V-SHARP, PDF), the "
                      "dipole field and every inversion; the echo fit, the mask and "
                      "region-growing unwrapping run on the CPU")

    p = command("relax", "relaxometry: multi-echo magnitude -> T2 (spin echoes) or T2* "
                         "(gradient echoes) map in ms", cmd_relax)
    p.add_argument("input", type=Path, help="magnitude (echo, z, y, x), e.g. from `mrmicro "
                                            "recon`")
    p.add_argument("output", type=Path, help="T2 or T2* map (ms; 0 where not fitted)")
    p.add_argument("--s0", type=Path, help="also write S0 (the signal at TE 0) here")
    p.add_argument("--method", choices=("nonlinear", "loglinear", "arlo"),
                   default="nonlinear", help="least squares on the signal (default), on its "
                   "logarithm, or ARLO (equally spaced echoes)")
    p.add_argument("--te-ms", type=_numbers(float, 0.0, 1e5),
                   help="echo times in ms (default: from the file)")
    p.add_argument("--floor", type=_one(float, 0.0, 100.0), default=3.0,
                   help="use each voxel's echoes while above this many σ of the noise "
                        "(default 3: the Rician floor would make T2 read long); 0: all")
    p.add_argument("--noise-sigma", type=_one(float, 0.0, above=True),
                   help="noise σ per channel (default: measured in the background)")
    p.add_argument("--skip-echoes", type=_one(int, 0, 1000), default=0,
                   help="leave out this many first echoes (1 for a multi-echo spin echo, "
                        "whose first echo lies off the decay of the later ones)")
    p.add_argument("--mask", type=Path, help="fit only inside this mask or labels "
                                             "(default: the voxels with signal)")

    p = command("t1", "T1 mapping: images at several flip angles (VFA), TRs (saturation "
                      "recovery) or inversion times -> T1 map in ms", cmd_t1)
    p.add_argument("method", choices=("vfa", "saturation_recovery", "inversion_recovery"),
                   help="vfa: spoiled gradient echoes at several flip angles and one TR "
                        "(DESPOT1); saturation_recovery: several TRs (RARE-VTR); "
                        "inversion_recovery: several TIs (three-parameter fit)")
    p.add_argument("paths", type=Path, nargs="+", metavar="INPUT... OUTPUT",
                   help="one series (point, z, y, x), e.g. a ParaVision RARE-VTR or "
                        "inversion-recovery scan, or one file per flip angle, TR or TI on "
                        "one grid; then the T1 map to write (ms; 0 where not measured)")
    p.add_argument("--flip-deg", type=_numbers(float, 0.0, 180.0),
                   help="vfa: the flip angles in degrees (default: each file's)")
    p.add_argument("--tr-ms", type=_numbers(float, 0.0, 1e7),
                   help="vfa: the one TR; saturation_recovery: each image's TR (ms; "
                        "default: from the files)")
    p.add_argument("--ti-ms", type=_numbers(float, 0.0, 1e7),
                   help="inversion_recovery: the inversion times in ms (default: from the "
                        "files)")
    p.add_argument("--b1", type=Path, help="vfa: a relative B1 map (acting over nominal flip "
                                           "angle) on the images' grid")
    p.add_argument("--m0", type=Path, help="also write M0 here")
    p.add_argument("--sd", type=Path, help="also write the standard error of T1 (ms) here")
    p.add_argument("--noise-sigma", type=_one(float, 0.0, above=True),
                   help="noise σ per channel (default: measured in the background)")
    p.add_argument("--mask", type=Path, help="fit only inside this mask or labels "
                                             "(default: the voxels with signal)")

    p = command("dti", "diffusion tensor (or ADC) from diffusion-weighted images -> mean "
                       "diffusivity in µm²/ms, and FA, AD, RD, direction colour", cmd_dti)
    p.add_argument("input", type=Path,
                   help="diffusion-weighted series (point, z, y, x) stating its b-matrices: a "
                        "ParaVision DTI scan, or a NIfTI with <name>.bval/<name>.bvec beside "
                        "it")
    p.add_argument("output", type=Path, help="mean diffusivity (the ADC for --model adc), "
                                             "µm²/ms; 0 where not fitted")
    p.add_argument("--model", choices=("tensor", "adc"), default="tensor",
                   help="tensor (6 or more directions; default) or one ADC (e.g. several "
                        "b-values along one direction)")
    p.add_argument("--method", choices=("ols", "wls", "nlls", "rician"), default="wls",
                   help="ols: least squares on log S; wls: weighted by the predicted signal "
                        "(default); nlls: on the signal itself; rician: on the squared "
                        "magnitude against S² + 2σ², unbiased where points reach the noise "
                        "floor (free fluid at high b)")
    p.add_argument("--fa", type=Path, help="also write the fractional anisotropy here")
    p.add_argument("--ad", type=Path, help="also write the axial diffusivity here")
    p.add_argument("--rd", type=Path, help="also write the radial diffusivity here")
    p.add_argument("--colour", type=Path, help="also write the FA-weighted direction colour "
                                               "map here (8-bit RGB; a .tif)")
    p.add_argument("--s0", type=Path, help="also write S0 here")
    p.add_argument("--bval", type=Path, help="an FSL b-value file for the series (with "
                                             "--bvec; default: what the input states)")
    p.add_argument("--bvec", type=Path, help="an FSL vector file: directions in the image's "
                                             "voxel axes, FSL's radiological convention")
    p.add_argument("--noise-sigma", type=_one(float, 0.0, above=True),
                   help="noise σ per channel, for the default mask (default: measured in "
                        "the background)")
    p.add_argument("--mask", type=Path, help="fit only inside this mask or labels "
                                             "(default: the voxels with signal)")

    p = command("unwarp", "undo EPI distortion along the phase encode with a field map "
                          "(Jezzard & Balaban 1995)", cmd_unwarp)
    p.add_argument("input", type=Path, help="EPI magnitude image (a ParaVision 2dseq or "
                                            "`mrmicro recon` output)")
    p.add_argument("field_map", type=Path, help="field map in Hz (or ppm), placed in world "
                                                "space or on the image's grid")
    p.add_argument("output", type=Path, help="unwarped image")
    p.add_argument("--echo-spacing-ms", type=_one(float, 0.0, above=True),
                   help="time between phase-encode lines (default: the image's)")
    p.add_argument("--direction", type=int, choices=(1, -1),
                   help="+1 if the train runs through increasing phase-encode steps "
                        "(default: the image's)")

    p = command("qsm-field", "quantitative susceptibility mapping from a scanner's field "
                             "map (Hz or ppm) -> susceptibility (ppm)", cmd_qsm_field)
    p.add_argument("input", type=Path, help="field map (z, y, x), e.g. a ParaVision B0 map "
                                            "scan folder or its 2dseq")
    p.add_argument("output", type=Path, help="susceptibility map (ppm)")
    _qsm_method_options(p)
    p.add_argument("--mask", type=Path, help="specimen mask or labels (default: where the "
                                             "map is non-zero)")
    p.add_argument("--erode-um", type=_one(float, 0.0), default=0.0,
                   help="erode the automatic mask (µm): the map's rim next to air is its "
                        "least reliable part")
    p.add_argument("--lam", type=_one(float, 0.0, above=True), help="regularisation weight (default: the method's)")
    p.add_argument("--max-iter", type=_one(int, 1, 1e5), default=250)
    p.add_argument("--tkd-threshold", type=_one(float, 0.0, 2 / 3, above=True), default=0.15,
                   help="TKD truncation of the dipole kernel, 0 < t <= 2/3 (default 0.15)")
    p.add_argument("--unit", choices=("Hz", "ppm"),
                   help="the field's unit (default: as the file states)")
    p.add_argument("--larmor-mhz", type=_one(float, 0.0, 5000.0, above=True),
                   help="Larmor frequency for a field in Hz (default: the file's imaging "
                        "frequency)")
    p.add_argument("--b0-direction", type=_numbers(float, -1.0, 1.0), metavar="Z,Y,X",
                   help="B0 unit vector in (z, y, x) (default: from the grid's rotation in "
                        "the world, else the file's, else 1,0,0)")
    _device_option(p, "background removal (LBV, V-SHARP, PDF), the dipole field and every "
                      "inversion")

    p = command("measure", "measure every label of a label volume: volume (µm³, mm³), "
                           "surface, shape, centroid; writes a CSV table", cmd_measure)
    p.add_argument("input", type=Path, help="label volume (or an image with --threshold-otsu)")
    p.add_argument("output", type=Path, help="CSV table")
    p.add_argument("--intensity", type=Path, help="image on the same grid: adds intensity "
                                                  "statistics per label")
    p.add_argument("--threshold-otsu", action="store_true",
                   help="the input is an image: label its connected parts above Otsu's "
                        "threshold first")
    p.add_argument("--echo", type=_one(int, 0), default=0,
                   help="with --threshold-otsu: the echo of a multi-echo image (default 0)")
    p.add_argument("--chunked", action="store_true",
                   help="chunk by chunk for volumes larger than memory (counts, volumes, "
                        "centroids only; default for large lazily read files)")

    p = command("distortion-calibrate", "distortion calibration from a scan of a tube of "
                "known diameter: writes the profile (area error e against distance from the "
                "FOV centre, JSON) and optionally its plot", cmd_distortion_calibrate)
    p.add_argument("tube", type=Path, help="label volume: the tube lumen (segmented scan)")
    p.add_argument("output", type=Path, help="profile (.json)")
    p.add_argument("--diameter-um", type=float, required=True,
                   help="the tube's known inner diameter (µm)")
    p.add_argument("--label", type=int, help="the lumen's label (default: every labelled voxel)")
    p.add_argument("--degree", type=int, default=2, help="polynomial degree of e(r) (default 2)")
    p.add_argument("--plot", type=Path, help="PNG of area error against distance")

    p = command("distortion-correct", "apply a distortion profile to a cross-section table "
                "(area_um2 and station positions z_um, y_um, x_um): areas ÷ (1 + e), "
                "diameters and distances ÷ √(1 + e)", cmd_distortion_correct)
    p.add_argument("profile", type=Path, help="profile from distortion-calibrate (.json)")
    p.add_argument("sections", type=Path, help="cross-section table (CSV)")
    p.add_argument("output", type=Path, help="corrected table (CSV)")

    p = command("register", "register a moving volume (e.g. optical) to a fixed one (MRM): "
                            "landmarks or mutual information, or find a 2-D section's plane "
                            "in the fixed volume; writes the affine", cmd_register)
    p.add_argument("fixed", type=Path, help="fixed volume (stays where it is)")
    p.add_argument("moving", type=Path, help="moving volume (mapped onto the fixed one), or "
                                              "a 2-D section for --method section")
    p.add_argument("output", type=Path, help="transform: .json, or ITK .tfm/.txt; from the "
                                             "moving volume's own frame (µm from voxel 0 "
                                             "along its axes) to the fixed one's (the "
                                             ".json also between world coordinates); mi "
                                             "starts where the files place the volumes")
    p.add_argument("--method", choices=("landmarks", "mi", "section"), default="mi",
                   help="landmark pairs, mutual information (rigid, or with --scale), or the "
                        "section plane search (default mi)")
    p.add_argument("--scale", action="store_true",
                   help="mi and section: also fit the moving tissue's size (shrinkage)")
    p.add_argument("--reach-um", type=_one(float, 0.0, 1e6), default=0.0,
                   help="section: in-plane offsets searched, µm (default 0: depth and every "
                        "in-plane angle only)")
    p.add_argument("--mirror", action="store_true",
                   help="section: it may lie face down (also try it mirrored)")
    p.add_argument("--kind", choices=("rigid", "similarity", "affine"), default="similarity",
                   help="transform for landmarks (default similarity)")
    p.add_argument("--fixed-points", type=Path, help="CSV of landmarks in the fixed volume "
                                                      "(z_um, y_um, x_um from voxel 0: index "
                                                      "x spacing, as Fiji measures)")
    p.add_argument("--moving-points", type=Path, help="CSV of the same landmarks, in order, "
                                                       "in the moving volume")
    p.add_argument("--resliced", type=Path, help="also write the moving volume resampled on "
                                                 "the fixed grid (section: the fixed volume "
                                                 "on the section's plane)")

    p = command("info", "say what a file holds: each volume's shape, voxel size, place in "
                        "the world, value unit, acquisition and how it was computed", cmd_info)
    p.add_argument("input", type=Path, help="a file or folder napari-mrmicro reads (a "
                                            "ParaVision study: every scan)")
    p.add_argument("--json", action="store_true", help="the same as JSON, with the metadata "
                                                       "(raw headers left out)")

    p = command("convert", "convert a volume between formats, e.g. a slice series to "
                           "OME-Zarr, chunk by chunk", cmd_convert)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path, help="output; the suffix picks the format "
                                             "(.zarr, .tif, .nii, .nii.gz, .headfile)")
    p.add_argument("--chunks", type=_one(int, 1, 4096), default=128, help="OME-Zarr chunk edge (voxels)")
    p.add_argument("--levels", type=_one(int, 1, 32), help="OME-Zarr resolution levels (default: halve "
                                              "until <= 256 voxels)")
    p.add_argument("--labels", action="store_true", help="the volume is a label volume")
    p.add_argument("--lazy", action="store_true",
                   help="never load the input whole (default: when it exceeds 64 MiB)")

    for name, func, help_ in (
            ("run", cmd_run, "run a pipeline file (TOML) on each input, one after another"),
            ("batch", cmd_batch, "run a pipeline file (TOML) on many specimens in parallel "
                                 "on dask.distributed")):
        p = command(name, help_, func)
        p.add_argument("pipeline", type=Path, help="pipeline description (TOML)")
        p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                       help="a specimen's file or folder; a ParaVision study folder gives "
                            "its scans")
        p.add_argument("-o", "--out", type=Path, default=Path("mrmicro-out"),
                       help="output folder; one subfolder per specimen (default "
                            "./mrmicro-out)")
        p.add_argument("--force", action="store_true",
                       help="rerun specimens that are already done")
        _device_option(p, "the recon, qsm and qsm_field steps"
                       + ("; every worker must have one (with a local cluster: one "
                          "worker, a thread per core, unless --workers)"
                          if name == "batch" else ""), here=name == "run")
        if name == "batch":
            p.add_argument("--scheduler", metavar="ADDRESS",
                           help="an existing dask scheduler (e.g. tcp://10.0.0.5:8786); "
                                "default: a local cluster on this machine")
            p.add_argument("--workers", type=_one(int, 1, 4096),
                           help="local cluster: worker processes (default: one per core; one "
                                "with --device gpu)")
    return parser


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # -h, or a wrong command line (one line already printed)
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    try:
        return args.func(args)
    except MemoryError as error:
        print(f"mrmicro {args.command}: not enough memory: {' '.join(str(error).split())}",
              file=sys.stderr)
        return EXIT_NO_MEMORY
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"mrmicro {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
