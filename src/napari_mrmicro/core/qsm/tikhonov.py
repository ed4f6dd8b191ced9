"""Closed-form Tikhonov (ℓ2-regularized) dipole inversion.

``χ = F⁻¹[D·F[f] / (D² + λ·R)]`` with ``R = 1`` (χ-norm, "identity") or
``R = Σ_a |E_a(k)|²`` (the ``‖∇χ‖²`` of the gradient, "gradient"), the minimiser of
``‖F⁻¹DFχ − f‖² + λ‖Γχ‖²`` over the whole grid (Bilgic et al., Magn Reson Med 2014;72:1444,
"closed-form ℓ2"; Kressler et al., IEEE TMI 2010;29:273). λ ≈ 1e-2 (QSM.jl).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm import _fused
from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_positive, filter_on_gpu, result)
from napari_mrmicro.core.qsm.kernel import dipole_slabs

REGULARIZERS = ("identity", "gradient")


def invert_tikhonov(local_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0),
                    lam: float = 1e-2, regularizer: str = "gradient", pad=0,
                    device=None) -> np.ndarray:
    """Susceptibility (ppm) by closed-form Tikhonov regularization.

    Parameters
    ----------
    local_field_ppm, mask, spacing_um, b0_direction, pad
        As for :func:`~.tkd.invert_tkd`.
    lam : float
        λ (dimensionless for ``"identity"``; for ``"gradient"`` per voxel of the smallest
        size, see :mod:`.inversion`).
    regularizer : {"gradient", "identity"}
        ``‖∇χ‖²`` (smooth, less underestimation) or ``‖χ‖²``.
    device : {"cpu", "gpu"}, optional
        As for :func:`~.tkd.invert_tkd`.

    Returns
    -------
    ndarray of float32
        χ in ppm, zero outside the mask, mean not referenced. One FFT pair.
    """
    where = "invert_tikhonov"
    field, mask, spacing = check_inputs(local_field_ppm, mask, spacing_um, where)
    lam = check_positive(lam, "lam", where)
    if regularizer not in REGULARIZERS:
        raise ValueError(f"{where}: regularizer must be one of {REGULARIZERS}, got "
                         f"{regularizer!r}")
    grid = Grid(field.shape, spacing, b0_direction, pad, where)
    if backend.resolve(device) == "gpu":
        return filter_on_gpu(grid, field, mask, lambda xp: _gain(grid, lam, regularizer, xp))
    grid.check_memory(6)
    spectrum = grid.rfft(grid.embed_masked(field, mask))  # the field inside the mask
    _, dipole = dipole_slabs(grid.padded, grid.spacing, grid.b0, real=True)
    if regularizer == "gradient":
        symbols = [np.ascontiguousarray(e.ravel()) for e in grid.gradient_symbols()]
    else:  # a penalty of (1 + 0) + 0
        symbols = [np.ones(n, np.float32) if axis == 0 else np.zeros(n, np.float32)
                   for axis, n in enumerate(spectrum.shape)]
    pairs = spectrum.view(np.float32)

    def divide(start, stop):  # the filter built and applied slab by slab, on all cores
        d = np.empty((stop - start,) + spectrum.shape[1:], np.float32)
        dipole(start, stop, d)
        # D / (D² + λ·penalty), 1 in place of the denominator at k = 0 (D(0) = 0 and ∇ of a
        # constant is 0: the mean stays 0)
        _fused.tikhonov_planes(pairs[start:stop], d, *symbols, np.float32(lam), start)

    backend.for_each_slab(np, divide, spectrum.shape[0], spectrum[0].size)
    return result(grid, grid.irfft(spectrum), mask)


def _gain(grid, lam: float, regularizer: str, xp):
    """``D / (D² + λ·R)`` on the half spectrum, built with the array namespace ``xp`` (the
    GPU's form of the compiled loop on the CPU; 1 in place of the denominator at k = 0)."""
    device = "cpu" if xp is np else "gpu"
    dipole = grid.dipole(device)
    penalty = grid.laplacian_symbol(device) if regularizer == "gradient" else np.float32(1)
    denominator = dipole * dipole
    denominator += np.float32(lam) * penalty
    denominator[0, 0, 0] = 1
    return xp.divide(dipole, denominator, out=denominator)
