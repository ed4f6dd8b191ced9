"""MR-microscopy physics: magnetization, signal equations, encoding, resolution limits, SNR.

Pure functions in physical units (µm, ms, T, Hz, ppm, µm²/ms; DESIGN.md). Each docstring
states its formula and where it comes from. Scalars in, floats out, unless a function says it
works element-wise on arrays (signal equations, attenuation, shifts).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import constants

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T, Acquisition

#: Reference conditions of the relative magnetization and noise scales: ¹H at 9.4 T, 298 K.
REFERENCE_B0_TESLA = 9.4
REFERENCE_TEMPERATURE_K = 298.0

#: Named assumption behind :func:`snr_water`: the image SNR of fully relaxed pure water in a
#: (25 µm)³ voxel, 9.4 T, 298 K sample and coil, 1 average, 256³ samples at 50 kHz full
#: bandwidth: a typical few-millimetre solenoid MR-microscopy probe. Override it with the
#: value measured on your own probe (``reference_snr=``).
REFERENCE_SNR = 30.0

#: The protocol :data:`REFERENCE_SNR` refers to.
REFERENCE_ACQUISITION = Acquisition(
    matrix=(256, 256, 256), fov_um=(6400.0, 6400.0, 6400.0), b0_tesla=REFERENCE_B0_TESLA,
    nucleus="1H", bandwidth_hz=50_000.0, averages=1, temperature_k=REFERENCE_TEMPERATURE_K,
)

#: Probe (coil) temperature used when neither the caller nor ``Acquisition.extra`` states one.
ROOM_TEMPERATURE_K = 298.0


# -- input checks ------------------------------------------------------------------------

def _positive(func: str, name: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{func}: {name} must be a number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{func}: {name} must be a positive finite number, got {value!r}")
    return out


def _non_negative(func: str, name: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{func}: {name} must be a number, got {value!r}") from None
    if not (math.isfinite(out) and out >= 0):
        raise ValueError(f"{func}: {name} must be finite and >= 0, got {value!r}")
    return out


def _count(func: str, name: str, value, minimum: int = 1) -> int:
    try:
        ok = not isinstance(value, bool) and float(value) == int(value) >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_map(func: str, name: str, value) -> np.ndarray:
    out = np.asarray(value, dtype=np.float32)
    if not np.all(out > 0):  # also catches NaN
        raise ValueError(f"{func}: {name} must be positive everywhere (no zeros or NaNs)")
    return out


def _gamma_bar_hz_per_t(func: str, nucleus: str) -> float:
    if nucleus not in GAMMA_BAR_MHZ_PER_T:
        raise ValueError(f"{func}: unknown nucleus {nucleus!r}; "
                         f"choose one of {sorted(GAMMA_BAR_MHZ_PER_T)}")
    return GAMMA_BAR_MHZ_PER_T[nucleus] * 1e6


# -- magnetization -----------------------------------------------------------------------

def larmor_hz(b0_tesla: float, nucleus: str = "1H") -> float:
    """Larmor frequency f = γ/2π · B0 in Hz (¹H: 100.0 MHz at 2.35 T)."""
    return _gamma_bar_hz_per_t("larmor_hz", nucleus) * _positive("larmor_hz", "b0_tesla",
                                                                  b0_tesla)


def thermal_polarization(b0_tesla: float, temperature_k: float, nucleus: str = "1H") -> float:
    """Boltzmann polarization of a spin-½ ensemble, P = tanh(γħB0 / 2kT).

    ≈ 3.2e-5 for ¹H at 9.4 T and 298 K (Abragam, *The Principles of Nuclear Magnetism*,
    1961, ch. II; high-temperature limit γħB0/2kT).
    """
    gamma = 2 * np.pi * _gamma_bar_hz_per_t("thermal_polarization", nucleus)
    b0 = _positive("thermal_polarization", "b0_tesla", b0_tesla)
    t = _positive("thermal_polarization", "temperature_k", temperature_k)
    return float(np.tanh(gamma * constants.hbar * b0 / (2 * constants.k * t)))


def equilibrium_magnetization_relative(b0_tesla: float, temperature_k: float,
                                       nucleus: str = "1H") -> float:
    """Thermal-equilibrium magnetization per spin, relative to ¹H at 9.4 T and 298 K.

    M0 = N · (γħ/2) · P (spin ½), so per unit spin density M0 ∝ γ · P ≈ γ²ħ²B0 / 4kT — the
    Curie law M0 ∝ ρ·B0/T (Abragam 1961, ch. II). Returned as γ·P / (γ_¹H · P_ref) with
    P_ref = P(¹H, 9.4 T, 298 K), so ¹³C at equal B0 and T gives (γ_C/γ_H)² ≈ 0.063 per
    spin. Isotope abundance (1.1 % for natural ¹³C) and concentration belong to the
    specimen's density, not here.
    """
    func = "equilibrium_magnetization_relative"
    ratio = _gamma_bar_hz_per_t(func, nucleus) / _gamma_bar_hz_per_t(func, "1H")
    reference = thermal_polarization(REFERENCE_B0_TESLA, REFERENCE_TEMPERATURE_K, "1H")
    return ratio * thermal_polarization(b0_tesla, temperature_k, nucleus) / reference


def hyperpolarized_signal(polarization: float, flip_deg: float, n_excitations: int,
                          t1_s: float | None = None, tr_s: float | None = None) -> np.ndarray:
    """Transverse signal of each of ``n_excitations`` pulses on a hyperpolarized pool.

    S_k = P · sin α · cos^k α · e^{−k·TR/T1}, k = 0 … n−1: every pulse tips away part of the
    non-renewable longitudinal magnetization, and thermal recovery (≈ P_thermal ≪ P) is
    neglected (Zhao et al., J Magn Reson B 1996;113:179; Nelson et al., Sci Transl Med
    2013;5:198ra108). The T1 decay between pulses is applied only when both ``t1_s`` and
    ``tr_s`` are given. Units of P (fraction) carry over to S.
    """
    func = "hyperpolarized_signal"
    p = _non_negative(func, "polarization", polarization)
    if p > 1:
        raise ValueError(f"{func}: polarization is a fraction in [0, 1], got {polarization!r}")
    alpha = np.deg2rad(_positive(func, "flip_deg", flip_deg))
    n = _count(func, "n_excitations", n_excitations)
    k = np.arange(n, dtype=float)
    signal = p * np.sin(alpha) * np.cos(alpha) ** k
    if (t1_s is None) != (tr_s is None):
        raise ValueError(f"{func}: give both t1_s and tr_s for T1 decay, or neither")
    if t1_s is not None:
        signal = signal * np.exp(-k * _non_negative(func, "tr_s", tr_s)
                                 / _positive(func, "t1_s", t1_s))
    return signal


# -- signal equations --------------------------------------------------------------------

def spin_echo_signal(proton_density, t1_ms, t2_ms, te_ms: float, tr_ms: float):
    """Spin-echo signal ρ(1 − e^{−TR/T1}) e^{−TE/T2} (Haacke et al., *Magnetic Resonance
    Imaging*, 1999, eq. 8.36, for TR ≫ TE)."""
    rho = np.asarray(proton_density, dtype=np.float32)
    t1 = np.asarray(t1_ms, dtype=np.float32)
    t2 = np.asarray(t2_ms, dtype=np.float32)
    return (rho * -np.expm1(-np.float32(tr_ms) / t1) * np.exp(-np.float32(te_ms) / t2)
            ).astype(np.float32)


def gradient_echo_signal(proton_density, t1_ms, t2star_ms, te_ms: float, tr_ms: float,
                         flip_deg: float):
    """Spoiled gradient-echo (FLASH) steady state, element-wise, float32.

    S = ρ sin α (1 − E1) / (1 − cos α · E1) · e^{−TE/T2*}, E1 = e^{−TR/T1} (Ernst & Anderson,
    Rev Sci Instrum 1966;37:93; Haacke et al. 1999, eq. 18.57). Times in ms.
    """
    func = "gradient_echo_signal"
    rho = np.asarray(proton_density, dtype=np.float32)
    t1 = _positive_map(func, "t1_ms", t1_ms)
    t2s = _positive_map(func, "t2star_ms", t2star_ms)
    te = np.float32(_non_negative(func, "te_ms", te_ms))
    tr = np.float32(_positive(func, "tr_ms", tr_ms))
    alpha = np.deg2rad(_non_negative(func, "flip_deg", flip_deg))
    e1 = np.exp(-tr / t1)
    steady = np.float32(np.sin(alpha)) * (1 - e1) / (1 - np.float32(np.cos(alpha)) * e1)
    return (rho * steady * np.exp(-te / t2s)).astype(np.float32)


def ernst_angle_deg(tr_ms: float, t1_ms: float) -> float:
    """Flip angle maximising the spoiled gradient-echo signal, α_E = arccos(e^{−TR/T1})
    (Ernst & Anderson, Rev Sci Instrum 1966;37:93)."""
    tr = _positive("ernst_angle_deg", "tr_ms", tr_ms)
    t1 = _positive("ernst_angle_deg", "t1_ms", t1_ms)
    return float(np.degrees(np.arccos(np.exp(-tr / t1))))


def magnitude_with_noise(signal, sigma: float, rng: np.random.Generator):
    """|signal + n| for complex Gaussian noise n of standard deviation ``sigma`` per channel:
    the Rician magnitude of a single-coil MR image (Gudbjartsson & Patz, Magn Reson Med
    1995;34:910)."""
    signal = np.asarray(signal, dtype=np.float32)
    noisy = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    return np.hypot(noisy, rng.normal(0.0, sigma, signal.shape).astype(np.float32))


# -- encoding gradients and their diffusion weighting ------------------------------------

def readout_gradient_mT_per_m(bandwidth_hz: float, fov_read_um: float,
                              nucleus: str = "1H") -> float:
    """Frequency-encoding gradient G = BW / (γ̄ · FOV_read) in mT/m (Haacke et al. 1999,
    eq. 10.6). 50 kHz over 12.8 mm (256 × 50 µm), ¹H: 92 mT/m."""
    func = "readout_gradient_mT_per_m"
    bw = _positive(func, "bandwidth_hz", bandwidth_hz)
    fov_m = _positive(func, "fov_read_um", fov_read_um) * 1e-6
    return bw / (_gamma_bar_hz_per_t(func, nucleus) * fov_m) * 1e3


def readout_b_values_s_per_mm2(n_read: int, bandwidth_hz: float, fov_read_um: float,
                               nucleus: str = "1H",
                               prephaser_ms: float | None = None) -> np.ndarray:
    """b-value reached when each readout sample is taken, s/mm², DC at index ``n_read // 2``.

    b(t) = (2π)² ∫₀ᵗ |k(t′)|² dt′ with k in cycles/m (Stejskal & Tanner, J Chem Phys
    1965;42:288; Haacke et al. 1999, ch. 10). A rectangular dephasing lobe of duration δ
    takes k linearly from 0 to −k_max = −(n//2)/FOV, immediately followed by the readout,
    whose sample j is taken at t = δ + j/BW with k_j = (j − n//2)/FOV. In closed form

        b_j = (2π)² [k_max² δ/3 + ((j − n//2)³ + (n//2)³) / (3 · BW · FOV²)].

    The default δ is half the readout, (n//2)/BW (a dephaser at the readout amplitude), which
    gives ⅔ γ²G²τ³ at the echo (τ = (n//2)/BW). Gaps between the lobes (a refocusing pulse)
    are not modelled. For a fixed k-space trajectory b does not depend on γ; ``nucleus`` is
    only checked, so callers can pass the acquisition's nucleus throughout.
    """
    func = "readout_b_values_s_per_mm2"
    n = _count(func, "n_read", n_read)
    bw = _positive(func, "bandwidth_hz", bandwidth_hz)
    fov_m = _positive(func, "fov_read_um", fov_read_um) * 1e-6
    _gamma_bar_hz_per_t(func, nucleus)
    m = n // 2
    delta_s = m / bw if prephaser_ms is None else _positive(func, "prephaser_ms",
                                                           prephaser_ms) * 1e-3
    j = np.arange(n, dtype=float)
    integral = ((m / fov_m) ** 2 * delta_s / 3
                + ((j - m) ** 3 + m ** 3) / (3 * bw * fov_m ** 2))
    return (2 * np.pi) ** 2 * integral * 1e-6


def phase_encode_b_values_s_per_mm2(n_pe: int, fov_um: float, lobe_ms: float, hold_ms: float,
                                    nucleus: str = "1H") -> np.ndarray:
    """b-value of each phase-encode step, s/mm², DC at index ``n_pe // 2``.

    A rectangular lobe of duration δ ramps k to k_i = (i − n//2)/FOV (cycles/m), contributing
    γ²G²δ³/3 = (2πk_i)²δ/3; the moment is then held for ``hold_ms`` until the sample is read,
    adding (2πk_i)²·t_hold (Stejskal & Tanner 1965). ``nucleus`` is only checked (b depends on
    the k-space trajectory, not on γ).
    """
    func = "phase_encode_b_values_s_per_mm2"
    n = _count(func, "n_pe", n_pe)
    fov_m = _positive(func, "fov_um", fov_um) * 1e-6
    lobe_s = _positive(func, "lobe_ms", lobe_ms) * 1e-3
    hold_s = _non_negative(func, "hold_ms", hold_ms) * 1e-3
    _gamma_bar_hz_per_t(func, nucleus)
    k = (np.arange(n, dtype=float) - n // 2) / fov_m
    return (2 * np.pi * k) ** 2 * (lobe_s / 3 + hold_s) * 1e-6


def diffusion_attenuation(b_s_per_mm2, diffusion_um2_per_ms):
    """Signal fraction exp(−b·D) left after diffusion weighting b (s/mm²), element-wise.

    D in µm²/ms (1 µm²/ms = 1e-3 mm²/s; free water at 25 °C ≈ 2.3) (Stejskal & Tanner 1965).
    """
    b = np.asarray(b_s_per_mm2)
    d = np.asarray(diffusion_um2_per_ms)
    if not np.all(b >= 0):
        raise ValueError("diffusion_attenuation: b_s_per_mm2 must be >= 0 (no NaNs)")
    if not np.all(d >= 0):
        raise ValueError("diffusion_attenuation: diffusion_um2_per_ms must be >= 0 (no NaNs)")
    return np.exp(-b * (d * 1e-3))


def diffusion_limited_resolution_um(gradient_mT_per_m: float, diffusion_um2_per_ms: float = 2.3,
                                    nucleus: str = "1H") -> float:
    """Resolution below which diffusion during encoding blurs the image, Δx = (4πD/γG)^⅓, µm.

    Set the diffusion length √(2Dt) equal to the spacing 2π/(γGt) that a gradient G resolves
    in time t (Callaghan & Eccles, J Magn Reson 1988;78:1): ≈ 10 µm at 0.1 T/m and 4.8 µm at
    1 T/m for free water (D = 2.3 µm²/ms).
    """
    func = "diffusion_limited_resolution_um"
    g = _positive(func, "gradient_mT_per_m", gradient_mT_per_m) * 1e-3
    d = _positive(func, "diffusion_um2_per_ms", diffusion_um2_per_ms) * 1e-9
    gamma = 2 * np.pi * _gamma_bar_hz_per_t(func, nucleus)
    return (4 * np.pi * d / (gamma * g)) ** (1 / 3) * 1e6


# -- point-spread function and displacements ----------------------------------------------

def t2star_fwhm_px(t2star_ms: float, bandwidth_px_hz: float) -> float:
    """FWHM of the Lorentzian readout PSF from T2* decay, 1/(π·T2*·BW_px) pixels.

    A full echo read at BW_px Hz/pixel decays as e^{−|t|/T2*} about its centre; its Fourier
    transform is a Lorentzian of FWHM 1/(πT2*) Hz (Haacke et al. 1999, ch. 13). For a spin
    echo the static dephasing refocuses at the echo, so this is a worst case.
    """
    t2s = _positive("t2star_fwhm_px", "t2star_ms", t2star_ms) * 1e-3
    bw_px = _positive("t2star_fwhm_px", "bandwidth_px_hz", bandwidth_px_hz)
    return 1.0 / (np.pi * t2s * bw_px)


def chemical_shift_px(shift_ppm, b0_tesla: float, bandwidth_px_hz: float, nucleus: str = "1H"):
    """Readout displacement δ·γ̄·B0 / BW_px in pixels, element-wise in ``shift_ppm``.

    Positive shifts move along +readout (Haacke et al. 1999, ch. 17). Fat–water (3.4 ppm) at
    9.4 T is 1.36 kHz. Any off-resonance in ppm (e.g. a susceptibility field) moves alike.
    """
    func = "chemical_shift_px"
    hz_per_ppm = 1e-6 * _gamma_bar_hz_per_t(func, nucleus) * _positive(func, "b0_tesla",
                                                                        b0_tesla)
    return np.asarray(shift_ppm) * hz_per_ppm / _positive(func, "bandwidth_px_hz",
                                                          bandwidth_px_hz)


def susceptibility_shift_um(field_ppm, b0_tesla: float, gradient_mT_per_m: float):
    """Readout displacement ΔB/G = field_ppm·1e-6·B0 / G in µm, element-wise in ``field_ppm``
    (Ludeke et al., Magn Reson Imaging 1985;3:329). Divide by the readout spacing for
    pixels."""
    func = "susceptibility_shift_um"
    b0 = _positive(func, "b0_tesla", b0_tesla)
    g = _positive(func, "gradient_mT_per_m", gradient_mT_per_m) * 1e-3
    return np.asarray(field_ppm) * (1e-6 * b0 / g * 1e6)


# -- timing ------------------------------------------------------------------------------

def phase_encode_axes(acquisition: Acquisition) -> tuple:
    """Phase-encoded matrix axes: all but the readout (3-D Cartesian), and, with
    ``acquisition.extra["multislice"]`` true, also not the slice axis
    (``extra["slice_axis"]``, default 0)."""
    skip = {acquisition.readout_axis}
    if acquisition.extra.get("multislice"):
        slice_axis = int(acquisition.extra.get("slice_axis", 0))
        if slice_axis == acquisition.readout_axis or not 0 <= slice_axis < len(acquisition.matrix):
            raise ValueError(f"phase_encode_axes: slice_axis {slice_axis} must be a matrix axis "
                             f"other than the readout axis {acquisition.readout_axis}")
        skip.add(slice_axis)
    return tuple(axis for axis in range(len(acquisition.matrix)) if axis not in skip)


def phase_steps(acquisition: Acquisition) -> int:
    """Phase-encode steps per average: those the scanner states it acquired
    (``acquisition.extra["phase_steps"]``: a file's encoding matrix, smaller than the image
    matrix with partial Fourier or zero filling), else the product of the
    :func:`phase_encode_axes` sizes (for 2-D multi-slice the slices are interleaved within
    each TR)."""
    stated = acquisition.extra.get("phase_steps")
    if isinstance(stated, (int, np.integer)) and stated >= 1:
        return int(stated)
    return math.prod(acquisition.matrix[axis] for axis in phase_encode_axes(acquisition))


def scan_time_s(tr_ms: float, phase_steps: int, averages: int = 1, echo_train: int = 1) -> float:
    """Acquisition time TR · ⌈steps / echo-train length⌉ · averages, in s (Hennig et al.,
    Magn Reson Med 1986;3:823 for the RARE echo train)."""
    func = "scan_time_s"
    tr = _positive(func, "tr_ms", tr_ms)
    steps = _count(func, "phase_steps", phase_steps)
    avg = _count(func, "averages", averages)
    etl = _count(func, "echo_train", echo_train)
    return tr * 1e-3 * math.ceil(steps / etl) * avg


def format_duration(seconds: float) -> str:
    """``"h:mm"``, rounded to the nearest minute (9830 s -> ``"2:44"``)."""
    minutes = round(_non_negative("format_duration", "seconds", seconds) / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


# -- noise and SNR -----------------------------------------------------------------------

def noise_sigma_relative(bandwidth_hz: float, coil_temperature_k: float,
                         sample_temperature_k: float, b0_tesla: float,
                         sample_noise_fraction: float = 0.0, nucleus: str = "1H") -> float:
    """Thermal noise amplitude σ ∝ √(Δf · (T_c R_c + T_s R_s)) of one receiver sample.

    Johnson noise of the coil resistance R_c ∝ ω^½ (skin effect) and of the sample's
    inductive losses R_s ∝ ω² (Hoult & Richards, J Magn Reson 1976;24:71; Hoult & Lauterbur,
    J Magn Reson 1979;34:425). Normalised so the noise power per Hz is 1 for ¹H at 9.4 T with
    coil and sample at 298 K, of which ``sample_noise_fraction`` comes from the sample (small
    MR-microscopy coils: ≈ 0).
    """
    func = "noise_sigma_relative"
    bw = _positive(func, "bandwidth_hz", bandwidth_hz)
    t_c = _positive(func, "coil_temperature_k", coil_temperature_k)
    t_s = _positive(func, "sample_temperature_k", sample_temperature_k)
    f = _non_negative(func, "sample_noise_fraction", sample_noise_fraction)
    if f > 1:
        raise ValueError(f"{func}: sample_noise_fraction must be in [0, 1], got {f}")
    omega_ratio = larmor_hz(b0_tesla, nucleus) / larmor_hz(REFERENCE_B0_TESLA, "1H")
    power_per_hz = ((1 - f) * t_c / REFERENCE_TEMPERATURE_K * omega_ratio ** 0.5
                    + f * t_s / REFERENCE_TEMPERATURE_K * omega_ratio ** 2)
    return math.sqrt(bw * power_per_hz)


def _samples_per_image(acquisition: Acquisition) -> int:
    """Samples that build one image voxel: the whole matrix (3-D) or one slice (2-D)."""
    return phase_steps(acquisition) * acquisition.matrix[acquisition.readout_axis]


def _snr_scale(acquisition: Acquisition, coil_temperature_k, sample_noise_fraction) -> float:
    """M0 · ω0 · V_voxel · √(N_avg · N_samples) / σ_sample, in reference units."""
    if len(acquisition.matrix) != 3:
        raise ValueError(f"snr_water: needs a 3-D (z, y, x) matrix, got {acquisition.matrix}")
    t_coil = (acquisition.extra.get("coil_temperature_k", ROOM_TEMPERATURE_K)
              if coil_temperature_k is None else coil_temperature_k)
    m0 = equilibrium_magnetization_relative(acquisition.b0_tesla, acquisition.temperature_k,
                                            acquisition.nucleus)
    omega = larmor_hz(acquisition.b0_tesla, acquisition.nucleus)
    volume = math.prod(acquisition.voxel_um)
    sigma = noise_sigma_relative(acquisition.bandwidth_hz, t_coil, acquisition.temperature_k,
                                 acquisition.b0_tesla, sample_noise_fraction,
                                 acquisition.nucleus)
    samples = acquisition.averages * _samples_per_image(acquisition)
    return m0 * omega * volume * math.sqrt(samples) / sigma


def snr_water(acquisition: Acquisition, coil_temperature_k: float | None = None,
              sample_noise_fraction: float = 0.0,
              reference_snr: float = REFERENCE_SNR) -> float:
    """Image SNR of fully relaxed pure water (ρ = 1, no relaxation or diffusion loss).

    SNR ∝ M0(B0, T_s, nucleus) · ω0 · V_voxel · √(N_avg · N_samples / BW) / √(T_c R_c + T_s R_s)
    (Hoult & Richards, J Magn Reson 1976;24:71; Edelstein et al., Med Phys 1986;13:24 for the
    sampling factor), scaled so :data:`REFERENCE_ACQUISITION` gives ``reference_snr``. Coil
    noise dominated (``sample_noise_fraction`` 0) this is ∝ B0^{7/4}/T_s, sample dominated
    ∝ B0. N_samples counts one slice for 2-D multi-slice (``extra["multislice"]``).
    ``coil_temperature_k`` None takes ``acquisition.extra["coil_temperature_k"]``, else
    room temperature (298 K).
    """
    ref = _positive("snr_water", "reference_snr", reference_snr)
    scale = _snr_scale(acquisition, coil_temperature_k, sample_noise_fraction)
    return ref * scale / _snr_scale(REFERENCE_ACQUISITION, ROOM_TEMPERATURE_K,
                                    sample_noise_fraction)


def snr_relative(acquisition: Acquisition, reference: Acquisition,
                 coil_temperature_k: float | None = None,
                 sample_noise_fraction: float = 0.0) -> float:
    """SNR of ``acquisition`` over that of ``reference``, both as :func:`snr_water`."""
    return (_snr_scale(acquisition, coil_temperature_k, sample_noise_fraction)
            / _snr_scale(reference, coil_temperature_k, sample_noise_fraction))


# -- the planner's summary ---------------------------------------------------------------

def protocol_summary(acquisition: Acquisition, reference: Acquisition | None = None,
                     t2star_ms: float = 20.0, diffusion_um2_per_ms: float = 2.3,
                     shift_ppm: float = 3.4, coil_temperature_k: float | None = None,
                     sample_noise_fraction: float = 0.0) -> dict:
    """Everything the protocol planner shows for one acquisition, with warnings.

    Readout b-values assume a dephaser at the readout amplitude lasting half the readout,
    with the phase-encode lobes played during it and held until each sample is read. The
    maximum b is at the last readout sample of the outermost phase-encode step. The echo
    train length is ``acquisition.extra["echo_train"]`` (default 1).

    Returns
    -------
    dict
        voxel_um, larmor_mhz, bandwidth_px_hz, readout_duration_ms,
        readout_gradient_mT_per_m, b_value_s_per_mm2 (k-space centre),
        b_value_max_s_per_mm2, diffusion_loss (fraction lost at the k-space centre),
        chemical_shift_px (of ``shift_ppm``), t2star_blur_px (of ``t2star_ms``),
        diffusion_limited_um, snr_water, snr_relative (to ``reference``; 1 without),
        phase_steps, scan_time_s, scan_time ("h:mm") and warnings (list of str).
    """
    acq = acquisition
    axis = acq.readout_axis
    n_read, fov_read = acq.matrix[axis], acq.fov_um[axis]
    bw_px = acq.bandwidth_hz / n_read
    readout_ms = n_read / acq.bandwidth_hz * 1e3
    gradient = readout_gradient_mT_per_m(acq.bandwidth_hz, fov_read, acq.nucleus)
    b_read = readout_b_values_s_per_mm2(n_read, acq.bandwidth_hz, fov_read, acq.nucleus)
    dephaser_ms = (n_read // 2) / acq.bandwidth_hz * 1e3
    hold_ms = (n_read - 1) / acq.bandwidth_hz * 1e3
    steps = phase_steps(acq)
    b_max = float(b_read.max()) + sum(
        float(phase_encode_b_values_s_per_mm2(acq.matrix[a], acq.fov_um[a], dephaser_ms,
                                              hold_ms, acq.nucleus).max())
        for a in phase_encode_axes(acq))
    b_echo = float(b_read[n_read // 2])
    diffusion_loss = 1.0 - float(diffusion_attenuation(b_echo, diffusion_um2_per_ms))
    shift_px = float(chemical_shift_px(shift_ppm, acq.b0_tesla, bw_px, acq.nucleus))
    blur_px = t2star_fwhm_px(t2star_ms, bw_px)
    limit_um = diffusion_limited_resolution_um(gradient, diffusion_um2_per_ms, acq.nucleus)
    snr = snr_water(acq, coil_temperature_k, sample_noise_fraction)
    relative = (1.0 if reference is None
                else snr_relative(acq, reference, coil_temperature_k, sample_noise_fraction))
    seconds = scan_time_s(acq.tr_ms, steps, acq.averages, int(acq.extra.get("echo_train", 1)))

    warnings = []
    if gradient > acq.max_gradient_mT_per_m:
        warnings.append(f"Readout gradient {gradient:.0f} mT/m exceeds the system maximum "
                        f"{acq.max_gradient_mT_per_m:.0f} mT/m: lower the bandwidth or "
                        "enlarge the readout FOV.")
    if min(acq.voxel_um) < limit_um:
        warnings.append(f"Voxel {min(acq.voxel_um):.1f} µm is below the diffusion-limited "
                        f"resolution {limit_um:.1f} µm at {gradient:.0f} mT/m.")
    if abs(shift_px) > 1:
        warnings.append(f"Chemical shift of {shift_ppm:g} ppm is {abs(shift_px):.1f} px: the "
                        f"pixel bandwidth {bw_px:.0f} Hz is below the "
                        f"{abs(shift_px) * bw_px:.0f} Hz shift difference.")
    if blur_px > 1:
        warnings.append(f"T2* = {t2star_ms:g} ms blurs the readout by {blur_px:.1f} px "
                        f"(pixel bandwidth {bw_px:.0f} Hz).")
    if acq.sequence == "gradient_echo" and min(acq.te_ms) < readout_ms / 2:
        warnings.append(f"TE {min(acq.te_ms):g} ms is shorter than half the readout "
                        f"({readout_ms / 2:.2f} ms): the echo cannot be centred.")
    return {
        "voxel_um": acq.voxel_um,
        "larmor_mhz": larmor_hz(acq.b0_tesla, acq.nucleus) * 1e-6,
        "bandwidth_px_hz": bw_px,
        "readout_duration_ms": readout_ms,
        "readout_gradient_mT_per_m": gradient,
        "b_value_s_per_mm2": b_echo,
        "b_value_max_s_per_mm2": b_max,
        "diffusion_loss": diffusion_loss,
        "chemical_shift_px": shift_px,
        "t2star_blur_px": blur_px,
        "diffusion_limited_um": limit_um,
        "snr_water": snr,
        "snr_relative": relative,
        "phase_steps": steps,
        "scan_time_s": seconds,
        "scan_time": format_duration(seconds),
        "warnings": warnings,
    }
