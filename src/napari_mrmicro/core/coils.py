"""Multi-coil combination of complex coil images.

Root-sum-of-squares (no sensitivity maps needed; magnitude only) and the
sensitivity-weighted combination ``Σ S*·x / Σ|S|²``, the SNR-optimal combination for
uncorrelated coil noise of equal variance (Roemer et al., Magn Reson Med 1990;16:192).
"""

from __future__ import annotations

import numpy as np


def _coil_first(images, coil_axis: int, func: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"{func}: images need a coil axis and at least one image axis, "
                         f"got shape {images.shape}")
    if not -images.ndim <= coil_axis < images.ndim:
        raise ValueError(f"{func}: coil_axis {coil_axis} is not an axis of shape {images.shape}")
    return np.moveaxis(images, coil_axis, 0)


def combine_rss(images, coil_axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares ``√Σ_c |x_c|²`` over ``coil_axis``, float32.

    Has no phase: use :func:`combine_sensitivity` when the phase is needed (QSM).
    Accumulated coil by coil, so the only full-size temporaries are one coil's |x|².
    """
    images = _coil_first(images, coil_axis, "combine_rss")
    out = np.zeros(images.shape[1:], dtype=np.float32)
    for coil in images:
        out += (coil.real.astype(np.float32) ** 2 + coil.imag.astype(np.float32) ** 2
                if np.iscomplexobj(coil) else coil.astype(np.float32) ** 2)
    return np.sqrt(out, out=out)


def combine_sensitivity(images, coil_maps, coil_axis: int = 0) -> np.ndarray:
    """Sensitivity-weighted combination ``Σ_c S_c*·x_c / Σ_c |S_c|²``, complex64.

    ``coil_maps`` has the coil axis first and the image axes last, e.g. ``(coil, z, y, x)``
    for images ``(coil, echo, z, y, x)`` (maps are shared by all echoes). Where
    ``Σ|S|² = 0`` (no coil sees the voxel) the result is 0.
    """
    images = _coil_first(images, coil_axis, "combine_sensitivity")
    maps = np.asarray(coil_maps)
    if maps.ndim < 2 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"combine_sensitivity: coil_maps {maps.shape} must have the coil axis "
                         f"first with {images.shape[0]} coils")
    maps = maps.reshape((maps.shape[0],) + (1,) * (images.ndim - maps.ndim) + maps.shape[1:])
    try:
        np.broadcast_shapes(maps.shape, images.shape)
    except ValueError:
        raise ValueError(f"combine_sensitivity: coil_maps {np.asarray(coil_maps).shape} do not "
                         f"match the coil images {images.shape} (coil axis first)") from None
    if not np.all(np.isfinite(maps)):
        raise ValueError("combine_sensitivity: coil_maps contain NaN or Inf")
    maps = maps.astype(np.complex64, copy=False)
    numerator = np.zeros(images.shape[1:], dtype=np.complex64)
    weight = np.zeros(maps.shape[1:], dtype=np.float32)
    for coil, s in zip(images, maps):
        numerator += np.conj(s) * coil
        weight += s.real**2 + s.imag**2
    np.divide(numerator, weight, out=numerator, where=weight > 0)
    numerator[np.broadcast_to(weight == 0, numerator.shape)] = 0
    return numerator
