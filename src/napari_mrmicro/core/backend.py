"""Where the arrays live: the CPU (numpy + scipy.fft) or a CUDA GPU (CuPy).

One dispatch for every solver: a function asks :func:`namespace` for the array module of
its device and :func:`fft` for the matching transforms, and writes its algorithm once with
them (the array-API idea, Python Data APIs Consortium 2021; CuPy mirrors NumPy's and
SciPy's interfaces, Okuta et al., LearningSys 2017). Element-wise work between transforms
goes through :func:`for_each_slab`: slabs on a thread pool on the CPU (numpy releases the
GIL), one launch over the whole volume on the GPU.

``device`` is ``"cpu"`` or ``"gpu"``; ``None`` means where the input already lives (a CuPy
array: the GPU), else the default set by :func:`use_device` (``"cpu"``). The GPU needs the
optional ``gpu`` extra (``pip install napari-mrmicro[gpu]``) and a CUDA device; asking for
it without them raises a RuntimeError saying which is missing. Results are handed back
where the input came from: numpy in, numpy out.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import scipy.fft

from napari_mrmicro.core import _slabs
from napari_mrmicro.core.memory import GIB, check_memory

DEVICES = ("cpu", "gpu")

#: Voxels per slab of :func:`for_each_slab` on the CPU: a few arrays of it fit in L2 cache.
SLAB_VOXELS = 2**18
_POOL_PREFIX = "mrmicro-slab"

_default = contextvars.ContextVar("napari_mrmicro_device", default="cpu")


@functools.lru_cache(maxsize=1)
def _cupy():
    """The cupy module when it imports and sees a CUDA device, else the reason why not."""
    try:
        import cupy
    except ImportError as error:
        return f"CuPy is not installed ({error}); install the 'gpu' extra: " \
               "pip install 'napari-mrmicro[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDA driver or runtime missing: CuPy raises its own types
        return f"CuPy found no usable CUDA driver ({error})"
    if count < 1:
        return "CuPy found no CUDA device"
    return cupy


def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device exists."""
    return not isinstance(_cupy(), str)


