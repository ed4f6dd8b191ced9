"""The plugin inside a real napari viewer (under Xvfb): open, sample, save."""

import numpy as np
import pytest
import tifffile

from napari_mrmicro.io import Volume, read_volume, write_volume

pytestmark = pytest.mark.gui
UM = "micrometer"


@pytest.fixture
def civm_scan(tmp_path):
    data = (np.arange(6 * 10 * 12, dtype=np.uint16).reshape(6, 10, 12) * 7)
    meta = {"acquisition": {"te_ms": (4.0,), "tr_ms": 100.0, "b0_tesla": 9.4}}
    path = tmp_path / "N00001images" / "N00001.headfile"
    path.parent.mkdir()
    write_volume(path, Volume(data, (50.0, 25.0, 25.0), meta))
    return path, data


def test_open_civm_gives_physical_layer(make_napari_viewer, civm_scan):
    path, data = civm_scan
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-mrmicro")
    (layer,) = layers
    np.testing.assert_array_equal(np.asarray(layer.data), data)
    assert tuple(layer.scale) == pytest.approx((50.0, 25.0, 25.0))
    assert [str(u) for u in layer.units] == [UM] * 3
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    acq = layer.metadata["mrmicro"]["acquisition"]
    assert acq["tr_ms"] == pytest.approx(100.0) and acq["b0_tesla"] == pytest.approx(9.4)
    # The folder opens too.
    (again,) = viewer.open(path.parent, plugin="napari-mrmicro")
    assert tuple(again.scale) == pytest.approx((50.0, 25.0, 25.0))


def test_optical_nm_and_mrm_um_share_physical_space(make_napari_viewer, tmp_path, civm_scan):
    optical = tmp_path / "section.tif"
    tifffile.imwrite(optical, np.ones((4, 40, 30), np.uint16), imagej=True,
                     resolution=(1 / 325.0, 1 / 325.0),
                     metadata={"spacing": 2000.0, "unit": "nm", "axes": "ZYX"})
    viewer = make_napari_viewer()
    (layer,) = viewer.open(optical, plugin="napari-mrmicro")
    assert tuple(layer.scale) == pytest.approx((2.0, 0.325, 0.325))
    assert [str(u) for u in layer.units] == [UM] * 3


def test_sample_molar(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-mrmicro", "molar")
    image, labels = layers
    assert image.data.shape == (256, 128, 128) and image.data.dtype == np.float32
    assert tuple(image.scale) == pytest.approx((97.65625,) * 3)
    assert [str(u) for u in image.units] == [UM] * 3
    acq = image.metadata["mrmicro"]["acquisition"]
    assert acq["b0_tesla"] == 2.35 and acq["te_ms"] == [2.4] and acq["tr_ms"] == 600.0
    # Only the pulp gives signal: enamel and dentin are as dark as air.
    pulp = image.data[labels.data == 3].mean()
    for hard in (1, 2):
        assert image.data[labels.data == hard].mean() < 0.2 * pulp


def test_save_layers_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).random((5, 8, 9)).astype(np.float32)
    viewer.add_image(data, scale=(0.05, 0.02, 0.02), units="mm", name="mrm")
    labels = (data > 0.5).astype(np.uint8)
    viewer.add_labels(labels, scale=(50, 20, 20), units="µm", name="seg")
    out = tmp_path / "mrm.tif"
    viewer.layers["mrm"].save(str(out), plugin="napari-mrmicro")
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing_um == pytest.approx((50.0, 20.0, 20.0))
    seg = tmp_path / "seg.tif"
    viewer.layers["seg"].save(str(seg), plugin="napari-mrmicro")
    back = read_volume(seg)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing_um == pytest.approx((50.0, 20.0, 20.0))
    # Float data are refused as uint16 CIVM slices with the reason (napari would hide a
    # ValueError), and nothing is left behind.
    civm = tmp_path / "civm" / "mrm.headfile"
    civm.parent.mkdir()
    with pytest.raises(OSError, match="f32"):
        viewer.layers["mrm"].save(str(civm), plugin="napari-mrmicro")
    assert not list(civm.parent.iterdir())


def test_screenshot_shows_the_sample(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-mrmicro", "molar")
    viewer.dims.set_point(0, 56 * 97.65625)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot[..., :3].std() > 5


def test_broken_file_reports_file_and_problem(make_napari_viewer, civm_scan):
    path, _ = civm_scan
    broken = sorted(path.parent.glob("*.raw"))[2]
    broken.write_bytes(broken.read_bytes()[:-10])
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:
        viewer.open(path, plugin="napari-mrmicro")
    text = "".join(str(e) for e in (info.value, info.value.__cause__) if e)
    assert broken.name in text
    assert len(viewer.layers) == 0


def test_reader_declines_what_it_cannot_read(tmp_path):
    from napari_mrmicro._reader import get_reader

    other = tmp_path / "notes.txt"
    other.write_text("not an image")
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path)) is None
