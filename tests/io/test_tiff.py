"""ImageJ, OME and plain TIFFs: files written by tifffile as Fiji and OME writers lay them
out, our own ImageJ output checked with tifffile, and broken files."""

import json
import struct

import numpy as np
import pytest
import tifffile

from napari_mrmicro.io import FormatError, Volume, read_volume, reader_for
from napari_mrmicro.io import tiff

RNG = np.random.default_rng(11)


def noise(shape, dtype=np.float32):
    return RNG.random(shape).astype(dtype)


# ------------------------------------------------------------------ round trips

AXIS_CASES = [
    # shape, spacing, channel_axis, labels, ImageJ axes tifffile should see
    ((5, 6), (2.0, 0.5), None, ("y", "x"), "YX"),
    ((4, 5, 6), (20.0, 10.0, 5.0), None, ("z", "y", "x"), "ZYX"),
    ((3, 4, 5, 6), (20.0, 10.0, 5.0), None, ("echo", "z", "y", "x"), "TZYX"),
    ((2, 4, 5, 6), (20.0, 10.0, 5.0), 0, ("channel", "z", "y", "x"), "ZCYX"),
    ((3, 5, 6), (10.0, 5.0), None, ("echo", "y", "x"), "TYX"),
    ((3, 2, 4, 5, 6), (20.0, 10.0, 5.0), 1, ("t", "channel", "z", "y", "x"), "TZCYX"),
    ((2, 3, 4, 5, 6), (20.0, 10.0, 5.0), 0, ("channel", "echo", "z", "y", "x"), "TZCYX"),
]


@pytest.mark.parametrize("shape,spacing,channel_axis,labels,ij_axes", AXIS_CASES)
def test_round_trip_axes(tmp_path, shape, spacing, channel_axis, labels, ij_axes):
    data = noise(shape)
    origin = tuple(10.0 * (i + 1) for i in range(len(spacing)))
    vol = Volume(data, spacing, {"format": "civm", "header": {"U_runno": "N1"},
                                 "acquisition": {"te_ms": [5.0, 10.0], "b0_tesla": 9.4}},
                 origin_um=origin, axis_labels=labels, channel_axis=channel_axis)
    path = tmp_path / "vol.tif"
    assert tiff.write(path, vol) == [str(path)]

    back = tiff.read(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing_um == spacing
    np.testing.assert_allclose(back.origin_um, origin)
    assert back.axis_labels == labels
    assert back.channel_axis == channel_axis
    assert back.metadata["acquisition"] == {"te_ms": [5.0, 10.0], "b0_tesla": 9.4}
    assert back.metadata["source_format"] == "civm"
    assert back.metadata["source_header"] == {"U_runno": "N1"}
    assert back.metadata["format"] == "tiff" and back.metadata["spacing_known"]
    json.dumps(back.metadata, allow_nan=False)

    with tifffile.TiffFile(path) as tif:  # what Fiji sees
        assert tif.is_imagej and tif.series[0].axes == ij_axes
        ij = tif.imagej_metadata
        assert ij["unit"] == "um"
        x_res, y_res = tif.pages[0].resolution
        assert x_res == pytest.approx(1 / spacing[-1]) and y_res == pytest.approx(1 / spacing[-2])
        if len(spacing) == 3:
            assert ij["spacing"] == spacing[0]
        assert ij["xorigin"] == pytest.approx(-origin[-1] / spacing[-1])


def test_written_file_is_plain_imagej_for_fiji(tmp_path):
    data = RNG.integers(0, 4000, (6, 7, 8), dtype=np.uint16)
    path = tmp_path / "stack.tiff"
    tiff.write(path, Volume(data, (7.5, 0.25, 0.5), {}))
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["spacing"] == 7.5
        assert tif.imagej_metadata["slices"] == 6
        assert tif.pages[0].resolution == pytest.approx((2.0, 4.0))
        assert tif.series[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), data)
    back = tiff.read(path)
    assert back.spacing_um == (7.5, 0.25, 0.5)  # anisotropic z kept
    assert back.metadata["unit"] == "um"


