"""QSM pipeline speed at 256×256×128, each stage as a ratio to the FFT work it does.

Stages (one function each, run in order on a synthetic specimen): Laplacian phase
unwrapping, V-SHARP background removal, PDF (50 CG iterations, tol = 0), TKD, TV-ADMM and
MEDI (a magnitude with the specimen's edge) with 100 iterations (tol = 0), closed-form
Tikhonov, and LBV (the pipeline's default background removal since it was
measured against qsm-forward: ``benchmarks/qsm_methods_table.py``). For each stage the script counts the real FFTs
it calls (``scipy.fft.rfftn``/``irfftn``, and ``dctn``/``idctn`` for the unwrapping) while it runs, and prints

    time, FFT pairs, ratio = time / (pairs × one rfftn+irfftn pair of the 256×256×128
    float32 volume timed in the same run; a DCT-II pair for the DCTs of the unwrapping)

The pair is timed again just before each stage and the best pair so far is the baseline
(a load that drifts during the run does not flatter a stage); stages under a second are
timed best of 3, like the pair.

A ratio near 1 means the stage is FFT-bound; the excess is element-wise work (kernels,
masks, soft thresholds). LBV does no FFT: its line shows the time in baseline pairs.
Before timing, every stage runs once on a 32×32×16 specimen: the compiled CPU loops
(numba, cached on disk) are loaded then, as the FFT plans are by the baseline pairs; the
script prints how long that took.

Usage: ``python benchmarks/bench_qsm.py [nz ny nx]`` (default 256 256 128).
"""

import importlib.util
import sys
import time
from contextlib import contextmanager

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import forward_field
from napari_mrmicro.core.qsm.background import lbv, pdf, vsharp
from napari_mrmicro.core.qsm.medi import invert_medi
from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
from napari_mrmicro.core.qsm.tkd import invert_tkd
from napari_mrmicro.core.qsm.tv import invert_tv

SPACING_UM = (20.0, 20.0, 20.0)
B0 = (1.0, 0.0, 0.0)
PHASE_PER_PPM = 2 * np.pi * 42.577478e6 * 9.4 * 1e-6 * 5e-3  # rad per ppm at 9.4 T, TE 5 ms
TV_ITERATIONS = 100
PDF_ITERATIONS = 50


