"""Compressed-sensing reconstruction of undersampled Cartesian k-space.

Solves  min_x ½‖M F x − y‖² + λ R(x)  with F the centred orthonormal FFT over the k-space
axes, M the sampling mask and y the measured samples (Lustig, Donoho & Pauly, Magn Reson Med
2007;58:1182):

- ``method="l1_wavelet"``: R = ‖Ψx‖₁ over the detail coefficients of an orthonormal
  Daubechies wavelet Ψ (:mod:`~napari_mrmicro.core.wavelets`), by FISTA (Beck & Teboulle,
  SIAM J Imaging Sci 2009;2:183) with step 1 (‖F^H M F‖ = 1); the proximal step is the
  complex soft threshold of the wavelet coefficients, on a randomly shifted grid each
  iteration (cycle spinning, Figueiredo & Nowak, IEEE Trans Image Process 2003;12:906; as
  in BART's ``pics``), which removes the block artefacts of a fixed wavelet grid. Haar is
  the default: on piecewise-constant specimens (tissue compartments) it is the sparsest
  (cochlea, 4× Poisson disc: NRMSE 2 % against 10 % for db4).
- ``method="tv"``: isotropic total variation R = Σ_r ‖∇x(r)‖₂ with periodic forward
  differences, by ADMM / split Bregman (Goldstein & Osher, SIAM J Imaging Sci 2009;2:323;
  Boyd et al., Found Trends Mach Learn 2011;3:1). Differences and F^H M F are both diagonal in
  k-space, so the x-update is one exact FFT-domain division.

Stopping rule (both): stop after iteration i when ‖x_i − x_{i−1}‖ ≤ tol·‖x_i‖, or after
``iterations`` iterations. ``lam`` is relative to the largest magnitude of the zero-filled
image, so a value suits any intensity scale; 1e-3 … 3e-2 are typical.
"""

from __future__ import annotations

import math

import numpy as np

from napari_mrmicro.core.kspace import KSpace, centered_fft, centered_ifft
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.wavelets import (WAVELETS, approximation_slices, max_levels,
                                          wavelet_forward, wavelet_inverse)

CS_METHODS = ("l1_wavelet", "tv")


def _inputs(kspace, mask, kspace_axes):
    if isinstance(kspace, KSpace):
        if kspace.coil_axis is not None:
            raise ValueError("cs_reconstruct: takes single-channel k-space; reconstruct coils "
                             "one at a time and combine the images")
        mask = kspace.sampled if mask is None else mask
        kspace_axes = kspace.kspace_axes if kspace_axes is None else kspace_axes
        data = kspace.data
    else:
        data = kspace
    data = np.asarray(data)
    if not np.iscomplexobj(data) or data.size == 0:
        raise ValueError(f"cs_reconstruct: kspace must be a non-empty complex array, got "
                         f"dtype {data.dtype} and shape {data.shape}")
    if mask is None:
        raise ValueError("cs_reconstruct: give the sampling mask (mask=, or KSpace.sampled)")
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"cs_reconstruct: mask must be boolean, got dtype {mask.dtype}")
    try:
        np.broadcast_shapes(mask.shape, data.shape)
    except ValueError:
        raise ValueError(f"cs_reconstruct: mask {mask.shape} does not match the k-space "
                         f"{data.shape}") from None
    if not mask.any():
        raise ValueError("cs_reconstruct: the mask samples nothing")
    if kspace_axes is None:
        kspace_axes = tuple(range(-min(data.ndim, 3), 0))
    axes = tuple(sorted({int(a) % data.ndim for a in kspace_axes}))
    return data, mask, axes


def _stop(change, tol, callback, i, iterations) -> bool:
    if callback is not None and callback(i + 1, iterations) is False:
        return True
    return change <= tol


def _soft_threshold(c, threshold):
    """Complex soft threshold c·max(0, 1 − τ/|c|), in place."""
    if threshold <= 0:
        return c
    magnitude = np.abs(c)
    scale = np.maximum(magnitude, threshold, out=magnitude)
    np.divide(threshold, scale, out=scale)
    np.subtract(1, scale, out=scale)
    c *= scale
    return c