def test_a_time_series_step_from_imagej_and_ome(tmp_path):
    """The frame interval: ImageJ ``finterval`` (+ ``tunit``) and OME ``TimeIncrement`` in
    its unit become ``time_step_s``, the t axis' step; ours writes ``finterval`` back."""
    data = np.zeros((3, 4, 6, 8), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True,
                     metadata={"axes": "TZYX", "finterval": 0.5, "tunit": "min"})
    assert tiff.read(tmp_path / "ij.tif").lead_steps() == ((30.0, "second"),)
    tifffile.imwrite(tmp_path / "ome.ome.tif", data, metadata={
        "axes": "TZYX", "TimeIncrement": 250.0, "TimeIncrementUnit": "ms"})
    assert tiff.read(tmp_path / "ome.ome.tif").lead_steps() == ((0.25, "second"),)
    tifffile.imwrite(tmp_path / "none.ome.tif", data, metadata={"axes": "TZYX"})
    assert tiff.read(tmp_path / "none.ome.tif").lead_steps() == ((1.0, "pixel"),)
    volume = Volume(data, (20.0, 10.0, 10.0), {"time_step_s": 1.5},
                    axis_labels=("t", "z", "y", "x"))
    tiff.write(tmp_path / "ours.tif", volume)
    with tifffile.TiffFile(tmp_path / "ours.tif") as tif:  # for Fiji
        assert (tif.imagej_metadata["finterval"], tif.imagej_metadata["tunit"]) == (1.5, "sec")


def test_labels_round_trip_and_imagej_dtypes(tmp_path):
    small = RNG.integers(0, 300, (4, 5, 6)).astype(np.int64)
    big = RNG.integers(0, 1_000_000, (4, 5, 6)).astype(np.int32)
    for data, stored in ((small, np.uint16), (big, np.float32)):
        path = tmp_path / f"labels_{data.dtype}.tif"
        tiff.write(path, Volume(data, (1.0, 2.0, 3.0), {}, layer_type="labels"))
        with tifffile.TiffFile(path) as tif:
            assert tif.series[0].dtype == stored
            np.testing.assert_array_equal(tif.asarray(), data)
        back = tiff.read(path)
        assert back.layer_type == "labels"
        assert back.data.dtype == data.dtype
        np.testing.assert_array_equal(back.data, data)


def test_bool_and_uint8_and_float64(tmp_path):
    mask = RNG.random((3, 4, 5)) > 0.5
    tiff.write(tmp_path / "mask.tif", Volume(mask, (1, 1, 1), {}, layer_type="labels"))
    back = tiff.read(tmp_path / "mask.tif")
    assert back.data.dtype == bool
    np.testing.assert_array_equal(back.data, mask)

    bytes_ = RNG.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    tiff.write(tmp_path / "u8.tif", Volume(bytes_, (1, 1, 1), {}))
    assert tifffile.imread(tmp_path / "u8.tif").dtype == np.uint8

    doubles = RNG.random((3, 4, 5))
    tiff.write(tmp_path / "f64.tif", Volume(doubles, (1, 1, 1), {}))
    back = tiff.read(tmp_path / "f64.tif")
    assert back.data.dtype == np.float32  # ImageJ's float: precision beyond float32 lost
    np.testing.assert_array_equal(back.data, doubles.astype(np.float32))


def test_signed_integers_stored_as_signed_16_bit(tmp_path):
    """ImageJ opens signed 16-bit TIFFs (as unsigned plus 32768, calibrated back): int16
    stays int16, int8 and small int32 become int16, exactly (not float32, twice the size)."""
    for dtype in (np.int16, np.int8, np.int32):
        data = RNG.integers(-100, 100, (3, 4, 5)).astype(dtype)
        tiff.write(tmp_path / "signed.tif", Volume(data, (1, 1, 1), {}))
        assert tifffile.imread(tmp_path / "signed.tif").dtype == np.int16
        back = tiff.read(tmp_path / "signed.tif")
        assert back.data.dtype == dtype
        np.testing.assert_array_equal(back.data, data)


