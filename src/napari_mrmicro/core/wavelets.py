"""Orthonormal discrete wavelet transform (periodic), the sparsifying transform of
compressed sensing.

Daubechies' compactly supported orthonormal wavelets (Daubechies, Commun Pure Appl Math
1988;41:909): ``"haar"`` (2 taps), ``"db2"`` (4) and ``"db4"`` (8). The N-D transform is
Mallat's pyramid (IEEE Trans Pattern Anal Mach Intell 1989;11:674): each level filters every
axis of the current approximation block and keeps the coefficients packed in an array of the
input's shape, the approximation in the low corner. With periodic extension the transform is
orthogonal, so the inverse is the adjoint and norms are kept exactly (up to rounding).
"""

from __future__ import annotations

import math

import numpy as np

from napari_mrmicro.core import backend

_SQRT3 = math.sqrt(3.0)
#: Scaling (low-pass synthesis) filters h; the wavelet filter is g[n] = (−1)^n h[L−1−n].
FILTERS = {
    "haar": np.array([1.0, 1.0]) / math.sqrt(2.0),
    "db2": np.array([1 + _SQRT3, 3 + _SQRT3, 3 - _SQRT3, 1 - _SQRT3]) / (4 * math.sqrt(2.0)),
    "db4": np.array([0.23037781330885523, 0.71484657055254153, 0.63088076792959036,
                     -0.027983769416983849, -0.18703481171888114, 0.030841381835986965,
                     0.032883011666982945, -0.010597401784997278]),
}
WAVELETS = tuple(FILTERS)


def _filters(wavelet: str, dtype):
    if wavelet not in FILTERS:
        raise ValueError(f"wavelet: unknown wavelet {wavelet!r}; one of {WAVELETS}")
    h = FILTERS[wavelet]
    g = h[::-1] * (-1.0) ** np.arange(len(h))
    real = np.finfo(dtype).dtype
    return h.astype(real), g.astype(real)


def max_levels(shape, wavelet: str = "db4") -> int:
    """Most levels every axis longer than 1 allows: each level halves an even length, and the
    coarsest block keeps at least as many samples as the filter has taps."""
    taps = len(FILTERS[wavelet]) if wavelet in FILTERS else 2
    levels = []
    for n in shape:
        if n == 1:
            continue
        level = 0
        while n % 2 == 0 and n // 2 >= taps:
            n //= 2
            level += 1
        levels.append(level)
    return min(levels) if levels else 0


def _analysis(block, axis, h, g, tmp):
    """One level along ``axis``: block -> [approximation | detail], in place (numpy or
    CuPy arrays)."""
    xp = backend.array_namespace(block)
    x = xp.moveaxis(block, axis, 0)
    m, p = x.shape[0] // 2, len(h) // 2
    even, odd = x[0::2], x[1::2]
    if p > 1:
        even = xp.concatenate([even, even[:p - 1]])
        odd = xp.concatenate([odd, odd[:p - 1]])
    else:
        even, odd = even.copy(), odd.copy()
    t = xp.moveaxis(tmp, axis, 0)[:m]
    out_c, out_d = x[:m], x[m:]
    xp.multiply(even[:m], h[0], out=out_c)
    xp.multiply(even[:m], g[0], out=out_d)
    for j in range(p):
        for phase, src in ((0, even), (1, odd)):
            if j == 0 and phase == 0:
                continue
            view = src[j:j + m]
            xp.multiply(view, h[2 * j + phase], out=t)
            out_c += t
            xp.multiply(view, g[2 * j + phase], out=t)
            out_d += t


def _synthesis(block, axis, h, g, tmp):
    """Inverse of :func:`_analysis` (its adjoint), in place."""
    xp = backend.array_namespace(block)
    x = xp.moveaxis(block, axis, 0)
    m, p = x.shape[0] // 2, len(h) // 2
    c, d = x[:m], x[m:]
    if p > 1:  # x[2k'+φ] = Σ_j h[2j+φ] c[k'−j] + g[2j+φ] d[k'−j]
        c = xp.concatenate([c[m - p + 1:], c])
        d = xp.concatenate([d[m - p + 1:], d])
    else:
        c, d = c.copy(), d.copy()
    t = xp.moveaxis(tmp, axis, 0)[:m]
    for phase in (0, 1):
        out = x[phase::2]
        for j in range(p):
            lo, hi = c[p - 1 - j:p - 1 - j + m], d[p - 1 - j:p - 1 - j + m]
            if j == 0:
                xp.multiply(lo, h[phase], out=out)
            else:
                xp.multiply(lo, h[2 * j + phase], out=t)
                out += t
            xp.multiply(hi, g[2 * j + phase], out=t)
            out += t


