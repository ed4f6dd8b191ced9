"""Fused CPU loops for the element-wise work between the transforms of the QSM solvers.

numpy runs each operation as a pass over the whole volume (or a slab of it); these loops
do all operations of a voxel in one visit (compiled by numba, Lam et al., LLVM-HPC 2015),
with the same float32 operations in the same order as the numpy form in the calling
module, so the results are the same. They run on a range of planes of the first axis and
release the GIL, so the slab pool of :mod:`~napari_mrmicro.core.backend` runs ranges on all
cores. The GPU runs the numpy form on CuPy; these loops are the CPU's. Compiled on first
use (:mod:`~napari_mrmicro.core._compiled`: numba is imported then) and cached on disk.
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core import _compiled, backend

_jit = _compiled.njit(cache=True, nogil=True, error_model="numpy")


def admm_combine(rhs, tv, dipole, symbols, mu, rho) -> None:
    """The χ̂ of the ADMM step of :func:`.tv.admm_tv` on the half spectrum, in place: with
    ``d = μD² + ρ|E|²`` (``|E|² = (e0 + e1) + e2`` from the three ``symbols``; ``d = 1`` at
    k = 0), ``χ̂ = (μD/d)·rhs + (ρ/d)·tv`` written to ``rhs`` and ``Dχ̂`` to ``tv``."""
    re_rhs, re_tv = rhs.view(np.float32), tv.view(np.float32)
    e0, e1, e2 = (np.ascontiguousarray(e.ravel()) for e in symbols)
    backend.for_each_slab(np, lambda start, stop: _admm_combine(
        re_rhs, re_tv, dipole, e0, e1, e2, mu, rho, start, stop), rhs.shape[0],
        re_rhs[0].size)


@_jit
def _admm_combine(rhs, tv, dipole, e0, e1, e2, mu, rho, start, stop):
    ny, nx = dipole.shape[1], dipole.shape[2]
    dc = (rhs[0, 0, 0], rhs[0, 0, 1], tv[0, 0, 0], tv[0, 0, 1])
    for z in range(start, stop):
        for y in range(ny):
            ezy = e0[z] + e1[y]
            for k in range(nx):
                d = dipole[z, y, k]
                denominator = mu * (d * d) + rho * (ezy + e2[k])
                data_gain, tv_gain = (mu * d) / denominator, rho / denominator
                for j in (2 * k, 2 * k + 1):
                    value = rhs[z, y, j] * data_gain + tv[z, y, j] * tv_gain
                    rhs[z, y, j] = value
                    tv[z, y, j] = value * d
    if start == 0:  # k = 0: the denominator is 1 there (D = |E|² = 0)
        d = dipole[0, 0, 0]
        for j in range(2):
            value = dc[j] * (mu * d) + dc[2 + j] * rho
            rhs[0, 0, j] = value
            tv[0, 0, j] = value * d


def multiply_spectrum(spectrum, factor, out) -> None:
    """``out = spectrum · factor`` for a complex spectrum and a real filter of its shape
    (``out`` may be ``spectrum``), slab by slab on all cores."""
    source, target = spectrum.view(np.float32), out.view(np.float32)
    backend.for_each_slab(np, lambda start, stop: multiply_planes(
        source[start:stop], factor[start:stop], target[start:stop]), factor.shape[0],
        source[0].size)


@_jit
def multiply_planes(spectrum, factor, out):
    """:func:`multiply_spectrum` on float32 views ``(z, y, 2·x)`` of the complex arrays."""
    nz, ny, nx = factor.shape
    for z in range(nz):
        for y in range(ny):
            for k in range(nx):
                f = factor[z, y, k]
                out[z, y, 2 * k] = spectrum[z, y, 2 * k] * f
                out[z, y, 2 * k + 1] = spectrum[z, y, 2 * k + 1] * f


@_jit
def tikhonov_planes(spectrum, dipole, e0, e1, e2, lam, first):
    """``spectrum ·= D / (D² + λ·((e0 + e1) + e2))`` in place on float32 views
    ``(z, y, 2·x)`` of a slab of the half spectrum, whose first plane is plane ``first``
    of the whole (:func:`.tikhonov.invert_tikhonov`; the denominator is 1 at k = 0)."""
    nz, ny, nx = dipole.shape
    dc = (spectrum[0, 0, 0], spectrum[0, 0, 1])
    for z in range(nz):
        for y in range(ny):
            plane = e0[first + z] + e1[y]
            for k in range(nx):
                d = dipole[z, y, k]
                gain = d / (d * d + lam * (plane + e2[k]))
                spectrum[z, y, 2 * k] *= gain
                spectrum[z, y, 2 * k + 1] *= gain
    if first == 0:
        gain = dipole[0, 0, 0] / np.float32(1)
        spectrum[0, 0, 0] = dc[0] * gain
        spectrum[0, 0, 1] = dc[1] * gain


def admm_update(dchi, s, w2f, w2mu, mu, chi_new, chi, dual, t0, weight, scales, adjoint):
    """One ADMM update after the transforms of :func:`.tv.admm_tv`, voxel by voxel:
    ``d = Dχ + s``; ``y = (μd + W²f)/(W² + μ)``; ``s ← d − y``; ``dchi ← y − s`` (the next
    ``y − s``); per axis ``w = ∇χ + U``, ``U ← clip(w, ±t)`` with ``t = t0·g`` (float32
    ``t0``, the gradient weight ``g`` read per voxel from ``weight`` (3, z, y, x), of any
    real dtype: MEDI's binary weight as bytes), ``V = (w − U) − U``; and
    ``adjoint ← ∇ᵀV = Σ_a (V_a[i−1] − V_a[i])·scale_a``, the next iteration's input, from V
    held one plane at a time (V is never stored whole).

    Runs of planes go on all cores, each run in order; a run first recomputes V_0 of the
    plane before it from that plane's old ``U_0``, copied before any run starts.
    Returns ``(‖χ_new − χ‖², ‖χ_new‖²)``, summed in float64.
    """
    nz = chi.shape[0]
    bounds = backend.plane_runs(nz)
    halo = np.stack([dual[0, (start - 1) % nz] for start, _ in bounds])
    sums = {}

    def work(start, stop):
        sums[start] = _admm_update(dchi, s, w2f, w2mu, mu, chi_new, chi, dual, t0, weight,
                                   scales, adjoint, start, stop,
                                   halo[bounds.index((start, stop))])

    backend.for_each_run(work, bounds)
    return tuple(sum(sums[start][i] for start, _ in bounds) for i in (0, 1))


@_jit
def _admm_update(dchi, s, w2f, w2mu, mu, chi_new, chi, dual, t0, weight, scales, adjoint,
                 z0, z1, halo):
    nz, ny, nx = chi.shape
    s0, s1, s2 = scales[0], scales[1], scales[2]
    before = np.empty((ny, nx), np.float32)  # V_0 of the plane before
    v0 = np.empty((ny, nx), np.float32)
    v1 = np.empty((ny, nx), np.float32)
    v2 = np.empty((ny, nx), np.float32)
    steps = np.empty(nx, np.float32)
    zb = (z0 - 1) % nz
    for y in range(ny):
        for x in range(nx):
            w = (chi_new[z0, y, x] - chi_new[zb, y, x]) * s0 + halo[y, x]
            before[y, x] = _shrink(w, t0 * np.float32(weight[0, zb, y, x]))[1]
    change = 0.0
    norm = 0.0
    for z in range(z0, z1):
        zf = 0 if z == nz - 1 else z + 1
        for y in range(ny):
            yf = 0 if y == ny - 1 else y + 1
            for x in range(nx):
                d = dchi[z, y, x] + s[z, y, x]
                y_new = (d * mu + w2f[z, y, x]) / w2mu[z, y, x]
                s_new = d - y_new
                s[z, y, x] = s_new
                dchi[z, y, x] = y_new - s_new
            for x in range(nx):
                here = chi_new[z, y, x]
                w = (chi_new[zf, y, x] - here) * s0 + dual[0, z, y, x]
                dual[0, z, y, x], v0[y, x] = _shrink(w, t0 * np.float32(weight[0, z, y, x]))
                w = (chi_new[z, yf, x] - here) * s1 + dual[1, z, y, x]
                dual[1, z, y, x], v1[y, x] = _shrink(w, t0 * np.float32(weight[1, z, y, x]))
            for x in range(nx):
                xf = 0 if x == nx - 1 else x + 1
                here = chi_new[z, y, x]
                w = (chi_new[z, y, xf] - here) * s2 + dual[2, z, y, x]
                dual[2, z, y, x], v2[y, x] = _shrink(w, t0 * np.float32(weight[2, z, y, x]))
                steps[x] = here - chi[z, y, x]
            change, norm = _add_squares(steps, chi_new[z, y], change, norm)
        for y in range(ny):
            yb = ny - 1 if y == 0 else y - 1
            for x in range(nx):
                xb = nx - 1 if x == 0 else x - 1
                total = (before[y, x] - v0[y, x]) * s0
                total += (v1[yb, x] - v1[y, x]) * s1
                total += (v2[y, xb] - v2[y, x]) * s2
                adjoint[z, y, x] = total
        before, v0 = v0, before
    return change, norm


@_jit
def _shrink(w, t):
    """``U = clip(w, ±t)`` and ``V = (w − U) − U``."""
    u = min(max(w, -t), t)
    return u, (w - u) - u


@_jit
def _add_squares(a, b, sum_a, sum_b):
    """``sum_a + Σ a²`` and ``sum_b + Σ b²`` in float64, over two interleaved chains each
    (a single chain waits on every addition)."""
    a0 = a1 = b0 = b1 = 0.0
    n = a.size
    for i in range(0, n - 1, 2):
        p, q = np.float64(a[i]), np.float64(a[i + 1])
        a0 += p * p
        a1 += q * q
        p, q = np.float64(b[i]), np.float64(b[i + 1])
        b0 += p * p
        b1 += q * q
    if n % 2:
        p, q = np.float64(a[n - 1]), np.float64(b[n - 1])
        a0 += p * p
        b0 += q * q
    return sum_a + (a0 + a1), sum_b + (b0 + b1)


@_jit
def wrapped_laplacian(phase, weights, start, stop, out):
    """``out`` = the wrapped-difference Laplacian of ``phase`` on the planes ``start:stop``
    (:func:`.unwrap.unwrap_laplacian`): per voxel, in axis order, ``+`` the flux to the
    next voxel and ``−`` the flux from the previous one where they exist (no flux across
    the box's faces), each flux ``W(Δφ)·weight`` with ``W(d) = d − 2π·rint(d/2π)``."""
    nz, ny, nx = phase.shape
    w0, w1, w2 = weights[0], weights[1], weights[2]
    zero = np.float32(0)
    for z in range(start, stop):
        for y in range(ny):
            row, here = out[z - start, y], phase[z, y]
            # one term at a time along the row (each loop stays branch-free)
            if z + 1 < nz:
                ahead = phase[z + 1, y]
                for x in range(nx):
                    row[x] = zero + _flux(ahead[x] - here[x], w0)
            else:
                row[:] = zero
            if z > 0:
                behind = phase[z - 1, y]
                for x in range(nx):
                    row[x] -= _flux(here[x] - behind[x], w0)
            if y + 1 < ny:
                ahead = phase[z, y + 1]
                for x in range(nx):
                    row[x] += _flux(ahead[x] - here[x], w1)
            if y > 0:
                behind = phase[z, y - 1]
                for x in range(nx):
                    row[x] -= _flux(here[x] - behind[x], w1)
            for x in range(nx - 1):
                row[x] += _flux(here[x + 1] - here[x], w2)
            for x in range(1, nx):
                row[x] -= _flux(here[x] - here[x - 1], w2)


_TWO_PI = np.float32(2 * np.pi)


@_jit
def _flux(difference, weight):
    return (difference - np.rint(difference / _TWO_PI) * _TWO_PI) * weight


@_jit
def divide_by_eigenvalues(spectrum, k0, k1, k2, start, stop):
    """``spectrum[start:stop] /= float32((k0[z] + k1[y]) + k2[x])`` in place, the
    eigenvalues of a separable operator rounded once to float32; 1 at index 0."""
    ny, nx = spectrum.shape[1], spectrum.shape[2]
    dc = spectrum[0, 0, 0]
    for z in range(start, stop):
        for y in range(ny):
            plane = k0[z] + k1[y]
            for x in range(nx):
                spectrum[z, y, x] /= np.float32(plane + k2[x])
    if start == 0:
        spectrum[0, 0, 0] = dc


def smv_products(kernel_spectrum, mask_spectrum, high_pass) -> None:
    """For :func:`.background.vsharp`, from the spectrum of an SMV kernel (real: the ball is
    even) in one pass: ``high_pass = 1 − Ŝ`` and, in place of ``kernel_spectrum``, the
    spectrum of the mask's ball mean ``mask_spectrum · Ŝ``, slab by slab on all cores."""
    kernel, mask = kernel_spectrum.view(np.float32), mask_spectrum.view(np.float32)
    backend.for_each_slab(np, lambda start, stop: _smv_products(
        kernel, mask, high_pass, start, stop), high_pass.shape[0], kernel[0].size)


@_jit
def _smv_products(kernel, mask, high_pass, start, stop):
    ny, nx = high_pass.shape[1], high_pass.shape[2]
    one = np.float32(1)
    for z in range(start, stop):
        for y in range(ny):
            for k in range(nx):
                s = kernel[z, y, 2 * k]
                high_pass[z, y, k] = one - s
                kernel[z, y, 2 * k] = mask[z, y, 2 * k] * s
                kernel[z, y, 2 * k + 1] = mask[z, y, 2 * k + 1] * s


def new_claims(mean, threshold, clear, claimed, new) -> bool:
    """``new`` = the voxels of the box ``clear`` (3 slices) where ``mean > threshold``
    (float32) and not yet ``claimed``; whether there is any (:func:`.background.vsharp`)."""
    bounds = np.array([(s.start, s.stop) for s in clear], np.int64)
    found = []

    def work(start, stop):
        if _new_claims(mean, threshold, bounds, claimed, new, start, stop):
            found.append(start)

    backend.for_each_slab(np, work, mean.shape[0], mean[0].size)
    return bool(found)


@_jit
def _new_claims(mean, threshold, bounds, claimed, new, start, stop):
    ny, nx = mean.shape[1], mean.shape[2]
    found = False
    for z in range(start, stop):
        z_in = bounds[0, 0] <= z < bounds[0, 1]
        for y in range(ny):
            y_in = z_in and bounds[1, 0] <= y < bounds[1, 1]
            for x in range(nx):
                inside = y_in and bounds[2, 0] <= x < bounds[2, 1]
                value = inside and mean[z, y, x] > threshold and not claimed[z, y, x]
                new[z, y, x] = value
                found |= value
    return found


def claim(filtered, new, combined, claimed) -> None:
    """``combined = filtered`` and ``claimed = True`` where ``new``, slab by slab."""
    backend.for_each_slab(np, lambda start, stop: _claim(
        filtered, new, combined, claimed, start, stop), new.shape[0], new[0].size)


@_jit
def _claim(filtered, new, combined, claimed, start, stop):
    ny, nx = new.shape[1], new.shape[2]
    for z in range(start, stop):
        for y in range(ny):
            for x in range(nx):
                if new[z, y, x]:
                    combined[z, y, x] = filtered[z, y, x]
                    claimed[z, y, x] = True


def dirichlet_pass(v, b, gain, interior, fourth_order, weights, centre, cross, out) -> None:
    """:class:`.multigrid.DirichletLaplacian`'s pass in one visit per voxel: ``out = −∇²v``
    on ``interior`` (7-point with per-axis ``weights``; where ``fourth_order``, less the
    ``cross`` terms ``c01·δ²zδ²y + c02·δ²zδ²x + c12·δ²yδ²x`` of the 19-point stencil), 0
    elsewhere; then ``b − out`` when ``b`` is given, and ``v + gain·(b − out)`` when ``gain``
    is too. Slab by slab on all cores."""
    mode = 0 if b is None else 1 if gain is None else 2
    f32 = np.float32
    w0, w1, w2 = (f32(w) for w in weights)
    c01, c02, c12 = (f32(c) for c in cross)
    has_fourth = fourth_order is not None
    backend.for_each_slab(np, lambda start, stop: _dirichlet_pass(
        v, v if b is None else b, f32(0 if gain is None else gain), interior,
        fourth_order if has_fourth else interior, has_fourth, w0, w1, w2, f32(centre),
        c01, c02, c12, mode, start, stop, out), v.shape[0], v[0].size)


@_jit
def _dirichlet_pass(v, b, gain, interior, fourth, has_fourth, w0, w1, w2, centre, c01, c02,
                    c12, mode, start, stop, out):
    ny, nx = v.shape[1], v.shape[2]
    two = np.float32(2)
    for z in range(start, stop):
        for y in range(ny):
            for x in range(nx):
                here = np.float32(0)
                if interior[z, y, x]:  # never on the array's faces
                    here = v[z, y, x] * centre
                    here -= (v[z - 1, y, x] + v[z + 1, y, x]) * w0
                    here -= (v[z, y - 1, x] + v[z, y + 1, x]) * w1
                    here -= (v[z, y, x - 1] + v[z, y, x + 1]) * w2
                    if has_fourth and fourth[z, y, x]:
                        low = (c01 * ((v[z - 1, y - 1, x] + v[z - 1, y + 1, x])
                                      - two * v[z - 1, y, x])
                               + c02 * ((v[z - 1, y, x - 1] + v[z - 1, y, x + 1])
                                        - two * v[z - 1, y, x]))
                        high = (c01 * ((v[z + 1, y - 1, x] + v[z + 1, y + 1, x])
                                       - two * v[z + 1, y, x])
                                + c02 * ((v[z + 1, y, x - 1] + v[z + 1, y, x + 1])
                                         - two * v[z + 1, y, x]))
                        dy = (v[z, y - 1, x] + v[z, y + 1, x]) - two * v[z, y, x]
                        mid = c01 * dy + c02 * ((v[z, y, x - 1] + v[z, y, x + 1])
                                                - two * v[z, y, x])
                        dy_left = (v[z, y - 1, x - 1] + v[z, y + 1, x - 1]) \
                            - two * v[z, y, x - 1]
                        dy_right = (v[z, y - 1, x + 1] + v[z, y + 1, x + 1]) \
                            - two * v[z, y, x + 1]
                        terms = (low + high) - two * mid
                        terms += c12 * ((dy_left + dy_right) - two * dy)
                        here -= terms
                if mode >= 1:
                    here = b[z, y, x] - here
                if mode == 2:
                    here = here * gain + v[z, y, x]
                out[z, y, x] = here