@pytest.mark.parametrize("data,problem", [
    (np.ones((3, 4, 5), np.complex64), "complex"),
    (np.full((3, 4, 5), 2**25, np.int64), "cannot be stored exactly"),
    (np.full((3, 4, 5), 1e300), "float32 range"),
])
def test_refused_data_leave_existing_file_alone(tmp_path, data, problem):
    path = tmp_path / "keep.tif"
    path.write_bytes(b"old contents")
    with pytest.raises(FormatError, match=problem) as err:
        tiff.write(path, Volume(data, (1, 1, 1), {}))
    assert "keep.tif" in str(err.value)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]


def test_too_many_axes_refused(tmp_path):
    with pytest.raises(FormatError, match="at most two axes") as err:
        tiff.write(tmp_path / "six.tif", Volume(noise((2, 2, 2, 3, 4, 5)), (1, 1, 1), {}))
    assert "six.tif" in str(err.value)


def test_rgb_photograph(tmp_path):
    photo = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "section.tif"
    # 2000 dpi scan: 12.7 µm pixels
    tifffile.imwrite(path, photo, photometric="rgb", resolution=(2000, 2000),
                     resolutionunit="INCH")
    vol = tiff.read(path)
    assert vol.metadata["rgb"] is True
    assert vol.data.shape == (30, 40, 3)
    assert vol.axis_labels == ("y", "x", "rgb")
    assert vol.spacing_um == pytest.approx((12.7, 12.7))
    np.testing.assert_array_equal(vol.data, photo)

    out = tmp_path / "copy.tif"
    tiff.write(out, vol)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    back = tiff.read(out)
    assert back.metadata["rgb"] is True
    assert back.spacing_um == pytest.approx((12.7, 12.7))
    np.testing.assert_array_equal(back.data, photo)
    # formats without a colour axis would take the colours for a spatial axis: refused
    from napari_mrmicro.io import write_volume

    for name in ("copy.nii.gz", "copy.zarr"):
        with pytest.raises(FormatError, match="written as TIFF"):
            write_volume(tmp_path / name, vol)
        assert not (tmp_path / name).exists()


# ------------------------------------------------------------------ ImageJ files from tifffile

@pytest.mark.parametrize("unit,to_um", [
    ("nm", 1e-3), ("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0), ("mm", 1e3),
])
def test_imagej_units(tmp_path, unit, to_um):
    path = tmp_path / "fiji.tif"
    data = RNG.integers(0, 255, (2, 4, 3, 5, 6), dtype=np.uint8)  # TZCYX
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 65.0, 1 / 130.0),
                     metadata={"axes": "TZCYX", "spacing": 250.0, "unit": unit})
    vol = tiff.read(path)
    assert vol.spacing_um == pytest.approx((250.0 * to_um, 130.0 * to_um, 65.0 * to_um))
    assert vol.axis_labels == ("t", "channel", "z", "y", "x")
    assert vol.channel_axis == 1
    np.testing.assert_array_equal(vol.data, data.transpose(0, 2, 1, 3, 4))
    assert vol.metadata["kind"] == "imagej" and vol.metadata["spacing_known"]


def test_imagej_zunit_origin_and_luts(tmp_path):
    path = tmp_path / "fiji.tif"
    red, green = np.zeros((3, 256), np.uint8), np.zeros((3, 256), np.uint8)
    red[0] = green[1] = np.arange(256)
    tifffile.imwrite(path, noise((4, 2, 5, 6)), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZCYX", "spacing": 3.0, "unit": "micron",
                               "zunit": "mm", "xorigin": 4.0, "yorigin": 2.0,
                               "zorigin": 1.0, "LUTs": [red, green], "Ranges": [0, 1, 0, 2]})
    vol = tiff.read(path)
    assert vol.spacing_um == pytest.approx((3000.0, 0.5, 0.5))
    assert vol.origin_um == pytest.approx((-3000.0, -1.0, -2.0))
    assert vol.metadata["channels"] == [
        {"color": "#ff0000", "contrast_limits": [0.0, 1.0]},
        {"color": "#00ff00", "contrast_limits": [0.0, 2.0]}]


