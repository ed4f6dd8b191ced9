"""mrmicro distortion-calibrate / distortion-correct: a tube scan of known diameter gives a
profile that corrects cross-sections back to the true area."""

import csv

import numpy as np
import pytest

from napari_mrmicro.cli import main
from napari_mrmicro.core.centerline import resample_path
from napari_mrmicro.core.cross_sections import cross_sections
from napari_mrmicro.core.morphometry import write_table_csv
from napari_mrmicro.io import Volume, write_volume

SPACING = (25.0, 25.0, 25.0)


def _tube(shape=(48, 48, 96), offset_um=300.0, error_at=0.1, radius_um=200.0):
    """A tube along x, ``offset_um`` off the FOV centre in z, whose radius grows as
    √(1 + e(r)) with e(r) = error_at · (r / 1.2 mm)²: the magnification of a non-linear
    gradient (areas × (1 + e))."""
    spacing = np.array(SPACING)
    centre = (np.array(shape) // 2) * spacing
    z, y, x = np.indices(shape) * spacing[:, None, None, None]
    r = np.sqrt((x - centre[2]) ** 2 + offset_um**2)
    grown = radius_um * np.sqrt(1 + error_at * (r / 1200.0) ** 2)
    return (np.hypot(z - centre[0] - offset_um, y - centre[1]) <= grown).astype(np.uint8)


def test_calibrate_then_correct_gives_the_true_area(tmp_path, capsys):
    labels = _tube()
    scan = tmp_path / "tube.nii.gz"
    write_volume(scan, Volume(labels, SPACING, {}, layer_type="labels"))
    profile, plot = tmp_path / "profile.json", tmp_path / "profile.png"
    assert main(["distortion-calibrate", str(scan), str(profile), "--diameter-um", "400",
                 "--plot", str(plot)]) == 0
    assert profile.exists() and plot.stat().st_size > 1000
    assert "Relative area error" in capsys.readouterr().out
    # the same tube's sections, measured, then corrected by the profile
    from napari_mrmicro.core.centerline import centerline

    mask = labels.astype(bool)
    path = centerline(mask, SPACING)
    sections = cross_sections(mask, resample_path(path, count=30), SPACING)
    table = tmp_path / "sections.csv"
    write_table_csv(sections.as_table(), table)
    out = tmp_path / "corrected.csv"
    assert main(["distortion-correct", str(profile), str(table), str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    true = np.pi * 200.0**2
    measured = sections.areas_um2[6:-6]  # away from the tube's ends
    corrected = np.array([float(r["area_um2"]) for r in rows[6:-6]])
    # the areas grew towards the FOV edge; corrected, they are the true area
    assert np.ptp(measured) > 0.05 * true
    assert np.abs(corrected - true).mean() < 0.5 * np.abs(measured - true).mean()
    assert np.median(corrected) == pytest.approx(true, rel=0.03)


def test_refuses_an_empty_scan(tmp_path, capsys):
    scan = tmp_path / "empty.nii.gz"
    write_volume(scan, Volume(np.zeros((8, 8, 8), np.uint8), SPACING, {}, layer_type="labels"))
    assert main(["distortion-calibrate", str(scan), str(tmp_path / "p.json"),
                 "--diameter-um", "400"]) == 2
    assert "no voxel is labelled" in capsys.readouterr().err


def test_refuses_a_file_that_is_not_a_profile(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    table = tmp_path / "t.csv"
    table.write_text("area_um2,z_um,y_um,x_um\n1,0,0,0\n")
    assert main(["distortion-correct", str(bad), str(table), str(tmp_path / "o.csv")]) == 2
    assert "not a distortion profile" in capsys.readouterr().err
