"""Point-like particles (e.g. microdiamonds) seen in two modalities: detection, localisation
precision, one-to-one matching and point-set registration, all in µm ``(z, y, x)``.

Detection: scale-normalised Laplacian of Gaussian (Lindeberg, Int J Comput Vis 1998;30:79),
computed in physical units so anisotropic voxels see a round filter, local maxima above a
threshold, sub-voxel position from a parabola through the response on each axis.
Precision: the Cramér–Rao bound of a Gaussian spot in additive Gaussian noise (Thompson,
Larson & Webb, Biophys J 2002;82:2775, background-limited term; Ober, Ram & Ward, Biophys J
2004;86:1185). Matching: optimal assignment (Kuhn, Nav Res Logist Q 1955;2:83) with a
distance gate. Registration of the two point sets: iterated matching and landmark fits
(iterative closest point, Besl & McKay, IEEE Trans Pattern Anal Mach Intell 1992;14:239).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from napari_mrmicro.core.landmarks import landmark_affine
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.reslice import _real_volume, _spacing, sample_volume
from napari_mrmicro.core.transforms import apply_affine, check_affine

MAD_TO_SIGMA = 1.4826  # σ of a normal distribution per median absolute deviation


def _robust_sigma(values) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def _particle_sigma(ndim, diameter_um, sigma_um):
    if (diameter_um is None) == (sigma_um is None):
        raise ValueError("give exactly one of diameter_um (apparent spot diameter) or "
                         "sigma_um (LoG scale), in µm")
    value = diameter_um if sigma_um is None else sigma_um
    name = "diameter_um" if sigma_um is None else "sigma_um"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of µm, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number of µm, got {value!r}")
    # A ball of radius r gives the strongest normalised LoG response at σ = r / √ndim.
    return v / (2 * np.sqrt(ndim)) if sigma_um is None else v


def log_response(image, spacing_um, sigma_um: float) -> np.ndarray:
    """Scale-normalised negative LoG, ``−σ² ∇²(G_σ * image)``, with σ and the derivatives in
    µm (bright spots give positive peaks); float32."""
    img = _real_volume(image, "image").astype(np.float32, copy=False)
    s = _spacing(spacing_um, img.ndim)
    out = np.zeros(img.shape, dtype=np.float32)
    tmp = np.empty_like(out)
    for axis in range(img.ndim):
        order = [0] * img.ndim
        order[axis] = 2
        ndi.gaussian_filter(img, sigma_um / s, order=order, output=tmp, mode="nearest")
        out -= tmp * np.float32(sigma_um**2 / s[axis] ** 2)
    return out


def detect_particles(image, spacing_um, diameter_um=None, *, sigma_um=None,
                     threshold=None, min_distance_um=None) -> np.ndarray:
    """Centres of bright point-like particles, µm ``(z, y, x)`` (array frame), strongest first.

    Parameters
    ----------
    image : (z, y, x) or (y, x) real array
        E.g. an MR magnitude image or a fluorescence stack.
    spacing_um : float or sequence
    diameter_um : float
        Apparent spot diameter (µm): the particle convolved with the imaging PSF; the LoG
        scale is ``diameter / (2 √ndim)``. Or give ``sigma_um``, the LoG scale itself.
    threshold : float, optional
        Minimum normalised LoG response (image units). Default: 5 robust standard deviations
        (1.4826 × MAD) of the response above its median.
    min_distance_um : float, optional
        A peak is kept only if it is the largest within ± this distance on every axis (a
        box); default the spot radius, ``σ √ndim``. Raise it above the ringing distance of
        Gibbs side lobes (a few voxels) in unapodized MR magnitude images.

    Returns
    -------
    (N, ndim) float64 array of centres in µm (sub-voxel: parabola fit per axis).
    """
    img = _real_volume(image, "image")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    s = _spacing(spacing_um, img.ndim)
    sigma = _particle_sigma(img.ndim, diameter_um, sigma_um)
    response = log_response(img, s, sigma)
    if threshold is None:
        threshold = float(np.median(response)) + 5 * _robust_sigma(response)
    elif not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if min_distance_um is None:
        min_distance_um = sigma * np.sqrt(img.ndim)
    elif not np.isfinite(min_distance_um) or min_distance_um < 0:
        raise ValueError(f"min_distance_um must be >= 0 µm, got {min_distance_um!r}")
    size = 2 * np.maximum(1, np.ceil(min_distance_um / s)).astype(int) + 1
    peaks = (response == ndi.maximum_filter(response, size=tuple(size), mode="nearest"))
    peaks &= response > threshold
    labels, count = ndi.label(peaks, structure=np.ones((3,) * img.ndim))
    if count == 0:
        return np.empty((0, img.ndim))
    idx = np.array(ndi.maximum_position(response, labels, np.arange(1, count + 1)))
    idx = idx.reshape(count, img.ndim)
    strength = response[tuple(idx.T)]
    idx = idx[np.argsort(-strength, kind="stable")]
    shift = np.zeros(idx.shape)
    upper = np.asarray(img.shape) - 1
    for axis in range(img.ndim):
        inner = (idx[:, axis] > 0) & (idx[:, axis] < upper[axis])
        lo, hi = idx[inner].copy(), idx[inner].copy()
        lo[:, axis] -= 1
        hi[:, axis] += 1
        r0 = response[tuple(idx[inner].T)].astype(np.float64)
        rm, rp = response[tuple(lo.T)], response[tuple(hi.T)]
        curvature = rm - 2 * r0 + rp
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(curvature < 0, 0.5 * (rm - rp) / curvature, 0.0)
        shift[inner, axis] = np.clip(d, -0.5, 0.5)
    return (idx + shift) * s


def localisation_precision_um(image, spacing_um, centres_um, sigma_um, *, noise_sigma=None,
                              background=None) -> np.ndarray:
    """Cramér–Rao bound on each particle's position, per axis (µm).

    For a Gaussian spot of peak amplitude A and σ_j (µm) per axis in white Gaussian noise σ_n
    sampled on voxels of volume V: ``σ_i² = 2 σ_n² V σ_i² / (A² π^{d/2} Π_j σ_j)`` (reduces to
    Thompson et al.'s background term ``8π s⁴ b² / (a² N²)`` in 2-D).

    Parameters
    ----------
    image, spacing_um
        As for :func:`detect_particles`.
    centres_um : (N, ndim) array
    sigma_um : float or sequence
        The spot's Gaussian σ (µm) per axis (the imaging PSF convolved with the particle).
    noise_sigma : float, optional
        Noise standard deviation; default 1.4826 × MAD of the image.
    background : float, optional
        Background level under the spots; default the image median.

    Returns
    -------
    (N, ndim) array, µm; inf where the spot is not above the background. A is the image
    linearly interpolated at the centre, minus the background: off a voxel centre it
    underestimates the peak (≈ 10 % per axis half a voxel off for σ ≈ 1 voxel), so the
    bound errs on the large side.
    """
    img = _real_volume(image, "image")
    s = _spacing(spacing_um, img.ndim)
    spot = _spacing(sigma_um, img.ndim, "sigma_um")
    centres = np.asarray(centres_um, dtype=float).reshape(-1, img.ndim)
    noise = _robust_sigma(img) if noise_sigma is None else float(noise_sigma)
    if not np.isfinite(noise) or noise <= 0:
        raise ValueError(f"noise_sigma must be positive (the image noise), got {noise!r}")
    base = float(np.median(img)) if background is None else float(background)
    amplitude = sample_volume(img, s, centres).astype(np.float64) - base
    factor = np.sqrt(2 * np.prod(s) * spot**2 / (np.pi ** (img.ndim / 2) * np.prod(spot)))
    with np.errstate(divide="ignore"):
        per_amplitude = np.where(amplitude > 0, noise / amplitude, np.inf)
    return per_amplitude[:, None] * factor[None, :]


class ParticleMatch(NamedTuple):
    """One-to-one matches between particle sets ``a`` and ``b`` (µm)."""

    pairs: np.ndarray           #: (M, 2) int: index into a, index into b
    offsets_um: np.ndarray      #: (M, ndim): b − a per matched pair
    distances_um: np.ndarray    #: (M,)
    fraction_a: float           #: matched fraction of a
    fraction_b: float           #: matched fraction of b
    mean_offset_um: np.ndarray  #: (ndim,) mean offset (a systematic misregistration)
    scatter_um: np.ndarray      #: (ndim,) SD of offsets about the mean: √(σ_a² + σ_b²)


def match_particles(a_um, b_um, max_distance_um: float) -> ParticleMatch:
    """Pair particles of two sets one-to-one, minimising the summed distance, never farther
    apart than ``max_distance_um`` (the gate): the most pairs within the gate, then the
    smallest total distance (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``).
    """
    a = np.asarray(a_um, dtype=float)
    b = np.asarray(b_um, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] not in (2, 3):
        raise ValueError(f"a_um {a.shape} and b_um {b.shape} must be (N, ndim) point arrays "
                         "with the same ndim (2 or 3)")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("particle positions contain NaN or inf")
    gate = float(max_distance_um)
    if not np.isfinite(gate) or gate <= 0:
        raise ValueError(f"max_distance_um must be positive, got {max_distance_um!r}")
    ndim = a.shape[1]
    if len(a) == 0 or len(b) == 0:
        empty = np.empty((0, ndim))
        return ParticleMatch(np.empty((0, 2), dtype=int), empty, np.empty(0), 0.0, 0.0,
                             np.full(ndim, np.nan), np.full(ndim, np.nan))
    check_memory(3 * len(a) * len(b) * 8, f"matching {len(a)} × {len(b)} particles")
    distance = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    outside = distance > gate
    # A forbidden pair costs more than any set of allowed pairs: fewest forbidden first.
    cost = np.where(outside, gate * (min(len(a), len(b)) + 1), distance)
    rows, cols = linear_sum_assignment(cost)
    keep = ~outside[rows, cols]
    rows, cols = rows[keep], cols[keep]
    offsets = b[cols] - a[rows]
    m = len(rows)
    mean = offsets.mean(axis=0) if m else np.full(ndim, np.nan)
    scatter = offsets.std(axis=0, ddof=1) if m > 1 else np.full(ndim, np.nan)
    return ParticleMatch(np.stack([rows, cols], axis=1), offsets, distance[rows, cols],
                         m / len(a), m / len(b), mean, scatter)


def particle_affine(moving_um, fixed_um, max_distance_um: float, kind: str = "rigid",
                    initial_affine=None, iterations: int = 50):
    """Register two particle sets without known correspondences (iterative closest point
    with one-to-one gated matching): match, fit :func:`landmark_affine` to the pairs, map,
    repeat until the pairs stop changing.

    Parameters
    ----------
    moving_um, fixed_um : (N, ndim), (M, ndim) arrays, µm
    max_distance_um : float
        Match gate; the starting pose (``initial_affine``, e.g. from mutual information or
        a few hand landmarks) must bring partners within it.
    kind : {"rigid", "similarity", "affine"}
    iterations : int
        Upper bound on match/fit rounds.

    Returns
    -------
    (LandmarkFit, ParticleMatch)
        The fit (moving → fixed) and the matches of the mapped moving set to the fixed set.
    """
    moving = np.asarray(moving_um, dtype=float)
    fixed = np.asarray(fixed_um, dtype=float)
    ndim = moving.shape[1] if moving.ndim == 2 else 3
    affine = np.eye(ndim + 1) if initial_affine is None else check_affine(initial_affine, ndim,
                                                                          "initial_affine")
    previous = None
    for _ in range(max(1, int(iterations))):
        match = match_particles(apply_affine(affine, moving), fixed, max_distance_um)
        if len(match.pairs) < ndim + 1:
            raise ValueError(f"particle_affine: only {len(match.pairs)} particle pairs within "
                             f"max_distance_um={max_distance_um:g} µm (need >= {ndim + 1}); "
                             "start closer (initial_affine) or widen the gate")
        if previous is not None and np.array_equal(previous, match.pairs):
            break
        previous = match.pairs
        fit = landmark_affine(moving[match.pairs[:, 0]], fixed[match.pairs[:, 1]], kind)
        affine = fit.affine
    return fit, match_particles(apply_affine(affine, moving), fixed, max_distance_um)
