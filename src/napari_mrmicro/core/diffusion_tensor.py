"""Diffusion-weighted imaging: the diffusion tensor, or one apparent diffusion coefficient
(ADC), in every voxel from magnitude images and the b-matrix of each.

Signal model: ``S_i = S0·exp(−Σ_jk b_i,jk·D_jk)`` (Stejskal & Tanner, J Chem Phys
1965;42:288; the tensor form: Basser, Mattiello & Le Bihan, J Magn Reson B 1994;103:247).
Each image comes with its full b-matrix ``b_i`` (s/mm²), not only a b-value and a
direction: at MR-microscopy resolutions the imaging gradients alone weigh 10–250 s/mm²
(REFERENCES.md, "Physics") and their cross-terms with the diffusion gradients tilt the
effective direction; ParaVision computes that matrix for every image (``PVM_DwBMat``).
Diffusivities are in µm²/ms (free water at 25 °C ≈ 2.3), so ``b·D = 1e-3·b[s/mm²]·
D[µm²/ms]``. Directions are in the images' array axes ``(z, y, x)``: a tensor's
eigenvectors turn into world directions by the layer's rotation
(:meth:`DiffusionFit.direction_colors`).

Models, one signature (:func:`fit_diffusion`, ``model``):

* ``"tensor"``: the six elements of D and S0. The b-matrices must determine them: six
  non-collinear directions and a lower b at least.
* ``"adc"``: one diffusivity, ``S_i = S0·exp(−tr(b_i)·ADC)``, the D of an isotropic
  medium (and, for a tensor, the mean diffusivity when the directions are balanced).

Fits (``method``):

* ``"ols"``: least squares on log S.
* ``"wls"`` (default): least squares on log S weighted by the OLS fit's predicted signal
  squared, which undoes the log's amplification of the noise at low signal (Salvador et
  al., Hum Brain Mapp 2005;25:35; one re-weighting suffices: Veraart et al., NeuroImage
  2013;81:335).
* ``"nlls"``: least squares on the signal itself, Levenberg–Marquardt steps from the WLS
  solution (Koay et al., J Magn Reson 2006;182:115).
* ``"rician"``: least squares on the squared magnitude against its expectation
  ``S² + 2σ²`` (exact for single-channel magnitude data, Rician with σ per channel:
  the "power image" of Miller & Joseph, Magn Reson Imaging 1993;11:1051), weighted by
  ``1/(S² + σ²)``, from a WLS fit of ``M² − 2σ²``; a voxel with too few points above
  the floor for that, or whose mean diffusivity has a standard error larger than itself,
  is not fitted (its diffusivity is only bounded from below; tested). The
  other fits read the noise floor as signal: where
  diffusion-weighted points sink to it (free fluid at high b, common in fixed specimens)
  they read the diffusivity low: fluid of 2.0 µm²/ms with b 1000 and 3000 at b=0 SNR 50
  reads 1.61 (WLS), 0.95 (OLS), 1.98 (NLLS) and 2.00 (rician); at SNR 20, 0.73, 0.52,
  1.90 and 2.04 (tested). It needs σ (``noise_sigma``, else measured in the background).

With σ known (given or measured) the fit reports ``floor_fraction``: the share of the
diffusion-weighted points in the fitted voxels below 3σ, where that bias sets in.

A point whose signal is 0 is left out of the fit (no logarithm); a voxel is fitted when
enough points remain and S0 and the mean diffusivity come out positive and finite.
Eigenvalues below 0 (noise in a tensor that is nearly flat) are kept in ``eigenvalues``
and counted as ``negative_eigenvalues``; FA and the radial diffusivity use them clipped
to 0, so FA stays within [0, 1].

Written here rather than taken from DIPY (BSD): DIPY's fits take its gradient-table
object, have no progress or cancel, and run 2–6× slower on two cores
(``benchmarks/bench_diffusion.py``); this shares the house's slab loop (all cores,
progress, cancel) and Levenberg–Marquardt with T1 and T2, and is checked against DIPY's
fits in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.relaxometry import check_magnitude, fit_mask
from napari_mrmicro.core.voxel_fit import fit_voxels, levenberg_marquardt, solve_small

MODELS = ("tensor", "adc")
METHODS = ("ols", "wls", "nlls", "rician")
#: Results beyond this magnitude would not survive float32 (a fit that ran away).
FLOAT32_LIMIT = 1e30
#: Points below this many σ count as at the noise floor (``floor_fraction``).
FLOOR_SIGMAS = 3.0
#: s/mm² times µm²/ms: the exponent's unit.
B_TIMES_D = 1e-3
#: Tensor elements in storage order: the array axes (z, y, x) as (0, 1, 2).
ELEMENTS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
#: A b-matrix eigenvalue below −this × its trace is not a b-matrix (not from a gradient).
B_MATRIX_TOLERANCE = 1e-3
#: Bytes per voxel of the results (tensor, eigenvalues, principal direction, S0, masks).
RESULT_BYTES = 4 * (6 + 3 + 3 + 1) + 2


@dataclass(frozen=True)
class DiffusionFit:
    """A diffusion fit, float32 maps of the images' shape, 0 where ``fitted`` is False.

    ``eigenvalues`` (3, ...) µm²/ms, largest first, for ``model == "tensor"``; (1, ...)
    the ADC for ``"adc"``. ``tensor`` (6, ...) µm²/ms, the elements of :data:`ELEMENTS`,
    and ``principal`` (3, ...), the unit eigenvector of the largest eigenvalue in array
    axes (z, y, x), for a tensor only (else None). ``s0``: the signal without diffusion
    weighting (magnitude units). ``negative_eigenvalues``: fitted voxels whose smallest
    eigenvalue is below 0. ``noise_sigma``: the σ given or measured (None when a mask was
    given without one and the fit needs none); ``floor_fraction``: the share of the
    diffusion-weighted points of the fitted voxels below :data:`FLOOR_SIGMAS` σ (None
    without σ).
    """

    model: str
    eigenvalues: np.ndarray
    s0: np.ndarray
    fitted: np.ndarray
    tensor: np.ndarray | None
    principal: np.ndarray | None
    noise_sigma: float | None
    negative_eigenvalues: int
    floor_fraction: float | None = None

    def md(self) -> np.ndarray:
        """Mean diffusivity (the ADC for ``"adc"``), µm²/ms."""
        return self.eigenvalues.mean(axis=0, dtype=np.float32)

    def ad(self) -> np.ndarray:
        """Axial diffusivity, the largest eigenvalue, µm²/ms."""
        return self._tensor_only("ad", self.eigenvalues[0])

    def rd(self) -> np.ndarray:
        """Radial diffusivity, the mean of the two smaller eigenvalues (clipped to 0),
        µm²/ms."""
        return self._tensor_only("rd", np.maximum(self.eigenvalues[1:], 0).mean(
            axis=0, dtype=np.float32))

    def fa(self) -> np.ndarray:
        """Fractional anisotropy, ``√(3/2)·|λ − λ̄| / |λ|`` of the eigenvalues clipped to
        0 (Basser & Pierpaoli, J Magn Reson B 1996;111:209), in [0, 1]."""
        lam = np.maximum(self._tensor_only("fa", self.eigenvalues), 0)
        deviation = lam - lam.mean(axis=0)
        norm = np.sqrt(np.sum(lam * lam, axis=0))
        out = np.zeros(lam.shape[1:], np.float32)
        np.divide(np.sqrt(1.5 * np.sum(deviation * deviation, axis=0)), norm, out=out,
                  where=self.fitted & (norm > 0))
        return np.clip(out, 0, 1, out=out)

    def direction_colors(self, rotation=None) -> np.ndarray:
        """The principal direction as colour (z, y, x, 3), RGB in [0, 1] weighted by FA:
        red right–left, green anterior–posterior, blue superior–inferior (Pajevic &
        Pierpaoli, Magn Reson Med 1999;42:526).

        ``rotation`` (3×3) turns array-axis directions into napari world axes (S, A, R):
        a layer's affine with its scale divided out; default the identity (array axes
        z, y, x taken as S, A, R)."""
        v = self._tensor_only("direction_colors", self.principal)
        r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-4):
            raise ValueError("direction_colors: rotation must be a 3×3 rotation (or "
                             f"reflection), got {r.tolist()}")
        world = np.einsum("wa,a...->w...", r.astype(np.float32), v)
        rgb = np.abs(world[::-1]) * self.fa()  # world axes (S, A, R) -> (R, A, S)
        return np.moveaxis(rgb, 0, -1).astype(np.float32)

    def _tensor_only(self, what, values):
        if self.model != "tensor":
            raise ValueError(f"{what}: needs the tensor model, this fit is {self.model!r}")
        return values


def b_matrices(b_values, directions) -> np.ndarray:
    """The b-matrices ``b·ĝĝᵀ`` (n, 3, 3) of b-values (s/mm²) along directions (n, 3),
    normalised here; a b-value of 0 may come with a zero direction. This ignores the
    imaging gradients' weighting: use a scanner's full b-matrices where it states them."""
    b = np.asarray(b_values, dtype=np.float64).ravel()
    g = np.asarray(directions, dtype=np.float64)
    if g.shape != (len(b), 3):
        raise ValueError(f"b_matrices: {len(b)} b-values need ({len(b)}, 3) directions, "
                         f"got {g.shape}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(g))) or np.any(b < 0):
        raise ValueError("b_matrices: b-values must be >= 0 and directions finite")
    norm = np.linalg.norm(g, axis=1)
    lost = (b > 0) & (norm == 0)
    if lost.any():
        raise ValueError(f"b_matrices: b > 0 with a zero direction at {np.flatnonzero(lost)}")
    unit = g / np.where(norm > 0, norm, 1)[:, None]
    return b[:, None, None] * unit[:, :, None] * unit[:, None, :]


def diffusion_scheme(directions: int, b_value: float) -> np.ndarray:
    """The b-matrices (directions + 1, 3, 3) of a single-shell scheme: one image at b 0,
    then ``directions`` (6 or more) unit vectors spread evenly over a hemisphere (a
    Fibonacci lattice, Swinbank & Purser, Q J R Meteorol Soc 2006;132:1769: equal areas
    for any count, as opposite directions weigh alike) at ``b_value`` s/mm²."""
    if isinstance(directions, bool) or not isinstance(directions, (int, np.integer)) \
            or directions < 6:
        raise ValueError(f"diffusion_scheme: a tensor needs at least 6 directions, got "
                         f"{directions!r}")
    if not (math.isfinite(b_value) and b_value > 0):
        raise ValueError(f"diffusion_scheme: b_value must be positive (s/mm²), got {b_value!r}")
    k = np.arange(directions) + 0.5
    height = k / directions  # uniform in z: equal areas on the sphere
    turn = np.pi * (1 + math.sqrt(5)) * k  # the golden angle
    ring = np.sqrt(1 - height ** 2)
    unit = np.stack([height, ring * np.cos(turn), ring * np.sin(turn)], axis=1)
    return b_matrices(np.r_[0.0, np.full(directions, float(b_value))],
                      np.r_[np.zeros((1, 3)), unit])


def scheme_summary(b_matrix) -> str:
    """The images, their shells (b-values within 10 % of each other, as a scanner's
    effective b-values scatter around the nominal one) and the directions of the highest
    shell, as one line."""
    b = np.asarray(b_matrix, dtype=float)
    trace = np.sort(np.trace(b, axis1=1, axis2=2))
    breaks = np.flatnonzero(np.diff(trace) > 0.1 * trace[1:] + 10) + 1
    shells = [float(np.median(shell)) for shell in np.split(trace, breaks)]
    listed = ", ".join(f"{v:.0f}" for v in shells) if len(shells) <= 4 else \
        f"{shells[0]:.0f}–{shells[-1]:.0f}"
    top = np.trace(b, axis1=1, axis2=2) >= trace[breaks[-1]] if len(breaks) else None
    kept = []  # the top shell's main axes, those within 5° of an earlier one counted once
    for axis in np.linalg.eigh(b[top])[1][:, :, -1] if top is not None else ():
        if not kept or np.max(np.abs(np.asarray(kept) @ axis)) < np.cos(np.deg2rad(5)):
            kept.append(axis)
    return (f"{len(b)} images, b {listed} s/mm², {len(kept)} "
            f"direction{'' if len(kept) == 1 else 's'}")


def check_b_matrices(b_matrix, points: int, where: str) -> np.ndarray:
    """``b_matrix`` as (points, 3, 3) float64 s/mm²: finite, symmetric and positive
    semi-definite, or a ValueError headed ``where`` naming the problem."""
    try:
        b = np.asarray(b_matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: b_matrices must be numbers (n, 3, 3)") from None
    if b.shape != (points, 3, 3):
        raise ValueError(f"{where}: {points} images need b_matrices of shape ({points}, 3, 3)"
                         f", got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{where}: b_matrices contain NaN or Inf")
    if not np.allclose(b, np.swapaxes(b, 1, 2), rtol=1e-6, atol=1e-6 * max(1, np.abs(b).max())):
        raise ValueError(f"{where}: b_matrices are not symmetric")
    trace = np.trace(b, axis1=1, axis2=2)
    smallest = np.linalg.eigvalsh(b)[:, 0]
    bad = smallest < -B_MATRIX_TOLERANCE * np.maximum(trace, 1e-9)
    if bad.any():
        raise ValueError(f"{where}: the b-matrices of images {np.flatnonzero(bad).tolist()} "
                         "have negative eigenvalues: not the b-matrix of a gradient "
                         "(are they in s/mm², symmetric, and not a difference?)")
    return b


def design_matrix(b_matrix: np.ndarray, model: str) -> np.ndarray:
    """The rows of ``log S`` as a linear function of the parameters: (n, 7) for the tensor
    (the elements of :data:`ELEMENTS`, then log S0), (n, 2) for the ADC."""
    if model == "adc":
        trace = np.trace(b_matrix, axis1=1, axis2=2)
        return np.column_stack([-B_TIMES_D * trace, np.ones(len(b_matrix))])
    columns = [-B_TIMES_D * (1 if i == j else 2) * b_matrix[:, i, j] for i, j in ELEMENTS]
    return np.column_stack(columns + [np.ones(len(b_matrix))])


def fit_diffusion(images, b_matrix, model: str = "tensor", method: str = "wls", mask=None,
                  noise_sigma: float | None = None, callback=None) -> DiffusionFit:
    """The diffusion tensor (or ADC) and S0 of every voxel.

    Parameters
    ----------
    images : ndarray (n, z, y, x)
        Diffusion-weighted magnitudes (real, >= 0), one per b-matrix.
    b_matrix : array-like (n, 3, 3)
        Each image's b-matrix in s/mm², in array axes (z, y, x) (:func:`b_matrices` builds
        them from b-values and directions).
    model : {"tensor", "adc"}
    method : {"ols", "wls", "nlls", "rician"}
        Module docstring.
    mask : ndarray of bool, optional
        Voxels to fit; default: the voxels with signal in the mean of the least-weighted
        images (above 3σ when ``noise_sigma`` is given).
    noise_sigma : float, optional
        Noise σ per channel, for the default mask and the ``"rician"`` fit; default
        measured in the background of the mean least-weighted image (when either needs
        it).
    callback : callable, optional
        ``callback(fraction)`` after each slab; returning False cancels
        (``InterruptedError``).

    Returns
    -------
    DiffusionFit
    """
    where = "fit_diffusion"
    if model not in MODELS:
        raise ValueError(f"{where}: model must be one of {MODELS}, got {model!r}")
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")
    data = check_magnitude(images, "images", "b-matrices", where)
    points, shape = data.shape[0], data.shape[1:]
    b = check_b_matrices(b_matrix, points, where)
    design = design_matrix(b, model)
    _check_design(design, b, model, where)
    check_memory(RESULT_BYTES * math.prod(shape), f"{where}: mapping {shape} voxels",
                 advice="a cropped volume")
    trace = np.trace(b, axis1=1, axis2=2)
    reference = np.mean(data[np.flatnonzero(trace <= trace.min() + 1e-6)], axis=0,
                        dtype=np.float32)
    mask, noise_sigma = fit_mask(reference, mask, noise_sigma, where,
                                 need_sigma=method == "rician")
    if not mask.any():
        raise ValueError(f"{where}: no voxel to fit (the mask is empty)")

    tensor = model == "tensor"
    eigenvalues = np.zeros((3 if tensor else 1, *shape), np.float32)
    s0 = np.zeros(shape, np.float32)
    elements = np.zeros((6, *shape), np.float32) if tensor else None
    principal = np.zeros((3, *shape), np.float32) if tensor else None
    outputs = [s0, *eigenvalues] + ([*elements, *principal] if tensor else [])
    fit_voxels(data, mask, lambda signal: _fit(signal, design, method, tensor, noise_sigma),
               outputs, callback=callback, where=where)
    fitted = mask & (s0 > 0)
    for out in outputs:
        out[~fitted] = 0
    negative = int(np.count_nonzero(fitted & (eigenvalues[-1] < 0))) if tensor else 0
    floor = None
    if noise_sigma is not None and fitted.any():
        weighted = np.flatnonzero(trace > trace.min() + 1e-6)
        below = sum(int(np.count_nonzero(data[k][fitted] < FLOOR_SIGMAS * noise_sigma))
                    for k in weighted)
        floor = below / (len(weighted) * int(np.count_nonzero(fitted))) if len(weighted) \
            else 0.0
    return DiffusionFit(model, eigenvalues, s0, fitted, elements, principal,
                        None if noise_sigma is None else float(noise_sigma), negative, floor)


def full_tensor(elements: np.ndarray) -> np.ndarray:
    """(..., 3, 3) symmetric tensors from their :data:`ELEMENTS` on the first axis."""
    out = np.empty(elements.shape[1:] + (3, 3), elements.dtype)
    for k, (i, j) in enumerate(ELEMENTS):
        out[..., i, j] = out[..., j, i] = elements[k]
    return out


def fit_record(fit: DiffusionFit, method: str, b_matrix) -> dict:
    """How a map was fitted, as stored with it (``metadata["diffusion"]``)."""
    b = np.asarray(b_matrix, dtype=np.float64)
    return {"model": fit.model, "method": method,
            "b_values_s_per_mm2": [float(v) for v in np.trace(b, axis1=1, axis2=2)],
            "noise_sigma": fit.noise_sigma, "floor_fraction": fit.floor_fraction,
            "fitted_voxels": int(np.count_nonzero(fit.fitted)),
            "negative_eigenvalues": fit.negative_eigenvalues, "not_fitted_value": 0.0}


def floor_advice(share: float | None, method: str) -> str:
    """A sentence when many diffusion-weighted points (``share``, a fit's
    ``floor_fraction``) lie at the noise floor and the ``method`` does not model it
    (``""`` otherwise)."""
    if method == "rician" or share is None or share < 0.1:
        return ""
    return (f"{100 * share:.0f} % of the diffusion-weighted points lie below "
            f"{FLOOR_SIGMAS:g}σ, where a {method} fit reads the diffusivity low: fit 'rician'")


def tensor_determined(b_matrix) -> bool:
    """Whether the b-matrices (n, 3, 3) determine a tensor: its six elements and S0."""
    design = design_matrix(np.asarray(b_matrix, dtype=np.float64), "tensor")
    return _rank(design) == design.shape[1]


def _rank(design) -> int:
    return int(np.linalg.matrix_rank(design / np.maximum(np.abs(design).max(axis=0), 1e-12),
                                     tol=1e-6))


def _check_design(design, b, model, where):
    rank = _rank(design)
    if rank >= design.shape[1]:
        return
    if model == "adc":
        raise ValueError(f"{where}: an ADC needs at least two different b-values (the "
                         "b-matrices' traces are all "
                         f"{np.trace(b, axis1=1, axis2=2).max():g} s/mm²)")
    raise ValueError(f"{where}: these {len(b)} b-matrices determine only {rank - 1} of the "
                     "tensor's 6 elements: a tensor needs 6 non-collinear directions and a "
                     "lower b; fit model='adc' instead")


def _weighted_solve(design, y, w):
    """The weighted least-squares parameters of every row (rows, p), NaN where the
    weighted points do not determine them. Rows weighing every point alike (the usual
    unweighted fit) share one pseudo-inverse."""
    p = design.shape[1]
    alike = np.all(w == w[:, :1], axis=1) & (w[:, 0] > 0)
    x = np.empty((len(y), p))
    x[alike] = y[alike] @ np.linalg.pinv(design).T
    rest = ~alike
    if rest.any():
        outer = (design[:, :, None] * design[:, None, :]).reshape(len(design), p * p)
        normal = (w[rest] @ outer).reshape(-1, p, p)
        solved, ok = solve_small(normal, (w[rest] * y[rest]) @ design)
        solved[~ok] = np.nan
        x[rest] = solved
    return x


def _fit(signal, design, method, tensor, sigma):
    """S0, eigenvalues (and tensor elements and principal direction) of each row."""
    magnitude = signal.astype(np.float64)
    beta, usable = _log_linear(magnitude, design, method != "ols")
    if method == "nlls":
        beta = _nonlinear(signal, design, beta, usable.astype(np.float64))
    elif method == "rician":  # M² − 2σ²: an unbiased estimate of S² (module docstring)
        start, _ = _log_linear(np.sqrt(np.maximum(magnitude ** 2 - 2 * sigma ** 2, 0)),
                               design, True, least=np.sqrt(0.5) * sigma)
        beta = _second_moment(signal, design, start, sigma)
    s0 = np.exp(np.minimum(beta[:, -1], 700))
    if not tensor:
        adc = beta[:, 0]
        good = np.isfinite(adc) & np.isfinite(s0) & (adc > 0) & (adc < FLOAT32_LIMIT) \
            & (s0 > 0) & (s0 < FLOAT32_LIMIT)
        return [np.where(good, s0, 0), np.where(good, adc, 0)]
    elements = beta[:, :6]
    good = np.all(np.isfinite(elements), axis=1) & (s0 > 0) & (s0 < FLOAT32_LIMIT)
    elements = np.where(good[:, None], elements, 0)
    lam, principal = _eigen(elements)
    good &= (lam.sum(axis=1) > 0) & np.all(np.abs(lam) < FLOAT32_LIMIT, axis=1)
    principal *= np.where(principal[np.arange(len(principal)),
                                    np.argmax(np.abs(principal), axis=1)] < 0, -1, 1)[:, None]
    keep = good[:, None]
    return [np.where(good, s0, 0), *np.where(keep, lam, 0).T, *np.where(keep, elements, 0).T,
            *np.where(keep, principal, 0).T]


def _eigen(elements):
    """Eigenvalues (rows, 3), largest first, and the largest one's unit eigenvector
    (rows, 3) of symmetric 3×3 tensors given by their :data:`ELEMENTS` (rows, 6).

    Closed form (Smith, Commun ACM 1961;4:168: the roots of the characteristic cubic by
    its trigonometric solution), the eigenvector as the longest cross product of two rows
    of ``D − λ₁I`` (Kopp, Int J Mod Phys C 2008;19:523); twice as fast as LAPACK's batched
    ``eigh`` on 3×3 systems, whose result it matches (tested). An isotropic tensor's
    direction is arbitrary; a row of zeros gives zeros."""
    xx, yy, zz, xy, xz, yz = elements.T
    q = (xx + yy + zz) / 3
    off = xy * xy + xz * xz + yz * yz
    p = np.sqrt(((xx - q) ** 2 + (yy - q) ** 2 + (zz - q) ** 2 + 2 * off) / 6)
    safe = np.where(p > 0, p, 1)
    a, b, c = (xx - q) / safe, (yy - q) / safe, (zz - q) / safe
    d, e, f = xy / safe, xz / safe, yz / safe
    half_det = (a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)) / 2
    phi = np.arccos(np.clip(half_det, -1, 1)) / 3
    first = q + 2 * p * np.cos(phi)
    third = q + 2 * p * np.cos(phi + 2 * np.pi / 3)
    lam = np.stack([first, 3 * q - first - third, third], axis=1)
    rows = np.stack([np.stack([xx - first, xy, xz], 1), np.stack([xy, yy - first, yz], 1),
                     np.stack([xz, yz, zz - first], 1)], axis=1)  # (rows, 3, 3)
    crosses = np.stack([np.cross(rows[:, 0], rows[:, 1]), np.cross(rows[:, 0], rows[:, 2]),
                        np.cross(rows[:, 1], rows[:, 2])], axis=1)
    lengths = np.einsum("rkj,rkj->rk", crosses, crosses)
    best = np.argmax(lengths, axis=1)
    vector = crosses[np.arange(len(best)), best]
    norm = np.sqrt(lengths[np.arange(len(best)), best])
    vector /= np.where(norm > 0, norm, 1)[:, None]
    vector[norm == 0] = (1.0, 0.0, 0.0)  # isotropic: any direction
    return lam, vector


def _log_linear(values, design, weighted: bool, least: float = 0.0):
    """Least squares of log ``values`` (rows, n) on the design, over the points above
    ``least``; ``weighted``: once more with the first fit's predicted signal squared as
    weights. Returns the parameters (NaN where the points do not determine them) and the
    points used."""
    usable = values > least
    y = np.log(np.where(usable, values, 1))
    w = usable.astype(np.float64)
    beta = _weighted_solve(design, y, w)
    if weighted:
        with np.errstate(over="ignore", invalid="ignore"):
            predicted = np.exp(np.minimum(beta @ design.T, 700))
        beta = _weighted_solve(design, y, w * predicted * predicted)
    return beta, usable


def _second_moment(signal, design, beta, sigma):
    """Minimise Σ w (M² − S² − 2σ²)² with ``S = exp(X β)`` and ``w = 1/(S² + σ²)`` at
    the start, from ``beta``; NaN where the mean diffusivity is not measured: its
    standard error (M² has variance ≈ 4σ²(S² + σ²), so the covariance is 4σ² times the
    inverse of ``JᵀWJ``) exceeds the value itself, as where every weighted point is
    noise."""
    start = np.where(np.isfinite(beta), beta, np.nan)
    floor = 2 * sigma * sigma
    with np.errstate(over="ignore", invalid="ignore"):
        weights = 1 / (np.exp(np.minimum(2 * start @ design.T, 700)) + sigma * sigma)
    weights = np.where(np.isfinite(weights), weights, 0)

    def model(p, _rows):
        power = np.exp(np.minimum(2 * p @ design.T, 700))
        return power + floor, [2 * power * design[:, k] for k in range(design.shape[1])]

    fitted, _, information = levenberg_marquardt(model, start,
                                                 signal.astype(np.float64) ** 2, weights)
    mean = np.zeros(design.shape[1])
    mean[:3 if design.shape[1] == 7 else 1] = 1 / (3 if design.shape[1] == 7 else 1)
    spread, ok = solve_small(information, np.broadcast_to(mean, fitted.shape).copy())
    variance = 4 * sigma * sigma * (spread @ mean)
    value = fitted @ mean
    with np.errstate(invalid="ignore"):
        measured = ok & (variance >= 0) & (np.sqrt(variance) <= np.abs(value))
    fitted[~measured] = np.nan
    return fitted


def _nonlinear(signal, design, beta, w):
    """Minimise Σ (S − exp(X β))² over the usable points, from ``beta``."""
    start = np.where(np.isfinite(beta), beta, np.nan)

    def model(p, _rows):
        values = np.exp(np.minimum(p @ design.T, 700))
        return values, [values * design[:, k] for k in range(design.shape[1])]

    fitted, _, _ = levenberg_marquardt(model, start, signal, w)
    return fitted
