"""FSL bval/bvec tables beside a NIfTI: the b-matrices in array axes, the radiological
sign of the i component, and broken tables refused by file."""

from pathlib import Path

import numpy as np
import pytest

from napari_mrmicro.core import geometry
from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion
from napari_mrmicro.io import FormatError, read_volume
from napari_mrmicro.io.fsl_gradients import find_gradient_files, read_gradient_table

nib = pytest.importorskip("nibabel")

rng = np.random.default_rng(0)
WORLD_DIRECTIONS = rng.normal(size=(20, 3))
WORLD_DIRECTIONS /= np.linalg.norm(WORLD_DIRECTIONS, axis=1)[:, None]
B = np.r_[0.0, np.full(20, 1200.0)]


def turn(degrees, axis):
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def write_dwi(folder: Path, rotation, fibre_world, spacing_mm=0.05, shape=(6, 5, 4),
              names=("dwi.bval", "dwi.bvec"), layout="rows"):
    """A 4-D NIfTI of one tensor (a fibre along ``fibre_world``, RAS) everywhere, with the
    FSL table as FSL defines it: directions in voxel axes, i negated when det > 0."""
    affine = np.eye(4)
    affine[:3, :3] = rotation * spacing_mm
    fibre = np.asarray(fibre_world, float) / np.linalg.norm(fibre_world)
    d_world = 0.2 * np.eye(3) + 1.6 * np.outer(fibre, fibre)  # µm²/ms, FA 0.87
    g = np.r_[np.zeros((1, 3)), WORLD_DIRECTIONS]
    attenuation = np.exp(-1e-3 * B * np.einsum("ni,ij,nj->n", g, d_world, g))
    data = np.broadcast_to(1000.0 * attenuation, shape + (len(B),)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), folder / "dwi.nii.gz")
    vox = g @ rotation  # world -> voxel axes (rotation is orthonormal)
    if np.linalg.det(rotation) > 0:
        vox[:, 0] *= -1
    (folder / names[0]).write_text(" ".join(f"{v:g}" for v in B) + "\n")
    table = vox.T if layout == "rows" else vox
    (folder / names[1]).write_text("\n".join(" ".join(f"{v:.8f}" for v in row)
                                             for row in table) + "\n")
    return folder / "dwi.nii.gz", fibre


def world_direction(volume):
    """The fitted principal direction of the volume's first voxel in RAS."""
    fit = fit_diffusion(np.asarray(volume.data), volume.metadata["acquisition"][
        "b_matrix_s_per_mm2"], mask=np.ones(volume.data.shape[1:], bool))
    world = volume.affine_um
    napari_axes = (world[:3, :3] / geometry.voxel_sizes(world)[None, :]) @ fit.principal[
        :, 0, 0, 0]
    return napari_axes[::-1], fit  # (S, A, R) -> (R, A, S)


@pytest.mark.parametrize("rotation", [np.eye(3), turn(30, 2) @ turn(20, 0),
                                      np.diag([-1.0, 1.0, 1.0]) @ turn(25, 1)],
                         ids=["axial", "oblique", "radiological"])
@pytest.mark.parametrize("fibre", [(1, 0, 0), (0.3, 0.8, 0.5)])
def test_the_fibre_points_where_it_lies_in_the_world(tmp_path, rotation, fibre):
    path, unit = write_dwi(tmp_path, rotation, fibre)
    volume = read_volume(path)
    assert volume.metadata["gradient_table"][0].endswith("dwi.bval")
    direction, fit = world_direction(volume)
    assert abs(direction @ unit) == pytest.approx(1.0, abs=1e-5)
    assert fit.fa()[0, 0, 0] == pytest.approx(0.87, abs=0.01)


def test_fsl_folder_names_and_one_row_per_volume(tmp_path):
    path, unit = write_dwi(tmp_path, turn(40, 1), (0, 1, 0), names=("bvals", "bvecs"),
                           layout="columns")
    assert find_gradient_files(path) == (tmp_path / "bvals", tmp_path / "bvecs")
    direction, _ = world_direction(read_volume(path))
    assert abs(direction @ unit) == pytest.approx(1.0, abs=1e-5)


