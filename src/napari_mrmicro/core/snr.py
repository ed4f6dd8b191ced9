"""Image signal-to-noise ratio: region estimates and SNR maps.

Noise in each receiver channel is Gaussian with standard deviation σ. A single-coil
magnitude image is Rician, and in the background (no signal) Rayleigh: mean σ√(π/2),
standard deviation σ√(2 − π/2) (Henkelman, Med Phys 1985;12:232; Kaufman et al., Radiology
1989;173:265; Gudbjartsson & Patz, Magn Reson Med 1995;34:910). A root-sum-of-squares of n
coils follows a (non-central) χ distribution with 2n degrees of freedom: background mean
σ√2·Γ(n+½)/Γ(n), variance σ²(2n − (√2·Γ(n+½)/Γ(n))²) (Constantinides, Atalar & McVeigh,
Magn Reson Med 1997;38:852). SNR here is the mean signal over σ.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.special import gammaln

NOISE_ESTIMATORS = ("std", "mean")
_MIN_NOISE_VOXELS = 100


def background_factors(n_coils: int = 1) -> tuple:
    """(mean, std) of the background magnitude in units of σ for ``n_coils`` combined by
    root-sum-of-squares; ``(√(π/2), √(2 − π/2)) ≈ (1.2533, 0.6551)`` for one coil."""
    if isinstance(n_coils, bool) or int(n_coils) != n_coils or n_coils < 1:
        raise ValueError(f"background_factors: n_coils must be a positive integer, got "
                         f"{n_coils!r}")
    mean = math.sqrt(2) * math.exp(gammaln(n_coils + 0.5) - gammaln(n_coils))
    return mean, math.sqrt(2 * n_coils - mean**2)


def _spatial_axes(ndim):
    return tuple(range(max(ndim - 3, 0), ndim))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold (IEEE Trans Syst Man Cybern 1979;9:62) on a 256-bin histogram."""
    hist, edges = np.histogram(values, bins=256)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (mu0 - mu1) ** 2)])


def default_masks(magnitude, margin: int = 3) -> tuple:
    """(signal, noise) masks of a magnitude image: Otsu's threshold, opened to drop isolated
    noise voxels, and the voxels more than ``margin`` voxels away from it."""
    magnitude = np.asarray(magnitude)
    signal = magnitude > _otsu(magnitude.ravel())
    signal = ndimage.binary_opening(signal)
    near = ndimage.binary_dilation(signal, iterations=margin) if signal.any() else signal
    return signal, ~near


def _mask(mask, shape, name, func):
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"{func}: {name} must be a boolean array, got dtype {mask.dtype}")
    try:
        mask = np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"{func}: {name} of shape {mask.shape} does not match the image "
                         f"{shape}") from None
    return mask


