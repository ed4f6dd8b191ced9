"""Simulated MR microscopy acquisitions: a digital specimen and a protocol give k-space.

The specimen is sampled on a grid finer than the acquisition matrix; the transverse
magnetization of each group of tissues that share a k-space modulation is Fourier
transformed on that grid and only the acquired central k-space is kept
(:mod:`~napari_mrmicro.core.truncation`), so partial volume and Gibbs ringing arise as in
real data.
Per k-space sample the model then applies what depends on when and how that sample was
encoded: T2/T2* decay along the readout, chemical-shift evolution, and the diffusion
attenuation ``exp(−b·D)`` of the imaging gradients (every MRM sequence is partly a
diffusion-weighted one: Callaghan, *Principles of NMR Microscopy*, 1991, ch. 4); a
diffusion preparation (``extra["diffusion_b_matrix_s_per_mm2"]``) weighs each tissue by
its diffusion tensor.
Susceptibility adds the dipole field of χ as phase growing with TE (gradient echo) and as
a displacement ``ΔB/G`` along the readout; gradient non-linearity displaces voxels more
the farther they sit from the FOV centre (:mod:`~napari_mrmicro.core.encoding`). The big
passes run slab by slab on all cores.

Sign convention: the image is the centred inverse FFT of k-space (DESIGN.md) and a
positive frequency offset Δf accrues phase ``+2π·Δf·t``, so a species or voxel at +Δf
appears ``Δf / BW_px`` pixels towards *lower* readout index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core._slabs import for_each_slab, slab_size
from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.encoding import encode
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.memory import available_memory_bytes, check_memory
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
from napari_mrmicro.core.truncation import along, block_mean, keep_frequencies, upsample_linear


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
             coil_temperature_k: float | None = None, progress=None,
             device: str | None = None) -> KSpace:
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
    device : {"cpu", "gpu"}, optional
        Where the transforms run (:mod:`~napari_mrmicro.core.backend`; default the CPU,
        or the default of :func:`~napari_mrmicro.core.backend.use_device`): on the GPU
        the susceptibility field and, for each tissue group, its image (built there from
        the encoded labels, field and density, which cross once) and its x, y and z
        transforms run through CuPy and cuFFT, and only the matrix-sized spectrum comes
        back; labels, encoding, relaxation and noise stay on the CPU, and the k-space is a
        numpy array.

    Returns
    -------
    KSpace
        ``data`` (echo, z, y, x) complex64 with DC at N//2, image values in units of the
        fully relaxed water signal; ``truth`` holds ``labels``, ``proton_density``,
        ``chi_ppm`` and ``field_ppm`` on the image grid, the noise ``sigma`` and
        ``origin_um``: where image voxel 0 sits in the specimen's array frame (the
        centre of its block of fine voxels), so ``specimen.truth`` positions line up.

    Notes
    -----
    The susceptibility field is the image-space dipole convolution of the voxel-averaged
    χ on the image grid, interpolated linearly onto the specimen grid, so that each
    voxel dephases across its own field gradient. Tissues whose k-space modulation is
    the same (relaxation, chemical shift, diffusion) share one Fourier transform.
    """
    acq, fx = acquisition, effects or Effects()
    device = backend.resolve(device)
    report = progress or (lambda stage, fraction: None)
    multislice = bool(acq.extra.get("multislice"))
    factors = _grid_factors(specimen, acq)
    amplitudes = _tissue_amplitudes(specimen, acq, fx, polarization)  # (tissue, echo)
    groups = _groups(specimen, acq, fx, amplitudes)
    _check_memory(specimen.labels.shape, acq, factors)
    if device == "gpu":  # one group's image and its transforms on the device
        backend.check_device_memory(_GPU_BYTES_PER_VOXEL * specimen.labels.size,
                                    "simulate's k-space transforms", device,
                                    "a coarser specimen grid")
    gamma_b0 = acq.gamma_bar_hz_per_t * acq.b0_tesla * 1e-6  # Hz per ppm

    report("truth", 0.0)
    table = np.array([[getattr(t, p) for t in specimen.tissues]
                      for p in ("proton_density", "chi_ppm")], dtype=np.float32)
    density, chi = block_mean(specimen.labels, factors, table)
    truth = {"origin_um": tuple((f - 1) / 2 * s for f, s in zip(factors, specimen.spacing_um)),
             "labels": _subsample(specimen.labels, factors),
             "proton_density": density, "chi_ppm": chi}
    field = None
    if fx.susceptibility and np.ptp(truth["chi_ppm"]) > 0:
        report("field", 0.05)
        coarse = forward_field(truth["chi_ppm"], acq.voxel_um, acq.b0_direction,
                               kernel="spatial", device=device)
        truth["field_ppm"] = coarse
        field = upsample_linear(coarse, factors)
    else:
        truth["field_ppm"] = np.zeros(acq.matrix, np.float32)

    report("encoding", 0.1)
    axis = acq.readout_axis
    labels, field, density = encode(
        specimen.labels, specimen.spacing_um, readout_axis=axis, field_ppm=field,
        pixels_per_ppm=gamma_b0 / (acq.bandwidth_hz / acq.matrix[axis]) * factors[axis],
        nonlinearity=fx.gradient_nonlinearity, radius_um=0.5 * max(acq.fov_um),
        report=lambda fraction: report("encoding", 0.1 + 0.2 * fraction))

    timing = _ReadoutTiming(acq)
    diffusion_b = _b_values(acq, timing) if fx.diffusion else None
    hyper = _excitation_weights(acq, polarization) if acq.nucleus == "13C" else None
    kspace = np.zeros((len(acq.te_ms),) + acq.matrix, dtype=np.complex64)
    # φ = 2π·γ̄·B0·field·TE (DESIGN.md): gradient echoes keep it; a spin echo refocuses it
    phase_per_echo = field is not None and acq.sequence == "gradient_echo"
    spectra = []
    for e, te_ms in enumerate(acq.te_ms):
        if phase_per_echo or not spectra:
            radians_per_ppm = 2 * np.pi * gamma_b0 * te_ms * 1e-3 if phase_per_echo else None
            spectra = _group_spectra(labels, field, density, radians_per_ppm, groups,
                                     [amplitudes[:, e if phase_per_echo else g.echo]
                                      for g in groups], acq.matrix, factors, multislice,
                                     lambda f, e=e: report("k-space", 0.3 + 0.65 * (
                                         e + f) / len(acq.te_ms)), device)
        for group, spectrum in zip(groups, spectra):
            if spectrum is None:
                continue
            tissue = specimen.tissues[group.tissues[0]]
            scale = 1.0 if phase_per_echo else (amplitudes[group.tissues[0], e]
                                                / amplitudes[group.tissues[0], group.echo])
            weights = timing.readout_weights(tissue, te_ms, acq.sequence, fx, gamma_b0)
            diffusion = tissue.diffusion_um2_per_ms * 1e-3 if diffusion_b is not None else 0.0
            _accumulate(kspace[e], spectrum, (weights * np.float32(scale)).reshape(along(axis)),
                        diffusion_b if diffusion > 0 else None, diffusion, hyper)
    del spectra, labels, field, density

    sigma = 1.0 / snr_water(acq, coil_temperature_k) if fx.noise else 0.0
    if sigma:
        report("noise", 0.95)
        _add_noise(kspace, sigma, seed)
    truth["sigma"] = float(sigma)
    report("done", 1.0)
    return KSpace(kspace, acq, multislice=multislice, truth=truth)


