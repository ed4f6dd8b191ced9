"""`mrmicro` on the command line."""

import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_mrmicro.cli import main


def test_demo_writes_round_trips_and_a_simulation(tmp_path, capsys):
    assert main(["demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("[ok]") >= 4 and "FAIL" not in out
    assert "FOV 25.00 x 12.50 x 12.50 mm" in out and "97.66" in out
    magnitude = tifffile.imread(tmp_path / "cochlea_magnitude.tif")
    assert magnitude.shape == (6, 128, 128, 128)
    kspace = np.load(tmp_path / "cochlea_kspace.npy")
    assert kspace.dtype == np.complex64
    assert "NRMSE" in out and (tmp_path / "cochlea_chi.nii.gz").exists()
    # QSM of the Gd-soaked inner ear in Fomblin, scored where the truth has signal: the
    # nerve in its canal and the modiolus carry χ contrast (0.17 ppm below the fluid); the
    # issue's bar is NRMSE <= 50 % (measured 42 %) with every tissue's sign right
    spread, error = map(float, re.search(r"truth varies by ([\d.]+) ppm RMS .* χ errs by "
                                         r"([\d.]+) ppm RMS", out).groups())
    score = float(re.search(r"NRMSE ([\d.]+) %", out).group(1))
    assert spread > 0.03 and error < 0.5 * spread and score <= 50.0
    assert "flat where QSM can see it" not in out and "BAD" not in out
    assert "QSM check: met" in out and "reference: χ and truth each relative" in out
    signs = {name: (float(chi), float(truth)) for name, chi, truth in re.findall(
        r"^ +([a-z ]+): χ ([-+][\d.]+) ppm \(truth ([-+][\d.]+)\)", out, re.M)}
    for name in ("modiolus", "canal fluid", "cochlear nerve"):
        chi, truth = signs[name]
        assert abs(truth) > 0.04 and np.sign(chi) == np.sign(truth), (name, chi, truth)
    assert (tmp_path / "cochlea_qsm.png").stat().st_size > 1000
    # T2* of the tissues away from bone as the simulation made them (modiolus, nerve 17.4 ms)
    for name in ("modiolus", "cochlear nerve"):
        found, made = map(float, re.search(rf"{name}: T2\* +([\d.]+) ms median \(the "
                                           r"simulation's ([\d.]+) ms\)", out).groups())
        assert found == pytest.approx(made, rel=0.05), name
    assert (tmp_path / "cochlea_t2star.nii.gz").exists()
    # T1 by variable flip angle of every tissue with signal as the simulation made it
    for name in ("modiolus", "duct", "canal fluid", "cochlear nerve"):
        found, made = map(float, re.search(rf"{name}: T1 +([\d.]+) ms median \(the "
                                           r"simulation's ([\d.]+) ms\)", out).groups())
        assert found == pytest.approx(made, rel=0.02), name
    assert (tmp_path / "cochlea_t1.nii.gz").exists()
    # DTI of the same specimen: every tissue's mean diffusivity and FA as simulated, the
    # nerve's fibres found along the modiolar axis
    for name in ("modiolus", "duct", "canal fluid", "cochlear nerve"):
        md, made, fa, own = map(float, re.search(
            rf"{name}: MD ([\d.]+) µm²/ms \(the simulation's ([\d.]+)\), FA ([\d.]+) "
            r"\(([\d.]+)\)", out).groups())
        assert md == pytest.approx(made, rel=0.03), name
        assert fa == pytest.approx(own, abs=0.05 if own else 0.12), name
    assert out.count("principal axis within 20° of the fibres in 100%") == 2
    assert (tmp_path / "cochlea_fa.nii.gz").exists() and (tmp_path / "cochlea_md.nii.gz").exists()
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


def test_demo_progress_into_a_log_is_one_line_per_stage_and_ten_percent(monkeypatch):
    import io

    from napari_mrmicro import demo

    log = io.StringIO()
    monkeypatch.setattr(demo.sys, "stderr", log)
    report = demo._progress("QSM")
    for stage in ("mask", "inversion (tv)"):
        for i in range(1001):
            report(stage, i / 1000)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 22  # 0, 10, ..., 100 % for each stage
    assert lines[-1].endswith("100 % inversion (tv)")
