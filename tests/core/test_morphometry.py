"""Region table against analytic shapes (also with anisotropic voxels), CSV, segmentation."""

import csv

import numpy as np
import pytest
from scipy import integrate

from napari_mrmicro.core.morphometry import measure_duct, region_table, write_table_csv
from napari_mrmicro.core.segmentation import (
    connected_components, fill_holes, keep_largest, otsu_threshold, threshold_mask)

# A generic (not lattice-symmetric) centre offset, in voxels: voxel counts of a sphere of radius
# 10 centred exactly between voxels are 0.8 % high, a lattice coincidence.
OFFSET = np.array([0.31, 0.17, 0.42])


def grid(shape, spacing):
    """Physical coordinates (µm) relative to a centre placed OFFSET voxels off the middle."""
    spacing = np.asarray(spacing, float)
    centre = (np.array(shape) // 2 + OFFSET) * spacing
    axes = [np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)]
    return np.meshgrid(*axes, indexing="ij"), centre


def ellipsoid_area(a, b, c):
    """Surface area of an ellipsoid by numerical integration of |r_θ × r_φ|."""
    th = np.linspace(0, np.pi, 801)
    ph = np.linspace(0, 2 * np.pi, 801)
    T, P = np.meshgrid(th, ph, indexing="ij")
    st, ct, sp, cp = np.sin(T), np.cos(T), np.sin(P), np.cos(P)
    r_th = np.array([a * ct * cp, b * ct * sp, -c * st])
    r_ph = np.array([-a * st * sp, b * st * cp, np.zeros_like(T)])
    f = np.linalg.norm(np.cross(r_th, r_ph, axis=0), axis=0)
    return integrate.trapezoid(integrate.trapezoid(f, ph, axis=1), th)


ISO, ANISO = (1.0, 1.0, 1.0), (50.0, 25.0, 25.0)


def sphere(spacing, radius_um, shape):
    (z, y, x), centre = grid(shape, spacing)
    return (z**2 + y**2 + x**2 <= radius_um**2), centre


@pytest.mark.parametrize("spacing, radius, shape", [(ISO, 10.0, (26, 26, 26)),
                                                    (ANISO, 500.0, (26, 46, 46))])
def test_sphere(spacing, radius, shape):
    mask, centre = sphere(spacing, radius, shape)
    t = region_table(mask.astype(np.uint8), spacing)
    volume, area = 4 / 3 * np.pi * radius**3, 4 * np.pi * radius**2
    assert t["label"].tolist() == [1]
    assert t["volume_um3"][0] == pytest.approx(volume, rel=0.005)
    assert t["volume_mm3"][0] == pytest.approx(t["volume_um3"][0] * 1e-9)
    assert t["surface_area_um2"][0] == pytest.approx(area, rel=0.02)
    assert t["sphericity"][0] == pytest.approx(1.0, abs=0.025)
    assert t["equivalent_diameter_um"][0] == pytest.approx(2 * radius, rel=0.002)
    assert t["feret_max_um"][0] == pytest.approx(2 * radius, abs=max(spacing))  # ± ½ voxel per end
    for axis in ("major", "middle", "minor"):
        assert t[f"axis_{axis}_um"][0] == pytest.approx(2 * radius, rel=0.01)
    got = [t[f"centroid_{a}_um"][0] for a in "zyx"]
    np.testing.assert_allclose(got, centre, atol=0.05 * min(spacing))
    assert not t["touches_border"][0]


@pytest.mark.parametrize("spacing, axes_um, shape", [(ISO, (12.0, 18.0, 25.0), (30, 42, 56)),
                                                     (ANISO, (500.0, 350.0, 650.0), (26, 34, 58))])
def test_ellipsoid(spacing, axes_um, shape):
    (z, y, x), _ = grid(shape, spacing)
    a, b, c = axes_um
    mask = (z / a) ** 2 + (y / b) ** 2 + (x / c) ** 2 <= 1
    t = region_table(mask, spacing)
    assert t["volume_um3"][0] == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.005)
    assert t["surface_area_um2"][0] == pytest.approx(ellipsoid_area(a, b, c), rel=0.02)
    got = [t[f"axis_{k}_um"][0] for k in ("major", "middle", "minor")]
    np.testing.assert_allclose(got, sorted((2 * a, 2 * b, 2 * c), reverse=True), rtol=0.01)
    assert t["feret_max_um"][0] == pytest.approx(2 * max(axes_um), abs=max(spacing))


