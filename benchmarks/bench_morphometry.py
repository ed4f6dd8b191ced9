"""Morphometry of a cochlea-sized spiral duct in a 512³ volume: region table, centerline, sections.

The duct spirals 2.5 turns from a 4.0 mm to a 1.2 mm radius while rising 3.5 mm, its own radius
tapering from 500 to 260 µm, on a 20 µm grid (10.24 mm FOV), like a human scala tympani.
Each step is printed with its ratio to a baseline timed in the same run: ``scipy.ndimage.label``
of the same 512³ mask (one pass over the volume). Target: under 30 s in total on 2 cores.
Usage: ``python benchmarks/bench_morphometry.py [N]`` (default 512).
"""

import sys
import time

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from napari_mrmicro.core.morphometry import (
    centerline, cross_sections, path_length_um, region_table, resample_path)


def spiral_duct(n: int, spacing_um: float):
    """uint8 labels (1 = duct, 2 = a sphere inside its turns), the duct's centre curve (µm),
    its radius along the curve (µm) and the curve's length (µm)."""
    scale = n / 512
    turns, t = 2.5, np.linspace(0.0, 1.0, 20001)
    theta = 2 * np.pi * turns * t
    radius = (4000.0 - 2800.0 * t) * scale
    centre = n * spacing_um / 2
    curve = np.column_stack([centre - 1750.0 * scale + 3500.0 * scale * t,
                             centre + radius * np.cos(theta), centre + radius * np.sin(theta)])
    tube = (500.0 - 240.0 * t) * scale
    step = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    keep = np.concatenate([[0], np.flatnonzero(np.cumsum(step) // (spacing_um / 2)
                                               != np.roll(np.cumsum(step) // (spacing_um / 2),
                                                          1))])
    labels = np.zeros((n, n, n), np.uint8)
    for point, r in zip(curve[keep], tube[keep]):
        lo = np.maximum(np.floor((point - r) / spacing_um).astype(int), 0)
        hi = np.minimum(np.ceil((point + r) / spacing_um).astype(int) + 1, n)
        z, y, x = (np.arange(a, b) * spacing_um - p for a, b, p in zip(lo, hi, point))
        ball = z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2 <= r * r
        labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][ball] = 1
    zz, yy, xx = np.ogrid[:n, :n, :n]
    sphere = ((zz - n // 2) ** 2 + (yy - n // 2) ** 2 + (xx - n // 2) ** 2) * spacing_um**2 \
        <= (600.0 * scale) ** 2
    labels[sphere & (labels == 0)] = 2
    return labels, curve, tube, float(step.sum())


def timed(fn):
    """(result, wall seconds, CPU seconds of this process): CPU time is the fairer figure on a
    machine shared with other jobs."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench(n: int = 512, spacing_um: float = 20.0, sections: int = 200):
    labels, curve, tube, true_length = spiral_duct(n, spacing_um)
    spacing = (spacing_um,) * 3
    duct = labels == 1
    print(f"{n}³ labels, {spacing_um:g} µm voxels: duct {duct.sum() / 1e6:.2f} M voxels, "
          f"curve {true_length / 1000:.2f} mm")
    _, base, base_cpu = timed(lambda: ndi.label(duct))
    table, *t_table = timed(lambda: region_table(labels, spacing))
    path, *t_path = timed(lambda: centerline(duct, spacing))
    stations = resample_path(path, count=sections)
    cuts, *t_cuts = timed(lambda: cross_sections(duct, stations, spacing))
    total = [a + b + c for a, b, c in zip(t_table, t_path, t_cuts)]
    length = path_length_um(path)
    print(f"  baseline ndi.label of the mask : {base:7.2f} s wall, {base_cpu:6.2f} s CPU")
    for name, (wall, cpu) in (("region_table (2 labels)", t_table), ("centerline", t_path),
                              (f"{sections} cross-sections", t_cuts), ("total", total)):
        print(f"  {name:<31}: {wall:7.2f} s wall, {cpu:6.2f} s CPU   ratio {wall / base:6.1f}")
    total = total[0]
    print(f"  target < 30 s on 2 cores: {'met' if total < 30 else 'NOT met'}")
    row = {k: v[0] for k, v in table.items()}
    cap_to_cap = true_length + tube[0] + tube[-1]  # the swept balls round off both ends
    print(f"  duct volume {row['volume_mm3']:.3f} mm³, surface {row['surface_area_um2'] / 1e6:.2f} "
          f"mm², centerline {length / 1000:.3f} mm (cap to cap {cap_to_cap / 1000:.3f} mm, "
          f"{100 * (length / cap_to_cap - 1):+.2f} %)")
    expected = np.pi * tube[cKDTree(curve).query(stations)[1]] ** 2
    inner = slice(5, -5)
    error = cuts.areas_um2[inner] / expected[inner] - 1
    print(f"  section area vs π r(s)²: mean {100 * np.nanmean(error):+.2f} %, "
          f"rms {100 * np.sqrt(np.nanmean(error ** 2)):.2f} %")


if __name__ == "__main__":
    bench(*(int(a) for a in sys.argv[1:2]))
