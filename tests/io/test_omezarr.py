"""OME-Zarr: NGFF 0.4 multiscale writer and lazy reader, in µm."""

import json

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_mrmicro.io import FormatError, Volume
from napari_mrmicro.io import omezarr

ACQ = {"b0_tesla": 9.4, "te_ms": [3.0, 6.0], "matrix": [24, 20, 16]}


def _image(shape=(24, 20, 16), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, shape).astype(dtype)


def _zattrs(path):
    return json.loads((path / ".zattrs").read_text())


def test_round_trip_with_units_pyramid_and_metadata(tmp_path):
    data = _image()
    volume = Volume(data, (20.0, 10.0, 12.5), {"format": "tiff", "header": {"a": 1},
                                               "acquisition": ACQ},
                    origin_um=(100.0, -50.0, 0.0), name="ear 7")
    path = tmp_path / "ear.ome.zarr"
    assert omezarr.write(path, volume, chunks=8, levels=3) == [str(path)]

    ms = _zattrs(path)["multiscales"][0]
    assert ms["version"] == "0.4" and ms["type"] == "mean"
    assert ms["axes"] == [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    for level, ds in enumerate(ms["datasets"]):
        scale, translation = (t[t["type"]] for t in ds["coordinateTransformations"])
        f = 2**level
        assert scale == [20.0 * f, 10.0 * f, 12.5 * f]
        # voxel 0 of a level sits at the centre of its block of full-resolution voxels
        assert translation == pytest.approx([100 + (f - 1) / 2 * 20, -50 + (f - 1) / 2 * 10,
                                             (f - 1) / 2 * 12.5])
    # an independent reading of the levels with zarr alone: chunked, "/" keys, block means
    group = zarr.open_group(str(path), mode="r")
    assert group["0"].chunks == (8, 8, 8)
    assert json.loads((path / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    np.testing.assert_array_equal(group["0"][...], data)
    expected1 = np.round(data.reshape(12, 2, 10, 2, 8, 2).astype(np.float64)
                         .mean(axis=(1, 3, 5))).astype(np.uint16)
    np.testing.assert_allclose(group["1"][...], expected1, atol=1)
    assert group["2"].shape == (6, 5, 4)

    back = omezarr.read(path, lazy=False)
    assert isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing_um == (20.0, 10.0, 12.5)
    assert back.origin_um == (100.0, -50.0, 0.0)
    assert back.metadata["acquisition"] == ACQ
    assert back.metadata["source_format"] == "tiff"
    assert back.metadata["source_header"] == {"a": 1}
    assert back.metadata["levels"] == 3 and back.name == "ear 7"
    assert back.axis_labels == ("z", "y", "x")


def test_lazy_read_gives_dask_levels_for_napari_multiscale(tmp_path):
    data = _image((32, 32, 32)).astype(np.float32)
    path = tmp_path / "big.zarr"
    omezarr.write(path, Volume(data, (10.0,) * 3), chunks=16, levels=2)
    back = omezarr.read(path, lazy=True)
    assert isinstance(back.data, da.Array) and back.data.chunksize == (16, 16, 16)
    pyramid = back.metadata["pyramid"]
    assert [p.shape for p in pyramid] == [(32, 32, 32), (16, 16, 16)]
    np.testing.assert_allclose(pyramid[1].compute(),
                               data.reshape(16, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5)),
                               rtol=1e-6)


def test_dask_input_is_written_chunk_by_chunk(tmp_path):
    lazy = da.arange(40 * 36 * 20, dtype=np.int32).reshape(40, 36, 20).rechunk((1, 36, 20))
    path = tmp_path / "series.zarr"
    omezarr.write(path, Volume(lazy, (5.0, 5.0, 5.0)), chunks=(16, 16, 16), levels=1)
    np.testing.assert_array_equal(omezarr.read(path, lazy=False).data, lazy.compute())
    assert zarr.open_group(str(path), mode="r")["0"].chunks == (16, 16, 16)


def test_automatic_levels_stop_at_256_and_skip_single_voxel_axes():
    assert omezarr._level_factors((1000, 20, 1), 3, None) == [(1, 1, 1), (2, 2, 1), (4, 4, 1)]
    assert omezarr._level_factors((64, 64, 64), 3, None) == [(1, 1, 1)]
    with pytest.raises(ValueError, match="cannot be halved"):
        omezarr._level_factors((2, 2, 2), 3, 4)


def test_labels_downsample_by_nearest_and_keep_their_type(tmp_path):
    labels = np.zeros((16, 16, 16), np.uint16)
    labels[2:9, 3:12, 4:10] = 7
    labels[10:15, 10:15, 1:6] = 300
    path = tmp_path / "labels.zarr"
    omezarr.write(path, Volume(labels, (8.0,) * 3, layer_type="labels"), levels=2)
    assert _zattrs(path)["multiscales"][0]["type"] == "nearest"
    half = zarr.open_group(str(path), mode="r")["1"][...]
    np.testing.assert_array_equal(half, labels[::2, ::2, ::2])
    back = omezarr.read(path)
    assert back.layer_type == "labels" and back.data.dtype == np.uint16


def test_echo_axis_and_kspace_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    kspace = (rng.normal(size=(2, 8, 8, 8)) + 1j * rng.normal(size=(2, 8, 8, 8))
              ).astype(np.complex64)
    meta = {"kspace": True, "multislice": False, "coil_axis": None,
            "acquisition": {**ACQ, "matrix": [8, 8, 8]}}
    path = tmp_path / "k.zarr"
    omezarr.write(path, Volume(kspace, (50.0, 50.0, 50.0), meta), levels=3)
    attrs = _zattrs(path)
    assert len(attrs["multiscales"][0]["datasets"]) == 1  # no pyramid of k-space
    assert attrs["multiscales"][0]["axes"][0] == {"name": "echo"}  # custom, not channels
    shown = zarr.open_group(str(path), mode="r")["0"]  # NGFF viewers see the log-magnitude
    assert shown.dtype == np.float32
    np.testing.assert_allclose(shown[...], np.log1p(np.abs(kspace)), rtol=1e-6)
    back = omezarr.read(path)
    assert back.metadata["kspace"] is True and back.data.dtype == np.complex64
    np.testing.assert_array_equal(back.data, kspace)
    assert back.axis_labels == ("echo", "z", "y", "x")


def test_a_time_series_step_is_its_time_axis_scale(tmp_path):
    """A ``t`` axis with ``time_step_s`` is written as NGFF's ``time`` axis in seconds with
    the step as its scale; a foreign store's time axis in ms is read back in s."""
    volume = Volume(np.zeros((3, 4, 6, 8), np.float32), (20.0, 10.0, 10.0),
                    {"time_step_s": 1.5}, axis_labels=("t", "z", "y", "x"))
    path = tmp_path / "t.zarr"
    omezarr.write(path, volume, levels=1)
    ms = _zattrs(path)["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 1.5
    back = omezarr.read(path)
    assert back.lead_steps() == ((1.5, "second"),) and back.axis_labels[0] == "t"
    foreign = tmp_path / "foreign.zarr"
    group = zarr.open_group(str(foreign), mode="w", zarr_format=3)
    group.create_array("s0", shape=(2, 4, 6, 8), dtype="f4", chunks=(1, 4, 6, 8))[:] = 1.0
    axes = [{"name": "t", "type": "time", "unit": "millisecond"}] + [
        {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": axes, "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [250.0, 20.0, 10.0, 10.0]}]}]}]}
    assert omezarr.read(foreign).lead_steps() == ((0.25, "second"),)


