"""``mrmicro demo``: the whole pipeline on embedded specimens, results in a folder."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from pathlib import Path

import numpy as np

from napari_mrmicro.core.specimens import GD_MM


def _demo_formats():
    """(label, file name, writer options) for every writable format available here."""
    formats = [
        ("CIVM headfile + float32 slices", "molar/molar.headfile", {"dtype": "f32"}),
        ("CIVM headfile + uint16 slices (labels)", "molar_tissues/molar_tissues.headfile", {}),
        ("ImageJ TIFF", "molar.tif", {}),
        ("ImageJ TIFF (labels)", "molar_tissues.tif", {}),
    ]
    try:
        import nibabel  # noqa: F401
    except ImportError:
        print("  (NIfTI skipped: install napari-mrmicro[nifti])")
    else:
        formats += [("NIfTI", "molar.nii.gz", {}), ("NIfTI (labels)", "molar_tissues.nii", {})]
    return formats


def _round_trip(volume, path: Path, options: dict) -> tuple[bool, str]:
    from napari_mrmicro.io import read_volume, write_volume

    written = write_volume(path, volume, **options)
    back = read_volume(path, lazy=False)
    data = np.asarray(back.data)
    problems = []
    if data.shape != volume.data.shape:
        problems.append(f"shape {data.shape} != {volume.data.shape}")
    elif not np.array_equal(data, volume.data):
        problems.append(f"data differ (max |Δ| {np.max(np.abs(data - volume.data)):.3g})")
    if not np.allclose(back.spacing_um, volume.spacing_um, rtol=1e-6):
        problems.append(f"spacing {back.spacing_um} != {volume.spacing_um}")
    size = sum(Path(p).stat().st_size for p in written)
    detail = "; ".join(problems) or f"{len(written)} file(s), {size / 2**20:.1f} MiB"
    return not problems, detail


def _demo_simulation(out_dir: Path) -> None:
    """Plan and simulate a 9.4 T multi-echo gradient-echo scan of a fixed, Gd-soaked
    inner ear in Fomblin, as an MR microscopist sets it up for QSM."""
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.core.recon import reconstruct
    from napari_mrmicro.core.physics import protocol_summary
    from napari_mrmicro.io import Volume, write_volume

    # Six echoes from 2 ms: the first before the fluid near bone dephases, the last at
    # ~0.7 T2* of the soaked nerve; 100 kHz keeps the 1.28 ms readout inside the echo
    # spacing; TR 30 ms at the Ernst angle of the soaked tissue (T1 150 ms: 35°); four
    # averages (33 min) for the phase SNR.
    acq = Acquisition(matrix=(128, 128, 128), fov_um=(6400.0,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(2.0, 4.0, 6.0, 8.0, 10.0, 12.0),
                      tr_ms=30.0, flip_deg=35.0, bandwidth_hz=100_000.0, averages=4,
                      temperature_k=293.0)
    plan = protocol_summary(acq)
    print(f"Simulation: cochlea (fixed, soaked in {GD_MM:g} mM Gd-DTPA, in Fomblin, with "
          f"its internal auditory canal and nerve), 9.4 T 3D GRE, {len(acq.te_ms)} echoes "
          f"{acq.te_ms[0]:g}–{acq.te_ms[-1]:g} ms, {' x '.join(map(str, acq.matrix))} at "
          f"{acq.voxel_um[0]:.0f} µm")
    print(f"  planner: readout {plan['readout_gradient_mT_per_m']:.0f} mT/m, b at echo "
          f"{plan['b_value_s_per_mm2']:.2f} s/mm², fat-water shift "
          f"{plan['chemical_shift_px']:.2f} px, water SNR {plan['snr_water']:.0f}, "
          f"scan time {plan['scan_time']} (h:mm)")
    for warning in plan["warnings"]:
        print(f"  planner warning: {warning}")
    t0 = time.perf_counter()
    specimen = make_specimen("cochlea", tuple(2 * n for n in acq.matrix),
                             tuple(v / 2 for v in acq.voxel_um), surrounding="fomblin",
                             nerve_canal=True)
    kspace = simulate(specimen, acq, seed=0, progress=_progress("simulate"))
    image = reconstruct(kspace)
    duct = kspace.truth["labels"] == specimen.truth["duct_label"]
    snr = np.abs(image[0][duct]).mean() / kspace.truth["sigma"]
    print(f"  simulated in {time.perf_counter() - t0:.1f} s: duct SNR {snr:.0f} at TE "
          f"{acq.te_ms[0]:g} ms (noise σ {kspace.truth['sigma']:.4f})")
    meta = {"acquisition": acq.to_dict(), "source": "mrmicro demo: simulated cochlea"}
    magnitude = Volume(np.abs(image).astype(np.float32), acq.voxel_um, meta,
                       name="cochlea magnitude")
    for path in write_volume(out_dir / "cochlea_magnitude.tif", magnitude):
        print(f"  wrote {Path(path).relative_to(out_dir)} (echo, z, y, x)")
    np.save(out_dir / "cochlea_kspace.npy", kspace.data)
    print("  wrote cochlea_kspace.npy (complex64, DC at N//2)")
    return acq, image, kspace, specimen


#: The demo's bar for QSM against its own ground truth (issue: an honest demo).
QSM_NRMSE_LIMIT = 50.0
#: χ contrast (ppm) below which a tissue's referenced truth counts as none: its sign is
#: not checked, and a truth whose spread is below it has nothing for NRMSE to measure.
#: Twice the χ error QSM makes in the flat fluid of the demo (0.010 ppm RMS).
QSM_CONTRAST_PPM = 0.02


def _demo_qsm(out_dir: Path, acq, image, kspace, specimen) -> None:
    """QSM of the simulated scan with the pipeline's defaults, scored against the
    simulation's ground truth where the truth has signal; a bad number is called bad."""
    from scipy import ndimage

    from napari_mrmicro.core.qsm import hfen, nrmse, qsm_stages, xsim
    from napari_mrmicro.core.qsm.pipeline import reference_compartments
    from napari_mrmicro.io import Volume, write_volume

    labels = kspace.truth["labels"]
    t0 = time.perf_counter()
    result = qsm_stages(np.abs(image), np.angle(image), acq.te_ms, acq.b0_tesla,
                        acq.voxel_um, acq.b0_direction, progress=_progress("QSM"))
    print(f"QSM (defaults: signal mask, LBV + TV) in {time.perf_counter() - t0:.1f} s")
    print(f"  {result.mask_report.summary()}")
    # scored: the pipeline's mask where the truth has proton signal (no bone, no air)
    density = np.asarray([t.proton_density for t in specimen.tissues])[labels]
    scored = result.local_mask & ~np.isin(labels, specimen.truth["bone_labels"]) & (density > 0)
    # χ is relative: each compartment (enclosed by signal voids) against its own mean, the
    # truth (voxel-averaged χ of the simulation) exactly as the estimate
    chi = reference_compartments(result.chi_ppm, scored)
    truth = reference_compartments(kspace.truth["chi_ppm"], scored)
    scores = {"NRMSE": nrmse(chi, truth, scored), "HFEN": hfen(chi, truth, scored),
              "XSIM": xsim(chi, truth, scored)}
    spread = float(np.sqrt(np.mean(truth[scored] ** 2)))
    error = float(np.sqrt(np.mean((chi - truth)[scored] ** 2)))
    bad = scores["NRMSE"] > QSM_NRMSE_LIMIT
    parts = ndimage.label(scored)[0]
    print(f"  scored: {scored.sum()} voxels where the mask has a local field and the truth "
          f"has signal, in {parts.max()} compartments walled apart by signal voids; "
          "reference: χ and truth each relative to the mean of its compartment (the offset "
          "between walled-apart compartments makes no field inside the mask)")
    print(f"  against the ground truth: NRMSE {scores['NRMSE']:.1f} %, HFEN "
          f"{scores['HFEN']:.1f} %, XSIM {scores['XSIM']:.3f}"
          + (f"  <- BAD: above {QSM_NRMSE_LIMIT:g} %" if bad else ""))
    print(f"  the truth varies by {spread:.3f} ppm RMS in the scored compartments, χ errs by "
          f"{error:.3f} ppm RMS")
    if spread < QSM_CONTRAST_PPM:
        print(f"  <- BAD: the truth is flat where QSM can see it (below {QSM_CONTRAST_PPM:g} "
              "ppm): this specimen's χ contrast lies in signal voids (bone) and in tissue "
              "walled in by them, whose offset no field inside the mask shows, so NRMSE "
              "divides the error by almost nothing")
        bad = True
    for index, name in enumerate(specimen.tissue_names):
        present = int((labels == index).sum())
        region = scored & (labels == index)
        if present == 0 or index in specimen.truth["bone_labels"] \
                or specimen.tissues[index].proton_density == 0:
            continue
        if region.sum() <= 50:
            print(f"  {name:>14}: {region.sum()} of {present} voxels scored (left out by the "
                  "mask: dim, dephased or at a void's edge)")
            continue
        measured, expected = float(chi[region].mean()), float(truth[region].mean())
        wrong = abs(expected) > QSM_CONTRAST_PPM and np.sign(measured) != np.sign(expected)
        bad |= wrong
        print(f"  {name:>14}: χ {measured:+.3f} ppm (truth {expected:+.3f}) vs its "
              f"compartment, in {region.sum()} of {present} voxels"
              + ("  <- BAD: wrong sign" if wrong else "")
              + ("" if abs(expected) > QSM_CONTRAST_PPM else "  (no contrast to sign)"))
    print(f"  QSM check: {'NOT MET, see the numbers marked BAD' if bad else 'met'} (NRMSE <= "
          f"{QSM_NRMSE_LIMIT:g} % and the right sign in every tissue with signal)")
    meta = {"acquisition": acq.to_dict(), "value_unit": "ppm", "source": "mrmicro demo: QSM"}
    for path in write_volume(out_dir / "cochlea_chi.nii.gz",
                             Volume(result.chi_ppm, acq.voxel_um, meta, name="chi")):
        print(f"  wrote {Path(path).relative_to(out_dir)} (χ in ppm)")
    _write_qsm_figure(out_dir / "cochlea_qsm.png", truth, chi, scored, labels, acq.voxel_um)
    print("  wrote cochlea_qsm.png (truth, χ and their difference, ppm)")


