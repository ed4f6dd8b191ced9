"""NIfTI through nibabel: our round trips, files nibabel writes in mm and micron, nibabel's
own bundled test images, and broken files."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from napari_mrmicro.io import FormatError, Volume, reader_for
from napari_mrmicro.io import nifti

nib = pytest.importorskip("nibabel")
RNG = np.random.default_rng(5)


def make(shape, dtype):
    if np.dtype(dtype).kind == "c":
        return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dtype)
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(0, 3000, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("shape,dtype,layer_type", [
    ((4, 5, 6), np.float32, "image"),
    ((3, 4, 5, 6), np.float32, "image"),
    ((4, 5, 6), np.uint16, "image"),
    ((4, 5, 6), np.int32, "labels"),
    ((2, 4, 5, 6), np.complex64, "image"),
])
def test_round_trip(tmp_path, suffix, shape, dtype, layer_type):
    data = make(shape, dtype)
    spacing, origin = (25.0, 12.5, 10.0), (-1250.0, 300.0, 42.5)
    vol = Volume(data, spacing, {"format": "civm", "header": {"U_runno": "N5"},
                                 "acquisition": {"b0_tesla": 9.4, "te_ms": [4.0, 8.0]}},
                 origin_um=origin, layer_type=layer_type)
    path = tmp_path / f"vol{suffix}"
    assert nifti.write(path, vol) == [str(path)]
    assert nifti.can_read(path) and reader_for(path) == "nifti"

    back = nifti.read(path)
    assert back.data.dtype == data.dtype
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing_um == spacing
    assert back.origin_um == origin
    assert back.axis_labels == vol.axis_labels
    assert back.layer_type == layer_type
    assert back.metadata["acquisition"] == {"b0_tesla": 9.4, "te_ms": [4.0, 8.0]}
    assert back.metadata["source_format"] == "civm"
    json.dumps(back.metadata, allow_nan=False)

    img = nib.load(path)  # independent reader: NIfTI axis order and micron units
    assert img.shape == shape[::-1]
    assert img.header.get_xyzt_units()[0] == "micron"
    assert img.header.get_zooms()[:3] == spacing[::-1]
    assert img.get_data_dtype() == data.dtype
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data.T)
    np.testing.assert_array_equal(img.affine[:3, 3], origin[::-1])
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1


def test_a_time_series_keeps_its_repetition_time(tmp_path, realdata):
    """SPM's functional.nii states pixdim[4] = 2 with seconds: the layer's t axis is in s
    (it was 1 pixel), and our NIfTI writes the step back for other tools to read."""
    import nibabel as nib

    from napari_mrmicro._layers import layer_to_volume
    from napari_mrmicro._reader import read_layers

    (data, kwargs, _), = read_layers(realdata("nifti/nibabel/functional.nii"))
    assert kwargs["axis_labels"][0] == "t" and kwargs["units"][0] == "second"
    assert kwargs["scale"][0] == pytest.approx(2.0)
    volume = layer_to_volume(data, kwargs)  # what napari hands the writer
    assert volume.metadata["time_step_s"] == pytest.approx(2.0)
    nifti.write(tmp_path / "f.nii", volume)
    header = nib.load(tmp_path / "f.nii").header
    assert header.get_zooms()[3] == pytest.approx(2.0)
    assert header.get_xyzt_units() == ("micron", "sec")
    again = nifti.read(tmp_path / "f.nii")
    assert again.metadata["time_step_s"] == pytest.approx(2.0)
    np.testing.assert_allclose(again.spacing_um, volume.spacing_um)
    # in ms the step is converted; echo axes and unstated steps stay at 1 pixel
    img = nib.Nifti1Image(np.zeros((4, 4, 3, 5), np.int16), np.eye(4))
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_zooms((1.0, 1.0, 1.0, 250.0))
    nib.save(img, tmp_path / "ms.nii")
    assert nifti.read(tmp_path / "ms.nii").lead_steps() == ((0.25, "second"),)
    img.header.set_xyzt_units("mm", "unknown")
    nib.save(img, tmp_path / "unknown.nii")
    assert nifti.read(tmp_path / "unknown.nii").lead_steps() == ((1.0, "pixel"),)
    echoes = Volume(np.zeros((2, 3, 4, 5), np.float32), (10.0, 10.0, 10.0),
                    {"time_step_s": 3.0}, axis_labels=("echo", "z", "y", "x"))
    assert echoes.lead_steps() == ((1.0, "pixel"),)


def test_labels_int64_stored_as_int32_and_restored(tmp_path):
    labels = RNG.integers(0, 70000, (4, 5, 6)).astype(np.int64)
    path = tmp_path / "labels.nii.gz"
    nifti.write(path, Volume(labels, (1, 1, 1), {}, layer_type="labels"))
    assert nib.load(path).get_data_dtype() == np.int32
    back = nifti.read(path)
    assert back.data.dtype == np.int64 and back.layer_type == "labels"
    np.testing.assert_array_equal(back.data, labels)


@pytest.mark.parametrize("intent, dtype, expected", [
    ("label", np.int16, "labels"), ("neuroname", np.uint8, "labels"),
    ("none", np.int16, "image"), ("label", np.float32, "image")])
def test_label_intent_of_other_programs(tmp_path, intent, dtype, expected):
    """A segmentation another program wrote with NIFTI_INTENT_LABEL (1002) or
    NIFTI_INTENT_NEURONAME (1003) opens as labels; without the intent, or with it on
    non-integer data, as an image."""
    data = RNG.integers(0, 5, (6, 5, 4)).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([0.05, 0.05, 0.05, 1.0]))
    img.header.set_intent(intent)
    nib.save(img, tmp_path / "seg.nii.gz")
    back = nifti.read(tmp_path / "seg.nii.gz")
    assert back.layer_type == expected
    np.testing.assert_array_equal(back.data, data.T)
    assert back.spacing_um == pytest.approx((50.0, 50.0, 50.0))


def test_labels_written_with_the_label_intent(tmp_path):
    """Our labels carry intent 1002 for other programs (nibabel reads it back); our images
    none; without our header extension the intent alone makes the file labels again."""
    labels = RNG.integers(0, 9, (4, 5, 6)).astype(np.uint16)
    nifti.write(tmp_path / "l.nii", Volume(labels, (10, 10, 10), {}, layer_type="labels"))
    nifti.write(tmp_path / "i.nii", Volume(labels, (10, 10, 10), {}))
    assert nib.load(tmp_path / "l.nii").header.get_intent()[0] == "label"
    assert nib.load(tmp_path / "i.nii").header.get_intent()[0] == "none"
    bare = nib.load(tmp_path / "l.nii")
    bare.header.extensions.clear()
    nib.save(nib.Nifti1Image(np.asarray(bare.dataobj), bare.affine, bare.header),
             tmp_path / "bare.nii")
    assert nifti.read(tmp_path / "bare.nii").layer_type == "labels"


def test_channel_axis_and_2d(tmp_path):
    data = make((2, 3, 4, 5), np.float32)
    nifti.write(tmp_path / "c.nii", Volume(data, (3, 2, 1), {}, channel_axis=0))
    back = nifti.read(tmp_path / "c.nii")
    assert back.channel_axis == 0 and back.axis_labels == ("channel", "z", "y", "x")

    plane = make((5, 6), np.float32)
    nifti.write(tmp_path / "p.nii", Volume(plane, (2.0, 0.5), {}))
    back = nifti.read(tmp_path / "p.nii")
    assert back.spacing_um == (2.0, 0.5) and back.axis_labels == ("y", "x")
    np.testing.assert_array_equal(back.data, plane)


def test_unstorable_layouts_refused(tmp_path):
    with pytest.raises(FormatError, match="cannot store") as err:
        nifti.write(tmp_path / "e.nii", Volume(make((2, 5, 6), np.float32), (1, 1), {}))
    assert "e.nii" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_existing_file(tmp_path):
    path = tmp_path / "keep.nii.gz"
    path.write_bytes(b"old")
    strings = np.array([["a"]], dtype=object)
    with pytest.raises(FormatError, match="cannot hold") as err:
        nifti.write(path, Volume(strings, (1, 1), {}))
    assert "keep.nii.gz" in str(err.value)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]


# ------------------------------------------------------------------ files nibabel writes

@pytest.mark.parametrize("unit,to_um", [("mm", 1e3), ("micron", 1.0), ("meter", 1e6),
                                        ("unknown", 1e3)])
def test_nibabel_written_units(tmp_path, unit, to_um):
    data = make((6, 5, 4), np.int16)  # x, y, z
    affine = np.diag([0.05, 0.04, 0.2, 1.0])
    affine[:3, 3] = (1.5, -2.0, 3.0)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(unit, "sec")
    path = tmp_path / "scan.nii"
    nib.save(img, path)
    vol = nifti.read(path)
    zooms = np.array(img.header.get_zooms(), float)  # float32 in the file
    np.testing.assert_allclose(vol.spacing_um, zooms[::-1] * to_um)
    np.testing.assert_allclose(vol.spacing_um, np.array([0.2, 0.04, 0.05]) * to_um,
                               rtol=1e-6)
    np.testing.assert_allclose(vol.origin_um, np.array([3.0, -2.0, 1.5]) * to_um, rtol=1e-6)
    assert vol.data.dtype == np.int16  # no scaling: integers stay integers
    np.testing.assert_array_equal(vol.data, data.T)
    assert vol.metadata["spacing_known"] is (unit != "unknown")
    if unit == "unknown":
        assert vol.metadata["unit_assumed"] == "mm"
    assert vol.metadata["header"]["axcodes"] == ["R", "A", "S"]


def test_scaling_applied(tmp_path):
    raw = make((6, 5, 4), np.int16)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4), header=header)
    img.header.set_slope_inter(0.5, -10.0)
    path = tmp_path / "scaled.nii"
    # write the header ourselves so nibabel keeps our slope/intercept
    with open(path, "wb") as fh:
        img.header.write_to(fh)
        fh.write(b"\x00" * (352 - fh.tell()))
        fh.write(raw.tobytes(order="F"))
    vol = nifti.read(path)
    np.testing.assert_allclose(vol.data, raw.T * 0.5 - 10.0)
    assert vol.metadata["header"]["scl_slope"] == 0.5
    assert vol.metadata["header"]["scl_inter"] == -10.0
    lazy = nifti.read(path, lazy=True)
    np.testing.assert_allclose(np.asarray(lazy.data), raw.T * 0.5 - 10.0)


def test_lazy_memmap(tmp_path, monkeypatch):
    data = make((3, 4, 5), np.float32)
    nifti.write(tmp_path / "m.nii", Volume(data, (1, 1, 1), {}))
    monkeypatch.setattr(nifti, "LAZY_BYTES", 10)
    vol = nifti.read(tmp_path / "m.nii")
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.data, data)


def test_hdr_img_pair(tmp_path):
    data = make((6, 5, 4), np.float32)
    img = nib.Nifti1Pair(data, np.diag([0.1, 0.1, 0.3, 1.0]))
    nib.save(img, tmp_path / "pair.hdr")
    vol = nifti.read(tmp_path / "pair.hdr")
    np.testing.assert_allclose(vol.spacing_um, (300.0, 100.0, 100.0), rtol=1e-6)
    np.testing.assert_array_equal(vol.data, data.T)
    (tmp_path / "pair.img").unlink()
    assert not nifti.can_read(tmp_path / "pair.hdr")


# ------------------------------------------------------------------ nibabel's test data

DATA = Path(pytest.importorskip("nibabel.testing").data_path)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz",
                                  "anatomical.nii", "functional.nii"])
def test_nibabel_bundled_images(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"nibabel ships no {name}")
    img = nib.load(path)
    assert nifti.can_read(path)
    vol = nifti.read(path)
    np.testing.assert_allclose(vol.data, np.asanyarray(img.dataobj).T, rtol=1e-6)
    scaled = (img.dataobj.slope, img.dataobj.inter) != (1.0, 0.0)
    expected = np.float32 if scaled and img.get_data_dtype().kind in "iu" \
        else img.get_data_dtype().newbyteorder("=")
    assert vol.data.dtype == expected  # scaled ints -> float32, unscaled keep their dtype
    zooms = np.array(img.header.get_zooms()[:3], float)
    np.testing.assert_allclose(vol.spacing_um, zooms[::-1] * 1e3)  # these are in mm
    np.testing.assert_allclose(vol.origin_um, img.affine[:3, 3][::-1] * 1e3)
    assert vol.metadata["header"]["axcodes"] == list(nib.aff2axcodes(img.affine))
    if img.ndim == 4:
        assert vol.axis_labels == ("t", "z", "y", "x")
        unit = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(img.header.get_xyzt_units()[1])
        if unit is not None:  # the repetition time, in s
            assert vol.metadata["time_step_s"] == pytest.approx(img.header.get_zooms()[3] * unit)
    json.dumps(vol.metadata, allow_nan=False)


# ------------------------------------------------------------------ bad files

@pytest.fixture
def good_nii(tmp_path):
    path = tmp_path / "good.nii"  # 8 KiB of noise: a cut at half lands in the voxels
    nifti.write(path, Volume(make((8, 16, 16), np.float32), (1, 1, 1), {}))
    return path


def test_truncated_nii(tmp_path, good_nii):
    cut = tmp_path / "cut.nii"
    cut.write_bytes(good_nii.read_bytes()[:-10])
    with pytest.raises(FormatError, match="implies") as err:
        nifti.read(cut)
    assert "cut.nii" in str(err.value)


def test_header_claiming_bigger_image(tmp_path, good_nii):
    blob = bytearray(good_nii.read_bytes())
    struct.pack_into("<3h", blob, 42, 30000, 30000, 30000)  # dim[1..3]
    for name, content in (("big.nii", bytes(blob)), ("big.nii.gz", gzip.compress(blob))):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(FormatError, match="implies") as err:
            nifti.read(path)
        assert name in str(err.value)


def test_truncated_nii_gz(tmp_path, good_nii):
    whole = gzip.compress(good_nii.read_bytes())
    for i, cut in enumerate((len(whole) - 16, len(whole) // 2, 200)):
        path = tmp_path / f"cut{i}.nii.gz"
        path.write_bytes(whole[:cut])
        with pytest.raises(FormatError) as err:
            nifti.read(path)
        assert path.name in str(err.value)
    short = tmp_path / "short.nii.gz"  # a complete gzip stream missing the last voxels
    short.write_bytes(gzip.compress(good_nii.read_bytes()[:-40]))
    with pytest.raises(FormatError, match="gzip stream holds") as err:
        nifti.read(short)
    assert "short.nii.gz" in str(err.value)


@pytest.mark.parametrize("name,content", [
    ("empty.nii", b""),
    ("text.nii", b"this is not a NIfTI file\n" * 40),
    ("noise.nii", bytes(range(256)) * 4),
    ("noise.nii.gz", bytes(range(256)) * 4),
    ("text.nii.gz", gzip.compress(b"hello" * 200)),
])
def test_not_nifti(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert not nifti.can_read(path)
    with pytest.raises(FormatError) as err:
        nifti.read(path)
    assert name in str(err.value)


def test_tiff_named_nii_is_not_claimed(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(b"II*\x00" + b"\x00" * 400)
    assert not nifti.can_read(path)
