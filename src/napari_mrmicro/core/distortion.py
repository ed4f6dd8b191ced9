"""Geometric distortion calibration from a scan of a tube of known constant diameter.

Gradient non-linearity magnifies MR images more the farther a voxel is from the centre of the
field of view (Janke et al., Magn Reson Med 2004;52:115; Wang et al., Magn Reson Imaging
2004;22:1211). Scanning a straight tube (or several) of known inner diameter and measuring its
cross-section perpendicular to its centerline at every point gives the relative area error
``e(r) = A_measured / A_true − 1`` against the distance ``r`` from the FOV centre; a polynomial
fitted to it corrects areas (÷ (1 + e)) and, assuming the local magnification is isotropic,
lengths (÷ √(1 + e)).

The FOV centre defaults to voxel ``N // 2`` on every axis (where the centred FFT puts the
k-space origin's image, DESIGN.md), i.e. ``(N // 2) * spacing_um`` in µm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.polynomial import Polynomial
from scipy import ndimage as ndi

from napari_mrmicro.core._masks import as_mask, as_spacing
from napari_mrmicro.core.centerline import centerline, path_distances_um
from napari_mrmicro.core.cross_sections import cross_sections


@dataclass(frozen=True)
class DistortionProfile:
    """Fitted relative area error against distance from the FOV centre.

    Attributes
    ----------
    coefficients : (degree + 1,) polynomial coefficients of e(r), lowest power first, r in µm
    fov_centre_um : (z, y, x) µm
    true_diameter_um : the tube's known diameter
    distance_um, relative_area_error : the measured samples the fit was made from
    rms_residual : root-mean-square of (measured − fitted) e
    tubes : number of tubes (connected parts of the mask) that contributed
    """

    coefficients: np.ndarray
    fov_centre_um: tuple
    true_diameter_um: float
    distance_um: np.ndarray
    relative_area_error: np.ndarray
    rms_residual: float
    tubes: int

    def area_error(self, distance_um) -> np.ndarray:
        """Relative area error e(r) at distances from the FOV centre (µm)."""
        return Polynomial(self.coefficients)(np.asarray(distance_um, dtype=float))

    def distance_to(self, points_um) -> np.ndarray:
        """Distance (µm) of (..., 3) points in µm from the FOV centre."""
        return np.linalg.norm(np.asarray(points_um, float) - np.asarray(self.fov_centre_um),
                              axis=-1)

    def report(self) -> str:
        """A short human-readable summary of the calibration."""
        r = self.distance_um
        lines = [
            f"Distortion calibration from {len(r)} cross-sections of {self.tubes} tube(s) of "
            f"diameter {self.true_diameter_um:g} µm, {r.min() / 1000:.2f}–{r.max() / 1000:.2f} "
            f"mm from the FOV centre {tuple(round(c, 1) for c in self.fov_centre_um)} µm.",
            "Relative area error e(r) = " + " + ".join(
                f"{c * 1000**k:.4g}·r^{k}" if k else f"{c:.4g}"
                for k, c in enumerate(self.coefficients)) + "  (r in mm)",
        ]
        for frac in (0.0, 0.5, 1.0):
            at = r.min() + frac * (r.max() - r.min())
            lines.append(f"  r = {at / 1000:5.2f} mm: area {100 * self.area_error(at):+6.2f} %, "
                         f"length {100 * (np.sqrt(1 + self.area_error(at)) - 1):+6.2f} %")
        lines.append(f"rms residual of the fit: {100 * self.rms_residual:.2f} % of the area")
        return "\n".join(lines)


def distortion_profile(mask, spacing_um, true_diameter_um: float, fov_centre_um=None,
                       degree: int = 2) -> DistortionProfile:
    """Fit the relative cross-sectional area error of calibration tube(s) against distance.

    Parameters
    ----------
    mask : (z, y, x) array
        Nonzero inside the tube lumen (or the tube wall's inside, whichever has the known
        diameter). Every 26-connected part is one tube; parts shorter than three diameters are
        ignored. Sections within one diameter of a tube's ends are not used.
    spacing_um : 3 floats
    true_diameter_um : float
        The tube's known diameter in µm.
    fov_centre_um : 3 floats, optional
        Default ``(N // 2) * spacing_um``.
    degree : int
        Degree of the polynomial e(r).
    """
    spacing = np.asarray(as_spacing(spacing_um))
    mask = as_mask(mask)
    if not (np.isfinite(true_diameter_um) and true_diameter_um > 0):
        raise ValueError(f"true_diameter_um must be positive, got {true_diameter_um}")
    if fov_centre_um is None:
        centre = (np.array(mask.shape) // 2) * spacing
    else:
        centre = np.asarray(fov_centre_um, dtype=float).ravel()
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"fov_centre_um must be 3 finite numbers (z, y, x) in µm, "
                             f"got {fov_centre_um!r}")
    true_area = np.pi * true_diameter_um**2 / 4
    parts, count = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    distances, errors, tubes = [], [], 0
    for index, box in enumerate(ndi.find_objects(parts), start=1):
        extent = np.linalg.norm([(s.stop - s.start) * d for s, d in zip(box, spacing)])
        if extent < 3 * true_diameter_um:
            continue
        tube = parts == index
        path = centerline(tube, spacing)
        along = path_distances_um(path)
        keep = (along > true_diameter_um) & (along < along[-1] - true_diameter_um)
        if keep.sum() < 2:
            continue
        sections = cross_sections(tube, path, spacing)
        valid = keep & np.isfinite(sections.areas_um2)
        distances.append(np.linalg.norm(path[valid] - centre, axis=1))
        errors.append(sections.areas_um2[valid] / true_area - 1)
        tubes += 1
    if not tubes:
        raise ValueError(f"mask has no tube longer than three diameters ({3 * true_diameter_um:g} "
                         f"µm): nothing to calibrate from")
    r, e = np.concatenate(distances), np.concatenate(errors)
    if len(r) <= degree:
        raise ValueError(f"{len(r)} cross-sections cannot fit a degree-{degree} polynomial")
    fit = Polynomial.fit(r, e, degree).convert()
    coefficients = np.zeros(degree + 1)
    coefficients[:len(fit.coef)] = fit.coef
    residual = float(np.sqrt(np.mean((e - fit(r)) ** 2)))
    return DistortionProfile(coefficients, tuple(float(c) for c in centre),
                             float(true_diameter_um), r, e, residual, tubes)


def correct_area(areas_um2, points_um, profile: DistortionProfile) -> np.ndarray:
    """Areas measured at ``points_um`` (one (3,) point per area) corrected for distortion."""
    scale = 1 + profile.area_error(profile.distance_to(points_um))
    return np.asarray(areas_um2, dtype=float) / scale


def correct_path_length(path_um, profile: DistortionProfile) -> float:
    """Length (µm) of a path corrected for distortion, segment by segment, assuming the local
    magnification is isotropic (each segment ÷ √(1 + e) at its midpoint)."""
    path = np.asarray(path_um, dtype=float)
    if path.ndim != 2 or path.shape[1] != 3 or len(path) < 2:
        raise ValueError(f"path_um must be an (N, 3) array with N >= 2, got shape {path.shape}")
    midpoints = (path[1:] + path[:-1]) / 2
    scale = np.sqrt(1 + profile.area_error(profile.distance_to(midpoints)))
    return float((np.linalg.norm(np.diff(path, axis=0), axis=1) / scale).sum())


def write_distortion_profile(profile: DistortionProfile, path) -> Path:
    """Save a calibration as JSON (coefficients with r in µm, FOV centre, tube diameter, the
    measured samples and the fit's residual), for :func:`read_distortion_profile`."""
    path = Path(path)
    payload = {"kind": "mrmicro distortion profile", "version": 1,
               "coefficients": [float(c) for c in profile.coefficients],
               "fov_centre_um": list(profile.fov_centre_um),
               "true_diameter_um": profile.true_diameter_um,
               "distance_um": [float(r) for r in profile.distance_um],
               "relative_area_error": [float(e) for e in profile.relative_area_error],
               "rms_residual": profile.rms_residual, "tubes": profile.tubes}
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return path


def read_distortion_profile(path) -> DistortionProfile:
    """A calibration saved by :func:`write_distortion_profile`; ValueError naming the file
    when it is not one."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("kind") != "mrmicro distortion profile":
            raise KeyError("kind")
        centre = tuple(float(c) for c in payload["fov_centre_um"])
        if len(centre) != 3:
            raise KeyError("fov_centre_um")
        return DistortionProfile(
            np.asarray(payload["coefficients"], float), centre,
            float(payload["true_diameter_um"]), np.asarray(payload["distance_um"], float),
            np.asarray(payload["relative_area_error"], float),
            float(payload["rms_residual"]), int(payload["tubes"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a distortion profile saved by mrmicro ({error})") from None


def plot_distortion(ax, profile: DistortionProfile) -> None:
    """Draw the measured relative area error (%) against distance from the FOV centre (mm)
    and the fitted polynomial on a matplotlib Axes."""
    r_mm = profile.distance_um / 1000
    ax.plot(r_mm, 100 * profile.relative_area_error, ".", ms=3, alpha=0.6,
            label="cross-sections")
    grid = np.linspace(0, max(float(profile.distance_um.max()), 1.0), 200)
    ax.plot(grid / 1000, 100 * profile.area_error(grid), "-", color="tab:red",
            label=f"fit (rms {100 * profile.rms_residual:.2f} %)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("distance from FOV centre (mm)")
    ax.set_ylabel("area error (%)")
    ax.set_title(f"tube ⌀ {profile.true_diameter_um:g} µm, {profile.tubes} tube(s)")
    ax.legend(fontsize="small")


def correct_sections_table(table: dict, profile: DistortionProfile) -> tuple[dict, float]:
    """A cross-section table (``area_um2``, ``z_um``/``y_um``/``x_um`` station positions,
    optionally ``min_diameter_um``/``max_diameter_um``, ``distance_um``) corrected for
    distortion: areas ÷ (1 + e), diameters and the distances along the path ÷ √(1 + e);
    returns (table, corrected path length in µm)."""
    missing = [k for k in ("area_um2", "z_um", "y_um", "x_um") if k not in table]
    if missing:
        raise ValueError(f"sections table: missing column(s) {missing}; need area_um2 and "
                         "the station positions z_um, y_um, x_um")
    points = np.column_stack([np.asarray(table[k], float) for k in ("z_um", "y_um", "x_um")])
    out = dict(table)
    out["area_um2"] = correct_area(table["area_um2"], points, profile)
    root = np.sqrt(1 + profile.area_error(profile.distance_to(points)))
    for key in ("min_diameter_um", "max_diameter_um"):
        if key in table:
            out[key] = np.asarray(table[key], float) / root
    length = correct_path_length(points, profile) if len(points) >= 2 else 0.0
    if "distance_um" in table and len(points) >= 2:
        midpoints = (points[1:] + points[:-1]) / 2
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1) / np.sqrt(
            1 + profile.area_error(profile.distance_to(midpoints)))
        out["distance_um"] = np.r_[0.0, np.cumsum(steps)]
    return out, length
