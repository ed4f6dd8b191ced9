"""Where the scanner places each spin: off-resonance shifts and gradient non-linearity.

Frequency encoding reads position from frequency, so a spin off resonance by Δf is
placed ``Δf / BW_px`` pixels along the readout (Chang & Fitzpatrick, IEEE Trans Med
Imaging 1992;11:319); with the project's sign convention (the image is the centred
inverse FFT, phase ``+2π·Δf·t``) it lands towards *lower* readout index. A gradient
coil's field departs from linear away from its centre; the leading term of a symmetric
coil places a spin at radius ``r`` at ``r·(1 + c·(r/R)²)`` (Janke et al., Magn Reson Med
2004;52:115).
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core._slabs import for_each_slab, slab_size
from napari_mrmicro.core.truncation import along


def encode(labels: np.ndarray, spacing_um, *, readout_axis: int = 2, field_ppm=None,
           pixels_per_ppm: float = 0.0, nonlinearity: float = 0.0, radius_um: float = 1.0,
           report=None):
    """Labels, field and spin density at the positions where the scanner encodes them.

    Backward nearest-neighbour mapping on the labels' own grid: each voxel takes the
    label (and field) of the spin encoded there. Under the gradient non-linearity the
    spins also crowd or thin out: the density is the Jacobian ``|det ∂r/∂r'|`` of the
    radial map ``r = r'·s``, ``s³/(3 − 2s)``, so the total signal is kept. The readout
    shift moves spins without that factor (no pile-up at susceptibility boundaries).

    Parameters
    ----------
    labels : ndarray of uint8, (z, y, x)
    spacing_um : tuple of float
    readout_axis : int
    field_ppm : ndarray of float32, optional
        Off-resonance on the same grid (taken at the encoded position for the shift).
    pixels_per_ppm : float
        Readout displacement in voxels of this grid per ppm: ``γ̄·B0·1e-6 / BW_px`` times
        the grid's oversampling of the matrix.
    nonlinearity : float
        Relative gradient error ``c`` at radius ``radius_um`` (0: linear gradients).
    report : callable, optional
        ``report(fraction)``.

    Returns
    -------
    labels, field_ppm : ndarray
        The inputs themselves when nothing moves.
    density : ndarray of float32 or None
        The Jacobian per voxel; None without non-linearity.
    """
    shifting = field_ppm is not None and pixels_per_ppm != 0
    if not shifting and not nonlinearity:
        return labels, field_ppm, None
    shape = labels.shape
    strides = (shape[1] * shape[2], shape[2], 1)
    moved = [bool(nonlinearity) or (shifting and axis == readout_axis) for axis in range(3)]
    out_labels = np.empty_like(labels)
    out_field = None if field_ppm is None else np.empty_like(field_ppm)
    density = np.empty(shape, dtype=np.float32) if nonlinearity else None
    flat_labels = labels.ravel()
    flat_field = None if field_ppm is None else field_ppm.ravel()
    per_ppm = np.float32(pixels_per_ppm)
    # voxel offsets from the grid centre; k·(squared radius in µm²) per axis
    offsets = [(np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2)).reshape(along(i))
               for i, n in enumerate(shape)]
    k = nonlinearity / radius_um**2
    k_squares = [(o.astype(np.float64) * d) ** 2 * k for o, d in zip(offsets, spacing_um)]
    k_squares = [q.astype(np.float32) for q in k_squares]
    k_plane = k_squares[1] + k_squares[2]
    # a = k·r'² at the grid's corners
    corner = k * sum(float(((n - 1) / 2 * d) ** 2) for n, d in zip(shape, spacing_um))
    if corner < -0.14:  # r' = r(1 + k r²) peaks at k r² = −1/3, where k r'² = −4/27
        raise ValueError(f"encode: a gradient non-linearity of {nonlinearity:g} folds the "
                         f"encoding inside the grid (k·r'² = {corner:.3f} at its corners; "
                         f"the map from r to r' turns back below −0.148); use at least "
                         f"{nonlinearity * -0.14 / corner:.3g}")
    # Newton from 1/(1 + a): two steps leave a relative error below 2e-6 for −0.1 ≤ a ≤ 0.3
    # (c = 2 % reaches 0.06 in the FOV's corners), five below 1e-9 up to a = 1 or down to
    # the fold
    newton_steps = 2 if -0.1 <= corner <= 0.3 else 5
    half_y, half_x = shape[1] // 2, shape[2] // 2
    # the index contribution of the axes that do not move
    fixed = sum(np.arange(n).reshape(along(a)) * strides[a]
                for a, n in enumerate(shape) if not moved[a])

    def work(z0, z1):
        size = (z1 - z0,) + shape[1:]
        scale = None
        if nonlinearity:
            # encoded radius r' = r(1 + k r²); its source r = r'·s solves
            # g(s) = s + a·s³ − 1 = 0 with a = k·r'²: Newton from s = 1/(1 + a). Both s
            # and the Jacobian are even in y and x: worked out on a quarter of each plane.
            a = k_squares[0][z0:z1] + k_plane[:, half_y:, half_x:]
            scale = a + np.float32(1)
            np.reciprocal(scale, out=scale)
            slope, step = np.empty_like(scale), np.empty_like(scale)
            for _ in range(newton_steps):
                np.multiply(scale, scale, out=slope)
                slope *= a  # a·s²
                np.multiply(scale, slope, out=step)
                step += scale
                step -= 1  # g(s)
                slope *= 3
                slope += 1  # g'(s)
                step /= slope
                scale -= step
            # |det ∂r/∂r'| of the radial map r = r'·s(r'): s³/(3 − 2s)
            np.multiply(scale, np.float32(-2), out=step)
            step += 3
            np.multiply(scale, scale, out=slope)
            slope *= scale
            slope /= step
            _unfold(slope, half_y, half_x, out=density[z0:z1])
            scale = _unfold(scale, half_y, half_x)
            del a, slope, step
        source = np.empty(size, dtype=np.float32)
        index = np.empty(size, dtype=np.intp)
        part = np.empty(size, dtype=np.intp)
        first = True
        for axis, n in enumerate(shape):
            if not moved[axis]:
                continue
            offset = offsets[0][z0:z1] if axis == 0 else offsets[axis]
            if scale is not None:
                np.multiply(scale, offset, out=source)
            else:
                source[...] = offset
            # + ½ so that the cast below, a floor for values ≥ 0, rounds to nearest
            source += np.float32((n - 1) / 2 + 0.5)
            if shifting and axis == readout_axis:
                source += field_ppm[z0:z1] * per_ppm
            if nonlinearity < 0 or (shifting and axis == readout_axis):
                np.clip(source, 0, n - 1, out=source)  # k > 0 maps every voxel inwards
            target = index if first else part
            np.copyto(target, source, casting="unsafe")
            if strides[axis] > 1:
                target *= strides[axis]
            if not first:
                index += part
            first = False
        if not isinstance(fixed, int):
            index += fixed[z0:z1] if fixed.shape[0] > 1 else fixed
        np.take(flat_labels, index, out=out_labels[z0:z1], mode="clip")
        if out_field is not None:
            np.take(flat_field, index, out=out_field[z0:z1], mode="clip")

    for_each_slab(work, shape[0], slab_size(shape[1] * shape[2]), report)
    return out_labels, out_field, density


def _unfold(quarter: np.ndarray, half_y: int, half_x: int, out=None) -> np.ndarray:
    """A slab even in y and x from its quarter at ``y ≥ half_y, x ≥ half_x`` (the grid
    centre's side): index ``j`` mirrors ``n − 1 − j``."""
    lower = quarter[:, ::-1][:, :half_y]
    half = np.concatenate([lower, quarter], axis=1)
    return np.concatenate([half[:, :, ::-1][:, :, :half_x], half], axis=2, out=out)
