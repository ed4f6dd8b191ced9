import dataclasses

import numpy as np
import pytest

from napari_mrmicro.core.physics import larmor_hz, magnitude_with_noise, spin_echo_signal
from napari_mrmicro.core.specimens import PROPERTIES, Tissue, gd_soaked, make_specimen


def test_tooth_has_its_tissues_and_is_deterministic():
    a = make_specimen("tooth", (96, 48, 48), 250.0, seed=1)
    b = make_specimen("tooth", (96, 48, 48), 250.0, seed=1)
    assert np.array_equal(a.labels, b.labels)
    counts = np.bincount(a.labels.ravel(), minlength=4)
    assert a.tissue_names == ("air", "enamel", "dentin", "pulp")
    assert np.all(counts > 0)
    # Pulp is enclosed by dentin but for the apical foramina at the root tips.
    pulp = a.labels == 3
    touching = np.zeros_like(pulp)
    for axis in range(3):
        for shift in (1, -1):
            touching |= pulp & (np.roll(a.labels, shift, axis) == 0)
    assert np.count_nonzero(touching) < 0.03 * np.count_nonzero(pulp)
    assert np.nonzero(touching)[0].max(initial=0) < 0.2 * a.labels.shape[0]
    # Physical size is kept when the grid changes: dentin volume agrees within 5 %.
    fine = make_specimen("tooth", (192, 96, 96), 125.0, seed=1)
    vol = lambda s, sp: np.count_nonzero(s.labels == 2) * sp**3  # noqa: E731
    assert vol(fine, 125.0) == pytest.approx(vol(a, 250.0), rel=0.05)


def test_property_maps_follow_the_table():
    s = make_specimen("tooth", (32, 16, 16), 700.0)
    for prop in PROPERTIES:
        m = s.property_map(prop)
        assert m.dtype == np.float32 and m.shape == s.labels.shape
    t2 = s.property_map("t2_ms")
    assert np.all(t2[s.labels == 3] == s.tissues[3].t2_ms)
    with pytest.raises(ValueError, match="property"):
        s.property_map("t3_ms")
    with pytest.raises(ValueError, match="unknown specimen"):
        make_specimen("brain", (8, 8, 8), 10.0)


def test_spin_echo_signal_and_larmor():
    assert larmor_hz(2.35) == pytest.approx(100.057e6, rel=1e-4)
    s = spin_echo_signal(1.0, 1000.0, 50.0, te_ms=50.0, tr_ms=1000.0)
    assert s == pytest.approx((1 - np.exp(-1)) * np.exp(-1))


def test_rician_noise_level():
    rng = np.random.default_rng(0)
    background = magnitude_with_noise(np.zeros(200_000), 2.0, rng)
    # Rayleigh mean σ·√(π/2)
    assert background.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)


# -- cochlea, tube, microdiamonds ----------------------------------------------------------

from scipy import ndimage as ndi  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

