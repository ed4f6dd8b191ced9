"""Digital specimens: labelled structures with per-tissue MR properties.

A :class:`Specimen` stores one label volume and a property table; each property map
(proton density, T1, T2, T2*, diffusion, χ, chemical shift) is a lookup of that table,
so a specimen costs one byte per voxel until a map is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Property names, units in the names (DESIGN.md conventions).
PROPERTIES = ("proton_density", "t1_ms", "t2_ms", "t2star_ms", "diffusion_um2_per_ms",
              "chi_ppm", "shift_ppm")


@dataclass(frozen=True)
class Tissue:
    """MR properties of one tissue; χ is relative to water, shift in ppm from water."""

    name: str
    proton_density: float
    t1_ms: float
    t2_ms: float
    t2star_ms: float
    diffusion_um2_per_ms: float = 0.0
    chi_ppm: float = 0.0
    shift_ppm: float = 0.0


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
    """

    name: str
    labels: np.ndarray
    spacing_um: tuple
    tissues: tuple
    metadata: dict = field(default_factory=dict)

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


def _tooth(shape, spacing_um, rng) -> np.ndarray:
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
    return labels


_BUILDERS = {"tooth": (_tooth, TOOTH_TISSUES)}


def make_specimen(name: str, shape, spacing_um, seed: int = 0) -> Specimen:
    """Build a digital specimen.

    Parameters
    ----------
    name : str
        One of ``"tooth"`` (a two-rooted molar whose pulp alone has long T2).
    shape : tuple of int
        Grid ``(z, y, x)``.
    spacing_um : float or tuple of float
        Voxel size in µm.
    seed : int
        Seeds the small random variations of the anatomy.
    """
    if name not in _BUILDERS:
        raise ValueError(f"make_specimen: unknown specimen {name!r}; one of {sorted(_BUILDERS)}")
    shape = tuple(int(n) for n in shape)
    spacing = np.broadcast_to(np.asarray(spacing_um, dtype=float), (3,))
    if len(shape) != 3 or min(shape) < 1 or not np.all(spacing > 0):
        raise ValueError(f"make_specimen: need a 3-D shape and positive spacing, "
                         f"got {shape} and {spacing_um}")
    build, tissues = _BUILDERS[name]
    labels = build(shape, tuple(spacing), np.random.default_rng(seed))
    return Specimen(name, labels, tuple(float(s) for s in spacing), tissues)