def test_complex_image_is_refused(tmp_path):
    with pytest.raises(FormatError, match="c.zarr.*magnitude"):
        omezarr.write(tmp_path / "c.zarr", Volume(np.ones((4, 4, 4), np.complex64), (1, 1, 1)))


def test_failed_write_leaves_the_existing_folder(tmp_path):
    path = tmp_path / "keep.zarr"
    omezarr.write(path, Volume(np.ones((8, 8, 8), np.uint8), (1.0,) * 3))

    def explode(block):
        raise RuntimeError("disk pulled")

    broken = da.zeros((8, 8, 8), np.uint8, chunks=4).map_blocks(explode, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="disk pulled"):
        omezarr.write(path, Volume(broken, (1.0,) * 3))
    assert omezarr.read(path).data.sum() == 512
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.zarr"]


def test_reads_ngff_05_zarr_v3_in_millimetres(tmp_path):
    path = tmp_path / "v3.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("s0", shape=(4, 6, 8), dtype="f4", chunks=(2, 6, 8))[:] = 1.5
    axes = [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": axes, "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.02, 0.01, 0.01]},
            {"type": "translation", "translation": [1.0, 0.0, 0.0]}]}]}]}
    assert omezarr.can_read(path)
    back = omezarr.read(path)
    assert back.spacing_um == pytest.approx((20.0, 10.0, 10.0))
    assert back.origin_um == pytest.approx((1000.0, 0.0, 0.0))
    assert back.metadata["ngff_version"] == "0.5" and back.data.shape == (4, 6, 8)


