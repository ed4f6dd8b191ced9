"""A numpy-backed stand-in for CuPy, strict about where arrays live, for running the GPU
branches of the array-namespace dispatch on machines without a CUDA device.

Its arrays are not numpy arrays: like CuPy's they refuse implicit conversion to numpy
(``np.asarray``), refuse to mix with numpy arrays in one operation (a TypeError naming the
operation), come back to the host only through ``.get()``, and are copied when created
from host data (``asarray`` of a numpy array is a transfer, not a view). numpy functions
and ufuncs called on them run on the "device" (CuPy's ``__array_function__`` /
``__array_ufunc__``). So a GPU branch that leaks a device array into numpy code, or a host
array into device code, fails here as it would on a GPU. Arithmetic is numpy's, so results
equal the CPU's bit for bit where the algorithm is the same; what this cannot show is
speed or CUDA-specific failures (those need :func:`backend.gpu_available` on a device).
"""

from __future__ import annotations

import numbers
import types

import numpy as np
import scipy.fft
from numpy.lib.mixins import NDArrayOperatorsMixin

#: numpy functions that accept host data (they copy it to the device).
_TRANSFERS = {"asarray", "array", "ascontiguousarray", "asanyarray"}


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 - CuPy's name
    """A device array: a numpy array behind a wall."""

    __module__ = "cupy"

    def __init__(self, host: np.ndarray):
        self._a = host

    # --- the wall -------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy ufunc {ufunc.__name__}.{method}"
        outs = kwargs.get("out")
        args = _unwrap(inputs, where)
        if outs is not None:
            kwargs["out"] = _unwrap(outs, where)
        result = getattr(ufunc, method)(*args, **kwargs)
        if outs is not None:  # the ufunc wrote into the host arrays behind them
            return outs[0] if isinstance(outs, tuple) and len(outs) == 1 else outs
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _strict(func, func.__name__)(*args, **kwargs)

    def get(self) -> np.ndarray:
        """The array copied to the host."""
        return np.array(self._a, copy=True)

    # --- numpy's array interface, on the device ---------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "indexing", host_ok=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "indexing", host_ok=True)] = _unwrap(value, "assignment",
                                                                   host_ok=True)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(item) for item in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return self._a.__index__()

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        return f"fake_cupy.{self._a!r}"

    def __getattr__(self, name):
        if name.startswith("__"):  # numpy's __array_interface__ and kin stay hidden
            raise AttributeError(name)
        value = getattr(self._a, name)
        if callable(value):
            def method(*args, **kwargs):
                return _wrap(value(*_unwrap(args, f".{name}()"),
                                   **{k: _unwrap(v, f".{name}()") for k, v in kwargs.items()}))
            return method
        return _wrap(value)

    @property
    def real(self):
        return _wrap(self._a.real)

    @real.setter
    def real(self, value):
        self._a.real = _unwrap(value, "real assignment")

    @property
    def imag(self):
        return _wrap(self._a.imag)

    @imag.setter
    def imag(self, value):
        self._a.imag = _unwrap(value, "imag assignment")

    @property
    def T(self):  # noqa: N802 - numpy's name
        return _wrap(self._a.T)


def _unwrap(value, where: str, host_ok: bool = False):
    """Device arrays -> their host arrays; host arrays refused (TypeError) unless
    ``host_ok``; containers walked."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray) and not host_ok:
        raise TypeError(f"fake CuPy: a numpy array (shape {value.shape}) was passed to "
                        f"{where} with device arrays; CuPy refuses to mix host and device")
    if isinstance(value, tuple):
        return tuple(_unwrap(v, where, host_ok) for v in value)
    if isinstance(value, list):
        return [_unwrap(v, where, host_ok) for v in value]
    return value


def _wrap(value):
    """Host results -> device arrays (0-d for scalars of numpy type, as CuPy returns)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _strict(func, name: str):
    """``func`` on device arrays only: host arrays refused, results on the device."""
    def call(*args, **kwargs):
        where = f"cupy.{name}"
        args = _unwrap(args, where)
        kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
        return _wrap(func(*args, **kwargs))
    call.__name__ = name
    return call


def _transfer(func, name: str):
    """``asarray``-like: host data copied to the device, device arrays passed through."""
    def call(obj, *args, **kwargs):
        if isinstance(obj, ndarray):
            return _wrap(func(obj._a, *args, **kwargs))
        host = np.array(obj, *args, copy=True, **kwargs) if name != "ascontiguousarray" \
            else np.ascontiguousarray(np.array(obj, copy=True), *args, **kwargs)
        return ndarray(host)
    call.__name__ = name
    return call


