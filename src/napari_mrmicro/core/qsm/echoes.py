"""Multi-echo phase: echo phase offset, and the weighted fit of phase over TE into a field map.

A gradient-echo phase grows linearly with the echo time, ``φ(TE) = φ0 + 2π·f·TE``, with
``f`` the local frequency offset (Hz) and ``φ0`` the phase offset of the coil and
excitation. ``f`` in ppm of the Larmor frequency is ``f / (γ̄·B0)·1e6``; a paramagnetic
(positive χ) inclusion has a positive field shift along B0 and a positive ``f``
(DESIGN.md). Times in ms, frequencies in Hz, phases in radians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.special import chdtri  # χ² quantiles: chdtri(k, p) = chi2.isf(p, k)

from napari_mrmicro.core._masks import as_mask
from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.core.qsm.unwrap import (
    TWO_PI,
    _echo_series,
    _magnitude_volume,
    _spacing,
    unwrap_region_growing,
    wrap_phase,
)


@dataclass(frozen=True)
class FieldFit:
    """The field map fitted to a multi-echo phase series.

    Attributes
    ----------
    field_hz : ndarray, float32 (z, y, x)
        Frequency offset in Hz.
    field_ppm : ndarray or None
        The same in ppm of the Larmor frequency (None without ``b0_tesla``).
    offset_rad : ndarray, float32 (z, y, x)
        Fitted phase at TE = 0 (zeros when the fit is through the origin).
    noise_std_hz : ndarray, float32 (z, y, x)
        Standard deviation of ``field_hz`` from the phase noise ``σ/|S|`` of each echo
        (the Cramér–Rao bound of the weighted fit at high SNR); ``inf`` where every
        magnitude is zero. Its inverse is the data weight of weighted/MEDI inversions.
    noise_std_ppm : ndarray or None
        The same in ppm (None without ``b0_tesla``).
    noise_sigma : float
        The standard deviation σ of the complex signal per channel (magnitude units)
        behind ``noise_std_hz``: the one given, or the one estimated.
    misfit : ndarray, float32 (z, y, x)
        Weighted residual of the fit in units of the noise, ``Σ|S_e|²r_e²/σ²``: χ² with
        ``misfit_dof`` degrees of freedom where the phase grows linearly with TE; large
        where it does not (intravoxel dephasing at signal voids, flow, unwrapping errors).
        Zeros when ``misfit_dof`` is 0.
    misfit_dof : int
        Echoes minus fitted parameters (0: one echo, or two with an offset).
    """

    field_hz: np.ndarray
    field_ppm: np.ndarray | None
    offset_rad: np.ndarray
    noise_std_hz: np.ndarray
    noise_std_ppm: np.ndarray | None
    noise_sigma: float
    misfit: np.ndarray
    misfit_dof: int

    def error_std_ppm(self) -> np.ndarray | None:
        """Standard deviation of ``field_ppm`` from the noise, scaled up where the phase is
        not linear in TE: ``noise_std_ppm·√max(1, misfit/misfit_dof)``, the fit's reduced
        χ² as the factor on its variance (the Birge ratio; Birge, Phys Rev 1932;40:207).
        Where a voxel's phase bends (a field that changes within the voxel, at the edge of
        a structure or a void) its phase is not its mean field, and the misfit measures by
        how much; where the phase is linear the factor is 1 (noise fluctuations below it
        do not lower the noise). ``noise_std_ppm`` itself without a degree of freedom
        (``misfit_dof`` 0); None without ``b0_tesla``.
        """
        if self.noise_std_ppm is None or self.misfit_dof == 0:
            return self.noise_std_ppm
        factor = np.sqrt(np.maximum(self.misfit / np.float32(self.misfit_dof), 1))
        return (self.noise_std_ppm * factor).astype(np.float32)


def remove_phase_offset(phases, te_ms, magnitudes=None, mask=None, smooth_um: float = 0.0,
                        spacing_um=None) -> tuple[np.ndarray, np.ndarray]:
    """Remove the echo phase offset φ0 (MCPC-3D-S; Eckstein et al., Magn Reson Med 2018;79:2996).

    The difference of the two shortest echoes, ``Δφ = ∠(S₂·S₁*)``, holds no offset and
    little wrapping (ΔTE is short); unwrapped (:func:`unwrap_region_growing`, guided by
    ``|S₁||S₂|``) it gives ``φ0 = φ₁ − Δφ·TE₁/(TE₂ − TE₁)``, which is subtracted from every
    echo, so the phase becomes proportional to TE, as temporal unwrapping
    (:func:`~napari_mrmicro.core.qsm.unwrap.unwrap_echoes`) needs. ``smooth_um > 0``
    first smooths ``|S₁|·e^{iφ0}`` with a Gaussian of that σ (µm), as MCPC-3D-S does, to
    take the echo noise out of the offset (at the price of a bias where φ0 curves, and at
    the volume's faces). The alternative, the intercept of :func:`fit_field`, needs every
    echo unwrapped first; this does not.

    Parameters
    ----------
    phases : ndarray, (echo, z, y, x)
        Wrapped phases in radians, at least two echoes.
    te_ms : sequence of float
        Echo times in ms.
    magnitudes : ndarray, (echo, z, y, x), optional
    mask : ndarray, (z, y, x), optional
        Voxels where the echo difference is unwrapped; the offset is 0 outside.
    smooth_um : float
        Gaussian σ in µm for the offset (0: none); needs ``spacing_um``.
    spacing_um : float or 3 floats, optional

    Returns
    -------
    (phases, offset_rad)
        The phases without the offset, wrapped into [−π, π) (float32, echo first), and
        the offset φ0 in radians (float32, (z, y, x)).
    """
    phases, te = _echo_series(phases, te_ms, "phases")
    if te.size < 2:
        raise ValueError("remove_phase_offset needs at least two echoes (te_ms has one): "
                         "with one echo the offset and the field cannot be told apart")
    mags = None if magnitudes is None else _magnitude_volume(magnitudes, phases.shape,
                                                             "magnitudes")
    smooth_um = float(smooth_um)
    if not (np.isfinite(smooth_um) and smooth_um >= 0):
        raise ValueError(f"smooth_um must be >= 0 (µm), got {smooth_um}")
    if smooth_um > 0 and spacing_um is None:
        raise ValueError("spacing_um (µm) is needed to smooth the offset by smooth_um")
    first, second = np.argsort(te)[:2]
    difference = wrap_phase(phases[second] - phases[first])
    weight = None if mags is None else mags[first] * mags[second]
    difference = unwrap_region_growing(difference, weight, mask)
    ratio = np.float32(te[first] / (te[second] - te[first]))
    offset = wrap_phase(phases[first] - difference * ratio)
    if mask is not None:
        offset[~as_mask(mask, "mask")] = 0.0
    if smooth_um > 0:
        sigma = [smooth_um / s for s in _spacing(spacing_um)]
        amplitude = np.ones_like(offset) if mags is None else mags[first]
        smooth = (ndi.gaussian_filter(amplitude * np.cos(offset), sigma)
                  + 1j * ndi.gaussian_filter(amplitude * np.sin(offset), sigma))
        offset = np.angle(smooth).astype(np.float32)
    corrected = wrap_phase(phases - offset[np.newaxis])
    return corrected, offset.astype(np.float32, copy=False)


def fit_field(phases_unwrapped, te_ms, magnitudes=None, b0_tesla: float | None = None,
              nucleus: str = "1H", fit_offset: bool = True, noise_sigma: float | None = None,
              mask=None) -> FieldFit:
    """Weighted least-squares fit of ``φ(TE) = φ0 + 2π·f·TE`` per voxel: the field map.

    Phase noise is ``σ_φ = σ/|S|`` at high SNR, so the optimal weights are ``|S_e|²``
    (MEDI's ``Fit_ppm_complex``, Liu et al., Magn Reson Med 2013;69:467; Wu et al., Magn
    Reson Med 2012;67:137). Through the origin (``fit_offset=False``, after
    :func:`remove_phase_offset`): ``f = Σ|S_e|²TE_e φ_e / (2π Σ|S_e|²TE_e²)``, weights
    ``|S_e|²·TE_e²`` on the per-echo estimates ``φ_e/(2π TE_e)``, and
    ``std f = σ / (2π √Σ|S_e|²TE_e²)``. With an offset, the same with TE centred on its
    weighted mean. One echo: ``f = φ/(2π TE)`` (``fit_offset`` is ignored).

    σ (``noise_sigma``) is the complex noise standard deviation in magnitude units. When
    not given it is estimated: from the weighted residuals ``Σ|S_e|²r_e²`` (a σ²·χ² with
    ``n_echo − n_parameters`` degrees of freedom) through their median over ``mask``
    (robust to wraps and to noise-only voxels); with no degree of freedom left, from the
    median absolute difference of neighbouring magnitudes of the first echo in ``mask``
    (Gaussian noise: 1.4826·MAD/√2; inside the specimen, where the magnitude is smooth).
    Pass ``mask`` (the specimen) for a sound estimate: without it, noise-only background
    voxels inflate it.

    Parameters
    ----------
    phases_unwrapped : ndarray, (echo, z, y, x) or (z, y, x)
        Unwrapped phases in radians.
    te_ms : sequence of float
        Echo times in ms.
    magnitudes : ndarray, like ``phases_unwrapped``, optional
        Echo magnitudes (uniform weights when omitted; σ is then in units of the magnitude 1).
    b0_tesla : float, optional
        Main field, for ``field_ppm``.
    nucleus : str
        For γ/2π (``"1H"``: 42.577478 MHz/T, ``"13C"``).
    fit_offset : bool
        Fit φ0 (default) or assume it is zero. Keep it True after
        :func:`remove_phase_offset`: its estimate carries echo noise (and smoothing bias)
        that a fit through the origin would pass on to the field (measured: field errors
        2.4–6.7× the reported std); the free intercept absorbs any constant residue.
    noise_sigma : float, optional
        Complex noise standard deviation in magnitude units.
    mask : ndarray, (z, y, x), optional
        Voxels used to estimate σ.

    Returns
    -------
    FieldFit
    """
    phases, te_ms_arr = _echo_series(phases_unwrapped, te_ms, "phases_unwrapped")
    n_echo = te_ms_arr.size
    shape = phases.shape[1:]
    mags = (np.ones(phases.shape, np.float32) if magnitudes is None
            else _magnitude_volume(magnitudes if np.ndim(magnitudes) == 4 else
                                   np.asarray(magnitudes)[np.newaxis], phases.shape,
                                   "magnitudes"))
    hz_per_ppm = None
    if b0_tesla is not None:
        if nucleus not in GAMMA_BAR_MHZ_PER_T:
            raise ValueError(f"nucleus must be one of {sorted(GAMMA_BAR_MHZ_PER_T)}, "
                             f"got {nucleus!r}")
        b0 = float(b0_tesla)
        if not (np.isfinite(b0) and b0 > 0):
            raise ValueError(f"b0_tesla must be positive and finite, got {b0_tesla!r}")
        hz_per_ppm = GAMMA_BAR_MHZ_PER_T[nucleus] * b0  # MHz/T · T = Hz per ppm
    if noise_sigma is not None:
        noise_sigma = float(noise_sigma)
        if not (np.isfinite(noise_sigma) and noise_sigma > 0):
            raise ValueError(f"noise_sigma must be positive and finite, got {noise_sigma}")
    inside = None if mask is None else as_mask(mask, "mask")
    if inside is not None and inside.shape != shape:
        raise ValueError(f"mask has shape {inside.shape}, the phases {shape}")

    te = te_ms_arr * 1e-3  # s
    fit_offset = bool(fit_offset) and n_echo > 1
    sw = np.zeros(shape, np.float64)
    swt = np.zeros(shape, np.float64)
    swtt = np.zeros(shape, np.float64)
    swp = np.zeros(shape, np.float64)
    swtp = np.zeros(shape, np.float64)
    for e in range(n_echo):
        w = mags[e].astype(np.float64) ** 2
        sw += w
        swt += w * te[e]
        swtt += w * te[e] ** 2
        swp += w * phases[e]
        swtp += w * te[e] * phases[e]
    with np.errstate(invalid="ignore", divide="ignore"):
        if fit_offset:
            spread = swtt - swt**2 / sw  # Σw(TE − TĒ)²
            slope = (swtp - swt * swp / sw) / spread
            offset = (swp - slope * swt) / sw
        else:
            spread = swtt
            slope = swtp / spread
            offset = np.zeros(shape, np.float64)
    # spread is 0 where every magnitude is zero (with an offset: all but one): no estimate
    known = np.isfinite(slope) & (spread > 0)
    slope = np.where(known, slope, 0.0)
    offset = np.where(known, offset, 0.0)
    del swp, swtp, swt, sw, swtt

    dof = n_echo - (2 if fit_offset else 1)
    chi2 = np.zeros(shape, np.float64)
    if dof >= 1:
        for e in range(n_echo):
            residual = phases[e] - (offset + slope * te[e])
            chi2 += mags[e].astype(np.float64) ** 2 * residual**2
    if noise_sigma is None:
        noise_sigma = _estimate_sigma(chi2, mags, dof, known, inside, magnitudes is None)
    with np.errstate(divide="ignore"):
        std_slope = np.where(known, noise_sigma / np.sqrt(np.where(known, spread, 1.0)), np.inf)
    field_hz = (slope / TWO_PI).astype(np.float32)
    noise_std_hz = (std_slope / TWO_PI).astype(np.float32)
    return FieldFit(
        field_hz=field_hz,
        field_ppm=None if hz_per_ppm is None else field_hz / np.float32(hz_per_ppm),
        offset_rad=offset.astype(np.float32),
        noise_std_hz=noise_std_hz,
        noise_std_ppm=None if hz_per_ppm is None else noise_std_hz / np.float32(hz_per_ppm),
        noise_sigma=float(noise_sigma),
        misfit=(chi2 / noise_sigma**2).astype(np.float32),
        misfit_dof=max(dof, 0),
    )


def _estimate_sigma(chi2, mags, dof, known, inside, magnitudes_uniform: bool) -> float:
    """σ of the complex noise: from the weighted fit residuals ``chi2`` (dof ≥ 1) or the
    magnitude (dof 0)."""
    where = known if inside is None else known & inside
    if not where.any():
        raise ValueError("cannot estimate the noise: no voxel (in the mask) has a non-zero "
                         "magnitude; pass noise_sigma")
    if dof >= 1:
        sigma2 = np.median(chi2[where]) / chdtri(dof, 0.5)
        return float(np.sqrt(sigma2))
    if magnitudes_uniform:
        raise ValueError("one echo (or two with fit_offset) without magnitudes leaves "
                         "nothing to estimate the noise from: pass magnitudes or noise_sigma")
    magnitude = mags[0]
    pairs = where[..., :-1] & where[..., 1:]
    if not pairs.any():
        raise ValueError("cannot estimate the noise: the mask holds no two neighbouring "
                         "voxels; pass noise_sigma")
    steps = np.abs(np.diff(magnitude, axis=-1))[pairs]
    sigma = 1.4826 * np.median(steps) / np.sqrt(2.0)
    if not sigma > 0:
        raise ValueError("cannot estimate the noise: the magnitude has no variation; "
                         "pass noise_sigma")
    return float(sigma)
