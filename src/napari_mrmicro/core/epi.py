"""Echo-planar readouts onto the Cartesian grid: ramp-sampled regridding, alternate-line
reversal and Nyquist ghost correction.

An EPI echo train reads one k-space line per gradient lobe, every second line with the
readout gradient reversed, and (ramp sampling) samples during the gradient ramps too, so the
samples are not equally spaced in k. Three steps bring such a train to the grid the centred
FFT of :mod:`~napari_mrmicro.core.kspace` expects (DC at ``N // 2``):

1. *Regridding* (Bruder, Fischer, Reinfelder & Schmitt, Magn Reson Med 1992;23:311). The
   measured readout trajectory ``k(t)`` (Duyn et al., J Magn Reson 1998;132:150; ParaVision
   measures it per scan, ``PVM_EpiTrajAdjkx``) gives each sample's position in cycles per
   field of view. An object inside the field of view has a k-space that is the Dirichlet
   (periodic sinc) interpolation of its grid values, so the grid values inside the sampled
   range are the least-squares solution of ``samples = A · grid``; one ``(N, samples)``
   operator per gradient polarity serves every line. Grid points outside the sampled range
   stay zero (they were not measured).
2. *Reversal*. A line read under the reversed gradient runs from the end of the lobe back:
   its sample ``t`` sits at ``k_end − k(t)``, with ``k_end`` the lobe's full excursion (the
   largest value of the trajectory). Its operator is built from those positions, so the
   reversal happens in the regridding.
3. *Nyquist ghost correction* (Bruder et al. 1992, as above; Hu & Le, Magn Reson Med
   1996;36:166). Gradient delays and eddy currents shift the reversed lines against the
   others, which puts a ghost half a field of view away along the phase encode. A phase
   linear along the readout, ``φ0 + φ1·m`` on the reversed lines in hybrid space (image
   along the readout, pixel ``m = 0 .. N−1``), removes the first-order part; ParaVision's
   ghost adjustment stores ``(φ0, φ1)`` per slice (``PVM_EpiPhaseCorrection``). The
   trajectory measurement also finds a phase ``b0(t)`` that a forward lobe's samples carry
   beyond a reversed lobe's (``PVM_EpiTrajAdjb0``, eddy-current B0 shifts); the reversed
   lines' samples are multiplied by ``exp(i·b0(t))`` first. Where the stored coefficients
   are missing, or the phase drifted since the adjustment, :func:`fit_nyquist_ghost` finds
   ``(φ0, φ1)`` per train from the data: the pair that minimises the entropy of the
   zero-filled image (Atkinson et al., IEEE Trans Med Imaging 1997;16:903; for EPI ghosts,
   Clare, Proc ISMRM 2003;11:1041), a ghost spreading the image's energy. A shift of φ0 by
   π moves the object half a field of view and leaves the entropy unchanged; of the two,
   the φ0 within ±π/2 of the start (the scanner's coefficients, else 0) is taken.

Written here because no maintained Python package reconstructs ramp-sampled EPI from a
measured trajectory; the conventions were checked against ParaVision 360's own
reconstruction of a real EPI scan (``tests/io/test_raw_bruker_pv360.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from napari_mrmicro.core._slabs import for_each_slab
from napari_mrmicro.core.kspace import centered_fft, centered_ifft

#: Singular values below this fraction of the largest are dropped when the regridding
#: operator is inverted; a real ramp-sampled readout has a condition number of a few.
RCOND = 1e-6
#: Reach of the ghost search in φ1, in readout samples of shift between odd and even lines
#: (φ1 = 2π·shift/N): gradient delays of a well-adjusted scanner stay within a sample.
GHOST_SHIFT_SAMPLES = 1.5


def regrid_operator(positions, size: int) -> tuple:
    """The linear map from one readout's samples to the uniform k-space grid.

    Parameters
    ----------
    positions : array_like of float, shape (samples,)
        k-space position of each sample in cycles per field of view, relative to k = 0
        (grid index minus ``size // 2``).
    size : int
        Grid length ``N`` (the image's pixels along the readout).

    Returns
    -------
    operator : ndarray of complex64, shape (size, samples)
        ``grid = operator @ samples``; rows outside the sampled range are zero.
    covered : ndarray of bool, shape (size,)
        The grid points inside the sampled range (those the operator fills).
    """
    positions = np.asarray(positions, np.float64)
    if positions.ndim != 1 or positions.size < 2 or not np.all(np.isfinite(positions)):
        raise ValueError("positions must be a finite 1-D trajectory of at least 2 samples")
    if size < 2:
        raise ValueError(f"size = {size}: the grid needs at least 2 points")
    centre = size // 2
    grid = np.arange(size) - centre
    covered = (grid >= positions.min() - 0.5) & (grid <= positions.max() + 0.5)
    if covered.sum() > positions.size:
        raise ValueError(f"{positions.size} samples cannot determine the {covered.sum()} "
                         "grid points their range spans")
    pixels = np.arange(size) - centre
    # A[t, j] = (1/N) Σ_m e^{-2πi (p_t − g_j)(m − c)/N}: Dirichlet interpolation
    at_samples = np.exp(-2j * np.pi * np.outer(positions, pixels) / size)
    at_grid = np.exp(-2j * np.pi * np.outer(grid[covered], pixels) / size)
    interpolation = at_samples @ at_grid.conj().T / size
    operator = np.zeros((size, positions.size), np.complex128)
    operator[covered] = np.linalg.pinv(interpolation, rcond=RCOND)
    return operator.astype(np.complex64), covered


def regrid_echo_train(train, trajectory, size: int, polarity_phase=None) -> tuple:
    """Regrid EPI echo trains onto the Cartesian grid, reversed lines included (the Nyquist
    ghost is corrected after, :func:`correct_nyquist_ghost`).

    Parameters
    ----------
    train : array_like of complex, shape (..., echoes, samples)
        The readouts as acquired, echo ``0`` under the gradient polarity the trajectory
        was measured on, every odd echo reversed.
    trajectory : array_like of float, shape (samples,)
        k-space position of each sample of a forward lobe, in cycles per field of view
        from the start of the lobe (ParaVision's ``PVM_EpiTrajAdjkx``); k = 0 is taken in
        the middle of the lobe, ``max(trajectory) / 2`` (a symmetric readout).
    size : int
        Grid length along the readout.
    polarity_phase : array_like of float, shape (samples,), optional
        Phase (rad) a forward lobe's sample carries beyond the reversed lobe's sample
        taken at the same time (ParaVision's ``PVM_EpiTrajAdjb0``); the reversed lines'
        samples are multiplied by ``exp(i·polarity_phase)`` before regridding.
    Returns
    -------
    lines : ndarray of complex64, shape (..., echoes, size)
        k-space lines, DC at ``size // 2``, in echo order.
    covered : ndarray of bool, shape (size,)
        Grid points both polarities sampled (the rest are zero on at least one line).
    """
    train = np.asarray(train)
    trajectory = np.asarray(trajectory, np.float64)
    if train.ndim < 2 or train.shape[-1] != trajectory.size:
        raise ValueError(f"echo trains of shape {train.shape} do not end in the "
                         f"{trajectory.size} samples of the trajectory")
    end = float(trajectory.max())
    centre = end / 2.0
    forward, covered_forward = regrid_operator(trajectory - centre, size)
    backward, covered_backward = regrid_operator(end - trajectory - centre, size)
    lines = np.empty(train.shape[:-1] + (size,), np.complex64)
    np.matmul(train[..., 0::2, :].astype(np.complex64, copy=False), forward.T,
              out=lines[..., 0::2, :])
    odd = train[..., 1::2, :].astype(np.complex64, copy=True)
    if polarity_phase is not None:
        phase = np.asarray(polarity_phase, np.float64)
        if phase.shape != trajectory.shape or not np.all(np.isfinite(phase)):
            raise ValueError(f"polarity_phase must hold {trajectory.size} finite values, "
                             f"one per sample (got shape {phase.shape})")
        odd *= np.exp(1j * phase).astype(np.complex64)
    np.matmul(odd, backward.T, out=lines[..., 1::2, :])
    return lines, covered_forward & covered_backward


def correct_nyquist_ghost(lines, ghost) -> np.ndarray:
    """Remove a first-order phase difference between forward and reversed EPI lines.

    Parameters
    ----------
    lines : ndarray of complex64, shape (..., echoes, size)
        Regridded lines (DC at ``size // 2``); corrected in place.
    ghost : array_like of float, shape (..., 2)
        ``(φ0, φ1)`` per train, broadcast against the leading axes of ``lines``: the odd
        lines are multiplied by ``exp(i(φ0 + φ1·m))`` along the readout image axis,
        ``m = 0 .. size−1``.

    Returns
    -------
    ndarray
        ``lines``.
    """
    ghost = np.asarray(ghost, np.float64)
    if ghost.shape[-1:] != (2,) or not np.all(np.isfinite(ghost)):
        raise ValueError(f"ghost must end in the 2 finite coefficients (φ0, φ1), got shape "
                         f"{ghost.shape}")
    size = lines.shape[-1]
    pixel = np.arange(size)
    phase = ghost[..., 0, None] + ghost[..., 1, None] * pixel  # (..., size)
    factor = np.exp(1j * phase).astype(np.complex64)[..., None, :]
    odd = centered_ifft(lines[..., 1::2, :], axes=(-1,))
    odd *= factor
    lines[..., 1::2, :] = centered_fft(odd, axes=(-1,), overwrite_x=True)
    return lines


def image_entropy(image, axes=None):
    """Entropy of an image's magnitude over ``axes`` (all by default), ``−Σ b·ln b`` with
    ``b = |x| / ‖x‖``: lowest when the energy sits in few pixels (Atkinson et al. 1997)."""
    b = np.abs(image)
    b = b / np.sqrt(np.sum(b * b, axis=axes, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(b > 0, b * np.log(b), 0.0)
    return -np.sum(terms, axis=axes)


def _ghost_entropies(hybrid, rows, size: int, pairs) -> np.ndarray:
    """Entropy of the zero-filled image of one train (``hybrid``: its lines with the
    readout in image space) for each ghost correction ``(φ0, φ1)`` of ``pairs``."""
    pairs = np.asarray(pairs, np.float64)
    n = hybrid.shape[-1]
    grid = np.zeros((len(pairs), size, n), np.complex64)
    grid[:, rows] = hybrid
    phase = pairs[:, :1] + pairs[:, 1:] * np.arange(n)
    grid[:, rows[1::2]] *= np.exp(1j * phase).astype(np.complex64)[:, None, :]
    return image_entropy(centered_ifft(grid, axes=(1,)), axes=(1, 2))


def fit_nyquist_ghost(lines, rows, size: int, start=None) -> np.ndarray:
    """Per train the ghost correction ``(φ0, φ1)`` (as :func:`correct_nyquist_ghost` takes
    it) that minimises the entropy of the zero-filled image.

    Parameters
    ----------
    lines : ndarray of complex, shape (..., echoes, N)
        Regridded lines without ghost correction (DC at ``N // 2``), in echo order.
    rows : array_like of int, shape (echoes,)
        The phase-encode grid row of each echo.
    size : int
        Phase-encode grid length (lines beyond the acquired ones are zero).
    start : array_like of float, shape (..., 2), optional
        Where the search starts, e.g. the scanner's stored coefficients; (0, 0) if None.
        φ1 stays within ±:data:`GHOST_SHIFT_SAMPLES` samples of it; of the two φ0 that
        give the same entropy (π apart) the one within ±π/2 of it is returned.

    Returns
    -------
    ndarray of float64, shape (..., 2)
    """
    lines = np.asarray(lines)
    rows = np.asarray(rows, np.int64)
    n = lines.shape[-1]
    if rows.shape != lines.shape[-2:-1] or rows.min() < 0 or rows.max() >= size:
        raise ValueError(f"rows must give a grid row in 0..{size - 1} for each of the "
                         f"{lines.shape[-2]} echoes")
    trains = lines.reshape(-1, *lines.shape[-2:])
    start = np.broadcast_to(np.zeros(2) if start is None else np.asarray(start, np.float64),
                            lines.shape[:-2] + (2,)).reshape(-1, 2)
    reach = GHOST_SHIFT_SAMPLES * 2 * np.pi / n
    # φ0 over one period (the entropy repeats every π); a residual shift of a quarter
    # sample between odd and even lines still ghosts at a third of the object, so φ1
    # steps by 1/8 sample
    shifts = np.arange(-GHOST_SHIFT_SAMPLES, GHOST_SHIFT_SAMPLES + 1e-9, 1 / 8)
    steps = np.stack(np.meshgrid(np.arange(-3, 3) * np.pi / 6, shifts * 2 * np.pi / n,
                                 indexing="ij"), -1).reshape(-1, 2)
    fitted = np.empty_like(start)

    def fit(first: int, stop: int) -> None:
        for t in range(first, stop):
            hybrid = centered_ifft(trains[t].astype(np.complex64), axes=(-1,))
            coarse = start[t] + steps
            entropies = np.concatenate([_ghost_entropies(hybrid, rows, size, chunk)
                                        for chunk in np.array_split(coarse, 6)])

            def entropy(q) -> float:  # q: φ0 (rad) and the φ1 shift in samples
                pair = np.array([q[0], q[1] * 2 * np.pi / n])
                if abs(pair[1] - start[t, 1]) > reach:
                    return np.inf
                return float(_ghost_entropies(hybrid, rows, size, pair[None])[0])

            best = coarse[np.argmin(entropies)] * [1, n / (2 * np.pi)]
            q = minimize(entropy, best, method="Nelder-Mead", options={
                "xatol": 1e-3, "fatol": 1e-7,
                "initial_simplex": [best, best + [0.1, 0], best + [0, 1 / 16]]}).x
            fitted[t] = q[0], q[1] * 2 * np.pi / n
            # of the two equivalent φ0, π apart, the one nearer the start
            fitted[t, 0] = start[t, 0] + (fitted[t, 0] - start[t, 0] + np.pi / 2) % np.pi \
                - np.pi / 2

    for_each_slab(fit, len(trains), 1)
    return fitted.reshape(lines.shape[:-2] + (2,))
