"""Diffusion tensor maps: a 30-direction series over a volume against DIPY's
``TensorModel`` fitting the same images (OLS and WLS on the whole volume; NLLS, slow in
DIPY, on a sample of voxels, per voxel), timed in the same run, with the largest difference
of the two tensors; the rician fit (no DIPY equivalent) against this WLS.

Usage: ``python benchmarks/bench_diffusion.py [N]`` (N³ voxels, default 128).
"""

import sys

import numpy as np

from _timing import best_of
from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion, full_tensor

n = int(sys.argv[1]) if len(sys.argv) > 1 else 128
rng = np.random.default_rng(0)
directions = rng.normal(size=(30, 3))
b_values = np.r_[0.0, np.full(30, 1000.0)]
vectors = np.r_[np.zeros((1, 3)), directions / np.linalg.norm(directions, axis=1)[:, None]]
b = b_matrices(b_values, vectors)
shape = (n,) * 3
inside = np.zeros(shape, bool)
inside[n // 10:-n // 10, n // 10:-n // 10, n // 10:-n // 10] = True
fibre = rng.normal(size=shape + (3,))
fibre /= np.linalg.norm(fibre, axis=-1, keepdims=True)
signal = np.empty((len(b),) + shape, np.float32)
for k, bk in enumerate(b):  # D = 0.3 I + 1.4 f fᵀ: 1e-3 (0.3 tr(b) + 1.4 fᵀ b f)
    quad = np.einsum("...i,ij,...j->...", fibre, bk, fibre)
    signal[k] = 500 * inside * np.exp(-1e-3 * (0.3 * np.trace(bk) + 1.4 * quad))
data = np.abs(signal + rng.normal(0, 5, signal.shape) + 1j * rng.normal(0, 5, signal.shape)
              ).astype(np.float32)
voxels = int(inside.sum())
print(f"{n}³, {len(b)} images (1 at b 0, 30 directions at b 1000 s/mm²), {voxels} voxels")

try:
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel
except ImportError:
    TensorModel = None
    print("DIPY is not installed (pip install dipy): no baseline")

last = np.moveaxis(data, 0, -1)  # DIPY's (x, y, z, images)
for method in ("ols", "wls", "nlls", "rician"):
    seconds = best_of(lambda: fit_diffusion(data, b, method=method, mask=inside,
                                            noise_sigma=5.0), repeat=1, warmup=True)
    fit = fit_diffusion(data, b, method=method, mask=inside, noise_sigma=5.0)
    line = f"{method:>6}: {seconds:.2f} s"
    if method == "rician":
        wls = fit_diffusion(data, b, method="wls", mask=inside)
        line += (f" ({seconds / wls_seconds:.1f}× WLS; DIPY has no such fit); MD median "
                 f"{np.median(fit.md()[inside]):.3f} against WLS "
                 f"{np.median(wls.md()[inside]):.3f} (truth 0.767)")
    elif TensorModel is not None:
        model = TensorModel(gradient_table(b_values, bvecs=vectors), fit_method=method.upper())
        if method == "nlls":
            sample = np.zeros(shape, bool)
            sample[np.unravel_index(np.flatnonzero(inside)[:2000], shape)] = True
            peer_seconds = best_of(lambda: model.fit(last, mask=sample), repeat=1) \
                * voxels / 2000
            where = sample
        else:
            peer_seconds = best_of(lambda: model.fit(last, mask=inside), repeat=1)
            where = inside
        peer = model.fit(last, mask=where).quadratic_form * 1e3
        difference = np.abs(full_tensor(fit.tensor)[where] - peer[where]).max()
        line += (f", DIPY {peer_seconds:.2f} s{' (scaled from 2000 voxels)' if method == 'nlls' else ''}"
                 f": {peer_seconds / seconds:.1f}× faster; largest tensor difference "
                 f"{difference:.1e} µm²/ms")
    if method == "wls":
        wls_seconds = seconds
    print(line + f"; FA median {np.median(fit.fa()[inside]):.3f} (truth 0.80)")