def _write_qsm_figure(path: Path, truth, chi, scored, labels, spacing_um) -> None:
    """Truth, χ and χ − truth side by side on the (z, x) plane, along B0 and the modiolar
    axis, showing the most scored tissue kinds, one diverging colour scale in ppm spanning
    the truth (matplotlib Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def variety(y):  # tissue kinds with 20+ voxels, then the rarest one's count
        counts = np.bincount(labels[:, y][scored[:, y]])
        present = counts[counts >= 20]
        return (present.size, present.min() if present.size else 0)

    y = max(range(labels.shape[1]), key=variety)
    means = [abs(float(truth[scored & (labels == k)].mean()))
             for k in np.unique(labels[scored])]
    error = float(np.sqrt(np.mean((chi - truth)[scored] ** 2)))
    # the tissues' contrast (not partial-volume edges), or the error where the truth is flat
    limit = max(1.5 * max(means), 2 * error) or 1.0
    extent = (0, labels.shape[2] * spacing_um[2] / 1000, labels.shape[0] * spacing_um[0] / 1000, 0)
    figure = Figure(figsize=(12, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for ax, (title, volume) in zip(axes, (("truth", truth), ("χ (default pipeline)", chi),
                                          ("χ − truth", chi - truth))):
        shown = np.ma.masked_where(~scored[:, y], volume[:, y])
        image = ax.imshow(shown, cmap="PiYG", vmin=-limit, vmax=limit, extent=extent)
        ax.set_title(f"{title}, row y {y}")
        ax.set_xlabel("x (mm)")
        ax.set_facecolor("0.2")
    axes[0].set_ylabel("z, along B0 (mm)")
    figure.colorbar(image, ax=axes, label="χ (ppm, vs its compartment)", shrink=0.85)
    figure.savefig(path, format="png")


def _demo_morphometry(out_dir: Path, acq, image, kspace, specimen) -> None:
    """Segment the cochlear duct in the simulated scan and measure it along its course."""
    from scipy import ndimage

    from napari_mrmicro.core.morphometry import measure_duct, write_area_plot
    from napari_mrmicro.core.segmentation import threshold_mask
    from napari_mrmicro.pipeline import write_table

    magnitude = np.abs(image[0])
    components, _ = ndimage.label(threshold_mask(magnitude))
    duct_truth = kspace.truth["labels"] == specimen.truth["duct_label"]
    # the bright component that lies on the true duct
    duct_id = np.bincount(components[duct_truth]).argmax()
    t0 = time.perf_counter()
    table, path, sections = measure_duct((components == duct_id).astype(np.uint8),
                                         acq.voxel_um, label=1)
    length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
    truth_length = specimen.truth["duct_length_um"]
    areas = sections.areas_um2[np.isfinite(sections.areas_um2)]
    print(f"Morphometry of the segmented duct ({time.perf_counter() - t0:.1f} s): volume "
          f"{table['volume_mm3'][0]:.2f} mm³, centerline {length / 1000:.2f} mm (specimen "
          f"truth {truth_length / 1000:.2f} mm), cross-section {areas.min() / 1e6:.3f}–"
          f"{areas.max() / 1e6:.3f} mm² over {len(areas)} sections")
    write_table(out_dir / "duct_regions.csv", table)
    write_table(out_dir / "duct_sections.csv", sections.as_table())
    write_area_plot(sections, out_dir / "duct_area.png", title="cochlear duct")
    print("  wrote duct_regions.csv, duct_sections.csv, duct_area.png")


def _demo_registration(out_dir: Path) -> None:
    """Dual-mode microdiamonds: hyperpolarized ¹³C MRI against a simulated optical view."""
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.core.optical import render_spots
    from napari_mrmicro.core.particles import detect_particles, particle_affine
    from napari_mrmicro.core.recon import reconstruct
    from napari_mrmicro.core.transforms import (
        apply_affine,
        box_corners_um,
        displacement_error_um,
        rigid_affine,
        rotation_angle_deg,
    )
    from napari_mrmicro.io.transform_files import write_transform_json

    t0 = time.perf_counter()
    specimen = make_specimen("microdiamonds", (64, 128, 128), 25.0, seed=3, count=40,
                             diameter_um=50.0)
    acq = Acquisition(matrix=(32, 64, 64), fov_um=(1600.0, 3200.0, 3200.0), b0_tesla=9.4,
                      nucleus="13C", sequence="gradient_echo", te_ms=(0.5,), tr_ms=5.0,
                      flip_deg=5.0, bandwidth_hz=100_000.0)
    kspace = simulate(specimen, acq, seed=1, polarization=0.3)
    mri = np.abs(reconstruct(kspace))[0]
    truth = specimen.truth["particle_centres_um"]
    # the optical stack: 20 µm pixels, PSF σ 30 µm axial / 15 µm lateral, at a known pose
    pose = rigid_affine((3.0, -2.0, 4.0), (30.0, -45.0, 25.0), centre_um=(800, 1600, 1600))
    shape, spacing = (80, 160, 160), (20.0, 20.0, 20.0)
    optical = render_spots(shape, spacing, apply_affine(np.linalg.inv(pose), truth),
                           (30.0, 15.0, 15.0), background=0.02)
    optical += np.random.default_rng(5).normal(0, 0.03, shape).astype(np.float32)
    mr_um = (detect_particles(mri, acq.voxel_um, diameter_um=100.0, min_distance_um=150.0)
             + np.asarray(kspace.truth["origin_um"]))
    optical_um = detect_particles(optical, spacing, sigma_um=15.0)
    fit, match = particle_affine(optical_um, mr_um, max_distance_um=150.0, kind="rigid")
    error = displacement_error_um(fit.affine, pose, box_corners_um(shape, spacing)).max()
    print(f"Registration, dual-mode microdiamonds ({time.perf_counter() - t0:.1f} s): "
          f"{len(match.pairs)} of {len(truth)} particles matched between the optical view "
          f"and ¹³C MRI, largest offset {np.abs(match.offsets_um).max():.0f} µm (MR voxel "
          f"{acq.voxel_um[0]:.0f} µm); pose error "
          f"{rotation_angle_deg(fit.affine @ np.linalg.inv(pose)):.2f}° and {error:.0f} µm "
          "at the worst corner")
    write_transform_json(out_dir / "optical_to_mri.json", fit.affine, "optical view", "13C MRI")
    print("  wrote optical_to_mri.json (optical → MRI affine, µm)")


def _write_slice_png(path: Path, volume, symmetric: bool = False) -> None:
    """The middle slice as an 8-bit PNG (symmetric grey scale around 0 for χ)."""
    import imageio.v3 as iio

    plane = np.asarray(volume[volume.shape[0] // 2], dtype=np.float32)
    limit = float(np.percentile(np.abs(plane), 99.5)) or 1.0
    low = -limit if symmetric else 0.0
    scaled = np.clip((plane - low) / (limit - low), 0, 1)
    iio.imwrite(path, (scaled * 255).astype(np.uint8))


def _progress(task: str):
    """A text progress bar on stderr for a core function's ``progress(stage, fraction)``:
    redrawn in place on a terminal when its percentage or stage changes; into a log (not a
    terminal) one line per stage and per 10 %."""
    terminal = sys.stderr.isatty()
    shown = [None]

    def report(stage, fraction):
        step = int(100 * fraction) if terminal else 10 * int(10 * fraction)
        if (stage, step) == shown[0]:
            return
        shown[0] = (stage, step)
        filled = int(30 * fraction)
        bar = f"  {task} [{'#' * filled}{' ' * (30 - filled)}] {100 * fraction:3.0f} % {stage}"
        if terminal:
            print(f"\r{bar:<70}", end="\n" if fraction >= 1 else "", file=sys.stderr,
                  flush=True)
        else:
            print(bar, file=sys.stderr, flush=True)
    return report


class _Tee(io.TextIOBase):
    """Print to the terminal and keep every line for the demo's report."""

    def __init__(self, stream):
        self.stream, self.lines = stream, []

    def write(self, text):
        self.lines.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def demo(out_dir: Path) -> int:
    """The whole pipeline on embedded specimens: the sample molar written in every format
    and read back; a 9.4 T cochlea scan planned, simulated, reconstructed, mapped by QSM and
    its duct measured; microdiamonds registered between a simulated optical view and ¹³C MRI.
    Everything printed also goes to ``report.md`` with the list of files written."""
    from napari_mrmicro.io._common import atomic_output

    out_dir.mkdir(parents=True, exist_ok=True)
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        failures = _demo_steps(out_dir)
    slice_file = re.compile(r"\.\d{4}\.(raw|f32)$")  # CIVM slices: listed by headfile
    files = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.is_file()
                   and p.name != "report.md" and not slice_file.search(p.name))
    with atomic_output(out_dir / "report.md") as tmp:
        tmp.write_text("# mrmicro demo\n\n```\n" + "".join(tee.lines) + "```\n\n## Files\n\n"
                       + "".join(f"- `{f}`\n" for f in files))
    print(f"Report: {(out_dir / 'report.md').resolve()}")
    return failures


