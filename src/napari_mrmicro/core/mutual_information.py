"""Mutual information between two images of different contrast (MRM vs optical).

Mattes-style estimate (Mattes et al., IEEE Trans Med Imaging 2003;22:120; MI as a
registration metric: Viola & Wells, Int J Comput Vis 1997;24:137; Maes et al., IEEE Trans Med
Imaging 1997;16:187): a joint histogram of ``bins`` × ``bins`` over sampled points, the fixed
intensity binned to its nearest bin, the moving intensity spread linearly over its two nearest
bins (a first-order B-spline Parzen window), so the metric varies continuously with the
transform. It assumes only a statistical relation between the two intensities, not equality.
Values in nats.
"""

from __future__ import annotations

import numpy as np


class MattesMetric:
    """MI of fixed sample values (binned once) against moving values evaluated many times.

    Parameters
    ----------
    fixed_values : (N,) array
    moving_range : (low, high)
        Intensity range of the moving image; values outside are clipped to it.
    bins : int
    """

    def __init__(self, fixed_values, moving_range, bins: int = 32):
        if int(bins) != bins or bins < 4:
            raise ValueError(f"bins must be an integer >= 4, got {bins!r}")
        self.bins = int(bins)
        f = np.asarray(fixed_values, dtype=np.float64).ravel()
        if f.size < 16 or not np.all(np.isfinite(f)):
            raise ValueError(f"fixed values: need >= 16 finite samples, got {f.size} "
                             f"({np.count_nonzero(~np.isfinite(f))} not finite)")
        lo, hi = f.min(), f.max()
        if hi <= lo:
            raise ValueError("the fixed image is constant over the sampled points; mutual "
                             "information needs contrast")
        self._fixed_bin = np.minimum(((f - lo) / (hi - lo) * self.bins).astype(np.intp),
                                     self.bins - 1)
        self._row = self._fixed_bin * (self.bins + 1)  # joint rows: bins + 1 columns
        mlo, mhi = (float(x) for x in moving_range)
        if not (np.isfinite(mlo) and np.isfinite(mhi)) or mhi <= mlo:
            raise ValueError(f"moving_range must be finite with high > low, got {moving_range}"
                             " (is the moving image constant?)")
        self._mlo, self._mscale = mlo, (self.bins - 1) / (mhi - mlo)

    def __call__(self, moving_values, valid=None) -> float:
        """MI (nats) of the fixed samples with ``moving_values`` (same order). Samples where
        ``valid`` is False (mapped outside the moving image) count in one more moving bin,
        "outside": they tell nothing about the fixed intensity, so a pose that moves samples
        out of the image loses their share of the information instead of being judged on
        the few left (the small-overlap bias of MI, Studholme et al., Pattern Recognit
        1999;32:71). With every sample inside this is the plain Mattes estimate."""
        m = np.asarray(moving_values, dtype=np.float64)
        row = self._row
        outside = None
        if valid is not None and not np.all(valid):
            outside = row[~valid] + self.bins
            m, row = m[valid], row[valid]
        if m.size < 16:
            return 0.0
        u = np.clip((m - self._mlo) * self._mscale, 0.0, self.bins - 1 - 1e-9)
        i0 = u.astype(np.intp)
        w = u - i0
        size = self.bins * (self.bins + 1)
        joint = (np.bincount(row + i0, weights=1.0 - w, minlength=size)
                 + np.bincount(row + i0 + 1, weights=w, minlength=size))
        total = m.size
        if outside is not None:
            joint += np.bincount(outside, minlength=size)
            total += outside.size
        joint = joint.reshape(self.bins, self.bins + 1) / total
        return _mi_from_joint(joint)


def _mi_from_joint(joint: np.ndarray) -> float:
    pf = joint.sum(axis=1)
    pm = joint.sum(axis=0)
    nz = joint > 0
    outer = pf[:, None] * pm[None, :]
    return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))


def mutual_information(fixed, moving, bins: int = 32, mask=None) -> float:
    """Mattes mutual information (nats) between two equally shaped images.

    Parameters
    ----------
    fixed, moving : array_like, same shape, real
    bins : int
        Histogram bins per image (32–64 is usual).
    mask : bool array, optional
        Voxels to use (default all).
    """
    f = np.asarray(fixed)
    m = np.asarray(moving)
    if f.shape != m.shape:
        raise ValueError(f"fixed {f.shape} and moving {m.shape} must have the same shape")
    if np.iscomplexobj(f) or np.iscomplexobj(m):
        raise ValueError("mutual_information needs real images (take the magnitude)")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != f.shape:
            raise ValueError(f"mask {mask.shape} must have the image shape {f.shape}")
        if not mask.any():
            raise ValueError("mask is empty")
        f, m = f[mask], m[mask]
    m = m.ravel()
    if not np.all(np.isfinite(m)):
        raise ValueError("moving contains NaN or inf")
    return MattesMetric(f, (m.min(), m.max()), bins)(m)