def test_imagej_without_calibration(tmp_path):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, noise((3, 4, 5)), imagej=True, metadata={"axes": "ZYX"})
    vol = tiff.read(path)
    assert vol.spacing_um == (1.0, 1.0, 1.0)
    assert vol.metadata["spacing_known"] is False
    assert set(vol.metadata["spacing_source"].values()) == {"unknown: 1 µm assumed"}


# ------------------------------------------------------------------ OME-TIFF

def test_ome_tiff_um(tmp_path):
    path = tmp_path / "cells.ome.tif"
    data = RNG.integers(0, 4000, (2, 4, 5, 6), dtype=np.uint16)
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.325, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 2.0, "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": ["DAPI", "GFP"], "Color": [0x0000FFFF, 0x00FF00FF]}})
    assert tiff.can_read(path)
    vol = tiff.read(path)
    assert vol.spacing_um == pytest.approx((2.0, 0.325, 0.325))
    assert vol.channel_axis == 0
    assert vol.axis_labels == ("channel", "z", "y", "x")
    assert vol.metadata["channels"] == [{"name": "DAPI", "color": "#0000ff"},
                                        {"name": "GFP", "color": "#00ff00"}]
    assert vol.metadata["kind"] == "ome"
    assert vol.metadata["header"]["ome"]["Pixels"]["SizeC"] == "2"
    np.testing.assert_array_equal(vol.data, data)
    json.dumps(vol.metadata, allow_nan=False)


def test_ome_tiff_nm_positions_and_second_series(tmp_path):
    path = tmp_path / "tile.ome.tiff"
    data = noise((3, 4, 5))
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(data, metadata={
            "axes": "ZYX", "PhysicalSizeX": 110.0, "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 120.0, "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.0005, "PhysicalSizeZUnit": "mm",
            "Plane": {"PositionX": [7.0] * 3, "PositionY": [8.0] * 3,
                      "PositionZ": [9.0, 9.5, 10.0]}})
        writer.write(np.zeros((7, 8), np.uint8))
    vol = tiff.read(path)
    assert vol.spacing_um == pytest.approx((0.5, 0.12, 0.11))
    assert vol.origin_um == pytest.approx((9.0, 8.0, 7.0))
    assert vol.metadata["other_series"] == [{"axes": "YX", "shape": [7, 8], "dtype": "uint8"}]
    np.testing.assert_array_equal(vol.data, data)


# ------------------------------------------------------------------ plain TIFF

@pytest.mark.parametrize("unit,res,um", [("CENTIMETER", 5000.0, 2.0), ("INCH", 25400.0, 1.0)])
def test_plain_tiff_resolution(tmp_path, unit, res, um):
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, noise((5, 6)), resolution=(res, res / 2), resolutionunit=unit,
                     metadata=None)
    vol = tiff.read(path)
    assert vol.spacing_um == pytest.approx((2 * um, um))
    assert vol.metadata["spacing_known"] is True


def test_plain_stack_without_resolution(tmp_path):
    path = tmp_path / "pages.tif"
    data = RNG.integers(0, 255, (4, 5, 6), dtype=np.uint8)
    with tifffile.TiffWriter(path) as writer:
        for page in data:
            writer.write(page, metadata=None)
    vol = tiff.read(path)
    assert vol.axis_labels == ("z", "y", "x")  # a page sequence is a z stack, as in ImageJ
    assert vol.spacing_um == (1.0, 1.0, 1.0)
    assert vol.metadata["spacing_known"] is False
    np.testing.assert_array_equal(vol.data, data)


