"""Digital specimens: labelled structures with per-tissue MR properties and their ground truth.

A :class:`Specimen` stores one label volume and a property table; each property map
(proton density, T1, T2, T2*, diffusion, χ, chemical shift, ¹³C density, fluorescence) is a
lookup of that table, so a specimen costs one byte per voxel until a map is asked for.
``Specimen.truth`` holds the exact geometry the labels were drawn from (centrelines, radii,
centres), to validate measurements and registrations against.

Coordinates: shapes are built from voxel-centre coordinates in µm relative to the volume
centre; every position in ``truth`` is given in the *array frame*, ``index × spacing_um``
(voxel (0, 0, 0) at 0 µm) — napari world coordinates of a layer with ``scale=spacing_um``.
``truth["volume_centre_um"]`` converts between the two. Physical sizes are fixed in µm, so a
finer grid gives the same object; an anatomical specimen is shrunk to fit only when the field
of view is too small for it (``metadata["scale"]`` < 1 then).
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import integrate
from scipy.spatial import cKDTree

from napari_mrmicro.core.memory import check_memory

#: Property names, units in the names (DESIGN.md conventions).
PROPERTIES = ("proton_density", "t1_ms", "t2_ms", "t2star_ms", "diffusion_um2_per_ms",
              "chi_ppm", "shift_ppm", "c13_density", "fluorescence")


@dataclass(frozen=True)
class Tissue:
    """MR and optical properties of one tissue.

    χ is relative to water (SI volume susceptibility, ppm), shift in ppm from water.
    Relaxation times belong to the nucleus that gives the tissue its signal: ¹H, except in a
    tissue with ``proton_density`` 0 and ``c13_density`` > 0, where they are the ¹³C ones.
    ``c13_density`` is the relative density of hyperpolarizable ¹³C (for hyperpolarized ¹³C
    imaging), ``fluorescence`` the relative optical brightness (for matching optical images).
    ``diffusion_um2_per_ms`` is the mean diffusivity; a fibrous tissue diffuses
    ``axial_to_radial`` times faster along ``fibre_axis`` (a unit vector in the specimen's
    array axes (z, y, x)) than across it (:meth:`diffusion_tensor`).
    """

    name: str
    proton_density: float
    t1_ms: float
    t2_ms: float
    t2star_ms: float
    diffusion_um2_per_ms: float = 0.0
    chi_ppm: float = 0.0
    shift_ppm: float = 0.0
    c13_density: float = 0.0
    fluorescence: float = 0.0
    axial_to_radial: float = 1.0
    fibre_axis: tuple = (1.0, 0.0, 0.0)

    def diffusion_tensor(self) -> np.ndarray:
        """The diffusion tensor (3×3, µm²/ms, array axes): eigenvalues ``3·MD·r/(r + 2)``
        along the fibre axis and ``3·MD/(r + 2)`` across it (r = ``axial_to_radial``), so
        that their mean is the tissue's mean diffusivity."""
        axis = np.asarray(self.fibre_axis, dtype=float)
        axis = axis / np.linalg.norm(axis)
        ratio, mean = float(self.axial_to_radial), float(self.diffusion_um2_per_ms)
        radial = 3 * mean / (ratio + 2)
        return radial * np.eye(3) + (ratio * radial - radial) * np.outer(axis, axis)


#: Air around an extracted specimen: no signal; χ(air) − χ(water) ≈ +9.4 ppm.
AIR = Tissue("air", 0.0, 1.0, 1.0, 1.0, 0.0, 9.4, 0.0)

#: Molar tissues at 2.35 T. Pulp: loose connective tissue, T1 ≈ 0.7 s and T2 ≈ 80 ms
#: as soft tissue at low field (Bottomley et al., Med Phys 1984;11:425). Dentin and
#: enamel hold little, tightly bound water: T2* of a few hundred µs (dentin) and well
#: below 100 µs (enamel), seen only with ultrashort-TE methods (Bracher et al., Magn
#: Reson Med 2011;66:538), hence dark at TE 2.4 ms. Mineralized tissue χ ≈ −2 ppm
#: relative to water, like cortical bone (Dimov et al., Magn Reson Med 2018;79:121).
TOOTH_TISSUES = (
    AIR,
    Tissue("enamel", 0.05, 1000.0, 0.06, 0.05, 0.0, -2.5),
    Tissue("dentin", 0.2, 500.0, 0.4, 0.3, 0.05, -2.0),
    Tissue("pulp", 0.8, 700.0, 80.0, 40.0, 1.5, -0.05),
)

# Gd-DTPA (Magnevist) doping at 9.4 T, 295 K: r1 ≈ 4 s⁻¹mM⁻¹, r2 ≈ 5 s⁻¹mM⁻¹; molar χ of
# Gd³⁺ by Curie's law (μ_eff = 7.94 μ_B) ≈ +0.33 ppm per mM (de Rochefort et al., Magn Reson
# Med 2008;60:1003). Fixed specimens soaked in dilute Gd shorten T1 to ~100 ms for fast
# imaging ("active staining": Johnson et al., Radiology 2002;222:789); after days of soaking
# the agent reaches the water of the fixed (permeabilized) tissue at the bath's
# concentration, so a tissue's rates gain r·[Gd] and its χ gains (water fraction)·0.33·[Gd].
GD_MM, GD_R1_PER_S_MM, GD_R2_PER_S_MM, GD_CHI_PPM_PER_MM = 1.5, 4.0, 5.0, 0.33


def gd_soaked(tissue: Tissue, gd_mm: float = GD_MM) -> Tissue:
    """A tissue after soaking to equilibrium in ``gd_mm`` Gd-DTPA: R1, R2 and R2* gain
    r1·[Gd] and r2·[Gd] (T2′ kept), χ gains ``proton_density``·0.33 ppm/mM·[Gd] (the agent
    sits in the tissue's water, whose fraction is the proton density)."""
    t2_prime = 1.0 / (1.0 / tissue.t2star_ms - 1.0 / tissue.t2_ms)
    t2 = 1e3 / (1e3 / tissue.t2_ms + GD_R2_PER_S_MM * gd_mm)
    return replace(tissue, t1_ms=1e3 / (1e3 / tissue.t1_ms + GD_R1_PER_S_MM * gd_mm),
                   t2_ms=t2, t2star_ms=1.0 / (1.0 / t2 + 1.0 / t2_prime),
                   chi_ppm=tissue.chi_ppm + tissue.proton_density * GD_CHI_PPM_PER_MM * gd_mm)


