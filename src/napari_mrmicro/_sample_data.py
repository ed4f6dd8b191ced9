"""File > Open Sample: a molar imaged as in a published 2.35 T MR-microscopy protocol."""

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
