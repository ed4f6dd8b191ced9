"""k-space -> complex image: the centred inverse FFT with the usual MR trimmings.

:func:`reconstruct` runs, in this order: complex averaging of repeated acquisitions,
partial-Fourier completion (homodyne or POCS), apodization, zero-fill interpolation, the
centred inverse FFT (DESIGN.md: DC at ``N // 2``, ``norm="ortho"``, complex64) and coil
combination. :func:`image_parts` splits the result into magnitude, phase, real and imaginary
volumes. Undersampled scans go to
:func:`napari_mrmicro.core.compressed_sensing.cs_reconstruct` instead; a KSpace with a
trajectory (non-Cartesian) is gridded by
:func:`napari_mrmicro.core.nufft.reconstruct_noncartesian`.
"""

from __future__ import annotations

import math

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.apodization import apodization_factors
from napari_mrmicro.core.coils import combine_rss, combine_sensitivity
from napari_mrmicro.core.kspace import (KSpace, centered_fft, centered_ifft,
                                        centered_ifft_magnitude, multiply_along_axes)
from napari_mrmicro.core.nufft import reconstruct_noncartesian
from napari_mrmicro.core.partial_fourier import acquired_extent, homodyne, pocs

OUTPUTS = ("complex", "magnitude")
PARTIAL_FOURIER_METHODS = ("homodyne", "pocs")
_PF_KEYS = {"axis", "method", "fraction", "iterations", "tol"}


def _axis(ndim: int, axis, name: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -ndim <= axis < ndim:
        raise ValueError(f"reconstruct: {name} {axis!r} is not an axis of the {ndim}-D data")
    return int(axis) % ndim


def _layout(kspace_data, coil_axis, kspace_axes):
    """(data, coil axis or None, k-space axes, sampled mask or None), axes non-negative."""
    if isinstance(kspace_data, KSpace):
        data, sampled = kspace_data.data, kspace_data.sampled
        coil_axis = kspace_data.coil_axis if coil_axis is None else coil_axis
        kspace_axes = kspace_data.kspace_axes if kspace_axes is None else kspace_axes
    else:
        data, sampled = kspace_data, None
    data = data if backend.on_gpu(data) else np.asarray(data)
    if data.size == 0 or data.ndim == 0:
        raise ValueError(f"reconstruct: kspace_data is empty (shape {data.shape})")
    if not (np.iscomplexobj(data) or np.issubdtype(data.dtype, np.number)):
        raise ValueError(f"reconstruct: kspace_data must be numeric, got dtype {data.dtype}")
    if kspace_axes is None:
        kspace_axes = tuple(range(-min(data.ndim, 3), 0))
    axes = tuple(sorted({_axis(data.ndim, a, "kspace axis") for a in kspace_axes}))
    if coil_axis is not None:
        coil_axis = _axis(data.ndim, coil_axis, "coil_axis")
        if coil_axis in axes:
            raise ValueError(f"reconstruct: coil_axis {coil_axis} is also a k-space axis")
    return data, coil_axis, axes, sampled


def _zero_filled_shape(shape, axes, zero_fill) -> tuple:
    factors = np.broadcast_to(np.asarray(zero_fill, dtype=float), (len(axes),)) \
        if np.ndim(zero_fill) == 0 else np.asarray(zero_fill, dtype=float)
    if factors.shape != (len(axes),) or not np.all(factors >= 1):
        raise ValueError(f"reconstruct: zero_fill must be a number >= 1 or one per k-space "
                         f"axis ({len(axes)}), got {zero_fill!r}")
    new = list(shape)
    for axis, f in zip(axes, factors):
        new[axis] = int(round(shape[axis] * f))
    return tuple(new)


def estimate_recon_bytes(shape, zero_fill=1, kspace_axes=(-3, -2, -1), coil_axis=None,
                         partial_fourier: bool = False, output: str = "complex") -> int:
    """Working memory of :func:`reconstruct` on k-space of ``shape``, in bytes (an estimate;
    the input itself is not counted)."""
    shape = tuple(int(n) for n in shape)
    axes = tuple(sorted({int(a) % len(shape) for a in kspace_axes}))
    full = math.prod(_zero_filled_shape(shape, axes, zero_fill))
    total = 8 * full  # the zero-filled, windowed copy that becomes the image
    total += full // 2 + 8 * 2**20  # FFT scratch and window factors (benchmarks/bench_memory.py)
    if partial_fourier:
        total += 4 * 8 * math.prod(shape)  # data copy, estimate, phase, image
    coils = 1 if coil_axis is None else shape[int(coil_axis) % len(shape)]
    if coils > 1:
        total += 8 * full // coils
    if output == "magnitude":
        total += 4 * full // coils
    return total


def _partial_axes(data, sampled, axes) -> list:
    """``[(axis, (start, stop))]``: the k-space axes along which the ``sampled`` mask covers
    a range asymmetric about DC (partial Fourier); at most one."""
    if sampled is None:
        return []
    mask = np.asarray(sampled, dtype=bool)
    offset = data.ndim - mask.ndim
    found = []
    for axis in axes:
        if axis - offset < 0:
            continue
        m = axis - offset
        covered = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim)
                                                           if a != m)))
        c = mask.shape[m] // 2  # partial Fourier: the range is asymmetric about DC
        if covered.size and covered[0] <= c <= covered[-1] and abs(
                (c - covered[0]) - (covered[-1] - c)) > 1:
            found.append((axis, (int(covered[0]), int(covered[-1]) + 1)))
    if len(found) > 1:
        raise ValueError("reconstruct: the sampled mask is partial Fourier along "
                         f"{len(found)} axes; only one axis is supported")
    return found