def specimen(shape):
    """Ellipsoid specimen with spheres of ±0.1…0.3 ppm, air (−9.4 ppm) around it; the
    wrapped phase of its total field, the mask and the total field (ppm)."""
    z, y, x = [(np.arange(n) - n / 2).reshape([-1 if i == a else 1 for i in range(3)]) / (n / 2)
               for a, n in enumerate(shape)]
    mask = (z / 0.8) ** 2 + (y / 0.8) ** 2 + (x / 0.8) ** 2 <= 1
    chi = np.where(mask, 0.0, -9.4).astype(np.float32)
    rng = np.random.default_rng(0)
    for _ in range(12):
        c = rng.uniform(-0.45, 0.45, 3)
        r = rng.uniform(0.05, 0.15)
        chi[((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= r**2] = rng.uniform(-0.3, 0.3)
    field = forward_field(chi, SPACING_UM, B0)
    phase = PHASE_PER_PPM * field
    wrapped = (phase - 2 * np.pi * np.round(phase / (2 * np.pi))).astype(np.float32)
    return wrapped, mask, field


# --- stages: each takes the state dict and returns what the next stage needs -----------

def stage_unwrap(state):
    """Laplacian unwrapping (the unwrapping engineer's module) -> total field (ppm)."""
    from napari_mrmicro.core.qsm.unwrap import unwrap_laplacian
    state["total_field_ppm"] = unwrap_laplacian(state["wrapped_phase"], SPACING_UM) \
        / np.float32(PHASE_PER_PPM)


def stage_vsharp(state):
    state["local_field_ppm"], state["eroded_mask"] = vsharp(state["total_field_ppm"],
                                                            state["mask"], SPACING_UM)


def stage_tkd(state):
    state["chi_tkd"] = invert_tkd(state["local_field_ppm"], state["eroded_mask"], SPACING_UM,
                                  B0)


def stage_tv(state):
    state["chi_tv"] = invert_tv(state["local_field_ppm"], state["eroded_mask"], SPACING_UM, B0,
                                max_iter=TV_ITERATIONS, tol=0)


def stage_tikhonov(state):
    state["chi_tikhonov"] = invert_tikhonov(state["local_field_ppm"], state["eroded_mask"],
                                            SPACING_UM, B0)


def stage_lbv(state):
    state["local_lbv"], _ = lbv(state["total_field_ppm"], state["mask"], SPACING_UM)


def stage_pdf(state):
    state["local_pdf"], _ = pdf(state["total_field_ppm"], state["mask"], SPACING_UM, B0,
                                max_iter=PDF_ITERATIONS, tol=0)


def stage_medi(state):
    magnitude = state["mask"].astype(np.float32) + 0.1  # edges at the specimen's surface
    state["chi_medi"] = invert_medi(state["local_field_ppm"], state["eroded_mask"], SPACING_UM,
                                    B0, magnitude=magnitude, max_iter=TV_ITERATIONS, tol=0)


STAGES = [("Laplacian unwrap", stage_unwrap), ("V-SHARP", stage_vsharp),
          (f"PDF, {PDF_ITERATIONS} it", stage_pdf), ("TKD", stage_tkd),
          (f"TV-ADMM, {TV_ITERATIONS} it", stage_tv),
          (f"MEDI, {TV_ITERATIONS} it", stage_medi), ("Tikhonov", stage_tikhonov),
          ("LBV (default)", stage_lbv)]


@contextmanager
def counting_ffts(counts):
    """Count forward and inverse real transforms called through ``scipy.fft``. An
    ``irfft`` of a volume is the last step of the in-place inverse of
    ``backend.fft(np).irfftn`` (its ``ifftn`` over the leading axes is not counted)."""
    names = {"rfftn": "forward", "dctn": "dct", "irfftn": "inverse", "idctn": "idct",
             "irfft": "inverse"}
    originals = {name: getattr(scipy.fft, name) for name in names}

    def counted(name):
        def call(*args, **kwargs):
            if name != "irfft" or np.ndim(args[0]) >= 3:
                counts[names[name]] += 1
            return originals[name](*args, **kwargs)
        return call

    for name in names:
        setattr(scipy.fft, name, counted(name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(scipy.fft, name, fn)


def fft_pair_seconds(shape, repeat=3, dct=False, in_place=False):
    """Best time of one rfftn+irfftn pair (or DCT-II pair) of a float32 volume; with
    ``in_place`` the inverse is the stages' own (``backend.fft(np).irfftn``, which runs in
    the spectrum's memory) instead of scipy's."""
    volume = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        if dct:
            scipy.fft.idctn(scipy.fft.dctn(volume, type=2, norm="ortho", workers=-1), type=2,
                            norm="ortho", workers=-1, overwrite_x=True)
        elif in_place:
            backend.fft(np).irfftn(scipy.fft.rfftn(volume, workers=-1), s=shape,
                                   overwrite_x=True)
        else:
            scipy.fft.irfftn(scipy.fft.rfftn(volume, workers=-1), s=shape, workers=-1)
        best = min(best, time.perf_counter() - t0)
    return best


def main(shape):
    wrapped, mask, field = specimen(shape)
    state = {"wrapped_phase": wrapped, "mask": mask}
    stages = list(STAGES)
    if importlib.util.find_spec("napari_mrmicro.core.qsm.unwrap") is None:
        print("unwrap_laplacian not available: using the true total field")
        state["total_field_ppm"] = field
        stages = stages[1:]
    pair, dct_pair = fft_pair_seconds(shape), fft_pair_seconds(shape, dct=True)
    own_pair = fft_pair_seconds(shape, in_place=True)
    t0 = time.perf_counter()
    warm = dict(zip(("wrapped_phase", "mask"), specimen((32, 32, 16))[:2]))
    if len(stages) < len(STAGES):
        warm["total_field_ppm"] = specimen((32, 32, 16))[2]
    for _, stage in stages:
        stage(warm)
    print(f"warm-up on 32×32×16 (compiled loops loaded or compiled): "
          f"{time.perf_counter() - t0:.2f} s")
    print(f"{shape} float32, {np.count_nonzero(mask)} voxels in the mask; one rfftn+irfftn "
          f"pair: {pair * 1e3:.0f} ms (with the stages' in-place inverse: "
          f"{own_pair * 1e3:.0f} ms), one DCT-II pair: {dct_pair * 1e3:.0f} ms")
    total = 0.0
    for name, stage in stages:
        # the baseline pair again just before the stage (the machine's load drifts); a
        # stage under a second is timed best of 3, like the pairs
        pair = min(pair, fft_pair_seconds(shape, repeat=2))
        own_pair = min(own_pair, fft_pair_seconds(shape, repeat=2, in_place=True))
        dct_pair = min(dct_pair, fft_pair_seconds(shape, repeat=2, dct=True)) \
            if name.startswith("Laplacian") else dct_pair
        seconds = np.inf
        for _ in range(3):
            counts = {"forward": 0, "inverse": 0, "dct": 0, "idct": 0}
            with counting_ffts(counts):  # a Python-call wrapper: negligible next to an FFT
                t0 = time.perf_counter()
                stage(state)
                once = time.perf_counter() - t0
            seconds = min(seconds, once)
            if once > 1.0:
                break
        total += seconds
        pairs = (counts["forward"] + counts["inverse"]) / 2
        dct_pairs = (counts["dct"] + counts["idct"]) / 2
        work = pairs * pair + dct_pairs * dct_pair
        ratio = seconds / (work or pair)
        kind = f"{dct_pairs:.1f} DCT pairs" if dct_pairs else \
            f"{pairs:.1f} FFT pairs ({counts['forward']} fwd + {counts['inverse']} inv)"
        # the same FFT work done the stages' way: the inverses in place
        own = f", {seconds / (pairs * own_pair + dct_pairs * dct_pair):.2f} to the " \
            "in-place pair" if pairs else ""
        print(f"  {name:<22} {seconds:7.2f} s   {kind:<36} ratio {ratio:5.2f} "
              f"{'(no FFT: time in pairs)' if not work else '(target <= 1.5)'}{own}",
              flush=True)
    print(f"  total {total:.1f} s (best runs); the best pairs seen: {pair * 1e3:.0f} ms, "
          f"in place {own_pair * 1e3:.0f} ms, DCT-II {dct_pair * 1e3:.0f} ms")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (256, 256, 128))