def _fista_l1_wavelet(y, mask, axes, lam, iterations, tol, wavelet, levels, callback, workers):
    spatial = [a for a in axes if y.shape[a] > 1]
    block = 2**levels
    pad = [(0, 0)] * y.ndim
    for a in spatial:
        pad[a] = (0, (-y.shape[a]) % block)
    crop = tuple(slice(0, n) for n in y.shape)
    approx = approximation_slices(tuple(n + p[1] for n, p in zip(y.shape, pad)), levels,
                                  spatial)

    def data_step(z):
        """z − F^H(M F z − y) on the unpadded grid, embedded back into the padded one."""
        k = centered_fft(z[crop], axes, workers)
        np.copyto(k, y, where=mask)
        out = np.zeros_like(z)
        out[crop] = centered_ifft(k, axes, workers, overwrite_x=True)
        return out

    x = np.pad(centered_ifft(y, axes, workers), pad)
    threshold = np.float32(lam * np.abs(x).max())
    z, t = x.copy(), 1.0
    rng = np.random.default_rng(0)
    for i in range(iterations):
        shift = tuple(int(v) for v in rng.integers(0, block, len(spatial)))
        coefficients = wavelet_forward(np.roll(data_step(z), shift, spatial), wavelet, levels,
                                       spatial)
        kept = coefficients[approx].copy()
        _soft_threshold(coefficients, threshold)
        coefficients[approx] = kept
        x_new = np.roll(wavelet_inverse(coefficients, wavelet, levels, spatial),
                        tuple(-v for v in shift), spatial)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        difference = x_new - x
        change = float(np.linalg.norm(difference) / max(np.linalg.norm(x_new), 1e-30))
        z = x_new + np.float32((t - 1) / t_new) * difference
        x, t = x_new, t_new
        if _stop(change, tol, callback, i, iterations):
            break
    return np.ascontiguousarray(x[crop])


def _gradient(x, axes):
    return np.stack([np.roll(x, -1, a) - x for a in axes])


def _divergence_adjoint(v, axes):
    """∇^H v = Σ_a (roll(v_a, +1) − v_a)."""
    out = np.zeros(v.shape[1:], dtype=v.dtype)
    for va, a in zip(v, axes):
        out += np.roll(va, 1, a) - va
    return out