def _partial_fourier_plan(data, partial_fourier, sampled, axes):
    """(axis, (start, stop), method, options) or None."""
    if partial_fourier is None:
        found = _partial_axes(data, sampled, axes)
        return (found[0][0], found[0][1], "pocs", {}) if found else None
    if not isinstance(partial_fourier, dict) or set(partial_fourier) - _PF_KEYS:
        raise ValueError("reconstruct: partial_fourier must be None or a dict with keys "
                         f"{sorted(_PF_KEYS)}, got {partial_fourier!r}")
    axis = partial_fourier.get("axis")
    if axis is None:  # the axis partly acquired: by the sampled mask, else the non-zeros
        found = _partial_axes(data, np.asarray(data) != 0 if sampled is None else sampled,
                              axes)
        axis = found[0][0] if found else -1
    axis = _axis(data.ndim, axis, "partial_fourier axis")
    if axis not in axes:
        raise ValueError(f"reconstruct: partial_fourier axis {axis} is not a k-space axis")
    method = partial_fourier.get("method", "pocs")
    if method not in PARTIAL_FOURIER_METHODS:
        raise ValueError(f"reconstruct: partial_fourier method {method!r}; one of "
                         f"{PARTIAL_FOURIER_METHODS}")
    options = {k: partial_fourier[k] for k in ("iterations", "tol") if k in partial_fourier}
    if options and method != "pocs":
        raise ValueError(f"reconstruct: {sorted(options)} apply to the 'pocs' method only")
    extent = acquired_extent(data, axis, partial_fourier.get("fraction"))
    return axis, extent, method, options


