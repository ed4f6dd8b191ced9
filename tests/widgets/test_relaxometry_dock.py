"""The "Relaxometry" dock in a real viewer, on a simulated multi-echo gradient-echo scan."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, make_specimen, simulate
from napari_mrmicro.core.relaxometry import fit_relaxation
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.relaxometry import RelaxometryWidget

from dock_checks import cancel_within_a_second, screenshot

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def scan():
    acq = Acquisition(matrix=(40, 40, 40), fov_um=(4000.0,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(3.0, 6.0, 9.0, 12.0, 15.0),
                      tr_ms=60.0, flip_deg=20.0, bandwidth_hz=50_000.0)
    return simulate(make_specimen("cochlea", (80, 80, 80), 50.0, surrounding="fluid"), acq,
                    seed=4)


def test_relaxometry_dock_reads_the_echo_times_fits_and_shows_t2star(
        make_napari_viewer, qtbot, logged, scan):
    viewer = make_napari_viewer(show=True)
    add_layers(viewer, kspace_layers(scan, "cochlea"))
    dock = RelaxometryWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Relaxometry")
    assert dock.magnitude.value.name == "cochlea magnitude"  # not the phase or k-space
    assert dock.te.value == "3, 6, 9, 12, 15" and dock.quantity.value == "T2* (ms)"
    dock.method.value, dock.s0.value, dock.skip.value = "arlo", True, 1
    worker = dock.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "T2* (ms, arlo)" in viewer.layers, timeout=10_000)
    layer = viewer.layers["T2* (ms, arlo)"]
    source = viewer.layers["cochlea magnitude"]
    assert tuple(layer.scale) == tuple(source.scale)[1:] and layer.ndim == 3
    assert layer.metadata["mrmicro"]["value_unit"] == "ms"
    assert layer.metadata["mrmicro"]["relaxometry"]["quantity"] == "T2*"
    assert layer.metadata["mrmicro"]["relaxometry"]["skip_echoes"] == 1
    # the dock only plumbs: its map is the core fit's on the same echoes
    expected = fit_relaxation(np.asarray(source.data), (3, 6, 9, 12, 15), "arlo",
                              skip_echoes=1)
    np.testing.assert_allclose(layer.data, expected.t2_ms(), rtol=1e-6)
    assert expected.fitted.sum() > 1000 and "S0 (arlo)" in viewer.layers
    low, high = layer.contrast_limits  # from 0 (not fitted): the shortest T2* not black
    assert low == 0 < np.percentile(expected.t2_ms()[expected.fitted], 98) < high
    assert "ms (1st-99th percentile)" in dock.status.value
    viewer.dims.set_point(0, 20 * 100.0)
    screenshot(viewer, "relaxometry")
    # the map is no magnitude to the other docks, but an intensity to measure per label
    from napari_mrmicro.widgets.morphometry import MorphometryWidget
    from napari_mrmicro.widgets.qsm import QSMWidget

    assert layer not in QSMWidget(viewer).magnitude.choices
    morphometry = MorphometryWidget(viewer)
    morphometry.labels_layer.value = viewer.layers["cochlea truth labels"]
    morphometry.image_layer.value = layer
    with qtbot.waitSignal(morphometry.measure().finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: morphometry.results is not None, timeout=10_000)
    headers = [morphometry.table.horizontalHeaderItem(i).text()
               for i in range(morphometry.table.columnCount())]
    assert "mean intensity (ms)" in headers and "std intensity (ms)" in headers
    # over the fitted voxels of each tissue only (0 marks the others)
    truth = np.asarray(viewer.layers["cochlea truth labels"].data)
    row = list(morphometry.results["label"]).index(1)
    fitted = (truth == 1) & expected.fitted
    assert morphometry.results["intensity_voxels"][row] == fitted.sum()
    assert morphometry.results["mean_intensity_ms"][row] == pytest.approx(
        expected.t2_ms()[fitted].mean(), rel=1e-6)


def test_cancel_acts_within_a_second_and_adds_nothing(make_napari_viewer, qtbot, logged):
    rng = np.random.default_rng(0)
    te = np.arange(1, 9) * 4.0
    t2 = rng.uniform(10, 40, (96, 128, 128)).astype(np.float32)
    s0 = np.zeros(t2.shape, np.float32)
    s0[8:-8, 16:-16, 16:-16] = 100  # a specimen with noise around it
    echoes = (s0 * np.exp(-te[:, None, None, None] / t2)
              + rng.normal(0, 1, (8,) + t2.shape)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(np.abs(echoes), name="mse", metadata={"mrmicro": {"acquisition": {
        "te_ms": list(te), "sequence": "spin_echo"}}})
    dock = RelaxometryWidget(viewer)
    cancel_within_a_second(qtbot, dock, dock.run())  # nonlinear, 1.6 M voxels: seconds
    assert len(viewer.layers) == 1 and dock.status.value == "cancelled"
    assert dock.run_button.enabled and "Relaxometry: cancelled" in logged.messages


def test_wrong_echo_times_or_no_echoes_are_reported(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((8, 8, 8), np.float32), name="one volume")
    dock = RelaxometryWidget(viewer)
    assert dock.magnitude.value is None  # one volume has no decay to fit
    with pytest.raises(ValueError, match="several echoes"):
        dock.request()
    viewer.add_image(np.ones((3, 8, 8, 8), np.float32), name="echoes")
    dock.magnitude.value = viewer.layers["echoes"]
    dock.te.value = "5, 10"
    with pytest.raises(ValueError, match="TE"):
        dock.request()
    assert dock.run() is None and len(viewer.layers) == 2