@pytest.mark.parametrize("spacing, radii, shape", [(ISO, (25.0, 10.0), (26, 74, 74)),
                                                   (ANISO, (600.0, 500.0), (26, 94, 94))])
def test_torus(spacing, radii, shape):
    (z, y, x), _ = grid(shape, spacing)
    big, small = radii
    mask = (np.hypot(y, x) - big) ** 2 + z**2 <= small**2
    t = region_table(mask, spacing)
    assert t["volume_um3"][0] == pytest.approx(2 * np.pi**2 * big * small**2, rel=0.005)
    assert t["surface_area_um2"][0] == pytest.approx(4 * np.pi**2 * big * small, rel=0.02)
    assert t["feret_max_um"][0] == pytest.approx(2 * (big + small), abs=max(spacing))


def test_binary_marching_cubes_would_be_biased():
    """The smoothing matters: raw marching cubes on the same mask is ≈ 8 % high."""
    from skimage.measure import marching_cubes, mesh_surface_area

    mask, _ = sphere(ISO, 12.0, (30, 30, 30))
    vertices, faces, _, _ = marching_cubes(np.pad(mask, 2).astype(np.float32), 0.5)
    area = 4 * np.pi * 12.0**2
    assert mesh_surface_area(vertices, faces) / area - 1 > 0.05
    assert abs(region_table(mask, ISO)["surface_area_um2"][0] / area - 1) < 0.02


@pytest.mark.parametrize("spacing, radius_vox", [(ISO, 4.0), (ISO, 6.0), ((2.0, 1.0, 1.0), 3.0)])
def test_small_sphere_keeps_its_area(spacing, radius_vox):
    """A sphere a few voxels across (a microdiamond, a cell): the smoothed mask's 0.5 level
    shrank it (R = 4 voxels: −15 %, R = 6: −6 %); the level that keeps its volume does not."""
    radius = radius_vox * max(spacing)
    shape = tuple(int(2 * radius / s) + 10 for s in spacing)
    centre = [(n - 1) / 2 * s + 0.3 * s for n, s in zip(shape, spacing)]
    z, y, x = np.meshgrid(*[np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)],
                          indexing="ij")
    t = region_table((z**2 + y**2 + x**2 <= radius**2).astype(np.uint8), spacing)
    assert t["surface_area_um2"][0] == pytest.approx(4 * np.pi * radius**2, rel=0.05)
    assert t["sphericity"][0] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_disk_in_thick_slices(slices):
    """A disk 1–3 slices thick on 500 µm slices and 100 µm pixels (scan 5's grid): the 0.5
    level of the smoothed mask lost the one-slice disk and read the others 9–13 % low."""
    spacing = (500.0, 100.0, 100.0)
    labels = np.zeros((8, 60, 60), np.uint8)
    y, x = np.meshgrid((np.arange(60) - 29.5) * 100, (np.arange(60) - 29.5) * 100,
                       indexing="ij")
    disk = y**2 + x**2 <= 2500.0**2
    labels[2:2 + slices] = disk
    area = 2 * disk.sum() * 100.0**2 + slices * 500.0 * 2 * np.pi * 2500.0
    t = region_table(labels, spacing)
    assert t["surface_area_um2"][0] == pytest.approx(area, rel=0.06)
    assert t["sphericity"][0] < 0.8  # a flat disk, far from a sphere


def test_several_labels_with_intensity():
    labels = np.zeros((20, 30, 40), np.uint16)
    labels[2:6, 3:8, 4:10] = 3  # 4 x 5 x 6 box
    labels[10:18, 10:25, 20:35] = 7
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, labels.shape).astype(np.float32)
    spacing = (40.0, 20.0, 10.0)
    t = region_table(labels, spacing, intensity=image)
    assert t["label"].tolist() == [3, 7]
    assert t["voxel_count"].tolist() == [120, 8 * 15 * 15]
    assert t["volume_um3"][0] == pytest.approx(120 * 8000.0)
    box = image[2:6, 3:8, 4:10].astype(np.float64)
    assert t["mean_intensity"][0] == pytest.approx(box.mean())
    assert t["std_intensity"][0] == pytest.approx(box.std())
    assert t["min_intensity"][0] == box.min() and t["max_intensity"][0] == box.max()
    assert t["integrated_intensity"][0] == pytest.approx(box.sum() * 8000.0)
    assert [t[f"bbox_{a}_start_vox"][0] for a in "zyx"] == [2, 3, 4]
    assert [t[f"bbox_{a}_stop_vox"][0] for a in "zyx"] == [6, 8, 10]
    # A box of 4 x 5 x 6 voxels is 160 x 100 x 60 µm: its second-moment axes are those of a
    # uniform box, 2·√(5·L²/12) for each side L.
    np.testing.assert_allclose([t["axis_major_um"][0], t["axis_middle_um"][0],
                                t["axis_minor_um"][0]],
                               [2 * np.sqrt(5 * L**2 / 12) for L in (160, 100, 60)], rtol=1e-9)
    assert t["centroid_z_um"][0] == pytest.approx(3.5 * 40.0)


