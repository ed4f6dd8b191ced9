"""File > Open Sample: a molar imaged as in a published 2.35 T MR-microscopy protocol, and
simulated scans for every dock: a 9.4 T cochlea, a multi-echo GRE for QSM with its truth, a
distortion-calibration tube, and a ¹³C + optical microdiamond pair."""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core.physics import magnitude_with_noise, spin_echo_signal
from napari_mrmicro.core.specimens import make_specimen
from napari_mrmicro.io import Volume

#: 3D spin echo of an extracted molar at 2.35 T: TE/TR 2.4/600 ms, 256×128×128,
#: FOV 25×12.5×12.5 mm (≈ 100 µm isotropic), 250 mT/m gradients.
MOLAR_PROTOCOL = Acquisition(
    matrix=(256, 128, 128), fov_um=(25_000.0, 12_500.0, 12_500.0), b0_tesla=2.35,
    sequence="spin_echo", te_ms=(2.4,), tr_ms=600.0, flip_deg=90.0, bandwidth_hz=25_000.0,
    averages=1, temperature_k=295.0, readout_axis=0, max_gradient_mT_per_m=250.0,
)


def molar_volumes(seed: int = 0, snr: float = 25.0) -> tuple[Volume, Volume]:
    """The sample molar: (spin-echo magnitude image, tissue labels), both as Volumes.

    The specimen is built on a grid twice as fine and each voxel's signal averaged over its
    eight sub-voxels (partial volume); Rician noise gives the pulp an SNR of ``snr``.
    """
    acq = MOLAR_PROTOCOL
    fine = tuple(2 * n for n in acq.matrix)
    specimen = make_specimen("tooth", fine, tuple(v / 2 for v in acq.voxel_um), seed=seed)
    signal = spin_echo_signal(*(specimen.property_map(p)
                                for p in ("proton_density", "t1_ms", "t2_ms")),
                              te_ms=acq.te_ms[0], tr_ms=acq.tr_ms)
    signal = signal.reshape(acq.matrix[0], 2, acq.matrix[1], 2, acq.matrix[2], 2).mean((1, 3, 5))
    pulp = spin_echo_signal(*(getattr(specimen.tissues[3], p)
                              for p in ("proton_density", "t1_ms", "t2_ms")),
                            te_ms=acq.te_ms[0], tr_ms=acq.tr_ms)
    image = magnitude_with_noise(signal, float(pulp) / snr, np.random.default_rng(seed))
    labels = specimen.labels[::2, ::2, ::2].copy()
    meta = {"format": "sample", "source": "napari-mrmicro sample: molar",
            "acquisition": acq.to_dict(), "specimen": "tooth",
            "tissues": dict(enumerate(specimen.tissue_names)), "noise_sigma": float(pulp) / snr}
    return (Volume(image, acq.voxel_um, meta, name="molar 2.35 T SE"),
            Volume(labels, acq.voxel_um, dict(meta), layer_type="labels",
                   name="molar tissues"))


def molar() -> list[tuple]:
    """LayerData for File > Open Sample > Molar."""
    from napari_mrmicro._layers import volume_to_layer_data

    image, labels = molar_volumes()
    layers = volume_to_layer_data(image) + volume_to_layer_data(labels)
    layers[1][1]["visible"] = False
    return layers


# -- simulated samples: each one run of :func:`napari_mrmicro.core.simulate.simulate` ----------

#: CIVM-style inner-ear microscopy (Duke Center for In Vivo Microscopy: fixed, Gd-doped
#: specimens at 9.4 T, 3D spin echo, ~25 µm isotropic), here a mouse cochlea in a 2.4 mm FOV.
COCHLEA_PROTOCOL = Acquisition(
    matrix=(96, 96, 96), fov_um=(2_400.0,) * 3, b0_tesla=9.4, sequence="spin_echo",
    te_ms=(9.0,), tr_ms=700.0, flip_deg=90.0, bandwidth_hz=50_000.0, temperature_k=293.0,
    max_gradient_mT_per_m=1000.0)

#: Three-echo spoiled gradient echo of the same ear for QSM (phase ∝ TE), 50 µm.
GRE_PROTOCOL = Acquisition(
    matrix=(64, 64, 64), fov_um=(3_200.0,) * 3, b0_tesla=9.4, sequence="gradient_echo",
    te_ms=(3.0, 6.0, 9.0), tr_ms=40.0, flip_deg=15.0, bandwidth_hz=50_000.0,
    temperature_k=293.0, max_gradient_mT_per_m=1000.0)

#: A 600 µm capillary 0.8 mm off centre, scanned with 15 % gradient non-linearity (at half
#: the FOV): the distortion calibration's input.
TUBE_PROTOCOL = Acquisition(
    matrix=(64, 64, 64), fov_um=(3_200.0,) * 3, b0_tesla=9.4, sequence="spin_echo",
    te_ms=(9.0,), tr_ms=700.0, flip_deg=90.0, bandwidth_hz=50_000.0, temperature_k=293.0,
    max_gradient_mT_per_m=1000.0)
TUBE_DIAMETER_UM = 600.0
TUBE_NONLINEARITY = 0.15