# ------------------------------------------------------------------ lazy reading

def test_lazy_memmap_and_dask(tmp_path, monkeypatch):
    data = RNG.integers(0, 4000, (4, 5, 6), dtype=np.uint16)
    contiguous = tmp_path / "contiguous.tif"
    tiff.write(contiguous, Volume(data, (1, 1, 1), {}))
    monkeypatch.setattr(tiff, "LAZY_BYTES", 10)
    mapped = tiff.read(contiguous)
    assert isinstance(mapped.data, np.memmap)
    np.testing.assert_array_equal(mapped.data, data)

    compressed = tmp_path / "zlib.tif"
    tifffile.imwrite(compressed, data, compression="zlib", photometric="minisblack",
                     metadata={"axes": "ZYX"})
    lazy = tiff.read(compressed)
    assert type(lazy.data).__module__.startswith("dask")
    assert lazy.data.chunks[0] == (1, 1, 1, 1)  # one chunk per page
    np.testing.assert_array_equal(np.asarray(lazy.data), data)
    assert isinstance(tiff.read(compressed, lazy=False).data, np.ndarray)


# ------------------------------------------------------------------ sniffing and bad files

def test_can_read_and_dispatch(tmp_path):
    good = tmp_path / "IMG.TIF"
    tiff.write(good, Volume(noise((2, 3, 4)), (1, 1, 1), {}))
    assert tiff.can_read(good)
    assert reader_for(good) == "tiff"
    renamed = tmp_path / "img.png"
    renamed.write_bytes(good.read_bytes())
    assert not tiff.can_read(renamed)
    assert not tiff.can_read(tmp_path)


def test_nih_image_tiff_left_to_nih_module(tmp_path):
    path = tmp_path / "nih.tif"
    blob = np.zeros(256, ">u2")
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8), metadata=None,
                     extratags=[(43314, "H", 256, blob, True)])
    assert not tiff.can_read(path)
    with pytest.raises(FormatError, match="NIH Image") as err:
        tiff.read(path)
    assert "nih.tif" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, bytes(range(256)) * 8,
                                     b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 50,
                                     b"II+\x00\x08\x00"])
def test_garbage_is_not_read(tmp_path, content):
    """Garbage is refused naming the file; with a TIFF's magic bytes it is claimed as a
    TIFF and the TIFF reader says what is wrong, not that it is a format we do not read."""
    path = tmp_path / "junk.tif"
    path.write_bytes(content)
    magic = content[:4] in (b"II*\x00", b"II+\x00")
    assert tiff.can_read(path) == magic
    with pytest.raises(FormatError) as err:
        tiff.read(path)
    assert "junk.tif" in str(err.value)
    with pytest.raises(FormatError) as through:
        read_volume(path)
    said = str(through.value)
    assert said == str(err.value) if magic else "not a format napari-mrmicro reads" in said


@pytest.mark.parametrize("kind", ["imagej", "ome", "zlib"])
@pytest.mark.parametrize("fraction", [0.97, 0.5, 0.05])
def test_truncated_files(tmp_path, kind, fraction):
    path = tmp_path / "whole.tif"
    data = RNG.integers(0, 4000, (6, 16, 16), dtype=np.uint16)
    if kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    elif kind == "ome":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX"})
    else:
        tifffile.imwrite(path, data, compression="zlib", metadata={"axes": "ZYX"})
    blob = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(blob[:int(len(blob) * fraction)])
    with pytest.raises(FormatError, match="truncated") as err:
        tiff.read(cut)
    assert "cut.tif" in str(err.value)


def test_ifd_loop_refused(tmp_path):
    path = tmp_path / "loop.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8), metadata=None)
    blob = bytearray(path.read_bytes())
    first = struct.unpack_from("<I", blob, 4)[0]
    count = struct.unpack_from("<H", blob, first)[0]
    struct.pack_into("<I", blob, first + 2 + 12 * count, first)  # next IFD = itself
    path.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="loops") as err:
        tiff.read(path)
    assert "loop.tif" in str(err.value)