def _demo_relaxometry(out_dir: Path, acq, image, kspace, specimen) -> None:
    """T2* of the simulated scan's magnitude, each tissue's median against the T2* the
    simulation gave it: next to bone the field of the bone dephases a voxel, and its
    measured (effective) T2* is shorter than the tissue's own."""
    from napari_mrmicro.core.relaxometry import fit_relaxation

    t0 = time.perf_counter()
    fit = fit_relaxation(np.abs(image), acq.te_ms, "nonlinear")
    t2star = fit.t2_ms()
    print(f"Relaxometry: T2* by nonlinear fit of {len(acq.te_ms)} echoes in "
          f"{time.perf_counter() - t0:.1f} s, echoes above 3σ (σ {fit.noise_sigma:.4f} "
          f"measured in the background), {int(fit.fitted.sum())} voxels fitted")
    _per_tissue("T2*", t2star, fit.fitted, kspace, specimen, "t2star_ms",
                lambda index, own, region: "; its own signal is gone by the first echo: "
                "edge voxels, partial volume with their neighbours" if own < acq.te_ms[0]
                else "")
    _write_map(out_dir / "cochlea_t2star.nii.gz", t2star, acq, "T2*",
               {"source": "mrmicro demo: relaxometry"})


#: The demo's VFA flip angles (degrees): around the soaked tissue's Ernst angle (35° at
#: TR 30 ms, T1 150 ms), where DESPOT1 is most precise (Deoni et al., MRM 2003;49:515).
VFA_ANGLES = (10.0, 20.0, 35.0, 60.0)