#: Fixed inner ear soaked in 1.5 mM Gd-DTPA at 9.4 T. Fluid (perilymph/fixative): T1 3 s,
#: T2 ≈ 0.2 s undoped, so T1 ≈ 160 ms, T2 ≈ 80 ms and χ ≈ +0.5 ppm vs water once doped.
#: Otic capsule: the densest bone of the body, little water, T2* ≈ 0.3–0.5 ms (cortical bone,
#: Reichert et al., Magn Reson Imaging 2005;23:611), χ ≈ −2 ppm vs water (Dimov et al. 2018).
#: Modiolus and cochlear nerve (myelinated nerve, water fraction 0.75): T1 ≈ 1.5 s, T2 ≈
#: 40 ms, T2* ≈ 20 ms at 9.4 T unsoaked; myelin makes nerve ≈ 0.05 ppm more diamagnetic
#: than water (the χ contrast lost in dysmyelinated fixed mouse brain at 9.4 T: Liu et al.,
#: NeuroImage 2011;56:930); soaked: T1 ≈ 150 ms, χ ≈ 0.75·0.5 − 0.05 ≈ +0.32 ppm, 0.17 ppm
#: below the fluid around it. Its fibres run along the modiolar axis (z) into the internal
#: auditory canal; water diffuses about three times faster along myelinated fibres than
#: across them (mean 0.8 µm²/ms: 1.44 along, 0.48 across, FA 0.60; Beaulieu, NMR Biomed
#: 2002;15:435).
_COCHLEA_FLUID = dict(proton_density=1.0, t1_ms=150.0, t2_ms=80.0, t2star_ms=30.0,
                      diffusion_um2_per_ms=2.0, chi_ppm=0.5, fluorescence=0.02)
_NERVE = gd_soaked(Tissue("modiolus", 0.75, 1500.0, 40.0, 20.0, 0.8, -0.05,
                          fluorescence=0.05, axial_to_radial=3.0, fibre_axis=(1.0, 0.0, 0.0)))
COCHLEA_TISSUES = (
    Tissue("medium", **_COCHLEA_FLUID),
    Tissue("bone", 0.15, 400.0, 0.5, 0.4, 0.0, -2.0, fluorescence=0.1),
    _NERVE,
    Tissue("duct", **_COCHLEA_FLUID),
)
#: With ``nerve_canal``: the internal auditory canal's fluid and the cochlear nerve in it.
COCHLEA_CANAL_TISSUES = (
    Tissue("canal fluid", **_COCHLEA_FLUID),
    replace(_NERVE, name="cochlear nerve"),
)
#: Fomblin (perfluoropolyether), in which fixed specimens are scanned: no ¹H signal, and
#: diamagnetic close to water (PTFE, the same CF₂ chains, is −10.3 ppm SI at 2.2 g/cm³:
#: Wapler et al., J Magn Reson 2014;242:233; scaled to Fomblin's 1.9 g/cm³, −8.9 ppm, within
#: 0.2 ppm of water's −9.05), taken as water's. T1/T2 are placeholders (no signal).
FOMBLIN = Tissue("Fomblin", 0.0, 1.0, 1.0, 1.0, 0.0, 0.0)
#: A trapped air bubble in the duct: air's properties under its own label.
AIR_BUBBLE = Tissue("air bubble", 0.0, 1.0, 1.0, 1.0, 0.0, 9.4, 0.0)

#: Calibration capillary. Borosilicate (Pyrex 7740) glass has χ ≈ −13.9 ppm SI against water's
#: −9.05 ppm (Schenck, Med Phys 1996;23:815), so −4.8 ppm relative to water; fused quartz
#: (≈ −11.3 ppm) would be −2.3 ppm: pass ``wall_chi_ppm``. The glass holds no mobile protons.
#: The water is doped with Gd-DTPA to T1 ≈ 300 ms at 9.4 T (≈ 0.75 mM, χ ≈ +0.25 ppm);
#: D = 2.3 µm²/ms (free water, 25 °C).
GLASS_CHI_PPM = -4.8
TUBE_WATER = Tissue("water", 1.0, 300.0, 250.0, 100.0, 2.3, 0.25)

#: Soft tissue at 9.4 T (ρ ≈ 0.8, T1 ≈ 1.2 s, T2 ≈ 50 ms) with weak autofluorescence (~0.02
#: of a particle). Natural-abundance ¹³C in tissue is thermally polarized (~8e-6 at 9.4 T),
#: negligible next to hyperpolarized diamond ¹³C, hence c13_density 0.
#: Microdiamond: no ¹H; its 1.1 % natural-abundance ¹³C is hyperpolarized by optically pumped
#: NV centres and relaxes over minutes at room temperature, > 1 h cryogenically (Rej et al.,
#: Nat Commun 2015;6:8459): relative ¹³C density 1. Its ¹³C T2/T2* (5 ms / 1 ms) are
#: order-of-magnitude assumptions. NV fluorescence: relative brightness 1. χ: diamond
#: −6.2e-9 m³/kg × 3510 kg/m³ = −21.8 ppm SI (CRC Handbook), −12.8 ppm vs water (−9.05).
MICRODIAMOND_TISSUES = (
    Tissue("tissue", 0.8, 1200.0, 50.0, 25.0, 0.8, 0.0, fluorescence=0.02),
    Tissue("microdiamond", 0.0, 3.0e5, 5.0, 1.0, 0.0, -12.8, c13_density=1.0,
           fluorescence=1.0),
)


