"""Every reader through napari itself: ``viewer.open(path, plugin="napari-mrmicro")``."""

import numpy as np
import pytest
import tifffile
from test_bruker import volume_visu, write_scan
from test_nih_tiff import nih_header, write_nih

from napari_mrmicro.io import Volume, write_volume

pytestmark = pytest.mark.gui
UM = "micrometer"


def _open_one(viewer, path):
    layers = viewer.open(path, plugin="napari-mrmicro")
    assert all(str(u) in (UM, "pixel") for layer in layers for u in layer.units)
    return layers


def test_nih_image_tiff(make_napari_viewer, tmp_path):
    # version 160, 25 pixels per mm (unit code 7 = mm), 3 slices 0.2 mm apart
    blob = nih_header(version=160, xscale=25.0, units=7, nslices=3, spacing=0.2)
    path = write_nih(tmp_path / "tooth.tif", np.arange(3 * 4 * 5, dtype=np.uint8)
                     .reshape(3, 4, 5), blob)
    (layer,) = _open_one(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((200.0, 40.0, 40.0))


def test_nifti(make_napari_viewer, tmp_path):
    pytest.importorskip("nibabel")
    path = tmp_path / "scan.nii.gz"
    write_volume(path, Volume(np.ones((4, 5, 6), np.float32), (30.0, 20.0, 10.0), {},
                              origin_um=(100.0, 0.0, -50.0)))
    (layer,) = _open_one(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((30.0, 20.0, 10.0))
    assert tuple(layer.translate) == pytest.approx((100.0, 0.0, -50.0))


def test_a_saved_t2_map_opens_in_ms_as_a_relaxation_map(make_napari_viewer, tmp_path):
    """A T2 map written by the relaxometry step keeps its unit through a file: named and
    coloured as a time map, with the role the docks measure it by."""
    from napari_mrmicro.widgets._dock import layer_role

    t2 = np.zeros((4, 5, 6), np.float32)
    t2[1:3, 1:4, 1:5] = np.linspace(20, 60, 24).reshape(2, 3, 4)  # 0: not fitted
    path = tmp_path / "t2.tif"
    write_volume(path, Volume(t2, (30.0, 20.0, 10.0), {"value_unit": "ms", "relaxometry": {
        "quantity": "T2", "not_fitted_value": 0.0}}, name="ear T2"))
    (layer,) = _open_one(make_napari_viewer(), path)
    assert layer.name == "ear T2 (ms)" and layer.colormap.name == "magma"
    assert layer.contrast_limits[0] == 0 and 58 < layer.contrast_limits[1] < 60
    assert layer.metadata["mrmicro"]["value_unit"] == "ms"
    assert layer_role(layer) == "relaxation map"


def test_bruker_complex_multislice_gives_magnitude_and_phase(make_napari_viewer, tmp_path):
    ns, ny, nx = 3, 2, 4
    truth = np.full((ns, ny, nx), 3 + 4j)
    raw = np.stack([truth.real, truth.imag], axis=1).astype("<i2")
    visu = volume_visu(
        (nx, ny), (0.8, 0.4), frames=2 * ns, VisuCoreFrameType="COMPLEX_IMAGE",
        VisuCoreFrameThickness=[0.2],
        VisuFGOrderDesc=[[2, "FG_COMPLEX", "", 0, 0], [ns, "FG_SLICE", "", 0, 0]])
    scan = write_scan(tmp_path, raw, visu)
    magnitude, phase = _open_one(make_napari_viewer(), scan)
    np.testing.assert_allclose(np.asarray(magnitude.data), 5.0)
    np.testing.assert_allclose(np.asarray(phase.data), np.arctan2(4, 3), rtol=1e-6)
    assert tuple(magnitude.scale) == pytest.approx((200.0, 200.0, 200.0))
    assert magnitude.metadata["mrmicro"]["format"] == "bruker"


def test_ome_tiff_channels_become_layers(make_napari_viewer, tmp_path):
    path = tmp_path / "fluo.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 325.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 325.0, "PhysicalSizeYUnit": "nm",
                               "PhysicalSizeZ": 1.5, "PhysicalSizeZUnit": "µm",
                               "Channel": {"Name": ["DAPI", "NV centres"]}})
    layers = _open_one(make_napari_viewer(), path)
    assert [layer.name for layer in layers] == ["DAPI", "NV centres"]
    assert tuple(layers[0].scale) == pytest.approx((1.5, 0.325, 0.325))


def test_bruker_raw_fid_opens_as_a_kspace_layer(make_napari_viewer, tmp_path):
    from test_raw_bruker import centric, phantom_kspace, write_scan

    kspace, _ = phantom_kspace((1, 1, 6, 8, 10), axes=(-3, -2, -1))
    scan = tmp_path / "7"
    write_scan(scan, kspace, list(centric(8)), list(centric(6)))
    (layer,) = _open_one(make_napari_viewer(), scan)
    assert layer.name.endswith("k-space")
    complex_k = layer.metadata["mrmicro"]["kspace"]
    np.testing.assert_allclose(complex_k.reshape(kspace.shape), kspace)
    np.testing.assert_allclose(layer.data, np.log1p(np.abs(complex_k)), rtol=1e-5)
    assert layer.metadata["mrmicro"]["acquisition"]["matrix"]


def test_ome_zarr_opens_and_big_ones_are_multiscale(make_napari_viewer, tmp_path):
    from napari_mrmicro._layers import volume_to_layer_data
    from napari_mrmicro.io import read_volume
    from napari_mrmicro.widgets._results import add_layers

    path = tmp_path / "big.zarr"
    data = np.arange(64 * 64 * 64, dtype=np.uint16).reshape(64, 64, 64)
    write_volume(path, Volume(data, (20.0, 10.0, 10.0), {}), levels=3)
    viewer = make_napari_viewer()
    (small,) = _open_one(viewer, path)  # small: read into memory
    np.testing.assert_array_equal(small.data, data)
    assert tuple(small.scale) == pytest.approx((20.0, 10.0, 10.0))
    # above the lazy threshold the reader hands napari the pyramid, nothing loaded
    (layer,) = add_layers(viewer, volume_to_layer_data(read_volume(path, lazy=True)))
    assert layer.multiscale and len(layer.data) == 3
    assert tuple(layer.scale) == pytest.approx((20.0, 10.0, 10.0))
    np.testing.assert_array_equal(np.asarray(layer.data[0]), data)
    assert "pyramid" not in layer.metadata["mrmicro"]
    saved = tmp_path / "saved.zarr"
    small.save(str(saved), plugin="napari-mrmicro")
    np.testing.assert_array_equal(read_volume(saved).data, data)