def test_space_axes_without_a_unit_are_uncalibrated(tmp_path):
    """NGFF's unit is optional: a scale without one is no length, so the image opens in
    pixels and says its spacing was assumed, instead of claiming micrometres."""
    path = tmp_path / "plain.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(3, 4, 5), dtype="u1", chunks=(3, 4, 5))[:] = 7
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "z", "type": "space"}, {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space"}], "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [2.0, 1.0, 1.0]}]}]}]
    back = omezarr.read(path)
    assert back.spacing_um == pytest.approx((2.0, 1.0, 1.0))
    assert back.metadata["spacing_known"] is False and "uncalibrated" not in back.metadata
    assert set(back.metadata["spacing_source"]) == {"z", "x"}
    axes = group.attrs["multiscales"][0]["axes"]
    for axis in axes:
        axis.pop("unit", None)
    group.attrs["multiscales"] = [{**group.attrs["multiscales"][0], "axes": axes}]
    assert omezarr.read(path).metadata["uncalibrated"]
    # our own files state micrometres
    omezarr.write(tmp_path / "ours.zarr", Volume(np.ones((3, 4, 5), np.uint8), (2.0, 1.0, 1.0)))
    ours = omezarr.read(tmp_path / "ours.zarr")
    assert ours.metadata.get("spacing_known", True) and not ours.metadata.get("uncalibrated")


def test_channels_are_named_for_other_viewers_and_read_from_theirs(tmp_path):
    """NGFF's omero list carries channel names, colours and windows: written for other
    OME-Zarr viewers, and read from a file another program wrote (no payload of ours),
    whose channel axis then splits into layers."""
    from napari_mrmicro._reader import read_layers

    channels = [{"name": "DAPI", "color": "#0000ff", "contrast_limits": [0.0, 200.0]},
                {"name": "488 TIRF", "color": "#00ff00"}]
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    omezarr.write(tmp_path / "ours.zarr", Volume(data, (1.0, 0.5, 0.5), {"channels": channels},
                                                 axis_labels=("c", "z", "y", "x"),
                                                 channel_axis=0))
    attrs = json.loads((tmp_path / "ours.zarr" / ".zattrs").read_text())
    assert attrs["omero"]["channels"] == [
        {"active": True, "color": "0000FF", "label": "DAPI",
         "window": {"start": 0.0, "end": 200.0, "min": 0.0, "max": 200.0}},
        {"active": True, "color": "00FF00", "label": "488 TIRF"}]
    assert omezarr.read(tmp_path / "ours.zarr").metadata["channels"] == channels
    # the same file as another program writes it: no napari-mrmicro payload
    del attrs["napari-mrmicro"]
    (tmp_path / "ours.zarr" / ".zattrs").write_text(json.dumps(attrs))
    theirs = omezarr.read(tmp_path / "ours.zarr")
    assert theirs.channel_axis == 0 and theirs.metadata["channels"] == channels
    (_, kwargs, _), = read_layers(str(tmp_path / "ours.zarr"))  # napari splits the axis
    assert kwargs["channel_axis"] == 0 and kwargs["name"] == ["DAPI", "488 TIRF"]


def test_sniff_and_bad_input_name_the_folder(tmp_path):
    assert not omezarr.can_read(tmp_path)                       # a plain folder
    (tmp_path / "file.zarr").write_text("not a folder")
    assert not omezarr.can_read(tmp_path / "file.zarr")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w", zarr_format=2).attrs["x"] = 1
    assert not omezarr.can_read(plain)                          # zarr, but no multiscales
    with pytest.raises(FormatError, match="plain.zarr.*multiscales"):
        omezarr.read(plain)

    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / ".zattrs").write_text("{not json")
    assert not omezarr.can_read(broken)
    with pytest.raises(FormatError, match="broken.zarr.*not valid JSON"):
        omezarr.read(broken)

    path = tmp_path / "seconds.zarr"
    omezarr.write(path, Volume(np.ones((4, 4, 4), np.uint8), (1.0,) * 3))
    attrs = _zattrs(path)
    attrs["multiscales"][0]["axes"][0]["unit"] = "second"
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="seconds.zarr.*'second'.*not a length"):
        omezarr.read(path)

    attrs["multiscales"][0]["axes"][0]["unit"] = "micrometer"
    attrs["multiscales"][0]["datasets"][0]["path"] = "missing"
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(FormatError, match="seconds.zarr.*missing"):
        omezarr.read(path)
    with pytest.raises(FormatError, match="out.tif.*\\*.zarr"):
        omezarr.write(tmp_path / "out.tif", Volume(np.ones((2, 2, 2)), (1, 1, 1)))
