"""Relaxometry: T2 or T2* and S0 from the magnitude of several echoes, voxel by voxel.

The signal of echo ``i`` is ``S_i = S0·exp(−R2·TE_i)`` (T2 = 1/R2 for spin echoes, T2* for
gradient echoes). Three fits of one signature (:func:`fit_relaxation`, ``method``):

* ``"loglinear"``: weighted linear least squares of ``ln S`` over TE with weights ``S²``
  (the variance of ``ln S`` is σ²/S²), in closed form.
* ``"arlo"``: auto-regression on linear operations (Pei et al., Magn Reson Med
  2015;73:843). For equally spaced echoes (spacing Δ) the integral of the signal over two
  spacings is ``T2·(S_i − S_{i+2})``; with Simpson's rule ``s_i = Δ/3·(S_i + 4S_{i+1} +
  S_{i+2})`` and ``δ_i = S_i − S_{i+2}``, ``T2 = (Σs² + Δ/3·Σsδ) / (Δ/3·Σδ² + Σsδ)``, exact
  for noise-free data up to Simpson's error (``(Δ/T2)⁴/180``). Needs three echoes.
* ``"nonlinear"``: least squares on the signal itself, the maximum-likelihood estimate
  under Gaussian noise, by Levenberg–Marquardt steps from the log-linear fit, every voxel
  at once (:mod:`~napari_mrmicro.core.voxel_fit`; ``scipy.optimize.curve_fit`` voxel by
  voxel reaches the same minimum, tested, but takes minutes on a volume).

A magnitude image is Rician: where the signal has decayed into the noise its mean stays
near σ√(π/2) and a fit would read a decay that stops, a T2 too long. Each voxel's echoes are
therefore used up to the last one of the run that stays above ``floor``·σ from the first
echo on (truncation; σ the noise per channel, measured in the background by
:func:`~napari_mrmicro.core.qsm.mask.signal_mask` when not given). A voxel needs two such
echoes (three for ARLO); one that has fewer, whose fit shows no decay (R2 ≤ 0), or whose
fitted decay across its echoes is smaller than σ (:data:`MIN_DECAY`; a T2 too long for
these echo times to tell from no decay: the fit would give any value up to infinity) is
not fitted: its R2, T2 and S0 are 0 and ``fitted`` is False there (:data:`NOT_FITTED`).

Written here: a fit over every voxel of a volume in a few vectorized passes, slab by slab
on all cores, with the noise floor, is what a napari layer needs; per-voxel curve fitting
libraries are orders of magnitude slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.voxel_fit import fit_voxels, levenberg_marquardt

METHODS = ("nonlinear", "loglinear", "arlo")
#: Echoes are used while the signal stays above this many σ (Rician bias below 5 %).
NOISE_FLOOR = 3.0
#: The least fitted decay across a voxel's echoes, in σ, that counts as a measured decay.
MIN_DECAY = 1.0
#: The value of R2, T2 and S0 where a voxel is not fitted.
NOT_FITTED = 0.0
#: Bytes per voxel of the results (R2, S0, echoes used, fitted, the mask).
RESULT_BYTES = 11
#: Levenberg–Marquardt iterations of the nonlinear fit.
LM_ITERATIONS = 30


@dataclass(frozen=True)
class Relaxation:
    """A relaxation fit: ``r2_per_s`` (1/s) and ``s0`` (magnitude units), float32, 0 where
    ``fitted`` is False; ``echoes_used`` per voxel (uint8); ``noise_sigma`` the σ the floor
    was set from (None without a floor)."""

    r2_per_s: np.ndarray
    s0: np.ndarray
    fitted: np.ndarray
    echoes_used: np.ndarray
    noise_sigma: float | None

    def t2_ms(self) -> np.ndarray:
        """T2 (or T2*) in ms, float32, 0 where not fitted."""
        out = np.zeros(self.r2_per_s.shape, np.float32)
        np.divide(np.float32(1000), self.r2_per_s, out=out, where=self.fitted)
        return out


def relaxation_name(acquisition: dict | None) -> str:
    """What a decay measures: "T2*" for gradient echoes, "T2" for spin echoes, "T2 or T2*"
    when the acquisition does not say."""
    sequence = (acquisition or {}).get("sequence")
    return {"gradient_echo": "T2*", "spin_echo": "T2"}.get(sequence, "T2 or T2*")


def check_echo_times(te_ms, echoes: int, method: str, where: str) -> np.ndarray:
    """Echo times (ms, float64): one per echo, finite, positive and increasing; equally
    spaced for ARLO."""
    te = np.asarray(te_ms, dtype=np.float64).ravel()
    if te.size != echoes:
        raise ValueError(f"{where}: te_ms has {te.size} echo times for {echoes} echoes")
    if not np.all(np.isfinite(te)) or np.any(te < 0) or np.any(np.diff(te) <= 0):
        raise ValueError(f"{where}: te_ms must be finite, >= 0 and increasing, got "
                         f"{te.tolist()}")
    if method == "arlo":
        if te.size < 3:
            raise ValueError(f"{where}: ARLO needs at least 3 echoes, got {te.size}")
        spacing = np.diff(te)
        if np.ptp(spacing) > 1e-3 * spacing.mean():
            raise ValueError(f"{where}: ARLO needs equally spaced echoes, got spacings "
                             f"{np.round(spacing, 4).tolist()} ms (use nonlinear)")
    return te


def fit_relaxation(magnitude, te_ms, method: str = "nonlinear", mask=None,
                   noise_sigma: float | None = None, floor: float = NOISE_FLOOR,
                   skip_echoes: int = 0, callback=None) -> Relaxation:
    """T2 (spin echoes) or T2* (gradient echoes) and S0 of a mono-exponential decay.

    Parameters
    ----------
    magnitude : ndarray, (echo, z, y, x) or (echo, ...)
        Magnitude of each echo (real, >= 0), echoes first.
    te_ms : sequence of float
        Echo times in ms, increasing (equally spaced for ``"arlo"``).
    method : {"nonlinear", "loglinear", "arlo"}
        The fit (module docstring).
    mask : ndarray of bool, optional
        Voxels to fit; default: the voxels whose first echo is above the noise floor.
    noise_sigma : float, optional
        Noise σ per channel in magnitude units; default measured in the background of the
        first echo (:func:`~napari_mrmicro.core.qsm.mask.signal_mask`).
    floor : float
        Echoes are used while the signal stays above ``floor``·σ; 0 uses every echo.
    skip_echoes : int
        Leave out this many first echoes. In a multi-echo spin-echo (CPMG) train with
        imperfect refocusing pulses the first echo lacks the stimulated-echo pathways of
        the later ones and lies off their exponential; leaving it out makes T2 more
        accurate (Milford et al., PLoS One 2015;10:e0145255). S0 is then extrapolated
        from the later echoes.
    callback : callable, optional
        ``callback(fraction)`` after each slab; returning False cancels (``InterruptedError``).

    Returns
    -------
    Relaxation
    """
    where = "fit_relaxation"
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")
    data = check_magnitude(magnitude, "magnitude", "echo", where)
    te = check_echo_times(te_ms, data.shape[0], method, where)
    if te.size < 2:
        raise ValueError(f"{where}: a decay needs at least 2 echoes, got {te.size}")
    least = 3 if method == "arlo" else 2
    if isinstance(skip_echoes, bool) or not isinstance(skip_echoes, (int, np.integer)) \
            or not 0 <= skip_echoes <= te.size - least:
        raise ValueError(f"{where}: skip_echoes must be a whole number from 0 to "
                         f"{max(te.size - least, 0)} ({least} of the {te.size} echoes must "
                         f"remain), got {skip_echoes!r}")
    data, te = data[skip_echoes:], te[skip_echoes:]
    check_memory(RESULT_BYTES * math.prod(data.shape[1:]),
                 f"{where}: mapping {data.shape[1:]} voxels", advice="a cropped volume")
    if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor >= 0):
        raise ValueError(f"{where}: floor must be a finite number >= 0, got {floor!r}")
    measured = None
    if floor > 0 and noise_sigma is None:
        measured, noise_sigma = signal_and_noise(data[0], where)
    if noise_sigma is not None and not (math.isfinite(noise_sigma) and noise_sigma > 0):
        raise ValueError(f"{where}: noise_sigma must be positive, got {noise_sigma!r}")
    level = np.float32(floor * noise_sigma) if floor > 0 else np.float32(0)
    least_decay = np.float32(MIN_DECAY * noise_sigma) if floor > 0 else np.float32(0)
    if mask is None:
        mask = data[0] > level if measured is None else measured & (data[0] > level)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape[1:]:
            raise ValueError(f"{where}: mask {mask.shape} does not match the image "
                             f"{data.shape[1:]}")
    if not mask.any():
        raise ValueError(f"{where}: no voxel to fit (the mask is empty, or no first echo "
                         f"is above {floor:g}σ = {float(level):.4g})")

    shape = data.shape[1:]
    r2, s0 = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    used = np.zeros(shape, np.uint8)
    fit_voxels(data, mask, lambda signal: _fit(signal, te, method, level, least_decay),
               [r2, s0, used], callback=callback, where=where)
    fitted = (r2 > 0) & mask
    r2[~fitted] = NOT_FITTED
    s0[~fitted] = NOT_FITTED
    return Relaxation(r2, s0, fitted, used, noise_sigma if floor > 0 else None)


def check_magnitude(images, name: str, points: str, where: str) -> np.ndarray:
    """``images`` as an array of magnitudes, (``points``, ...): real, finite and >= 0, or
    a ValueError headed ``where`` that names ``name`` and the problem."""
    data = np.asarray(images)
    if np.iscomplexobj(data) or data.dtype.kind not in "fiu" or data.ndim < 2:
        raise ValueError(f"{where}: {name} must be real ({points}, ...) data, got "
                         f"{data.dtype} {data.shape}")
    if not backend.all_finite(data):
        raise ValueError(f"{where}: {name} contains NaN or Inf")
    if data.min() < 0:
        raise ValueError(f"{where}: {name} has negative values (min {data.min():g}): is "
                         "it a phase or a real part? Give the magnitude")
    return data


def fit_record(fit: Relaxation, method: str, te_ms, floor: float, skip_echoes: int,
               quantity: str) -> dict:
    """How a map was fitted, as stored with it (``metadata["relaxometry"]``); its
    ``not_fitted_value`` tells a measurement which voxels hold no value."""
    return {"method": method, "te_ms": [float(t) for t in te_ms], "floor": float(floor),
            "skip_echoes": int(skip_echoes), "noise_sigma": fit.noise_sigma,
            "quantity": quantity, "fitted_voxels": int(np.count_nonzero(fit.fitted)),
            "not_fitted_value": NOT_FITTED}


def signal_and_noise(image: np.ndarray, where: str,
                     way_out: str = "give noise_sigma, or a floor of 0 to use every echo"
                     ) -> tuple[np.ndarray, float]:
    """The voxels with signal (noise specks dropped) and the noise σ per channel, measured
    in the background of a 3-D magnitude ``image``
    (:func:`~napari_mrmicro.core.qsm.mask.signal_mask`); ValueError, headed ``where`` and
    ending with ``way_out``, when it has no background."""
    from napari_mrmicro.core.qsm.mask import signal_mask

    if image.ndim != 3:
        raise ValueError(f"{where}: the noise is measured in (z, y, x) volumes; {way_out}")
    try:
        mask, report = signal_mask(image, floor_fraction=0.0, partial_fraction=0.0)
    except ValueError as error:  # no background: a volume cropped to the specimen
        raise ValueError(f"{where}: the noise could not be measured in the image's "
                         f"background ({error}); {way_out}") from None
    return mask, float(report.noise_sigma)


def fit_mask(reference: np.ndarray, mask, noise_sigma, where: str, need_sigma: bool):
    """The voxels a voxel-wise fit takes and the noise σ: a given ``mask`` checked against
    the grid of ``reference`` (the image the signal is judged in), else the voxels with
    signal in it (above 3σ for a given σ, else :func:`signal_and_noise`). σ is checked
    when given and measured when the mask or ``need_sigma`` asks for it (else None);
    ValueErrors headed ``where``."""
    if noise_sigma is not None and not (isinstance(noise_sigma, (int, float))
                                        and math.isfinite(noise_sigma) and noise_sigma > 0):
        raise ValueError(f"{where}: noise_sigma must be a positive number, got "
                         f"{noise_sigma!r}")
    measured = None
    if noise_sigma is None and (mask is None or need_sigma):
        measured, noise_sigma = signal_and_noise(
            reference, where, "give noise_sigma" + ("" if need_sigma else " or a mask"))
    if mask is None:
        mask = measured if measured is not None else reference > 3 * noise_sigma
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != reference.shape:
        raise ValueError(f"{where}: mask {mask.shape} does not match the images "
                         f"{reference.shape}")
    return mask, noise_sigma


def _fit(signal: np.ndarray, te: np.ndarray, method: str, level: np.float32,
         least_decay: np.float32):
    """R2 (1/s), S0 and echoes used of each row of ``signal`` (voxels, echoes): echoes used
    while above ``level``, a fit kept when it decays by ``least_decay`` or more."""
    above = np.logical_and.accumulate(signal > level, axis=1)
    count = above.sum(axis=1)
    t = (te / 1000).astype(np.float32)  # s
    if method == "arlo":
        rate, amplitude = _arlo(signal, t, above)
        good = count >= 3
    else:
        rate, amplitude = _loglinear(signal, t, above)
        if method == "nonlinear":
            rate, amplitude = _levenberg_marquardt(signal, t, above, rate, amplitude)
        good = count >= 2
    last = t[np.maximum(count, 1) - 1]  # the last echo each voxel used
    with np.errstate(over="ignore", invalid="ignore"):
        decay = amplitude * (np.exp(-rate * t[0]) - np.exp(-rate * last))
    bad = ~good | ~np.isfinite(rate) | ~np.isfinite(amplitude) | ~(decay >= least_decay)
    rate[bad], amplitude[bad] = NOT_FITTED, NOT_FITTED
    return rate, amplitude, count.astype(np.uint8)


def _loglinear(signal, t, above):
    w = np.where(above, signal * signal, np.float32(0)).astype(np.float64)
    y = np.log(np.maximum(signal, np.float32(1e-30))).astype(np.float64)
    sw, st, stt = w.sum(1), w @ t, w @ (t * t)
    sy, sty = (w * y).sum(1), (w * y) @ t
    denominator = sw * stt - st * st
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sw * sty - st * sy) / denominator
        intercept = (sy - slope * st) / sw
    return (-slope).astype(np.float32), np.exp(intercept).astype(np.float32)


def _arlo(signal, t, above):
    spacing = np.float32(t[1] - t[0])
    triple = above[:, 2:]  # the triple (i, i+1, i+2) lies within the echoes used
    s = spacing / 3 * (signal[:, :-2] + 4 * signal[:, 1:-1] + signal[:, 2:]) * triple
    d = (signal[:, :-2] - signal[:, 2:]) * triple
    ss, sd, dd = (s * s).sum(1), (s * d).sum(1), (d * d).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = (ss + spacing / 3 * sd) / (spacing / 3 * dd + sd)
        rate = 1 / t2
        # S0 by least squares of the signal on exp(−R2·t), R2 fixed
        decay = np.exp(-np.outer(rate, t)) * above
        amplitude = (signal * decay).sum(1) / (decay * decay).sum(1)
    return rate.astype(np.float32), amplitude.astype(np.float32)


def _levenberg_marquardt(signal, t, above, rate, amplitude):
    """Minimise Σ_used (S_i − S0·e^{−R2·t_i})² per row, from (rate, amplitude)."""
    t = t.astype(np.float64)

    def decay(p, _rows):
        e = np.exp(-np.outer(p[:, 1], t))
        return p[:, :1] * e, [e, -p[:, :1] * t * e]  # ∂/∂S0, ∂/∂R2

    start = np.stack([amplitude, rate], axis=1).astype(np.float64)
    lost = ~np.all(np.isfinite(start), axis=1)
    start[lost] = np.stack([signal[lost, 0], np.zeros(lost.sum(), np.float32)], axis=1)
    p, _, _ = levenberg_marquardt(decay, start, signal, above, LM_ITERATIONS)
    return p[:, 1].astype(np.float32), p[:, 0].astype(np.float32)


#: Metadata keys of the fit records whose ``not_fitted_value`` marks a map's gaps.
FIT_RECORDS = ("relaxometry", "diffusion")


def valid_voxels(values, metadata: dict | None) -> np.ndarray | None:
    """Where a map stored with ``metadata`` holds a value: a relaxation or diffusion map's
    fitted voxels (those not at its record's ``not_fitted_value``); None for any other
    image."""
    records = [(metadata or {}).get(key) or {} for key in FIT_RECORDS]
    missing = next((r["not_fitted_value"] for r in records if "not_fitted_value" in r), None)
    return None if missing is None else np.asarray(values) != missing
