"""`mrmicro simulate | recon | measure | convert` on small inputs: file in, file out."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from napari_mrmicro.cli import main
from napari_mrmicro.io import Volume, write_volume


def _centred_ifft(kspace):
    axes = (-3, -2, -1)
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(kspace, axes=axes), axes=axes,
                                        norm="ortho"), axes=axes)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    args = ["simulate", "tube", str(out / "tube.zarr"), "--matrix", "16,16,24",
            "--fov-mm", "1.6,1.6,2.4", "--te-ms", "2,4", "--truth", str(out / "truth.tif")]
    assert main(args) == 0
    return out


def test_simulate_writes_kspace_with_its_protocol(simulated):
    group = zarr.open_group(str(simulated / "tube.zarr"), mode="r")
    pairs = group["kspace/data"][...]  # complex64 as (real, imaginary) float32 pairs
    assert pairs.shape == (2, 16, 16, 24, 2) and pairs.dtype == np.float32
    kspace = pairs[..., 0] + 1j * pairs[..., 1]
    np.testing.assert_allclose(group["0"][...], np.log1p(np.abs(kspace)), rtol=1e-5)
    payload = json.loads((simulated / "tube.zarr" / ".zattrs").read_text())["napari-mrmicro"]
    assert payload["kspace"]["arrays"] == ["data"]  # fully sampled: no mask
    assert payload["acquisition"]["te_ms"] == [2.0, 4.0]
    assert payload["acquisition"]["fov_um"] == [1600.0, 1600.0, 2400.0]


def test_recon_is_the_centred_inverse_fft_in_micrometres(simulated, capsys):
    out = simulated
    assert main(["recon", str(out / "tube.zarr"), str(out / "mag.tif"),
                 "--phase", str(out / "phase.tif")]) == 0
    assert "at 100 x 100 x 100 µm" in capsys.readouterr().out
    pairs = zarr.open_group(str(out / "tube.zarr"), mode="r")["kspace/data"][...]
    image = _centred_ifft(pairs[..., 0] + 1j * pairs[..., 1])
    with tifffile.TiffFile(out / "mag.tif") as tif:
        magnitude = tif.asarray()
        assert tif.imagej_metadata["unit"] in ("um", "µm", "micron")
        assert tif.imagej_metadata["spacing"] == pytest.approx(100.0)
    np.testing.assert_allclose(magnitude, np.abs(image), atol=1e-5)
    np.testing.assert_allclose(tifffile.imread(out / "phase.tif"), np.angle(image), atol=1e-4)


def test_recon_refuses_what_will_not_fit_in_memory(simulated, capsys):
    code = main(["recon", str(simulated / "tube.zarr"), str(simulated / "huge.tif"),
                 "--zero-fill", "64"])
    assert code == 3
    err = capsys.readouterr().err
    assert "not enough memory" in err and "GiB" in err
    assert not (simulated / "huge.tif").exists()


def test_measure_gives_label_volumes_in_physical_units(simulated, capsys):
    truth = tifffile.imread(simulated / "truth.tif")
    assert main(["measure", str(simulated / "truth.tif"), str(simulated / "t.csv")]) == 0
    rows = np.genfromtxt(simulated / "t.csv", delimiter=",", names=True)
    present = np.unique(truth[truth > 0])
    np.testing.assert_array_equal(np.atleast_1d(rows["label"]), present)
    counts = np.bincount(truth.ravel())[present]
    np.testing.assert_allclose(np.atleast_1d(rows["volume_um3"]), counts * 100.0**3)
    # the chunked path gives the same volumes
    assert main(["measure", str(simulated / "truth.tif"), str(simulated / "c.csv"),
                 "--chunked"]) == 0
    chunked = np.genfromtxt(simulated / "c.csv", delimiter=",", names=True)
    np.testing.assert_allclose(np.atleast_1d(chunked["volume_um3"]), counts * 100.0**3)


def test_measure_with_otsu_labels_parts_of_an_image(tmp_path, capsys):
    image = np.zeros((12, 12, 12), np.float32)
    image[1:4, 1:5, 1:6] = 10.0
    image[7:11, 6:11, 6:9] = 12.0
    write_volume(tmp_path / "im.tif", Volume(image, (5.0, 4.0, 4.0)))
    assert main(["measure", str(tmp_path / "im.tif"), str(tmp_path / "m.csv"),
                 "--threshold-otsu"]) == 0
    assert "labelled 2 parts" in capsys.readouterr().out
    rows = np.genfromtxt(tmp_path / "m.csv", delimiter=",", names=True)
    assert sorted(rows["volume_um3"]) == pytest.approx([60 * 80.0, 60 * 80.0])
    assert sorted(rows["mean_intensity"]) == pytest.approx([10.0, 12.0])


def test_measure_a_segmentation_from_another_program(tmp_path, capsys):
    """An ITK-SNAP or Fiji segmentation is a NIfTI of whole numbers with no word of being
    labels: measured as one, in the file's units (0.05 mm stored as float32 is 50 µm, not
    50.0000007). An image of real values is refused with the way to measure it."""
    import nibabel as nib

    seg = np.zeros((20, 20, 20), np.uint8)
    seg[2:8, 2:8, 2:8], seg[10:18, 10:14, 5:9] = 1, 3
    nib.save(nib.Nifti1Image(seg, np.diag([0.05, 0.05, 0.05, 1.0])), tmp_path / "seg.nii.gz")
    assert main(["measure", str(tmp_path / "seg.nii.gz"), str(tmp_path / "s.csv")]) == 0
    assert "read as a label volume" in capsys.readouterr().out
    rows = np.genfromtxt(tmp_path / "s.csv", delimiter=",", names=True)
    assert rows["label"].tolist() == [1, 3]
    assert rows["volume_um3"].tolist() == [216 * 50.0**3, 128 * 50.0**3]
    nib.save(nib.Nifti1Image(seg.astype(np.float32) * 0.5, np.eye(4)), tmp_path / "f.nii")
    assert main(["measure", str(tmp_path / "f.nii"), str(tmp_path / "f.csv")]) == 2
    assert "add --threshold-otsu" in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


def test_convert_to_ome_zarr_keeps_units_and_labels(tmp_path):
    labels = np.zeros((20, 16, 16), np.uint16)
    labels[4:12, 3:9, 5:14] = 3
    write_volume(tmp_path / "l.tif", Volume(labels, (25.0, 10.0, 10.0), layer_type="labels"))
    assert main(["convert", str(tmp_path / "l.tif"), str(tmp_path / "l.zarr"), "--labels",
                 "--chunks", "8", "--levels", "2"]) == 0
    ms = json.loads((tmp_path / "l.zarr" / ".zattrs").read_text())["multiscales"][0]
    assert [a["unit"] for a in ms["axes"]] == ["micrometer"] * 3
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [50.0, 20.0, 20.0]
    assert ms["type"] == "nearest"
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "l.zarr"))["0"][...], labels)
    # and back to NIfTI, read by nibabel with its mm units
    import nibabel as nib
    assert main(["convert", str(tmp_path / "l.zarr"), str(tmp_path / "l.nii.gz")]) == 0
    img = nib.load(tmp_path / "l.nii.gz")
    assert np.asarray(img.dataobj).sum() == labels.sum()


def test_errors_name_the_file_and_the_problem(tmp_path, capsys):
    cases = [
        (["recon", str(tmp_path / "missing.zarr"), str(tmp_path / "o.tif")],
         "missing.zarr: no such file"),
        (["simulate", "tube", str(tmp_path / "k.tif")], "k.tif: simulated k-space is saved"),
        (["measure", str(tmp_path / "junk.tif"), str(tmp_path / "o.csv")], "junk.tif"),
    ]
    (tmp_path / "junk.tif").write_bytes(b"garbage" * 10)
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert f"mrmicro {args[0]}: error:" in err and message in err, err
    write_volume(tmp_path / "im.tif", Volume(np.ones((4, 4, 4), np.float32), (1, 1, 1)))
    assert main(["recon", str(tmp_path / "im.tif"), str(tmp_path / "o.tif")]) == 2
    assert "im.tif" in capsys.readouterr().err


def test_help_speaks_units_and_exit_codes():
    result = subprocess.run([sys.executable, "-m", "napari_mrmicro.cli", "recon", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "zero-fill" in result.stdout and "µm" in result.stdout
    assert "3 not enough memory" in " ".join(result.stdout.split())
    result = subprocess.run([sys.executable, "-m", "napari_mrmicro.cli", "recon"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "required" in result.stderr


def test_qsm_takes_echo_times_and_field_from_the_files(tmp_path, capsys):
    from napari_mrmicro.core.qsm.pipeline import qsm

    assert main(["simulate", "tube", str(tmp_path / "k.zarr"), "--matrix", "32",
                 "--fov-mm", "3.2", "--te-ms", "3,6,9"]) == 0
    assert main(["recon", str(tmp_path / "k.zarr"), str(tmp_path / "m.tif"),
                 "--phase", str(tmp_path / "p.tif")]) == 0
    assert main(["qsm", str(tmp_path / "m.tif"), str(tmp_path / "p.tif"),
                 str(tmp_path / "chi.tif"), "--method", "tkd", "--background", "pdf"]) == 0
    chi = tifffile.imread(tmp_path / "chi.tif")
    magnitude, phase = tifffile.imread(tmp_path / "m.tif"), tifffile.imread(tmp_path / "p.tif")
    expected = qsm(magnitude, phase, (3.0, 6.0, 9.0), 9.4, (100.0, 100.0, 100.0),
                   (1.0, 0.0, 0.0), method="tkd", background="pdf")
    np.testing.assert_allclose(chi, expected, atol=1e-6)
    assert np.ptp(chi) > 0
    # echo times that do not fit the data are refused, naming the file
    assert main(["qsm", str(tmp_path / "m.tif"), str(tmp_path / "p.tif"),
                 str(tmp_path / "c2.tif"), "--te-ms", "3"]) == 2
    err = capsys.readouterr().err
    assert "m.tif" in err and "1 echo times for 3 echoes" in err
    from napari_mrmicro.io import read_volume
    assert read_volume(tmp_path / "chi.tif").metadata["value_unit"] == "ppm"
    # a phase in degrees: refused as radians (it spans ±180), the same χ with its unit
    tifffile.imwrite(tmp_path / "deg.tif", np.degrees(phase).astype(np.float32))
    assert main(["qsm", str(tmp_path / "m.tif"), str(tmp_path / "deg.tif"),
                 str(tmp_path / "c3.tif"), "--method", "tkd", "--background", "pdf"]) == 2
    assert "phase_unit" in capsys.readouterr().err
    assert main(["qsm", str(tmp_path / "m.tif"), str(tmp_path / "deg.tif"),
                 str(tmp_path / "c3.tif"), "--method", "tkd", "--background", "pdf",
                 "--phase-unit", "deg"]) == 0
    degrees = tifffile.imread(tmp_path / "deg.tif")
    np.testing.assert_allclose(tifffile.imread(tmp_path / "c3.tif"), qsm(
        magnitude, degrees, (3.0, 6.0, 9.0), 9.4, (100.0, 100.0, 100.0), (1.0, 0.0, 0.0),
        method="tkd", background="pdf", phase_unit="deg"), atol=1e-6)
    # the boundary passes: none, as published, when asked; the help states the cap
    from napari_mrmicro.core.qsm.pipeline import BOUNDARY_PASSES

    assert main(["qsm", str(tmp_path / "m.tif"), str(tmp_path / "p.tif"),
                 str(tmp_path / "c4.tif"), "--method", "tkd", "--background", "pdf",
                 "--boundary-passes", "0"]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "c4.tif"), qsm(
        magnitude, phase, (3.0, 6.0, 9.0), 9.4, (100.0, 100.0, 100.0), (1.0, 0.0, 0.0),
        method="tkd", background="pdf", boundary_passes=0), atol=1e-6)
    capsys.readouterr()
    assert main(["qsm", "-h"]) == 0
    assert f"(default {BOUNDARY_PASSES};" in " ".join(capsys.readouterr().out.split())


def test_qsm_field_from_a_paravision_field_map(realdata, tmp_path, capsys):
    """Scan 8's B0 map (Hz, stored with its first axis along world R): the Larmor frequency
    is the file's imaging frequency, B0's direction comes from the grid's rotation, and χ
    lies where the map lies."""
    from napari_mrmicro.core.qsm import b0_direction_from_affine, qsm_from_field
    from napari_mrmicro.io import read_volume

    scan = realdata("bruker_pv/pv360_rodent/8")
    out = tmp_path / "chi.nii.gz"
    assert main(["qsm-field", str(scan), str(out), "--max-iter", "20"]) == 0
    assert "Larmor 400.3077 MHz" in capsys.readouterr().out
    field = read_volume(scan / "pdata" / "1" / "2dseq")
    chi = read_volume(out)
    b0 = b0_direction_from_affine(field.affine_um, field.spacing_um)
    assert np.abs(b0) == pytest.approx((0, 1, 0))  # the bore along the frame's y
    data = np.asarray(field.data)
    expected, _, _ = qsm_from_field(data, data != 0, field.spacing_um, b0, field_unit="Hz",
                                    larmor_hz=400.30774436548796e6, max_iter=20)
    np.testing.assert_allclose(chi.data, expected, atol=1e-6)
    np.testing.assert_allclose(chi.affine_um, field.affine_um, atol=1e-3)  # µm
    assert chi.metadata["value_unit"] == "ppm"
    # the map's rim next to air eroded away: χ only where the eroded mask is
    assert main(["qsm-field", str(scan), str(out), "--max-iter", "20",
                 "--erode-um", "250"]) == 0
    eroded = read_volume(out)
    assert eroded.metadata["qsm"]["erode_um"] == 250.0
    assert np.count_nonzero(eroded.data) < 0.75 * np.count_nonzero(chi.data)


def test_qsm_field_needs_the_unit_of_a_map_that_states_none(tmp_path, capsys):
    field = np.zeros((16, 16, 16), np.float32)
    field[4:12, 4:12, 4:12] = np.linspace(-0.1, 0.1, 8, dtype=np.float32)
    write_volume(tmp_path / "map.nii.gz", Volume(field, (50.0, 50.0, 50.0)))
    assert main(["qsm-field", str(tmp_path / "map.nii.gz"), str(tmp_path / "chi.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "map.nii.gz" in err and "field_unit (Hz or ppm)" in err
    assert not (tmp_path / "chi.nii.gz").exists()
    assert main(["qsm-field", str(tmp_path / "map.nii.gz"), str(tmp_path / "hz.nii.gz"),
                 "--unit", "Hz"]) == 2  # Hz without B0 in the file or --larmor-mhz
    assert "larmor_mhz" in capsys.readouterr().err
    assert main(["qsm-field", str(tmp_path / "map.nii.gz"), str(tmp_path / "chi.nii.gz"),
                 "--unit", "ppm", "--max-iter", "10"]) == 0


def test_register_landmarks_writes_the_affine_and_the_resliced_volume(tmp_path):
    from napari_mrmicro.core.register import reslice
    from napari_mrmicro.core.transforms import apply_affine, rigid_affine
    from napari_mrmicro.io.transform_files import read_transform_json

    rng = np.random.default_rng(3)
    spacing = (40.0, 20.0, 20.0)
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((24, 48, 48), spacing)),
                          indexing="ij")
    fixed = np.exp(-((z - 480) ** 2 + (y - 400) ** 2 + (x - 520) ** 2) / 2e4).astype(np.float32)
    write_volume(tmp_path / "fixed.tif", Volume(fixed, spacing, {}))
    truth = rigid_affine((4.0, -3.0, 2.0), (12.0, -8.0, 5.0), centre_um=(480, 480, 480))
    # the moving volume is the fixed one seen through the inverse pose
    moving = reslice(fixed, spacing, truth, fixed.shape, spacing)
    write_volume(tmp_path / "moving.tif", Volume(moving, spacing, {}))
    fixed_points = rng.uniform(100, 800, (8, 3))
    moving_points = apply_affine(np.linalg.inv(truth), fixed_points)
    header = "z_um,y_um,x_um"
    np.savetxt(tmp_path / "f.csv", fixed_points, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "m.csv", moving_points, delimiter=",", header=header, comments="")
    code = main(["register", str(tmp_path / "fixed.tif"), str(tmp_path / "moving.tif"),
                 str(tmp_path / "t.json"), "--method", "landmarks", "--kind", "rigid",
                 "--fixed-points", str(tmp_path / "f.csv"),
                 "--moving-points", str(tmp_path / "m.csv"),
                 "--resliced", str(tmp_path / "registered.tif")])
    assert code == 0
    record = read_transform_json(tmp_path / "t.json")
    np.testing.assert_allclose(record["affine"], truth, atol=1e-6)
    assert record["rms_um"] < 1e-6
    registered = tifffile.imread(tmp_path / "registered.tif")
    inner = (slice(4, -4),) * 3
    assert np.abs(registered[inner] - fixed[inner]).max() < 0.05


def test_register_section_finds_a_shrunk_face_down_section_headless(tmp_path, capsys):
    """``mrmicro register --method section``: the plane of a 2-D optical section in the
    MRM volume, the section turned on its slide, face down and 15 % shrunk."""
    from scipy import ndimage as ndi

    from napari_mrmicro.core.register import reslice
    from napari_mrmicro.core.reslice import oblique_plane_affine
    from napari_mrmicro.core.transforms import box_corners_um, displacement_error_um
    from napari_mrmicro.io.transform_files import read_transform_json

    rng = np.random.default_rng(2)
    spacing, shape = np.full(3, 30.0), (40, 40, 40)
    labels = np.digitize(ndi.gaussian_filter(rng.normal(size=shape), 3), [-0.05, 0.0, 0.05])
    mrm = ndi.gaussian_filter(np.array([0.0, 1.0, 0.4, 0.7], np.float32)[labels], 0.7)
    optical = ndi.gaussian_filter(np.array([0.5, 0.1, 1.0, 0.0], np.float32)[labels], 0.7)
    nominal, size = np.array([20.0, 20.0]), (48, 48)
    plane = oblique_plane_affine((np.asarray(shape) - 1) / 2 * spacing + [60.0, 0.0, 0.0],
                                 (100.0, 8.0, -5.0), size, nominal / 0.85)
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = (size[1] - 1) * nominal[1] / 0.85
    truth = plane @ flip @ np.diag([1.0, 1 / 0.85, 1 / 0.85, 1.0])  # nominal pixel µm ->
    section = reslice(optical, spacing, plane @ flip, size, nominal / 0.85)
    write_volume(tmp_path / "mrm.nii", Volume(mrm, tuple(spacing), {}))
    write_volume(tmp_path / "section.tif", Volume(section, tuple(nominal), {}))
    code = main(["register", str(tmp_path / "mrm.nii"), str(tmp_path / "section.tif"),
                 str(tmp_path / "plane.json"), "--method", "section", "--mirror", "--scale",
                 "--resliced", str(tmp_path / "mrm_on_section.tif")])
    assert code == 0, capsys.readouterr().err
    record = read_transform_json(tmp_path / "plane.json")
    corners = np.column_stack([np.zeros(4), box_corners_um(size, nominal)])
    assert displacement_error_um(record["affine"], truth, corners).max() < 30.0  # a voxel
    assert record["kind"] == "section_plane" and record["mirrored"]
    assert record["scale"] == pytest.approx(1 / 0.85, rel=0.01)
    resliced = tifffile.imread(tmp_path / "mrm_on_section.tif")
    expected = reslice(mrm, spacing, truth, size, nominal)
    assert np.corrcoef(resliced.ravel(), expected.ravel())[0, 1] > 0.95
    assert "mirrored" in capsys.readouterr().out
    # a 3-D moving volume is refused by the section search, naming the file
    assert main(["register", str(tmp_path / "mrm.nii"), str(tmp_path / "mrm.nii"),
                 str(tmp_path / "p.json"), "--method", "section"]) == 2
    assert "mrm.nii: need a 2-D (y, x) image" in capsys.readouterr().err
    assert main(["register", str(tmp_path / "mrm.nii"), str(tmp_path / "mrm.nii"),
                 str(tmp_path / "p.json"), "--mirror"]) == 2
    assert "--method section only" in capsys.readouterr().err


def test_register_two_scans_of_one_session_from_where_the_scanner_put_them(realdata,
                                                                          tmp_path):
    """ParaVision scan 5 (coronal RARE slices) onto scan 8 (a B0 map stored sagittally,
    its axes in another order): mutual information starts from the files' placements and
    moves them little (the animal lay still). Started from the two arrays' own frames it
    had nothing in common with the field map (the resliced RARE covered none of it)."""
    from napari_mrmicro.core.transforms import rotation_angle_deg
    from napari_mrmicro.io import read_volume
    from napari_mrmicro.io.transform_files import read_transform_json

    study = realdata("bruker_pv/pv360_rodent")
    assert main(["register", str(study / "8"), str(study / "5"), str(tmp_path / "t.json"),
                 "--resliced", str(tmp_path / "r.nii.gz")]) == 0
    world = np.asarray(read_transform_json(tmp_path / "t.json")["world_affine_um"])
    assert rotation_angle_deg(world) < 3.0 and np.abs(world[:3, 3]).max() < 300.0
    field = read_volume(study / "8")
    resliced = read_volume(tmp_path / "r.nii.gz")
    np.testing.assert_allclose(resliced.affine_um, field.affine_um, atol=1e-3)
    head = np.asarray(field.data) != 0
    rare = np.nan_to_num(np.asarray(resliced.data, float))
    signal = rare > np.percentile(rare[rare > 0], 30)
    assert 2 * (head & signal).sum() / (head.sum() + signal.sum()) > 0.55


def test_register_without_landmarks_is_refused(tmp_path, capsys):
    write_volume(tmp_path / "a.tif", Volume(np.ones((4, 8, 8), np.float32), (1, 1, 1), {}))
    code = main(["register", str(tmp_path / "a.tif"), str(tmp_path / "a.tif"),
                 str(tmp_path / "t.json"), "--method", "landmarks"])
    assert code == 2 and "--fixed-points" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_info_says_what_a_file_holds(realdata, tmp_path, capsys):
    """`mrmicro info`: each volume's shape, voxel size (and whether the file states it),
    place and axes in the world, value unit and acquisition, as text or JSON."""
    import json

    study = realdata("bruker_pv/pv360_rodent")
    assert main(["info", str(study)]) == 0
    out = capsys.readouterr().out
    assert "paravision_study, 4 volumes" in out
    assert "B0Map-ADJ_B0MAP E8 P1: image, float32 (z, y, x) 64 × 64 × 64" in out
    assert "array axes run L, I, A; placed by the file" in out  # stored sagittally
    assert "values: Hz" in out and "9.402 T 1H, spin_echo, TE 36 ms, TR 3000 ms" in out
    assert main(["info", str(study / "6"), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["spacing_um"] == pytest.approx([500.0, 78.125, 62.5])
    assert record["metadata"]["acquisition"]["matrix"] == [18, 128, 256]
    assert "header" not in record["metadata"]
    assert main(["info", str(study / "6" / "rawdata.job0")]) == 0  # partial echo, zero-filled
    assert "k-space: 40.7 % of the grid acquired, echo at 30.9 % of the readout" in \
        capsys.readouterr().out
    assert main(["info", str(realdata("tiff/exampletiffs/4D-series.ome.tif"))]) == 0
    out = capsys.readouterr().out
    assert "4D-series.ome.tif: image, int8 (t, z, y, x)" in out
    assert "NOT stated by the file: assumed" in out and "not placed" in out
    # a 2-D image (Bio-Formats OME-TIFF): its plane, placed at the stage position
    assert main(["info", str(realdata("tiff/exampletiffs/"
                                      "170918_tn_neutrophil_migration_wave.ome.tif"))]) == 0
    out = capsys.readouterr().out
    assert "(y, x) 1024 × 1024" in out and "voxel 1 × 1 µm (stated by the file)" in out
    assert "first voxel at (A 16478.9, R 54555.6); array axes run A, R" in out
    assert "channels 488 TIRF left" in out
    assert main(["info", str(realdata("nifti/nibabel/anatomical.nii"))]) == 0
    assert "anatomical.nii: image, int16, big-endian (z, y, x) 25 × 41 × 33" in \
        capsys.readouterr().out
    assert main(["info", str(tmp_path / "none.nii")]) == 2
    assert "no such file" in capsys.readouterr().err


def _spin_echo_train(tmp_path, acquisition):
    """Magnitude of 8 spin echoes (10-80 ms) of a block with T2 25 ms in one half and 60 ms
    in the other, the first echo 15 % low (a CPMG train's first echo lacks the stimulated
    echoes), Rician noise σ 1, as OME-Zarr with ``acquisition``."""
    te = np.arange(1, 9) * 10.0
    t2 = np.where(np.arange(32)[None, :, None] < 16, 25.0, 60.0) * np.ones((12, 32, 24))
    s0 = np.zeros(t2.shape)
    s0[2:-2, 4:-4, 4:-4] = 200.0
    rng = np.random.default_rng(5)
    clean = s0 * np.exp(-te[:, None, None, None] / t2)
    clean[0] *= 0.85
    data = np.abs(clean + rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape))
    path = tmp_path / "mse.zarr"
    write_volume(path, Volume(data.astype(np.float32), (50.0, 20.0, 20.0),
                              {"acquisition": acquisition, "value_unit": "a.u."}))
    return path, t2, s0 > 0


def test_relax_maps_t2_in_ms_from_the_echo_times_the_file_states(tmp_path, capsys):
    from napari_mrmicro.io import read_volume

    path, t2, inside = _spin_echo_train(tmp_path, {"te_ms": [10.0 * i for i in range(1, 9)],
                                                   "sequence": "spin_echo"})
    assert main(["relax", str(path), str(tmp_path / "all.nii")]) == 0
    every = np.asarray(read_volume(tmp_path / "all.nii").data)
    assert np.median(every[inside & (t2 == 25.0)]) > 25.0 * 1.02  # the first echo skews it
    capsys.readouterr()
    assert main(["relax", str(path), str(tmp_path / "t2.nii"), "--skip-echoes", "1",
                 "--s0", str(tmp_path / "s0.tif")]) == 0
    said = capsys.readouterr().out
    assert "T2 in ms, nonlinear fit of 7 echoes, echoes above 3σ" in said
    volume = read_volume(tmp_path / "t2.nii")
    assert volume.metadata["value_unit"] == "ms" and volume.data.shape == t2.shape
    assert volume.spacing_um == (50.0, 20.0, 20.0)
    found = np.asarray(volume.data)
    for truth in (25.0, 60.0):
        assert np.median(found[inside & (t2 == truth)]) == pytest.approx(truth, rel=0.01)
    assert (found[~inside] == 0).all()
    assert np.median(tifffile.imread(tmp_path / "s0.tif")[inside]) == pytest.approx(200, rel=0.01)
    # T2 per label from the map: over its fitted voxels (the map says 0 marks the others)
    labels = np.where(inside, np.where(t2 == 25.0, 1, 2), 0).astype(np.uint8)
    labels[0, 0, 0] = 1  # a voxel of label 1 outside the specimen: nothing fitted there
    write_volume(tmp_path / "labels.nii", Volume(labels, (50.0, 20.0, 20.0),
                                                 layer_type="labels"))
    assert main(["measure", str(tmp_path / "labels.nii"), str(tmp_path / "t2.csv"),
                 "--intensity", str(tmp_path / "t2.nii")]) == 0
    table = (tmp_path / "t2.csv").read_text().splitlines()
    header = table[0].split(",")
    means = [float(row.split(",")[header.index("mean_intensity")]) for row in table[1:]]
    assert means == pytest.approx([25.0, 60.0], rel=0.01)
    assert [int(row.split(",")[header.index("intensity_voxels")]) for row in table[1:]] == \
        [np.count_nonzero(inside & (t2 == 25.0)), np.count_nonzero(inside & (t2 == 60.0))]
    # a pipeline does the same; the saved map says how it was computed
    (tmp_path / "p.toml").write_text('[[step]]\nrun = "relax"\nmethod = "arlo"\n'
                                     'skip_echoes = 1\n'
                                     '[[step]]\nrun = "save"\nt2 = "t2.ome.zarr"\n'
                                     '[[step]]\nrun = "echo"\n[[step]]\n'
                                     'run = "threshold"\n[[step]]\n'
                                     'run = "measure"\nintensity = "t2"\n')
    assert main(["run", str(tmp_path / "p.toml"), str(path), "--out", str(tmp_path / "o")]) == 0
    saved = read_volume(tmp_path / "o" / "mse" / "t2.ome.zarr")
    regions = (tmp_path / "o" / "mse" / "regions.csv").read_text().splitlines()
    column = regions[0].split(",").index("mean_intensity")  # T2 of the thresholded block
    assert 25 < float(regions[1].split(",")[column]) < 60
    assert saved.metadata["relaxometry"]["method"] == "arlo"
    assert saved.metadata["relaxometry"]["quantity"] == "T2"
    arlo = np.asarray(saved.data)
    for truth in (25.0, 60.0):
        assert np.median(arlo[inside & (t2 == truth)]) == pytest.approx(truth, rel=0.01)


def test_relax_without_echo_times_or_with_bad_ones_is_refused(tmp_path, capsys):
    path, _, _ = _spin_echo_train(tmp_path, {"sequence": "gradient_echo"})
    assert main(["relax", str(path), str(tmp_path / "t2.tif")]) == 2
    err = capsys.readouterr().err
    assert "mse.zarr" in err and "states no echo times; give te_ms" in err
    assert main(["relax", str(path), str(tmp_path / "t2.tif"), "--method", "arlo",
                 "--te-ms", "10,20,30,40,50,60,70,90"]) == 2
    assert "equally spaced" in capsys.readouterr().err
    assert main(["relax", str(path), str(tmp_path / "t2.tif"), "--te-ms", "10,20"]) == 2
    assert "2 echo times for 8 echoes" in capsys.readouterr().err
    assert not (tmp_path / "t2.tif").exists()
    assert main(["relax", str(path), str(tmp_path / "t2.tif"),
                 "--te-ms", ",".join(str(10 * i) for i in range(1, 9))]) == 0
    assert "T2* in ms" in capsys.readouterr().out  # gradient echoes: T2*


def test_relax_on_a_single_volume_says_it_has_no_echoes(realdata, tmp_path, capsys):
    """ParaVision scan 6 (FLASH, one TE, 18 slices): the slices are not taken for echoes."""
    scan = realdata("bruker_pv/pv360_rodent/6")
    assert main(["relax", str(scan), str(tmp_path / "t2.nii"), "--te-ms", "2"]) == 2
    err = capsys.readouterr().err
    assert str(scan) in err and "needs the echoes of a volume (echo, z, y, x)" in err
    assert "3-D ('z', 'y', 'x') (18, 128, 256)" in err


def _inversion_series(tmp_path, acquisition):
    """Magnitude of an inversion recovery (6 TIs) of a block with T1 400 ms in one half and
    1200 ms in the other, Rician noise σ 1, as OME-Zarr with ``acquisition``."""
    ti = np.array([25.0, 150.0, 400.0, 1000.0, 2500.0, 5000.0])
    t1 = np.where(np.arange(32)[None, :, None] < 16, 400.0, 1200.0) * np.ones((12, 32, 24))
    m0 = np.zeros(t1.shape)
    m0[2:-2, 4:-4, 4:-4] = 200.0
    rng = np.random.default_rng(6)
    clean = np.abs(m0 * (1 - 2 * np.exp(-ti[:, None, None, None] / t1)))
    data = np.abs(clean + rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape))
    path = tmp_path / "ir.zarr"
    write_volume(path, Volume(data.astype(np.float32), (50.0, 20.0, 20.0),
                              {"acquisition": acquisition, "value_unit": "a.u."}))
    return path, t1, m0 > 0


def test_t1_in_a_pipeline_and_per_label(tmp_path, capsys):
    """The step `t1` takes the TIs the series states; its map is measured per label like
    a T2 map, and saved with how it was fitted."""
    from napari_mrmicro.io import read_volume

    path, t1, inside = _inversion_series(tmp_path, {"ti_ms": [25, 150, 400, 1000, 2500,
                                                              5000]})
    (tmp_path / "p.toml").write_text('[[step]]\nrun = "t1"\nmethod = "inversion_recovery"\n'
                                     '[[step]]\nrun = "save"\nt1 = "t1.nii.gz"\n'
                                     't1_sd = "t1_sd.nii.gz"\n'
                                     '[[step]]\nrun = "echo"\n[[step]]\n'
                                     'run = "threshold"\n[[step]]\nrun = "components"\n'
                                     '[[step]]\nrun = "measure"\nintensity = "t1"\n')
    assert main(["run", str(tmp_path / "p.toml"), str(path), "--out", str(tmp_path / "o")]) == 0
    saved = read_volume(tmp_path / "o" / "ir" / "t1.nii.gz")
    assert saved.metadata["relaxometry"]["ti_ms"] == [25, 150, 400, 1000, 2500, 5000]
    found = np.asarray(saved.data)
    for truth in (400.0, 1200.0):
        assert np.median(found[inside & (t1 == truth)]) == pytest.approx(truth, rel=0.01)
    sd = np.asarray(read_volume(tmp_path / "o" / "ir" / "t1_sd.nii.gz").data)
    assert 0 < np.median(sd[inside & (t1 == 1200.0)]) < 0.05 * 1200  # SNR 200
    regions = (tmp_path / "o" / "ir" / "regions.csv").read_text().splitlines()
    column = regions[0].split(",").index("mean_intensity")
    assert 400 < float(regions[1].split(",")[column]) < 1200  # the block's mean T1


def test_t1_vfa_with_a_b1_map_and_refusals(tmp_path, capsys):
    """One VFA series file with its angles given; B1 10 % low: without the map T1 reads
    about 19 % low, with it right. Missing timing and wrong options are named."""
    from napari_mrmicro.core.t1_mapping import despot1_angles
    from napari_mrmicro.io import read_volume

    angles, tr = np.array([3.0, 8.0, 15.0, 30.0]), 20.0
    t1 = np.full((8, 16, 16), 900.0)
    m0 = np.zeros(t1.shape)
    m0[2:-2, 3:-3, 3:-3] = 3000.0
    a, e = np.deg2rad(angles)[:, None, None, None] * 0.9, np.exp(-tr / t1)
    rng = np.random.default_rng(7)
    clean = m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e)
    data = np.abs(clean + rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape))
    write_volume(tmp_path / "vfa.zarr", Volume(data.astype(np.float32), (50.0,) * 3,
                                               {"acquisition": {"tr_ms": tr}}))
    write_volume(tmp_path / "b1.nii", Volume(np.full(t1.shape, 0.9, np.float32), (50.0,) * 3))
    inside = m0 > 0
    base = ["t1", "vfa", str(tmp_path / "vfa.zarr")]
    assert main(base + [str(tmp_path / "t1.nii"), "--flip-deg", "3,8,15,30"]) == 0
    assert main(base + [str(tmp_path / "t1tr.nii"), "--flip-deg", "3,8,15,30",
                        "--tr-ms", "20"]) == 0  # the file's TR, given
    assert main(base + [str(tmp_path / "x.nii"), "--flip-deg", "3,8,15,30",
                        "--tr-ms", "20,30"]) == 2
    assert "a variable flip angle series has one TR" in capsys.readouterr().err
    nominal = np.asarray(read_volume(tmp_path / "t1.nii").data)
    assert np.median(nominal[inside]) == pytest.approx(0.81 * 900, rel=0.03)
    assert main(base + [str(tmp_path / "t1b.nii"), "--flip-deg", "3,8,15,30",
                        "--b1", str(tmp_path / "b1.nii")]) == 0
    mapped = read_volume(tmp_path / "t1b.nii")
    assert np.median(np.asarray(mapped.data)[inside]) == pytest.approx(900, rel=0.02)
    assert "nominal" not in mapped.metadata["relaxometry"]["b1"]
    assert mapped.metadata["relaxometry"]["tr_ms"] == tr
    assert "nominal" in read_volume(tmp_path / "t1.nii").metadata["relaxometry"]["b1"]
    capsys.readouterr()
    assert main(base + [str(tmp_path / "x.nii")]) == 2
    assert "states no flip_deg series; give flip_deg" in capsys.readouterr().err
    assert main(base + [str(tmp_path / "x.nii"), "--flip-deg", "3,8,15,30",
                        "--ti-ms", "1,2,3,4"]) == 2
    assert "vfa takes no ti_ms" in capsys.readouterr().err
    # one file per angle that states none: the angles given in the files' order
    files = []
    for index in (2, 0, 3, 1):
        files.append(str(tmp_path / f"flip{index}.nii"))
        write_volume(files[-1], Volume(data[index].astype(np.float32), (50.0,) * 3))
    assert main(["t1", "vfa", *files, str(tmp_path / "t1f.nii"), "--flip-deg", "15,3,30,8",
                 "--tr-ms", "20", "--b1", str(tmp_path / "b1.nii")]) == 0
    said = capsys.readouterr().out
    assert "(flip_deg 3, 8, 15, 30 °)" in said
    low, high = despot1_angles(float(np.median(mapped.data[inside])), tr)
    assert f"the two most precise angles are {low:.1f}° and {high:.1f}° (DESPOT1)" in said
    np.testing.assert_allclose(read_volume(tmp_path / "t1f.nii").data, mapped.data,
                               rtol=1e-5)
    write_volume(tmp_path / "b1small.nii", Volume(np.ones((4, 4, 4), np.float32), (50.0,) * 3))
    assert main(base + [str(tmp_path / "x.nii"), "--flip-deg", "3,8,15,30",
                        "--b1", str(tmp_path / "b1small.nii")]) == 2
    assert "the B1 map (4, 4, 4) is not on the grid of the images" in capsys.readouterr().err
    assert not (tmp_path / "x.nii").exists()
