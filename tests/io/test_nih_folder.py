"""Legacy MRM folders built in tmp_path: info texts with CRLF/CR line ends, free text and
units, next to TIFF stacks, numbered TIFF slices or raw big-endian slices."""

import json

import numpy as np
import pytest
import tifffile

from napari_mrmicro.io import FormatError, reader_for
from napari_mrmicro.io import nih_folder
from test_nih_tiff import nih_header, write_nih  # tests/io is on sys.path (prepend mode)

NY, NX = 8, 16

HEADFILE = (  # Mac CR line ends, a free-text paragraph, Mac Roman µ (= Latin-1 0xB5)
    "Species: human molar (extracted)\r"
    "Scan date: 12.03.1998\r"
    "Field: 2.35 T\r"
    "The tooth was kept in saline and scanned overnight at room temperature;\r"
    "signal from the enamel is absent as expected.\r"
    "\r"
    "TE = 2.4 ms\r"
    "TR = 600 ms\r"
).encode("latin-1")


def write_texts(folder, **texts):
    folder.mkdir(exist_ok=True)
    for name, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        (folder / name.replace("_", " ", 1).replace("Info ", "Info_")).write_bytes(data)
    return folder


def tiff_slices(folder, n, name="molar{}.tif"):
    for i in range(1, n + 1):  # value = slice number, unpadded names (1, 2, ..., 10, 11)
        tifffile.imwrite(folder / name.format(i), np.full((NY, NX), i, np.uint8))


def test_fixed_voxel_size_wins_and_slices_sort_numerically(tmp_path):
    folder = write_texts(
        tmp_path / "molar",
        Convert_Info_fixed="Voxel size: 97.66 x 97.66 x 250 µm\r\n"
                           "Software: MRconvert 2.1\r\n",
        Convert_Info_auto="FOV: 25 mm\nMatrix: 16 x 8\n",
        headfile=HEADFILE,
        Dimensions="Slices\t12\n",
    )
    tiff_slices(folder, 12)
    assert nih_folder.can_read(folder) and nih_folder.can_read(folder / "headfile")
    assert nih_folder.can_read(folder / "Dimensions")
    vol = nih_folder.read(folder)
    assert vol.data.shape == (12, NY, NX)
    np.testing.assert_array_equal(vol.data[:, 0, 0], np.arange(1, 13))
    assert vol.spacing_um == pytest.approx((250.0, 97.66, 97.66))
    md = vol.metadata
    assert md["format"] == "nih_folder" and md["source"] == str(folder)
    assert md["spacing_source"] == "Convert Info_fixed: voxel size" and md["spacing_known"]
    assert md["species"] == "human molar (extracted)" and md["date"] == "12.03.1998"
    assert md["software"] == "MRconvert 2.1"
    head = md["header"]["headfile"]
    assert head["entries"]["TE"] == "2.4 ms"
    assert "signal from the enamel is absent as expected." in head["free_text"]
    assert set(md["header"]) == {"Convert Info_fixed", "Convert Info_auto", "headfile",
                                 "Dimensions"}
    acq = md["acquisition"]
    assert acq["matrix"] == (12, 8, 16) and acq["b0_tesla"] == 2.35
    assert acq["te_ms"] == (2.4,) and acq["tr_ms"] == 600.0
    json.dumps(md)
    lazy = nih_folder.read(folder, lazy=True)
    np.testing.assert_array_equal(lazy.data.compute(), vol.data)


def test_fov_over_matrix_with_raw_big_endian_slices(tmp_path):
    folder = write_texts(
        tmp_path / "rat",
        Convert_Info_auto="Field of view = 25 x 12.5 mm\r\nSlice thickness = 0.5mm\r\n",
        Dimensions="Matrix: 16 x 8\nNumber of slices: 5\n",
    )
    truth = np.arange(5 * NY * NX, dtype=np.uint16).reshape(5, NY, NX) * 300
    for i, plane in enumerate(truth, start=1):
        (folder / f"rat.{i:03d}").write_bytes(plane.astype(">u2").tobytes())
    vol = nih_folder.read(folder)
    assert vol.data.dtype == np.uint16 and vol.data.dtype.isnative
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.spacing_um == pytest.approx((500.0, 1562.5, 1562.5))
    assert vol.metadata["spacing_source"] == "text: FOV / image size"
    assert vol.metadata["raw_dtype"] == ">u2"
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == (5, 8, 16)
    assert acq["fov_um"] == pytest.approx((2500.0, 12500.0, 25000.0))
    lazy = nih_folder.read(folder / "Dimensions", lazy=True)
    np.testing.assert_array_equal(lazy.data.compute(), truth)


