"""Dipole inversion: the shared problem set-up of the susceptibility solvers.

Every solver (:mod:`.tkd`, :mod:`.tikhonov`, :mod:`.tv`, :mod:`.medi`) inverts
``f = F⁻¹[D·F[χ]]`` for χ (ppm) from a local field f (ppm) inside a mask, with the dipole
kernel ``D(k) = 1/3 − (k·b̂)²/|k|²`` of :mod:`.kernel` (physical k per axis, ``D(0) = 0``).
This module checks their inputs, zero-pads the grid, and provides the FFT-diagonal
finite-difference gradient and the iteration control they share.

Conventions
-----------
* Real volumes throughout, so every transform is a ``scipy.fft.rfftn``/``irfftn`` pair
  (half the work of a complex FFT); float32 arrays, complex64 spectra.
* ``pad``: voxels of zeros added on each side (an int or one per axis) before the padded
  size is rounded up to a fast FFT length; it limits the periodic wrap-around of the dipole
  field (qsm-forward pads to twice the size). 0 keeps the grid as it is.
* Gradients are periodic forward differences divided by the voxel size in units of the
  smallest voxel (``h_a = spacing_a / min(spacing)``): anisotropic voxels are weighted
  physically, while a regularization weight keeps the meaning it has in the papers
  (per-voxel differences at isotropic resolution), whatever the voxel size in µm.
* Iterative solvers take ``max_iter``, ``tol`` (stop when the relative change of the
  iterate ``‖χₙ₊₁ − χₙ‖/‖χₙ₊₁‖ < tol``) and ``callback(iteration, total)``, called after
  every iteration; when it returns ``False`` the solver stops and returns the current
  iterate (the cancel button of a dock), like
  :func:`~napari_mrmicro.core.compressed_sensing.cs_reconstruct`.
* χ is returned as float32, zero outside the mask and not referenced: D(0) = 0 leaves its
  mean undetermined, so the pipeline references it to the mask mean.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core._masks import as_mask, as_spacing
from napari_mrmicro.core.qsm.kernel import _unit, dipole_kernel_fft_order


def as_field(field, name: str, where: str) -> np.ndarray:
    """A 3-D finite float32 field, or a ValueError naming ``name`` in ``where``."""
    field = np.asarray(field)
    if field.ndim != 3:
        raise ValueError(f"{where}: {name} must be a 3-D (z, y, x) array, got shape "
                         f"{field.shape}")
    if not np.issubdtype(field.dtype, np.number) or np.iscomplexobj(field):
        raise ValueError(f"{where}: {name} must be real, got dtype {field.dtype}")
    field = field.astype(np.float32, copy=False)
    if not backend.all_finite(field):
        raise ValueError(f"{where}: {name} contains NaN or infinite values")
    return field


def check_inputs(field, mask, spacing_um, where: str, field_name: str = "local_field_ppm"):
    """Checked ``(field float32, mask bool, spacing tuple)`` with matching shapes."""
    field = as_field(field, field_name, where)
    try:
        spacing = as_spacing((spacing_um,) * 3 if np.ndim(spacing_um) == 0 else spacing_um)
        mask = as_mask(mask)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if mask.shape != field.shape:
        raise ValueError(f"{where}: mask shape {mask.shape} does not match {field_name} "
                         f"shape {field.shape}")
    return field, mask, spacing


def check_weight(weight, shape, name: str, where: str) -> np.ndarray:
    """A finite, non-negative float32 weight volume of ``shape``."""
    weight = as_field(weight, name, where)
    if weight.shape != tuple(shape):
        raise ValueError(f"{where}: {name} shape {weight.shape} does not match {tuple(shape)}")
    if weight.min() < 0:
        raise ValueError(f"{where}: {name} must not be negative, min is {weight.min():g}")
    return weight


def check_iteration(max_iter, tol, callback, where: str) -> None:
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"{where}: max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"{where}: tol must be a finite number >= 0, got {tol!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"{where}: callback must be callable(iteration, total)")


def check_positive(value, name: str, where: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{where}: {name} must be a finite number "
                         f"{'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def stop(change: float, tol: float, callback, iteration: int, total: int) -> bool:
    """The stopping rule: the callback asked to cancel, or the relative change < tol."""
    if callback is not None and callback(iteration + 1, total) is False:
        return True
    return change < tol


def relative_change(new: np.ndarray, old: np.ndarray) -> float:
    return float(np.linalg.norm(new - old) / max(float(np.linalg.norm(new)), 1e-30))


class Grid:
    """The padded FFT grid of one inversion: shape, crop, dipole kernel, gradient symbols.

    Parameters
    ----------
    shape : tuple of int
        The data grid ``(z, y, x)``.
    spacing_um : tuple of float
    b0_direction : 3-vector
    pad : int or tuple of int
        Zero voxels added on each side of each axis; the padded size is then rounded up to
        a fast real-FFT length (the extra voxels go at the far end).
    where : str
        Caller name for error messages.
    """

    def __init__(self, shape, spacing_um, b0_direction, pad, where: str):
        pads = np.broadcast_to(np.asarray(pad), (3,)) if np.ndim(pad) <= 1 else None
        if pads is None or not all(float(p).is_integer() and p >= 0 for p in pads):
            raise ValueError(f"{where}: pad must be voxels >= 0 (an int or one per axis), "
                             f"got {pad!r}")
        try:
            self.b0 = _unit(b0_direction)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing_um)
        self.padded = tuple(scipy.fft.next_fast_len(n + 2 * int(p), real=True)
                            for n, p in zip(self.shape, pads))
        self.crop = tuple(slice(int(p), int(p) + n) for p, n in zip(pads, self.shape))
        self.where = where

    @property
    def spectrum_shape(self):
        return self.padded[:2] + (self.padded[2] // 2 + 1,)

    def check_memory(self, volumes: int, device: str = "cpu") -> None:
        """Refuse when ``volumes`` float32 arrays of the padded size will not fit in the
        host's memory, or also the GPU's (:func:`~napari_mrmicro.core.backend.check_memory_on`)."""
        backend.check_memory_on(4 * volumes * math.prod(self.padded),
                                f"{self.where} on a padded grid of {self.padded}", device)

    def embed(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` zero-padded onto the grid (float32)."""
        out = np.zeros(self.padded, np.float32)
        out[self.crop] = volume
        return out

    def embed_masked(self, volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``volume`` inside ``mask``, zero elsewhere, zero-padded onto the grid (float32),
        written slab by slab on all cores in one pass."""
        out = np.empty(self.padded, np.float32)
        first = self.crop[0]

        def work(start, stop):
            slab = out[start:stop]
            slab[...] = 0
            lo, hi = max(start, first.start), min(stop, first.stop)
            if lo < hi:
                inside = slice(lo - first.start, hi - first.start)
                np.copyto(slab[(slice(lo - start, hi - start),) + self.crop[1:]],
                          volume[inside], where=mask[inside])

        backend.for_each_slab(np, work, self.padded[0], out[0].size)
        return out

    def dipole(self, device: str = "cpu") -> np.ndarray:
        """D(k) on the half spectrum, float32, built on ``device``."""
        return dipole_kernel_fft_order(self.padded, self.spacing, self.b0, real=True,
                                       device=device)

    def gradient_symbols(self):
        """Per axis ``|E_a(k)|² = (2 sin(π m/N)/h_a)²`` of the forward difference, broadcastable
        over the half spectrum, with ``h_a`` in units of the smallest voxel."""
        h = np.asarray(self.spacing) / min(self.spacing)
        out = []
        for axis, n in enumerate(self.padded):
            m = np.arange(n // 2 + 1) if axis == 2 else np.arange(n)
            e2 = (2 * np.sin(np.pi * m / n) / h[axis]) ** 2
            out.append(e2.astype(np.float32).reshape([-1 if i == axis else 1 for i in range(3)]))
        return out

    def laplacian_symbol(self, device: str = "cpu") -> np.ndarray:
        """``Σ_a |E_a(k)|²`` on the half spectrum (``G^T G`` of the gradient), float32,
        summed on ``device``."""
        xp = backend.namespace(device)
        e = [xp.asarray(symbol) for symbol in self.gradient_symbols()]
        return (e[0] + e[1] + e[2]).astype(np.float32)

    def rfft(self, volume: np.ndarray) -> np.ndarray:
        return backend.fft(np).rfftn(volume)

    def irfft(self, spectrum: np.ndarray) -> np.ndarray:
        """The volume of ``spectrum`` (float32), which is overwritten."""
        return backend.fft(np).irfftn(spectrum, s=self.padded,
                                      overwrite_x=True).astype(np.float32, copy=False)

    def steps(self) -> np.ndarray:
        """``h_a`` of :meth:`gradient_symbols`, float32."""
        return (np.asarray(self.spacing) / min(self.spacing)).astype(np.float32)


def _cut(axis: int, part: slice) -> tuple:
    return tuple(part if a == axis else slice(None) for a in range(3))


def gradient(x: np.ndarray, steps) -> np.ndarray:
    """Periodic forward differences ``(x[i+1] − x[i]) / h_a`` stacked as ``(3, z, y, x)``."""
    out = np.empty((3,) + x.shape, np.float32)
    for axis in range(3):
        np.subtract(x[_cut(axis, slice(1, None))], x[_cut(axis, slice(None, -1))],
                    out=out[axis][_cut(axis, slice(None, -1))])
        np.subtract(x[_cut(axis, slice(0, 1))], x[_cut(axis, slice(-1, None))],
                    out=out[axis][_cut(axis, slice(-1, None))])
        out[axis] *= np.float32(1 / steps[axis])
    return out


def gradient_adjoint(v: np.ndarray, steps) -> np.ndarray:
    """``G^T v = Σ_a (v_a[i−1] − v_a[i]) / h_a`` (minus the backward-difference divergence)."""
    out = np.zeros(v.shape[1:], np.float32)
    difference = np.empty(v.shape[1:], np.float32)
    for axis in range(3):
        va = v[axis]
        np.subtract(va[_cut(axis, slice(None, -1))], va[_cut(axis, slice(1, None))],
                    out=difference[_cut(axis, slice(1, None))])
        np.subtract(va[_cut(axis, slice(-1, None))], va[_cut(axis, slice(0, 1))],
                    out=difference[_cut(axis, slice(0, 1))])
        difference *= np.float32(1 / steps[axis])
        out += difference
    return out


#: float32 volumes of the padded grid :func:`filter_on_gpu` holds at its peak (the field,
#: its half spectrum, the filter and its temporaries, χ).
FILTER_VOLUMES = 6


def filter_on_gpu(grid: Grid, field: np.ndarray, mask: np.ndarray, gain) -> np.ndarray:
    """``χ = F⁻¹[K · F[f inside the mask]]`` on the GPU: the one FFT pair of the direct
    inversions (TKD, Tikhonov), with the half-spectrum filter ``K = gain(xp)`` built there
    (whole-volume operations of the array namespace ``xp``); χ comes back to the host,
    cropped and zero outside the mask (:func:`result`)."""
    backend.check_device_memory(4 * FILTER_VOLUMES * math.prod(grid.padded),
                                f"{grid.where} on a padded grid of {grid.padded}", "gpu")
    xp = backend.namespace("gpu")
    fft = backend.fft(xp)
    spectrum = fft.rfftn(xp.asarray(grid.embed_masked(field, mask)))
    spectrum *= gain(xp)
    chi = fft.irfftn(spectrum, s=grid.padded, overwrite_x=True)
    return result(grid, backend.to_host(chi).astype(np.float32, copy=False), mask)


def result(grid: Grid, chi_padded: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """χ cropped back to the data grid, zero outside the mask, float32."""
    chi = np.ascontiguousarray(chi_padded[grid.crop], dtype=np.float32)
    backend.for_each_slab(np, lambda start, stop: np.copyto(
        chi[start:stop], 0, where=np.logical_not(mask[start:stop])), chi.shape[0],
        chi[0].size)
    return chi