@dataclass
class Specimen:
    """A digital specimen on a regular grid.

    Attributes
    ----------
    name : str
    labels : ndarray of uint8, (z, y, x)
        Index into ``tissues`` per voxel.
    spacing_um : tuple of float
    tissues : tuple of Tissue
    metadata : dict
        How it was built: the options used, ``scale`` (1, or < 1 if shrunk to fit).
    truth : dict
        Exact geometry in µm, positions in the array frame (``index × spacing_um``); the keys
        are listed per specimen in :func:`make_specimen`.
    """

    name: str
    labels: np.ndarray
    spacing_um: tuple
    tissues: tuple
    metadata: dict = field(default_factory=dict)
    truth: dict = field(default_factory=dict)

    @property
    def tissue_names(self) -> tuple:
        return tuple(t.name for t in self.tissues)

    def property_map(self, prop: str) -> np.ndarray:
        """The float32 map of one property (see :data:`PROPERTIES`)."""
        if prop not in PROPERTIES:
            raise ValueError(f"Specimen: unknown property {prop!r}; one of {PROPERTIES}")
        table = np.array([getattr(t, prop) for t in self.tissues], dtype=np.float32)
        return table[self.labels]


def _grid_um(shape, spacing_um):
    """Voxel-centre coordinates (z, y, x) in µm relative to the volume centre, broadcastable."""
    return [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s).reshape(
            [-1 if i == axis else 1 for i in range(3)])
        for axis, (n, s) in enumerate(zip(shape, spacing_um))
    ]


def _volume_centre_um(shape, spacing_um) -> np.ndarray:
    """The volume centre in the array frame (index × spacing), µm."""
    return (np.asarray(shape, dtype=float) - 1) / 2 * np.asarray(spacing_um, dtype=float)