def test_raw_8bit_slices_and_bare_dimensions_line(tmp_path):
    folder = write_texts(tmp_path / "ear", Dimensions="16 x 8 x 3\n",
                         headfile="pixel size (um)\t40\n")
    truth = np.random.default_rng(1).integers(0, 256, (3, NY, NX), dtype=np.uint8)
    for i, plane in enumerate(truth, start=1):
        (folder / f"ear.{i:04d}.raw").write_bytes(plane.tobytes())
    vol = nih_folder.read(folder)
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.spacing_um == pytest.approx((40.0, 40.0, 40.0))
    assert vol.metadata["spacing_source"] == "text: voxel size"


def test_unitless_fov_assumed_mm(tmp_path):
    folder = write_texts(tmp_path / "x", headfile="FOV: 8\nDimensions: 16 x 8 x 4\n")
    tifffile.imwrite(folder / "stack.tif", np.zeros((4, NY, NX), np.uint8),
                         photometric="minisblack")
    vol = nih_folder.read(folder)
    assert vol.spacing_um == pytest.approx((500.0, 1000.0, 500.0))
    assert vol.metadata["z_spacing_assumed"] is True
    assert "taken as mm" in vol.metadata["assumed_units"][0]


def test_nih_tiff_stack_calibration_and_inversion(tmp_path):
    folder = write_texts(tmp_path / "nih", headfile="Species: Xenopus laevis oocyte\n")
    data = np.random.default_rng(2).integers(0, 256, (3, NY, NX), dtype=np.uint8)
    blob = nih_header(version=160, xscale=20.0, units=7, nslices=3, spacing=0.1)
    write_nih(folder / "oocyte.tif", data, blob, photometric="miniswhite")
    vol = nih_folder.read(folder)
    np.testing.assert_array_equal(vol.data, 255 - data)
    assert vol.spacing_um == pytest.approx((100.0, 50.0, 50.0))
    assert vol.metadata["spacing_source"] == "tiff: nih_tiff"
    assert vol.metadata["tiff_metadata"]["spacing_source"] == "nih_header"
    assert vol.metadata["tiff_metadata"]["inverted"] is True
    assert vol.metadata["species"] == "Xenopus laevis oocyte"


def test_imagej_tiff_calibration(tmp_path):
    folder = write_texts(tmp_path / "ij", Dimensions="Slices: 2\n")
    tifffile.imwrite(folder / "scan.tif", np.zeros((2, NY, NX), np.uint8), imagej=True,
                     resolution=(1 / 20, 1 / 20),
                     metadata={"unit": "um", "spacing": 30, "axes": "ZYX"})
    vol = nih_folder.read(folder)
    assert vol.spacing_um == pytest.approx((30.0, 20.0, 20.0))
    assert vol.metadata["spacing_source"] == "tiff: tiff"


def test_no_calibration_defaults(tmp_path):
    folder = write_texts(tmp_path / "plain", headfile="Species: rat\n")
    tifffile.imwrite(folder / "scan.tif", np.zeros((NY, NX), np.uint8))
    vol = nih_folder.read(folder)
    assert vol.data.shape == (1, NY, NX) and vol.spacing_um == (1.0, 1.0, 1.0)
    assert vol.metadata["spacing_source"] == "default"
    assert vol.metadata["spacing_known"] is False


def test_dispatch_picks_nih_folder(tmp_path):
    folder = write_texts(tmp_path / "d", Dimensions="Matrix: 16 x 8\n")
    tiff_slices(folder, 2)
    assert reader_for(folder) == "nih_folder"


def test_can_read_refuses(tmp_path):
    no_texts = tmp_path / "no_texts"
    no_texts.mkdir()
    tiff_slices(no_texts, 2)
    no_images = write_texts(tmp_path / "no_images", headfile="Species: rat\n")
    (no_images / "notes.txt").write_text("hello")
    other = tmp_path / "other.txt"
    other.write_text("x")
    for path in (no_texts, no_images, no_images / "headfile", other, tmp_path / "missing"):
        assert not nih_folder.can_read(path), path


def test_missing_slice_named(tmp_path):
    folder = write_texts(tmp_path / "gap", headfile="Species: rat\n")
    tiff_slices(folder, 12)
    (folder / "molar7.tif").unlink()
    with pytest.raises(FormatError, match="molar7.tif"):
        nih_folder.read(folder)


