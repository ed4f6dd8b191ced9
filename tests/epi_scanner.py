"""An analytic EPI scanner for tests: echo trains of known image rows computed by the direct
(off-grid) DFT, independent of :mod:`napari_mrmicro.core.epi`."""

import numpy as np


def trapezoid_trajectory(samples: int, ramp: int, excursion: float) -> np.ndarray:
    """k(t) of a trapezoidal readout lobe sampled on its ramps too: the running integral of
    the gradient (linear ramps of ``ramp`` samples), scaled to ``excursion`` cycles/FOV."""
    t = np.arange(samples) + 0.5
    gradient = np.minimum(1.0, np.minimum(t, samples - t) / ramp)
    k = np.concatenate([[0.0], np.cumsum(gradient)])[:-1]
    return k * excursion / k[-1]


def off_grid(rows, positions):
    """The centred orthonormal DFT of each row (last axis) at arbitrary k, in cycles per
    field of view from DC."""
    n = rows.shape[-1]
    pixel = np.arange(n) - n // 2
    return rows @ np.exp(-2j * np.pi * np.outer(pixel, positions) / n) / np.sqrt(n)


def echo_trains(rows, trajectory, polarity_phase, ghost):
    """Echo trains as a scanner records them, from image rows ``(..., lines, N)`` (image
    along the readout, one row per line): even lines forward, odd lines from the end of the
    lobe back (k_end − k(t), k = 0 mid-lobe); the odd lines carry the Nyquist ghost phase
    ``exp(−i(φ0 + φ1·m))`` (``ghost`` of shape ``(..., 2)``) and lack the polarity phase."""
    rows = np.asarray(rows, np.complex128).copy()
    ghost = np.asarray(ghost, np.float64)
    end = trajectory.max()
    centre = end / 2
    pixel = np.arange(rows.shape[-1])
    rows[..., 1::2, :] *= np.exp(-1j * (ghost[..., 0, None, None]
                                        + ghost[..., 1, None, None] * pixel))
    trains = np.empty(rows.shape[:-1] + (trajectory.size,), np.complex128)
    trains[..., 0::2, :] = off_grid(rows[..., 0::2, :], trajectory - centre)
    trains[..., 1::2, :] = off_grid(rows[..., 1::2, :], end - trajectory - centre)
    trains[..., 1::2, :] *= np.exp(-1j * np.asarray(polarity_phase))
    return trains