class _Ufunc:
    """A numpy ufunc that takes device arrays only (CuPy's ufuncs refuse numpy arrays)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        where = f"cupy.{self.__name__}"
        out = kwargs.get("out")
        result = self._ufunc(*_unwrap(args, where),
                             **{k: _unwrap(v, where) for k, v in kwargs.items()})
        if out is not None:
            return out if not isinstance(out, tuple) or len(out) > 1 else out[0]
        return _wrap(result)

    def __getattr__(self, name):
        return _strict(getattr(self._ufunc, name), f"{self.__name__}.{name}")


def _module_attribute(name: str):
    value = getattr(np, name)
    if isinstance(value, np.ufunc):
        return _Ufunc(value)
    if isinstance(value, (type, numbers.Number, str, types.ModuleType)) or value is None:
        return value
    if callable(value):
        return (_transfer if name in _TRANSFERS else _strict)(value, name)
    return value


class _Module(types.ModuleType):
    """``cupy``: numpy's namespace behind the wall, plus ``ndarray``, ``cuda`` and the
    memory pool."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _module_attribute(name)
        setattr(self, name, value)
        return value


def is_stand_in(module) -> bool:
    """Whether the GPU array module of a test is this stand-in rather than CuPy on a
    device: here GPU results equal the CPU's bit for bit where the algorithm is the same,
    while a device's own FFTs, reductions and NUFFTs round differently."""
    return isinstance(module, _Module)


def make() -> types.ModuleType:
    """A fresh fake ``cupy`` module, and its ``cupyx.scipy.fft`` as ``module.fft_module``."""
    module = _Module("cupy")
    module.ndarray = ndarray

    class _Pool:
        def total_bytes(self):
            return 0

        def used_bytes(self):
            return 0

        def free_all_blocks(self):
            pass

    def mem_get_info():
        from napari_mrmicro.core.memory import available_memory_bytes
        free = available_memory_bytes()
        return free, free

    module.__version__ = f"numpy {np.__version__} (stand-in)"
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1, memGetInfo=mem_get_info,
        getDeviceProperties=lambda index: {"name": b"numpy stand-in for CuPy"}),
        Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None))
    pool = _Pool()
    module.get_default_memory_pool = lambda: pool
    module.asnumpy = lambda a: a.get() if isinstance(a, ndarray) else np.asarray(a)
    fft_module = types.SimpleNamespace(**{
        name: _strict(getattr(scipy.fft, name), f"cupyx.scipy.fft.{name}")
        for name in ("fftn", "ifftn", "rfftn", "irfftn", "fft", "ifft", "dctn", "idctn")})
    module.fft_module = fft_module
    return module


def make_cufinufft() -> types.ModuleType:
    """A fake ``cufinufft`` for the fake ``cupy``: FINUFFT's CPU plans behind cuFINUFFT's
    interface (``Plan(type, n_modes, n_trans, eps, isign, dtype)``, ``setpts``,
    ``execute``), refusing host arrays, the wrong dtype and non-contiguous data as the real
    one does, and returning device arrays."""
    import finufft

    def device_array(value, name, dtype):
        if not isinstance(value, ndarray):
            raise TypeError(f"fake cuFINUFFT: argument `{name}` must be a device array, got "
                            f"{type(value).__name__}")
        if value._a.dtype != np.dtype(dtype):
            raise TypeError(f"fake cuFINUFFT: argument `{name}` has dtype {value._a.dtype}, "
                            f"{np.dtype(dtype)} expected")
        if not value._a.flags.c_contiguous:
            raise TypeError(f"fake cuFINUFFT: argument `{name}` is not C-contiguous")
        return value._a

    class Plan:
        def __init__(self, nufft_type, n_modes, n_trans=1, eps=1e-6, isign=None,
                     dtype="complex64", **kwargs):
            self._dtype = np.dtype(dtype)
            self._real = np.float32 if self._dtype == np.complex64 else np.float64
            self._plan = finufft.Plan(nufft_type, n_modes, n_trans=n_trans, eps=eps,
                                      isign=isign, dtype=dtype, nthreads=1)

        def setpts(self, x, y=None, z=None):
            points = [device_array(v, n, self._real)
                      for v, n in ((x, "x"), (y, "y"), (z, "z")) if v is not None]
            self._points = [p.copy() for p in points]  # the plan keeps them alive
            self._plan.setpts(*self._points)

        def execute(self, data, out=None):
            return ndarray(self._plan.execute(device_array(data, "data", self._dtype)))

    module = types.ModuleType("cufinufft")
    module.Plan = Plan
    return module
