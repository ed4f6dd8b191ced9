"""T2/T2* maps: each fit over a volume of 8 echoes against voxel-by-voxel fitting with
scipy's ``curve_fit`` (timed on a sample of voxels in the same run, per voxel) and against
one pass of ``np.log`` over the echoes (the least any fit reads).

Usage: ``python benchmarks/bench_relaxometry.py [N]`` (N³ voxels, default 128).
"""

import sys

import numpy as np
from scipy.optimize import curve_fit

from _timing import best_of
from napari_mrmicro.core.relaxometry import METHODS, fit_relaxation

n = int(sys.argv[1]) if len(sys.argv) > 1 else 128
rng = np.random.default_rng(0)
te = np.arange(1, 9) * 4.0
s0 = np.zeros((n,) * 3, np.float32)
s0[n // 10:-n // 10, n // 10:-n // 10, n // 10:-n // 10] = 100
t2 = rng.uniform(10, 40, s0.shape).astype(np.float32)
clean = s0[None] * np.exp(-te[:, None, None, None] / t2[None])
data = np.abs(clean + rng.normal(0, 2, clean.shape) + 1j * rng.normal(0, 2, clean.shape)
              ).astype(np.float32)
inside = s0 > 0
voxels = int(inside.sum())

sample = data[:, inside][:, :300].T.astype(np.float64)
model = lambda t, a, r: a * np.exp(-t * r)  # noqa: E731
per_voxel = best_of(lambda: [curve_fit(model, te / 1000, s, p0=(s[0], 30.0)) for s in sample],
                    repeat=1) / len(sample)
one_pass = best_of(lambda: np.log(data + 1), repeat=3)
print(f"{n}³ × {len(te)} echoes, {voxels} voxels with signal")
print(f"scipy curve_fit, voxel by voxel (baseline): {per_voxel * 1e6:.0f} µs per voxel, "
      f"{per_voxel * voxels:.0f} s for the volume")
print(f"np.log over the echoes (one pass): {one_pass:.3f} s")
for method in METHODS:
    seconds = best_of(lambda: fit_relaxation(data, te, method), repeat=2, warmup=True)
    error = np.median(np.abs(fit_relaxation(data, te, method).t2_ms()[inside] / t2[inside] - 1))
    print(f"{method:>9}: {seconds:.2f} s, speed-up over curve_fit {per_voxel * voxels / seconds:.0f}×, "
          f"ratio to one pass {seconds / one_pass:.1f}, median |T2 error| {100 * error:.1f} %")