def _demo_t1(out_dir: Path, acq, image, kspace, specimen) -> None:
    """T1 of the same specimen by variable flip angle: four single-echo spoiled gradient
    echoes at the TR of the QSM scan, each tissue's median against the simulation's T1."""
    from dataclasses import replace

    from napari_mrmicro.core import simulate
    from napari_mrmicro.core.recon import reconstruct
    from napari_mrmicro.core.t1_mapping import fit_record, fit_t1

    t0 = time.perf_counter()
    images = []
    for seed, angle in enumerate(VFA_ANGLES, start=1):
        scan = replace(acq, te_ms=acq.te_ms[:1], flip_deg=angle)
        images.append(np.abs(reconstruct(simulate(specimen, scan, seed=seed))).reshape(
            scan.matrix).astype(np.float32))
    simulated = time.perf_counter() - t0
    fit = fit_t1(np.stack(images), "vfa", flip_deg=VFA_ANGLES, tr_ms=acq.tr_ms)
    t1 = fit.t1_ms()
    print(f"T1 mapping: variable flip angle ({', '.join(f'{a:g}' for a in VFA_ANGLES)}°, TR "
          f"{acq.tr_ms:g} ms, TE {acq.te_ms[0]:g} ms) simulated in {simulated:.1f} s, fitted "
          f"in {time.perf_counter() - t0 - simulated:.1f} s, {int(fit.fitted.sum())} voxels")
    sd = fit.t1_sd_ms()
    bone = specimen.truth["bone_labels"]
    _per_tissue("T1", t1, fit.fitted, kspace, specimen, "t1_ms",
                lambda index, own, region: f", standard error {np.median(sd[region]):.1f} "
                "ms" + ("; bone has almost no signal: edge voxels, partial volume with the "
                        "fluid" if index in bone else ""))
    _write_map(out_dir / "cochlea_t1.nii.gz", t1, acq, "T1", {
        "source": "mrmicro demo: T1",
        "relaxometry": fit_record(fit, "vfa", VFA_ANGLES, tr_ms=acq.tr_ms)})


