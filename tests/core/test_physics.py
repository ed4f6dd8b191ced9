"""MR-microscopy physics against REFERENCES.md worked numbers, closed forms and numerics."""

import dataclasses

import numpy as np
import pytest
from scipy import constants, integrate, optimize

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core import physics as ph

GAMMA_H = 2 * np.pi * 42.577478e6  # rad/s/T
D_WATER = 2.3  # µm²/ms

#: 3-D spin echo of a molar at 2.35 T (256×128×128, TR 600 ms, readout along the 256 axis).
DENTAL = Acquisition(matrix=(256, 128, 128), fov_um=(25_000, 12_500, 12_500), b0_tesla=2.35,
                     te_ms=(2.4,), tr_ms=600, readout_axis=0, max_gradient_mT_per_m=250)
#: 256³ at 25 µm and 9.4 T, "overnight, 12–13 h": TR 700 ms, 1 average.
TEMPORAL_BONE = Acquisition(matrix=(256,) * 3, fov_um=(6400,) * 3, b0_tesla=9.4, tr_ms=700)


def test_larmor_and_polarization():
    assert ph.larmor_hz(2.35) / 1e6 == pytest.approx(100.0, abs=0.1)
    assert ph.larmor_hz(0.5) / 1e6 == pytest.approx(21.3, abs=0.05)
    assert ph.larmor_hz(1.0, "13C") == pytest.approx(10.7084e6)
    p = ph.thermal_polarization(9.4, 298)
    assert p == pytest.approx(3.2e-5, rel=0.01)
    # high-temperature limit γħB0/2kT, independently from CODATA constants
    assert p == pytest.approx(GAMMA_H * constants.hbar * 9.4 / (2 * constants.k * 298), rel=1e-9)


def test_equilibrium_magnetization_curie_law_and_13c():
    m = ph.equilibrium_magnetization_relative
    assert m(9.4, 298) == pytest.approx(1.0)
    assert m(18.8, 298) == pytest.approx(2.0, rel=1e-8)  # ∝ B0
    assert m(9.4, 149) == pytest.approx(2.0, rel=1e-8)  # ∝ 1/T
    # per spin ∝ γ²: ¹³C at equal B0, T is (10.7084/42.577478)² of ¹H
    assert m(9.4, 298, "13C") == pytest.approx((10.7084 / 42.577478) ** 2, rel=1e-8)


def test_hyperpolarized_signal_spends_magnetization():
    s = ph.hyperpolarized_signal(0.2, 10.0, 50)
    a = np.deg2rad(10)
    assert s.shape == (50,)
    np.testing.assert_allclose(s, 0.2 * np.sin(a) * np.cos(a) ** np.arange(50), rtol=1e-12)
    # 90° spends everything at once
    np.testing.assert_allclose(ph.hyperpolarized_signal(0.3, 90, 3), [0.3, 0, 0], atol=1e-12)
    # pulse by pulse: rotate the longitudinal magnetization, read Mxy, let Mz relax to ~0
    decayed = ph.hyperpolarized_signal(0.2, 10.0, 50, t1_s=30.0, tr_s=3.0)
    mz, read = np.array([0.0, 0.0, 0.2]), []
    rotation = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    for _ in range(50):
        m = rotation @ mz
        read.append(np.hypot(m[0], m[1]))
        mz = np.array([0.0, 0.0, m[2] * np.exp(-3.0 / 30.0)])  # spoiled, T1 decay, no recovery
    np.testing.assert_allclose(decayed, read, rtol=1e-12)
    with pytest.raises(ValueError, match="t1_s and tr_s"):
        ph.hyperpolarized_signal(0.2, 10.0, 5, t1_s=30.0)
    with pytest.raises(ValueError, match="polarization"):
        ph.hyperpolarized_signal(1.5, 10.0, 5)


def test_gradient_echo_signal_and_ernst_angle():
    t1, t2s, tr, te = 1500.0, 30.0, 50.0, 5.0
    ernst = ph.ernst_angle_deg(tr, t1)
    best = optimize.minimize_scalar(
        lambda a: -float(ph.gradient_echo_signal(1.0, t1, t2s, te, tr, a)),
        bounds=(0.1, 90), method="bounded", options={"xatol": 1e-4})
    assert best.x == pytest.approx(ernst, abs=0.05)
    assert ernst == pytest.approx(14.8, abs=0.1)
    # 90° with TR ≫ T1 and TE = 0: fully relaxed ρ
    assert float(ph.gradient_echo_signal(0.7, 10.0, 30.0, 0.0, 1e4, 90.0)) == pytest.approx(0.7)
    maps = ph.gradient_echo_signal(np.ones((2, 3)), np.full((2, 3), t1), np.full((2, 3), t2s),
                                   te, tr, 20.0)
    assert maps.dtype == np.float32 and maps.shape == (2, 3)
    e1 = np.exp(-tr / t1)
    a = np.deg2rad(20)
    np.testing.assert_allclose(maps, np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)
                               * np.exp(-te / t2s), rtol=1e-5)
    with pytest.raises(ValueError, match="t1_ms"):
        ph.gradient_echo_signal(1.0, np.array([1000.0, 0.0]), 30.0, 5, 50, 20)


