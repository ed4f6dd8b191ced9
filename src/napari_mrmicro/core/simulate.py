"""Simulated MR microscopy acquisitions: a digital specimen and a protocol give k-space.

The specimen is sampled on a grid finer than the acquisition matrix; each tissue's
transverse magnetization is Fourier transformed on that grid and only the acquired
central k-space is kept, so partial volume and Gibbs ringing arise as in real data.
Per k-space sample the model then applies what depends on when and how that sample was
encoded: T2/T2* decay along the readout, chemical-shift evolution, and the diffusion
attenuation ``exp(−b·D)`` of the imaging gradients (every MRM sequence is partly a
diffusion-weighted one: Callaghan, *Principles of NMR Microscopy*, 1991, ch. 4).
Susceptibility adds the dipole field of χ as phase growing with TE (gradient echo) and as
a displacement ``ΔB/G`` along the readout; gradient non-linearity displaces voxels more
the farther they sit from the FOV centre.

Sign convention: the image is the centred inverse FFT of k-space (DESIGN.md) and a
positive frequency offset Δf accrues phase ``+2π·Δf·t``, so a species or voxel at +Δf
appears ``Δf / BW_px`` pixels towards *lower* readout index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.fft

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.physics import (
    gradient_echo_signal,
    hyperpolarized_signal,
    phase_encode_b_values_s_per_mm2,
    readout_b_values_s_per_mm2,
    snr_water,
    spin_echo_signal,
    thermal_polarization,
)
from napari_mrmicro.core.qsm.kernel import forward_field
from napari_mrmicro.core.specimens import Specimen


@dataclass(frozen=True)
class Effects:
    """What the simulation models; each effect can be switched off.

    ``gradient_nonlinearity`` is the relative gradient error at a radius of half the
    largest FOV extent, growing with the radius squared (the leading term of a
    symmetric gradient coil's field error): a voxel at radius r is encoded at
    ``r·(1 + c·(r/R)²)``, e.g. c = 0.02 displaces a voxel at R outwards by 2 % of R;
    0 switches it off.
    """

    relaxation: bool = True
    noise: bool = True
    diffusion: bool = True
    readout_decay: bool = True
    chemical_shift: bool = True
    susceptibility: bool = True
    gradient_nonlinearity: float = 0.0


#: Fraction of the maximum tissue amplitude below which a tissue is left out (e.g. bone
#: at TE ≫ T2, whose signal is exp(−TE/T2) ≈ 0).
NEGLIGIBLE = 1e-7


def simulate(specimen: Specimen, acquisition: Acquisition, seed: int | None = None,
             effects: Effects | None = None, polarization: float = 0.1,
             coil_temperature_k: float | None = None, progress=None) -> KSpace:
    """Simulate a Cartesian acquisition of a digital specimen.

    Parameters
    ----------
    specimen : Specimen
        Its grid must cover the FOV and be an integer multiple of the matrix per axis
        (for example twice as fine).
    acquisition : Acquisition
        3-D Cartesian, or 2-D multi-slice with ``extra["multislice"] = True`` (contiguous
        slices along z; slice profile rectangular). ¹H is thermally polarized; ¹³C is
        hyperpolarized to ``polarization``, spent by each excitation (one per phase-encode
        line, in linear order), without T1 recovery.
    seed : int, optional
        Seed of the noise; the same seed gives the same k-space.
    effects : Effects, optional
        Default: everything on except gradient non-linearity.
    polarization : float
        ¹³C hyperpolarization (fraction), used when ``acquisition.nucleus == "13C"``.
    coil_temperature_k : float, optional
        For the noise model (default: ``acquisition.extra["coil_temperature_k"]`` or 298 K).
    progress : callable, optional
        ``progress(stage: str, fraction: float)``.

    Returns
    -------
    KSpace
        ``data`` (echo, z, y, x) complex64 with DC at N//2, image values in units of the
        fully relaxed water signal; ``truth`` holds ``labels``, ``proton_density``,
        ``chi_ppm`` and ``field_ppm`` on the image grid, the noise ``sigma`` and
        ``origin_um``: where image voxel 0 sits in the specimen's array frame (the
        centre of its block of fine voxels), so ``specimen.truth`` positions line up.
    """
    acq, fx = acquisition, effects or Effects()
    report = progress or (lambda stage, fraction: None)
    multislice = bool(acq.extra.get("multislice"))
    factors = _grid_factors(specimen, acq)
    _check_memory(specimen.labels.shape, acq)
    n_echo = len(acq.te_ms)
    kaxes = (1, 2) if multislice else (0, 1, 2)

    report("field", 0.0)
    chi = specimen.property_map("chi_ppm")
    field = None
    if fx.susceptibility and np.ptp(chi) > 0:
        # the image-space kernel: the continuous field of the voxels at any B0 angle
        field = forward_field(chi, specimen.spacing_um, acq.b0_direction, kernel="spatial")
    truth = {"origin_um": tuple((f - 1) / 2 * s for f, s in zip(factors, specimen.spacing_um)),
             "labels": _subsample(specimen.labels, factors),
             "proton_density": _block_mean(specimen.property_map("proton_density"), factors),
             "chi_ppm": _block_mean(chi, factors)}
    del chi
    truth["field_ppm"] = (_block_mean(field, factors) if field is not None
                          else np.zeros(acq.matrix, np.float32))

    report("displacement", 0.1)
    labels, field = _displace(specimen, acq, field, factors, fx.gradient_nonlinearity)

    amplitudes = _tissue_amplitudes(specimen, acq, fx, polarization)  # (tissue, echo)
    active = [t for t in range(len(specimen.tissues))
              if np.abs(amplitudes[t]).max() > NEGLIGIBLE * max(np.abs(amplitudes).max(), 1e-30)
              and np.any(labels == t)]
    timing = _ReadoutTiming(acq)
    diffusion_b = _b_values(acq, timing) if fx.diffusion else None
    hyper = _excitation_weights(acq, polarization) if acq.nucleus == "13C" else None
    gamma_b0 = acq.gamma_bar_hz_per_t * acq.b0_tesla * 1e-6  # Hz per ppm

    kspace = np.zeros((n_echo,) + acq.matrix, dtype=np.complex64)
    phase_per_echo = field is not None and acq.sequence == "gradient_echo"
    masks = {t: labels == t for t in active}
    spectra = {}
    steps = max(1, len(active) * (n_echo if phase_per_echo else 1))
    for e, te_ms in enumerate(acq.te_ms):
        if phase_per_echo or not spectra:
            # φ = 2π·γ̄·B0·field·TE (DESIGN.md): gradient echoes keep it; a spin echo
            # refocuses it at TE.
            phase = (np.exp(np.complex64(2j * np.pi * gamma_b0 * te_ms * 1e-3) * field)
                     if phase_per_echo else None)
            for t in active:
                image = (np.where(masks[t], phase, np.complex64(0)) if phase_per_echo
                         else masks[t].astype(np.float32))
                spectra[t] = _truncated_fft(image, acq.matrix, factors, kaxes)
                del image
                report("k-space", 0.2 + 0.7 * (len(spectra) + e * len(active)) / steps)
            del phase
        for t in active:
            tissue = specimen.tissues[t]
            weights = timing.readout_weights(tissue, te_ms, acq.sequence, fx, gamma_b0)
            contribution = spectra[t] * amplitudes[t, e]
            contribution *= weights.reshape(_along(acq.readout_axis))
            if diffusion_b is not None and tissue.diffusion_um2_per_ms > 0:
                contribution *= np.exp(-diffusion_b * np.float32(tissue.diffusion_um2_per_ms
                                                                  * 1e-3))
            if hyper is not None:
                contribution *= hyper
            kspace[e] += contribution
    del masks, spectra

    sigma = 1.0 / snr_water(acq, coil_temperature_k) if fx.noise else 0.0
    if sigma:
        report("noise", 0.95)
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(kspace.shape + (2,), dtype=np.float32)
        noise *= np.float32(sigma)
        kspace += noise.view(np.complex64)[..., 0]
    truth["sigma"] = float(sigma)
    report("done", 1.0)
    return KSpace(kspace, acq, multislice=multislice, truth=truth)


def _grid_factors(specimen: Specimen, acq: Acquisition) -> tuple:
    """Integer ratio of specimen grid to matrix per axis; refuse grids that do not fit."""
    shape, spacing = specimen.labels.shape, specimen.spacing_um
    if len(acq.matrix) != 3:
        raise ValueError(f"simulate: the acquisition matrix must be 3-D (z, y, x), got "
                         f"{acq.matrix} (2-D: one slice, matrix (1, ny, nx))")
    factors = []
    for axis, (n, s, m, fov) in enumerate(zip(shape, spacing, acq.matrix, acq.fov_um)):
        if n % m:
            raise ValueError(f"simulate: the specimen grid ({n} voxels on axis {axis}) must "
                             f"be an integer multiple of the matrix ({m})")
        if abs(n * s - fov) > 0.5 * s:
            raise ValueError(f"simulate: the specimen spans {n * s:g} µm on axis {axis} but "
                             f"the FOV is {fov:g} µm; build the specimen on the FOV")
        factors.append(n // m)
    return tuple(factors)


def _check_memory(shape, acq: Acquisition) -> None:
    """Refuse a simulation whose working set will not fit in the available memory."""
    fine = int(np.prod(shape))
    needed = fine * (1 + 4 + 4 + 8 + 8 + 8) + int(np.prod(acq.matrix)) * 8 * (
        len(acq.te_ms) + 4)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        raise MemoryError(f"simulate: a {shape} specimen for a {acq.matrix} matrix needs about "
                          f"{needed / 2**30:.1f} GiB, only {available / 2**30:.1f} GiB free")


def _along(axis: int, ndim: int = 3) -> tuple:
    return tuple(-1 if i == axis else 1 for i in range(ndim))


def _block_mean(volume: np.ndarray, factors) -> np.ndarray:
    """Mean over blocks of ``factors`` voxels: the fine grid averaged to the image grid."""
    (fz, fy, fx), (nz, ny, nx) = factors, volume.shape
    blocks = volume.reshape(nz // fz, fz, ny // fy, fy, nx // fx, fx)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float32)


def _subsample(volume: np.ndarray, factors) -> np.ndarray:
    """The fine voxel at each image voxel's centre (the upper middle one for even factors)."""
    return volume[tuple(slice(f // 2, None, f) for f in factors)].copy()


def _truncated_fft(image: np.ndarray, matrix, factors, axes) -> np.ndarray:
    """Centred, ortho-normalised k-space of ``matrix`` size from a finer image.

    The FFT runs one axis at a time and keeps only the acquired frequencies after each,
    so later axes work on less data. Frequencies are taken relative to the centre of the
    image voxel ``matrix // 2`` (fine coordinate ``f·(m//2) + (f−1)/2``), and scaled so
    a uniform region keeps its value in the image. Non-k-space axes (multi-slice z) are
    averaged over their blocks (a rectangular slice profile).
    """
    out = image
    for axis in range(3):
        if axis not in axes and factors[axis] > 1:
            shape = list(out.shape)
            shape[axis:axis + 1] = [matrix[axis], factors[axis]]
            out = out.reshape(shape).mean(axis=axis + 1, dtype=out.dtype)
    for axis in sorted(axes, reverse=True):  # the contiguous axis first: it is the largest
        n, m, f = out.shape[axis], matrix[axis], factors[axis]
        q = np.arange(m) - m // 2
        if np.isrealobj(out):  # half spectrum; X[−q] = conj(X[q]) along a real line
            half = scipy.fft.rfft(out, axis=axis, workers=-1)
            out = np.take(half, np.abs(q), axis=axis)
            del half
            negative = (q < 0).reshape(_along(axis))
            out = np.where(negative, out.conj(), out)
        else:
            spectrum = scipy.fft.fft(out, axis=axis, workers=-1, overwrite_x=out is not image)
            out = np.take(spectrum, q % n, axis=axis)
            del spectrum
        centre = f * (m // 2) + (f - 1) / 2
        out *= (np.exp(2j * np.pi * q * centre / n) * (np.sqrt(m) / n)).astype(
            np.complex64).reshape(_along(axis))
    return out.astype(np.complex64, copy=False)


class _ReadoutTiming:
    """When each readout sample is taken, relative to the echo."""

    def __init__(self, acq: Acquisition):
        self.axis = acq.readout_axis
        n = acq.matrix[self.axis]
        self.dwell_s = 1.0 / acq.bandwidth_hz
        self.from_echo_s = (np.arange(n) - n // 2) * self.dwell_s

    def readout_weights(self, tissue, te_ms: float, sequence: str, fx: Effects,
                        gamma_b0: float) -> np.ndarray:
        """Decay and chemical-shift evolution of one tissue at each readout sample."""
        t = self.from_echo_s
        weights = np.ones(t.shape, dtype=np.complex128)
        if fx.readout_decay:
            t2, t2s = tissue.t2_ms * 1e-3, tissue.t2star_ms * 1e-3
            if sequence == "gradient_echo":
                weights *= np.exp(-t / t2s)
            else:  # around a spin echo: T2 decay plus reversible dephasing, 1/T2' = 1/T2* − 1/T2
                rate_prime = max(1.0 / t2s - 1.0 / t2, 0.0)
                weights *= np.exp(-t / t2 - np.abs(t) * rate_prime)
        if fx.chemical_shift and tissue.shift_ppm:
            df = tissue.shift_ppm * gamma_b0
            elapsed = t + (te_ms * 1e-3 if sequence == "gradient_echo" else 0.0)
            weights *= np.exp(2j * np.pi * df * elapsed)
        return weights.astype(np.complex64)


def _b_values(acq: Acquisition, timing: _ReadoutTiming) -> np.ndarray:
    """b-value (s/mm²) of every k-space sample: readout plus phase-encode lobes held until
    the sample is read (the planner's model, :func:`~napari_mrmicro.core.physics.protocol_summary`)."""
    axis = timing.axis
    n_read = acq.matrix[axis]
    b = readout_b_values_s_per_mm2(n_read, acq.bandwidth_hz, acq.fov_um[axis],
                                   acq.nucleus).astype(np.float32).reshape(_along(axis))
    lobe_ms = (n_read // 2) * timing.dwell_s * 1e3
    held_s = (np.arange(n_read) + 0.5) * timing.dwell_s  # from the lobe's end to the sample
    multislice = bool(acq.extra.get("multislice"))
    total = np.broadcast_to(b, acq.matrix).copy()
    for pe in range(3):
        if pe == axis or (multislice and pe == 0):
            continue
        m, fov_m = acq.matrix[pe], acq.fov_um[pe] * 1e-6
        lobe = phase_encode_b_values_s_per_mm2(m, acq.fov_um[pe], lobe_ms, 0.0, acq.nucleus)
        total += lobe.astype(np.float32).reshape(_along(pe))
        k2 = ((2 * np.pi * (np.arange(m) - m // 2) / fov_m) ** 2).reshape(_along(pe))
        total += (k2 * held_s.reshape(_along(axis)) * 1e-6).astype(np.float32)
    return total


def _excitation_weights(acq: Acquisition, polarization: float) -> np.ndarray:
    """cos^n α depletion of hyperpolarized magnetization, one excitation per phase-encode
    line in linear order (outer axis slowest), averaged over repeated rounds; relative to
    the first excitation."""
    pe_axes = [a for a in range(3) if a != acq.readout_axis
               and not (acq.extra.get("multislice") and a == 0)]
    lines = int(np.prod([acq.matrix[a] for a in pe_axes]))
    signal = hyperpolarized_signal(polarization, acq.flip_deg, lines * acq.averages)
    per_line = (signal.reshape(acq.averages, lines).mean(axis=0) / signal[0]).astype(np.float32)
    shape = [1, 1, 1]
    for a in pe_axes:
        shape[a] = acq.matrix[a]
    return per_line.reshape(shape)


def _tissue_amplitudes(specimen: Specimen, acq: Acquisition, fx: Effects,
                       polarization: float) -> np.ndarray:
    """Signal of each tissue at each echo, in units of fully relaxed water (¹H) or of the
    thermal ¹³C signal of water's spin density (¹³C), at the first excitation."""
    out = np.zeros((len(specimen.tissues), len(acq.te_ms)), dtype=np.complex64)
    for t, tissue in enumerate(specimen.tissues):
        for e, te in enumerate(acq.te_ms):
            if acq.nucleus == "13C":
                ratio = polarization / thermal_polarization(acq.b0_tesla, acq.temperature_k,
                                                            "13C")
                value = tissue.c13_density * ratio * np.sin(np.deg2rad(acq.flip_deg))
                if fx.relaxation:
                    value *= np.exp(-te / tissue.t2star_ms if acq.sequence == "gradient_echo"
                                    else -te / tissue.t2_ms)
            elif not fx.relaxation:
                value = tissue.proton_density
            elif acq.sequence == "gradient_echo":
                value = gradient_echo_signal(tissue.proton_density, tissue.t1_ms,
                                             tissue.t2star_ms, te, acq.tr_ms, acq.flip_deg)
            else:
                value = spin_echo_signal(tissue.proton_density, tissue.t1_ms, tissue.t2_ms,
                                         te, acq.tr_ms)
            out[t, e] = float(value)
    return out


def _displace(specimen: Specimen, acq: Acquisition, field, factors, nonlinearity: float):
    """Labels (and field) as encoded: shifted along the readout by the susceptibility
    off-resonance ``Δf / BW_px`` (towards lower index for Δf > 0; the field taken at the
    encoded position) and radially by the gradient non-linearity. Backward
    nearest-neighbour mapping."""
    labels = specimen.labels
    if field is None and not nonlinearity:
        return labels, field
    axis = acq.readout_axis
    gamma_b0 = acq.gamma_bar_hz_per_t * acq.b0_tesla * 1e-6
    per_ppm = np.float32(gamma_b0 / (acq.bandwidth_hz / acq.matrix[axis]) * factors[axis])
    if not nonlinearity:
        return _shift_along(labels, field, np.rint(field * per_ppm).astype(np.int32), axis)
    shape = labels.shape
    spacing = np.asarray(specimen.spacing_um, dtype=np.float32)
    positions = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * d).reshape(_along(i))
                 for i, (n, d) in enumerate(zip(shape, spacing))]
    k = np.float32(nonlinearity / (0.5 * max(acq.fov_um)) ** 2)
    out_labels = np.empty_like(labels)
    out_field = None if field is None else np.empty_like(field)
    slab = max(1, int(2**23 // (shape[1] * shape[2])))
    buffer = np.empty((slab,) + shape[1:], dtype=np.float32)
    flat = np.empty((slab,) + shape[1:], dtype=np.float64)
    for z0 in range(0, shape[0], slab):
        z1 = min(shape[0], z0 + slab)
        pos = [positions[0][z0:z1], positions[1], positions[2]]
        # encoded radius r' = r(1 + k r²); its source r = r'·s with s = 1/(1 + k r'² s²),
        # solved by two fixed-point steps from s = 1 (relative error ~ (k r²)³)
        r2 = pos[0] ** 2 + pos[1] ** 2 + pos[2] ** 2
        scale = np.ones_like(r2)
        for _ in range(2):
            scale = 1.0 / (1.0 + k * r2 * scale * scale)
        src, index = buffer[: z1 - z0], flat[: z1 - z0]
        for i, (p, n, d) in enumerate(zip(pos, shape, spacing)):
            np.multiply(scale, p / d, out=src)
            src += np.float32((n - 1) / 2)
            if field is not None and i == axis:
                src += field[z0:z1] * per_ppm
            np.rint(src, out=src)
            np.clip(src, 0, n - 1, out=src)
            if i == 0:
                index[...] = src
            else:
                index *= n
                index += src
        indices = index.astype(np.intp)
        out_labels[z0:z1] = np.take(labels, indices)
        if field is not None:
            out_field[z0:z1] = np.take(field, indices)
    return out_labels, out_field


def _shift_along(labels, field, shift, axis):
    """Backward integer shift along one axis, ``out[n] = in[n + shift[n]]``, touching only
    the voxels that move."""
    moving = np.flatnonzero(shift)
    if moving.size == 0:
        return labels, field
    stride = int(np.prod(labels.shape[axis + 1:]))
    n = labels.shape[axis]
    position = (moving // stride) % n
    step = np.clip(position + shift.ravel()[moving], 0, n - 1) - position
    source = moving + step * stride
    out_labels, out_field = labels.copy(), field.copy()
    out_labels.ravel()[moving] = labels.ravel()[source]
    out_field.ravel()[moving] = field.ravel()[source]
    return out_labels, out_field