def check_device(device) -> str:
    """``device`` validated: ``"cpu"`` or ``"gpu"`` (a RuntimeError when the GPU is asked
    for but CuPy or a CUDA device is missing; a ValueError for any other name)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "gpu" and not gpu_available():
        raise RuntimeError(f"device 'gpu' is not available: {_cupy()}")
    return device


def on_gpu(array) -> bool:
    """True for a CuPy array (without importing CuPy when it is not loaded)."""
    return type(array).__module__.split(".")[0] == "cupy"


def resolve(device=None, *arrays) -> str:
    """The device to run on: ``device`` when given (checked), else the GPU when any of
    ``arrays`` is a CuPy array, else the default of :func:`use_device`."""
    if device is None:
        device = "gpu" if any(on_gpu(a) for a in arrays) else _default.get()
    return check_device(device)


@contextlib.contextmanager
def use_device(device):
    """Make ``device`` the default of every call with ``device=None`` inside the block
    (the CLI's ``--device``)."""
    token = _default.set(check_device(device))
    try:
        yield device
    finally:
        _default.reset(token)


def namespace(device: str):
    """The array module of ``device``: numpy, or cupy."""
    return _cupy() if check_device(device) == "gpu" else np


def array_namespace(*arrays):
    """The array module of ``arrays``: cupy when any is a CuPy array, else numpy."""
    return namespace("gpu") if any(on_gpu(a) for a in arrays) else np


def to_device(array, device: str):
    """``array`` on ``device`` (no copy when it is there already)."""
    if check_device(device) == "gpu":
        return _cupy().asarray(array)
    return to_host(array)


def to_host(array) -> np.ndarray:
    """``array`` as a numpy array (copied from the GPU when it lives there)."""
    return array.get() if on_gpu(array) else np.asarray(array)


def _transform(name: str):
    def call(self, x, s=None, axes=None, norm=None, overwrite_x=False, workers=-1):
        options = {"workers": workers} if self.threaded else {}
        return getattr(self.module, name)(x, s=s, axes=axes, norm=norm,
                                          overwrite_x=overwrite_x, **options)
    call.__name__ = name
    return call


def _cosine_transform(name: str):
    def call(self, x, type=2, s=None, axes=None, norm=None, overwrite_x=False, workers=-1):
        options = {"workers": workers} if self.threaded else {}
        return getattr(self.module, name)(x, type=type, s=s, axes=axes, norm=norm,
                                          overwrite_x=overwrite_x, **options)
    call.__name__ = name
    return call


class _Transforms:
    """``fftn``/``ifftn``/``rfftn``/``irfftn``/``dctn``/``idctn`` of one array module, all
    taking scipy.fft's keywords (``workers`` is ignored on the GPU, where cuFFT uses the
    whole device)."""

    def __init__(self, module, threaded: bool):
        self.module, self.threaded = module, threaded

    fftn, ifftn = _transform("fftn"), _transform("ifftn")
    rfftn, irfftn = _transform("rfftn"), _transform("irfftn")
    dctn, idctn = _cosine_transform("dctn"), _cosine_transform("idctn")


class _CpuTransforms(_Transforms):
    """scipy.fft's transforms, with an inverse real transform that runs in place."""

    def irfftn(self, x, s=None, axes=None, norm=None, overwrite_x=False, workers=-1):
        """``scipy.fft.irfftn``; with ``overwrite_x`` a C-contiguous complex input is
        transformed over its leading axes in place (``ifftn``), then along the last axis
        (``irfft``): pocketfft's own multi-axis inverse ignores ``overwrite_x`` and runs the
        leading axes into a second, freshly allocated complex volume (256×256×128 on 2
        cores: 40 ms against 25 ms). The same transforms in the same order; the scaling is
        split per step, exact for power-of-two lengths, else within float rounding."""
        x = np.asarray(x)
        axes = tuple(range(x.ndim)) if axes is None else \
            tuple(a % x.ndim for a in np.atleast_1d(axes))
        leading = [x.shape[a] for a in axes[:-1]]
        if not (overwrite_x and len(axes) > 1 and x.flags.c_contiguous
                and x.dtype in (np.complex64, np.complex128)
                and (s is None or list(s[:-1]) == leading)):
            return scipy.fft.irfftn(x, s=s, axes=axes, norm=norm, overwrite_x=overwrite_x,
                                    workers=workers)
        n = 2 * (x.shape[axes[-1]] - 1) if s is None else s[-1]
        spectrum = scipy.fft.ifftn(x, axes=axes[:-1], norm=norm, overwrite_x=True,
                                   workers=workers)
        return scipy.fft.irfft(spectrum, n=n, axis=axes[-1], norm=norm, workers=workers)


_CPU_FFT = _CpuTransforms(scipy.fft, threaded=True)


def fft(xp) -> _Transforms:
    """The FFTs of array module ``xp`` (scipy.fft for numpy, cupyx.scipy.fft for cupy)."""
    if xp is np:
        return _CPU_FFT
    return _gpu_fft()


@functools.lru_cache(maxsize=1)
def _gpu_fft() -> _Transforms:
    import cupyx.scipy.fft
    return _Transforms(cupyx.scipy.fft, threaded=False)


def device_free_bytes(device: str) -> int:
    """Memory still free on ``device``, in bytes: the host's available memory for
    ``"cpu"``; for ``"gpu"`` the CUDA device's free memory plus what CuPy's memory pool
    holds unused (it hands that back to new arrays first)."""
    if check_device(device) == "cpu":
        from napari_mrmicro.core.memory import available_memory_bytes
        return available_memory_bytes()
    cupy = _cupy()
    free, _ = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    return int(free + pool.total_bytes() - pool.used_bytes())


def check_device_memory(needed_bytes: int, what: str, device: str,
                        advice: str = "a smaller problem") -> None:
    """Refuse (MemoryError naming ``what``, both figures and ``advice``) when
    ``needed_bytes`` will not fit in ``device``'s free memory: the CPU guard of
    :mod:`~napari_mrmicro.core.memory`, or the same rule against the GPU's free memory."""
    if check_device(device) == "cpu":
        check_memory(needed_bytes, what, advice=advice)
        return
    free = device_free_bytes("gpu")
    if needed_bytes > free:
        raise MemoryError(f"{what} needs about {needed_bytes / GIB:.2f} GiB but only "
                          f"{free / GIB:.2f} GiB of GPU memory is free; use {advice}, or "
                          "device='cpu'")


def check_memory_on(needed_bytes: int, what: str, device: str,
                    advice: str = "a smaller problem") -> None:
    """The host's guard always (inputs and results are numpy arrays wherever the work
    runs), and :func:`check_device_memory` of the GPU too when ``device`` is the GPU."""
    check_memory(needed_bytes, what, advice=advice)
    if check_device(device) == "gpu":
        check_device_memory(needed_bytes, what, "gpu", advice)


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per core count: iterative solvers call :func:`for_each_slab`
    several times per iteration, so threads are not started anew each time."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_POOL_PREFIX)


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_pool.cache_clear)


def slab_planes(plane_voxels: int) -> int:
    """Planes of ``plane_voxels`` each in one slab of :func:`for_each_slab`."""
    return _slabs.slab_size(plane_voxels, SLAB_VOXELS)


def for_each_slab(xp, work, n: int, plane_voxels: int) -> None:
    """Run ``work(start, stop)`` over ``n`` planes: slabs of :data:`SLAB_VOXELS` on all
    cores for numpy (each slab stays in cache), one call ``work(0, n)`` for cupy (one
    kernel launch per operation over the whole volume). Slabs must not write what other
    slabs read. Called from inside a slab, it runs serially (no nested waits on the pool).
    """
    size = slab_planes(plane_voxels)
    if xp is not np or size >= n or _serial():
        work(0, n)
        return
    _run_ranges(work, [(start, min(n, start + size)) for start in range(0, n, size)])


