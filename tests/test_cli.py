"""`mrmicro` on the command line."""

import re
import subprocess
import sys

import numpy as np
import tifffile

from napari_mrmicro.cli import main


def test_demo_writes_round_trips_and_a_simulation(tmp_path, capsys):
    assert main(["demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("[ok]") >= 4 and "FAIL" not in out
    assert "FOV 25.00 x 12.50 x 12.50 mm" in out and "97.66" in out
    magnitude = tifffile.imread(tmp_path / "cochlea_magnitude.tif")
    assert magnitude.shape == (4, 128, 128, 128)
    kspace = np.load(tmp_path / "cochlea_kspace.npy")
    assert kspace.dtype == np.complex64
    assert "NRMSE" in out and (tmp_path / "cochlea_chi.nii.gz").exists()
    # QSM: what is scored and how the truth varies there is said; χ errs by 0.075 ppm RMS
    # (0.62 before the mask left out the partial-volume edge of the bone)
    spread, error = map(float, re.search(r"truth varies by ([\d.]+) ppm RMS .* χ errs by "
                                         r"([\d.]+) ppm RMS", out).groups())
    assert error < 0.15 and "QSM check: " in out and "scored:" in out
    assert ("flat where QSM can see it" in out) == (spread < 0.05)
    assert (tmp_path / "cochlea_qsm.png").stat().st_size > 1000
    assert (tmp_path / "duct_area.png").stat().st_size > 1000
    sections = (tmp_path / "duct_sections.csv").read_text().splitlines()
    assert len(sections) == 201 and "um2" in sections[0]
    assert str(tmp_path.resolve()) in out
    report = (tmp_path / "report.md").read_text()
    assert "NRMSE" in report and "`duct_area.png`" in report and "particles matched" in report


def test_errors_name_the_problem_and_exit_nonzero(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "napari_mrmicro.cli", "demo",
                             str(blocker / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "mrmicro demo: error" in result.stderr and "file" in result.stderr