def _option(name: str, value, low=None, high=None, *, low_open=False) -> float:
    """A finite float option within [low, high] (low excluded if ``low_open``)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"make_specimen: option {name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or (low is not None and (out <= low if low_open else out < low)) \
            or (high is not None and out > high):
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else '∞'}]"
        raise ValueError(f"make_specimen: option {name} = {value!r} is outside {bounds}")
    return out


def _choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"make_specimen: option {name} = {value!r}; one of {choices}")
    return value


# -- tooth --------------------------------------------------------------------------------

def _tooth(shape, spacing_um, rng):
    """A two-rooted lower molar, long axis along z, crown towards low z (the top of a
    napari view) and roots towards high z.

    Dimensions of a human lower first molar: crown ≈ 11 mm mesio-distal × 10 mm
    bucco-lingual × 7.5 mm high, roots ≈ 13 mm (Wheeler's Dental Anatomy, 9th ed.);
    scaled to fit the field of view.
    """
    z, y, x = _grid_um(shape, spacing_um)
    extent = np.array(shape) * np.array(spacing_um)
    fit = min(extent[0] / 22_000.0, extent[1] / 11_500.0, extent[2] / 12_500.0)
    z, y, x = -z / fit, y / fit, x / fit  # "molar µm", crown up
    wobble = 1.0 + 0.03 * rng.standard_normal(4)

    # Crown: a superellipsoid, boxy in plan view; enamel cap 1.2 mm thick above the CEJ.
    zc = 5_000.0
    crown_r = ((np.abs(x) / (5_500 * wobble[0])) ** 3 + (np.abs(y) / (5_000 * wobble[1])) ** 3
               + (np.abs(z - zc) / 3_800.0) ** 3)
    crown = crown_r <= 1.0
    cej = 2_000.0  # cemento-enamel junction
    inner = ((np.abs(x) / 4_300) ** 3 + (np.abs(y) / 3_800) ** 3
             + (np.abs(z - zc + 600) / 3_000.0) ** 3) <= 1.0
    enamel = crown & ~inner & (z > cej)

    # Two roots, tapering cones from the furcation to the apex, splaying apart.
    roots = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=bool)
    canals = np.zeros_like(roots)
    top, apex = 3_000.0, -10_500.0
    t = np.clip((top - z) / (top - apex), 0.0, None)  # 0 at the crown, 1 at the apex
    for side, w in ((-1.0, wobble[2]), (1.0, wobble[3])):
        centre_x = side * (2_300.0 + 900.0 * t) * w
        radius = 2_300.0 * (1.0 - 0.75 * t)
        dist = np.sqrt((x - centre_x) ** 2 + (y / 1.6) ** 2)
        within = (t <= 1.0) & (z <= top)
        roots |= within & (dist <= radius)
        canals |= within & (dist <= 0.22 * radius) & (t < 0.97)

    # Pulp chamber inside the crown, joined to the canals.
    chamber = ((np.abs(x) / 2_900) ** 2 + (np.abs(y) / 2_000) ** 2
               + (np.abs(z - 3_000) / 1_300.0) ** 2) <= 1.0

    labels = np.zeros(roots.shape, dtype=np.uint8)
    labels[crown | roots] = 2  # dentin
    labels[enamel] = 1
    labels[chamber | canals] = 3
    return labels, TOOTH_TISSUES, {}, {"scale": float(fit)}


# -- cochlea ------------------------------------------------------------------------------

#: Cochlear geometry, µm. Human: basal-turn diameter A ≈ 9 mm (Alexiades et al., Otol
#: Neurotol 2015;36:904), height ≈ 5 mm, 2.5 turns, scala radius ≈ 0.9 → 0.5 mm base → apex;
#: the centreline is then ≈ 33 mm long, as the organ-of-Corti length 4.16·A − 4 mm. Mouse:
#: A ≈ 2 mm, height ≈ 1.2 mm, 1.75 turns, duct length ≈ 5–6 mm (Keiler & Richter, Hear Res
#: 2001;162:91). ``apex_radius`` is the centreline's distance from the modiolar axis at the
#: apex, ``bone`` the otic capsule's thickness around the duct.
COCHLEA_GEOMETRY = {
    "human": dict(diameter=9_000.0, height=5_000.0, turns=2.5, duct_base=900.0,
                  duct_apex=500.0, apex_radius=1_100.0, bone=500.0),
    "mouse": dict(diameter=2_000.0, height=1_200.0, turns=1.75, duct_base=180.0,
                  duct_apex=100.0, apex_radius=250.0, bone=120.0),
}


class _Spiral:
    """A conical logarithmic helix around the z axis (centre-relative µm), θ ∈ [0, Θ]:
    R(θ) = R0·e^{−bθ}, z(θ) = z_base + hθ, angle θ + φ0; tube radius linear in θ."""

    def __init__(self, r_base, r_apex, z_base, rise, turns, phi0, duct_base, duct_apex):
        self.theta_end = 2.0 * np.pi * turns
        self.r_base, self.b = r_base, np.log(r_base / r_apex) / self.theta_end
        self.z_base, self.h, self.phi0 = z_base, rise / self.theta_end, phi0
        self.duct_base, self.duct_apex = duct_base, duct_apex

    def radius(self, theta):
        return self.r_base * np.exp(-self.b * theta)

    def z(self, theta):
        return self.z_base + self.h * theta

    def duct(self, theta):
        return self.duct_base + (self.duct_apex - self.duct_base) * (theta / self.theta_end)

    def theta_at(self, z):
        """θ of the centreline at height z, clipped to [0, Θ]."""
        return np.clip((z - self.z_base) / self.h, 0.0, self.theta_end)

    def speed(self, theta):
        """|dc/dθ| in µm per radian."""
        r = self.radius(theta)
        return np.sqrt(r * r * (1.0 + self.b**2) + self.h**2)

    def points(self, theta):
        """Centreline points (N, 3) (z, y, x), centre-relative µm."""
        r, angle = self.radius(theta), theta + self.phi0
        return np.stack([self.z(theta), r * np.sin(angle), r * np.cos(angle)], axis=-1)

    def nearest_theta(self, theta, rho, phi, zz, iterations):
        """Newton's method for the centreline parameter nearest to points (ρ, φ, z),
        started at ``theta``: zero of ½ d/dθ |p − c(θ)|²."""
        b, h = self.b, self.h
        for _ in range(iterations):
            r = self.radius(theta)
            psi = theta + self.phi0 - phi
            cos, sin = np.cos(psi), np.sin(psi)
            dz = zz - self.z(theta)
            g = -b * r * r - rho * r * (-b * cos - sin) - h * dz
            dg = r * r * (2 * b * b) - rho * r * (b * b * cos + 2 * b * sin - cos) + h * h
            theta = theta - g / dg
        return theta

    def distance2(self, theta, rho, phi, zz):
        r, psi = self.radius(theta), theta + self.phi0 - phi
        return ((rho * np.cos(psi) - r) ** 2 + (rho * np.sin(psi)) ** 2
                + (zz - self.z(theta)) ** 2)


def _column_runs(zc, half, nz, dz):
    """First z index and run length of the voxels with |z − zc| ≤ half, per column."""
    lo = np.clip(np.ceil((zc - half) / dz + (nz - 1) / 2), 0, nz)
    hi = np.clip(np.floor((zc + half) / dz + (nz - 1) / 2), -1, nz - 1)
    return lo.astype(np.int64), np.maximum(hi - lo + 1, 0).astype(np.int64)


def _paint_duct(labels, spiral, rho, phi, spacing_um, value, batch=4_000_000):
    """Label every voxel whose centre is within the duct radius of the centreline, with
    flat ends at θ = 0 and Θ.

    Candidates come from each column's meridional crossings θ_k of the helix: the duct's
    cut by the half-plane through the axis is an ellipse around (R(θ_k), z(θ_k)) elongated
    by 1/cos(pitch) < 1.05 here, so |p − c(θ_k)| ≤ 1.15·r bounds a run of z per column. The
    nearest centreline point of each candidate voxel is then found by two Newton steps
    (the first with per-column constants), so only voxels near the duct are visited.
    """
    nz = labels.shape[0]
    dz = spacing_um[0]
    b, h = spiral.b, spiral.h
    base = np.mod(phi - spiral.phi0, 2 * np.pi)
    for k in range(-1, int(np.ceil(spiral.theta_end / (2 * np.pi))) + 1):
        theta_k = base + 2 * np.pi * k
        r_k = spiral.radius(theta_k)
        reach = 1.15 * spiral.duct(theta_k)
        drho = rho - r_k
        near = ((theta_k > -0.5) & (theta_k < spiral.theta_end + 0.5) & (np.abs(drho) < reach))
        iy, ix = np.nonzero(near)
        theta_c, r_c, rho_c = theta_k[iy, ix], r_k[iy, ix], rho[iy, ix]
        z_c = spiral.z(theta_c)
        # Newton step from θ_k (ψ = 0): g = bR(ρ − R) − h·Δz, g′ = 2b²R² − ρR(b² − 1) + h².
        g0 = b * r_c * (rho_c - r_c)
        dg0 = 2 * b * b * r_c * r_c - rho_c * r_c * (b * b - 1) + h * h
        lo, n = _column_runs(z_c, np.sqrt(reach[iy, ix] ** 2 - drho[iy, ix] ** 2), nz, dz)
        ends = np.cumsum(n)
        start = 0
        while start < len(n):
            stop = max(int(np.searchsorted(ends, ends[start] - n[start] + batch, side="right")),
                       start + 1)
            cn = n[start:stop]
            col = np.repeat(np.arange(start, stop), cn)
            iz = lo[col] + (np.arange(len(col)) - np.repeat(np.cumsum(cn) - cn, cn))
            zz = ((iz - (nz - 1) / 2) * dz).astype(np.float32)
            theta = theta_c[col] - (g0[col] - h * (zz - z_c[col])) / dg0[col]
            cy, cx = iy[col], ix[col]
            r_, f_ = rho[cy, cx], phi[cy, cx]
            theta = spiral.nearest_theta(theta, r_, f_, zz, iterations=1)
            inside = ((theta >= 0) & (theta <= spiral.theta_end)
                      & (spiral.distance2(theta, r_, f_, zz) <= spiral.duct(theta) ** 2))
            labels[iz[inside], cy[inside], cx[inside]] = value
            start = stop


def _cochlea(shape, spacing_um, rng, species="human", surrounding="fluid", air_bubble=False,
             bubble_radius_um=None, nerve_canal=False):
    """An inner ear: a spiral duct (a conical logarithmic helix around the z axis, base at low
    z, tapering) of Gd-doped fluid in dense otic-capsule bone, around a conical modiolus
    whose nerve leaves through the bottom of the capsule.

    Labels: 0 medium (Gd-doped fluid), air or Fomblin (``surrounding``), 1 bone, 2 modiolus,
    3 duct; with ``nerve_canal`` 4 canal fluid and 5 cochlear nerve: the internal auditory
    canal below the capsule, a bony tube as wide as the modiolus base, two basal duct radii
    long, whose Gd-doped fluid holds the nerve (0.6 of the canal radius) along the modiolar
    axis; then the air bubble (with ``air_bubble``: air, χ +9.4 ppm vs water, in the basal
    turn, radius ``bubble_radius_um``, default 0.6 × the local duct radius and at most that
    radius).
    """
    species = _choice("species", species, tuple(COCHLEA_GEOMETRY))
    surrounding = _choice("surrounding", surrounding, ("fluid", "air", "fomblin"))
    air_bubble = _choice("air_bubble", air_bubble, (False, True))
    nerve_canal = _choice("nerve_canal", nerve_canal, (False, True))
    g = dict(COCHLEA_GEOMETRY[species])
    wobble = 1.0 + 0.03 * rng.standard_normal(2)
    phi0 = float(rng.uniform(0.0, 2 * np.pi))
    g["diameter"] *= wobble[0]
    g["height"] *= wobble[1]

    extent = np.asarray(shape) * np.asarray(spacing_um)
    canal = 2 * g["duct_base"] if nerve_canal else 0.0  # its length, kept centred (2× in z)
    need = np.array([g["height"] + 2 * g["bone"] + 2 * canal,
                     *(2 * [g["diameter"] + 2 * g["bone"]])])
    fit = float(min(1.0, np.min(extent / (1.05 * need))))
    g = {k: (v if k == "turns" else v * fit) for k, v in g.items()}
    canal *= fit
    rise = g["height"] - g["duct_base"] - g["duct_apex"]
    spiral = _Spiral(g["diameter"] / 2 - g["duct_base"], g["apex_radius"],
                     -g["height"] / 2 + g["duct_base"], rise, g["turns"], phi0,
                     g["duct_base"], g["duct_apex"])
    if air_bubble:  # in the basal turn, a tenth of the way to the apex
        theta_b = 0.1 * spiral.theta_end
        local = float(spiral.duct(theta_b))
        radius = (0.6 * local if bubble_radius_um is None
                  else _option("bubble_radius_um", bubble_radius_um, 0.0, local, low_open=True))
        c = spiral.points(np.array(theta_b))
    elif bubble_radius_um is not None:
        raise ValueError("make_specimen: option bubble_radius_um needs air_bubble=True")

    # Bone: a capsule whose radius at height z covers every duct point at that height
    # (R decreases upwards, so the widest duct point near z belongs to height z − r_base).
    z, y, x = _grid_um(shape, spacing_um)
    z = z.ravel().astype(np.float64)
    rho = np.hypot(y, x)[0]
    phi = np.arctan2(y, x)[0]
    top = spiral.z(spiral.theta_end) + g["duct_apex"] + g["bone"]
    bottom = spiral.z_base - g["duct_base"] - g["bone"]
    in_z = (z >= bottom) & (z <= top)
    capsule = np.where(in_z, spiral.radius(spiral.theta_at(z - g["duct_base"]))
                       + g["duct_base"] + g["bone"], -1.0).astype(np.float32)
    labels = (rho[None] <= capsule[:, None, None]).view(np.uint8)
    # Modiolus: half the distance from the axis to the innermost duct wall at each height.
    modiolus = np.where(
        (z >= bottom) & (z <= spiral.z(spiral.theta_end)),
        0.5 * (spiral.radius(spiral.theta_at(z + g["duct_base"])) - g["duct_base"]), -1.0)
    rows = np.nonzero(modiolus > 0)[0]
    if rows.size:
        sl = slice(rows[0], rows[-1] + 1)
        labels[sl][rho[None] <= modiolus[sl, None, None].astype(np.float32)] = 2
    _paint_duct(labels, spiral, rho, phi, spacing_um, 3)
    canal_radius = 0.5 * (spiral.radius(0.0) - g["duct_base"])  # the modiolus base
    if nerve_canal:
        rows = np.nonzero((z >= bottom - canal) & (z < bottom))[0]
        if rows.size:
            sl = slice(rows[0], rows[-1] + 1)
            labels[sl][:, rho <= canal_radius + g["bone"]] = 1
            labels[sl][:, rho <= canal_radius] = 4
            labels[sl][:, rho <= 0.6 * canal_radius] = 5

    centre = _volume_centre_um(shape, spacing_um)
    length = integrate.quad(spiral.speed, 0.0, spiral.theta_end, limit=200)[0]
    volume = integrate.quad(lambda t: np.pi * spiral.duct(t) ** 2 * spiral.speed(t),
                            0.0, spiral.theta_end, limit=200)[0]
    # Centreline sampled every duct_apex/4 of arc length, base → apex.
    fine = np.linspace(0.0, spiral.theta_end, 200_001)
    arc = integrate.cumulative_trapezoid(spiral.speed(fine), fine, initial=0.0)
    arc *= length / arc[-1]
    theta = np.interp(np.linspace(0.0, length, int(np.ceil(4 * length / g["duct_apex"])) + 1),
                      arc, fine)
    truth = {
        "volume_centre_um": centre,
        "centreline_um": spiral.points(theta) + centre,
        "duct_radius_um": spiral.duct(theta),
        "duct_length_um": float(length),
        "duct_volume_um3": float(volume),
        "turns": float(g["turns"]),
        "basal_diameter_um": float(g["diameter"]),
        "modiolar_axis": (1.0, 0.0, 0.0),
        "duct_label": 3, "modiolus_label": 2, "bone_labels": (1,),
    }
    surround = {"fluid": COCHLEA_TISSUES[0], "air": AIR, "fomblin": FOMBLIN}[surrounding]
    tissues = (surround, *COCHLEA_TISSUES[1:])
    if nerve_canal:
        tissues = (*tissues, *COCHLEA_CANAL_TISSUES)
        truth.update(canal_label=4, nerve_label=5, canal_radius_um=float(canal_radius),
                     nerve_radius_um=float(0.6 * canal_radius), canal_length_um=float(canal))
    if air_bubble:
        box = [slice(max(0, int(np.floor((c[i] - radius) / s + (n - 1) / 2))),
                     min(n, int(np.ceil((c[i] + radius) / s + (n - 1) / 2)) + 1))
               for i, (n, s) in enumerate(zip(shape, spacing_um))]
        zb, yb, xb = ((np.arange(b.start, b.stop) - (n - 1) / 2) * s - c[i]
                      for i, (b, n, s) in enumerate(zip(box, shape, spacing_um)))
        sphere = (zb[:, None, None] ** 2 + yb[None, :, None] ** 2
                  + xb[None, None, :] ** 2) <= radius**2
        labels[tuple(box)][sphere] = len(tissues)
        truth.update(bubble_centre_um=c + centre, bubble_radius_um=radius,
                     bubble_label=len(tissues))
        tissues = (*tissues, AIR_BUBBLE)
    meta = {"scale": fit, "species": species, "surrounding": surrounding,
            "air_bubble": air_bubble, "nerve_canal": nerve_canal}
    return labels, tissues, truth, meta


# -- tube ---------------------------------------------------------------------------------

def _tube(shape, spacing_um, rng, inner_diameter_um=None, wall_thickness_um=None, axis=0,
          offset_um=0.0, grid=False, grid_pitch_um=None, wall_chi_ppm=GLASS_CHI_PPM):
    """A calibration capillary along ``axis`` (0 z, 1 y, 2 x) through the whole FOV, centred
    at the FOV centre + ``offset_um`` ((z, y, x) µm; the component along the axis is
    ignored). Inner diameter default 1/8 of the smaller FOV extent across the tube, wall
    default a quarter of it (as 1.0/1.5 mm ID/OD capillaries); a wall thinner than a voxel
    may leave no glass voxel. ``grid=True`` adds parallel tubes on a square grid
    of pitch ``grid_pitch_um`` (default 2 outer diameters) around the first one, every tube
    that fits wholly inside the FOV, to map distortion against distance from the centre.

    Labels: 0 air, 1 glass, 2 doped water.
    """
    extent = np.asarray(shape) * np.asarray(spacing_um)
    axis = int(_choice("axis", axis, (0, 1, 2)))
    grid = _choice("grid", grid, (False, True))
    try:
        offset = np.broadcast_to(np.asarray(offset_um, dtype=float), (3,)).copy()
    except ValueError:
        raise ValueError(f"make_specimen: option offset_um must be a number or (z, y, x), "
                         f"got {offset_um!r}") from None
    if not np.all(np.isfinite(offset)):
        raise ValueError(f"make_specimen: option offset_um must be finite, got {offset_um!r}")
    offset[axis] = 0.0
    across = [a for a in range(3) if a != axis]
    half = extent[across] / 2
    inner = (extent[across].min() / 8 if inner_diameter_um is None
             else _option("inner_diameter_um", inner_diameter_um, 0.0, low_open=True)) / 2
    wall = (inner / 2 if wall_thickness_um is None
            else _option("wall_thickness_um", wall_thickness_um, 0.0))
    outer = inner + wall
    chi = _option("wall_chi_ppm", wall_chi_ppm, -100.0, 100.0)
    if np.any(np.abs(offset[across]) + outer > half):
        raise ValueError(f"make_specimen: a tube of outer radius {outer:g} µm at offset_um "
                         f"{tuple(offset)} does not fit in the FOV {tuple(extent)} µm; "
                         f"reduce inner_diameter_um, wall_thickness_um or offset_um")
    cross = offset[across][None, :]
    if grid:
        pitch = (4 * outer if grid_pitch_um is None
                 else _option("grid_pitch_um", grid_pitch_um, 2 * outer, low_open=True))
        steps = [np.arange(-np.floor((h + abs(o)) / pitch), np.floor((h + abs(o)) / pitch) + 1)
                 for h, o in zip(half, offset[across])]
        ii, jj = (m.ravel() for m in np.meshgrid(*steps, indexing="ij"))
        cross = cross + pitch * np.stack([ii, jj], 1)
        cross = cross[np.all(np.abs(cross) + outer <= half, axis=1)]
    elif grid_pitch_um is not None:
        raise ValueError("make_specimen: option grid_pitch_um needs grid=True")
    coords = _grid_um(shape, spacing_um)
    u, v = (coords[a].reshape(-1, 1) if i == 0 else coords[a].reshape(1, -1)
            for i, a in enumerate(across))
    plane = np.zeros((u.shape[0], v.shape[1]), dtype=np.uint8)
    for cu, cv in cross:
        d2 = (u - cu) ** 2 + (v - cv) ** 2
        plane[d2 <= outer**2] = 1
        plane[d2 <= inner**2] = 2
    labels = np.ascontiguousarray(np.broadcast_to(np.expand_dims(plane, axis), shape))
    centre = _volume_centre_um(shape, spacing_um)
    centres = np.repeat(centre[None], len(cross), 0)
    centres[:, across] += cross
    tissues = (AIR, Tissue("glass", 0.0, 1.0, 1.0, 1.0, 0.0, chi), TUBE_WATER)
    truth = {"volume_centre_um": centre, "inner_radius_um": float(inner),
             "outer_radius_um": float(outer), "axis": axis, "tube_centres_um": centres,
             "lumen_label": 2, "wall_label": 1}
    return labels, tissues, truth, {"scale": 1.0, "grid": grid}


# -- microdiamonds ------------------------------------------------------------------------

def _dart_throw(rng, half, count, separation, batch=1024, patience=100):
    """``count`` uniform random points in the box |p| ≤ half, pairwise ≥ ``separation``
    apart (random sequential addition): candidates come in batches, those too close to an
    accepted point are dropped at once, the rest are accepted one by one in draw order."""
    accepted = np.empty((0, 3))
    idle = 0
    while len(accepted) < count:
        if idle == patience:
            raise ValueError(f"make_specimen: could not place count={count} particles "
                             f"{separation:g} µm apart (min_separation_um) in the FOV; "
                             f"placed {len(accepted)}")
        cand = rng.uniform(-half, half, size=(batch, 3))
        if len(accepted):
            cand = cand[cKDTree(accepted).query(cand)[0] >= separation]
        before = len(accepted)
        for p in cand:
            if len(accepted) == count:
                break
            if len(accepted) == before or np.min(
                    np.sum((accepted[before:] - p) ** 2, axis=1)) >= separation**2:
                accepted = np.vstack([accepted, p])
        idle = 0 if len(accepted) > before else idle + 1
    return accepted


def _microdiamonds(shape, spacing_um, rng, diameter_um=2.0, count=60, min_separation_um=None):
    """Sparse microdiamonds in a soft-tissue block that fills the FOV.

    ``count`` particles of ``diameter_um`` are placed uniformly at random (seeded), centres
    at least ``min_separation_um`` apart (default half the mean spacing of ``count`` points
    in the FOV, at least 2 diameters) and at least max(diameter, separation/2) from the FOV
    edges. Each particle is rasterized as a sphere (voxel centres within its radius); one
    smaller than a voxel that covers no voxel centre marks its nearest voxel, so no particle
    vanishes. Labels: 0 tissue, 1 microdiamond.
    """
    diameter = _option("diameter_um", diameter_um, 0.0, low_open=True)
    try:
        count = operator.index(count)
    except TypeError:
        raise ValueError(f"make_specimen: option count must be an integer, got {count!r}") from None
    if count < 1:
        raise ValueError(f"make_specimen: option count must be >= 1, got {count}")
    extent = np.asarray(shape) * np.asarray(spacing_um)
    half = extent / 2
    separation = (max(2 * diameter, 0.5 * (np.prod(extent) / count) ** (1 / 3))
                  if min_separation_um is None
                  else _option("min_separation_um", min_separation_um, diameter))
    margin = max(diameter, separation / 2)
    if np.any(half <= margin):
        raise ValueError(f"make_specimen: FOV {tuple(extent)} µm leaves no room for particles "
                         f"{margin:g} µm from the edges; reduce diameter_um or "
                         f"min_separation_um, or enlarge the FOV")
    centres = _dart_throw(rng, half - margin, count, separation)
    labels = np.zeros(shape, dtype=np.uint8)
    spacing = np.asarray(spacing_um)
    radius = diameter / 2
    sub = np.zeros(count, dtype=bool)
    for i, c in enumerate(centres):
        idx = c / spacing + (np.asarray(shape) - 1) / 2
        lo = np.maximum(np.floor(idx - radius / spacing).astype(int), 0)
        hi = np.minimum(np.ceil(idx + radius / spacing).astype(int) + 1, shape)
        axes = [(np.arange(a, b) - (n - 1) / 2) * s - cc
                for a, b, n, s, cc in zip(lo, hi, shape, spacing, c)]
        ball = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                + axes[2][None, None, :] ** 2) <= radius**2
        if ball.any():
            labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][ball] = 1
        else:
            sub[i] = True
            labels[tuple(np.clip(np.rint(idx).astype(int), 0, np.asarray(shape) - 1))] = 1
    centre = _volume_centre_um(shape, spacing_um)
    truth = {"volume_centre_um": centre, "particle_centres_um": centres + centre,
             "particle_radii_um": np.full(count, radius),
             "particle_nearest_voxel_only": sub, "particle_label": 1,
             "min_separation_um": float(separation)}
    return labels, MICRODIAMOND_TISSUES, truth, {"scale": 1.0}


#: Builders and their peak memory in bytes per voxel (measured: benchmarks/bench_memory.py):
#: the tooth evaluates float32 shape functions over the whole grid, the cochlea float
#: distances along its duct; the others hold the labels and one boolean temporary.
_BUILDERS = {"tooth": (_tooth, 40), "cochlea": (_cochlea, 12), "tube": (_tube, 2),
             "microdiamonds": (_microdiamonds, 1)}


def make_specimen(name: str, shape, spacing_um, seed: int = 0, **options) -> Specimen:
    """Build a digital specimen.

    Parameters
    ----------
    name : str
        ``"tooth"``: a two-rooted molar whose pulp alone has long T2 (2.35 T properties;
        shrunk to fit the FOV). No options.

        ``"cochlea"``: a fixed inner ear soaked in Gd-DTPA — a 2.5-turn (human) spiral duct
        of doped fluid (bright, T1 150 ms, χ +0.5 ppm) in dense bone (no signal, χ −2 ppm),
        around a soaked, myelinated modiolus (χ +0.32 ppm), at 9.4 T. Options: ``species``
        "human" (basal diameter 9 mm, 5 mm tall) or "mouse" (2 mm, 1.75 turns);
        ``surrounding`` "fluid", "air" or "fomblin"; ``nerve_canal`` (bool: the internal
        auditory canal, its fluid around the cochlear nerve); ``air_bubble`` (bool) and
        ``bubble_radius_um``. Truth: ``centreline_um`` (N, 3) base → apex, one point per
        quarter apical duct radius of arc; ``duct_radius_um`` (N,); ``duct_length_um`` and
        ``duct_volume_um3`` (∫πr²ds), both by adaptive quadrature of the helix; ``turns``;
        ``basal_diameter_um``; ``modiolar_axis``; ``duct_label``, ``modiolus_label``,
        ``bone_labels``; with the canal ``canal_label``, ``nerve_label``,
        ``canal_radius_um``, ``nerve_radius_um``, ``canal_length_um``; with a bubble
        ``bubble_label``, ``bubble_centre_um``, ``bubble_radius_um``.

        ``"tube"``: a glass capillary of doped water (T1 300 ms) along an axis.
        Options: ``inner_diameter_um``, ``wall_thickness_um``, ``axis``, ``offset_um``,
        ``grid``, ``grid_pitch_um``, ``wall_chi_ppm``. Truth: ``inner_radius_um``,
        ``outer_radius_um``, ``axis``, ``tube_centres_um`` (M, 3) (a point on each tube's
        axis, at the volume centre along it).

        ``"microdiamonds"``: micrometre diamonds (no ¹H, hyperpolarizable ¹³C, fluorescent,
        χ −12.8 ppm vs water) in soft tissue. Options: ``diameter_um`` (2), ``count`` (60),
        ``min_separation_um``. Truth: ``particle_centres_um`` (count, 3),
        ``particle_radii_um``, ``particle_nearest_voxel_only`` (particles that covered no
        voxel centre and mark their nearest voxel), ``min_separation_um``.
    shape : tuple of int
        Grid ``(z, y, x)``.
    spacing_um : float or tuple of float
        Voxel size in µm.
    seed : int
        Seeds the small random variations of the anatomy and the particle positions.
    **options
        Per-specimen keywords, above.

    All ``truth`` positions are in the array frame (index × spacing_um, µm); see the module
    docstring.
    """
    if name not in _BUILDERS:
        raise ValueError(f"make_specimen: unknown specimen {name!r}; one of {sorted(_BUILDERS)}")
    try:
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise ValueError(f"make_specimen: shape must be 3 integers (z, y, x), "
                         f"got {shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"make_specimen: shape must be 3 positive integers (z, y, x), "
                         f"got {shape}")
    try:
        spacing = np.broadcast_to(np.asarray(spacing_um, dtype=float), (3,))
    except ValueError:
        raise ValueError(f"make_specimen: spacing_um must be a number or (z, y, x), "
                         f"got {spacing_um!r}") from None
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise ValueError(f"make_specimen: spacing_um must be positive and finite, "
                         f"got {spacing_um!r}")
    build, bytes_per_voxel = _BUILDERS[name]
    allowed = [p for p in inspect.signature(build).parameters][3:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"make_specimen: unknown option(s) {unknown} for {name!r}; "
                         f"options: {allowed or 'none'}")
    check_memory(bytes_per_voxel * math.prod(shape), f"make_specimen: a {name} of shape {shape}",
                 advice="a coarser specimen grid")
    spacing = tuple(float(s) for s in spacing)
    labels, tissues, truth, meta = build(shape, spacing, np.random.default_rng(seed), **options)
    meta = {"specimen": name, "seed": seed, "options": dict(options), **meta}
    return Specimen(name, labels, spacing, tissues, meta, truth)


#: Soft tissue at 9.4 T for a user's image used as proton density (T1, T2 of brain grey
#: matter order: de Graaf et al., NMR Biomed 2006;19:746).
IMAGE_TISSUE = dict(t1_ms=1900.0, t2_ms=50.0, t2star_ms=30.0, diffusion_um2_per_ms=0.8)


def specimen_from_image(image, shape, spacing_um, levels: int = 64,
                        image_spacing_um=None) -> Specimen:
    """A specimen whose proton density follows an image (e.g. a napari Image layer).

    With ``image_spacing_um`` (the image's voxel size, µm; 2 values for a 2-D image, which
    is then extruded through the grid's depth) the image keeps its physical size: its
    centre at the grid's centre, resampled linearly, cropped where it is larger than the
    field of view and air around it where smaller. Without, it is stretched to ``shape``.
    It is scaled so its 99.5th percentile is 1 (negative values clipped to 0) and
    quantised into ``levels`` proton densities of a soft tissue (:data:`IMAGE_TISSUE`);
    level 0 is air.
    """
    import scipy.ndimage

    image = np.asarray(image, dtype=np.float32)
    spacing = tuple(float(s) for s in np.broadcast_to(spacing_um, (3,)))
    flat = image.ndim == 2
    if flat:
        image = image[None]
    if image.ndim != 3 or image.size == 0:
        raise ValueError(f"specimen_from_image: need a 2-D or 3-D image, got {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("specimen_from_image: the image contains NaN or infinite values")
    if not 2 <= levels <= 256:
        raise ValueError(f"specimen_from_image: levels must be 2..256, got {levels}")
    top = float(np.percentile(image, 99.5))
    if not top > 0:
        raise ValueError("specimen_from_image: the image has no positive values")
    if image_spacing_um is None:
        zoom = [n / m for n, m in zip(shape, image.shape)]
        resampled = scipy.ndimage.zoom(image, zoom, order=1, grid_mode=True, mode="nearest")
    else:
        axes = slice(1, 3) if flat else slice(0, 3)  # a 2-D image: in-plane, then extruded
        own = np.broadcast_to(np.asarray(image_spacing_um, dtype=float), (3 - flat,))
        if not np.all(np.isfinite(own) & (own > 0)):
            raise ValueError(f"specimen_from_image: image_spacing_um must be positive, got "
                             f"{image_spacing_um!r}")
        source, size = image[0] if flat else image, np.asarray(shape)[axes]
        step = np.asarray(spacing)[axes] / own  # image voxels per grid voxel
        offset = (np.asarray(source.shape) - 1) / 2 - (size - 1) / 2 * step  # centres met
        resampled = scipy.ndimage.affine_transform(source, step, offset,
                                                   output_shape=tuple(size), order=1,
                                                   mode="constant", cval=0.0)
        if flat:
            resampled = np.broadcast_to(resampled, tuple(shape))
    labels = np.clip(np.rint(resampled / top * (levels - 1)), 0, levels - 1).astype(np.uint8)
    tissues = (AIR,) + tuple(Tissue(f"level {i}", i / (levels - 1), **IMAGE_TISSUE)
                             for i in range(1, levels))
    return Specimen("image", labels, spacing, tissues, {"specimen": "image", "levels": levels})