def test_shortened_vectors_scale_their_b_value(tmp_path):
    (tmp_path / "x.bval").write_text("0 3000 3000\n")
    (tmp_path / "x.bvec").write_text("0 0.5 1\n0 0 0\n0 0 0\n")
    b = read_gradient_table(tmp_path / "x.bval", tmp_path / "x.bvec", -np.eye(4), 3)
    np.testing.assert_allclose(np.trace(b, axis1=1, axis2=2), [0, 750, 3000])
    assert b[1, 2, 2] == pytest.approx(750)  # i is array axis x; det < 0: no sign change


@pytest.mark.parametrize("bval, bvec, message", [
    ("0 1000", "0 1 0\n0 0 1\n0 0 0\n", "2 b-values for an image of 3"),
    ("0 1000 -5", "0 1 0\n0 0 1\n0 0 0\n", "negative"),
    ("0 1000 1000", "0 1\n0 0\n", "expected 3 rows"),
    ("0 1000 1000", "0 0 1\n0 0 0\n0 0 0\n", "no direction"),
    ("0 1000 nan", "0 1 0\n0 0 1\n0 0 0\n", "NaN"),
    ("0 1000 x", "0 1 0\n0 0 1\n0 0 0\n", "not a number"),
    ("0 1000 1000", "0 1 0\n0 0\n0 0 0\n", "differ in length"),
])
def test_broken_tables_are_refused_by_file(tmp_path, bval, bvec, message):
    (tmp_path / "x.bval").write_text(bval)
    (tmp_path / "x.bvec").write_text(bvec)
    with pytest.raises(FormatError, match=message):
        read_gradient_table(tmp_path / "x.bval", tmp_path / "x.bvec", np.eye(4), 3)


def test_a_nifti_without_a_table_or_3d_has_no_b_matrix(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)),
             tmp_path / "series.nii")
    assert "b_matrix_s_per_mm2" not in read_volume(tmp_path / "series.nii").metadata[
        "acquisition"]
    assert find_gradient_files(tmp_path / "series.nii") is None


@pytest.mark.parametrize("rotation", [np.eye(3), turn(30, 2) @ turn(20, 0),
                                      np.diag([-1.0, 1.0, 1.0])], ids=["axial", "oblique",
                                                                       "radiological"])
def test_a_written_series_carries_its_table(tmp_path, rotation):
    """Writing a diffusion series as NIfTI puts its FSL table beside it (for FSL, MRtrix3,
    DIPY): read back by FSL's rules on the written affine it gives the same b-matrices;
    the image's own extension keeps the full ones."""
    from napari_mrmicro.io import Volume, write_volume

    g = np.r_[np.zeros((1, 3)), WORLD_DIRECTIONS]
    b = b_matrices(np.r_[0.0, np.full(20, 1200.0)], g)
    b[0] = np.diag([3.0, 9.0, 12.0])  # an "A0" image's imaging-gradient weighting
    world = np.eye(4)
    world[:3, :3] = rotation * 40.0
    series = Volume(np.ones((21, 3, 4, 5), np.float32), (40.0,) * 3,
                    {"acquisition": {"b_matrix_s_per_mm2": b.tolist()}}, affine_um=world,
                    axis_labels=("diffusion", "z", "y", "x"))
    written = write_volume(tmp_path / "dwi.nii.gz", series)
    assert written[1:] == [str(tmp_path / "dwi.bval"), str(tmp_path / "dwi.bvec")]
    img = nib.load(tmp_path / "dwi.nii.gz")
    table = read_gradient_table(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", img.affine, 21)
    np.testing.assert_allclose(table[1:], b[1:], atol=1e-4)  # rank one: all of it
    assert np.trace(table[0]) == pytest.approx(24.0)  # the trace along its main axis
    np.testing.assert_allclose(table[0], np.diag([0, 0, 24.0]), atol=1e-9)
    back = read_volume(tmp_path / "dwi.nii.gz").metadata["acquisition"]["b_matrix_s_per_mm2"]
    np.testing.assert_allclose(back, b)  # the extension's full matrices win
