"""T1 maps: each experiment over a volume against voxel-by-voxel fitting with scipy's
``curve_fit`` (timed on a sample of voxels in the same run, per voxel; the inversion
recovery fitted twice per voxel for its polarity restoration, as the map does).

Usage: ``python benchmarks/bench_t1_mapping.py [N]`` (N³ voxels, default 128).
"""

import sys

import numpy as np
from scipy.optimize import curve_fit

from _timing import best_of
from napari_mrmicro.core.t1_mapping import METHODS, fit_t1

n = int(sys.argv[1]) if len(sys.argv) > 1 else 128
rng = np.random.default_rng(0)
m0 = np.zeros((n,) * 3, np.float32)
m0[n // 10:-n // 10, n // 10:-n // 10, n // 10:-n // 10] = 100
t1 = rng.uniform(200, 2500, m0.shape).astype(np.float32)
inside = m0 > 0
voxels = int(inside.sum())
angles, tr = np.array([2.0, 5.0, 10.0, 15.0, 25.0]), 15.0
trs = np.array([100.0, 300.0, 800.0, 2000.0, 5000.0])
tis = np.array([30.0, 100.0, 300.0, 800.0, 2000.0, 5000.0])


def signal(method):
    axis = (slice(None), None, None, None)
    if method == "vfa":
        a, e = np.deg2rad(angles)[axis], np.exp(-tr / t1)
        return 12 * m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e), {"flip_deg": angles,
                                                                      "tr_ms": tr}
    if method == "saturation_recovery":
        return m0 * (1 - np.exp(-trs[axis] / t1)), {"tr_ms": trs}
    return np.abs(m0 * (1 - 2 * np.exp(-tis[axis] / t1))), {"ti_ms": tis}


def peer(method):
    if method == "vfa":
        a, e = np.deg2rad(angles), lambda r: np.exp(-tr / 1000 * r)
        return lambda x, m, r: m * np.sin(a) * (1 - e(r)) / (1 - np.cos(a) * e(r)), angles, 2
    if method == "saturation_recovery":
        return lambda x, m, r: m * (1 - np.exp(-x * r)), trs / 1000, 2
    return lambda x, a, b, r: a + b * np.exp(-x * r), tis / 1000, 3


print(f"{n}³, {voxels} voxels with signal, noise σ 2 (Rician)")
for method in METHODS:
    clean, timing = signal(method)
    data = np.abs(clean + rng.normal(0, 2, clean.shape) + 1j * rng.normal(0, 2, clean.shape)
                  ).astype(np.float32)
    model, x, k = peer(method)
    sample = data[:, inside][:, :200].T.astype(np.float64)
    fits = 2 if method == "inversion_recovery" else 1
    start = (100.0, -200.0, 1.0)[:k] if k == 3 else (100.0, 1.0)

    def by_voxel():
        for s in sample:
            for flip in range(fits):  # the inversion: both polarities of its smallest point
                y = np.where(np.arange(len(s)) < np.argmin(s) + flip, -s, s) \
                    if method == "inversion_recovery" else s
                try:
                    curve_fit(model, x, y, p0=start, maxfev=2000)
                except RuntimeError:
                    pass

    per_voxel = best_of(by_voxel, repeat=1) / len(sample)
    seconds = best_of(lambda: fit_t1(data, method, **timing, noise_sigma=2.0), repeat=1,
                      warmup=True)
    fit = fit_t1(data, method, **timing, noise_sigma=2.0)
    error = np.median(np.abs(fit.t1_ms()[fit.fitted & inside] / t1[fit.fitted & inside] - 1))
    print(f"{method:>19}: {seconds:.2f} s, speed-up over curve_fit {per_voxel * voxels / seconds:.0f}× "
          f"(curve_fit {per_voxel * 1e6:.0f} µs per voxel), fitted {fit.fitted[inside].mean():.3f}, "
          f"median |T1 error| {100 * error:.1f} %")
