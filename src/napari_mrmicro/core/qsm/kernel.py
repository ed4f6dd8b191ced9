"""The dipole kernel and the forward field model of magnetic susceptibility.

The field perturbation of a susceptibility distribution χ in a field along b̂ is, in
k-space, ``ΔB/B0 = D(k)·χ(k)`` with ``D(k) = 1/3 − (k·b̂)²/|k|²`` (Salomir et al.,
Concepts Magn Reson B 2003;19:26; Marques & Bowtell, Concepts Magn Reson B 2005;25:65).
The 1/3 term is the Lorentz-sphere correction: a uniform sphere has no field inside.
``D(0) = 0`` (QSM.jl's choice), so fields are defined up to a constant.

Sampling D(k) on the FFT grid truncates a kernel that never decays in k; for a B0 that is
oblique to the grid the resulting field of a sphere is off by up to ~10 % of its peak
everywhere outside. :func:`forward_field` therefore also offers the image-space kernel
(the point-dipole field of each voxel, summed exactly by FFT convolution), which matches
the continuous field; the simulator uses it, while inversions use ``D(k)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend


def _unit(b0_direction) -> np.ndarray:
    b = np.asarray(b0_direction, dtype=np.float64)
    norm = np.linalg.norm(b)
    if b.shape != (3,) or not norm > 0:
        raise ValueError(f"b0_direction must be a non-zero 3-vector, got {b0_direction}")
    return b / norm


def _frequencies(shape, spacing_um, real: bool):
    """Per-axis spatial frequencies in cycles/µm, broadcastable, in FFT order."""
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    if len(shape) != 3 or not np.all(spacing > 0):
        raise ValueError(f"need a 3-D shape and positive spacing_um, got {shape}, {spacing_um}")
    axes = []
    for axis, (n, d) in enumerate(zip(shape, spacing)):
        f = scipy.fft.rfftfreq(n, d) if real and axis == 2 else scipy.fft.fftfreq(n, d)
        axes.append(f.reshape([-1 if i == axis else 1 for i in range(3)]))
    return axes


def dipole_kernel_fft_order(shape, spacing_um, b0_direction=(1.0, 0.0, 0.0), real=False,
                            device="cpu"):
    """The dipole kernel in FFT order (DC at index 0); ``real=True`` gives the half
    spectrum that pairs with ``scipy.fft.rfftn``. Built on ``device`` (a CuPy array for
    ``"gpu"``, :mod:`~napari_mrmicro.core.backend`)."""
    xp = backend.namespace(device)
    out_shape, fill = dipole_slabs(shape, spacing_um, b0_direction, real, xp)
    out = xp.empty(out_shape, np.float32)
    backend.for_each_slab(xp, lambda start, stop: fill(start, stop, out[start:stop]),
                          out.shape[0], out[0].size)
    return out


def dipole_slabs(shape, spacing_um, b0_direction=(1.0, 0.0, 0.0), real=False, xp=np):
    """The dipole kernel of :func:`dipole_kernel_fft_order` built slab by slab: its shape
    and ``fill(start, stop, out)``, which writes planes ``start:stop`` of the first axis
    into the float32 array ``out``, so a caller can fuse the kernel into its own slab pass
    (the kernel is never held whole)."""
    b = _unit(b0_direction)
    k = _frequencies(shape, spacing_um, real)
    # (k·b̂)² with the cross terms averaged over ±k at a Nyquist frequency, whose sign an
    # even-length FFT leaves undetermined: otherwise an oblique B0 gives a kernel that is
    # not even in k and a field that is not point-symmetric.
    kc = [xp.asarray(np.where(np.abs(f) * n * d == n / 2, 0.0, f) if n % 2 == 0 else f)
          for f, n, d in zip(k, shape, np.broadcast_to(spacing_um, (3,)))]
    k = [xp.asarray(f) for f in k]
    out_shape = (k[0].shape[0], k[1].shape[1], k[2].shape[2])

    # the planes' terms once: (k·b̂)² = (b0 k0)² + 2 b0 c0 (b1 c1 + b2 c2) + plane_kb2
    plane_kb2 = (b[1] * k[1]) ** 2 + (b[2] * k[2]) ** 2 + 2 * b[1] * b[2] * kc[1] * kc[2]
    plane_cross = 2 * b[0] * (b[1] * kc[1] + b[2] * kc[2])
    plane_k2 = k[1] ** 2 + k[2] ** 2
    cross = bool(xp.any(plane_cross))  # zero when B0 lies in the first axis' plane

    def fill(start, stop, out):  # float64 per slab of the first axis
        k0, c0 = k[0][start:stop], kc[0][start:stop]
        kb2 = (b[0] * k0) ** 2 + plane_kb2
        if cross:
            kb2 += c0 * plane_cross
        k2 = k0 ** 2 + plane_k2
        with np.errstate(invalid="ignore", divide="ignore"):
            kb2 /= k2
        xp.subtract(1.0 / 3.0, kb2, out=out)  # in float64, rounded once into out
        if start == 0:
            out[0, 0, 0] = 0.0

    return out_shape, fill


def dipole_kernel_spatial_fft(shape, spacing_um, b0_direction=(1.0, 0.0, 0.0), real=False,
                              workers: int = -1):
    """FFT (FFT order) of the image-space dipole kernel ``dV·(3cos²θ − 1)/(4π r³)`` on the
    periodic grid; at ``r = 0`` minus the sum over a Lorentz sphere of radius 4 voxels
    (zero on a cubic lattice). Real and even, so its transform is real; its DC term is set
    to 0 like ``D(0)``. When B0 lies along a grid axis and every size is even, the kernel is
    even along each axis and one octant's DCT-I gives the transform (8× less work)."""
    b = _unit(b0_direction)
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    octant = np.count_nonzero(b) == 1 and all(n % 2 == 0 for n in shape)
    coords = []
    for axis, (n, d) in enumerate(zip(shape, spacing)):
        c = scipy.fft.ifftshift((np.arange(n) - n // 2) * d)  # periodic distance, FFT order
        if octant:
            c = c[: n // 2 + 1]
        coords.append(c.reshape([-1 if i == axis else 1 for i in range(3)]).astype(np.float32))
    r2 = coords[0] ** 2 + coords[1] ** 2 + coords[2] ** 2
    r2[0, 0, 0] = 1.0
    rb = coords[0] * b[0] + coords[1] * b[1] + coords[2] * b[2]
    kernel = (np.prod(spacing) / (4 * np.pi)) * (3 * rb**2 / r2 - 1) / (r2 * np.sqrt(r2))
    # Lorentz sphere: the point dipoles of a non-cubic lattice inside a small sphere do not
    # cancel (they do on a cubic one); the self term takes their sum back out, so a voxel
    # sees no field from its own neighbourhood of uniform χ.
    kernel[0, 0, 0] = 0.0
    near = r2 <= (4 * spacing.max()) ** 2
    weight = np.ones_like(kernel)
    if octant:  # each octant voxel off an axis plane stands for 2, 4 or 8 grid voxels
        for axis, n in enumerate(shape):
            inner = np.full(n // 2 + 1, 2.0, dtype=np.float32)
            inner[[0, -1]] = 1.0
            weight = weight * inner.reshape([-1 if i == axis else 1 for i in range(3)])
    kernel[0, 0, 0] = -(kernel * weight)[near].sum()
    kernel = kernel.astype(np.float32, copy=False)
    if octant:
        spectrum = scipy.fft.dctn(kernel, type=1, workers=workers)
        for axis, n in enumerate(shape):  # X[N − k] = X[k]
            if axis < 2 or not real:
                tail = np.flip(np.take(spectrum, np.arange(1, n // 2), axis=axis), axis=axis)
                spectrum = np.concatenate([spectrum, tail], axis=axis)
    else:
        transform = scipy.fft.rfftn if real else scipy.fft.fftn
        spectrum = transform(kernel, workers=workers).real
    spectrum = spectrum.astype(np.float32, copy=False)
    spectrum[0, 0, 0] = 0.0
    return spectrum


def dipole_kernel(shape, spacing_um, b0_direction=(1.0, 0.0, 0.0)) -> np.ndarray:
    """Dipole kernel ``D(k) = 1/3 − (k·b̂)²/|k|²`` on the centred k-space grid.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` grid.
    spacing_um : float or tuple of float
        Voxel size; physical k is used per axis, so anisotropic voxels are exact.
    b0_direction : tuple of float
        Direction of B0 in array-axis order ``(z, y, x)``.

    Returns
    -------
    ndarray of float32
        DC at index ``N // 2`` on every axis (the project's k-space convention), where
        ``D = 0``.
    """
    return scipy.fft.fftshift(dipole_kernel_fft_order(shape, spacing_um, b0_direction))


def forward_field(chi_ppm, spacing_um, b0_direction=(1.0, 0.0, 0.0), pad: int = 0,
                  kernel: str = "kspace", workers: int = -1, device=None) -> np.ndarray:
    """Field shift (ppm of B0) produced by a susceptibility map χ (ppm), ``F⁻¹[D·F[χ]]``.

    Parameters
    ----------
    chi_ppm : ndarray, (z, y, x)
    spacing_um, b0_direction
        As for :func:`dipole_kernel`.
    pad : int
        Zero-padding in voxels added on every side to limit the periodic wrap-around of
        the FFT convolution (qsm-forward pads the volume to twice its size).
    kernel : {"kspace", "spatial"}
        ``D(k)`` sampled in k-space (the model QSM inversions assume), or the image-space
        point-dipole kernel, exact for the continuous field of the voxels at any B0 angle.
    device : {"cpu", "gpu"}, optional
        Where the convolution runs and ``D(k)`` is built
        (:mod:`~napari_mrmicro.core.backend`); the image-space kernel is built on the CPU.

    Returns
    -------
    ndarray of float32, same shape as ``chi_ppm``.
    """
    chi = np.asarray(chi_ppm, dtype=np.float32)
    if chi.ndim != 3:
        raise ValueError(f"forward_field: chi_ppm must be 3-D, got shape {chi.shape}")
    if not np.all(np.isfinite(chi)):
        raise ValueError("forward_field: chi_ppm contains NaN or infinite values")
    if pad:
        chi = np.pad(chi, int(pad))
    device = backend.resolve(device)
    if kernel == "kspace":
        weights = dipole_kernel_fft_order(chi.shape, spacing_um, b0_direction, real=True,
                                          device=device)
    elif kernel == "spatial":
        weights = dipole_kernel_spatial_fft(chi.shape, spacing_um, b0_direction, real=True,
                                            workers=workers)
    else:
        raise ValueError(f"forward_field: kernel must be 'kspace' or 'spatial', got {kernel!r}")
    xp = backend.namespace(device)
    fft = backend.fft(xp)
    spectrum = fft.rfftn(xp.asarray(chi), workers=workers)
    spectrum *= xp.asarray(weights)
    field = fft.irfftn(spectrum, s=chi.shape, workers=workers, overwrite_x=True)
    if pad:
        field = field[(slice(pad, -pad),) * 3]
    return backend.to_host(field).astype(np.float32, copy=False)
