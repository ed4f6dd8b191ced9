"""Unwrapping at 128³: Laplacian, region growing (ROMEO weights, magnitude), temporal
unwrapping of 4 echoes, against scikit-image's unwrap_phase timed in the same run."""
import time
import numpy as np
from skimage.restoration import unwrap_phase
from napari_mrmicro.core.qsm.unwrap import (unwrap_echoes, unwrap_laplacian,
                                            unwrap_region_growing, wrap_phase)

n = 128
z, y, x = np.meshgrid(*[np.arange(n) - n / 2] * 3, indexing="ij")
truth = (30 * np.exp(-(z**2 + (y - 8) ** 2 + x**2) / (2 * 25.0**2))
         - 20 * np.exp(-((z + 20) ** 2 + y**2 + (x - 10) ** 2) / (2 * 18.0**2))).astype(np.float32)
inside = (z / 55) ** 2 + (y / 50) ** 2 + (x / 58) ** 2 <= 1
rng = np.random.default_rng(0)
data = np.where(inside, np.exp(1j * truth), 0) + 0.05 * (rng.normal(size=z.shape) + 1j * rng.normal(size=z.shape))
mag, phase = np.abs(data).astype(np.float32), np.angle(data).astype(np.float32)

def timed(f):
    t = time.perf_counter(); out = f(); return time.perf_counter() - t, out

# the compiled loops (Laplacian's passes, region growing's spanning tree) load or compile
# on first use: once per install, not per call
unwrap_laplacian(phase[:8, :8, :8], 1.0)
unwrap_region_growing(phase[:8, :8, :8], mag[:8, :8, :8])
t_sk, _ = timed(lambda: unwrap_phase(phase.astype(np.float64)))
t_lap, lap = timed(lambda: unwrap_laplacian(phase, 1.0))
t_rg, rg = timed(lambda: unwrap_region_growing(phase, mag))
t_rgm, rgm = timed(lambda: unwrap_region_growing(phase, mag, inside))
te = np.array([2.0, 4.0, 6.0, 8.0])
phases = wrap_phase(np.stack([phase * 0 + truth * t / 2 for t in te]))
t_echo, _ = timed(lambda: unwrap_echoes(phases, te, np.stack([mag] * 4), inside))
nt = truth + wrap_phase(phase - truth)
err = lambda r: np.abs(r - nt - 2 * np.pi * np.round(np.median(r[inside] - nt[inside]) / 2 / np.pi))[inside].max()
print(f"skimage unwrap_phase (baseline)   {t_sk:6.2f} s")
print(f"unwrap_laplacian                  {t_lap:6.2f} s  ({t_lap / t_sk:.2f}x baseline), max err in specimen {err(lap):.2f} rad")
print(f"unwrap_region_growing, no mask    {t_rg:6.2f} s  ({t_rg / t_sk:.2f}x), max err {err(rg):.1e} rad")
print(f"unwrap_region_growing, mask 32%   {t_rgm:6.2f} s  ({t_rgm / t_sk:.2f}x), max err {err(rgm):.1e} rad")
print(f"unwrap_echoes 4 echoes, mask      {t_echo:6.2f} s  ({t_echo / t_sk:.2f}x)")
print("mask fraction", inside.mean())
import resource; print("peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)
