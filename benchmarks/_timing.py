"""Timing helpers the benchmark scripts share (they run as scripts: ``python
benchmarks/bench_X.py`` puts this folder on the import path)."""

import time

import numpy as np


def best_of(fn, repeat=3, warmup=False):
    """Best wall time of ``repeat`` calls of ``fn`` (after one untimed call with
    ``warmup``: FFT plans, page faults, thread pools)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_best(functions, repeat=3):
    """Best time of each function, alternating them so load changes hit all alike."""
    best = [np.inf] * len(functions)
    for _ in range(repeat):
        for i, fn in enumerate(functions):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
