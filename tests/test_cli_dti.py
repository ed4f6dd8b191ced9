"""`mrmicro dti` end to end: a NIfTI diffusion series with its FSL table -> MD, FA, AD, RD,
the colour map and S0 files, and the refusals."""

import numpy as np
import pytest
import tifffile

from napari_mrmicro.cli import main
from napari_mrmicro.io import read_volume

nib = pytest.importorskip("nibabel")

rng = np.random.default_rng(0)
DIRECTIONS = rng.normal(size=(12, 3))
DIRECTIONS /= np.linalg.norm(DIRECTIONS, axis=1)[:, None]
B = np.r_[0.0, np.full(12, 1000.0)]


def write_series(folder, with_table=True):
    """A 12 × 16 × 16 voxel NIfTI (RAS, 50 µm): a block of fibre along world A
    (λ 1.7, 0.3, 0.3 µm²/ms) in noise; the FSL table (det > 0: i negated)."""
    shape = (16, 16, 12)  # NIfTI i, j, k
    inside = np.zeros(shape, bool)
    inside[4:12, 4:12, 3:9] = True
    d = np.diag([0.3, 1.7, 0.3])
    g = np.r_[np.zeros((1, 3)), DIRECTIONS]
    attenuation = np.exp(-1e-3 * B * np.einsum("ni,ij,nj->n", g, d, g))
    clean = 1000.0 * inside[..., None] * attenuation
    noise = np.random.default_rng(1).normal(0, 10, clean.shape + (2,))
    data = np.abs(clean + noise[..., 0] + 1j * noise[..., 1]).astype(np.float32)
    affine = np.diag([0.05, 0.05, 0.05, 1.0])
    nib.save(nib.Nifti1Image(data, affine), folder / "dwi.nii.gz")
    if with_table:
        vox = g.copy()
        vox[:, 0] *= -1
        (folder / "dwi.bval").write_text(" ".join(f"{v:g}" for v in B))
        (folder / "dwi.bvec").write_text("\n".join(" ".join(f"{v:.7f}" for v in row)
                                                   for row in vox.T))
    return folder / "dwi.nii.gz", inside.T  # (z, y, x)


def test_dti_writes_every_map(tmp_path, capsys):
    series, inside = write_series(tmp_path)
    out = {k: tmp_path / f"{k}.nii.gz" for k in ("md", "fa", "ad", "rd", "s0")}
    assert main(["dti", str(series), str(out["md"]), "--fa", str(out["fa"]), "--ad",
                 str(out["ad"]), "--rd", str(out["rd"]), "--s0", str(out["s0"]),
                 "--colour", str(tmp_path / "dec.tif")]) == 0
    said = capsys.readouterr().out
    assert "mean diffusivity in µm²/ms, wls fit of 13 images (b 0-1000 s/mm²)" in said
    md, fa = read_volume(out["md"]), read_volume(out["fa"])
    assert md.metadata["value_unit"] == "µm²/ms"
    assert np.median(md.data[inside]) == pytest.approx(0.767, rel=0.03)
    assert np.median(fa.data[inside]) == pytest.approx(0.80, abs=0.03)
    assert np.median(read_volume(out["ad"]).data[inside]) == pytest.approx(1.7, rel=0.05)
    assert np.median(read_volume(out["rd"]).data[inside]) == pytest.approx(0.3, rel=0.1)
    assert np.median(read_volume(out["s0"]).data[inside]) == pytest.approx(1000, rel=0.02)
    assert not md.data[~inside].any()  # the background is not fitted
    colour = tifffile.imread(tmp_path / "dec.tif")
    assert colour.dtype == np.uint8 and colour.shape == inside.shape + (3,)
    rgb = colour[inside].astype(float)
    assert np.median(rgb[:, 1]) > 180 and np.median(rgb[:, 0] + rgb[:, 2]) < 40  # green: A-P
    np.testing.assert_allclose(md.world_affine_um(), read_volume(series).world_affine_um()[
        -4:, -4:], atol=1e-3)  # where the series lies


def test_info_names_the_diffusion_scheme(tmp_path, capsys):
    series, _ = write_series(tmp_path)
    assert main(["info", str(series)]) == 0
    assert "diffusion: 13 images, b 0, 1000 s/mm², 12 directions (each image's b-matrix " \
        "stated)" in capsys.readouterr().out


def test_dti_refusals(tmp_path, capsys):
    series, _ = write_series(tmp_path, with_table=False)
    assert main(["dti", str(series), str(tmp_path / "md.nii")]) == 2
    assert "states no b-matrices" in capsys.readouterr().err
    series, _ = write_series(tmp_path)
    assert main(["dti", str(series), str(tmp_path / "adc.nii"), "--model", "adc",
                 "--fa", str(tmp_path / "fa.nii")]) == 2
    assert "need the tensor model" in capsys.readouterr().err
    assert not (tmp_path / "adc.nii").exists()  # refused before anything is written
    assert main(["dti", str(series), str(tmp_path / "md.nii"), "--colour",
                 str(tmp_path / "dec.nii.gz")]) == 2
    assert "written as TIFF" in capsys.readouterr().err and not (tmp_path / "md.nii").exists()