#: Hyperpolarized ¹³C of 50 µm microdiamonds (the demo's protocol).
DIAMOND_PROTOCOL = Acquisition(
    matrix=(32, 64, 64), fov_um=(1_600.0, 3_200.0, 3_200.0), b0_tesla=9.4, nucleus="13C",
    sequence="gradient_echo", te_ms=(0.5,), tr_ms=5.0, flip_deg=5.0, bandwidth_hz=100_000.0)


def _simulated(specimen_name, acq, seed=0, effects=None, **options) -> tuple:
    """(LayerData, specimen, k-space) of one simulation (specimen on a 2× finer grid): k-space,
    magnitude, phase and ground-truth layers named as the Simulation dock names them, truth
    labels named by tissue."""
    from napari_mrmicro._layers import tissue_features
    from napari_mrmicro.core.simulate import simulate
    from napari_mrmicro.widgets._results import kspace_layers
    from napari_mrmicro.widgets.simulation import result_name

    specimen = make_specimen(specimen_name, tuple(2 * n for n in acq.matrix),
                             tuple(v / 2 for v in acq.voxel_um), seed=seed, **options)
    kspace = simulate(specimen, acq, seed=seed, effects=effects, **(
        {"polarization": 0.3} if acq.nucleus == "13C" else {}))
    layers = kspace_layers(kspace, result_name(specimen_name, acq))
    tissues = dict(enumerate(specimen.tissue_names))
    for _, kwargs, layer_type in layers:
        kwargs["metadata"]["mrmicro"]["sample"] = True
        if layer_type == "labels":
            kwargs["metadata"]["mrmicro"]["tissues"] = tissues
            kwargs["features"] = tissue_features(kwargs["metadata"]["mrmicro"])
    return layers, specimen, kspace


def cochlea() -> list[tuple]:
    """File > Open Sample: a CIVM-style 9.4 T spin-echo mouse cochlea at 25 µm (simulated)."""
    return _simulated("cochlea", COCHLEA_PROTOCOL, species="mouse")[0]


def qsm_gre() -> list[tuple]:
    """File > Open Sample: a three-echo 9.4 T GRE of the cochlea for QSM, with the true
    susceptibility and field maps (hidden layers)."""
    return _simulated("cochlea", GRE_PROTOCOL, species="mouse")[0]


def calibration_tube() -> list[tuple]:
    """File > Open Sample: a tube of known inner diameter scanned with gradient
    non-linearity, and its lumen segmented (label 1) for Morphometry's distortion
    calibration."""
    from scipy import ndimage

    from napari_mrmicro.core.segmentation import threshold_mask
    from napari_mrmicro.core.simulate import Effects

    layers, specimen, _ = _simulated(
        "tube", TUBE_PROTOCOL, effects=Effects(gradient_nonlinearity=TUBE_NONLINEARITY),
        inner_diameter_um=TUBE_DIAMETER_UM, axis=2, offset_um=(800.0, 0.0, 0.0))
    magnitude = next((data, kwargs) for data, kwargs, _ in layers
                     if kwargs["name"].endswith("magnitude"))
    parts, _ = ndimage.label(threshold_mask(magnitude[0]))
    lumen = (parts == np.bincount(parts.ravel())[1:].argmax() + 1).astype(np.uint8)
    meta = {**magnitude[1]["metadata"]["mrmicro"], "tissues": {1: "tube lumen"},
            "tube_inner_diameter_um": TUBE_DIAMETER_UM}
    layers.append((lumen, {
        "name": f"tube lumen ⌀{TUBE_DIAMETER_UM:g} µm (segmented)", "scale": magnitude[1]["scale"],
        "translate": magnitude[1]["translate"], "units": magnitude[1]["units"],
        "axis_labels": magnitude[1]["axis_labels"], "metadata": {"mrmicro": meta},
        "features": {"index": np.array([1]), "name": np.array(["tube lumen"], object)}},
        "labels"))
    return layers


def microdiamonds() -> list[tuple]:
    """File > Open Sample: ¹³C MRI of hyperpolarized microdiamonds and a fluorescence stack
    of the same particles at an unknown stage pose (for Dual-mode particles / Register)."""
    from napari_mrmicro.core.optical import render_spots
    from napari_mrmicro.core.transforms import apply_affine, rigid_affine

    layers, specimen, _ = _simulated("microdiamonds", DIAMOND_PROTOCOL, seed=3, count=40,
                                     diameter_um=50.0)
    pose = rigid_affine((3.0, -2.0, 4.0), (30.0, -45.0, 25.0), centre_um=(800, 1600, 1600))
    shape, spacing = (80, 160, 160), (20.0, 20.0, 20.0)
    optical = render_spots(shape, spacing, apply_affine(
        np.linalg.inv(pose), specimen.truth["particle_centres_um"]), (30.0, 15.0, 15.0),
        background=0.02)
    optical += np.random.default_rng(5).normal(0, 0.03, shape).astype(np.float32)
    layers.append((optical.astype(np.float32), {
        "name": "microdiamonds fluorescence 20 µm", "scale": spacing, "units": ("µm",) * 3,
        "axis_labels": ("z", "y", "x"), "colormap": "magma", "blending": "additive",
        "metadata": {"mrmicro": {"role": "optical", "sample": True,
                                 "psf_sigma_um": (30.0, 15.0, 15.0)}}}, "image"))
    return layers
