"""Memory guard for big reconstructions: estimate first, refuse clearly if it cannot fit."""

from __future__ import annotations

import os

GIB = 2.0**30


def available_memory_bytes() -> int:
    """Memory the process can still use without swapping, in bytes.

    Linux ``MemAvailable`` (free memory plus reclaimable page cache) when readable, else
    ``psutil.virtual_memory().available`` when psutil is installed (it comes with napari),
    else ``os.sysconf("SC_AVPHYS_PAGES")`` pages (free memory only, a lower bound).
    """
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.virtual_memory().available)


def check_memory(needed_bytes: int, what: str, available_bytes: int | None = None,
                 advice: str = "a smaller problem") -> None:
    """Raise MemoryError naming ``what``, both figures and ``advice`` (what to use instead)
    when ``needed_bytes`` exceeds the available memory (``available_bytes``, default
    :func:`available_memory_bytes`)."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if needed_bytes > available:
        raise MemoryError(f"{what} needs about {needed_bytes / GIB:.2f} GiB but only "
                          f"{available / GIB:.2f} GiB of memory is available; use {advice}, "
                          "or a machine with more memory")
