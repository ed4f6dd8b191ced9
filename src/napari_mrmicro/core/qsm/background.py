"""Background field removal: total field → local field of the sources inside the mask.

Fields of sources outside the mask (air, the sample holder, shim residuals) are harmonic
inside it. Three removal methods, each returning ``(local_field_ppm, mask)`` where ``mask``
is the region in which the local field is valid:

* :func:`vsharp` / :func:`sharp` — spherical mean value filtering and truncated
  deconvolution (SHARP: Schweser et al., NeuroImage 2011;54:2789; V-SHARP with radii
  shrinking towards the mask boundary: Wu et al., Magn Reson Med 2012;67:137; Li et al.,
  NeuroImage 2011;55:1645). Defaults as in QSM.jl/SEPIA: radii from 18·min(voxel) down to
  2·max(voxel) in steps of 2·max(voxel) (µm), threshold 0.05; the mask is eroded by each
  kernel's radius.
* :func:`pdf` — projection onto dipole fields (Liu et al., NMR Biomed 2011;24:1129): the
  background is the field of the susceptibility outside the mask that best explains the
  total field inside it, found by conjugate gradients.
* :func:`lbv` — Laplacian boundary value (Zhou et al., NMR Biomed 2014;27:312): the
  background solves Laplace's equation inside the mask with the total field as its value
  on the mask boundary. Zhou et al. difference it with the 7-point Laplacian and solve it
  by full multigrid; here the Laplacian is fourth order wherever the mask holds its
  19-point stencil, and the solve is BiCGSTAB preconditioned by a multigrid V-cycle
  (:mod:`.multigrid`): tolerance 1e-4 as published, in a handful of iterations whatever
  the size.

The SMV kernels are balls of physical radius on the (possibly anisotropic) grid, normalised
to sum 1. All transforms are real FFTs (``scipy.fft``, ``workers=-1``); arrays float32.
Fields are in ppm, but any unit passes through unchanged (the methods are linear).

Every method takes ``device`` (:mod:`~napari_mrmicro.core.backend`): on the GPU the same
float32 operations run over the whole volume with CuPy (cuFFT), where the CPU runs them
slab by slab on all cores (compiled loops for V-SHARP); numpy comes back.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core._masks import bounding_slices
from napari_mrmicro.core.memory import check_memory
from napari_mrmicro.core.qsm import _fused
from napari_mrmicro.core.qsm.inversion import (
    Grid, check_inputs, check_iteration, check_positive, check_weight, stop)
from napari_mrmicro.core.qsm.multigrid import DirichletLaplacian, VCycle

#: Float32 volumes of the full grid :func:`vsharp` holds at its peak.
VSHARP_VOLUMES = 10
#: Float32 volumes of the padded grid :func:`pdf` holds at its peak (W², the
#: mask, the dipole, CG's χ, r, p and A·p, a spectrum and its inverse transform).
PDF_VOLUMES = 9
#: Float32 volumes of the mask's bounding box :func:`lbv` holds at its peak on the CPU
#: (measured 16.1-16.9 with tracemalloc at 256×256×128: BiCGSTAB's eight, the V-cycle's
#: iterate, sweep, correction and coarse levels, the field in and out, the masks) and on
#: the GPU, whose whole-volume array form of the fourth-order pass adds its temporaries
#: (22.1, measured through that form on numpy).
LBV_VOLUMES = {"cpu": 18, "gpu": 24}


def default_vsharp_radii_um(spacing_um) -> np.ndarray:
    """V-SHARP radii (µm): 18·min(voxel) down to 2·max(voxel) in steps of 2·max(voxel),
    the last one always 2·max(voxel) (QSM.jl's default, Wu et al. 2012)."""
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    largest, smallest, step = 18 * spacing.min(), 2 * spacing.max(), 2 * spacing.max()
    radii = list(np.arange(largest, smallest, -step)) if largest > smallest else []
    return np.asarray(radii + [smallest])


def smv_kernel(shape, spacing_um, radius_um, xp=np) -> np.ndarray:
    """Spherical mean value kernel in FFT order (centre at index 0): the voxels within
    ``radius_um`` of the centre (physical distance), each weighted 1/count; float32, an
    array of the namespace ``xp`` (built there: only the corner blocks the ball can reach
    are evaluated on the host)."""
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    limit = radius_um**2 * (1 + 1e-9)
    squares, near = [], []
    for axis, (n, d) in enumerate(zip(shape, spacing)):
        c2 = scipy.fft.ifftshift((np.arange(n) - n // 2) * d) ** 2
        index = np.flatnonzero(c2 <= limit)  # a sum of squares is never below one of them
        near.append(index)
        squares.append(c2[index].reshape([-1 if i == axis else 1 for i in range(3)]))
    ball = (squares[0] + squares[1] + squares[2]) <= limit
    kernel = xp.zeros(shape, np.float32)
    values = ball * np.float32(1 / np.count_nonzero(ball))
    if xp is np:
        kernel[np.ix_(*near)] = values
    else:
        kernel[xp.ix_(*[xp.asarray(index) for index in near])] = xp.asarray(values)
    return kernel


def _product(spectrum, factor, out):
    """``out = spectrum · factor`` (a real filter on a half spectrum), slab by slab on all
    cores; ``out`` may be ``spectrum``."""
    _fused.multiply_spectrum(spectrum, factor, out)
    return out


def _edge_clear(shape, spacing, radius_um) -> tuple[slice, ...]:
    """Voxels whose ball of ``radius_um`` stays inside the array (no periodic wrap)."""
    reach = [int(math.floor(radius_um / d * (1 + 1e-9))) for d in spacing]
    return tuple(slice(r, n - r) for r, n in zip(reach, shape))


def vsharp(total_field_ppm, mask, spacing_um, radii_um=None, threshold: float = 0.05,
           device=None):
    """Local field by variable-radius SHARP (Wu et al., MRM 2012; Schweser et al. 2011).

    For each radius r (largest first) the high-passed field ``f − S_r ⊗ f`` is kept on the
    voxels whose r-ball lies in the mask and that no larger ball has claimed; the combined
    map is deconvolved by the largest kernel, ``1/(1 − Ŝ_R)`` where ``1 − Ŝ_R > threshold``
    and 0 elsewhere (truncated SVD), and masked by the mask eroded by the smallest radius.

    Parameters
    ----------
    total_field_ppm : ndarray (z, y, x)
        Unwrapped total field (ppm); values outside ``mask`` are ignored.
    mask : ndarray (z, y, x)
        Region of reliable field (the specimen).
    spacing_um : float or 3 floats
        Voxel size (µm); kernels are balls of physical radius.
    radii_um : sequence of float, optional
        SMV radii (µm), each ≥ the largest voxel dimension; default
        :func:`default_vsharp_radii_um`. One radius is SHARP.
    threshold : float
        Truncation level of ``1 − Ŝ`` (0.05).
    device : {"cpu", "gpu"}, optional
        Where it runs (default the CPU, or the default of
        :func:`~napari_mrmicro.core.backend.use_device`).

    Returns
    -------
    local_field_ppm : ndarray of float32
        Zero outside the eroded mask. Its mean (and the lowest frequencies, truncated) is
        not determined.
    eroded_mask : ndarray of bool
        The mask eroded by the smallest radius.
    """
    where = "vsharp"
    field, mask, spacing = check_inputs(total_field_ppm, mask, spacing_um, where,
                                        "total_field_ppm")
    threshold = check_positive(threshold, "threshold", where)
    if not threshold < 1:
        raise ValueError(f"{where}: threshold must be below 1, got {threshold!r}")
    radii = default_vsharp_radii_um(spacing) if radii_um is None else np.atleast_1d(
        np.asarray(radii_um, dtype=np.float64))
    if radii.ndim != 1 or radii.size == 0 or not np.all(np.isfinite(radii)) \
            or radii.min() < max(spacing):
        raise ValueError(f"{where}: radii_um must be finite and at least the largest voxel "
                         f"size {max(spacing):g} µm, got {radii_um!r}")
    radii = np.sort(radii)[::-1]
    if backend.resolve(device) == "gpu":
        backend.check_device_memory(4 * VSHARP_VOLUMES * field.size,
                                    f"{where} of a {field.shape} field", "gpu")
        local, claimed = _vsharp_gpu(field, mask, spacing, radii, threshold)
        return backend.to_host(local), backend.to_host(claimed)
    check_memory(4 * VSHARP_VOLUMES * field.size, f"{where} of a {field.shape} field")
    shape = field.shape
    fft = backend.fft(np)
    field_spectrum = fft.rfftn(np.where(mask, field, np.float32(0)))
    mask_spectrum = fft.rfftn(mask.astype(np.float32))
    combined = np.zeros(shape, np.float32)
    claimed = np.zeros(shape, bool)
    new = np.empty(shape, bool)
    high_pass = np.empty(mask_spectrum.shape, np.float32)
    inverse = None
    for radius in radii:
        kernel = smv_kernel(shape, spacing, radius)
        count = round(1 / float(kernel[0, 0, 0]))
        buffer = fft.rfftn(kernel)  # reused for each product below
        del kernel
        # 1 − Ŝ, and the mask's ball mean, which is 1 (to float32 precision) where it fits
        _fused.smv_products(buffer, mask_spectrum, high_pass)
        mean = fft.irfftn(buffer, s=shape, overwrite_x=True)
        claims = _fused.new_claims(mean, np.float32(1 - 0.5 / count),
                                   _edge_clear(shape, spacing, radius), claimed, new)
        del mean
        if claims:
            filtered = fft.irfftn(_product(field_spectrum, high_pass, buffer), s=shape,
                                  overwrite_x=True)
            _fused.claim(filtered, new, combined, claimed)
            del filtered
        if inverse is None and claims:
            keep = high_pass > threshold
            inverse = np.where(keep, 1 / np.where(keep, high_pass, 1), 0).astype(np.float32)
        del buffer
    if not claimed.any():
        raise ValueError(f"{where}: the mask is too thin for an SMV radius of "
                         f"{radii.min():g} µm: eroding it leaves nothing")
    spectrum = fft.rfftn(combined)
    local = fft.irfftn(_product(spectrum, inverse, spectrum), s=shape,
                       overwrite_x=True).astype(np.float32, copy=False)
    local[~claimed] = 0
    return local, claimed


def _vsharp_gpu(field, mask, spacing, radii, threshold):
    """:func:`vsharp` on the GPU: the same float32 operations as the compiled CPU passes,
    in the same order, over the whole volume; device arrays come back."""
    xp = backend.namespace("gpu")
    fft = backend.fft(xp)
    shape = field.shape
    inside = xp.asarray(mask)
    field_spectrum = fft.rfftn(xp.where(inside, xp.asarray(field), np.float32(0)))
    mask_spectrum = fft.rfftn(inside.astype(np.float32))
    del inside
    combined = xp.zeros(shape, np.float32)
    claimed = xp.zeros(shape, bool)
    inverse = None
    for radius in radii:
        kernel = smv_kernel(shape, spacing, radius, xp)
        count = round(1 / float(kernel[0, 0, 0]))
        ball = fft.rfftn(kernel).real  # the ball is even: Ŝ is real
        del kernel
        high_pass = np.float32(1) - ball
        mean = fft.irfftn(mask_spectrum * ball, s=shape, overwrite_x=True)
        del ball
        new = xp.zeros(shape, bool)
        clear = _edge_clear(shape, spacing, radius)
        new[clear] = mean[clear] > np.float32(1 - 0.5 / count)
        del mean
        new &= ~claimed
        claims = bool(new.any())
        if claims:
            filtered = fft.irfftn(field_spectrum * high_pass, s=shape, overwrite_x=True)
            xp.copyto(combined, filtered, where=new)
            claimed |= new
            del filtered
        if inverse is None and claims:
            keep = high_pass > threshold
            inverse = xp.where(keep, 1 / xp.where(keep, high_pass, 1), 0).astype(np.float32)
        del high_pass, new
    if not bool(claimed.any()):
        raise ValueError(f"vsharp: the mask is too thin for an SMV radius of "
                         f"{radii.min():g} µm: eroding it leaves nothing")
    spectrum = fft.rfftn(combined)
    spectrum *= inverse
    local = fft.irfftn(spectrum, s=shape, overwrite_x=True).astype(np.float32, copy=False)
    local[~claimed] = 0
    return local, claimed


def sharp(total_field_ppm, mask, spacing_um, radius_um=None, threshold: float = 0.05,
          device=None):
    """Local field by SHARP with one SMV radius (Schweser et al., NeuroImage 2011), default
    18·min(voxel) µm; see :func:`vsharp`."""
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=np.float64), (3,))
    radius = 18 * spacing.min() if radius_um is None else radius_um
    return vsharp(total_field_ppm, mask, spacing_um, radii_um=[radius], threshold=threshold,
                  device=device)


def _conjugate_gradient(apply, rhs, x, max_iter, tol, callback):
    """CG for the s.p.d. ``apply`` from ``x``; stops at ``‖r‖ ≤ tol·‖rhs‖``. The arrays
    are numpy or CuPy (:func:`~napari_mrmicro.core.backend.array_namespace`)."""
    xp = backend.array_namespace(x)
    r = rhs - apply(x)
    p = r.copy()
    rr = float(xp.vdot(r, r).real)
    scale = max(float(xp.linalg.norm(rhs)), 1e-30)
    for iteration in range(max_iter):
        if math.sqrt(rr) <= tol * scale:
            break
        ap = apply(p)
        alpha = np.float32(rr / float(xp.vdot(p, ap).real))

        def step(start, stop):  # x += αp, r −= α·Ap, slab by slab on all cores
            scaled = xp.multiply(p[start:stop], alpha)
            x[start:stop] += scaled
            r[start:stop] -= xp.multiply(ap[start:stop], alpha, out=scaled)

        backend.for_each_slab(xp, step, x.shape[0], x[0].size)
        rr_new = float(xp.vdot(r, r).real)
        beta = np.float32(rr_new / rr)

        def direction(start, stop):  # p = βp + r
            p[start:stop] *= beta
            p[start:stop] += r[start:stop]

        backend.for_each_slab(xp, direction, x.shape[0], x[0].size)
        rr = rr_new
        if stop(math.sqrt(rr) / scale, tol, callback, iteration, max_iter):
            break
    return x


def _bicgstab(apply, rhs, x, max_iter, tol, callback, precondition):
    """Right-preconditioned BiCGSTAB (van der Vorst, SIAM J Sci Stat Comput 1992;13:631;
    Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., SIAM 2003, alg. 7.7) for
    the non-symmetric ``apply`` from ``x``, with ``precondition(r) ≈ apply⁻¹ r``; stops at
    ``‖r‖ ≤ tol·‖rhs‖``, or when the iteration breaks down (a zero inner product: the
    residual has reached the rounding of float32). Numpy or CuPy arrays."""
    xp = backend.array_namespace(x)
    n, plane = x.shape[0], x[0].size
    r = rhs - apply(x)
    shadow = r.copy()
    p = r.copy()
    v = xp.zeros_like(r)
    rho = alpha = omega = 1.0
    scale = max(float(xp.linalg.norm(rhs)), 1e-30)
    norm = float(xp.linalg.norm(r))
    for iteration in range(max_iter):
        if norm <= tol * scale:
            break
        rho_new = float(xp.vdot(shadow, r))
        if rho_new == 0:
            break
        if iteration:
            beta, keep = np.float32(rho_new / rho * alpha / omega), np.float32(omega)

            def direction(start, stop):  # p = r + β(p − ωv)
                here = p[start:stop]
                here -= keep * v[start:stop]
                here *= beta
                here += r[start:stop]

            backend.for_each_slab(xp, direction, n, plane)
        rho = rho_new
        p_hat = precondition(p)
        v = apply(p_hat)
        projected = float(xp.vdot(shadow, v))
        if projected == 0:
            break
        alpha = rho / projected
        step = np.float32(alpha)

        def half_step(start, stop):  # x += α·p̂, r −= α·v (r is now s)
            x[start:stop] += step * p_hat[start:stop]
            r[start:stop] -= step * v[start:stop]

        backend.for_each_slab(xp, half_step, n, plane)
        norm = float(xp.linalg.norm(r))
        if norm <= tol * scale:
            stop(norm / scale, tol, callback, iteration, max_iter)
            break
        s_hat = precondition(r)
        t = apply(s_hat)
        tt = float(xp.vdot(t, t))
        if tt == 0:
            break
        omega = float(xp.vdot(t, r)) / tt
        smooth = np.float32(omega)

        def full_step(start, stop):  # x += ω·ŝ, r −= ω·t
            x[start:stop] += smooth * s_hat[start:stop]
            r[start:stop] -= smooth * t[start:stop]

        backend.for_each_slab(xp, full_step, n, plane)
        norm = float(xp.linalg.norm(r))
        if stop(norm / scale, tol, callback, iteration, max_iter) or omega == 0:
            break
    return x


def pdf(total_field_ppm, mask, spacing_um, b0_direction=(1.0, 0.0, 0.0), weight=None,
        tol: float = 1e-4, max_iter: int = 100, pad=0, callback=None, device=None,
        start=None, return_sources: bool = False):
    """Local field by projection onto dipole fields (Liu et al., NMR Biomed 2011).

    Solves ``min_χb ‖W·M·(f − D ⊗ χb)‖²`` over susceptibilities ``χb`` outside the mask ``M``
    by conjugate gradients on the normal equations ``(P D M W² M D P) χb = P D M W² f``
    (``P`` projects outside the mask), from ``χb = 0``; the background is ``D ⊗ χb``.

    Parameters
    ----------
    total_field_ppm, mask, spacing_um
        As for :func:`vsharp`.
    b0_direction : 3-vector
        B0 in ``(z, y, x)``.
    weight : ndarray (z, y, x), optional
        W inside the mask, e.g. magnitude or 1/σ of the field (default 1).
    tol : float
        Stop when the normal-equation residual falls below ``tol`` times its start value
        (published choices span 1e-5 … 0.1). 1e-4: on the test phantoms (air and spheres a
        few voxels outside a spherical mask) the largest background left inside the mask
        is 23 %, 6 %, 3.4 % and 1.2–1.7 % of the background's amplitude at 1e-3, 3e-4,
        1e-4 and 3e-5 (14–20, 26–48, 67–109 and 145–206 iterations): the error sits at the
        mask boundary, where the RMS falls much earlier (1.8 % at 1e-3, 0.3–0.4 % at 1e-4).
    max_iter : int
        At most this many CG iterations (each two FFT pairs). With a local field present
        the tolerance is seldom reached (not in 1000 iterations on
        ``benchmarks/qsm_head_phantom.py``), and late iterations fit part of the local
        field near the boundary: qsm-forward's phantom through the pipeline (PDF + TV)
        scores χ NRMSE 12.6, 12.7 and 14.6 % at 50, 100 and 300
        (with an air pocket 16.9, 17.1 and 20.1 %; PDF + MEDI 25.8 → 20.6 % from 300 to
        100), the head phantom the same at each, the demo cochlea 2.4 points worse at 100
        than at 300 (with passes). 100 suffices for the test phantoms' 1e-4 (67–109).
    pad : int or 3 ints
        Zero voxels per side: room for background sources beyond the field of view.
    callback : callable, optional
        ``callback(iteration, total)``; returning ``False`` stops with the current fit.
    device : {"cpu", "gpu"}, optional
        Where the conjugate gradients run (default the CPU, or the default of
        :func:`~napari_mrmicro.core.backend.use_device`).
    start : ndarray, optional
        Background susceptibilities to start from instead of zero: the ``sources`` a
        previous call returned for a nearby field on the same grid (a warm start; the
        boundary passes of :func:`~napari_mrmicro.core.qsm.pipeline.local_field_and_chi`
        refit fields that differ a little from pass to pass).
    return_sources : bool
        Also return ``sources``.

    Returns
    -------
    local_field_ppm : ndarray of float32
        Zero outside the mask.
    mask : ndarray of bool
        The input mask (PDF does not erode).
    sources : ndarray of float32
        Only with ``return_sources``: the fitted ``χb`` (ppm) on PDF's padded grid.
    """
    where = "pdf"
    field, mask, spacing = check_inputs(total_field_ppm, mask, spacing_um, where,
                                        "total_field_ppm")
    check_iteration(max_iter, tol, callback, where)
    w2 = mask.astype(np.float32)
    if weight is not None:
        w2 *= check_weight(weight, field.shape, "weight", where) ** 2
        if not w2.any():
            raise ValueError(f"{where}: weight is zero everywhere inside the mask")
    grid = Grid(field.shape, spacing, b0_direction, pad, where)
    device = backend.resolve(device)
    grid.check_memory(PDF_VOLUMES + (start is not None), device)  # start stays the caller's
    xp = backend.namespace(device)
    fft = backend.fft(xp)
    dipole = grid.dipole(device)
    w2 = xp.asarray(grid.embed(w2))
    inside = xp.asarray(grid.embed(mask.astype(np.float32)) != 0)  # the padding is outside
    n, plane = grid.padded[0], math.prod(grid.padded[1:])

    def convolve(x):
        spectrum = fft.rfftn(x)
        if xp is np:
            _product(spectrum, dipole, spectrum)
        else:
            spectrum *= dipole
        return fft.irfftn(spectrum, s=grid.padded, overwrite_x=True).astype(np.float32,
                                                                            copy=False)

    def normal(x):  # x is 0 inside the mask: CG's start, residuals and directions are
        once = convolve(x)
        backend.for_each_slab(xp, lambda start, stop: xp.multiply(
            once[start:stop], w2[start:stop], out=once[start:stop]), n, plane)
        twice = convolve(once)
        backend.for_each_slab(xp, lambda start, stop: xp.copyto(
            twice[start:stop], np.float32(0), where=inside[start:stop]), n, plane)
        return twice

    rhs = convolve(w2 * xp.asarray(grid.embed(field)))
    rhs[inside] = 0
    if start is None:
        chi = xp.zeros(grid.padded, np.float32)
    else:
        if tuple(start.shape) != grid.padded:
            raise ValueError(f"{where}: start has shape {tuple(start.shape)}, not the "
                             f"grid's {grid.padded}")
        chi = xp.asarray(start, dtype=np.float32).copy()
        if not bool(xp.isfinite(chi).all()):
            raise ValueError(f"{where}: start has NaN or infinite values")
        chi[inside] = 0
    chi = _conjugate_gradient(normal, rhs, chi, int(max_iter), float(tol), callback)
    background = backend.to_host(convolve(chi)[grid.crop])
    local = np.where(mask, field - background, np.float32(0)).astype(np.float32)
    if return_sources:
        return local, mask.copy(), chi
    return local, mask.copy()


def lbv(total_field_ppm, mask, spacing_um, tol: float = 1e-4, max_iter: int = 2000,
        callback=None, device=None):
    """Local field by Laplacian boundary value removal (Zhou et al., NMR Biomed 2014).

    The background ``b`` solves ``∇²b = 0`` in the mask interior with ``b = f`` on the
    mask's one-voxel boundary (the mask voxels with a face neighbour outside it or on the
    array edge); the local field is ``f − b``. The Laplacian uses the physical spacing: the
    compact fourth-order 19-point stencil (:mod:`.multigrid`) at interior voxels whose 18
    face and edge neighbours all lie in the mask, the 7-point stencil at the others, so the
    interior is the same as with the 7-point stencil alone. Zhou et al. use the 7-point one;
    near air its error is large where the background curves most (the field of a dipole
    outside a ball, 128³: largest error 0.6 % of the background with the 7-point stencil,
    0.005 % with this one; ``benchmarks/qsm_head_phantom.py``: background left 20 → 11 % of
    the local field), and it falls only as h², this one's as h⁴ away from the boundary. The
    solve is BiCGSTAB for ``b − f`` from 0, preconditioned by multigrid V-cycles.

    Parameters
    ----------
    total_field_ppm, mask, spacing_um
        As for :func:`vsharp`.
    tol : float
        Relative residual at which the solve stops (1e-4, as Zhou et al.).
    max_iter : int
        At most this many BiCGSTAB iterations (each two V-cycles and two applications of
        the Laplacian, no FFT); 3 for the 205-voxel ellipsoid of ``benchmarks/bench_qsm.py``
        (0.6 s on 2 cores), nearly independent of the size.
    callback : callable, optional
        ``callback(iteration, total)``; returning ``False`` stops with the current solution.
    device : {"cpu", "gpu"}, optional
        Where the iterations run (default the CPU, or the default of
        :func:`~napari_mrmicro.core.backend.use_device`).

    Returns
    -------
    local_field_ppm : ndarray of float32
        Zero outside the interior mask.
    interior_mask : ndarray of bool
        The mask without its boundary layer (where the local field is 0 by construction).
    """
    where = "lbv"
    field, mask, spacing = check_inputs(total_field_ppm, mask, spacing_um, where,
                                        "total_field_ppm")
    check_iteration(max_iter, tol, callback, where)
    box = bounding_slices(mask)
    device = backend.resolve(device)
    box_voxels = int(np.prod([s.stop - s.start + 2 for s in box]))
    backend.check_memory_on(4 * LBV_VOLUMES[device] * box_voxels,
                            f"{where} of a {field.shape} field", device)
    sub = np.pad(mask[box], 1)
    interior = sub.copy()
    for axis in range(3):
        interior &= np.roll(sub, 1, axis) & np.roll(sub, -1, axis)
    if not interior.any():
        raise ValueError(f"{where}: the mask has no interior voxel (it is one voxel thin)")
    fourth_order = interior.copy()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        for shift in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            fourth_order &= np.roll(sub, shift, (a, b))
    inv_h2 = (min(spacing) / np.asarray(spacing)) ** 2
    xp = backend.namespace(device)
    f = xp.asarray(np.pad(np.where(mask, field, np.float32(0))[box], 1))
    inside = xp.asarray(interior)
    laplacian = DirichletLaplacian(inside, inv_h2, xp.asarray(fourth_order))
    # b = f + e with e = 0 on the boundary: −∇²e = ∇²f in the interior, from e = 0, so the
    # right-hand side is the Laplacian of the local field and tol is relative to it.
    correction = _bicgstab(laplacian, -laplacian(f), xp.zeros_like(f), int(max_iter),
                           float(tol), callback, VCycle(laplacian))
    local_sub = backend.to_host(xp.where(inside, -correction, np.float32(0))[1:-1, 1:-1, 1:-1])
    local = np.zeros(field.shape, np.float32)
    local[box] = local_sub
    interior_mask = np.zeros(field.shape, bool)
    interior_mask[box] = interior[1:-1, 1:-1, 1:-1]
    return local, interior_mask
