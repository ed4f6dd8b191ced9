"""Truncated k-space division (TKD): the direct dipole inversion.

``χ = F⁻¹[F[f] · K]`` with ``K = 1/D`` where ``|D| > δ`` and ``sign(D)/δ`` elsewhere
(Shmueli et al., Magn Reson Med 2009;62:1510; Wharton et al., Magn Reson Med
2010;63:1292), δ = 0.15. Truncating ``1/D`` near the magic cone trades streaking for an
underestimation of χ that grows with δ (Schweser et al., Magn Reson Med 2013;69:1581).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import _fused
from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_positive, filter_on_gpu, result)
from napari_mrmicro.core.qsm.kernel import dipole_slabs


def tkd_inverse_kernel(dipole: np.ndarray, threshold: float, out=None) -> np.ndarray:
    """``1/D`` for ``|D| > δ``, else ``sign(D)/δ`` with ``sign(0) → 0``, as float32 (into
    ``out`` when given, which may be ``dipole`` itself).

    ``D = 0`` holds at k = 0 and on samples exactly on the magic cone; the field carries no
    information there (a consistent field vanishes), so K = 0 leaves those components of χ
    at zero rather than inventing ``±1/δ`` of them: the mean of χ stays undetermined, as the
    physics has it, and is referenced later.
    """
    xp = backend.array_namespace(dipole)
    small = xp.abs(dipole) <= threshold
    truncated = xp.sign(dipole[small]) / threshold
    out = xp.empty(dipole.shape, np.float32) if out is None else out
    with np.errstate(divide="ignore"):
        xp.divide(1.0, dipole, out=out)
    out[small] = truncated
    return out


def invert_tkd(local_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
               threshold: float = 0.15, pad=0, device=None) -> np.ndarray:
    """Susceptibility (ppm) by truncated k-space division (Shmueli et al., MRM 2009).

    Parameters
    ----------
    local_field_ppm : ndarray (z, y, x)
        Local (background-removed) field in ppm of B0; used inside ``mask`` only.
    mask : ndarray (z, y, x)
        Region of valid field (e.g. the eroded mask of :func:`~.background.vsharp`).
    spacing_um : 3 floats
        Voxel size (µm); the kernel uses physical k, so anisotropic voxels are exact.
    b0_direction : 3-vector
        B0 in array-axis order ``(z, y, x)``.
    threshold : float
        δ, the truncation level of ``|D|`` (0.15 as in Wharton 2010 / QSM.jl).
    pad : int or 3 ints
        Zero voxels per side before the FFT (see :mod:`.inversion`).
    device : {"cpu", "gpu"}, optional
        Where the transform and the division run (:mod:`~napari_mrmicro.core.backend`;
        default the CPU, or the default of
        :func:`~napari_mrmicro.core.backend.use_device`). χ comes back as numpy.

    Returns
    -------
    ndarray of float32
        χ in ppm, zero outside the mask, mean not referenced. One FFT pair.
    """
    where = "invert_tkd"
    field, mask, spacing = check_inputs(local_field_ppm, mask, spacing_um, where)
    threshold = check_positive(threshold, "threshold", where)
    grid = Grid(field.shape, spacing, b0_direction, pad, where)
    if backend.resolve(device) == "gpu":
        return filter_on_gpu(grid, field, mask, lambda xp: tkd_inverse_kernel(
            grid.dipole("gpu"), threshold))
    grid.check_memory(5)
    spectrum = grid.rfft(grid.embed_masked(field, mask))  # the field inside the mask
    _, dipole = dipole_slabs(grid.padded, grid.spacing, grid.b0, real=True)
    pairs = spectrum.view(np.float32)

    def divide(start, stop):  # kernel built and applied slab by slab, on all cores
        kernel = np.empty((stop - start,) + spectrum.shape[1:], np.float32)
        dipole(start, stop, kernel)
        _fused.multiply_planes(pairs[start:stop], tkd_inverse_kernel(kernel, threshold,
                                                                     out=kernel),
                               pairs[start:stop])

    backend.for_each_slab(np, divide, spectrum.shape[0], spectrum[0].size)
    return result(grid, grid.irfft(spectrum), mask)