#: The demo's diffusion scheme: the minimum of six non-collinear directions (pairs of
#: gradient axes switched on together) at b 1000 s/mm², where the soaked tissue keeps its
#: signal, and one image without diffusion weighting.
DTI_DIRECTIONS = ((1.0, 1.0, 0.0), (1.0, -1.0, 0.0), (1.0, 0.0, 1.0), (1.0, 0.0, -1.0),
                  (0.0, 1.0, 1.0), (0.0, 1.0, -1.0))
DTI_B = 1000.0


def _demo_diffusion(out_dir: Path, acq, image, kspace, specimen) -> None:
    """Diffusion tensor imaging of the same specimen: a diffusion-prepared spin echo at
    b 0 and along six directions, each tissue's mean diffusivity and FA against the
    simulation's tensors (the nerve's fibres along the modiolar axis, z)."""
    from dataclasses import replace

    from napari_mrmicro.core import simulate
    from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion, fit_record
    from napari_mrmicro.core.recon import reconstruct

    t0 = time.perf_counter()
    b = b_matrices([0.0] + [DTI_B] * len(DTI_DIRECTIONS),
                   np.r_[np.zeros((1, 3)), np.asarray(DTI_DIRECTIONS)])
    images = []
    for seed, bk in enumerate(b, start=20):
        scan = replace(acq, sequence="spin_echo", te_ms=(15.0,), tr_ms=300.0, flip_deg=90.0,
                       extra={**acq.extra, "diffusion_b_matrix_s_per_mm2": bk.tolist()})
        images.append(np.abs(reconstruct(simulate(specimen, scan, seed=seed))).reshape(
            scan.matrix).astype(np.float32))
    simulated = time.perf_counter() - t0
    fit = fit_diffusion(np.stack(images), b)
    md, fa = fit.md(), fit.fa()
    print(f"Diffusion tensor: spin echo TE 15 ms, TR 300 ms, b 0 and {DTI_B:g} s/mm² along "
          f"{len(DTI_DIRECTIONS)} directions, simulated in {simulated:.1f} s, fitted in "
          f"{time.perf_counter() - t0 - simulated:.1f} s, {int(fit.fitted.sum())} voxels")
    labels = kspace.truth["labels"]
    for index, name in enumerate(specimen.tissue_names):
        region = fit.fitted & (labels == index)
        tissue = specimen.tissues[index]
        if region.sum() > 50 and tissue.diffusion_um2_per_ms > 0:
            truth = np.linalg.eigvalsh(tissue.diffusion_tensor())[::-1]
            own_fa = np.sqrt(1.5 * np.sum((truth - truth.mean()) ** 2) / np.sum(truth ** 2))
            cosine = np.abs(np.sum(fit.principal[:, region] * np.asarray(
                tissue.fibre_axis, float)[:, None], axis=0))
            aligned = np.mean(cosine > np.cos(np.deg2rad(20)))
            along = "" if tissue.axial_to_radial == 1 else \
                f", principal axis within 20° of the fibres in {aligned:.0%}"
            print(f"  {name:>14}: MD {np.median(md[region]):.2f} µm²/ms (the simulation's "
                  f"{tissue.diffusion_um2_per_ms:.2f}), FA {np.median(fa[region]):.2f} "
                  f"({own_fa:.2f}) in {region.sum()} voxels{along}")
    from napari_mrmicro.io import Volume, write_volume

    meta = {"acquisition": acq.to_dict(), "source": "mrmicro demo: diffusion",
            "diffusion": fit_record(fit, "wls", b)}
    for values, name, unit in ((md, "MD", "µm²/ms"), (fa, "FA", None)):
        path = out_dir / f"cochlea_{name.lower()}.nii.gz"
        volume = Volume(values, acq.voxel_um, {**meta, **({"value_unit": unit} if unit
                                                         else {})}, name=name)
        for written in write_volume(path, volume):
            print(f"  wrote {Path(written).relative_to(out_dir)} ({name}, 0 where not "
                  "fitted)")


