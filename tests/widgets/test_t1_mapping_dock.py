"""The "T1 mapping" dock in a real viewer: VFA scans as separate layers, an inversion
recovery as one series layer."""

import numpy as np
import pytest

from napari_mrmicro.core.t1_mapping import fit_t1
from napari_mrmicro.widgets.t1_mapping import T1MappingWidget

from dock_checks import cancel_within_a_second, screenshot, untipped, wait_for_job

pytestmark = pytest.mark.gui

ANGLES = (15.0, 3.0, 30.0, 8.0)  # as the scans were added, not sorted
TR = 20.0


def specimen(shape=(24, 40, 48)):
    """A block with T1 500 ms (left) and 1500 ms (right) in a noise background."""
    m0 = np.zeros(shape)
    m0[4:-4, 6:-6, 8:-8] = 3000.0
    t1 = np.where(np.arange(shape[2]) < shape[2] // 2, 500.0, 1500.0) * np.ones(shape)
    return m0, t1


def rician(clean, seed):
    rng = np.random.default_rng(seed)
    return np.abs(clean + rng.normal(0, 2, clean.shape)
                  + 1j * rng.normal(0, 2, clean.shape)).astype(np.float32)


def add_vfa_scans(viewer):
    m0, t1 = specimen()
    for angle in ANGLES:
        a, e = np.deg2rad(angle), np.exp(-TR / t1)
        image = rician(m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e), int(angle))
        viewer.add_image(image, name=f"FLASH {angle:g}°", scale=(100.0, 80.0, 80.0),
                         units=("µm",) * 3, metadata={"mrmicro": {"acquisition": {
                             "flip_deg": angle, "tr_ms": TR, "sequence": "gradient_echo"}}})
    return m0, t1


def test_vfa_layers_give_a_t1_map_with_their_flip_angles(make_napari_viewer, qtbot, logged):
    viewer = make_napari_viewer(show=True)
    m0, t1 = add_vfa_scans(viewer)
    dock = T1MappingWidget(viewer)
    viewer.window.add_dock_widget(dock, name="T1 mapping")
    assert not untipped(dock)
    dock.experiment.value = "inversion_recovery"
    dock.images.value = [viewer.layers[f"FLASH {a:g}°"] for a in ANGLES]
    assert dock.experiment.value == "vfa"  # the scans differ in flip angle
    assert dock.values.value == "15, 3, 30, 8" and dock.tr.value == "20"
    dock.m0.value = dock.sd.value = True
    wait_for_job(qtbot, dock, dock.run())
    assert "T1 (ms, variable flip angle (VFA))" in viewer.layers
    layer = viewer.layers["T1 (ms, variable flip angle (VFA))"]
    assert tuple(layer.scale) == (100.0, 80.0, 80.0)
    record = layer.metadata["mrmicro"]["relaxometry"]
    assert record["flip_deg"] == [3.0, 8.0, 15.0, 30.0] and record["tr_ms"] == TR
    assert record["b1"] == "nominal flip angles (no B1 map)"
    # the dock only plumbs: its map is the core fit of the sorted stack
    stack = np.stack([np.asarray(viewer.layers[f"FLASH {a:g}°"].data)
                      for a in sorted(ANGLES)])
    expected = fit_t1(stack, "vfa", flip_deg=sorted(ANGLES), tr_ms=TR)
    np.testing.assert_allclose(layer.data, expected.t1_ms(), rtol=1e-6)
    for truth in (500.0, 1500.0):
        part = (t1 == truth) & (m0 > 0)
        assert np.median(np.asarray(layer.data)[part]) == pytest.approx(truth, rel=0.03)
    assert "T1 standard error (ms)" in viewer.layers and "M0 (variable flip angle (VFA))" \
        in viewer.layers
    assert "ms (1st-99th percentile)" in dock.status.value and not logged.errors
    assert "at TR 20 ms the two most precise angles are" in dock.status.value
    viewer.dims.set_point(0, 12 * 100.0)
    screenshot(viewer, "t1_mapping")


def test_an_inversion_recovery_series_layer(make_napari_viewer, qtbot, logged):
    viewer = make_napari_viewer()
    m0, t1 = specimen((12, 24, 32))
    ti = np.array([25.0, 150.0, 400.0, 1000.0, 2500.0, 5000.0])
    series = rician(np.abs(m0 / 3 * (1 - 2 * np.exp(-ti[:, None, None, None] / t1))), 1)
    viewer.add_image(series, name="RARE IR", metadata={"mrmicro": {"acquisition": {
        "ti_ms": tuple(ti), "tr_ms": 10000.0}}})
    dock = T1MappingWidget(viewer)
    dock.images.value = [viewer.layers["RARE IR"]]
    assert dock.experiment.value == "inversion_recovery"  # the series states its TIs
    assert dock.values.value == "25, 150, 400, 1000, 2500, 5000" and not dock.tr.visible
    wait_for_job(qtbot, dock, dock.run())
    assert len(viewer.layers) == 2
    found = np.asarray(viewer.layers[-1].data)
    for truth in (500.0, 1500.0):
        part = (t1 == truth) & (m0 > 0)
        assert np.median(found[part]) == pytest.approx(truth, rel=0.02)
    assert viewer.layers[-1].metadata["mrmicro"]["relaxometry"]["median_inversion"] == \
        pytest.approx(2.0, rel=0.02)


def test_wrong_choices_are_named(make_napari_viewer):
    viewer = make_napari_viewer()
    add_vfa_scans(viewer)
    dock = T1MappingWidget(viewer)
    with pytest.raises(ValueError, match="choose the images"):
        dock.request()
    dock.images.value = [viewer.layers["FLASH 3°"]]
    with pytest.raises(ValueError, match="is one volume: choose one per flip_deg"):
        dock.request()
    dock.images.value = [viewer.layers["FLASH 3°"], viewer.layers["FLASH 8°"]]
    dock.values.value = "3, 8, 15"
    with pytest.raises(ValueError, match=r"flip angles \(°\): expected 2 number"):
        dock.request()
    viewer.add_image(np.ones((4, 4, 4), np.float32), name="B1",
                     metadata={"mrmicro": {"acquisition": {"flip_deg": 60.0}}})
    dock.values.value, dock.b1.value = "3, 8", viewer.layers["B1"]
    with pytest.raises(ValueError, match="B1 map .* is not on the images' grid"):
        dock.request()


def test_cancel_acts_within_a_second_and_adds_nothing(make_napari_viewer, qtbot, logged):
    viewer = make_napari_viewer()
    m0, t1 = specimen((96, 128, 128))
    ti = np.array([25.0, 150.0, 400.0, 1000.0, 2500.0, 5000.0])
    viewer.add_image(rician(np.abs(m0 * (1 - 2 * np.exp(-ti[:, None, None, None] / t1))), 2),
                     name="IR", metadata={"mrmicro": {"acquisition": {"ti_ms": tuple(ti)}}})
    dock = T1MappingWidget(viewer)
    dock.experiment.value = "inversion_recovery"
    dock.images.value = [viewer.layers["IR"]]
    cancel_within_a_second(qtbot, dock, dock.run())
    assert len(viewer.layers) == 1 and dock.status.value == "cancelled"
    assert dock.run_button.enabled and "T1 mapping: cancelled" in logged.messages
