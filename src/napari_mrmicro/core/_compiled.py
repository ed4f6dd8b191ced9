"""numba-compiled loops (Lam et al., LLVM-HPC 2015), with numba loaded on first use.

numba and llvmlite take about 50 MiB and half a second to import: a reader, ``mrmicro
convert`` or the napari plugin opening a file should not pay that for loops they never run.
:func:`njit` marks a function of a module for compilation; the first call of any marked
function of that module imports numba and puts the compiled dispatcher of every marked
function into the module's namespace, so that compiled functions calling one another see
dispatchers when they compile, and later calls from the module go straight to numba.
"""

from __future__ import annotations

import functools
import sys
import threading

_LOCK = threading.Lock()
#: Module name -> {function name: (function, numba options)} not yet compiled.
_PENDING: dict[str, dict] = {}


def njit(**options):
    """Decorator: ``numba.njit(**options)`` of the function, applied on first use."""

    def mark(function):
        module, name = function.__module__, function.__name__
        _PENDING.setdefault(module, {})[name] = (function, options)

        @functools.wraps(function)
        def first_call(*args):
            return _dispatchers(module)[name](*args)

        return first_call

    return mark


def _dispatchers(module: str) -> dict:
    """The namespace of ``module`` with its marked functions compiled (numba imported once,
    under a lock: the slab pool's threads may make the first calls together)."""
    namespace = vars(sys.modules[module])
    if _PENDING.get(module):
        with _LOCK:
            pending = _PENDING.get(module, {})
            if pending:
                import numba

                for name, (function, options) in pending.items():
                    namespace[name] = numba.njit(**options)(function)
                pending.clear()
    return namespace