def all_finite(x: np.ndarray) -> bool:
    """True when every element of the numpy array ``x`` is finite, checked slab by slab
    on all cores."""
    if x.ndim == 0 or x.shape[0] < 2:
        return bool(np.all(np.isfinite(x)))
    bad = []

    def work(start, stop):
        if not np.isfinite(x[start:stop]).all():
            bad.append(start)

    for_each_slab(np, work, x.shape[0], math.prod(x.shape[1:]))
    return not bad


def plane_runs(n: int, per_core: int = 4) -> list[tuple[int, int]]:
    """``n`` planes cut into ``per_core`` runs of consecutive planes per core (at most
    ``n`` runs): the ``(start, stop)`` bounds for :func:`for_each_run`."""
    runs = max(1, min(n, per_core * _slabs.core_count()))
    return [(r * n // runs, (r + 1) * n // runs) for r in range(runs)]


def for_each_run(work, bounds) -> None:
    """``work(start, stop)`` for each of ``bounds`` on all cores (the pool of
    :func:`for_each_slab`), waiting for all: for CPU loops that carry state from plane to
    plane within a run (compiled loops that release the GIL)."""
    _run_ranges(work, bounds)


def _serial() -> bool:
    """One core, or called from inside a slab (no nested waits on the pool)."""
    return _slabs.core_count() == 1 or threading.current_thread().name.startswith(_POOL_PREFIX)


def _run_ranges(work, bounds) -> None:
    """``work(start, stop)`` for each of ``bounds`` on the pool (one after another when
    :func:`_serial`), waiting for all; an exception stops the rest and is raised."""
    if len(bounds) < 2 or _serial():
        for start, stop in bounds:
            work(start, stop)
        return
    futures = [_pool(_slabs.core_count()).submit(work, start, stop) for start, stop in bounds]
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


def roll_into(x, shifts: dict, out, func=None):
    """``out[...] = func(np.roll(x, shift, axis) for each axis: shift in shifts)`` in one
    pass, without the intermediate copies of ``np.roll``: each slab of the first axis (on
    all cores) is copied in at most two contiguous pieces per rolled axis. ``func(a, out=)``
    is an element-wise ufunc such as ``abs`` (default: a plain copy)."""
    xp = array_namespace(x)
    n0 = x.shape[0]
    s0 = shifts.get(0, 0) % n0
    pieces = []
    for axis, shift in shifts.items():
        if axis % x.ndim == 0:
            continue
        n = x.shape[axis]
        s = shift % n
        pieces.append([(axis, slice(s, n), slice(0, n - s)),
                       (axis, slice(0, s), slice(n - s, n))])

    def work(start, stop):
        for lo, hi in ((start, min(stop, s0)), (max(start, s0), stop)):
            if lo >= hi:
                continue
            first = (lo - s0) % n0
            for combo in itertools.product(*pieces):
                dst = [slice(lo, hi)] + [slice(None)] * (x.ndim - 1)
                src = [slice(first, first + hi - lo)] + [slice(None)] * (x.ndim - 1)
                for axis, d, s in combo:
                    dst[axis], src[axis] = d, s
                if func is None:
                    out[tuple(dst)] = x[tuple(src)]
                else:
                    func(x[tuple(src)], out=out[tuple(dst)])

    for_each_slab(xp, work, n0, math.prod(x.shape[1:]))
    return out


def periodic_difference(x, axis: int, start: int, stop: int, out, backward: bool = False):
    """Periodic difference of ``x`` along ``axis`` (>= 0) on the planes ``start:stop`` of
    its first axis, written to ``out`` (the slab's shape): forward ``x[i+1] − x[i]``, or
    backward ``x[i−1] − x[i]``. Along the first axis the neighbour plane outside the slab is
    read from ``x`` (wrapping round), so slabs can be computed in parallel."""
    n = x.shape[axis]
    if axis == 0:
        if backward:
            out[1:] = x[start:stop - 1]
            out[1:] -= x[start + 1:stop]
            out[0] = x[(start - 1) % n]
            out[0] -= x[start]
        else:
            out[:-1] = x[start + 1:stop]
            out[:-1] -= x[start:stop - 1]
            out[-1] = x[stop % n]
            out[-1] -= x[stop - 1]
        return out
    slab = x[start:stop]

    def cut(part):
        return tuple(part if a == axis else slice(None) for a in range(x.ndim))

    ahead, behind = cut(slice(1, None)), cut(slice(None, -1))
    first, last = cut(slice(0, 1)), cut(slice(-1, None))
    if backward:
        out[ahead] = slab[behind]
        out[ahead] -= slab[ahead]
        out[first] = slab[last]
        out[first] -= slab[first]
    else:
        out[behind] = slab[ahead]
        out[behind] -= slab[behind]
        out[last] = slab[first]
        out[last] -= slab[last]
    return out