def _accumulate(target, spectrum, readout, b_values, diffusion: float, hyper) -> None:
    """``target += spectrum · readout · exp(−b·D) · hyper`` (broadcastable factors, each
    optional but ``readout``), slab by slab on all cores."""
    def rows(factor, z0, z1):
        return factor[z0:z1] if factor.shape[0] > 1 else factor

    def work(z0, z1):
        part = spectrum[z0:z1] * rows(readout, z0, z1)
        if b_values is not None:
            attenuation = b_values[z0:z1] * np.float32(-diffusion)
            part *= np.exp(attenuation, out=attenuation)
        if hyper is not None:
            part *= rows(hyper, z0, z1)
        target[z0:z1] += part

    for_each_slab(work, target.shape[0], slab_size(target[0].size, 2**18))


def _add_noise(kspace: np.ndarray, sigma: float, seed) -> None:
    """Add complex Gaussian noise of standard deviation ``sigma`` per channel, in place.

    Fixed blocks of planes draw from independent child streams of ``seed``
    (``SeedSequence.spawn``), generated on all cores; the result depends only on the seed.
    """
    planes = kspace.view(np.float32).reshape(-1, kspace.shape[-1] * 2)
    block = slab_size(planes.shape[1], 2**20)
    streams = np.random.SeedSequence(seed).spawn(-(-planes.shape[0] // block))

    def work(start, stop):
        rng = np.random.default_rng(streams[start // block])
        noise = rng.standard_normal((stop - start, planes.shape[1]), dtype=np.float32)
        noise *= np.float32(sigma)
        planes[start:stop] += noise

    for_each_slab(work, planes.shape[0], block)


@dataclass(frozen=True)
class _Group:
    """Tissues with one k-space modulation; ``echo`` is where their signal is largest."""

    tissues: tuple
    echo: int


def _groups(specimen: Specimen, acq: Acquisition, fx: Effects, amplitudes) -> list:
    """Tissues with a non-negligible signal, grouped by what shapes their k-space beyond
    amplitude: readout decay, chemical shift, diffusion and the echo-time dependence.
    Within a group the signal ratio of two tissues is the same at every echo."""
    spin_echo = acq.sequence != "gradient_echo"
    largest = max(float(np.abs(amplitudes).max()), 1e-30)
    groups = {}
    for t, tissue in enumerate(specimen.tissues):
        if np.abs(amplitudes[t]).max() <= NEGLIGIBLE * largest:
            continue
        decays = fx.readout_decay or fx.relaxation
        key = (tissue.t2_ms if spin_echo and decays else None,
               tissue.t2star_ms if (decays and not spin_echo) or fx.readout_decay else None,
               tissue.shift_ppm if fx.chemical_shift else None,
               tissue.diffusion_um2_per_ms if fx.diffusion else None)
        groups.setdefault(key, []).append(t)
    return [_Group(tuple(members), int(np.argmax(np.abs(amplitudes[members[0]]))))
            for members in groups.values()]


#: Bytes per fine voxel :func:`_group_spectra_gpu` holds on the device at its peak: the
#: labels, the field or its complex carrier, one group's amplitude, image and x spectrum.
_GPU_BYTES_PER_VOXEL = 32


def _group_spectra(labels, field, density, radians_per_ppm, groups, amplitudes, matrix,
                   factors, multislice: bool, report, device: str = "cpu") -> list:
    """The k-space of each group's transverse magnetization, ``amplitude[label]·density·
    e^{iφ}`` (real without ``radians_per_ppm``; ``density`` 1 when None), truncated to the
    matrix (None for an empty group).

    Slab by slab, on all cores, the rows along x that hold the group are Fourier
    transformed and truncated, then the slab's planes along y; z (or, multi-slice, the
    z block mean) runs last, on a quarter of the fine grid. On the GPU the whole volume
    moves there once and each group is built and transformed there
    (:func:`_group_spectra_gpu`).
    """
    if device == "gpu":
        return _group_spectra_gpu(labels, field, density, radians_per_ppm, groups, amplitudes,
                                  matrix, factors, multislice, report)
    shape, (mz, my, mx) = labels.shape, matrix
    hybrid_bytes = shape[0] * my * mx * 8
    batch = max(1, int(0.5 * available_memory_bytes() // hybrid_bytes))
    spectra = []
    for first in range(0, len(groups), batch):
        chunk = [_GroupImage(g, a) for g, a in zip(groups[first:first + batch],
                                                     amplitudes[first:first + batch])]
        hybrids = [np.zeros((shape[0], my, mx), dtype=np.complex64) for _ in chunk]
        held = [np.zeros(shape[0], dtype=bool) for _ in chunk]
        work = functools.partial(_xy_spectra, labels, field, density, radians_per_ppm, chunk,
                                 hybrids, held, matrix, factors)
        progress = (lambda f, first=first: report((first + f * len(chunk)) / len(groups)))
        for_each_slab(work, shape[0], slab_size(shape[1] * shape[2], 2**19), progress)
        for hybrid, planes in zip(hybrids, held):
            if not planes.any():
                spectra.append(None)
            elif multislice:  # slices are not encoded: their fine planes average
                spectra.append(hybrid.reshape(mz, factors[0], my, mx).mean(axis=1))
            else:
                spectrum = scipy.fft.fftn(hybrid, axes=(0,), workers=-1, overwrite_x=True)
                spectra.append(keep_frequencies(spectrum, 0, shape[0], mz, factors[0]))
                del spectrum
        del hybrids
    return spectra


def _group_spectra_gpu(labels, field, density, radians_per_ppm, groups, amplitudes, matrix,
                       factors, multislice: bool, report) -> list:
    """:func:`_group_spectra` on the GPU: the labels, field and density cross once; each
    group's image is built over the whole volume there and transformed along x, y and z
    (truncated after each), and only its matrix-sized spectrum comes back."""
    xp = backend.namespace("gpu")
    fft = backend.fft(xp)
    (nz, ny, nx), (mz, my, mx) = labels.shape, matrix
    on_device = xp.asarray(labels)
    carrier = None if density is None else xp.asarray(density)
    if radians_per_ppm is not None:
        phase = xp.asarray(field) * np.float32(radians_per_ppm)
        turn = xp.empty(phase.shape, dtype=np.complex64)
        xp.cos(phase, out=turn.real)
        xp.sin(phase, out=turn.imag)
        del phase
        if carrier is not None:
            turn *= carrier
        carrier = turn
    real = carrier is None or carrier.dtype != np.complex64
    spectra = []
    for i, (group, amplitude) in enumerate(zip(groups, amplitudes)):
        image_of = _GroupImage(group, amplitude)
        voxels = image_of.amplitude(on_device)
        if not bool(voxels.any()):
            spectra.append(None)
            continue
        image = (voxels.astype(np.float32) if carrier is None
                 else xp.multiply(carrier, voxels, dtype=carrier.dtype))
        del voxels
        spectrum = (fft.rfftn(image, axes=(2,)) if real
                    else fft.fftn(image, axes=(2,), overwrite_x=True))
        del image
        spectrum = fft.fftn(keep_frequencies(spectrum, 2, nx, mx, factors[2], real,
                                             image_of.scale), axes=(1,), overwrite_x=True)
        hybrid = keep_frequencies(spectrum, 1, ny, my, factors[1])
        del spectrum
        if multislice:  # slices are not encoded: their fine planes average
            spectrum = hybrid.reshape(mz, factors[0], my, mx).mean(axis=1)
        else:
            spectrum = keep_frequencies(fft.fftn(hybrid, axes=(0,), overwrite_x=True), 0, nz,
                                        mz, factors[0])
        del hybrid
        spectra.append(backend.to_host(spectrum))
        report((i + 1) / len(groups))
    return spectra


class _GroupImage:
    """Builds one group's amplitude on a slab: by comparisons when all its tissues share
    one amplitude (then folded into the spectrum's scale), else by a look-up table."""

    def __init__(self, group, amplitude):
        self.tissues = np.array(group.tissues, dtype=np.uint8)
        values = amplitude[list(group.tissues)]
        self.uniform = bool(np.all(values == values[0]))
        self.scale = float(values[0]) if self.uniform else 1.0
        self.lut = np.zeros(256, dtype=np.float32)
        self.lut[self.tissues] = values

    def amplitude(self, labels):
        """The group's voxels: a bool mask (uniform amplitude) or their amplitudes, on the
        device of ``labels``."""
        if self.uniform:
            mask = labels == self.tissues[0]
            for t in self.tissues[1:]:
                mask |= labels == t
            return mask
        xp = backend.array_namespace(labels)
        return xp.take(xp.asarray(self.lut), labels)


def _xy_spectra(labels, field, density, radians_per_ppm, chunk, hybrids, held, matrix,
                factors, z0, z1):
    """x then y spectra of slab ``z0:z1`` for each group of ``chunk`` (CPU)."""
    _, ny, nx = labels.shape
    _, my, mx = matrix
    slab = labels[z0:z1].reshape(-1, nx)
    carrier = None if density is None else density[z0:z1].reshape(-1, nx)
    if radians_per_ppm is not None:
        phase = field[z0:z1].reshape(-1, nx) * np.float32(radians_per_ppm)
        turn = np.empty(phase.shape, dtype=np.complex64)
        np.cos(phase, out=turn.real)
        np.sin(phase, out=turn.imag)
        if carrier is not None:
            turn *= carrier
        carrier = turn
        del phase
    real = carrier is None or carrier.dtype != np.complex64
    for group, hybrid, planes in zip(chunk, hybrids, held):
        amplitude = group.amplitude(slab)
        rows = np.any(amplitude, axis=1)
        count = np.count_nonzero(rows)
        if not count:
            continue
        planes[z0:z1] = rows.reshape(z1 - z0, ny).any(axis=1)
        pick = np.flatnonzero(rows) if count < 0.75 * rows.size else slice(None)
        if carrier is None:
            image = amplitude[pick].astype(np.float32, copy=False)
        else:
            image = np.multiply(carrier[pick], amplitude[pick], dtype=carrier.dtype)
        spectrum = (scipy.fft.rfftn(image, axes=(1,), workers=1) if real else
                    scipy.fft.fftn(image, axes=(1,), workers=1, overwrite_x=True))
        del image
        if isinstance(pick, slice):
            rows_x = keep_frequencies(spectrum, 1, nx, mx, factors[2], real, group.scale)
        else:
            rows_x = np.zeros((rows.size, mx), dtype=np.complex64)
            rows_x[pick] = keep_frequencies(spectrum, 1, nx, mx, factors[2], real, group.scale)
        del spectrum
        spectrum = scipy.fft.fftn(rows_x.reshape(z1 - z0, ny, mx), axes=(1,), workers=1,
                                  overwrite_x=True)
        keep_frequencies(spectrum, 1, ny, my, factors[1], out=hybrid[z0:z1])


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


def simulation_memory_bytes(shape, acq: Acquisition, factors) -> int:
    """Bytes :func:`simulate` needs for a specimen of ``shape`` (its fine grid, ``factors``
    fine voxels per image voxel on each axis) and ``acq``: the labels twice, the field at
    the fine grid twice (plus interpolation buffers), the encoded spin density, one
    group's hybrid spectrum and the k-space with its per-group work arrays."""
    fine = int(np.prod(shape))
    return (fine * (2 + 5 * 4) + fine // factors[2] * 8
            + int(np.prod(acq.matrix)) * 8 * (len(acq.te_ms) + 4))


def _check_memory(shape, acq: Acquisition, factors) -> None:
    """Refuse a simulation whose working set will not fit in the available memory."""
    check_memory(simulation_memory_bytes(shape, acq, factors),
                 f"simulate: a {shape} specimen for a {acq.matrix} matrix",
                 advice="a coarser specimen grid or a smaller matrix")


def _subsample(volume: np.ndarray, factors) -> np.ndarray:
    """The fine voxel at each image voxel's centre (the upper middle one for even factors)."""
    return volume[tuple(slice(f // 2, None, f) for f in factors)].copy()


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
                                   acq.nucleus).astype(np.float32).reshape(along(axis))
    lobe_ms = (n_read // 2) * timing.dwell_s * 1e3
    held_s = (np.arange(n_read) + 0.5) * timing.dwell_s  # from the lobe's end to the sample
    multislice = bool(acq.extra.get("multislice"))
    total = np.broadcast_to(b, acq.matrix).copy()
    for pe in range(3):
        if pe == axis or (multislice and pe == 0):
            continue
        m, fov_m = acq.matrix[pe], acq.fov_um[pe] * 1e-6
        lobe = phase_encode_b_values_s_per_mm2(m, acq.fov_um[pe], lobe_ms, 0.0, acq.nucleus)
        total += lobe.astype(np.float32).reshape(along(pe))
        k2 = ((2 * np.pi * (np.arange(m) - m // 2) / fov_m) ** 2).reshape(along(pe))
        total += (k2 * held_s.reshape(along(axis)) * 1e-6).astype(np.float32)
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
    out = np.zeros((len(specimen.tissues), len(acq.te_ms)))
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
    prepared = diffusion_preparation(acq)
    if prepared is not None and fx.diffusion:
        for t, tissue in enumerate(specimen.tissues):
            out[t] *= np.exp(-1e-3 * np.sum(prepared * tissue.diffusion_tensor()))
    return out


def diffusion_preparation(acq: Acquisition) -> np.ndarray | None:
    """The b-matrix (3×3, s/mm², array axes (z, y, x)) of a diffusion-weighting
    preparation, ``acq.extra["diffusion_b_matrix_s_per_mm2"]``, or None.

    Pulsed gradients before the readout (Stejskal & Tanner, J Chem Phys 1965;42:288)
    attenuate each tissue's signal by ``exp(−Σ b_jk·D_jk)`` with the tissue's diffusion
    tensor; the imaging gradients' own weighting stays on each k-space sample."""
    value = acq.extra.get("diffusion_b_matrix_s_per_mm2")
    if value is None:
        return None
    b = np.asarray(value, dtype=np.float64)
    if b.shape != (3, 3) or not np.all(np.isfinite(b)) or not np.allclose(b, b.T) \
            or np.linalg.eigvalsh(b)[0] < -1e-6 * max(np.trace(b), 1.0):
        raise ValueError("simulate: extra['diffusion_b_matrix_s_per_mm2'] must be a "
                         f"symmetric positive semi-definite 3×3 (s/mm²), got {b.tolist()}")
    return b
