"""NIH Image TIFFs built by hand: the 512-byte header at ImageJ's offsets, written by
tifffile into tag 43314 the way NIH Image stored it (256 big-endian shorts)."""

import json
import struct

import numpy as np
import pytest
import tifffile

from napari_mrmicro.io import FormatError
from napari_mrmicro.io import nih_tiff

RNG = np.random.default_rng(7)


def nih_header(version=160, xscale=0.0, units=0, aspect=0.0, nslices=0, spacing=0.0,
               inverted=0, xunit=b"", order=">"):
    """NIH Image header bytes at the offsets ImageJ's TiffDecoder reads."""
    blob = bytearray(512)
    blob[0:8] = b"IPICIMAG"
    struct.pack_into(order + "h", blob, 12, version)
    struct.pack_into(order + "d", blob, 160, xscale)
    struct.pack_into(order + "h", blob, 172, units)
    struct.pack_into(order + "h", blob, 260, nslices)
    struct.pack_into(order + "f", blob, 262, spacing)
    struct.pack_into(order + "f", blob, 272, aspect)
    blob[296] = inverted
    blob[298] = len(xunit)
    blob[299:299 + len(xunit)] = xunit
    return bytes(blob)


def write_nih(path, data, blob, byteorder=">", photometric="minisblack", as_shorts=True,
              **kwargs):
    if as_shorts:  # NIH Image: 256 SHORTs, the count ImageJ checks for
        tag = (43314, "H", 256, np.frombuffer(blob, ">u2"), True)
    else:
        tag = (43314, "B", len(blob), blob, True)
    tifffile.imwrite(path, data, byteorder=byteorder, photometric=photometric,
                     metadata=None, extratags=[tag], **kwargs)
    return path


def test_header_offsets_match_imagej():
    fields = nih_tiff.NIH_HEADER.fields
    offsets = {"Version": 12, "XScale": 160, "UnitsID": 172, "CurveFitType": 182,
               "nCoefficients": 184, "UMsize": 234, "nSlices": 260, "SliceSpacing": 262,
               "CurrentSlice": 266, "FrameInterval": 268, "PixelAspectRatio": 272,
               "InvertedTable": 296, "XUnitSize": 298}
    assert {k: fields[k][1] for k in offsets} == offsets
    assert nih_tiff.NIH_HEADER.itemsize == np.dtype(tifffile.TIFF.NIH_IMAGE_HEADER).itemsize


def test_v160_stack_spacing_unit_aspect(tmp_path):
    data = RNG.integers(0, 256, (3, 6, 8), dtype=np.uint8)
    # 40 pixels per mm -> 25 µm wide; aspect 0.5 -> 50 µm high; 0.1 mm slices
    blob = nih_header(version=160, xscale=40.0, units=7, aspect=0.5, nslices=3, spacing=0.1)
    path = write_nih(tmp_path / "molar.tif", data, blob)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_nih
        theirs = tif.nih_metadata
    assert nih_tiff.can_read(path)
    vol = nih_tiff.read(path)
    assert vol.spacing_um == pytest.approx((100.0, 50.0, 25.0))
    np.testing.assert_array_equal(vol.data, data)
    md = vol.metadata
    assert md["format"] == "nih_tiff" and md["source"] == str(path)
    assert md["unit"] == "mm" and md["spacing_known"]
    assert md["spacing_source"] == "nih_header"
    assert md["inverted"] is False and md["acquisition"] == {}
    for key in ("Version", "XScale", "UnitsID", "nSlices", "SliceSpacing",
                "PixelAspectRatio"):
        assert md["header"][key] == pytest.approx(theirs[key])
    json.dumps(md)  # JSON-friendly header


def test_old_version_units_shift_by_five(tmp_path):
    data = np.zeros((4, 4), np.uint8)
    # version 150: UnitsID 1 + 5 = 6 = µm (tifffile's 0-based table agrees: Micrometers)
    path = write_nih(tmp_path / "old.tif", data,
                     nih_header(version=150, xscale=0.1, units=1))
    vol = nih_tiff.read(path)
    assert vol.metadata["unit"] == "µm"
    assert vol.spacing_um == pytest.approx((10.0, 10.0))
    # version 160 reads the same code unshifted: 1 is no unit -> resolution tags / default
    path = write_nih(tmp_path / "new.tif", data,
                     nih_header(version=160, xscale=0.1, units=1))
    vol = nih_tiff.read(path)
    assert vol.metadata["spacing_source"] == "default"
    assert vol.metadata["spacing_known"] is False and vol.spacing_um == (1.0, 1.0)


def test_version_thresholds(tmp_path):
    data = np.zeros((2, 4, 4), np.uint8)
    # version 140: aspect ratio ignored (ImageJ: > 140 only)
    blob = nih_header(version=140, xscale=2.0, units=3, aspect=0.5)  # 2 px/cm (+5 -> cm)
    vol = nih_tiff.read(write_nih(tmp_path / "v140.tif", data, blob))
    assert vol.spacing_um == pytest.approx((5000.0, 5000.0, 5000.0))
    assert vol.metadata["z_spacing_assumed"] is True
    # version 106: XScale ignored -> the TIFF resolution tags (100 px/cm = 100 µm)
    blob = nih_header(version=106, xscale=2.0, units=3)
    vol = nih_tiff.read(write_nih(tmp_path / "v106.tif", data, blob,
                                  resolution=(100, 100), resolutionunit="CENTIMETER"))
    assert vol.metadata["spacing_source"] == "resolution_tags"
    assert vol.spacing_um == pytest.approx((100.0, 100.0, 100.0))


