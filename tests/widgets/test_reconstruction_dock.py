"""The "MR Reconstruction" dock in a real viewer."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, make_specimen, reconstruct, simulate
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.reconstruction import ReconstructionWidget

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def cochlea_kspace():
    acq = Acquisition(matrix=(32, 64, 64), fov_um=(3200.0, 6400.0, 6400.0), b0_tesla=9.4,
                      te_ms=(8.0,), tr_ms=500.0, bandwidth_hz=50_000.0)
    specimen = make_specimen("cochlea", (64, 128, 128), 50.0)
    return simulate(specimen, acq, seed=1)


def finish(qtbot, worker, viewer, count):
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: len(viewer.layers) >= count, timeout=10_000)


def test_reconstruct_zero_fill_and_cs(make_napari_viewer, qtbot, cochlea_kspace):
    viewer = make_napari_viewer(show=True)
    add_layers(viewer, kspace_layers(cochlea_kspace, "cochlea", truth=False))
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock, name="MR Reconstruction")
    assert dock.layer.value.name == "cochlea k-space"

    dock.window.value = "hann"
    finish(qtbot, dock.run(), viewer, 5)
    magnitude = viewer.layers["cochlea recon magnitude"]
    expected = np.abs(reconstruct(cochlea_kspace, window="hann"))[0]
    np.testing.assert_allclose(magnitude.data, expected, rtol=1e-4, atol=1e-6)
    assert tuple(magnitude.scale) == pytest.approx((100.0, 100.0, 100.0))
    assert tuple(magnitude.translate) == pytest.approx(tuple(viewer.layers["cochlea k-space"]
                                                             .translate))
    assert magnitude.metadata["mrmicro"]["snr"]["snr"] > 5
    assert float(dock.result.value) == pytest.approx(magnitude.metadata["mrmicro"]["snr"]["snr"],
                                                     abs=0.051)  # shown to 0.1

    dock.window.value, dock.zero_fill.value = "none", 2.0
    finish(qtbot, dock.run(), viewer, 7)
    filled = viewer.layers[-2]
    assert filled.data.shape == (64, 128, 128)
    assert tuple(filled.scale) == pytest.approx((50.0, 50.0, 50.0))

    dock.zero_fill.value = 1.0
    dock.cs_method.value, dock.acceleration.value, dock.iterations.value = "tv", 4.0, 20
    finish(qtbot, dock.run(), viewer, 9)
    cs = viewer.layers[-2]
    assert cs.metadata["mrmicro"]["recon"]["cs"]["method"] == "tv"
    truth = np.abs(reconstruct(cochlea_kspace))[0]
    nrmse = np.linalg.norm(cs.data - truth) / np.linalg.norm(truth)
    assert nrmse < 0.2
    viewer.dims.set_point(0, 16 * 100.0)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    import imageio.v3 as iio

    iio.imwrite("/tmp/reconstruction_dock.png", shot)


def test_layer_without_kspace_is_refused(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4, 4)), metadata={"mrmicro": {}})
    dock = ReconstructionWidget(viewer)
    assert dock.layer.choices == ()
    assert dock.run() is None