def noise_sigma(background, n_coils: int = 1, estimator: str = "std",
                magnitude: bool = True) -> float:
    """Per-channel noise σ from background samples (no signal).

    Magnitude samples (``magnitude=True``) are corrected by :func:`background_factors`:
    σ = std / √(2n − μ_n²) (``"std"``, insensitive to a constant offset) or σ = mean / μ_n
    (``"mean"``). Complex samples give σ as the standard deviation of their real and
    imaginary parts.
    """
    values = np.asarray(background).ravel()
    if values.size < _MIN_NOISE_VOXELS:
        raise ValueError(f"noise_sigma: need at least {_MIN_NOISE_VOXELS} background voxels, "
                         f"got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError("noise_sigma: background contains NaN or Inf")
    if np.iscomplexobj(values):
        return float(np.sqrt(0.5 * (values.real.var() + values.imag.var())))
    if estimator not in NOISE_ESTIMATORS:
        raise ValueError(f"noise_sigma: estimator must be one of {NOISE_ESTIMATORS}, got "
                         f"{estimator!r}")
    if not magnitude:
        return float(values.std())
    mean_factor, std_factor = background_factors(n_coils)
    values = values.astype(np.float64)
    return float(values.std() / std_factor if estimator == "std" else values.mean() / mean_factor)


def snr_estimate(magnitude, signal_mask=None, noise_mask=None, n_coils: int = 1,
                 estimator: str = "std") -> dict:
    """SNR = mean signal in ``signal_mask`` / σ from the background ``noise_mask``.

    ``magnitude`` is a magnitude image (Rayleigh/χ-corrected σ, see :func:`noise_sigma`) or a
    complex image (σ of the real and imaginary background, mean |image| as signal). Masks
    default to :func:`default_masks`. Returns ``{"snr", "signal", "sigma", "n_signal",
    "n_noise"}``.
    """
    image = np.asarray(magnitude)
    if image.size == 0:
        raise ValueError("snr_estimate: image is empty")
    mag = np.abs(image) if np.iscomplexobj(image) else image
    if signal_mask is None or noise_mask is None:
        auto_signal, auto_noise = default_masks(mag)
        signal_mask = auto_signal if signal_mask is None else signal_mask
        noise_mask = auto_noise if noise_mask is None else noise_mask
    signal_mask = _mask(signal_mask, image.shape, "signal_mask", "snr_estimate")
    noise_mask = _mask(noise_mask, image.shape, "noise_mask", "snr_estimate")
    if not signal_mask.any():
        raise ValueError("snr_estimate: signal_mask is empty")
    if np.any(signal_mask & noise_mask):
        raise ValueError("snr_estimate: signal_mask and noise_mask overlap")
    signal = float(np.mean(mag[signal_mask], dtype=np.float64))
    if not math.isfinite(signal):
        raise ValueError("snr_estimate: the signal region contains NaN or Inf")
    sigma = noise_sigma(image[noise_mask], n_coils, estimator)
    if not sigma > 0:
        raise ValueError("snr_estimate: the background has no noise (σ = 0); is it zero-filled "
                         "or masked?")
    return {"snr": signal / sigma, "signal": signal, "sigma": sigma,
            "n_signal": int(signal_mask.sum()), "n_noise": int(noise_mask.sum())}


def snr_map(image, repeat_axis: int | None = None, noise_mask=None, sigma: float | None = None,
            n_coils: int = 1, window: int = 5) -> np.ndarray:
    """Voxel-wise SNR, float32.

    With ``repeat_axis`` (≥ 2 repeated acquisitions, complex or magnitude): the multiple-
    acquisition method (Reeder et al., Magn Reson Med 2005;54:748; Dietrich et al., J Magn
    Reson Imaging 2007;26:375). σ² per voxel is the residual variance about the mean over the
    repeats, Σ|x_i − x̄|² / (2(N−1)) for complex data (/(N−1) for magnitude, valid at SNR ≳ 3),
    averaged over a ``window``³ neighbourhood; the map is the SNR of the averaged image,
    |x̄| / (σ/√N). It holds for any noise that varies slowly in space (coil arrays, parallel
    imaging).

    Without repeats, noise must be uniform (single coil or root-sum-of-squares without
    parallel imaging): σ is ``sigma`` or estimated from ``noise_mask`` (default
    :func:`default_masks`), and the map is √max(M² − 2nσ², 0) / σ, the magnitude with its
    noise bias removed (Gudbjartsson & Patz 1995).
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("snr_map: image is empty")
    if repeat_axis is None:
        mag = (np.abs(image) if np.iscomplexobj(image) else image).astype(np.float32)
        if sigma is None:
            noise = default_masks(mag)[1] if noise_mask is None else \
                _mask(noise_mask, image.shape, "noise_mask", "snr_map")
            sigma = noise_sigma(image[noise], n_coils)
        if not (sigma is not None and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"snr_map: sigma must be positive, got {sigma!r}")
        background_factors(n_coils)  # checks n_coils
        bias = 2 * n_coils * sigma**2  # E[M²] = A² + 2nσ²
        return (np.sqrt(np.maximum(mag * mag - np.float32(bias), 0)) / np.float32(sigma)
                ).astype(np.float32)
    if not -image.ndim <= repeat_axis < image.ndim:
        raise ValueError(f"snr_map: repeat_axis {repeat_axis} is not an axis of {image.shape}")
    n = image.shape[repeat_axis]
    if n < 2:
        raise ValueError(f"snr_map: need at least 2 repeated acquisitions along repeat_axis, "
                         f"got {n}")
    if int(window) != window or window < 1:
        raise ValueError(f"snr_map: window must be a positive integer, got {window!r}")
    stack = np.moveaxis(image, repeat_axis, 0)
    complex_data = np.iscomplexobj(stack)
    mean = stack.mean(axis=0, dtype=np.complex64 if complex_data else np.float32)
    residual = np.zeros(mean.shape, dtype=np.float32)
    for x in stack:
        d = x - mean
        residual += (d.real**2 + d.imag**2) if complex_data else d**2
    residual /= (2 if complex_data else 1) * (n - 1)
    size = [1] * mean.ndim
    for axis in _spatial_axes(mean.ndim):
        size[axis] = int(window)
    variance = ndimage.uniform_filter(residual, size=size, mode="nearest")
    if not np.all(np.isfinite(variance)):
        raise ValueError("snr_map: image contains NaN or Inf")
    sigma_mean = np.sqrt(variance / n)
    out = np.zeros(mean.shape, dtype=np.float32)
    np.divide(np.abs(mean), sigma_mean, out=out, where=sigma_mean > 0)
    return out
