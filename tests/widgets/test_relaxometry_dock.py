"""The "Relaxometry" dock in a real viewer, on a simulated multi-echo gradient-echo scan."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, make_specimen, simulate
from napari_mrmicro.core.relaxometry import fit_relaxation
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.relaxometry import RelaxometryWidget

from dock_checks import screenshot

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
    dock.method.value, dock.s0.value = "arlo", True
    worker = dock.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "T2* (ms, arlo)" in viewer.layers, timeout=10_000)
    layer = viewer.layers["T2* (ms, arlo)"]
    source = viewer.layers["cochlea magnitude"]
    assert tuple(layer.scale) == tuple(source.scale)[1:] and layer.ndim == 3
    assert layer.metadata["mrmicro"]["value_unit"] == "ms"
    assert layer.metadata["mrmicro"]["relaxometry"]["quantity"] == "T2*"
    # the dock only plumbs: its map is the core fit's on the same echoes
    expected = fit_relaxation(np.asarray(source.data), (3, 6, 9, 12, 15), "arlo")
    np.testing.assert_allclose(layer.data, expected.t2_ms(), rtol=1e-6)
    assert expected.fitted.sum() > 1000 and "S0 (arlo)" in viewer.layers
    low, high = layer.contrast_limits
    assert 0 < low < high and "ms (1st-99th percentile)" in dock.status.value
    viewer.dims.set_point(0, 20 * 100.0)
    screenshot(viewer, "relaxometry")


def test_cancel_adds_nothing(make_napari_viewer, qtbot, scan):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(scan, "cochlea"))
    count = len(viewer.layers)
    dock = RelaxometryWidget(viewer)
    worker = dock.run()
    dock.cancel()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert len(viewer.layers) == count and dock.status.value == "cancelled"
    assert dock.run_button.enabled


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
