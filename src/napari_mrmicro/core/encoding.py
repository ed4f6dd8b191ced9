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
    """Labels, and field, at the positions where the scanner encodes them.

    Backward nearest-neighbour mapping on the labels' own grid: each voxel takes the
    label (and field) of the spin encoded there.

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
    """
    shifting = field_ppm is not None and pixels_per_ppm != 0
    if not shifting and not nonlinearity:
        return labels, field_ppm
    shape = labels.shape
    strides = (shape[1] * shape[2], shape[2], 1)
    moved = [bool(nonlinearity) or (shifting and axis == readout_axis) for axis in range(3)]
    out_labels = np.empty_like(labels)
    out_field = None if field_ppm is None else np.empty_like(field_ppm)
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
    # the index contribution of the axes that do not move
    fixed = sum(np.arange(n).reshape(along(a)) * strides[a]
                for a, n in enumerate(shape) if not moved[a])

    def work(z0, z1):
        size = (z1 - z0,) + shape[1:]
        scale = None
        if nonlinearity:
            # encoded radius r' = r(1 + k r²); its source r = r'·s with s = 1/(1 + k r'² s²),
            # two fixed-point steps from s = 1 (relative error ~ (k r²)³)
            kr2 = k_squares[0][z0:z1] + k_plane
            scale = kr2 + np.float32(1)
            np.reciprocal(scale, out=scale)
            step = scale * scale
            step *= kr2
            step += 1
            np.reciprocal(step, out=scale)
            del kr2, step
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
    return out_labels, out_field
