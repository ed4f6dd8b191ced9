"""An object sampled finer than the acquisition matrix, seen through the matrix.

A specimen on a grid ``f`` times finer than the matrix along an axis is brought to the
matrix by keeping, of its DFT along that axis, only the ``m`` acquired frequencies:
partial volume and Gibbs ringing then arise as in real data (the finite sampling of
k-space is the only low-pass; Haacke et al., *Magnetic Resonance Imaging: Physical
Principles and Sequence Design*, 1999, ch. 12). The image-domain counterparts live here
too: block means (what a voxel averages) and linear upsampling (a smooth map on the fine
grid).
"""

from __future__ import annotations

import itertools

import numpy as np

from napari_mrmicro.core import backend

from napari_mrmicro.core._slabs import for_each_slab, slab_size


def along(axis: int, ndim: int = 3) -> tuple:
    """Shape that broadcasts a 1-D vector along ``axis`` of an ``ndim`` array."""
    return tuple(-1 if i == axis else 1 for i in range(ndim))


def keep_frequencies(spectrum: np.ndarray, axis: int, n: int, m: int, f: int,
                     half: bool = False, scale: complex = 1.0, out=None) -> np.ndarray:
    """The ``m`` acquired frequencies of an ``n = f·m``-point DFT along ``axis``.

    Parameters
    ----------
    spectrum : ndarray
        ``scipy.fft.fft`` (FFT order) of the fine samples along ``axis``, or with
        ``half=True`` their ``rfft`` (then ``X[−q] = conj(X[q])``).
    n, m, f : int
        Fine samples, acquired samples, and their ratio.
    scale : complex
        Extra factor applied on the way.
    out : ndarray of complex64, optional
        Where to write (``m`` long along ``axis``).

    Returns
    -------
    ndarray of complex64
        Frequencies ``q = −m//2 … m − m//2 − 1`` (DC at ``m // 2``), relative to the
        centre of image voxel ``m // 2`` (fine coordinate ``f·(m//2) + (f − 1)/2``) and
        scaled by ``√m / n``: ortho-normalised for the matrix, and a uniform region keeps
        its value in the image.
    """
    xp = backend.array_namespace(spectrum)  # a CuPy spectrum stays on the GPU
    shape = list(spectrum.shape)
    shape[axis] = m
    if out is None:
        out = xp.empty(shape, dtype=np.complex64)
    q = np.arange(m) - m // 2
    centre = f * (m // 2) + (f - 1) / 2
    factor = xp.asarray((np.exp(2j * np.pi * q * centre / n) * (np.sqrt(m) / n * scale)).astype(
        np.complex64).reshape(along(axis, spectrum.ndim)))
    h = m // 2

    def cut(array, start, stop, step=1):
        return array[(slice(None),) * axis + (slice(start, stop, step),)]

    negative, positive = cut(out, 0, h), cut(out, h, m)
    if half:  # X[−q] = conj(X[q]) along a real line
        xp.conjugate(cut(spectrum, h, 0, -1), out=negative)
        negative *= cut(factor, 0, h)
    else:
        xp.multiply(cut(spectrum, n - h, n), cut(factor, 0, h), out=negative)
    xp.multiply(cut(spectrum, 0, m - h), cut(factor, h, m), out=positive)
    return out


def block_mean(volume: np.ndarray, factors, table: np.ndarray | None = None) -> np.ndarray:
    """Mean over blocks of ``factors`` fine voxels (float32).

    With ``table`` (shape ``(L,)`` or ``(P, L)`` for integer volumes below ``L``), the
    mean of ``table[..., volume]``: properties looked up per label without building
    their fine maps; the output then has the table's leading axis. Sums one strided
    sub-grid per offset in the block, slab by slab on all cores, instead of a slow
    reduction over short axes.
    """
    if any(n % f for n, f in zip(volume.shape, factors)):
        raise ValueError(f"block_mean: shape {volume.shape} is not a multiple of {factors}")
    shape = tuple(n // f for n, f in zip(volume.shape, factors))
    tables = None if table is None else np.asarray(table, dtype=np.float32).reshape(
        -1, np.shape(table)[-1])
    out = np.zeros((1 if tables is None else len(tables),) + shape, dtype=np.float32)
    fz = factors[0]

    def work(z0, z1):
        for offset in itertools.product(*(range(f) for f in factors)):
            part = volume[(slice(z0 * fz + offset[0], z1 * fz, fz),)
                          + tuple(slice(o, None, f) for o, f in zip(offset[1:], factors[1:]))]
            if tables is None:
                out[0, z0:z1] += part
                continue
            part = np.ascontiguousarray(part)
            for values, target in zip(tables, out[:, z0:z1]):
                target += np.take(values, part)
        out[:, z0:z1] *= np.float32(1.0 / np.prod(factors))

    for_each_slab(work, shape[0], slab_size(int(np.prod(shape[1:])), 2**18))
    return out[0] if table is None or np.ndim(table) == 1 else out


def _interpolate(coarse: np.ndarray, axis: int, f: int, out: np.ndarray, start: int = 0,
                 stop: int | None = None) -> None:
    """Write coarse samples ``start:stop`` along ``axis``, linearly interpolated ``f``
    times finer, into ``out`` (``f·(stop − start)`` long there); values beyond the
    outermost coarse centres are held."""
    n = coarse.shape[axis]
    stop = n if stop is None else stop

    def cut(array, a, b, step=1):
        return array[(slice(None),) * axis + (slice(a, b, step),)]

    centre = cut(coarse, start, stop)
    lower = cut(coarse, max(start - 1, 0), stop - 1)  # the previous sample, held at 0
    upper = cut(coarse, start + 1, min(stop + 1, n))  # the next sample, held at n − 1
    for j in range(f):
        offset = (j + 0.5) / f - 0.5
        target = cut(out, j, None, f)
        if offset == 0:
            target[...] = centre
            continue
        if offset < 0:
            neighbour, dst, src = lower, cut(target, 1 if start == 0 else 0, None), \
                cut(centre, 1 if start == 0 else 0, None)
            if start == 0:
                cut(target, 0, 1)[...] = cut(centre, 0, 1)
        else:
            last = stop - start - (1 if stop == n else 0)
            neighbour, dst, src = upper, cut(target, 0, last), cut(centre, 0, last)
            if stop == n:
                cut(target, last, None)[...] = cut(centre, last, None)
        np.subtract(neighbour, src, out=dst)
        dst *= np.float32(abs(offset))
        dst += src


def upsample_linear(volume: np.ndarray, factors) -> np.ndarray:
    """Linear interpolation of a cell-centred grid onto a grid ``factors`` times finer.

    Fine voxel ``j`` of coarse voxel ``i`` sits at coarse coordinate ``i + (j + ½)/f − ½``;
    values beyond the outermost coarse centres are held constant. Slab by slab on all
    cores: x and y first, then z.
    """
    volume = np.asarray(volume, dtype=np.float32)
    (nz, ny, nx), (fz, fy, fx) = volume.shape, factors
    plane = np.empty((nz, ny * fy, nx * fx), dtype=np.float32)

    def in_plane(z0, z1):
        wide = np.empty((z1 - z0, ny, nx * fx), dtype=np.float32)
        _interpolate(volume[z0:z1], 2, fx, wide)
        _interpolate(wide, 1, fy, plane[z0:z1])

    out = np.empty((nz * fz,) + plane.shape[1:], dtype=np.float32)

    def across(z0, z1):
        _interpolate(plane, 0, fz, out[z0 * fz:z1 * fz], z0, z1)

    size = slab_size(plane[0].size, 2**19)
    for_each_slab(in_plane, nz, size)
    for_each_slab(across, nz, size)
    return out
