"""MR-microscopy physics: signal equations and the constants they need."""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T


def larmor_hz(b0_tesla: float, nucleus: str = "1H") -> float:
    """Larmor frequency f = γ/2π · B0 in Hz (¹H: 100.0 MHz at 2.35 T)."""
    return GAMMA_BAR_MHZ_PER_T[nucleus] * 1e6 * b0_tesla


def spin_echo_signal(proton_density, t1_ms, t2_ms, te_ms: float, tr_ms: float):
    """Spin-echo signal ρ(1 − e^{−TR/T1}) e^{−TE/T2} (Haacke et al., *Magnetic Resonance
    Imaging*, 1999, eq. 8.36, for TR ≫ TE)."""
    rho = np.asarray(proton_density, dtype=np.float32)
    t1 = np.asarray(t1_ms, dtype=np.float32)
    t2 = np.asarray(t2_ms, dtype=np.float32)
    return (rho * -np.expm1(-np.float32(tr_ms) / t1) * np.exp(-np.float32(te_ms) / t2)
            ).astype(np.float32)


def magnitude_with_noise(signal, sigma: float, rng: np.random.Generator):
    """|signal + n| for complex Gaussian noise n of standard deviation ``sigma`` per channel:
    the Rician magnitude of a single-coil MR image (Gudbjartsson & Patz, Magn Reson Med
    1995;34:910)."""
    signal = np.asarray(signal, dtype=np.float32)
    noisy = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    return np.hypot(noisy, rng.normal(0.0, sigma, signal.shape).astype(np.float32))