SMALL = {
    "cochlea": dict(shape=(40, 64, 64), spacing_um=180.0),
    "tube": dict(shape=(16, 48, 48), spacing_um=20.0),
    "microdiamonds": dict(shape=(32, 32, 32), spacing_um=25.0, count=12),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_specimens_are_deterministic_and_hold_every_tissue(name):
    kw = dict(SMALL[name])
    a = make_specimen(name, kw.pop("shape"), kw.pop("spacing_um"), seed=4, **kw)
    b = make_specimen(name, a.labels.shape, a.spacing_um, seed=4, **kw)
    assert a.labels.dtype == np.uint8
    assert np.array_equal(a.labels, b.labels)
    for key, value in a.truth.items():
        assert np.array_equal(np.asarray(value), np.asarray(b.truth[key])), key
    assert np.all(np.bincount(a.labels.ravel(), minlength=len(a.tissues)) > 0)
    assert a.labels.max() < len(a.tissues)
    if name != "tube":  # the tube has no random part
        c = make_specimen(name, a.labels.shape, a.spacing_um, seed=5, **kw)
        assert not np.array_equal(a.labels, c.labels)


def _label_volumes(s):
    return np.bincount(s.labels.ravel(), minlength=len(s.tissues)) * np.prod(s.spacing_um)


@pytest.mark.parametrize("name, coarse, options", [
    ("cochlea", dict(shape=(40, 64, 64), spacing_um=160.0), {}),
    ("cochlea", dict(shape=(40, 64, 64), spacing_um=40.0), dict(species="mouse")),
    ("tube", dict(shape=(8, 96, 96), spacing_um=10.0),
     dict(grid=True, inner_diameter_um=160.0, wall_thickness_um=60.0, grid_pitch_um=300.0)),
    ("microdiamonds", dict(shape=(60, 60, 60), spacing_um=20.0),
     dict(diameter_um=200.0, count=5)),
])
def test_physical_size_does_not_depend_on_the_grid(name, coarse, options):
    a = make_specimen(name, coarse["shape"], coarse["spacing_um"], seed=2, **options)
    b = make_specimen(name, tuple(2 * n for n in coarse["shape"]), coarse["spacing_um"] / 2,
                      seed=2, **options)
    assert a.metadata["scale"] == b.metadata["scale"]
    va, vb = _label_volumes(a), _label_volumes(b)
    big = va > 0.002 * va.sum()  # labels resolved on both grids
    np.testing.assert_allclose(vb[big], va[big], rtol=0.04)
    for key in ("centreline_um", "tube_centres_um", "particle_centres_um"):
        if key in a.truth:
            np.testing.assert_allclose(a.truth[key] - a.truth["volume_centre_um"],
                                       b.truth[key] - b.truth["volume_centre_um"], atol=1e-6)


@pytest.fixture(scope="module")
def cochlea():
    """A human cochlea at 60 µm: the apical duct radius (500 µm) spans ≈ 8 voxels."""
    return make_specimen("cochlea", (120, 192, 192), 60.0, seed=7)


def test_cochlea_centreline_length_and_turns(cochlea):
    t = cochlea.truth
    path = t["centreline_um"]
    assert path.shape == (len(t["duct_radius_um"]), 3)
    # Base → apex: the duct tapers, rises along z and winds inwards.
    assert t["duct_radius_um"][0] > t["duct_radius_um"][-1]
    assert path[-1, 0] > path[0, 0]
    axis_yx = path[:, 1:] - t["volume_centre_um"][1:]
    assert np.hypot(*axis_yx[0]) > 2 * np.hypot(*axis_yx[-1])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.max() <= t["duct_radius_um"].min() / 4 * 1.001
    assert steps.sum() == pytest.approx(t["duct_length_um"], rel=0.005)
    # A human centreline of ≈ 33 mm: CDL ≈ 4.16 A − 4 mm (Alexiades et al. 2015).
    a_mm = t["basal_diameter_um"] / 1000
    assert t["duct_length_um"] / 1000 == pytest.approx(4.16 * a_mm - 4, rel=0.1)
    angle = np.unwrap(np.arctan2(axis_yx[:, 0], axis_yx[:, 1]))
    assert abs(angle[-1] - angle[0]) / (2 * np.pi) == pytest.approx(2.5, abs=0.01)
    mouse = make_specimen("cochlea", (24, 40, 40), 60.0, species="mouse")
    yx = mouse.truth["centreline_um"][:, 1:] - mouse.truth["volume_centre_um"][1:]
    turns = abs(np.diff(np.unwrap(np.arctan2(yx[:, 0], yx[:, 1]))[[0, -1]]))[0] / (2 * np.pi)
    assert turns == pytest.approx(1.75, abs=0.01)
    assert mouse.truth["duct_length_um"] < 0.25 * t["duct_length_um"]


def test_cochlea_duct_follows_its_centreline(cochlea):
    t, sp = cochlea.truth, cochlea.spacing_um[0]
    path, radius = t["centreline_um"], t["duct_radius_um"]
    duct = cochlea.labels == t["duct_label"]
    tree = cKDTree(path)
    d, j = tree.query(np.argwhere(duct) * sp, workers=-1)
    assert np.all(d <= radius[j] + sp)
    # ... and fills it: voxels well inside the tube (away from the flat ends) are duct
    # (checked on every other voxel along each axis).
    sub = duct[::2, ::2, ::2]
    d, j = tree.query(np.argwhere(np.ones_like(sub)) * 2 * sp, workers=-1,
                      distance_upper_bound=radius.max())
    inner = (j < len(path) - 1) & (j > 0)
    inner[inner] = d[inner] < radius[j[inner]] - sp
    assert np.count_nonzero(inner) > 0.3 * np.count_nonzero(sub)
    assert np.all(sub.ravel()[inner])
    # Duct volume against ∫πr² ds along the truth path (trapezoid rule), and the quadrature.
    area = np.pi * radius**2
    expected = np.sum((area[1:] + area[:-1]) / 2 * np.linalg.norm(np.diff(path, axis=0), axis=1))
    assert np.count_nonzero(duct) * sp**3 == pytest.approx(expected, rel=0.05)
    assert t["duct_volume_um3"] == pytest.approx(expected, rel=0.005)
    # Bone encloses the duct: no duct voxel touches the surrounding medium or the modiolus.
    grown = ndi.binary_dilation(duct)
    assert not np.any(grown & (cochlea.labels == 0))
    assert not np.any(grown & (cochlea.labels == t["modiolus_label"]))
    assert t["bone_labels"] == (1,) and cochlea.tissue_names[1] == "bone"


def test_cochlea_tissue_properties_and_options():
    s = make_specimen("cochlea", (40, 64, 64), 180.0, surrounding="air", air_bubble=True,
                      bubble_radius_um=500.0)
    names = s.tissue_names
    assert names == ("air", "bone", "modiolus", "duct", "air bubble")
    duct, bone, bubble = (s.tissues[names.index(n)] for n in ("duct", "bone", "air bubble"))
    assert duct.proton_density == 1.0 and 100 <= duct.t1_ms <= 300 and 50 <= duct.t2_ms <= 100
    assert bone.t2_ms <= 1.0 and bone.chi_ppm == pytest.approx(-2.0)
    assert bubble.proton_density == 0 and bubble.chi_ppm == pytest.approx(9.4)
    chi = s.property_map("chi_ppm")
    assert np.all(chi[s.labels == 4] == np.float32(9.4))
    assert s.property_map("proton_density")[0, 0, 0] == 0  # air around the capsule
    # The bubble is a sphere of the requested radius on the duct centreline.
    t = s.truth
    assert np.count_nonzero(s.labels == 4) * 180.0**3 == pytest.approx(
        4 / 3 * np.pi * 500.0**3, rel=0.25)
    assert cKDTree(t["centreline_um"]).query(t["bubble_centre_um"])[0] < 180.0
    fluid = make_specimen("cochlea", (40, 64, 64), 180.0)
    assert fluid.tissue_names[0] == "medium" and "air bubble" not in fluid.tissue_names
    # A field of view too small shrinks the ear to fit and says so.
    small = make_specimen("cochlea", (40, 64, 64), 50.0)
    assert small.metadata["scale"] < 1
    assert small.truth["basal_diameter_um"] < 64 * 50.0


def test_soaked_cochlea_in_fomblin_with_its_nerve_canal():
    # Gd soak, by hand: R1 = 1/1.5 s + 4/s/mM · 1.5 mM = 6.67/s; χ = −0.05 + 0.75·0.33·1.5
    nerve = gd_soaked(Tissue("nerve", 0.75, 1500.0, 40.0, 20.0, 0.8, -0.05))
    assert nerve.t1_ms == pytest.approx(150.0) and nerve.chi_ppm == pytest.approx(0.32125)
    assert nerve.t2_ms == pytest.approx(1e3 / 32.5)
    assert 1 / nerve.t2star_ms - 1 / nerve.t2_ms == pytest.approx(1 / 20.0 - 1 / 40.0)
    s = make_specimen("cochlea", (64, 96, 96), 100.0, surrounding="fomblin",
                      nerve_canal=True, air_bubble=True)
    t, names = s.truth, s.tissue_names
    assert names == ("Fomblin", "bone", "modiolus", "duct", "canal fluid", "cochlear nerve",
                     "air bubble")
    assert (t["canal_label"], t["nerve_label"], t["bubble_label"]) == (4, 5, 6)
    assert s.tissues[0].proton_density == 0
    assert dataclasses.replace(s.tissues[5], name="modiolus") == s.tissues[2]
    # the modiolus is soaked like its nerve: T1 of the fluid, χ 0.17 ppm below it
    fluid, modiolus = s.tissues[4], s.tissues[2]
    assert modiolus.t1_ms == pytest.approx(fluid.t1_ms, rel=0.05)
    assert fluid.chi_ppm - modiolus.chi_ppm == pytest.approx(0.18, abs=0.01)
    # The canal hangs below the capsule on the modiolar axis: fluid around the nerve, in
    # bone, and the nerve meets the modiolus; the duct stays walled in by bone.
    centre = np.asarray(s.labels.shape) // 2
    axis = s.labels[:, centre[1], centre[2]]
    nerve_rows = np.nonzero(axis == 5)[0]
    assert nerve_rows.size and axis[nerve_rows[-1] + 1] == 2  # nerve → modiolus
    row = s.labels[nerve_rows[nerve_rows.size // 2], centre[1]]
    inside = np.nonzero(row != 0)[0]  # bone | fluid | nerve | fluid | bone across the canal
    runs = [int(v) for i, v in enumerate(row[inside]) if i == 0 or row[inside][i - 1] != v]
    assert runs == [1, 4, 5, 4, 1]
    assert np.count_nonzero(row == 5) * 100.0 == pytest.approx(2 * t["nerve_radius_um"],
                                                              abs=200.0)
    assert t["canal_length_um"] == pytest.approx(2 * 900.0 * s.metadata["scale"])
    duct = ndi.binary_dilation(s.labels == t["duct_label"])
    assert not np.any(duct & np.isin(s.labels, (0, 2, 4, 5)))


def test_tube_diameter_and_offset_are_honoured():
    sp = 10.0
    s = make_specimen("tube", (8, 96, 96), sp, inner_diameter_um=200.0, wall_thickness_um=40.0,
                      offset_um=(0.0, 120.0, -150.0))
    t = s.truth
    assert t["inner_radius_um"] == 100.0 and t["outer_radius_um"] == 140.0  # 10 voxels
    for z in (0, 7):
        section = s.labels[z]
        lumen = section == t["lumen_label"]
        assert np.sqrt(lumen.sum() * sp**2 / np.pi) == pytest.approx(100.0, rel=0.02)
        assert np.sqrt((section > 0).sum() * sp**2 / np.pi) == pytest.approx(140.0, rel=0.02)
        centroid = np.array(ndi.center_of_mass(lumen)) * sp
        np.testing.assert_allclose(centroid, t["tube_centres_um"][0, 1:], atol=0.05 * sp)
    np.testing.assert_allclose(t["tube_centres_um"][0] - t["volume_centre_um"],
                               (0.0, 120.0, -150.0))
    assert np.array_equal(s.labels[0], s.labels[-1])
    water = s.tissues[t["lumen_label"]]
    assert water.t1_ms == 300.0 and s.tissues[t["wall_label"]].proton_density == 0
    # Along x, default size: 1/8 of the smaller FOV extent across the tube.
    x = make_specimen("tube", (40, 64, 32), 25.0, axis=2)
    assert x.truth["inner_radius_um"] == pytest.approx(40 * 25.0 / 16)
    assert np.all(x.labels == x.labels[:, :, :1])


def test_tube_grid_covers_the_field_of_view():
    s = make_specimen("tube", (4, 128, 128), 10.0, grid=True, inner_diameter_um=100.0,
                      grid_pitch_um=300.0, offset_um=(0.0, 40.0, 0.0))
    t = s.truth
    centres = t["tube_centres_um"]
    lumens, n = ndi.label(s.labels[2] == t["lumen_label"])
    assert n == len(centres) >= 9
    found = np.array(ndi.center_of_mass(lumens > 0, lumens, range(1, n + 1))) * 10.0
    assert cKDTree(centres[:, 1:]).query(found)[0].max() < 1.0
    assert np.any(np.all(np.isclose(centres - t["volume_centre_um"], (0.0, 40.0, 0.0)), 1))
    # Every tube lies wholly inside the FOV; the pitch is honoured.
    assert np.all(centres[:, 1:] - t["outer_radius_um"] >= -5.0)
    assert np.all(centres[:, 1:] + t["outer_radius_um"] <= 128 * 10.0 - 5.0)
    gaps = cKDTree(centres).query(centres, k=2)[0][:, 1]
    np.testing.assert_allclose(gaps, 300.0)


def test_microdiamonds_keep_every_particle():
    s = make_specimen("microdiamonds", (48, 48, 48), 20.0, seed=3)  # 2 µm ≪ 20 µm voxels
    t = s.truth
    centres = t["particle_centres_um"]
    assert centres.shape == (60, 3) and np.all(t["particle_radii_um"] == 1.0)
    assert np.all(t["particle_nearest_voxel_only"])
    assert np.min(cKDTree(centres).query(centres, k=2)[0][:, 1]) >= t["min_separation_um"]
    particles = s.labels == t["particle_label"]
    assert ndi.label(particles)[1] == 60
    nearest = np.rint(centres / 20.0).astype(int)
    assert np.all(particles[tuple(nearest.T)])
    margin = t["min_separation_um"] / 2
    assert np.all((centres >= margin - 10.0) & (centres <= 48 * 20.0 - margin))
    for prop in ("c13_density", "fluorescence"):
        m = s.property_map(prop)
        assert m[particles].min() > 0 and m[particles].min() > 10 * m[~particles].max()
    assert np.all(s.property_map("proton_density")[particles] == 0)
    assert np.all(s.property_map("c13_density")[~particles] == 0)
    assert s.tissues[1].chi_ppm == pytest.approx(-21.8 + 9.05, abs=0.1)
    # Particles larger than a voxel are rasterized as spheres around their exact centres.
    big = make_specimen("microdiamonds", (48, 48, 48), 2.0, diameter_um=20.0, count=5)
    lab, n = ndi.label(big.labels == 1)
    assert n == 5 and not np.any(big.truth["particle_nearest_voxel_only"])
    found = np.array(ndi.center_of_mass(lab > 0, lab, range(1, 6))) * 2.0
    assert cKDTree(big.truth["particle_centres_um"]).query(found)[0].max() < 0.5
    assert np.bincount(lab.ravel())[1:] * 8.0 == pytest.approx(
        np.full(5, 4 / 3 * np.pi * 1000.0), rel=0.1)


@pytest.mark.parametrize("args, kwargs, match", [
    (("cochlea", (8, 8), 10.0), {}, "shape"),
    (("cochlea", (8, 8, 0), 10.0), {}, "shape"),
    (("cochlea", (8, 8, 8), (10.0, -1.0, 10.0)), {}, "spacing_um"),
    (("cochlea", (8, 8, 8), float("nan")), {}, "spacing_um"),
    (("cochlea", (8, 8, 8), 10.0), dict(species="cat"), "species"),
    (("cochlea", (8, 8, 8), 10.0), dict(turns=3), "turns"),
    (("cochlea", (16, 16, 16), 500.0), dict(air_bubble=True, bubble_radius_um=5000.0),
     "bubble_radius_um"),
    (("cochlea", (16, 16, 16), 500.0), dict(bubble_radius_um=50.0), "air_bubble"),
    (("tooth", (8, 8, 8), 10.0), dict(species="human"), "species"),
    (("tube", (8, 8, 8), 10.0), dict(inner_diameter_um=-1.0), "inner_diameter_um"),
    (("tube", (8, 32, 32), 10.0), dict(offset_um=(0.0, 150.0, 0.0)), "offset_um"),
    (("tube", (8, 8, 8), 10.0), dict(axis=3), "axis"),
    (("tube", (8, 32, 32), 10.0), dict(grid_pitch_um=100.0), "grid"),
    (("microdiamonds", (8, 8, 8), 10.0), dict(count=0), "count"),
    (("microdiamonds", (16, 16, 16), 10.0), dict(count=500, min_separation_um=50.0),
     "min_separation_um"),
])
def test_bad_parameters_are_named(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_specimen(*args, **kwargs)


def test_specimen_from_image_follows_the_image():
    from napari_mrmicro.core.specimens import specimen_from_image

    image = np.zeros((8, 16, 16), np.float32)
    image[2:6, 4:12, 4:12] = 3.0
    image[3:5, 6:10, 6:10] = 1.5
    s = specimen_from_image(image, (16, 32, 32), 10.0, levels=16)
    pd = s.property_map("proton_density")
    assert pd.shape == (16, 32, 32) and pd.max() == pytest.approx(1.0)
    assert pd[8, 16, 16] == pytest.approx(0.5, abs=1 / 15)
    assert pd[0, 0, 0] == 0.0 and s.tissue_names[0] == "air"
    with pytest.raises(ValueError, match="NaN"):
        specimen_from_image(np.full((4, 4, 4), np.nan), (8, 8, 8), 1.0)
    with pytest.raises(ValueError, match="positive"):
        specimen_from_image(np.zeros((4, 4, 4)), (8, 8, 8), 1.0)


def test_specimen_from_image_keeps_the_image_physical_size():
    """With the image's voxel size, a 1 × 2 × 2 mm block stays that size in a 1.6 mm field
    of view (cropped in-plane, air around it in depth), centred; a 2-D image is extruded.
    Stretched to the grid (before), a 9 × 7.6 × 16 mm head became a 6.4 mm cube."""
    from napari_mrmicro.core.specimens import specimen_from_image

    image = np.zeros((20, 40, 60), np.float32)
    image[5:15, 10:30, 20:40] = 1.0  # 1 × 2 × 2 mm at 100 µm, centred
    s = specimen_from_image(image, (32, 32, 32), 50.0, image_spacing_um=100.0)
    inside = np.argwhere(s.labels > 0)
    extent = (inside.max(axis=0) - inside.min(axis=0) + 1) * 50.0
    assert extent[0] == pytest.approx(1000.0, abs=100.0)  # ±1 voxel of linear blur
    assert list(extent[1:]) == [1600.0, 1600.0]  # wider than the field of view: cropped
    assert (inside.min(axis=0)[0] + inside.max(axis=0)[0]) / 2 == pytest.approx(15.5, abs=0.5)
    flat = specimen_from_image(image[10], (8, 32, 32), 50.0, image_spacing_um=(100.0, 100.0))
    assert np.all((flat.labels > 0).sum(axis=(1, 2)) == 32 * 32)
    with pytest.raises(ValueError, match="image_spacing_um"):
        specimen_from_image(image, (8, 8, 8), 50.0, image_spacing_um=(0.0, 1.0, 1.0))