def test_imagej_promising_missing_images(tmp_path):
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint16), metadata=None,
                     description="ImageJ=1.54f\nimages=40\nslices=40\n")
    with pytest.raises(FormatError, match="40 images") as err:
        tiff.read(path)
    assert "short.tif" in str(err.value)


# ------------------------------------------------------------------ microscopes' files

def micro_manager_positions(path, positions=2, frames=10, n=16):
    """A Micro-Manager-like multi-position OME-TIFF: one OME Image per stage position and,
    as Micro-Manager writes, an ImageJ description beside the OME-XML (a second
    ImageDescription tag, patched in: tifffile writes one)."""
    with tifffile.TiffWriter(path, ome=True) as writer:
        for pos in range(positions):
            writer.write(np.full((frames, n, n), pos + 1, np.uint16), metadata={
                "axes": "TYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65,
                "Plane": {"PositionX": [100.0 + 1000.0 * pos] * frames,
                          "PositionY": [200.0] * frames}},
                extratags=[(271, "s", 0, "ImageJ=1.53t\n", True)] if pos == 0 else None)
    raw = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", raw[4:8])[0]
    for k in range(struct.unpack("<H", raw[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", raw[entry:entry + 2])[0] == 271:  # Make -> ImageDescription
            raw[entry:entry + 2] = struct.pack("<H", 270)
    path.write_bytes(bytes(raw))


def test_micro_manager_multi_position_one_volume_per_position(tmp_path):
    path = tmp_path / "mm.ome.tif"
    micro_manager_positions(path)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.is_ome  # the combination that was refused
    volumes = tiff.read_all(path)
    assert len(volumes) == 2
    for pos, vol in enumerate(volumes):
        assert vol.data.shape == (10, 16, 16) and np.all(vol.data == pos + 1)
        assert vol.spacing_um == pytest.approx((0.65, 0.65))
        assert vol.origin_um == pytest.approx((200.0, 100.0 + 1000.0 * pos))  # stage, µm
        assert vol.metadata["positions"] == 2 and vol.metadata["position"] == pos
    assert volumes[0].name != volumes[1].name
    assert tiff.read(path).metadata["positions"] == 2


def test_missing_companion_files_are_named(tmp_path):
    uuid = "urn:uuid:00000000-0000-0000-0000-000000000001"
    xml = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="' + uuid + '">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" '
           'SizeX="8" SizeY="6" SizeZ="3" SizeC="1" SizeT="1" PhysicalSizeX="2" '
           'PhysicalSizeY="2" PhysicalSizeZ="5"><Channel ID="Channel:0:0"/>'
           '<TiffData FirstZ="0" IFD="0" PlaneCount="1"><UUID FileName="master.ome.tif">'
           + uuid + '</UUID></TiffData>'
           '<TiffData FirstZ="1" IFD="0" PlaneCount="1"><UUID FileName="part_1.ome.tif">'
           'urn:uuid:2</UUID></TiffData>'
           '<TiffData FirstZ="2" IFD="0" PlaneCount="1"><UUID FileName="part_2.ome.tif">'
           'urn:uuid:3</UUID></TiffData></Pixels></Image></OME>')
    path = tmp_path / "master.ome.tif"
    tifffile.imwrite(path, np.ones((6, 8), np.uint8), description=xml, metadata=None)
    with pytest.raises(FormatError, match="part_1.ome.tif, part_2.ome.tif"):
        tiff.read(path)
    # planes of this very file (its own UUID) are found under any file name
    own = xml.split("<TiffData FirstZ=\"1\"")[0].replace('SizeZ="3"', 'SizeZ="1"')
    renamed = tmp_path / "renamed.ome.tif"
    tifffile.imwrite(renamed, np.ones((6, 8), np.uint8), metadata=None,
                     description=own + "</Pixels></Image></OME>")
    assert tiff.read(renamed).data.shape == (6, 8)


def test_uncalibrated_stack_is_in_pixels(tmp_path):
    from napari_mrmicro._layers import volume_to_layer_data

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), imagej=True)
    vol = tiff.read(path)
    assert vol.metadata["uncalibrated"]
    (_, kwargs, _), = volume_to_layer_data(vol)
    assert set(kwargs["units"]) == {"pixel"}


