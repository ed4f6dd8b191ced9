"""Pipeline files (TOML), one specimen at a time: steps, atomic outputs, errors, resume."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_mrmicro.cli import main
from napari_mrmicro.io import Volume, write_volume
from napari_mrmicro.io import omezarr
from napari_mrmicro.pipeline import (is_done, load_pipeline, parse_pipeline, run_specimen,
                                     specimen_name)

PIPELINE = """
name = "blobs"

[[step]]
run = "smooth"
sigma_um = 10.0

[[step]]
run = "threshold"
threshold = 0.5

[[step]]
run = "components"
connectivity = 1

[[step]]
run = "measure"

[[step]]
run = "save"
labels = "labels.ome.zarr"
image = "smooth.tif"
"""


def _specimen(path, seed=0, shape=(20, 24, 24)):
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for _ in range(4):
        z, y, x = (rng.integers(3, n - 3) for n in shape)
        image[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = 1.0
    write_volume(path, Volume(image, (10.0, 8.0, 8.0)))
    return image


def _expected_volumes(image):
    smooth = ndi.gaussian_filter(image, (1.0, 1.25, 1.25), mode="reflect", truncate=4.0)
    labels, n = ndi.label(smooth > 0.5)
    return np.sort(np.bincount(labels.ravel())[1:] * 640.0), labels


def test_run_specimen_writes_outputs_atomically_with_a_done_marker(tmp_path):
    image = _specimen(tmp_path / "ear1.tif")
    pipeline = parse_pipeline(PIPELINE, "blobs.toml")
    out = tmp_path / "out"
    out.mkdir()
    result = run_specimen(pipeline, tmp_path / "ear1.tif", out)
    assert result.status == "done", result.error
    folder = out / "ear1"
    assert sorted(p.name for p in folder.iterdir()) == ["done.json", "labels.ome.zarr",
                                                       "regions.csv", "smooth.tif"]
    done = json.loads((folder / "done.json").read_text())
    assert done["pipeline_digest"] == pipeline.digest and done["input"].endswith("ear1.tif")
    volumes, labels = _expected_volumes(image)
    rows = np.genfromtxt(folder / "regions.csv", delimiter=",", names=True)
    np.testing.assert_allclose(np.sort(np.atleast_1d(rows["volume_um3"])), volumes)
    back = omezarr.read(folder / "labels.ome.zarr", lazy=False)
    assert back.layer_type == "labels" and back.spacing_um == (10.0, 8.0, 8.0)
    assert back.data.max() == labels.max()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left

    # a rerun skips it; a changed pipeline reruns it
    assert run_specimen(pipeline, tmp_path / "ear1.tif", out).status == "skipped"
    changed = parse_pipeline(PIPELINE.replace("0.5", "0.4"), "blobs.toml")
    assert changed.digest != pipeline.digest and not is_done(out, "ear1", changed)
    assert run_specimen(changed, tmp_path / "ear1.tif", out).status == "done"


def test_a_failure_writes_an_error_file_and_no_folder(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00 not really a tiff")
    pipeline = parse_pipeline(PIPELINE, "blobs.toml")
    result = run_specimen(pipeline, tmp_path / "bad.tif", tmp_path)
    assert result.status == "failed" and "bad.tif" in result.error
    assert not (tmp_path / "bad").exists()
    text = (tmp_path / "bad.error.txt").read_text()
    assert "bad.tif" in text.splitlines()[0]
    # fixed input: the specimen succeeds and the stale error file goes
    _specimen(tmp_path / "bad.tif")
    assert run_specimen(pipeline, tmp_path / "bad.tif", tmp_path).status == "done"
    assert not (tmp_path / "bad.error.txt").exists()


def test_a_step_error_names_the_input_step_and_problem(tmp_path):
    _specimen(tmp_path / "s.tif")
    pipeline = parse_pipeline('[[step]]\nrun = "recon"\n', "p.toml")
    result = run_specimen(pipeline, tmp_path / "s.tif", tmp_path)
    assert result.status == "failed"
    assert "s.tif: step 1 (recon)" in result.error and "needs a kspace volume" in result.error


def test_resume_after_interruption_skips_finished_and_clears_leftovers(tmp_path):
    for i in range(3):
        _specimen(tmp_path / f"s{i}.tif", seed=i)
    pipeline_file = tmp_path / "p.toml"
    pipeline_file.write_text(PIPELINE)
    out = tmp_path / "out"
    out.mkdir()
    pipeline = load_pipeline(pipeline_file)
    assert run_specimen(pipeline, tmp_path / "s0.tif", out).status == "done"
    # an interrupted run left a half-written specimen behind (killed: no cleanup)
    (out / ".s1.abc123.part").mkdir()
    (out / ".s1.abc123.part" / "smooth.tif").write_bytes(b"half")
    before = (out / "s0" / "done.json").stat().st_mtime_ns
    assert main(["run", str(pipeline_file), *(str(tmp_path / f"s{i}.tif") for i in range(3)),
                 "-o", str(out)]) == 0
    assert (out / "s0" / "done.json").stat().st_mtime_ns == before  # not redone
    assert all(is_done(out, f"s{i}", pipeline) for i in range(3))
    assert not (out / ".s1.abc123.part").exists()


def test_run_command_reports_failures_with_exit_code_1(tmp_path, capsys):
    _specimen(tmp_path / "good.tif")
    (tmp_path / "broken.tif").write_text("no image here")
    (tmp_path / "p.toml").write_text(PIPELINE)
    code = main(["run", str(tmp_path / "p.toml"), str(tmp_path / "good.tif"),
                 str(tmp_path / "broken.tif"), "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 1 and "1 done, 0 skipped (already done), 1 failed" in out
    assert "broken.tif" in out
    assert tifffile.imread(tmp_path / "o" / "good" / "smooth.tif").shape == (20, 24, 24)


@pytest.mark.parametrize("text, message", [
    ("[[step]\nrun=", "not valid TOML"),
    ("name = 'x'\n", "no [[step]] tables"),
    ("[[step]]\nsigma_um = 1\n", "step 1: each [[step]] needs run"),
    ("[[step]]\nrun = 'fly'\n", "step 1: unknown step 'fly'"),
    ("[[step]]\nrun = 'smooth'\nsigma_um = 1\n[[step]]\nrun = 'threshold'\nlevel = 2\n",
     "step 2 (threshold): unknown parameter(s) ['level']"),
    ("[[step]]\nrun = 'smooth'\n", "step 1 (smooth): missing parameter(s) ['sigma_um']"),
    ("steps = 1\n[[step]]\nrun = 'measure'\n", "unknown top-level key(s) ['steps']"),
])
def test_pipeline_errors_name_the_file_step_and_parameter(text, message):
    with pytest.raises(ValueError, match="p.toml") as error:
        parse_pipeline(text, "p.toml")
    assert message in str(error.value)


def test_bad_save_names_and_pipeline_file_errors(tmp_path, capsys):
    _specimen(tmp_path / "s.tif")
    pipeline = parse_pipeline('[[step]]\nrun = "save"\nimage = "../escape.tif"\n', "p.toml")
    result = run_specimen(pipeline, tmp_path / "s.tif", tmp_path)
    assert result.status == "failed" and "inside the specimen's output folder" in result.error
    assert main(["run", str(tmp_path / "none.toml"), str(tmp_path / "s.tif")]) == 2
    assert "none.toml: no such pipeline file" in capsys.readouterr().err


def test_specimen_names():
    assert specimen_name("/d/mouse_03.ome.zarr") == "mouse_03"
    assert specimen_name("/d/tooth.nii.gz") == "tooth"
    assert specimen_name("/d/scan7/2dseq") == "scan7"
    # a ParaVision study: <study>_<scan>, the processed image's number when not the first
    assert specimen_name("/d/rat_12/8/pdata/1/2dseq") == "rat_12_8"
    assert specimen_name("/d/rat_12/8/pdata/2/2dseq") == "rat_12_8_2"
    assert specimen_name("/d/rat_12/5/rawdata.job0") == "rat_12_5"
    assert specimen_name("/d/rat_12/5/fid") == "rat_12_5"
    assert specimen_name("/d/ear.headfile") == "ear"


def test_a_paravision_study_reconstructs_scan_by_scan(realdata, tmp_path):
    """`mrmicro run` on ParaVision scan folders, as `mrmicro recon` takes them: a pipeline
    that starts by reconstructing reads each scan's raw data (it read the pdata image and
    refused), names the specimen <study>_<scan>, and a scan without raw data says so."""
    from napari_mrmicro.io import read_volume

    study = realdata("bruker_pv/pv360_rodent")
    (tmp_path / "p.toml").write_text('[[step]]\nrun = "recon"\n[[step]]\nrun = "save"\n'
                                     'image = "m.nii"\n')
    assert main(["run", str(tmp_path / "p.toml"), str(study / "6"), str(study / "8"),
                 "-o", str(tmp_path / "out")]) == 1
    assert main(["recon", str(study / "6"), str(tmp_path / "m6.nii")]) == 0
    expected = read_volume(tmp_path / "m6.nii")
    got = read_volume(tmp_path / "out" / "pv360_rodent_6" / "m.nii")
    np.testing.assert_array_equal(np.asarray(got.data), np.asarray(expected.data))
    np.testing.assert_allclose(got.affine_um, expected.affine_um)
    error = (tmp_path / "out" / "pv360_rodent_8.error.txt").read_text()
    assert "kept no raw data (fid or rawdata.job0)" in error
    assert main(["recon", str(study / "8"), str(tmp_path / "m8.nii")]) == 2
    # without a recon step a scan folder is its image, as napari opens it
    (tmp_path / "q.toml").write_text('[[step]]\nrun = "save"\nimage = "map.nii"\n')
    assert main(["run", str(tmp_path / "q.toml"), str(study / "8"), "-o",
                 str(tmp_path / "out")]) == 0
    field = read_volume(tmp_path / "out" / "pv360_rodent_8" / "map.nii")
    assert field.metadata["value_unit"] == "Hz" and field.data.shape == (64, 64, 64)
    # the study itself is its scans: those with raw data for a pipeline that reconstructs
    assert main(["run", str(tmp_path / "p.toml"), str(study), "-o",
                 str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "pv360_rodent_5", "pv360_rodent_6", "pv360_rodent_7"]
    np.testing.assert_array_equal(
        np.asarray(read_volume(tmp_path / "all" / "pv360_rodent_6" / "m.nii").data),
        np.asarray(expected.data))
    # a study none of whose scans fits is named, not run as zero specimens
    alone = tmp_path / "study"
    (alone / "8").mkdir(parents=True)
    (alone / "subject").symlink_to(study / "subject")
    for name in ("acqp", "method", "pdata"):
        (alone / "8" / name).symlink_to(study / "8" / name)
    assert main(["run", str(tmp_path / "p.toml"), str(alone), "-o", str(tmp_path / "x")]) == 2


# --------------------------------------------------------------------------- confinement


def test_a_table_name_cannot_escape_the_output_folder(tmp_path):
    (tmp_path / "in").mkdir()
    _specimen(tmp_path / "in" / "s.tif")
    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    for name in ("../../x", "../x", "/tmp/x", "", ".", "sub/../../x"):
        pipeline = parse_pipeline(PIPELINE.replace('run = "measure"',
                                                   f'run = "measure"\ntable = "{name}"'),
                                  "p.toml")
        result = run_specimen(pipeline, tmp_path / "in" / "s.tif", out, force=True)
        assert result.status == "failed", name
        assert "inside the specimen's output folder" in result.error, result.error
    assert sorted(p.name for p in tmp_path.rglob("*.csv")) == []


def test_an_input_named_dot_gets_the_folder_name_and_spares_the_others(tmp_path,
                                                                      monkeypatch):
    folder = tmp_path / "ear7"
    folder.mkdir()
    _specimen(tmp_path / "other.tif", seed=1)
    pipeline = parse_pipeline(PIPELINE, "p.toml")
    out = tmp_path / "out"
    out.mkdir()
    assert run_specimen(pipeline, tmp_path / "other.tif", out).status == "done"
    monkeypatch.chdir(folder)
    assert specimen_name(".") == "ear7" and specimen_name("./") == "ear7"
    assert specimen_name("..") == tmp_path.name
    result = run_specimen(pipeline, ".", out)  # a folder that is no volume: fails
    assert result.status == "failed" and result.name == "ear7"
    assert is_done(out, "other", pipeline)  # the other specimen's results are still there
    assert (out / "ear7.error.txt").is_file()


def test_a_name_without_a_name_is_refused():
    with pytest.raises(ValueError, match="specimen name"):
        specimen_name("/")


def test_a_specimen_never_replaces_a_folder_that_is_not_its_result(tmp_path):
    _specimen(tmp_path / "ear1.tif")
    out = tmp_path / "out"
    (out / "ear1").mkdir(parents=True)
    (out / "ear1" / "precious.dat").write_bytes(b"raw scan")
    (out / "ear2.tif").write_bytes(b"a file")
    pipeline = parse_pipeline(PIPELINE, "p.toml")
    result = run_specimen(pipeline, tmp_path / "ear1.tif", out)
    assert result.status == "failed" and "not a result of mrmicro" in result.error
    assert (out / "ear1" / "precious.dat").read_bytes() == b"raw scan"


def test_the_output_cannot_swallow_the_input(tmp_path):
    out = tmp_path / "out"
    (out / "ear1").mkdir(parents=True)
    _specimen(out / "ear1" / "ear1.tif")
    pipeline = parse_pipeline(PIPELINE, "p.toml")
    result = run_specimen(pipeline, out / "ear1" / "ear1.tif", out)
    assert result.status == "failed" and "holds its input" in result.error
    assert (out / "ear1" / "ear1.tif").is_file()


def test_stale_temporaries_of_one_specimen_spare_a_similarly_named_one(tmp_path):
    _specimen(tmp_path / "a.tif")
    out = tmp_path / "out"
    (out / ".a.b.x1y2.part").mkdir(parents=True)  # specimen "a.b" is being written
    (out / ".a.b.x1y2.part" / "smooth.tif").write_bytes(b"in progress")
    (out / ".a.k3j4.part").mkdir()  # a stale one of "a"
    assert run_specimen(parse_pipeline(PIPELINE, "p.toml"), tmp_path / "a.tif",
                        out).status == "done"
    assert (out / ".a.b.x1y2.part" / "smooth.tif").is_file()
    assert not (out / ".a.k3j4.part").exists()


def test_two_outputs_of_one_specimen_cannot_share_a_file(tmp_path):
    _specimen(tmp_path / "s.tif")
    text = PIPELINE.replace('image = "smooth.tif"', 'image = "labels.ome.zarr"')
    result = run_specimen(parse_pipeline(text, "p.toml"), tmp_path / "s.tif", tmp_path)
    assert result.status == "failed" and "labels.ome.zarr" in result.error


def test_derived_volumes_lie_where_their_input_lies():
    """Every step's result keeps its input's placement, rotation included (scanners store
    oblique and permuted grids)."""
    from napari_mrmicro.core.transforms import rigid_affine
    from napari_mrmicro.pipeline import STEPS, Specimen

    image = np.zeros((12, 10, 8), np.float32)
    image[3:9, 2:8, 2:6] = 1.0
    affine = rigid_affine((20.0, -10.0, 5.0), (100.0, -50.0, 30.0)) @ np.diag([40, 30, 30, 1.0])
    specimen = Specimen("oblique", None)
    specimen.volumes["image"] = Volume(image, (40.0, 30.0, 30.0), {"value_unit": "a.u."},
                                       origin_um=tuple(affine[:3, 3]), affine_um=affine)
    STEPS["smooth"](specimen, sigma_um=30.0)
    STEPS["threshold"](specimen, threshold=0.5)
    STEPS["components"](specimen)
    for role in ("image", "labels"):
        np.testing.assert_allclose(specimen.volumes[role].affine_um, affine)


def test_qsm_takes_b0_along_the_grid_of_an_oblique_scan(monkeypatch):
    """As the QSM dock: B0 (world S) in array axes from the grid's rotation; the
    acquisition's direction for an unrotated grid; a given one wins."""
    import importlib

    from napari_mrmicro.core.qsm import b0_direction_from_affine
    from napari_mrmicro.core.transforms import rigid_affine
    from napari_mrmicro.pipeline import STEPS, Specimen

    core_qsm = importlib.import_module("napari_mrmicro.core.qsm.pipeline")
    seen = []
    monkeypatch.setattr(core_qsm, "qsm", lambda magnitude, phase, te, b0, spacing, direction,
                        **options: seen.append(direction) or np.zeros(phase.shape[-3:],
                                                                     np.float32))
    shape, spacing = (2, 8, 8, 8), (50.0, 50.0, 50.0)
    acq = {"te_ms": (2.0, 4.0), "b0_tesla": 9.4, "b0_direction": (0.0, 1.0, 0.0)}
    oblique = rigid_affine((25.0, 0.0, 10.0), (0.0, 0.0, 0.0)) @ np.diag([50.0] * 3 + [1.0])
    for affine, given, expected in (
            (oblique, None, b0_direction_from_affine(oblique, spacing)),
            (np.diag([50.0] * 3 + [1.0]), None, (0.0, 1.0, 0.0)),
            (oblique, (0.0, 0.0, 1.0), (0.0, 0.0, 1.0))):
        specimen = Specimen("s", None)
        for role in ("image", "phase"):
            specimen.volumes[role] = Volume(np.ones(shape, np.float32), spacing,
                                            {"acquisition": acq}, affine_um=affine)
        STEPS["qsm"](specimen, b0_direction=given)
        assert seen[-1] == pytest.approx(expected)
        assert specimen.volumes["chi"].metadata["value_unit"] == "ppm"
    assert abs(seen[0][1]) < 0.99  # the oblique grid's B0 is not along an array axis


@pytest.mark.parametrize("name", ["chi.tif", "chi.nii.gz", "chi.ome.zarr"])
def test_a_written_result_says_how_it_was_computed(tmp_path, name):
    """The reconstruction's and QSM's settings, an unwarping and the device travel with
    the values in every format we write, so a χ map read back names its method."""
    from napari_mrmicro.io import read_volume

    processing = {"recon": {"window": "hann", "zero_fill": 2.0, "cs": None},
                  "qsm": {"method": "tv", "background": "pdf", "boundary_passes": 20,
                          "te_ms": [3.0, 6.0]},
                  "unwarped": {"field_map": "B0 map", "echo_spacing_ms": 0.3},
                  "device": "gpu"}
    volume = Volume(np.ones((4, 5, 6), np.float32), (10.0, 10.0, 20.0),
                    {"value_unit": "ppm", **processing})
    write_volume(tmp_path / name, volume)
    back = read_volume(tmp_path / name).metadata
    assert {k: back.get(k) for k in processing} == processing
    assert back["value_unit"] == "ppm"