def reconstruct(kspace_data, window=None, zero_fill=1, partial_fourier=None, coil_maps=None,
                average_axis=None, *, coil_axis=None, kspace_axes=None,
                output: str = "complex", workers: int = -1, device=None) -> np.ndarray:
    """Reconstruct an image from Cartesian k-space (DC at index ``N // 2`` on each axis).

    Parameters
    ----------
    kspace_data : KSpace or ndarray
        A :class:`~napari_mrmicro.core.kspace.KSpace` (its ``coil_axis``, ``multislice``
        and ``sampled`` are used), or an array whose last ``min(ndim, 3)`` axes are k-space
        (``(y, x)``, ``(z, y, x)``, ``(echo, z, y, x)``, ...). A KSpace with a
        ``trajectory`` is non-Cartesian: it goes to
        :func:`~napari_mrmicro.core.nufft.reconstruct_noncartesian` (density-compensated
        NUFFT gridding onto ``acquisition.matrix``, on the CPU) with ``window``,
        ``zero_fill``, ``coil_maps``, ``average_axis``, ``output`` and ``workers``.
    window : None, str, dict
        Apodization: a name from :data:`~napari_mrmicro.core.apodization.WINDOWS` for all
        k-space axes, ``{"name": "tukey", "alpha": 0.3}``, or ``{axis: name or spec}`` per
        axis (see :func:`~napari_mrmicro.core.apodization.apodization_factors`).
    zero_fill : float or sequence of float
        Zero-fill interpolation factor (>= 1), one for all k-space axes or one per axis.
        The voxel size shrinks by the same factor (the field of view is unchanged); the
        image is scaled by √(N_filled/N) so intensities and noise σ do not change.
    partial_fourier : None or dict
        ``{"axis": -1, "method": "homodyne" | "pocs", "fraction": 5/8}`` (``fraction``
        optional: by default the acquired range is where the data are non-zero; without
        ``axis``, the axis a KSpace's ``sampled`` mask, or else the data's non-zero
        samples, show partly acquired, else the last; ``iterations`` and ``tol`` tune
        POCS). None detects partial Fourier from a KSpace's ``sampled`` mask (one side of
        one axis not acquired) and then uses POCS.
    coil_maps : ndarray, optional
        Coil sensitivities ``(coil, z, y, x)`` on the reconstructed grid: sensitivity-weighted
        combination (complex). Without maps, coils are combined by root-sum-of-squares,
        which has no phase: the result is then float32 magnitude.
    average_axis : int, optional
        Axis of repeated acquisitions, averaged as complex data (in k-space, before
        everything else).
    coil_axis, kspace_axes : int, tuple of int, optional
        Override the layout (for arrays; a KSpace supplies its own).
    output : {"complex", "magnitude"}
        "magnitude" returns ``|image|`` as float32, computed without the phase ramps of the
        centred transform (faster).
    workers : int
        Threads of ``scipy.fft`` (-1: all cores).
    device : {"cpu", "gpu"}, optional
        Where the transforms run (:mod:`~napari_mrmicro.core.backend`); default: where the
        data are (CuPy arrays: the GPU), else the CPU. Partial-Fourier completion runs on
        the CPU; non-Cartesian k-space is gridded by cuFINUFFT on the GPU.

    Returns
    -------
    ndarray
        complex64 image (float32 for ``output="magnitude"`` or root-sum-of-squares), the
        coil and average axes removed; a CuPy array for CuPy input, else numpy.
    """
    if isinstance(kspace_data, KSpace) and kspace_data.trajectory is not None:
        unused = [name for name, value in (("partial_fourier", partial_fourier),
                                           ("coil_axis", coil_axis),
                                           ("kspace_axes", kspace_axes)) if value is not None]
        if unused:
            raise ValueError(f"reconstruct: {', '.join(unused)} do not apply to non-Cartesian "
                             "k-space (KSpace with a trajectory)")
        return reconstruct_noncartesian(kspace_data, window, zero_fill, coil_maps,
                                        average_axis, output=output, workers=workers,
                                        device=device)
    data, coil_axis, axes, sampled = _layout(kspace_data, coil_axis, kspace_axes)
    device = backend.resolve(device, data)
    host_input = not backend.on_gpu(data)
    if output not in OUTPUTS:
        raise ValueError(f"reconstruct: output must be one of {OUTPUTS}, got {output!r}")
    if coil_maps is not None and coil_axis is None:
        raise ValueError("reconstruct: coil_maps given but the data have no coil_axis")
    owned = False
    if average_axis is not None:
        average_axis = _axis(data.ndim, average_axis, "average_axis")
        if average_axis in axes or average_axis == coil_axis:
            raise ValueError(f"reconstruct: average_axis {average_axis} must not be a k-space "
                             "or coil axis")
        data = data.mean(axis=average_axis, dtype=np.complex64)
        owned = True
        axes = tuple(a - (a > average_axis) for a in axes)
        if coil_axis is not None:
            coil_axis -= coil_axis > average_axis
    if data.dtype != np.complex64:
        data = data.astype(np.complex64)
        owned = True

    if partial_fourier is not None:
        data = backend.to_host(data)
    plan = _partial_fourier_plan(data, partial_fourier, sampled, axes)
    backend.check_device_memory(
        estimate_recon_bytes(data.shape, zero_fill, axes, coil_axis, plan is not None, output),
        f"reconstructing k-space of shape {data.shape}", device,
        advice="a smaller zero-fill factor, fewer echoes or coils at a time")
    factors = apodization_factors(data.shape, window, axes)
    shape = _zero_filled_shape(data.shape, axes, zero_fill)

    image = None
    if plan is not None:
        axis, extent, method, options = plan
        data = backend.to_host(data)
        image = (homodyne(data, axis, extent, axes) if method == "homodyne"
                 else pocs(data, axis, extent, axes, **options))
        if factors or shape != data.shape:
            data, image, owned = centered_fft(image, axes, workers, overwrite_x=True), None, True
        else:
            image = backend.to_device(image, device)
    if image is None:
        moved = backend.to_device(data, device)
        data, owned = moved, owned or moved is not data
        xp = backend.namespace(device)
        if shape != data.shape:
            # Keep intensities (and the noise σ) independent of the zero-fill factor.
            gain = math.sqrt(math.prod(shape) / math.prod(data.shape))
            factors = dict(factors)
            factors[axes[-1]] = factors.get(axes[-1], np.ones(data.shape[axes[-1]],
                                                                 np.float32)) * np.float32(gain)
            padded = xp.zeros(shape, dtype=np.complex64)
            region = tuple(slice(s // 2 - n // 2, s // 2 - n // 2 + n)
                           for n, s in zip(data.shape, shape))
            multiply_along_axes(data, factors, padded[region])
            data, owned = padded, True
        elif factors:
            data = multiply_along_axes(data, factors,
                                       data if owned else xp.empty_like(data))
            owned = True
        if output == "magnitude" and coil_axis is None:
            image = centered_ifft_magnitude(data, axes, workers, overwrite_x=owned)
        else:
            image = centered_ifft(data, axes, workers, overwrite_x=owned)
    del data

    if coil_axis is not None:
        image = backend.to_host(image)  # coil combination runs on the CPU
        image = (combine_rss(image, coil_axis) if coil_maps is None
                 else combine_sensitivity(image, coil_maps, coil_axis))
        axes = tuple(a - (a > coil_axis) for a in axes)
    xp = backend.array_namespace(image)
    if output == "magnitude" and np.iscomplexobj(image):
        image = xp.abs(image)
    # A NaN or Inf anywhere in k-space spreads to every voxel of its volume: one probe
    # voxel per volume finds it without a pass over the data.
    probe = image[tuple(0 if a in axes else slice(None) for a in range(image.ndim))]
    if not bool(xp.all(xp.isfinite(probe))):
        raise ValueError("reconstruct: kspace_data contain NaN or Inf values")
    return backend.to_host(image) if host_input else backend.to_device(image, device)


def image_parts(image) -> dict:
    """Split a reconstructed image into float32 volumes.

    Returns ``{"magnitude", "phase", "real", "imag"}`` for a complex image (phase in
    radians, (−π, π], axes as in the image, so an echo axis stays first). A real image
    (root-sum-of-squares) has no phase: only ``{"magnitude", "real"}`` are returned.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("image_parts: image is empty")
    if not np.iscomplexobj(image):
        real = image.astype(np.float32, copy=False)
        return {"magnitude": np.abs(real), "real": real}
    image = image.astype(np.complex64, copy=False)
    return {"magnitude": np.abs(image), "phase": np.angle(image).astype(np.float32),
            "real": image.real.copy(), "imag": image.imag.copy()}