@pytest.mark.parametrize("voxel_um, gradient", [(50, 92), (10, 459)])
def test_readout_gradient(voxel_um, gradient):
    g = ph.readout_gradient_mT_per_m(50_000, 256 * voxel_um)
    assert g == pytest.approx(gradient, rel=0.005)
    # ¹³C needs γ_H/γ_C times the gradient for the same FOV and bandwidth
    assert ph.readout_gradient_mT_per_m(50_000, 256 * voxel_um, "13C") == pytest.approx(
        g * 42.577478 / 10.7084)


@pytest.mark.parametrize("voxel_um, b_ref, loss_ref", [(50, 10, 0.02), (10, 253, 0.44)])
def test_readout_b_values_reproduce_references(voxel_um, b_ref, loss_ref):
    """REFERENCES: 256 points, 50 kHz → b ≈ 10 (50 µm) and 253 s/mm² (10 µm).

    Those figures are γ²G²τ³ (τ = half readout): the b reached at the *end* of the readout
    (k back at +k_max). At the echo (k = 0) a dephaser + half readout give ⅔γ²G²τ³ — 6.7 and
    168 s/mm² (1.5 % and 32 % loss) — so REFERENCES' "at the echo" is the readout maximum.
    The last sample is taken 1/BW before the continuous end, hence ≈ 1 % below γ²G²τ³.
    """
    b = ph.readout_b_values_s_per_mm2(256, 50_000, 256 * voxel_um)
    g = ph.readout_gradient_mT_per_m(50_000, 256 * voxel_um) * 1e-3
    tau = 128 / 50_000
    full = (GAMMA_H * g) ** 2 * tau ** 3 * 1e-6
    assert b[128] == pytest.approx(2 / 3 * full, rel=1e-9)  # echo, DC at n//2
    assert b.max() == b[-1] == pytest.approx(full, rel=0.012)
    assert b.max() == pytest.approx(b_ref, rel=0.015)
    assert 1 - ph.diffusion_attenuation(b.max(), D_WATER) == pytest.approx(loss_ref, abs=0.005)
    assert np.all(np.diff(b) > 0)


@pytest.mark.parametrize("prephaser_ms", [None, 0.7, 4.0])
def test_readout_b_values_match_numerical_integration(prephaser_ms):
    n, bw, fov_um = 64, 20_000.0, 3200.0
    fov = fov_um * 1e-6
    gbar = 42.577478e6
    g_read = bw / (gbar * fov)
    m = n // 2
    delta = m / bw if prephaser_ms is None else prephaser_ms * 1e-3
    g_pre = -(m / fov) / (gbar * delta)
    t = np.linspace(0, delta + n / bw, 2_000_001)
    grad = np.where(t < delta, g_pre, g_read)
    k = gbar * integrate.cumulative_trapezoid(grad, t, initial=0)  # cycles/m
    b = (2 * np.pi) ** 2 * integrate.cumulative_trapezoid(k ** 2, t, initial=0) * 1e-6
    samples = np.interp(delta + np.arange(n) / bw, t, b)
    got = ph.readout_b_values_s_per_mm2(n, bw, fov_um, prephaser_ms=prephaser_ms)
    np.testing.assert_allclose(got, samples, rtol=1e-4)


