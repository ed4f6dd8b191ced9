"""T1 mapping: T1 and M0 from magnitude images at several flip angles, recovery times or
inversion times, voxel by voxel.

Three experiments, one signature (:func:`fit_t1`, ``method``); the images' first axis is
the varied parameter:

* ``"vfa"``, variable flip angle (DESPOT1): a spoiled gradient echo at flip angles αᵢ and
  one TR, ``S = M0·sin α·(1 − E1)/(1 − cos α·E1)`` with ``E1 = exp(−TR/T1)`` (Ernst's
  steady state; Deoni, Rutt & Peters, Magn Reson Med 2003;49:515). The angles that act are
  the nominal ones times the relative transmit field B1 (``b1``): at 7–21 T it departs
  from 1 by 10–30 % across a specimen, and T1 scales with B1² for small angles (a 10 % low
  B1 reads T1 about 19 % low; Cheng & Wright, Magn Reson Med 2006;55:566). Give a B1 map
  where one was measured; without one, T1 is as good as the nominal angles.
* ``"saturation_recovery"``, variable TR (ParaVision's RARE-VTR): ``S = M0·(1 −
  exp(−TR/T1))`` for a saturating excitation.
* ``"inversion_recovery"``: ``S = |a + b·exp(−TI/T1)|``. The free ``a`` and ``b`` absorb an
  inversion that is not perfect and a TR that is not much longer than T1 (for a constant
  TR, ``a = M0·(1 + e^{−TR/T1})`` and ``b = −2k·M0``), so T1 is not biased by either; a
  perfect inversion with full recovery has ``−b/a = 2`` (reported as ``inversion``).
  Magnitude data lose the sign before the null: each voxel is fitted with the points
  before its smallest one negated, once with and once without that point, and the better
  fit kept (polarity restoration; Barral et al., Magn Reson Med 2010;64:1057).

Each fit is least squares on the signal (:mod:`~napari_mrmicro.core.voxel_fit`): the best
rate of a grid of T1 from :data:`T1_RANGE_MS` with its amplitudes in closed form, then
Levenberg–Marquardt steps. A voxel is not fitted (T1, M0 = 0, ``fitted`` False) when the
fit fails, gives a non-positive T1 or M0 (or no inversion), or when T1 is not measured: its
standard error under the noise σ (from the fit's Jacobian) is larger than T1 itself, as
for a T1 far beyond the longest TR or TI, which any value up to infinity fits. The
standard error is returned (``t1_sd_ms``): the uncertainty map a protocol's choice of
angles or times gives.

Written here: the per-voxel curve fitting of qMRLab or mrimagetools takes minutes on a
volume; this fits a volume in seconds on all cores, masked against the measured noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.relaxometry import NOT_FITTED, check_magnitude, fit_mask
from napari_mrmicro.core.voxel_fit import (fit_voxels, grid_start, levenberg_marquardt,
                                           solve_small)

METHODS = ("vfa", "saturation_recovery", "inversion_recovery")
#: The range of T1 (ms) the grid search spans before the least-squares steps.
T1_RANGE_MS = (1.0, 30_000.0)
#: Grid points between the ends of :data:`T1_RANGE_MS` (about 10 % apart).
GRID_POINTS = 100
#: Both signings of an inversion recovery's smallest point are refined where the worse
#: one's grid fit costs at most this many times the better one's (plus σ²).
POLARITY_MARGIN = 4.0
#: The most standard error, as a fraction of T1, of a T1 counted as measured.
MAX_RELATIVE_SD = 1.0
#: What each method varies: the name of its argument and its unit.
VARIED = {"vfa": ("flip_deg", "°"), "saturation_recovery": ("tr_ms", "ms"),
          "inversion_recovery": ("ti_ms", "ms")}
#: Bytes per voxel of the results (R1, its SD, M0, inversion, fitted, mask, B1).
RESULT_BYTES = 22


@dataclass(frozen=True)
class T1Fit:
    """A T1 fit: ``r1_per_s`` (1/s), its standard error ``r1_sd_per_s`` and ``m0``
    (magnitude units, the signal of full relaxation at 90°), float32, 0 where ``fitted`` is
    False; ``inversion`` (−b/a) for an inversion recovery, else None; ``noise_sigma`` the σ
    the standard errors are in."""

    r1_per_s: np.ndarray
    r1_sd_per_s: np.ndarray
    m0: np.ndarray
    fitted: np.ndarray
    inversion: np.ndarray | None
    noise_sigma: float

    def t1_ms(self) -> np.ndarray:
        """T1 in ms, float32, 0 where not fitted."""
        out = np.zeros(self.r1_per_s.shape, np.float32)
        np.divide(np.float32(1000), self.r1_per_s, out=out, where=self.fitted)
        return out

    def t1_sd_ms(self) -> np.ndarray:
        """The standard error of T1 in ms (σ_R1 / R1², to first order), 0 where not
        fitted."""
        out = np.zeros(self.r1_per_s.shape, np.float32)
        np.divide(np.float32(1000) * self.r1_sd_per_s, self.r1_per_s ** 2, out=out,
                  where=self.fitted)
        return out


def fit_t1(images, method: str, flip_deg=None, tr_ms=None, ti_ms=None, b1=None,
           mask=None, noise_sigma: float | None = None, callback=None) -> T1Fit:
    """T1 and M0 from magnitude images of a variable-flip-angle, saturation-recovery or
    inversion-recovery experiment.

    Parameters
    ----------
    images : ndarray, (points, z, y, x) or (points, ...)
        Magnitude (real, >= 0), one image per flip angle, TR or TI.
    method : {"vfa", "saturation_recovery", "inversion_recovery"}
        The experiment (module docstring).
    flip_deg : sequence of float
        ``"vfa"``: the nominal flip angle of each image, in (0, 180) degrees, distinct.
    tr_ms : float or sequence of float
        ``"vfa"``: the one TR (ms); ``"saturation_recovery"``: each image's TR, increasing.
    ti_ms : sequence of float
        ``"inversion_recovery"``: each image's inversion time (ms), increasing.
    b1 : float or ndarray, optional
        ``"vfa"``: the relative transmit field (the angle that acts over the nominal one),
        one number or a map of the images' shape (voxels where it is 0 or NaN are not
        fitted); default 1.
    mask : ndarray of bool, optional
        Voxels to fit; default: the voxels with signal in the brightest image (above 3σ
        when ``noise_sigma`` is given).
    noise_sigma : float, optional
        Noise σ per channel (magnitude units); default measured in the background of the
        brightest image.
    callback : callable, optional
        ``callback(fraction)`` after each slab; returning False cancels
        (``InterruptedError``).

    Returns
    -------
    T1Fit
    """
    where = "fit_t1"
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")
    data = check_magnitude(images, "images", VARIED[method][0], where)
    points, shape = data.shape[0], data.shape[1:]
    varied, model, parameters = _experiment(method, points, flip_deg, tr_ms, ti_ms, where)
    if b1 is not None and method != "vfa":
        raise ValueError(f"{where}: b1 scales flip angles: it applies to 'vfa' only")
    b1, b1_valid = _b1(b1, shape, where)
    check_memory(RESULT_BYTES * math.prod(shape), f"{where}: mapping {shape} voxels",
                 advice="a cropped volume")
    brightest = int(np.argmax([float(np.sum(image, dtype=np.float64)) for image in data]))
    mask, noise_sigma = fit_mask(data[brightest], mask, noise_sigma, where, need_sigma=True)
    if b1_valid is not None:
        mask = mask & b1_valid
    if not mask.any():
        raise ValueError(f"{where}: no voxel to fit (the mask is empty"
                         f"{'' if b1_valid is None else ', or the B1 map holds no value in it'})")

    r1, sd, m0 = (np.zeros(shape, np.float32) for _ in range(3))
    inversion = np.zeros(shape, np.float32) if method == "inversion_recovery" else None
    outputs = [r1, sd, m0] + ([inversion] if inversion is not None else [])
    fit_voxels(data, mask, lambda signal, scale: _fit(
        signal, scale, varied, model, parameters, noise_sigma), outputs,
        extras=[np.broadcast_to(b1, shape)], callback=callback, where=where)
    fitted = mask & (r1 > 0)
    for out in outputs:
        out[~fitted] = NOT_FITTED
    return T1Fit(r1, sd, m0, fitted, inversion, float(noise_sigma))


#: The signal, as a fraction of the Ernst angle's, at the two flip angles that measure T1
#: most precisely by DESPOT1 (Deoni, Rutt & Peters, Magn Reson Med 2003;49:515).
DESPOT1_FRACTION = 0.71


def despot1_angles(t1_ms: float, tr_ms: float) -> tuple[float, float]:
    """The two flip angles (degrees) that measure a T1 most precisely by variable flip
    angle at this TR: either side of the Ernst angle, where the spoiled steady state is
    :data:`DESPOT1_FRACTION` of its largest (Deoni et al. 2003)."""
    from scipy.optimize import brentq

    if not (math.isfinite(t1_ms) and t1_ms > 0 and math.isfinite(tr_ms) and tr_ms > 0):
        raise ValueError(f"despot1_angles: T1 and TR must be positive ms, got {t1_ms!r}, "
                         f"{tr_ms!r}")
    e = math.exp(-tr_ms / t1_ms)
    ernst = math.acos(e)

    def signal(alpha):
        return math.sin(alpha) * (1 - e) / (1 - math.cos(alpha) * e)

    target = DESPOT1_FRACTION * signal(ernst)
    low = brentq(lambda a: signal(a) - target, 1e-9, ernst)
    high = brentq(lambda a: signal(a) - target, ernst, math.pi - 1e-9)
    return math.degrees(low), math.degrees(high)


def angle_advice(t1_ms: np.ndarray, tr_ms: float) -> str:
    """For a VFA T1 map (ms, 0 where not fitted): the two angles that would measure its
    median T1 best at this TR, as a sentence ("" for an empty map)."""
    values = np.asarray(t1_ms)[np.asarray(t1_ms) != NOT_FITTED]
    if not values.size:
        return ""
    t1 = float(np.median(values))
    low, high = despot1_angles(t1, tr_ms)
    return (f"for T1 {t1:.0f} ms (the median) at TR {tr_ms:g} ms the two most precise "
            f"angles are {low:.1f}° and {high:.1f}° (DESPOT1)")


def fit_record(fit: T1Fit, method: str, varied, b1_source: str | None = None,
               tr_ms: float | None = None) -> dict:
    """How a T1 map was fitted, as stored with it (``metadata["relaxometry"]``)."""
    record = {"quantity": "T1", "method": method, VARIED[method][0]: [float(v) for v in varied],
              "noise_sigma": fit.noise_sigma, "max_relative_sd": MAX_RELATIVE_SD,
              "fitted_voxels": int(np.count_nonzero(fit.fitted)),
              "not_fitted_value": NOT_FITTED}
    if tr_ms is not None:
        record["tr_ms"] = float(tr_ms)
    if method == "vfa":
        record["b1"] = b1_source or "nominal flip angles (no B1 map)"
    if fit.inversion is not None and fit.fitted.any():
        record["median_inversion"] = float(np.median(fit.inversion[fit.fitted]))
    return record


# -- the experiments ---------------------------------------------------------------------------


def _increasing(values, points: int, name: str, where: str) -> np.ndarray:
    v = np.asarray(values if values is not None else [], dtype=np.float64).ravel()
    if v.size != points:
        raise ValueError(f"{where}: {name} has {v.size} values for {points} images")
    if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(np.diff(v) <= 0):
        raise ValueError(f"{where}: {name} must be finite, >= 0 and increasing, got "
                         f"{v.tolist()}")
    return v


def _experiment(method, points, flip_deg, tr_ms, ti_ms, where):
    """The varied parameter (s or radians), the model and its fixed parameters."""
    least = 3 if method == "inversion_recovery" else 2
    if points < least:
        raise ValueError(f"{where}: {method} needs at least {least} images, got {points}")
    unused = {"flip_deg": flip_deg, "ti_ms": ti_ms, "tr_ms": tr_ms}
    needed = {"vfa": ("flip_deg", "tr_ms"), "saturation_recovery": ("tr_ms",),
              "inversion_recovery": ("ti_ms",)}[method]
    extra = [name for name, value in unused.items() if value is not None
             and name not in needed]
    if extra:  # an inversion recovery's free baseline absorbs its TR
        raise ValueError(f"{where}: {method} takes no {', '.join(extra)}")
    if method == "vfa":
        angles = np.asarray(flip_deg if flip_deg is not None else [], np.float64).ravel()
        if angles.size != points:
            raise ValueError(f"{where}: flip_deg has {angles.size} angles for {points} "
                             "images")
        if not np.all(np.isfinite(angles)) or np.any((angles <= 0) | (angles >= 180)) \
                or np.unique(angles).size != angles.size:
            raise ValueError(f"{where}: flip_deg must be distinct angles in (0, 180) "
                             f"degrees, got {angles.tolist()}")
        tr = np.asarray(tr_ms if tr_ms is not None else np.nan, np.float64)
        if tr.size != 1 or not (np.isfinite(tr) and tr > 0):
            raise ValueError(f"{where}: vfa needs the one TR in ms (tr_ms > 0), got "
                             f"{tr_ms!r}")
        return np.deg2rad(angles), _vfa, float(tr) / 1000
    if method == "saturation_recovery":
        return _increasing(tr_ms, points, "tr_ms", where) / 1000, _saturation, None
    return _increasing(ti_ms, points, "ti_ms", where) / 1000, _inversion, None


def _b1(b1, shape, where) -> tuple[np.ndarray, np.ndarray | None]:
    """The relative B1 (1 where none is given) and where a map holds a value: a map is
    often 0 or NaN outside the specimen, and those voxels are not fitted."""
    if b1 is None:
        return np.ones((1,) * len(shape), np.float32), None
    scale = np.array(b1, dtype=np.float32)
    if scale.ndim and scale.shape != shape:
        raise ValueError(f"{where}: the B1 map {scale.shape} does not match the images "
                         f"{shape}")
    valid = np.isfinite(scale) & (scale > 0)
    if not valid.any() or np.any(scale[valid] > 3):
        high = float(scale[valid].max()) if valid.any() else float("nan")
        raise ValueError(f"{where}: b1 is the relative transmit field (the acting angle "
                         f"over the nominal one, about 0.5-1.5), got values up to {high:g}: "
                         "a flip-angle map in degrees must be divided by its nominal angle")
    scale[~valid] = 1.0
    if not scale.ndim:
        return scale.reshape((1,) * len(shape)), None
    return scale, valid


def _vfa(x, tr, scale):
    """The spoiled steady state: amplitude basis of rate r1 and the LM model (M0, R1)."""
    uniform = np.all(scale == scale[0]) if scale.size else True
    alpha = scale[0] * x if uniform else np.outer(scale, x)  # the acting angles
    sin, cos = np.sin(alpha), np.cos(alpha)

    def basis(r1):  # (1, n), or (rows, 1, n) for a B1 map
        e = math.exp(-r1 * tr)
        return (sin * (1 - e) / (1 - cos * e))[..., None, :]

    def model(p, rows):
        c, s = (cos, sin) if uniform else (cos[rows], sin[rows])
        e = np.exp(-p[:, 1:] * tr)
        denominator = 1 - c * e
        shape = s * (1 - e) / denominator
        slope = s * (c - 1) / denominator ** 2  # ∂shape/∂E1
        return p[:, :1] * shape, [shape, p[:, :1] * slope * (-tr * e)]

    return basis, model


def _saturation(x, _fixed, _scale):
    def basis(r1):
        return (1 - np.exp(-r1 * x))[None, :]

    def model(p, _rows):
        e = np.exp(-np.outer(p[:, 1], x))
        return p[:, :1] * (1 - e), [1 - e, p[:, :1] * x * e]

    return basis, model


def _inversion(x, _fixed, _scale):
    def basis(r1):
        return np.stack([np.ones_like(x), np.exp(-r1 * x)])

    def model(p, _rows):
        e = np.exp(-np.outer(p[:, 2], x))
        return p[:, :1] + p[:, 1:2] * e, [np.ones_like(e), e, -p[:, 1:2] * x * e]

    return basis, model


def _fit(signal, scale, x, experiment, fixed, sigma):
    """R1, its standard error, M0 (and the inversion) of each row of ``signal``."""
    rates = 1000 / np.geomspace(*T1_RANGE_MS, GRID_POINTS)
    if experiment is _inversion:
        return _fit_inversion(signal, x, rates, sigma)
    basis, model = experiment(x, fixed, scale)
    r1, amplitude, _ = grid_start(basis, rates, signal)
    p, _, information = levenberg_marquardt(model, np.stack([amplitude[:, 0], r1], 1),
                                            signal)
    sd = _standard_error(information, sigma, 1)
    m0 = p[:, 0]
    return _measured(p[:, 1], sd, m0 > 0), sd, m0


def _fit_inversion(signal, x, rates, sigma):
    """Fit with the points before the smallest negated, with and without it (Barral et
    al. 2010), and keep the better fit of each row. Both signings are searched on the
    grid; the least-squares steps refine the better one, and the other too where its grid
    fit is within :data:`POLARITY_MARGIN` of it (elsewhere the grid has decided)."""
    basis, model = _inversion(x, None, None)
    lowest = np.argmin(signal, axis=1)
    points = np.arange(signal.shape[1])
    signings = []
    for flipped in (lowest, lowest + 1):
        signed = np.where(points < flipped[:, None], -signal, signal)
        r1, amplitudes, cost = grid_start(basis, rates, signed)
        signings.append((signed, np.column_stack([amplitudes, r1]), cost))
    second = signings[1][2] < signings[0][2]  # the grid's better signing, row by row
    signed = np.where(second[:, None], signings[1][0], signings[0][0])
    start = np.where(second[:, None], signings[1][1], signings[0][1])
    p, cost, information = levenberg_marquardt(model, start, signed)
    low, high = np.minimum(signings[0][2], signings[1][2]), np.maximum(signings[0][2],
                                                                      signings[1][2])
    close = np.flatnonzero(high <= POLARITY_MARGIN * low + sigma ** 2)
    if close.size:
        other = np.where(second[close, None], signings[0][0][close], signings[1][0][close])
        begin = np.where(second[close, None], signings[0][1][close], signings[1][1][close])
        p_other, cost_other, info_other = levenberg_marquardt(model, begin, other)
        better = np.isfinite(cost_other) & (cost_other < np.where(np.isfinite(cost[close]),
                                                                  cost[close], np.inf))
        p[close[better]] = p_other[better]
        information[close[better]] = info_other[better]
    sd = _standard_error(information, sigma, 2)
    a, b = p[:, 0], p[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        inversion = -b / a
    return _measured(p[:, 2], sd, (a > 0) & (b < 0)), sd, a, inversion


def _standard_error(information, sigma, index):
    """σ·sqrt((JᵀJ)⁻¹) of parameter ``index``: its standard error under Gaussian noise."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        k = information.shape[1]
        unit = np.zeros((len(information), k))
        unit[:, index] = 1
        column, ok = solve_small(information, unit)
        variance = np.where(ok, column[:, index], np.nan)
        return sigma * np.sqrt(np.where(variance > 0, variance, np.nan))


def _measured(r1, sd, plausible):
    """R1 where it is measured (finite, positive, plausible, its standard error within
    :data:`MAX_RELATIVE_SD` of it), else 0."""
    with np.errstate(invalid="ignore"):
        good = plausible & np.isfinite(r1) & (r1 > 0) & (sd <= MAX_RELATIVE_SD * r1)
    return np.where(good, r1, NOT_FITTED)