def _haar_level(block, axes, inverse: bool):
    """One Haar level over all ``axes`` of ``block`` at once, in place: 2×…×2 butterflies
    (a, b) -> (a + b, a − b)/√2 on a reshaped view, then one transposing copy into the packed
    layout — fewer passes than filtering axis by axis. Both passes run slab by slab along
    the first axis on all cores (:func:`~napari_mrmicro.core.backend.for_each_slab`)."""
    xp = backend.array_namespace(block)
    split, packed, perm, pairs = [], [], [], []
    for a, n in enumerate(block.shape):
        if a in axes:
            perm += [len(split) + 1, len(split)]
            pairs.append(len(split) + 1)
            split += [n // 2, 2]
            packed += [2, n // 2]
        else:
            perm.append(len(split))
            split.append(n)
            packed.append(n)
    # views of ``block`` in the butterfly (split) layout; their first axis is cut into slabs
    inverse_perm = tuple(int(a) for a in np.argsort(perm))
    source = block.reshape(packed).transpose(inverse_perm) if inverse \
        else block.reshape(split)
    v = xp.empty(split, dtype=block.dtype)
    scale = np.finfo(v.dtype).dtype.type(0.5 ** (len(pairs) / 2))  # a scalar, as CuPy needs
    plane = math.prod(split[1:])

    def butterflies(start, stop):
        part = v[start:stop]
        part[...] = source[start:stop]
        for p in pairs:
            first = part[(slice(None),) * p + (0,)]
            second = part[(slice(None),) * p + (1,)]
            total = first + second
            xp.subtract(first, second, out=second)
            first[...] = total
        part *= scale

    backend.for_each_slab(xp, butterflies, split[0], plane)
    if inverse:
        target = block.reshape(split)

        def store(start, stop):
            target[start:stop] = v[start:stop]
    else:
        target, packed_v = block.reshape(packed), v.transpose(perm)
        # with the first axis transformed, packed axis 0 is the half and axis 1 the pair
        lead = (slice(None),) if 0 in axes else ()

        def store(start, stop):
            target[lead + (slice(start, stop),)] = packed_v[lead + (slice(start, stop),)]
    backend.for_each_slab(xp, store, split[0], plane)


def _check(x, axes, levels, wavelet, func):
    axes = tuple(sorted({int(a) % x.ndim for a in axes}))
    axes = tuple(a for a in axes if x.shape[a] > 1)
    limit = max_levels([x.shape[a] for a in axes], wavelet)
    if int(levels) != levels or not 1 <= levels <= limit:
        raise ValueError(f"{func}: levels must be in [1, {limit}] for shape "
                         f"{tuple(x.shape[a] for a in axes)} with {wavelet!r}, got {levels!r}")
    return axes, int(levels)


def _working_copy(x, overwrite_x: bool):
    """``x`` itself when it may be overwritten and is C-contiguous, else a copy made slab by
    slab on all cores (:func:`~napari_mrmicro.core.backend.roll_into` with no shift)."""
    if overwrite_x and x.flags.c_contiguous:
        return x
    return backend.roll_into(x, {}, backend.array_namespace(x).empty(x.shape, x.dtype))


def wavelet_forward(x, wavelet: str = "db4", levels: int = 3, axes=(-3, -2, -1),
                    overwrite_x: bool = False) -> np.ndarray:
    """Packed orthonormal DWT of ``x`` along ``axes`` (an array of the same shape, on the
    device of ``x``: ``x`` itself with ``overwrite_x=True`` when it is C-contiguous, else a
    new one)."""
    xp = backend.array_namespace(x)
    out = _working_copy(x, overwrite_x)
    axes, levels = _check(out, axes, levels, wavelet, "wavelet_forward")
    h, g = _filters(wavelet, out.dtype)
    tmp = None if wavelet == "haar" else xp.empty_like(out)
    for level in range(levels):
        corner = tuple(slice(0, n >> level) if a in axes else slice(None)
                       for a, n in enumerate(out.shape))
        if tmp is None:
            _haar_level(out[corner], axes, inverse=False)
            continue
        for axis in axes:
            _analysis(out[corner], axis, h, g, tmp[corner])
    return out


def wavelet_inverse(coefficients, wavelet: str = "db4", levels: int = 3,
                    axes=(-3, -2, -1), overwrite_x: bool = False) -> np.ndarray:
    """Inverse of :func:`wavelet_forward` (on the device of ``coefficients``; in their memory
    with ``overwrite_x=True`` when they are C-contiguous, else a new array)."""
    xp = backend.array_namespace(coefficients)
    out = _working_copy(coefficients, overwrite_x)
    axes, levels = _check(out, axes, levels, wavelet, "wavelet_inverse")
    h, g = _filters(wavelet, out.dtype)
    tmp = None if wavelet == "haar" else xp.empty_like(out)
    for level in reversed(range(levels)):
        corner = tuple(slice(0, n >> level) if a in axes else slice(None)
                       for a, n in enumerate(out.shape))
        if tmp is None:
            _haar_level(out[corner], axes, inverse=True)
            continue
        for axis in reversed(axes):
            _synthesis(out[corner], axis, h, g, tmp[corner])
    return out


def approximation_slices(shape, levels: int, axes=(-3, -2, -1)) -> tuple:
    """Index of the coarsest approximation block in the packed coefficients."""
    ndim = len(shape)
    axes = {int(a) % ndim for a in axes if shape[int(a) % ndim] > 1}
    return tuple(slice(0, n >> levels) if a in axes else slice(None)
                 for a, n in enumerate(shape))
