"""Memory guard for big reconstructions: estimate first, refuse clearly if it cannot fit."""

from __future__ import annotations

import os

GIB = 2.0**30


def _meminfo_available() -> int | None:
    """Linux ``MemAvailable`` (free memory plus reclaimable page cache), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_number(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom() -> int | None:
    """What the memory limit of this process's control group (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``) still allows, or None without a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.strip().split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        return None
    headroom = []
    for _, controllers, group in entries:
        if controllers == "":  # v2
            places = [("/sys/fs/cgroup" + group.rstrip("/"), "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):
            places = [(f"/sys/fs/cgroup/memory{group.rstrip('/')}", "memory.limit_in_bytes",
                       "memory.usage_in_bytes"),
                      ("/sys/fs/cgroup/memory", "memory.limit_in_bytes",
                       "memory.usage_in_bytes")]
        else:
            continue
        for folder, limit_name, usage_name in places:
            limit = _read_number(f"{folder}/{limit_name}")
            usage = _read_number(f"{folder}/{usage_name}")
            if limit is not None and usage is not None and limit < 2**62:
                headroom.append(max(0, limit - usage))
                break
    return min(headroom) if headroom else None


def _address_space_headroom() -> int | None:
    """What ``RLIMIT_AS`` (``ulimit -v``) still allows this process, or None without one."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return max(0, limit - used)


def available_memory_bytes() -> int:
    """Memory the process can still use without swapping or being killed, in bytes.

    The least of: Linux ``MemAvailable`` (free memory plus reclaimable page cache; else
    ``psutil.virtual_memory().available`` when psutil is installed, else free pages),
    the headroom under this process's control-group memory limit (containers, batch
    schedulers) and under its address-space limit (``ulimit -v``). Never the installed
    physical memory: that overstates what a busy machine can give.
    """
    available = _meminfo_available()
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except ImportError:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for headroom in (_cgroup_headroom(), _address_space_headroom()):
        if headroom is not None:
            available = min(available, headroom)
    return available


def _size(nbytes: float) -> str:
    """``"12.50 GiB"``, or MiB below a tenth of a GiB."""
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= 0.1 * GIB else f"{nbytes / 2**20:.2f} MiB"


def check_memory(needed_bytes: int, what: str, available_bytes: int | None = None,
                 advice: str = "a smaller problem") -> None:
    """Raise MemoryError naming ``what``, both figures and ``advice`` (what to use instead)
    when ``needed_bytes`` exceeds the available memory (``available_bytes``, default
    :func:`available_memory_bytes`)."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if needed_bytes > available:
        raise MemoryError(f"{what} needs about {_size(needed_bytes)} but only "
                          f"{_size(available)} of memory is available; use {advice}, "
                          "or a machine with more memory")