def test_intensity_over_the_voxels_that_have_a_value():
    """A T2 map is 0 where the fit failed: with ``intensity_valid`` those voxels are left
    out of the statistics and counted; a label without any value gets NaN statistics."""
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[1:5, 2:8, 2:10] = 1
    labels[6:9, 2:8, 2:10] = 2
    t2 = np.full(labels.shape, 40.0, np.float32)
    t2[1:3, 2:8, 2:10] = 20.0
    t2[1, 2:4, 2:10] = 0.0  # not fitted
    t2[6:9] = 0.0  # label 2: nothing fitted
    t = region_table(labels, ISO, intensity=t2, intensity_valid=t2 != 0)
    inside = t2[1:5, 2:8, 2:10]
    assert t["intensity_voxels"].tolist() == [np.count_nonzero(inside), 0]
    assert t["mean_intensity"][0] == pytest.approx(inside[inside != 0].mean())
    assert t["min_intensity"][0] == 20.0 and np.isnan(t["mean_intensity"][1])
    assert t["mean_intensity"][0] > region_table(labels, ISO, intensity=t2)["mean_intensity"][0]
    with pytest.raises(ValueError, match="intensity_valid needs an intensity"):
        region_table(labels, ISO, intensity_valid=t2 != 0)


def test_empty_single_voxel_and_border():
    empty = region_table(np.zeros((5, 6, 7), np.uint8), ISO)
    assert set(empty) >= {"label", "volume_um3", "surface_area_um2"}
    assert all(len(column) == 0 for column in empty.values())

    labels = np.zeros((12, 12, 12), np.uint8)
    labels[6, 6, 6] = 1
    t = region_table(labels, (2.0, 1.0, 1.0))
    assert t["volume_um3"][0] == 2.0 and t["voxel_count"][0] == 1
    assert np.isnan(t["surface_area_um2"][0]) and np.isnan(t["sphericity"][0])
    assert t["feret_max_um"][0] == pytest.approx(np.sqrt(4 + 1 + 1))  # the voxel's diagonal
    assert not t["touches_border"][0]

    # A hemisphere cut by the first slice: flagged, its volume is the part inside, and its
    # surface is closed along the cut (flat disk + dome, the rim rounded by the smoothing).
    spacing, radius = np.array([2.0, 1.0, 1.0]), 24.0
    shape = (16, 60, 60)
    centre = np.array([-0.5, 30.3, 29.6]) * spacing  # on the outer face of slice 0
    z, y, x = np.meshgrid(*[np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)],
                          indexing="ij")
    t = region_table(z**2 + y**2 + x**2 <= radius**2, spacing)
    assert t["touches_border"][0]
    assert t["volume_um3"][0] == pytest.approx(2 / 3 * np.pi * radius**3, rel=0.005)
    assert t["surface_area_um2"][0] == pytest.approx(3 * np.pi * radius**2, rel=0.06)


