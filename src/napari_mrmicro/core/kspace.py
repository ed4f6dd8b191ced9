"""k-space data with the protocol that sampled it, and the centred FFT convention.

Convention (DESIGN.md): DC at index ``N // 2`` on every axis; the image is the centred
inverse FFT with ``norm="ortho"``, so white noise keeps its standard deviation.

The centring is done without ``fftshift`` copies. With ``c = N // 2`` on an axis,

    x[m] = N^-½ Σ_k X[k] e^{2πi (k−c)(m−c)/N}
         = e^{2πi (c² − c·m)/N} · N^-½ Σ_k (X[k] e^{−2πi c·k/N}) e^{2πi k·m/N},

so the centred transform is a plain FFT between two separable unit-modulus ramps (±1 on
even axes), applied slab by slab while the data are in cache. The magnitude needs no output
ramp at all: ``|x| = fftshift(|ifftn(X)|)``, see :func:`centered_ifft_magnitude`.

The transforms run where the data live (:mod:`~napari_mrmicro.core.backend`): numpy arrays
on the CPU with scipy.fft, CuPy arrays on the GPU with cuFFT, by the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core.acquisition import Acquisition


@dataclass
class KSpace:
    """Sampled k-space.

    Attributes
    ----------
    data : ndarray of complex64
        ``(echo, z, y, x)``, or ``(coil, echo, z, y, x)`` when ``coil_axis == 0``.
        2-D acquisitions have ``z == 1`` (or one entry per slice for multi-slice, with
        ``multislice=True``: then the z axis is image space, not k-space).
    acquisition : Acquisition
    sampled : ndarray of bool, optional
        ``(z, y, x)`` mask of the positions actually acquired (undersampling); None
        means fully sampled.
    coil_axis : int or None
    multislice : bool
        2-D multi-slice: the z axis holds slices (image space), only y and x are k-space.
    truth : dict
        Ground-truth maps of a simulation (``"proton_density"``, ``"chi_ppm"``,
        ``"field_ppm"``, ``"labels"``, ...) on the image grid.
    echo_position : float or None
        Fraction of the acquired readout that precedes the echo (k = 0), as ParaVision's
        ``PVM_EchoPosition`` / 100: 0.5 for a symmetric echo, < 0.5 for an asymmetric
        (partial) echo whose missing samples lie at the start of the readout. None when
        the source does not say.
    trajectory : ndarray of float32 or None
        Non-Cartesian sampling: ``(readouts, samples, ndim)`` k-space positions in cycles
        per field of view (the grid index minus ``N // 2``, so ``[-N/2, N/2)`` spans the
        Cartesian grid ``acquisition.matrix``), last axis in image-axis order
        (``(y, x)`` or ``(z, y, x)``). ``data`` is then ``(echo, readouts, samples)`` (a
        coil axis first when ``coil_axis == 0``). None for Cartesian k-space.
    density : ndarray of float32 or None
        Density-compensation weights ``(readouts, samples)`` for a trajectory, when the
        scanner or a previous step gives them.
    """

    data: np.ndarray
    acquisition: Acquisition
    sampled: np.ndarray | None = None
    coil_axis: int | None = None
    multislice: bool = False
    truth: dict = field(default_factory=dict)
    echo_position: float | None = None
    trajectory: np.ndarray | None = None
    density: np.ndarray | None = None

    @property
    def cartesian(self) -> bool:
        """True when the samples lie on the Cartesian grid (no trajectory)."""
        return self.trajectory is None

    @property
    def kspace_axes(self) -> tuple:
        """Axes of ``data`` that are k-space (negative indices)."""
        return (-2, -1) if self.multislice else (-3, -2, -1)


def _normalize_axes(ndim: int, axes) -> tuple:
    axes = [int(a) for a in np.atleast_1d(axes)]
    if not axes or any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"centred FFT: axes {tuple(axes)} out of range for a {ndim}-D array")
    return tuple(sorted({a % ndim for a in axes}))


def _ramp(n: int, index_term, real_dtype) -> np.ndarray:
    """exp(2πi r/N) for the integers r = ``index_term`` mod N; exactly ±1 when all 2r ≡ 0."""
    r = np.mod(index_term, n)
    if np.all((2 * r) % n == 0):
        return np.where(r == 0, 1.0, -1.0).astype(real_dtype)
    return np.exp(2j * np.pi * r / n).astype(np.result_type(real_dtype, np.complex64))


def _centering_ramps(shape, axes, inverse: bool, real_dtype):
    """Per-axis input and output ramps of the centred (inverse) FFT along ``axes``."""
    pre, post = {}, {}
    for axis in axes:
        n = shape[axis]
        if n == 1:
            continue
        c = n // 2
        k = np.arange(n, dtype=np.int64)
        # inverse: pre e^{-2πi ck/N}, post e^{2πi (c² - cm)/N}; forward: the conjugates.
        pre[axis] = _ramp(n, -c * k if inverse else c * k, real_dtype)
        post[axis] = _ramp(n, c * c - c * k if inverse else c * k - c * c, real_dtype)
    return pre, post


def multiply_along_axes(array: np.ndarray, factors: dict, out: np.ndarray) -> np.ndarray:
    """``out = array · Π_axis factors[axis]`` (1-D vectors broadcast along their axis).

    The factors of the last two axes are combined into one small table; the leading axes
    are visited slab by slab, so the whole product is one pass through memory and needs no
    full-size temporary; the slabs run on all cores, each with one multiplication by the
    slab's factor (its first-axis values times the table; slabs whose values repeat, as
    the ±1 centring ramps do, share it). ``out`` may be ``array`` (in place).
    On the GPU (CuPy arrays) the
    factors are broadcast over the whole array instead, one launch per axis.
    """
    xp = backend.array_namespace(array)
    if xp is not np:
        dtype = np.result_type(*factors.values(), np.float32) if factors else np.float32
        first = True
        for axis, vector in factors.items():
            shape = [1] * array.ndim
            shape[axis] = -1
            factor = xp.asarray(vector.astype(dtype, copy=False)).reshape(shape)
            xp.multiply(array if first else out, factor, out=out)
            first = False
        if first and out is not array:
            out[...] = array
        return out
    ndim = array.ndim
    inner_axes = tuple(range(max(ndim - 2, 0), ndim))
    table = np.ones([array.shape[a] if a in factors else 1 for a in inner_axes],
                    dtype=np.result_type(*[factors[a] for a in inner_axes if a in factors],
                                         np.float32) if factors else np.float32)
    for a in inner_axes:
        if a in factors:
            shape = [1] * len(inner_axes)
            shape[a - inner_axes[0]] = -1
            table = table * factors[a].reshape(shape)
    outer = [a for a in factors if a not in inner_axes]
    if not outer:
        np.multiply(array, table, out=out)
        return out
    lead = array.shape[:ndim - 2]

    slab_factors = {}  # the product of all factors over a slab, by its first-axis values
    plane = math.prod(array.shape[1:])
    chunk = backend.slab_planes(plane)  # bounds the factor when one thread runs it all

    def multiply(start, stop, rest):
        scalar = 1.0
        for a in outer:
            if a:
                scalar = scalar * factors[a][rest[a - 1]]
        values = (factors[0][start:stop] if 0 in factors
                  else np.ones(stop - start, table.dtype)) * scalar
        key = values.tobytes()
        factor = slab_factors.get(key)
        if factor is None:  # ±1 ramps repeat: slabs of one length share their factor
            factor = np.empty((len(values),) + table.shape, np.result_type(values, table))
            for i, value in enumerate(values):
                np.multiply(table, value, out=factor[i])
            if len(slab_factors) >= 2:
                slab_factors.clear()
            slab_factors[key] = factor
        index = (slice(start, stop),) + rest
        np.multiply(array[index], factor, out=out[index])

    def work(start, stop):
        for first in range(start, stop, chunk):
            for rest in np.ndindex(*lead[1:]):
                multiply(first, min(stop, first + chunk), rest)

    backend.for_each_slab(np, work, lead[0], plane)
    return out


def _as_complex(data, func: str) -> np.ndarray:
    x = data if backend.on_gpu(data) else np.asarray(data)
    if np.iscomplexobj(x):
        return x
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{func}: needs a numeric array, got dtype {x.dtype}")
    return x.astype(np.complex128 if x.dtype == np.float64 else np.complex64)


def _centred(data, axes, workers, overwrite_x, inverse):
    func = "centered_ifft" if inverse else "centered_fft"
    x = _as_complex(data, func)
    copied = x is not data
    axes = _normalize_axes(x.ndim, axes)
    real_dtype = np.finfo(x.dtype).dtype
    pre, post = _centering_ramps(x.shape, axes, inverse, real_dtype)
    xp = backend.array_namespace(x)
    out = x if (overwrite_x or copied) else xp.empty_like(x)
    multiply_along_axes(x, pre, out)
    fft = backend.fft(xp)
    transform = fft.ifftn if inverse else fft.fftn
    out = transform(out, axes=axes, norm="ortho", workers=workers, overwrite_x=True)
    return multiply_along_axes(out, post, out)


def centered_fft(image, axes=(-3, -2, -1), workers: int = -1, overwrite_x: bool = False):
    """Centred forward FFT, ``norm="ortho"``: image (centre at N//2) -> k-space (DC at N//2).

    ``overwrite_x=True`` lets the transform reuse a complex input's memory.
    """
    return _centred(image, axes, workers, overwrite_x, inverse=False)


def centered_ifft(kspace, axes=(-3, -2, -1), workers: int = -1, overwrite_x: bool = False):
    """Centred inverse FFT, ``norm="ortho"``: k-space (DC at N//2) -> image.

    ``overwrite_x=True`` lets the transform reuse a complex input's memory.
    """
    return _centred(kspace, axes, workers, overwrite_x, inverse=True)


def centered_ifft_magnitude(kspace, axes=(-3, -2, -1), workers: int = -1,
                            overwrite_x: bool = False) -> np.ndarray:
    """``|centered_ifft(kspace)|`` as float32 (float64 for complex128 input), faster.

    The output ramp of the centred transform has unit modulus and its input ramp only moves
    the image by ``N // 2`` along each axis, so the magnitude is ``|ifftn(X)|`` rolled by
    ``N // 2`` (``fftshift``); no ramp pass over the data. On the CPU, when the transformed
    axes are the trailing ones (``(z, y, x)``, ``(echo, z, y, x)``, ``(slice, y, x)`` with
    ``axes=(-2, -1)``), all but the last axis are transformed (in the input's memory with
    ``overwrite_x=True``, else out of place, as a bare ``ifftn``), then slab by slab on all
    cores the last axis is transformed and the rolled modulus written into the result while
    the slab is in cache: the volume is read from memory once fewer than by ``ifftn`` and
    a separate magnitude pass (on a 16-core machine such a pass cost about as much as the
    transform, benchmarks/README.md). Otherwise, and on the GPU: ``ifftn``, then the rolled
    modulus (:func:`backend.roll_into`).
    """
    x = _as_complex(kspace, "centered_ifft_magnitude")
    axes = _normalize_axes(x.ndim, axes)
    xp = backend.array_namespace(x)
    fft = backend.fft(xp)
    overwrite_x = overwrite_x or x is not kspace
    shifts = {axis: x.shape[axis] // 2 for axis in axes}
    out = xp.empty(x.shape, dtype=np.finfo(x.dtype).dtype)
    if xp is not np or len(axes) < 2 or axes != tuple(range(x.ndim - len(axes), x.ndim)):
        y = fft.ifftn(x, axes=axes, norm="ortho", workers=workers, overwrite_x=overwrite_x)
        del x
        return backend.roll_into(y, shifts, out, xp.abs)
    y = fft.ifftn(x, axes=axes[:-1], norm="ortho", workers=workers, overwrite_x=overwrite_x)
    del x
    _last_axis_magnitude(np.ascontiguousarray(y), axes[0], shifts, out)
    return out


def _last_axis_magnitude(y, first: int, shifts: dict, out) -> None:
    """``out = roll(|ifft(y, axis=-1, norm="ortho")|, shifts)`` for C-contiguous ``y``
    whose transformed axes run from ``first`` to the last, slab by slab on all cores; the
    last-axis transform is done in ``y``'s memory. The axes up to ``first`` are flattened
    to one axis of planes; ``first``'s roll maps each run of planes within one volume to a
    run of planes of ``out``."""
    n, shift = y.shape[first], shifts[first]
    rest = y.shape[first + 1:]
    planes = y.reshape((-1,) + rest)
    result = out.reshape(planes.shape)
    inner = {axis - first: s for axis, s in shifts.items() if axis > first}

    def work(start, stop):
        scipy.fft.ifft(planes[start:stop], axis=-1, norm="ortho", workers=1, overwrite_x=True)
        p = start
        while p < stop:
            volume, i = divmod(p, n)
            end = min(stop, volume * n + (n - shift if i < n - shift else n))
            to = volume * n + (i + shift) % n
            backend.roll_into(planes[p:end], inner, result[to:to + end - p], np.abs)
            p = end

    backend.for_each_slab(np, work, planes.shape[0], math.prod(rest))

