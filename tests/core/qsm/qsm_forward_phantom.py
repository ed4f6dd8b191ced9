"""A multi-echo gradient-echo scan of a cylinder phantom by an independent forward model.

The susceptibility phantom, the dipole field (2× zero-padded, kernel with D(0) = 1/3), the
phase offset, the gradient-echo signal, k-space cropping to the acquired resolution and the
complex noise all come from qsm-forward (Stewart et al., MIT; PyPI ``qsm-forward``), not
from our own simulator. On top of its five-cylinder phantom (a large tissue cylinder with
five small cylinders of χ −0.2 … 0.4 ppm) the scan has what MR microscopy specimens have:

* an air bubble just outside the specimen (χ +9.4 ppm against water, no signal): a strong
  background field;
* a bone-like inclusion (χ −2 ppm, no proton signal) and an air pocket (no signal) inside
  the specimen: signal voids the mask must leave out.

Used by the QSM acceptance tests and by ``benchmarks/qsm_methods_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The five small cylinders' χ (ppm, relative to the tissue cylinder).
CYLINDER_CHI = (-0.2, -0.1, 0.1, 0.2, 0.4)
CYLINDER_RADII_FINE = (8, 8, 8, 8, 8)  # fine voxels (half the acquired voxel)
AIR_CHI, BONE_CHI = 9.4, -2.0


@dataclass
class ForwardScan:
    magnitude: np.ndarray  # (echo, z, y, x) float32
    phase: np.ndarray  # (echo, z, y, x) float32, wrapped
    te_ms: tuple
    b0_tesla: float
    spacing_um: tuple
    b0_direction: tuple
    chi_ppm: np.ndarray  # truth on the acquired grid (z, y, x)
    cylinders: list  # boolean cores of the five cylinders, acquired grid
    tissue: np.ndarray  # voxels with signal (acquired grid, partial volume > 0.5)
    voids: np.ndarray  # signal voids inside the specimen (acquired grid)


def _ball(shape, centre, radius):
    z, y, x = np.indices(shape, sparse=True)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < radius**2


def forward_scan(n: int = 48, voxel_um: float = 50.0, b0_tesla: float = 9.4,
                 te_ms=(2.0, 4.0, 6.0, 8.0), peak_snr: float = 100.0,
                 seed: int = 0, voids=("bone", "air", "bubble"),
                 b0_direction=(1.0, 0.0, 0.0), cylinder_chi=CYLINDER_CHI) -> ForwardScan:
    """The phantom scanned at ``n³`` voxels of ``voxel_um``, simulated on a 2× finer grid.

    ``b0_direction`` (array axes, normalised here; the default is across the cylinders)
    and ``cylinder_chi`` (five values, ppm) give other configurations of the same phantom.
    """
    import qsm_forward

    if len(cylinder_chi) != len(CYLINDER_RADII_FINE):
        raise ValueError(f"cylinder_chi needs {len(CYLINDER_RADII_FINE)} values")
    fine = 2 * n
    chi = qsm_forward.generate_susceptibility_phantom(
        resolution=[fine] * 3, background=0.0, large_cylinder_val=0.0,
        small_cylinder_radii=list(CYLINDER_RADII_FINE), small_cylinder_vals=list(cylinder_chi))
    # the specimen: qsm-forward's large cylinder (along axis 2)
    c = fine // 2
    z, y, x = np.indices((fine,) * 3, sparse=True)
    radius = 0.75 * c
    specimen = ((z - c) ** 2 + (y - c) ** 2 < radius**2) & (x >= 0.125 * fine) & (x < 0.875 * fine)
    m0 = specimen.astype(np.float64)
    # signal voids inside: a bone-like ball at the centre, an air pocket off-axis
    bone = _ball(chi.shape, (c, c, c + 0.1 * fine), 0.06 * fine)
    air_pocket = _ball(chi.shape, (c, c, c - 0.22 * fine), 0.06 * fine)
    bubble = _ball(chi.shape, (c + radius + 0.09 * fine, c, c), 0.08 * fine)
    bone &= "bone" in voids
    air_pocket &= "air" in voids
    bubble &= "bubble" in voids
    chi[bone], m0[bone] = BONE_CHI, 0.0
    chi[air_pocket], m0[air_pocket] = AIR_CHI, 0.0
    # an air bubble just outside the specimen's wall
    chi[bubble] = AIR_CHI

    b0_direction = tuple(float(v) for v in np.asarray(b0_direction)
                         / np.linalg.norm(b0_direction))
    # qsm-forward's B0_dir is in array-axis order too
    field = qsm_forward.generate_field(chi, m0, voxel_size=[voxel_um / 2 * 1e-3] * 3,
                                       B0_dir=[b0_direction[0], b0_direction[1],
                                               b0_direction[2]])
    offset = qsm_forward.generate_phase_offset(m0, m0, m0.shape)
    rng = np.random.default_rng(seed)
    magnitudes, phases = [], []
    for te in te_ms:
        signal = qsm_forward.generate_signal(field, B0=b0_tesla, TR=0.05, TE=te * 1e-3,
                                             flip_angle=20, phase_offset=offset, R1=1.0,
                                             R2star=30.0, M0=m0)
        signal = qsm_forward.crop_kspace(signal, [n] * 3)
        signal = qsm_forward.add_noise(signal, peak_snr=peak_snr, rng=rng)
        magnitudes.append(np.abs(signal))
        phases.append(np.angle(signal))

    def down(volume):  # the mean over each acquired voxel (partial volume, no ringing)
        # cropping k-space samples the fine grid at every second voxel: acquired voxel i is
        # centred on fine voxel 2i and covers half of each neighbour (weights ¼, ½, ¼)
        volume = np.asarray(volume, np.float64)
        for axis in range(3):
            volume = 0.5 * volume + 0.25 * (np.roll(volume, 1, axis)
                                            + np.roll(volume, -1, axis))
        return volume[::2, ::2, ::2]

    coarse_chi = down(chi)

    cylinders = []
    for i, r in enumerate(CYLINDER_RADII_FINE):
        angle = 2 * np.pi * i / len(CYLINDER_RADII_FINE)
        cz, cy = c + radius / 2 * np.cos(angle), c + radius / 2 * np.sin(angle)
        core = ((z - cz) ** 2 + (y - cy) ** 2 < (r - 2) ** 2) & (x >= 0.25 * fine) \
            & (x < 0.75 * fine)
        cylinders.append(down(np.broadcast_to(core, chi.shape)) == 1)
    return ForwardScan(
        magnitude=np.stack(magnitudes).astype(np.float32),
        phase=np.stack(phases).astype(np.float32), te_ms=tuple(te_ms), b0_tesla=b0_tesla,
        spacing_um=(voxel_um,) * 3, b0_direction=b0_direction,
        chi_ppm=coarse_chi.astype(np.float32), cylinders=cylinders,
        tissue=down(m0) > 0.5, voids=down(bone | air_pocket) > 0.5)