def _per_tissue(quantity: str, values, fitted, kspace, specimen, attribute: str,
                remark) -> None:
    """Print each tissue's median ``quantity`` (ms) over its fitted voxels against the
    value the simulation gave it (the tissue's ``attribute``), with ``remark(index, own,
    region)`` after it."""
    labels = kspace.truth["labels"]
    for index, name in enumerate(specimen.tissue_names):
        region = fitted & (labels == index)
        own = getattr(specimen.tissues[index], attribute)
        if region.sum() > 50:
            print(f"  {name:>14}: {quantity} {np.median(values[region]):6.1f} ms median (the "
                  f"simulation's {own:.1f} ms) in {region.sum()} of "
                  f"{int((labels == index).sum())} voxels{remark(index, own, region)}")


def _write_map(path: Path, values, acq, quantity: str, meta: dict) -> None:
    """Write a relaxation time map (ms) of the simulated scan and say so."""
    from napari_mrmicro.io import Volume, write_volume

    meta = {"acquisition": acq.to_dict(), "value_unit": "ms", **meta}
    for written in write_volume(path, Volume(values, acq.voxel_um, meta, name=quantity)):
        print(f"  wrote {Path(written).relative_to(path.parent)} ({quantity} in ms, 0 where "
              "not fitted)")