def test_phase_encode_b_values_match_closed_form_and_numerics():
    n, fov_um, lobe_ms, hold_ms = 32, 1600.0, 1.5, 2.0
    b = ph.phase_encode_b_values_s_per_mm2(n, fov_um, lobe_ms, hold_ms)
    assert b[n // 2] == 0
    k_max = (n // 2) / (fov_um * 1e-6)
    g = k_max / (42.577478e6 * lobe_ms * 1e-3)  # T/m reaching k_max within the lobe
    stejskal = (GAMMA_H * g) ** 2 * (lobe_ms * 1e-3) ** 3 / 3
    held = (2 * np.pi * k_max) ** 2 * hold_ms * 1e-3
    assert b[0] == pytest.approx((stejskal + held) * 1e-6, rel=1e-12)
    t = np.linspace(0, (lobe_ms + hold_ms) * 1e-3, 1_000_001)
    k = np.minimum(t / (lobe_ms * 1e-3), 1.0) * k_max
    numeric = (2 * np.pi) ** 2 * integrate.trapezoid(k ** 2, t) * 1e-6
    assert b[0] == pytest.approx(numeric, rel=1e-6)
    np.testing.assert_allclose(b, b[0] * ((np.arange(n) - n // 2) / (n // 2)) ** 2)


def test_diffusion_attenuation_units():
    # 1 µm²/ms = 1e-3 mm²/s: b = 1000 s/mm², D = 1 µm²/ms → e^-1
    assert ph.diffusion_attenuation(1000.0, 1.0) == pytest.approx(np.exp(-1))
    np.testing.assert_allclose(ph.diffusion_attenuation(np.array([0.0, 500.0]), 2.0),
                               [1.0, np.exp(-1)])
    with pytest.raises(ValueError, match="b_s_per_mm2"):
        ph.diffusion_attenuation(np.array([1.0, np.nan]), 2.3)


@pytest.mark.parametrize("gradient, resolution", [(100, 10.0), (1000, 4.8)])
def test_diffusion_limited_resolution(gradient, resolution):
    assert ph.diffusion_limited_resolution_um(gradient, D_WATER) == pytest.approx(
        resolution, abs=0.3 if gradient == 100 else 0.05)
    # ∝ (D/G)^⅓
    assert ph.diffusion_limited_resolution_um(8 * gradient, D_WATER) == pytest.approx(
        resolution / 2, rel=0.03)


def test_t2star_fwhm_matches_fourier_transform_of_the_decay():
    t2s_ms, bw_px = 5.0, 200.0
    dt = 1e-5
    t = (np.arange(2 ** 20) - 2 ** 19) * dt
    spectrum = np.abs(np.fft.fftshift(np.fft.fft(np.fft.ifftshift(np.exp(-np.abs(t) / 5e-3)))))
    freq = np.fft.fftshift(np.fft.fftfreq(t.size, dt))
    above = freq[spectrum >= spectrum.max() / 2]
    fwhm_hz = above.max() - above.min()
    assert ph.t2star_fwhm_px(t2s_ms, bw_px) == pytest.approx(fwhm_hz / bw_px, rel=0.02)
    assert ph.t2star_fwhm_px(t2s_ms, bw_px) == pytest.approx(1 / (np.pi * 5e-3 * 200))


def test_chemical_and_susceptibility_shifts():
    hz = ph.chemical_shift_px(3.4, 9.4, 1.0)  # at 1 Hz/px, pixels = Hz
    assert hz == pytest.approx(1360, abs=2)
    assert ph.chemical_shift_px(3.4, 9.4, hz) == pytest.approx(1.0)
    # 1 ppm at 9.4 T in 94 mT/m: ΔB = 9.4 µT → 100 µm
    assert ph.susceptibility_shift_um(1.0, 9.4, 94.0) == pytest.approx(100.0)
    # same off-resonance, two routes: µm / voxel = px at the readout's own gradient
    n, bw, fov = 256, 50_000, 6400.0
    g = ph.readout_gradient_mT_per_m(bw, fov)
    field = np.array([-9.4, 0.5, 2.0])
    np.testing.assert_allclose(ph.susceptibility_shift_um(field, 9.4, g) / (fov / n),
                               ph.chemical_shift_px(field, 9.4, bw / n), rtol=1e-12)


def test_scan_times_of_presets():
    assert ph.phase_steps(DENTAL) == 128 * 128
    t = ph.scan_time_s(DENTAL.tr_ms, ph.phase_steps(DENTAL), DENTAL.averages)
    assert t == pytest.approx(128 * 128 * 0.6)
    assert ph.format_duration(t) == "2:44"
    t = ph.scan_time_s(TEMPORAL_BONE.tr_ms, ph.phase_steps(TEMPORAL_BONE))
    assert 12 * 3600 <= t <= 13 * 3600 and t / 3600 == pytest.approx(12.74, abs=0.01)
    assert ph.format_duration(t) == "12:45"
    assert ph.scan_time_s(2000, 256, 2, echo_train=8) == pytest.approx(2 * 32 * 2)
    assert ph.scan_time_s(2000, 250, 1, echo_train=8) == pytest.approx(32 * 2)  # ⌈250/8⌉ shots
    assert ph.format_duration(0) == "0:00" and ph.format_duration(3599.9) == "1:00"


def test_multislice_phase_steps_and_samples():
    ms = dataclasses.replace(TEMPORAL_BONE, extra={"multislice": True})
    assert ph.phase_encode_axes(ms) == (1,) and ph.phase_steps(ms) == 256
    # a slice sees 256² samples instead of 256³: SNR lower by √256
    assert ph.snr_relative(ms, TEMPORAL_BONE) == pytest.approx(1 / 16)
    with pytest.raises(ValueError, match="slice_axis"):
        ph.phase_steps(dataclasses.replace(TEMPORAL_BONE,
                                           extra={"multislice": True, "slice_axis": 2}))


def test_noise_sigma_scaling():
    assert ph.noise_sigma_relative(1.0, 298, 298, 9.4) == pytest.approx(1.0)
    assert ph.noise_sigma_relative(1.0, 298, 298, 9.4, 0.4) == pytest.approx(1.0)
    assert ph.noise_sigma_relative(4e4, 298, 298, 9.4) == pytest.approx(200.0)
    # coil noise: power ∝ T_c ω^½; sample noise: power ∝ T_s ω²
    assert ph.noise_sigma_relative(1.0, 77, 298, 9.4) == pytest.approx((77 / 298) ** 0.5)
    assert ph.noise_sigma_relative(1.0, 298, 298, 4.7) == pytest.approx(0.5 ** 0.25)
    assert ph.noise_sigma_relative(1.0, 298, 298, 4.7, 1.0) == pytest.approx(0.5)


def test_snr_reference_and_scaling_laws():
    ref = ph.REFERENCE_ACQUISITION
    assert ph.snr_water(ref) == pytest.approx(ph.REFERENCE_SNR)
    assert ph.snr_water(ref, reference_snr=12.0) == pytest.approx(12.0)
    with_ = dataclasses.replace
    # halving the voxel at fixed matrix, bandwidth, averages (samples fixed): ÷ 8
    half = with_(ref, fov_um=tuple(f / 2 for f in ref.fov_um))
    assert ph.snr_relative(half, ref) == pytest.approx(1 / 8)
    assert ph.snr_water(half) == pytest.approx(ph.REFERENCE_SNR / 8)
    # 4 averages: × 2
    assert ph.snr_relative(with_(ref, averages=4), ref) == pytest.approx(2.0)
    # doubled matrix per axis, same FOV and total bandwidth: (1/8)·√8 → drop by 8/√8 ≈ 2.83
    fine = with_(ref, matrix=(512,) * 3)
    assert 1 / ph.snr_relative(fine, ref) == pytest.approx(8 / np.sqrt(8))
    # same bandwidth per pixel (total BW ×2, samples ×8): (1/8)·√(8/2) → drop by 4
    fine_px = with_(fine, bandwidth_hz=2 * ref.bandwidth_hz)
    assert 1 / ph.snr_relative(fine_px, ref) == pytest.approx(4.0)


def test_snr_temperature_and_field_laws():
    ref = ph.REFERENCE_ACQUISITION
    with_ = dataclasses.replace
    cold = with_(ref, temperature_k=149.0)
    # coil-noise regime, coil temperature fixed: signal ∝ 1/T_sample
    assert ph.snr_relative(cold, ref, coil_temperature_k=298) == pytest.approx(2.0, rel=1e-8)
    # a cold probe (coil at 77 K) gains √(298/77)
    assert ph.snr_water(ref, coil_temperature_k=77) / ph.snr_water(ref) == pytest.approx(
        (298 / 77) ** 0.5)
    cryo = with_(ref, extra={"coil_temperature_k": 77})
    assert ph.snr_water(cryo) == pytest.approx(ph.snr_water(ref, coil_temperature_k=77))
    for b0 in (2.35, 4.7, 18.8, 21.1):
        field = with_(ref, b0_tesla=b0)
        assert ph.snr_relative(field, ref) == pytest.approx((b0 / 9.4) ** 1.75, rel=1e-8)
        assert ph.snr_relative(field, ref, sample_noise_fraction=1.0) == pytest.approx(
            b0 / 9.4, rel=1e-8)
    # ¹³C at thermal equilibrium: M0 (γ²) × ω (γ) / noise (ω^¼) per spin, coil regime
    carbon = with_(ref, nucleus="13C")
    assert ph.snr_relative(carbon, ref) == pytest.approx((10.7084 / 42.577478) ** 2.75,
                                                         rel=1e-8)


def test_protocol_summary_numbers_and_warnings():
    s = ph.protocol_summary(DENTAL)
    assert s["scan_time"] == "2:44" and s["phase_steps"] == 128 * 128
    assert s["larmor_mhz"] == pytest.approx(100.06, abs=0.01)
    assert s["bandwidth_px_hz"] == pytest.approx(50_000 / 256)
    assert s["snr_relative"] == 1.0
    assert s["warnings"] == [w for w in s["warnings"] if "Chemical shift" in w]

    fast = dataclasses.replace(TEMPORAL_BONE, fov_um=(2560,) * 3, sequence="gradient_echo",
                               te_ms=(2.0,), max_gradient_mT_per_m=400)
    s = ph.protocol_summary(fast, reference=TEMPORAL_BONE, t2star_ms=1.0)
    assert s["readout_gradient_mT_per_m"] == pytest.approx(459, rel=0.005)
    assert s["b_value_s_per_mm2"] == pytest.approx(168.4, abs=0.1)
    assert s["diffusion_loss"] == pytest.approx(1 - np.exp(-168.44e-3 * D_WATER), rel=1e-3)
    # maximum: readout end + two phase-encode lobes held to the last sample
    b_pe = ph.phase_encode_b_values_s_per_mm2(256, 2560, 2.56, 255 / 50, "1H")[0]
    assert s["b_value_max_s_per_mm2"] == pytest.approx(
        ph.readout_b_values_s_per_mm2(256, 50_000, 2560)[-1] + 2 * b_pe)
    assert s["snr_relative"] == pytest.approx((10 / 25) ** 3)
    assert s["t2star_blur_px"] == pytest.approx(1 / (np.pi * 1e-3 * 50_000 / 256))
    text = " ".join(s["warnings"])
    for phrase in ("exceeds the system maximum", "Chemical shift", "blurs the readout",
                   "cannot be centred"):
        assert phrase in text
    assert "diffusion-limited" not in text  # 10 µm voxels vs a 6.2 µm limit at 459 mT/m
    tiny = dataclasses.replace(fast, fov_um=(1024,) * 3, max_gradient_mT_per_m=2000)
    assert any("diffusion-limited" in w for w in ph.protocol_summary(tiny)["warnings"])


@pytest.mark.parametrize("call, name", [
    (lambda: ph.readout_gradient_mT_per_m(-50_000, 12800), "bandwidth_hz"),
    (lambda: ph.readout_gradient_mT_per_m(50_000, 0), "fov_read_um"),
    (lambda: ph.readout_gradient_mT_per_m(50_000, 12800, "31P"), "nucleus"),
    (lambda: ph.larmor_hz(9.4, "2H"), "nucleus"),
    (lambda: ph.thermal_polarization(9.4, 0), "temperature_k"),
    (lambda: ph.readout_b_values_s_per_mm2(256, float("nan"), 12800), "bandwidth_hz"),
    (lambda: ph.readout_b_values_s_per_mm2(0, 50_000, 12800), "n_read"),
    (lambda: ph.readout_b_values_s_per_mm2(256, 50_000, 12800, prephaser_ms=-1), "prephaser_ms"),
    (lambda: ph.phase_encode_b_values_s_per_mm2(128, 0, 1, 1), "fov_um"),
    (lambda: ph.diffusion_limited_resolution_um(0), "gradient_mT_per_m"),
    (lambda: ph.t2star_fwhm_px(20, -1), "bandwidth_px_hz"),
    (lambda: ph.chemical_shift_px(3.4, 9.4, 0), "bandwidth_px_hz"),
    (lambda: ph.susceptibility_shift_um(1.0, 9.4, 0), "gradient_mT_per_m"),
    (lambda: ph.scan_time_s(600, 128, averages=0), "averages"),
    (lambda: ph.scan_time_s(600, 12.5), "phase_steps"),
    (lambda: ph.format_duration(-1), "seconds"),
    (lambda: ph.noise_sigma_relative(-1, 298, 298, 9.4), "bandwidth_hz"),
    (lambda: ph.noise_sigma_relative(1, 298, 298, 9.4, 1.5), "sample_noise_fraction"),
    (lambda: ph.ernst_angle_deg(0, 1000), "tr_ms"),
    (lambda: ph.hyperpolarized_signal(0.1, 10, 0), "n_excitations"),
    (lambda: ph.snr_water(ph.REFERENCE_ACQUISITION, reference_snr=0), "reference_snr"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
