"""A simulated optical view of point-like fluorescent particles (e.g. microdiamonds)."""

from __future__ import annotations

import numpy as np


def render_spots(shape, spacing_um, centres_um, sigma_um, amplitude: float = 1.0,
                 background: float = 0.0) -> np.ndarray:
    """Fluorescence stack of sub-resolution particles: a Gaussian point-spread function per
    particle, evaluated exactly at each voxel centre (Zhang et al., Appl Opt 2007: the
    Gaussian approximation of widefield and confocal PSFs).

    Parameters
    ----------
    shape : tuple of int
    spacing_um : sequence of float
        Pixel size per axis (µm).
    centres_um : (N, ndim) array
        Particle positions in the stack's frame (index × spacing, µm).
    sigma_um : float or sequence of float
        PSF standard deviation per axis (µm); axial is usually 2–3× lateral.
    amplitude, background : float
        Peak brightness of a particle and the tissue's autofluorescence.
    """
    spacing = np.broadcast_to(np.asarray(spacing_um, float), (len(shape),))
    sigma = np.broadcast_to(np.asarray(sigma_um, float), (len(shape),))
    if not (np.all(spacing > 0) and np.all(sigma > 0)):
        raise ValueError(f"render_spots: spacing_um {spacing_um} and sigma_um {sigma_um} "
                         "must be positive")
    out = np.full(shape, background, dtype=np.float32)
    for c in np.atleast_2d(np.asarray(centres_um, float)):
        index = c / spacing
        lo = np.maximum(np.floor(index - 4 * sigma / spacing).astype(int), 0)
        hi = np.minimum(np.ceil(index + 4 * sigma / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue  # outside the stack
        terms = [((np.arange(a, b) * s - cc) / g) ** 2
                 for a, b, s, cc, g in zip(lo, hi, spacing, c, sigma)]
        r2 = sum(t.reshape([-1 if i == k else 1 for i in range(len(shape))])
                 for k, t in enumerate(terms))
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] += amplitude * np.exp(-0.5 * r2)
    return out