def _admm_tv(y, mask, axes, lam, iterations, tol, rho, callback, workers):
    tv_axes = [a for a in axes if y.shape[a] > 1]
    laplacian = np.zeros([y.shape[a] if a in axes else 1 for a in range(y.ndim)],
                         dtype=np.float32)
    for a in tv_axes:
        n = y.shape[a]
        f = (np.arange(n) - n // 2) / n
        shape = [1] * y.ndim
        shape[a] = n
        laplacian = laplacian + (4 * np.sin(np.pi * f) ** 2).astype(np.float32).reshape(shape)
    denominator = mask.astype(np.float32) + np.float32(rho) * laplacian
    solvable = denominator > 0
    np.divide(1, denominator, out=denominator, where=solvable)
    denominator[~solvable] = 0
    x = centered_ifft(y, axes, workers)
    threshold = np.float32(lam * np.abs(x).max() / rho)
    u = np.zeros((len(tv_axes),) + y.shape, dtype=np.complex64)
    for i in range(iterations):
        # z- and u-updates first: starting from z = ∇x₀ would leave x₀ a fixed point.
        w = _gradient(x, tv_axes)
        w += u
        norm = np.sqrt(np.sum(w.real**2 + w.imag**2, axis=0))
        z = w * (1 - threshold / np.maximum(norm, threshold))
        u = w - z
        rhs = centered_fft(_divergence_adjoint(z - u, tv_axes), axes, workers, overwrite_x=True)
        rhs *= np.float32(rho)
        rhs += y
        rhs *= denominator
        x_new = centered_ifft(rhs, axes, workers, overwrite_x=True)
        change = float(np.linalg.norm(x_new - x) / max(np.linalg.norm(x_new), 1e-30))
        x = x_new
        if _stop(change, tol, callback, i, iterations):
            break
    return x


def estimate_cs_bytes(shape, method: str = "l1_wavelet") -> int:
    """Working memory of :func:`cs_reconstruct` for k-space of ``shape``, bytes (estimate)."""
    n = 8 * math.prod(int(s) for s in shape)
    return n * (9 if method == "l1_wavelet" else 4 + 4 * min(len(shape), 3))


def cs_reconstruct(kspace, mask=None, method: str = "l1_wavelet", lam: float = 0.005,
                   iterations: int = 50, tol: float = 1e-4, wavelet: str = "haar",
                   levels: int | None = None, rho: float = 0.1, callback=None,
                   kspace_axes=None, workers: int = -1) -> np.ndarray:
    """Compressed-sensing image (complex64) from undersampled Cartesian k-space.

    Parameters
    ----------
    kspace : KSpace or ndarray
        Complex k-space on the full grid (DC at ``N // 2``); unsampled positions are ignored.
        A KSpace brings its ``sampled`` mask and k-space axes; coil data are refused.
    mask : ndarray of bool, optional
        Sampled positions, broadcastable to the k-space (e.g. ``(z, y, x)`` for
        ``(echo, z, y, x)``), from :mod:`~napari_mrmicro.core.sampling`.
    method : {"l1_wavelet", "tv"}
    lam : float
        Regularization weight relative to the zero-filled image's maximum magnitude.
    iterations, tol : int, float
        The stopping rule (see the module docstring).
    wavelet, levels : str, int
        ``"haar"``, ``"db2"`` or ``"db4"``; levels default to min(3, what the shape allows).
        The random shifts of cycle spinning are seeded, so results are reproducible.
        Axes not divisible by 2^levels are zero-padded in image space.
    rho : float
        ADMM penalty of ``"tv"`` (in units of the data term).
    callback : callable, optional
        ``callback(i, n)`` after iteration i of at most n; returning ``False`` stops the
        solver and the current iterate is returned (a dock's cancel button).
    kspace_axes : tuple of int, optional
        For arrays: the k-space axes (default the last ``min(ndim, 3)``); the same axes are
        regularized (the slice axis of multi-slice data is not).
    workers : int
        ``scipy.fft`` threads.
    """
    data, mask, axes = _inputs(kspace, mask, kspace_axes)
    if method not in CS_METHODS:
        raise ValueError(f"cs_reconstruct: method must be one of {CS_METHODS}, got {method!r}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"cs_reconstruct: lam must be a finite number >= 0, got {lam!r}")
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f"cs_reconstruct: iterations must be a positive integer, got "
                         f"{iterations!r}")
    if not tol >= 0:
        raise ValueError(f"cs_reconstruct: tol must be >= 0, got {tol!r}")
    if callback is not None and not callable(callback):
        raise ValueError("cs_reconstruct: callback must be callable(i, n)")
    check_memory(estimate_cs_bytes(data.shape, method),
                 f"compressed sensing ({method}) of k-space {data.shape}",
                 advice="fewer echoes or coils at a time")
    mask = np.broadcast_to(mask, data.shape)
    y = np.where(mask, data, 0).astype(np.complex64)
    if not np.all(np.isfinite(y)):
        raise ValueError("cs_reconstruct: the sampled k-space contains NaN or Inf")
    if method == "tv":
        if not rho > 0:
            raise ValueError(f"cs_reconstruct: rho must be positive, got {rho!r}")
        return _admm_tv(y, mask, axes, lam, int(iterations), tol, rho, callback, workers)
    if wavelet not in WAVELETS:
        raise ValueError(f"cs_reconstruct: wavelet must be one of {WAVELETS}, got {wavelet!r}")
    spatial = [data.shape[a] for a in axes if data.shape[a] > 1]
    allowed = [n for n in range(1, 9)
               if max_levels([m + (-m) % 2**n for m in spatial], wavelet) >= n]
    if not allowed:
        raise ValueError(f"cs_reconstruct: {tuple(spatial)} is too small for the {wavelet!r} "
                         "wavelet")
    levels = min(3, allowed[-1]) if levels is None else levels
    if isinstance(levels, bool) or levels not in allowed:
        raise ValueError(f"cs_reconstruct: levels must be in [1, {allowed[-1]}] for "
                         f"{wavelet!r} on {tuple(spatial)}, got {levels!r}")
    return _fista_l1_wavelet(y, mask, axes, lam, int(iterations), tol, wavelet, int(levels),
                             callback, workers)