def test_fewer_slices_than_stated_names_the_next(tmp_path):
    folder = write_texts(tmp_path / "short", Dimensions="Number of slices: 12\n")
    tiff_slices(folder, 10)
    with pytest.raises(FormatError, match="molar11.tif.*12 slices"):
        nih_folder.read(folder)


@pytest.mark.parametrize("case", ["tiff_size", "stack_depth", "raw_size", "raw_odd",
                                  "raw_no_dims", "binary_text"])
def test_disagreeing_sizes_raise(tmp_path, case):
    folder = tmp_path / case
    if case == "tiff_size":
        write_texts(folder, Dimensions="Matrix: 16 x 12\n")
        tiff_slices(folder, 2)
        name = "molar1.tif"
    elif case == "stack_depth":
        write_texts(folder, Dimensions="Matrix: 16 x 8 x 7\n")
        tifffile.imwrite(folder / "stack.tif", np.zeros((4, NY, NX), np.uint8),
                         photometric="minisblack")
        name = "stack.tif"
    elif case in ("raw_size", "raw_odd"):
        write_texts(folder, Dimensions="Matrix: 16 x 8\n")
        for i in (1, 2, 3):
            (folder / f"s.{i:03d}").write_bytes(bytes(NX * NY * 2))
        if case == "raw_size":  # every slice 3 bytes per pixel
            for i in (1, 2, 3):
                (folder / f"s.{i:03d}").write_bytes(bytes(NX * NY * 3))
            name = "s.001"
        else:
            (folder / "s.002").write_bytes(bytes(NX * NY))
            name = "s.002"
    elif case == "raw_no_dims":
        write_texts(folder, headfile="Species: rat\n")
        (folder / "s.001").write_bytes(bytes(NX * NY))
        name = case
    else:
        write_texts(folder, headfile=b"\x00\x01\x02garbage")
        tiff_slices(folder, 2)
        name = "headfile"
    with pytest.raises(FormatError, match=name):
        nih_folder.read(folder)


def test_text_parsing_rules():
    parsed = nih_folder.parse_text(
        "Species: rat\r\nFOV = 25 mm\rSoftware\tParaVision 1.1\n"
        "A sentence that happens to hold a colon later on: kept as text.\nFOV = 30 mm\n")
    assert parsed["entries"] == {"Species": "rat", "FOV": ["25 mm", "30 mm"],
                                 "Software": "ParaVision 1.1"}
    assert parsed["free_text"] == ["A sentence that happens to hold a colon later on: "
                                   "kept as text."]
    assert nih_folder.quantities("25 x 25 x 12.5 mm") == [(25.0, "mm"), (25.0, "mm"),
                                                         (12.5, "mm")]
    assert nih_folder.quantities("0.1mm") == [(0.1, "mm")]
    assert nih_folder.quantities("256X128") == [(256.0, None), (128.0, None)]
    assert nih_folder.recognise("FOV (mm)") == ("fov", None, "mm")
    assert nih_folder.recognise("dim_X") == ("matrix", "x", None)
    assert nih_folder.recognise("Field of View Y") == ("fov", "y", None)
    assert nih_folder.recognise("Width") == ("matrix", "x", None)
    assert nih_folder.recognise("Operator") is None


def test_resolution_as_image_size_and_dimensions_as_fov(tmp_path):
    folder = write_texts(tmp_path / "r", headfile="Resolution: 16 x 8\n"
                                                  "Dimensions: 4 x 2 mm\n"
                                                  "Slice thickness: 100 um\n")
    tifffile.imwrite(folder / "s.tif", np.zeros((3, NY, NX), np.uint8),
                     photometric="minisblack")
    vol = nih_folder.read(folder)
    assert vol.spacing_um == pytest.approx((100.0, 250.0, 250.0))
    assert vol.metadata["spacing_source"] == "text: FOV / image size"
    assert "z_spacing_assumed" not in vol.metadata


def test_text_thickness_over_tiff_slices_calibration(tmp_path):
    folder = write_texts(tmp_path / "t", Dimensions="Slice thickness: 0.3 mm\n")
    for i in (1, 2):
        tifffile.imwrite(folder / f"cut{i:02d}.tif", np.full((NY, NX), i, np.uint16),
                         resolution=(100, 100), resolutionunit="CENTIMETER")
    vol = nih_folder.read(folder)
    assert vol.spacing_um == pytest.approx((300.0, 100.0, 100.0))
    assert vol.metadata["spacing_source"] == "tiff: tiff"
