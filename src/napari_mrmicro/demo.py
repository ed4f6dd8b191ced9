"""``mrmicro demo``: the whole pipeline on embedded specimens, results in a folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


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
    """Plan and simulate a 9.4 T multi-echo gradient-echo scan of the cochlea."""
    from napari_mrmicro.core import Acquisition, make_specimen, simulate
    from napari_mrmicro.core.kspace import centered_ifft
    from napari_mrmicro.core.physics import protocol_summary
    from napari_mrmicro.io import Volume, write_volume

    acq = Acquisition(matrix=(128, 128, 128), fov_um=(6400.0,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(3.0, 6.0, 9.0, 12.0), tr_ms=40.0,
                      flip_deg=15.0, bandwidth_hz=50_000.0, temperature_k=293.0)
    plan = protocol_summary(acq)
    print(f"Simulation: cochlea, 9.4 T 3D GRE, {len(acq.te_ms)} echoes, "
          f"{' x '.join(map(str, acq.matrix))} at {acq.voxel_um[0]:.0f} µm")
    print(f"  planner: readout {plan['readout_gradient_mT_per_m']:.0f} mT/m, b at echo "
          f"{plan['b_value_s_per_mm2']:.2f} s/mm², fat-water shift "
          f"{plan['chemical_shift_px']:.2f} px, water SNR {plan['snr_water']:.0f}, "
          f"scan time {plan['scan_time']} (h:mm)")
    for warning in plan["warnings"]:
        print(f"  planner warning: {warning}")
    t0 = time.perf_counter()
    specimen = make_specimen("cochlea", tuple(2 * n for n in acq.matrix),
                             tuple(v / 2 for v in acq.voxel_um))
    kspace = simulate(specimen, acq, seed=0)
    image = centered_ifft(kspace.data)
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


def demo(out_dir: Path) -> int:
    """Build the sample molar, write it in every writable format, read each back; then
    plan and simulate a cochlea scan."""
    from napari_mrmicro._sample_data import molar_volumes

    out_dir.mkdir(parents=True, exist_ok=True)
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
    _demo_simulation(out_dir)
    print(f"Results written to {out_dir.resolve()}")
    return 1 if failures else 0
