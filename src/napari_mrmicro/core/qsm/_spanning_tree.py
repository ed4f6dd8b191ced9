"""Kruskal's maximum spanning tree of the voxel grid, with the phase integrated as it grows.

Region-growing unwrapping (:func:`~napari_mrmicro.core.qsm.unwrap.unwrap_region_growing`)
joins voxels along their best edges first. Kruskal's algorithm (Kruskal, Proc Amer Math
Soc 1956;7:48) takes the edges in that order and keeps each one that joins two separate
regions; Herráez et al. (Appl Opt 2002;41:7437) shift one of the two regions by the
multiple of 2π that makes the joining edge's difference less than π. Here each voxel stores
its multiple relative to its parent in a union-find forest (a weighted union-find with path
compression and union by size, Tarjan, J ACM 1975;22:215), so a merge costs two finds and
no pass over the smaller region.

scipy's ``minimum_spanning_tree`` builds the same tree (the same one where no two edges tie)
but needs the graph as a sparse matrix, and the integration a breadth-first order and a
triangular solve: with it the whole unwrapping of a 128³ box took 2.6–2.8 s and 213 bytes
per voxel, with this loop and :func:`best_first` 1.3–1.5 s and about 130
(benchmarks/bench_qsm_unwrap.py, two or three runs each on the 2-core development machine;
the output was the same on every test volume except where edges of equal quality made the
trees differ). Compiled by numba on first use (:mod:`~napari_mrmicro.core._compiled`); the
loop is sequential by nature, bound by the memory latency of its finds.
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import _compiled

_TWO_PI = 2.0 * np.pi


def best_first(quality) -> np.ndarray:
    """Edge indices by descending ``quality`` (float32 in [0, 1]), equal ones in index order.

    One in-place sort of 64-bit keys, the complemented quality bits above the edge index (the
    bits of a non-negative float order as the floats do), instead of a stable argsort:
    0.33 against 0.68 s for 6.3 million edges."""
    quality = np.asarray(quality, dtype=np.float32) + np.float32(0.0)  # -0.0 becomes +0.0
    if quality.size >= 2**32:
        return np.argsort(-quality, kind="stable")
    keys = (np.uint64(0xFFFFFFFF) - quality.view(np.uint32).astype(np.uint64)) << np.uint64(32)
    keys |= np.arange(quality.size, dtype=np.uint64)
    keys.sort()
    keys &= np.uint64(0xFFFFFFFF)
    return keys.view(np.int64)


def unwrap_along_tree(first, second, order, phase) -> tuple[np.ndarray, np.ndarray]:
    """Multiples of 2π that unwrap ``phase`` along the maximum spanning tree, and the
    connected part of each voxel.

    Parameters
    ----------
    first, second : ndarray of int32
        The two voxels (indices into ``phase``) of each edge.
    order : ndarray of int
        Edge indices, best first.
    phase : ndarray of float64
        Wrapped phase of each voxel.

    Returns
    -------
    steps : ndarray of int64
        ``phase + 2π·steps`` differs by less than π across every tree edge.
    parts : ndarray of int64
        The connected part of each voxel, numbered 0, 1, ... in the order of their roots.
    """
    steps, roots = _grow(first, second, order, phase)
    is_root = np.zeros(phase.size, dtype=bool)
    is_root[roots] = True
    number = np.cumsum(is_root) - 1  # each root's part, without sorting
    return steps, number[roots]


@_compiled.njit(cache=True, nogil=True)
def _find(parent, offset, x):
    """Root of ``x`` and the multiple of 2π of ``x`` relative to it; the path is then
    pointed at the root, each node with its own total."""
    root, total = x, 0
    while parent[root] != root:
        total += offset[root]
        root = parent[root]
    node, rest = x, total
    while parent[node] != node:
        up, own = parent[node], offset[node]
        parent[node], offset[node] = root, rest
        rest -= own
        node = up
    return root, total


@_compiled.njit(cache=True, nogil=True)
def _grow(first, second, order, phase):
    n = phase.size
    parent = np.arange(n).astype(np.int32)
    offset = np.zeros(n, np.int32)
    size = np.ones(n, np.int32)
    joined = 0
    for edge in order:
        a, b = first[edge], second[edge]
        root_a, steps_a = _find(parent, offset, a)
        root_b, steps_b = _find(parent, offset, b)
        if root_a == root_b:
            continue
        # b's region moves by this many turns relative to a's
        turns = np.int32(np.round((phase[a] - phase[b]) / _TWO_PI)) + steps_a - steps_b
        if size[root_a] >= size[root_b]:
            parent[root_b], offset[root_b] = root_a, turns
            size[root_a] += size[root_b]
        else:
            parent[root_a], offset[root_a] = root_b, -turns
            size[root_b] += size[root_a]
        joined += 1
        if joined == n - 1:
            break
    steps = np.empty(n, np.int64)
    roots = np.empty(n, np.int64)
    for x in range(n):
        roots[x], steps[x] = _find(parent, offset, x)
    return steps, roots