def test_other_units_spelled_in_xunit(tmp_path):
    blob = nih_header(version=160, xscale=0.5, units=15, xunit=b"um")
    vol = nih_tiff.read(write_nih(tmp_path / "x.tif", np.zeros((3, 3), np.uint8), blob))
    assert vol.spacing_um == pytest.approx((2.0, 2.0)) and vol.metadata["unit"] == "um"


def test_min_is_white_displays_inverted(tmp_path):
    data = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    blob = nih_header(version=162, xscale=20.0, units=7, inverted=1)
    path = write_nih(tmp_path / "white.tif", data, blob, photometric="miniswhite")
    np.testing.assert_array_equal(tifffile.imread(path), data)  # stored values
    vol = nih_tiff.read(path)
    np.testing.assert_array_equal(vol.data, 255 - data)
    assert vol.metadata["inverted"] is True and vol.metadata["photometric"] == 0
    assert vol.metadata["header"]["InvertedTable"] == 1
    lazy = nih_tiff.read(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(lazy.data), 255 - data)


def test_big_endian_16bit_stack_native(tmp_path):
    data = RNG.integers(0, 65536, (4, 6, 5), dtype=np.uint16)
    blob = nih_header(version=160, xscale=0.04, units=6, nslices=4, spacing=30.0)
    path = write_nih(tmp_path / "be16.tif", data.astype(">u2"), blob)
    with open(path, "rb") as f:
        assert f.read(2) == b"MM"
    for lazy in (False, True):
        vol = nih_tiff.read(path, lazy=lazy)
        assert vol.data.dtype.isnative and vol.data.shape == (4, 6, 5)
        np.testing.assert_array_equal(np.asarray(vol.data), data)
        assert vol.spacing_um == pytest.approx((30.0, 25.0, 25.0))
    assert vol.metadata["byteorder"] == ">"


def test_lazy_native_is_memmap_and_compressed_is_dask(tmp_path):
    data = RNG.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    blob = nih_header(version=160, xscale=1.0, units=6)
    vol = nih_tiff.read(write_nih(tmp_path / "le.tif", data, blob, byteorder="<",
                                  as_shorts=False), lazy=True)
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.data, data)
    path = write_nih(tmp_path / "z.tif", data, blob, photometric="miniswhite",
                     compression="zlib")
    vol = nih_tiff.read(path, lazy=True)
    assert type(vol.data).__module__.startswith("dask")
    np.testing.assert_array_equal(vol.data.compute(), 255 - data)


def test_little_endian_header_detected(tmp_path):
    blob = nih_header(version=160, xscale=10.0, units=7, order="<")
    path = write_nih(tmp_path / "pc.tif", np.zeros((2, 2), np.uint8), blob, byteorder="<",
                     as_shorts=False)
    vol = nih_tiff.read(path)
    assert vol.metadata["header"]["byteorder"] == "<"
    assert vol.spacing_um == pytest.approx((100.0, 100.0))


def test_rgb_gets_channel_axis(tmp_path):
    data = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    blob = nih_header(version=160, xscale=1.0, units=7)
    vol = nih_tiff.read(write_nih(tmp_path / "rgb.tif", data, blob, photometric="rgb"))
    assert vol.channel_axis == 0 and vol.data.shape == (3, 4, 5)
    np.testing.assert_array_equal(vol.data, np.moveaxis(data, -1, 0))
    assert vol.spacing_um == pytest.approx((1000.0, 1000.0))


def test_can_read_refuses_other_files(tmp_path):
    data = np.zeros((4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", data)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(2, 2),
                     metadata={"unit": "um"})
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "junk.tif").write_bytes(b"\x89PNG" + bytes(100))
    nih = write_nih(tmp_path / "nih.TIF", data, nih_header())
    (tmp_path / "nih.png").write_bytes(nih.read_bytes())
    for name in ("plain.tif", "ij.tif", "empty.tif", "junk.tif", "nih.png", "missing.tif"):
        assert not nih_tiff.can_read(tmp_path / name), name
    assert not nih_tiff.can_read(tmp_path)
    assert nih_tiff.can_read(nih)


@pytest.mark.parametrize("case", ["empty", "garbage", "plain", "truncated", "lost_slice",
                                  "header_cut", "absurd_scale"])
def test_bad_files_name_the_file(tmp_path, case):
    path = tmp_path / f"{case}.tif"
    data = RNG.integers(0, 256, (2, 64, 64), dtype=np.uint8)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(bytes(RNG.integers(0, 256, 500, dtype=np.uint8)))
    elif case == "plain":
        tifffile.imwrite(path, data)
    elif case == "truncated":  # pixels cut short
        write_nih(path, data[0], nih_header())
        path.write_bytes(path.read_bytes()[:-1000])
    elif case == "lost_slice":  # the second page's IFD is gone
        write_nih(path, data, nih_header(nslices=2))
        path.write_bytes(path.read_bytes()[:-3000])
    elif case == "absurd_scale":  # 1e-300 pixels per km
        write_nih(path, data, nih_header(xscale=1e-300, units=10))
    else:  # the header tag points past the end of the file
        raw = bytearray(write_nih(path, data, nih_header()).read_bytes())
        with tifffile.TiffFile(path) as tif:
            offset = tif.pages.first.tags[43314].valueoffset
        path.write_bytes(bytes(raw[:offset + 100]))
    with pytest.raises(FormatError, match=f"{case}.tif"):
        nih_tiff.read(path)


def test_dispatch_picks_nih_tiff(tmp_path):
    from napari_mrmicro.io import read_volume, reader_for

    path = write_nih(tmp_path / "scan.tif", np.zeros((2, 3), np.uint8),
                     nih_header(xscale=10.0, units=7))
    assert reader_for(path) == "nih_tiff"
    assert read_volume(path).spacing_um == pytest.approx((100.0, 100.0))