def _demo_steps(out_dir: Path) -> int:
    from napari_mrmicro._sample_data import molar_volumes

    t0 = time.perf_counter()
    image, labels = molar_volumes()
    acq = image.metadata["acquisition"]
    shape, spacing = image.data.shape, image.spacing_um
    fov_mm = [n * s / 1000 for n, s in zip(shape, spacing)]
    voxel_mm3 = float(np.prod(spacing)) * 1e-9
    print(f"Sample: molar, 3D spin echo at {acq['b0_tesla']} T, TE/TR "
          f"{acq['te_ms'][0]}/{acq['tr_ms']} ms ({time.perf_counter() - t0:.1f} s)")
    print(f"  matrix {' x '.join(map(str, shape))} (z, y, x), FOV "
          f"{' x '.join(f'{f:.2f}' for f in fov_mm)} mm, voxel "
          f"{' x '.join(f'{s:.2f}' for s in spacing)} µm")
    for index, name in labels.metadata["tissues"].items():
        if index:
            volume = np.count_nonzero(labels.data == index) * voxel_mm3
            print(f"  {name:>7}: {volume:7.2f} mm³ (voxel count)")

    print(f"Round trips in {out_dir}:")
    failures = 0
    for label, name, options in _demo_formats():
        volume = labels if "labels" in label else image
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, detail = _round_trip(volume, path, options)
        failures += not ok
        print(f"  [{'ok' if ok else 'FAIL'}] {label:<40} {path.relative_to(out_dir)}: {detail}")
    scan = _demo_simulation(out_dir)
    _demo_qsm(out_dir, *scan)
    _demo_relaxometry(out_dir, *scan)
    _demo_t1(out_dir, *scan)
    _demo_diffusion(out_dir, *scan)
    _demo_morphometry(out_dir, *scan)
    _demo_registration(out_dir)
    print(f"Results written to {out_dir.resolve()}")
    return 1 if failures else 0