@pytest.mark.parametrize("name,spacing,units", [
    ("exampletiffs/170918_tn_neutrophil_migration_wave.ome.tif", (1.0, 1.0), "µm"),
    ("exampletiffs/4D-series.ome.tif", (1.0, 1.0, 1.0), "pixel"),
    ("imagej/multi-channel-time-series.ome.tif", (1.0, 1.0), "pixel")])
def test_realdata_optical_files_open_with_their_sizes(realdata, name, spacing, units):
    from napari_mrmicro._reader import read_layers

    vol = tiff.read(realdata(f"tiff/{name}"))
    assert vol.spacing_um == pytest.approx(spacing)
    for _, kwargs, _ in read_layers(realdata(f"tiff/{name}")):
        assert kwargs["units"][-len(spacing):] == (units,) * len(spacing)
    if "neutrophil" in name:  # Bio-Formats: 1 µm pixels, stage label in µm
        assert vol.origin_um == pytest.approx((16478.87, 54555.58))
        assert vol.metadata["channels"][0]["name"] == "488 TIRF left"


@pytest.mark.parametrize("suffix", [".ome.zarr", ".nii", ".tif"])
def test_an_uncalibrated_image_stays_uncalibrated_when_converted(realdata, tmp_path, suffix):
    """The OME sample states no pixel size and no position: converted by `mrmicro convert`
    it must not turn into a file of 1 µm voxels placed at the origin. Each format records
    that the spacing was assumed and the placement unknown, OME-Zarr also by axes without a
    unit (and t as a time axis), ImageJ by its "pixel" unit."""
    from napari_mrmicro._reader import read_layers
    from napari_mrmicro.cli import main
    from napari_mrmicro.pipeline import load_volume

    source = realdata("tiff/exampletiffs/4D-series.ome.tif")
    out = tmp_path / f"c{suffix}"
    assert main(["convert", str(source), str(out)]) == 0
    back = load_volume(out)
    assert back.metadata["uncalibrated"] and back.metadata["spacing_known"] is False
    assert not back.placed() and load_volume(source).placed() is False
    assert back.axis_labels == ("t", "z", "y", "x")
    for _, kwargs, _ in read_layers(str(out)):
        assert kwargs["units"][-3:] == ("pixel",) * 3
    if suffix == ".ome.zarr":
        axes = json.loads((out / ".zattrs").read_text())["multiscales"][0]["axes"]
        assert axes[0] == {"name": "t", "type": "time"}
        assert all("unit" not in a for a in axes[1:])
    if suffix == ".tif":
        with tifffile.TiffFile(out) as tif:
            assert tif.imagej_metadata["unit"] == "pixel"


@pytest.mark.parametrize("suffix", [".ome.zarr", ".nii", ".tif"])
def test_a_converted_microscope_image_keeps_its_channel_and_stage(realdata, tmp_path,
                                                                  suffix):
    from napari_mrmicro.cli import main
    from napari_mrmicro.pipeline import load_volume

    source = realdata("tiff/exampletiffs/170918_tn_neutrophil_migration_wave.ome.tif")
    assert main(["convert", str(source), str(tmp_path / f"n{suffix}")]) == 0
    back = load_volume(tmp_path / f"n{suffix}")
    assert back.metadata["channels"] == [{"name": "488 TIRF left"}]
    assert back.origin_um == pytest.approx((16478.87, 54555.58)) and back.placed()
    assert back.spacing_um == pytest.approx((1.0, 1.0)) and back.metadata.get(
        "spacing_known", True)