def test_bad_inputs():
    labels = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="spacing_um"):
        region_table(labels, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing_um"):
        region_table(labels, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="3-D"):
        region_table(np.zeros((4, 4), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="integer"):
        region_table(np.full((4, 4, 4), 0.5), ISO)
    with pytest.raises(ValueError, match="negative"):
        region_table(np.full((4, 4, 4), -1), ISO)
    with pytest.raises(ValueError, match="intensity shape"):
        region_table(labels, ISO, intensity=np.zeros((4, 4, 5)))
    labels[1, 1, 1] = 1
    image = np.zeros((4, 4, 4))
    image[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        region_table(labels, ISO, intensity=image)


def test_write_table_csv_round_trip(tmp_path):
    mask, _ = sphere(ISO, 5.0, (14, 14, 14))
    table = region_table(mask, ISO, intensity=mask * 2.0)
    path = write_table_csv(table, tmp_path / "table.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(table)
    assert "volume_um3" in rows[0] and "surface_area_um2" in rows[0]
    values = dict(zip(rows[0], rows[1]))
    assert float(values["volume_um3"]) == table["volume_um3"][0]  # full precision
    assert int(values["touches_border"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temp file left
    with pytest.raises(ValueError, match="differ in length"):
        write_table_csv({"a": [1, 2], "b": [1]}, tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_measure_duct_refuses_missing_label():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 4:6, 4:6] = 1
    with pytest.raises(ValueError, match="label 5"):
        measure_duct(labels, ISO, label=5)


# -- segmentation helpers ---------------------------------------------------------------------

def test_threshold_and_components():
    rng = np.random.default_rng(1)
    image = rng.normal(10, 1, (20, 20, 20))
    image[5:10, 5:10, 5:10] += 20
    image[12:15, 12:15, 12:15] += 20
    level = otsu_threshold(image)
    assert 13 < level < 27
    mask = threshold_mask(image)
    assert mask.sum() == 125 + 27
    labels, count = connected_components(mask)
    assert count == 2 and labels.dtype == np.int32
    assert sorted(np.bincount(labels.ravel())[1:]) == [27, 125]
    assert threshold_mask(image, threshold=1e9).sum() == 0
    # Diagonal neighbours join only with corner connectivity.
    diagonal = np.zeros((3, 3, 3), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert connected_components(diagonal, 1)[1] == 2
    assert connected_components(diagonal, 3)[1] == 1
    with pytest.raises(ValueError, match="connectivity"):
        connected_components(diagonal, 4)
    with pytest.raises(ValueError, match="constant"):
        otsu_threshold(np.ones((3, 3, 3)))


def test_fill_holes_and_keep_largest():
    (z, y, x), _ = grid((24, 24, 24), ISO)
    r = np.sqrt(z**2 + y**2 + x**2)
    shell = (r <= 8) & (r > 4)
    labels = shell.astype(np.uint8)
    labels[0:2, 0:2, 0:2] = 2  # a separate small label
    filled = fill_holes(labels)
    assert filled.dtype == np.uint8
    assert np.array_equal(filled == 1, r <= 8)  # the cavity is filled with the shell's label
    assert np.array_equal(filled == 2, labels == 2)
    assert np.array_equal(fill_holes(shell), r <= 8)
    # Two blobs of label 1: keep the larger; label 2 untouched.
    labels[20:23, 20:23, 20:23] = 1
    kept = keep_largest(labels)
    assert np.array_equal(kept == 1, shell) and np.array_equal(kept == 2, labels == 2)
    assert np.array_equal(keep_largest(labels == 1), shell)


def test_centroids_in_the_world_of_the_grid_placement():
    """With the grid's affine (a scanner's placement) centroids are world positions; the
    chunked table's centroids move the same way."""
    from napari_mrmicro.core.chunked import region_volumes_chunked
    from napari_mrmicro.core.morphometry import centroids_in_world
    from napari_mrmicro.core.transforms import rigid_affine

    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:5, 3:9, 4:6] = 1
    labels[6:9, 1:3, 8:13] = 2
    spacing = (30.0, 20.0, 10.0)
    affine = rigid_affine((15.0, 0.0, -40.0), (-900.0, 50.0, 1200.0)) @ np.diag([*spacing, 1])
    table = region_table(labels, spacing, affine_um=affine)
    for row, label in enumerate((1, 2)):
        index = np.argwhere(labels == label).mean(axis=0)
        expected = affine[:3, :3] @ index + affine[:3, 3]
        got = [table[f"centroid_{a}_um"][row] for a in "zyx"]
        np.testing.assert_allclose(got, expected, atol=1e-9)
    plain = region_table(labels, spacing)
    np.testing.assert_allclose(plain["centroid_x_um"], [4.5 * 10.0, 10.0 * 10.0])
    chunked = centroids_in_world(region_volumes_chunked(labels, spacing), spacing, affine)
    np.testing.assert_allclose(chunked["centroid_y_um"], table["centroid_y_um"])
