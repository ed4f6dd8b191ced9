"""Point-landmark registration: the rigid, similarity or affine transform that best maps
moving landmarks onto fixed ones (µm, ``(z, y, x)``), with its residuals.

Rigid and similarity: the closed-form least-squares solution of Umeyama (IEEE Trans Pattern
Anal Mach Intell 1991;13:376), which keeps a proper rotation (no reflection). Affine: linear
least squares. The matrix maps moving → fixed world coordinates (see ``core.transforms``).
"""

from __future__ import annotations

import numpy as np

KINDS = ("rigid", "similarity", "affine")

#: Relative singular-value floor below which a point cloud counts as collinear / coplanar:
#: the cloud's thickness in its thinnest direction over its extent in the widest.
DEGENERACY_RTOL = 1e-3


class LandmarkFit(tuple):
    """``(affine, rms_um)`` — unpacks as a pair — with ``residuals_um``, the per-landmark
    distance (µm) between the mapped moving point and its fixed partner, as an attribute."""

    def __new__(cls, affine, rms_um, residuals_um):
        fit = super().__new__(cls, (affine, rms_um))
        fit.residuals_um = residuals_um
        return fit

    @property
    def affine(self) -> np.ndarray:
        return self[0]

    @property
    def rms_um(self) -> float:
        return self[1]


#: "a rigid", "a similarity", "an affine" fit.
_ARTICLE = {"rigid": "a", "similarity": "a", "affine": "an"}


def _points(points, name):
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be an (N, 2) or (N, 3) array of points in µm, "
                         f"got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf")
    return p


def _check_spread(centred, name, kind):
    """Reject clouds spanning too few directions: ndim (affine) or ndim − 1 (rigid,
    similarity: a plane of points fixes a 3-D rotation, a line a 2-D one)."""
    ndim = centred.shape[1]
    s = np.linalg.svd(centred, compute_uv=False)
    if s[0] == 0:
        raise ValueError(f"{name}: all landmarks are the same point")
    needed = ndim if kind == "affine" else ndim - 1  # independent directions
    ratio = s[needed - 1] / s[0]
    if ratio < DEGENERACY_RTOL:
        shape = {1: "coincident", 2: "collinear", 3: "coplanar"}[needed]
        raise ValueError(f"{name}: landmarks are {shape} (thinnest/widest spread "
                         f"{ratio:.1e} < {DEGENERACY_RTOL:g}); {_ARTICLE[kind]} {kind} fit "
                         f"needs points spanning {needed} independent directions"
                         + ("" if kind != "affine" else "; fit a similarity or rigid "
                            "transform instead, or add out-of-plane landmarks"))


def landmark_affine(moving_um, fixed_um, kind: str = "similarity") -> LandmarkFit:
    """Least-squares transform mapping moving landmarks onto fixed ones.

    Parameters
    ----------
    moving_um, fixed_um : (N, ndim) array_like
        Corresponding points in µm, ``(z, y, x)`` (or ``(y, x)``), row i ↔ row i.
    kind : {"rigid", "similarity", "affine"}
        Rigid (rotation + translation) and similarity (+ isotropic scale): Umeyama 1991.
        Affine: ordinary least squares on ``[x, 1]``.

    Returns
    -------
    LandmarkFit
        ``(affine, rms_um)``: the ``(ndim+1, ndim+1)`` matrix moving → fixed and the RMS
        landmark residual in µm; ``.residuals_um`` holds the N per-point residuals.

    Raises
    ------
    ValueError
        Fewer than ``ndim + 1`` pairs, mismatched shapes, NaNs, or a degenerate cloud:
        collinear 3-D points (any kind); coplanar 3-D or collinear 2-D points (affine).
        Coplanar 3-D points still fix a rigid or similarity transform uniquely.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    moving = _points(moving_um, "moving_um")
    fixed = _points(fixed_um, "fixed_um")
    if moving.shape != fixed.shape:
        raise ValueError(f"moving_um {moving.shape} and fixed_um {fixed.shape} must have the "
                         "same shape (one fixed point per moving point)")
    n, ndim = moving.shape
    if n < ndim + 1:
        raise ValueError(f"landmark_affine needs at least {ndim + 1} point pairs in {ndim}-D, "
                         f"got {n}")
    mu_m, mu_f = moving.mean(axis=0), fixed.mean(axis=0)
    xm, xf = moving - mu_m, fixed - mu_f
    _check_spread(xm, "moving_um", kind)
    _check_spread(xf, "fixed_um", kind)
    affine = np.eye(ndim + 1)
    if kind == "affine":
        design = np.hstack([moving, np.ones((n, 1))])
        solution, *_ = np.linalg.lstsq(design, fixed, rcond=None)
        affine[:ndim, :] = solution.T
    else:
        u, d, vt = np.linalg.svd(xf.T @ xm / n)
        sign = np.ones(ndim)
        sign[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
        rotation = (u * sign) @ vt
        scale = (d @ sign) / np.mean(np.sum(xm**2, axis=1)) if kind == "similarity" else 1.0
        affine[:ndim, :ndim] = scale * rotation
        affine[:ndim, ndim] = mu_f - scale * rotation @ mu_m
    residuals = np.linalg.norm(moving @ affine[:ndim, :ndim].T + affine[:ndim, ndim] - fixed,
                               axis=1)
    return LandmarkFit(affine, float(np.sqrt(np.mean(residuals**2))), residuals)
