"""The "QSM" dock in a real viewer, on a simulated multi-echo scan."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, make_specimen, simulate
from napari_mrmicro.core.qsm import qsm_stages
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.qsm import QSMWidget

pytestmark = pytest.mark.gui


def test_qsm_dock_reads_metadata_runs_and_shows_chi(make_napari_viewer, qtbot):
    acq = Acquisition(matrix=(48, 48, 48), fov_um=(4800.0,) * 3, b0_tesla=9.4,
                      sequence="gradient_echo", te_ms=(4.0, 8.0, 12.0), tr_ms=60.0,
                      flip_deg=20.0, bandwidth_hz=50_000.0, b0_direction=(0.0, 0.6, 0.8))
    kspace = simulate(make_specimen("cochlea", (96, 96, 96), 50.0, surrounding="fluid"), acq,
                      seed=2)
    viewer = make_napari_viewer(show=True)
    add_layers(viewer, kspace_layers(kspace, "cochlea"))
    dock = QSMWidget(viewer)
    viewer.window.add_dock_widget(dock, name="QSM")
    assert dock.magnitude.value.name == "cochlea magnitude"
    assert dock.phase.value.name == "cochlea phase (rad)"
    assert dock.te.value == "4, 8, 12" and dock.b0.value == pytest.approx(9.4)
    assert dock.direction.value == "0, 0.6, 0.8"
    assert dock.spacing.value == "100 × 100 × 100"

    dock.method.value, dock.iterations.value = "tv", 60
    dock.intermediates.value = True
    worker = dock.run()
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    qtbot.waitUntil(lambda: "χ (ppm, tv)" in viewer.layers, timeout=10_000)
    chi = viewer.layers["χ (ppm, tv)"]
    assert tuple(chi.scale) == pytest.approx((100.0, 100.0, 100.0))
    low, high = chi.contrast_limits
    assert low == pytest.approx(-high) and high > 0
    assert chi.colormap.name == "PiYG"
    assert {"total field (ppm)", "local field (ppm)", "QSM mask"} <= {l.name for l in viewer.layers}
    # the dock only plumbs: its χ is the core pipeline's on the same inputs
    expected = qsm_stages(**dock.request())
    np.testing.assert_allclose(chi.data, expected.chi_ppm, atol=1e-5)
    np.testing.assert_array_equal(viewer.layers["QSM mask"].data, expected.local_mask)
    viewer.dims.set_point(0, 24 * 100.0)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    import imageio.v3 as iio

    iio.imwrite("/tmp/qsm_dock.png", shot)


def test_bad_te_is_reported(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((2, 8, 8, 8)), name="x magnitude")
    viewer.add_image(np.zeros((2, 8, 8, 8)), name="x phase")
    dock = QSMWidget(viewer)
    dock.te.value = "5"
    with pytest.raises(ValueError, match="TE"):
        dock.request()
    assert dock.run() is None