def test_dti_in_a_pipeline_measured_per_label(tmp_path):
    """The step `dti` takes the b-matrices the series states; FA is measured per label
    over its fitted voxels and saved with how it was fitted."""
    series, inside = write_series(tmp_path)
    (tmp_path / "p.toml").write_text('[[step]]\nrun = "dti"\n'
                                     '[[step]]\nrun = "save"\nfa = "fa.nii.gz"\n'
                                     'dec = "dec.tif"\n'
                                     '[[step]]\nrun = "echo"\n[[step]]\n'
                                     'run = "threshold"\n[[step]]\nrun = "components"\n'
                                     '[[step]]\nrun = "measure"\nintensity = "fa"\n')
    assert main(["run", str(tmp_path / "p.toml"), str(series), "--out",
                 str(tmp_path / "o")]) == 0
    folder = next((tmp_path / "o").iterdir())
    saved = read_volume(folder / "fa.nii.gz")
    assert saved.metadata["diffusion"]["method"] == "wls"
    assert saved.metadata["diffusion"]["fitted_voxels"] == int(inside.sum())
    assert tifffile.imread(folder / "dec.tif").shape == inside.shape + (3,)
    header, *rows = [line.split(",") for line in
                     (folder / "regions.csv").read_text().splitlines()]
    block = max(rows, key=lambda row: int(row[header.index("voxel_count")]))  # noise specks
    assert int(block[header.index("intensity_voxels")]) == int(inside.sum())
    assert float(block[header.index("mean_intensity")]) == pytest.approx(0.80, abs=0.03)


def test_a_gradient_table_given_by_name(tmp_path, capsys):
    """Tables named otherwise than the image (a converter's bvals.txt) are given with
    --bval/--bvec; one without the other is refused."""
    series, inside = write_series(tmp_path / "", with_table=True)
    (tmp_path / "dwi.bval").rename(tmp_path / "grad_bvals.txt")
    (tmp_path / "dwi.bvec").rename(tmp_path / "grad_bvecs.txt")
    out = tmp_path / "md.nii"
    assert main(["dti", str(series), str(out), "--bval", str(tmp_path / "grad_bvals.txt")]) == 2
    assert "--bval and --bvec together" in capsys.readouterr().err
    assert main(["dti", str(series), str(out), "--bval", str(tmp_path / "grad_bvals.txt"),
                 "--bvec", str(tmp_path / "grad_bvecs.txt"), "--colour",
                 str(tmp_path / "dec.tif")]) == 0
    assert np.median(read_volume(out).data[inside]) == pytest.approx(2.3 / 3, rel=0.03)
    rgb = tifffile.imread(tmp_path / "dec.tif")[inside].astype(float)
    assert np.median(rgb[:, 1]) > 180  # A-P: the table's sign convention followed


def test_fluid_at_the_noise_floor_is_named_and_the_rician_fit_reads_it_right(tmp_path,
                                                                             capsys):
    """Free fluid at b 1000 and 3000 (SNR 30 at b 0): a WLS map reads it low and the
    command says why and what to fit; the rician fit reads 2.0 µm²/ms."""
    from napari_mrmicro.core.diffusion_tensor import diffusion_scheme

    b = np.concatenate([diffusion_scheme(12, 1000.0), diffusion_scheme(12, 3000.0)[1:]])
    g = np.linalg.eigh(b)[1][:, :, -1]
    values = np.trace(b, axis1=1, axis2=2)
    inside = np.zeros((16, 16, 12), bool)
    inside[3:13, 3:13, 2:10] = True
    clean = inside[..., None] * np.exp(-2e-3 * values)
    noise = np.random.default_rng(3).normal(0, 1 / 30, clean.shape + (2,))
    data = np.abs(clean + noise[..., 0] + 1j * noise[..., 1]).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.05, 0.05, 0.05, 1.0])), tmp_path / "f.nii")
    vox = g.copy()
    vox[:, 0] *= -1
    (tmp_path / "f.bval").write_text(" ".join(f"{v:g}" for v in values))
    (tmp_path / "f.bvec").write_text("\n".join(" ".join(f"{v:.7f}" for v in row)
                                               for row in vox.T))
    assert main(["dti", str(tmp_path / "f.nii"), str(tmp_path / "wls.nii")]) == 0
    said = capsys.readouterr().out
    assert "of the diffusion-weighted points lie below 3σ" in said and "fit 'rician'" in said
    assert main(["dti", str(tmp_path / "f.nii"), str(tmp_path / "r.nii"), "--method",
                 "rician"]) == 0
    assert "below 3σ" not in capsys.readouterr().out
    fluid = inside.T
    assert np.median(read_volume(tmp_path / "wls.nii").data[fluid]) < 1.8
    assert np.median(read_volume(tmp_path / "r.nii").data[fluid]) == pytest.approx(2.0,
                                                                                    rel=0.04)
