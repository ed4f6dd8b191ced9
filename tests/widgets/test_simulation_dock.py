"""The "MR Simulation" dock in a real viewer: live planner figures, presets, a run."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition
from napari_mrmicro.widgets.simulation import PRESETS, SimulationWidget, result_name

from dock_checks import Notices, screenshot, untipped

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    widget = SimulationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="MR Simulation")
    return viewer, widget


def test_presets_and_live_summary(dock):
    viewer, widget = dock
    widget.preset.value = "2.35 T dental (100 µm, 3D SE)"
    s = widget.last_summary
    assert s["voxel_um"] == pytest.approx((97.66, 97.66, 97.66), rel=1e-3)
    assert s["scan_time"] == "2:44" and s["snr_relative"] == pytest.approx(1.0)
    assert "2:44" in widget.summary.value and "MHz" in widget.summary.value
    widget.averages.value = 4  # 4 averages buy 2× SNR ...
    assert widget.last_summary["snr_relative"] == pytest.approx(2.0)
    widget.averages.value = 1
    # ... halving the voxel at the same FOV and total bandwidth: 8× less signal per
    # voxel, 8× the samples: SNR / (8/√8)
    for w, n in zip(widget.matrix, (512, 256, 256)):
        w.value = n
    assert widget.last_summary["snr_relative"] == pytest.approx(np.sqrt(8) / 8)
    widget.preset.value = "9.4 T temporal bone (25 µm, overnight)"
    assert widget.last_summary["scan_time"].startswith("12:")
    widget.max_gradient.value = 50.0  # the readout needs ~184 mT/m
    assert any("exceeds the system maximum" in w for w in widget.last_summary["warnings"])
    assert "exceeds" in widget.summary.value
    widget.te.value = "abc"
    assert "TE" in widget.summary.value


def _simulate_quick_look(widget, qtbot, **fields):
    """The cochlea quick-look preset at 32³ in a 6.4 mm cube (and ``fields``), run."""
    widget.preset.value = "9.4 T cochlea quick look (50 µm, 3D GRE)"
    for name, value in fields.items():
        getattr(widget, name).value = value
    for w, n in zip(widget.matrix, (32, 32, 32)):
        w.value = n
    for w in widget.fov:
        w.value = 6.4
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass


def test_simulate_adds_physical_layers(dock, qtbot, logged):
    viewer, widget = dock
    _simulate_quick_look(widget, qtbot)
    qtbot.waitUntil(lambda: any("magnitude" in layer.name for layer in viewer.layers),
                    timeout=10_000)
    name = "cochlea 9.4 T GRE 200 µm 3 echoes"  # specimen, method and key settings
    assert name == result_name("cochlea", magnitude_acq := widget.acquisition())
    assert magnitude_acq.voxel_um == pytest.approx((200.0,) * 3)
    magnitude = viewer.layers[f"{name} magnitude"]
    assert magnitude.data.shape == (3, 32, 32, 32)  # echo axis first
    assert tuple(magnitude.scale) == pytest.approx((1, 200, 200, 200))
    assert [str(u) for u in magnitude.units][1:] == ["micrometer"] * 3
    acq = magnitude.metadata["mrmicro"]["acquisition"]
    assert acq["te_ms"] == [3.0, 6.0, 9.0] and acq["b0_tesla"] == 9.4
    kspace = viewer.layers[f"{name} k-space"]
    complex_k = kspace.metadata["mrmicro"]["kspace"]
    assert complex_k.dtype == np.complex64 and complex_k.shape == (3, 32, 32, 32)
    peak = np.unravel_index(np.argmax(np.abs(complex_k[0])), complex_k[0].shape)
    assert np.all(np.abs(np.array(peak) - 16) <= 1)  # DC at N//2 (field gradients move it)
    labels = viewer.layers[f"{name} truth labels"]
    assert labels.features["name"][0] == "medium" and len(labels.features) >= 3  # tissue names
    viewer.dims.set_point(1, 16 * 200)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    import imageio.v3 as iio

    iio.imwrite("/tmp/simulation_dock.png", shot)


def test_every_input_explained_and_defaults_restored(dock):
    viewer, widget = dock
    assert untipped(widget) == []
    assert "Hoult" in widget.b0.tooltip and "T" in widget.b0.tooltip
    defaults = widget.acquisition()
    widget.preset.value = "9.4 T microdiamonds, hyperpolarized 13C"
    widget.averages.value, widget.te.value = 64, "7"
    widget.effects["noise"].value = False
    restore = next(w for w in widget if getattr(w, "text", "") == "Restore defaults")
    restore.changed.emit(True)
    assert widget.acquisition() == defaults
    assert widget.preset.value == list(PRESETS)[0] and widget.effects["noise"].value


def test_planner_refuses_what_will_not_fit(dock, monkeypatch):
    viewer, widget = dock
    from napari_mrmicro.widgets import simulation

    assert "memory (simulation)" in widget.summary.value and widget.run_button.enabled
    assert "Reconstruction dock measures" in widget.snr_note.value
    acq = widget.acquisition()
    needed = widget.memory_needed(acq)
    # 512³ on a 2× finer specimen grid: the planner's figure is the core guard's
    big = Acquisition.from_dict({**acq.to_dict(), "matrix": (512, 512, 512)})
    assert widget.memory_needed(big) == pytest.approx(32 * needed)  # 32× the voxels
    monkeypatch.setattr(simulation, "available_memory_bytes", lambda: needed // 2)
    widget.averages.value = 2  # any change re-plans
    assert not widget.run_button.enabled
    assert "needs about" in widget.run_button.tooltip and "GiB" in widget.summary.value
    notices = Notices()
    assert widget.run() is None  # refused at once, with the reason
    notices.close()
    assert len(notices.errors) == 1 and "needs about" in notices.errors[0]
    monkeypatch.setattr(simulation, "available_memory_bytes", lambda: needed * 2)
    widget.averages.value = 1
    assert widget.run_button.enabled


def test_cancel_says_cancelled_and_adds_nothing(dock, qtbot, logged):
    viewer, widget = dock
    widget.preset.value = "9.4 T cochlea quick look (50 µm, 3D GRE)"
    worker = widget.run()
    qtbot.wait(200)
    assert widget.cancel_button.enabled and not widget.run_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=1_000):
        widget.cancel_button.changed.emit(True)
    assert "MR simulation: cancelled" in logged.messages
    assert len(viewer.layers) == 0 and widget.run_button.enabled
    screenshot(viewer, "simulation")


def test_an_image_layer_specimen_keeps_its_physical_size(dock, qtbot):
    """A 3.2 mm ball imaged at 100 µm, simulated in a 6.4 mm field of view, stays 3.2 mm
    across (it was stretched to fill the field of view)."""
    viewer, widget = dock
    n, voxel = 48, 100.0
    g = (np.arange(n) - (n - 1) / 2) * voxel
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    ball = (z**2 + y**2 + x**2 <= 1600.0**2).astype(np.float32)
    layer = viewer.add_image(ball, scale=(voxel,) * 3, units="µm", name="ball")
    _simulate_quick_look(widget, qtbot, specimen="image layer", pd_layer=layer)
    qtbot.waitUntil(lambda: any("truth labels" in x.name for x in viewer.layers),
                    timeout=10_000)
    truth = [x for x in viewer.layers if "truth labels" in x.name][0]
    spacing = truth.scale[-1]
    across = (truth.data[truth.data.shape[0] // 2] > 0).sum(axis=1).max() * spacing
    assert across == pytest.approx(3200.0, abs=2 * spacing)


def test_a_diffusion_series_goes_to_the_diffusion_dock(dock, qtbot, logged):
    """Diffusion directions simulate a diffusion-prepared series beside the plain scan;
    the Diffusion tensor dock takes it as it comes and finds the fluid's diffusivity and
    the nerve's fibres along the modiolar axis (z)."""
    from napari_mrmicro.widgets.diffusion import DiffusionWidget

    from dock_checks import wait_for_job

    viewer, widget = dock
    widget.preset.value = "9.4 T temporal bone (25 µm, overnight)"
    for w, n in zip(widget.matrix, (48, 48, 48)):
        w.value = n
    assert not widget.b_value.visible  # no diffusion weighting: no b to set
    widget.directions.value = 6
    assert widget.b_value.visible and "7 images" in widget.summary.value
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    (series,) = [layer for layer in viewer.layers if "DWI" in layer.name]
    assert series.name.endswith("DWI 6 directions b 1000") and series.data.shape == (
        7, 48, 48, 48)
    labels = next(layer for layer in viewer.layers if layer.name.endswith("truth labels"))
    fitter = DiffusionWidget(viewer)
    assert fitter.images.value is series and fitter.model.value == "tensor"
    assert fitter.scheme.value == "7 images, b 0, 1000 s/mm², 6 directions"
    wait_for_job(qtbot, fitter, fitter.run())
    md = np.asarray(viewer.layers["MD (µm²/ms, wls)"].data)
    fluid = np.isin(np.asarray(labels.data), (3,)) & (md > 0)  # the duct
    assert np.median(md[fluid]) == pytest.approx(2.0, rel=0.05)
    nerve = (np.asarray(labels.data) == 2) & (md > 0)
    rgb = np.asarray(viewer.layers["FA colour (R-L, A-P, S-I)"].data)[nerve].astype(float)
    assert nerve.sum() > 20 and np.median(rgb[:, 2]) > 3 * np.median(rgb[:, :2])  # blue: S-I
    assert not logged.errors
