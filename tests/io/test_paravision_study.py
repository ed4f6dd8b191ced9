"""A ParaVision study folder opens as every scan's image, each placed in the subject's
world space (the 9.4 T rodent study of ../shared/realdata/bruker_pv)."""

import shutil
import warnings

import numpy as np
import pytest

from napari_mrmicro.io import FormatError, paravision_study, read_volume, read_volumes, \
    reader_for

STUDY = "bruker_pv/pv360_rodent"


def _copy_study(source, target, scans):
    """A study of links to the real files (nothing copied but the folders)."""
    target.mkdir()
    (target / "subject").symlink_to(source / "subject")
    for scan in scans:
        for file in (source / scan).rglob("*"):
            if file.is_file():
                place = target / scan / file.relative_to(source / scan)
                place.parent.mkdir(parents=True, exist_ok=True)
                place.symlink_to(file)
    return target


def test_a_study_opens_every_scan_where_the_scanner_put_it(realdata):
    from napari_mrmicro._reader import get_reader

    study = realdata(STUDY)
    assert reader_for(study) == "paravision_study"
    volumes = read_volumes(study)
    assert [v.name for v in volumes] == ["2M_T2_TurboRARE_2D E5 P1", "2_1_T1_FLASH E6 P1",
                                         "EPI_trig_TE6p5 E7 P1", "B0Map-ADJ_B0MAP E8 P1"]
    for volume, scan in zip(volumes, ("5", "6", "7", "8")):  # as each scan opens alone
        alone = read_volume(study / scan)
        np.testing.assert_allclose(volume.affine_um, alone.affine_um)
        np.testing.assert_array_equal(np.asarray(volume.data), np.asarray(alone.data))
    assert volumes[-1].metadata["value_unit"] == "Hz"
    layers = get_reader(str(study))(str(study))
    assert [kw["name"] for _, kw, _ in layers][-1] == "B0Map-ADJ_B0MAP E8 P1 (Hz)"
    # it opens on the FLASH (62.5 x 78 um in-plane): the coarser EPI, scanned later, and
    # the opaque field map would cover it; the others are a click away
    assert [kw.get("visible", True) for _, kw, _ in layers] == [False, True, False, False]


def test_a_study_opens_on_its_finest_anatomical_image():
    from napari_mrmicro.io import Volume

    def scan(spacing, unit=None):
        return Volume(np.zeros((2, 2, 2), np.float32), spacing,
                      {"value_unit": unit} if unit else {})

    assert paravision_study.shown_scan([scan((500, 100, 100)), scan((50, 50, 50), "Hz"),
                                        scan((500, 78, 62.5)), scan((500, 62.5, 78))]) == 2
    assert paravision_study.shown_scan([scan((50, 50, 50), "Hz"), scan((9, 9, 9), "Hz")]) == 0


def test_a_scan_without_an_image_or_a_broken_one_is_named_and_the_rest_open(realdata,
                                                                           tmp_path):
    source = realdata(STUDY)
    study = _copy_study(source, tmp_path / "study", ["5", "6", "8"])
    shutil.rmtree(study / "6" / "pdata")  # raw data only
    broken = study / "8" / "pdata" / "1" / "2dseq"
    broken.unlink()
    broken.write_bytes(b"\x00" * 100)  # truncated
    with pytest.warns(UserWarning, match=r"left out scan 6 \(no pdata image\); scan 8 "
                                         r"\(.*2dseq"):
        volumes = read_volumes(study)
    assert [v.name for v in volumes] == ["2M_T2_TurboRARE_2D E5 P1"]
    shutil.rmtree(study / "5")
    with warnings.catch_warnings(), pytest.raises(FormatError, match="no scan of this "
                                                                     "ParaVision study"):
        warnings.simplefilter("ignore")
        read_volumes(study)


def test_a_study_is_no_single_volume(realdata, tmp_path, capsys):
    from napari_mrmicro.cli import main

    study = realdata(STUDY)
    with pytest.raises(FormatError, match="scans 5, 6, 7, 8: give one scan folder"):
        read_volume(study)
    assert main(["convert", str(study), str(tmp_path / "s.ome.zarr")]) == 2
    assert "give one scan folder" in capsys.readouterr().err
    assert not paravision_study.can_read(study / "5")  # a scan is not a study
    assert not paravision_study.can_read(tmp_path)
