"""User errors on the command line: one line on stderr naming the problem, exit status 2,
never a traceback, never a hang; numbers outside their physical range are refused."""

import subprocess
import sys

import numpy as np
import pytest

from napari_mrmicro.cli import main
from napari_mrmicro.io import Volume, write_volume
from napari_mrmicro.pipeline import parse_pipeline, run_specimen


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    image = np.zeros((8, 8, 8), np.float32)
    image[2:6, 2:6, 2:6] = 1.0
    write_volume(folder / "m.nii", Volume(image, (50.0, 50.0, 50.0)))
    write_volume(folder / "p.nii", Volume(np.zeros((2, 8, 8, 8), np.float32),
                                          (50.0, 50.0, 50.0)))
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("z_um,y_um,x_um\n")
    (folder / "p.toml").write_text('[[step]]\nrun = "measure"\n')
    assert main(["simulate", "tube", str(folder / "k.zarr"), "--matrix", "8",
                 "--no-noise"]) == 0
    return folder


BAD_CALLS = [
    ("simulate tube {d}/s.zarr --matrix 8 --averages 0", "--averages"),
    ("simulate tube {d}/s.zarr --matrix 8 --fov-mm 1e-9", "--fov-mm"),
    ("simulate tube {d}/s.zarr --matrix 8 --fov-mm 1e9", "--fov-mm"),
    ("simulate tube {d}/s.zarr --matrix 8 --b0-tesla 1e9", "--b0-tesla"),
    ("simulate tube {d}/s.zarr --matrix 8 --b0-tesla inf", "--b0-tesla"),
    ("simulate tube {d}/s.zarr --matrix 8 --nonlinearity-percent nan",
     "--nonlinearity-percent"),
    ("simulate tube {d}/s.zarr --matrix 0", "--matrix"),
    ("simulate tube {d}/s.zarr --matrix 8 --te-ms 3,inf", "--te-ms"),
    ("simulate tube {d}/s.zarr --matrix 8 --seed -1", "--seed"),
    ("recon {d}/k.zarr {d}/r.nii --zero-fill inf", "--zero-fill"),
    ("recon {d}/k.zarr {d}/r.nii --zero-fill 0.5", "--zero-fill"),
    ("register {d}/m.nii {d}/m.nii {d}/t.json --method landmarks --fixed-points "
     "{d}/empty.csv --moving-points {d}/empty.csv", "empty.csv"),
    ("register {d}/m.nii {d}/m.nii {d}/t.json --method landmarks --fixed-points "
     "{d}/header.csv --moving-points {d}/header.csv", "header.csv"),
    ("convert {d}/m.nii {d}/c.zarr --levels 0", "--levels"),
    ("convert {d}/m.nii {d}/c.zarr --chunks 0", "--chunks"),
    ("qsm {d}/m.nii {d}/p.nii {d}/chi.nii --method tkd --tkd-threshold 2 --te-ms 3,6 "
     "--b0-tesla 9.4", "--tkd-threshold"),
    ("batch {d}/p.toml {d}/m.nii -o {d}/out --workers -1", "--workers"),
    ("batch {d}/p.toml {d}/m.nii -o {d}/out --workers 0", "--workers"),
    ("run {d}/p.toml / -o {d}/out", "specimen name"),
    ("recon {d}/none.zarr {d}/r.nii", "none.zarr"),
    ("frobnicate", "frobnicate"),
]


@pytest.mark.parametrize("call, named", BAD_CALLS, ids=[c[0].split()[0] + ":" + c[1]
                                                         for c in BAD_CALLS])
def test_a_user_error_is_one_line_and_exit_status_2(files, call, named, capsys):
    code = main(call.format(d=files).split())
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert named in err, err


def test_the_installed_command_prints_no_traceback(files):
    run = subprocess.run([sys.executable, "-m", "napari_mrmicro.cli", "simulate", "tube",
                          str(files / "s.zarr"), "--averages", "0"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_format_error_keeps_its_message_through_a_pipeline_step(tmp_path):
    image = np.ones((4, 4, 4), np.float32) * 1.5
    write_volume(tmp_path / "s.nii", Volume(image, (10.0, 10.0, 10.0)))
    pipeline = parse_pipeline('[[step]]\nrun = "save"\nimage = "x.headfile"\n', "p.toml")
    (tmp_path / "out").mkdir()
    result = run_specimen(pipeline, tmp_path / "s.nii", tmp_path / "out")
    assert result.status == "failed"
    assert result.error.startswith("FormatError"), result.error
    assert "step 1 (save)" in result.error and "fractional values" in result.error
    assert "__init__" not in result.error
