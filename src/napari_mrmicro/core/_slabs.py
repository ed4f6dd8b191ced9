"""Slab-wise work on big volumes, spread over the machine's cores.

numpy's element-wise kernels and scipy.fft release the GIL, so threads working on
separate slabs of a volume run in parallel; small slabs also keep each pass in cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def core_count() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def slab_size(plane_voxels: int, target: int = 2**20) -> int:
    """Planes per slab so that a slab holds about ``target`` voxels."""
    return max(1, target // max(1, plane_voxels))


def for_each_slab(work, n: int, size: int, report=None) -> None:
    """Call ``work(start, stop)`` for consecutive slabs of ``n`` planes on all cores.

    ``report(fraction)`` is called from the calling thread as slabs finish, in order; an
    exception in any slab is raised here once the running slabs have stopped.
    """
    bounds = [(start, min(n, start + size)) for start in range(0, n, size)]
    with ThreadPoolExecutor(max_workers=core_count()) as pool:
        futures = [pool.submit(work, start, stop) for start, stop in bounds]
        try:
            for done, future in enumerate(futures, 1):
                future.result()
                if report is not None:
                    report(done / len(futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
