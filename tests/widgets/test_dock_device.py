"""The "device" switch of the Reconstruction, QSM and Simulation docks.

The switch: it is offered only when the backend finds a GPU, says why not otherwise, and
the choice reaches the core calls in the job's own thread (the backend's default device is
a context variable, which a new thread does not inherit). The GPU branches themselves run
from the docks on the ``gpu`` fixture: CuPy on a CUDA device, else the strict numpy-backed
stand-in of tests/fake_cupy.py.
"""

import importlib
import threading

import fake_cupy
import numpy as np
import pytest
from dock_checks import Notices, wait_for_job
from qtpy.QtCore import Qt

import napari_mrmicro.widgets.qsm as qsm_dock
import napari_mrmicro.widgets.reconstruction as recon_dock
from napari_mrmicro.core import Acquisition, backend, forward_field, make_specimen, simulate
from napari_mrmicro.widgets._dock import NO_GPU
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.qsm import QSMWidget
from napari_mrmicro.widgets.reconstruction import ReconstructionWidget
from napari_mrmicro.widgets.simulation import SimulationWidget

pytestmark = pytest.mark.gui
core_simulate = importlib.import_module("napari_mrmicro.core.simulate")  # the module, not
# the function napari_mrmicro.core exports under the same name

DOCKS = [ReconstructionWidget, QSMWidget, SimulationWidget]


def gpu_item(dock):
    combo = dock.device.native
    return combo.model().item(combo.findData("gpu"))


def restore(dock):
    next(w for w in dock if getattr(w, "text", "") == "Restore defaults").changed.emit(True)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The backend believes a CUDA device exists (no CuPy is imported: the spies below
    record the device and then compute on the CPU)."""
    monkeypatch.setattr(backend, "gpu_available", lambda: True)


def spy(monkeypatch, module, name):
    """Replace ``module.name`` by a call that records the default device and the thread
    it runs in, then runs the real function on the CPU; returns the records."""
    real, calls = getattr(module, name), []

    def recording(*args, **kwargs):
        calls.append((backend.resolve(), threading.current_thread().name))
        with backend.use_device("cpu"):
            return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


@pytest.fixture
def small_kspace():
    acq = Acquisition(matrix=(8, 16, 16), fov_um=(800.0, 1600.0, 1600.0), b0_tesla=9.4,
                      te_ms=(8.0,), tr_ms=500.0, bandwidth_hz=50_000.0)
    return simulate(make_specimen("tube", (16, 32, 32), 50.0), acq, seed=1)


def finish(qtbot, viewer, dock, count):
    """Run the dock's job and wait for its ``count`` layers."""
    wait_for_job(qtbot, dock, dock.run())
    qtbot.waitUntil(lambda: len(viewer.layers) >= count, timeout=10_000)


@pytest.mark.parametrize("widget", DOCKS)
def test_device_switch_offers_the_gpu_only_when_there_is_one(make_napari_viewer, monkeypatch,
                                                            widget):
    viewer = make_napari_viewer()
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    dock = widget(viewer)
    assert dock.device.label == "device" and dock.device.value == "cpu"
    combo = dock.device.native
    assert [combo.itemText(i) for i in range(combo.count())] == ["CPU", "GPU (CUDA)"]
    assert "CPU" in dock.device.tooltip and "GPU" in dock.device.tooltip
    assert NO_GPU in dock.device.tooltip and NO_GPU in gpu_item(dock).toolTip()
    item = gpu_item(dock)
    assert not item.isEnabled() and not item.flags() & Qt.ItemFlag.ItemIsEnabled
    dock.reset_choices()  # napari refreshes the pickers on every layer change
    assert not gpu_item(dock).isEnabled()

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    offered = widget(viewer)
    assert gpu_item(offered).isEnabled() and NO_GPU not in offered.device.tooltip


@pytest.mark.parametrize("widget", DOCKS)
def test_this_machine_greys_out_the_gpu_unless_it_has_one(make_napari_viewer, widget):
    dock = widget(make_napari_viewer())
    assert gpu_item(dock).isEnabled() == backend.gpu_available()
    assert (NO_GPU in dock.device.tooltip) != backend.gpu_available()


@pytest.mark.parametrize("widget", DOCKS)
def test_restore_defaults_puts_the_device_back_to_cpu(make_napari_viewer, fake_gpu, widget):
    dock = widget(make_napari_viewer())
    dock.device.value = "gpu"
    restore(dock)
    assert dock.device.value == "cpu"


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
@pytest.mark.parametrize("widget", DOCKS)
def test_a_gpu_that_is_not_there_is_refused_before_the_job(make_napari_viewer, small_kspace,
                                                          widget):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(small_kspace, "tube"))
    count, dock = len(viewer.layers), widget(viewer)
    dock.device.value = "gpu"  # greyed out for the user; a script can still set it
    notices = Notices()
    try:
        assert dock.run() is None and dock.worker is None and len(viewer.layers) == count
    finally:
        notices.close()
    assert len(notices.errors) == 1 and "device 'gpu' is not available" in notices.errors[0]


def test_reconstruction_runs_on_the_chosen_device(make_napari_viewer, qtbot, monkeypatch,
                                                  fake_gpu, small_kspace, logged):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(small_kspace, "tube", truth=False))
    dock = ReconstructionWidget(viewer)
    calls = spy(monkeypatch, recon_dock, "reconstruct")
    for device, count in (("cpu", 5), ("gpu", 7)):
        dock.device.value = device
        finish(qtbot, viewer, dock, count)
    assert [device for device, _ in calls] == ["cpu", "gpu"]
    assert all(thread == "mrmicro job" for _, thread in calls)
    assert backend.resolve() == "cpu"  # the GUI thread's default is untouched
    cpu, gpu = viewer.layers["tube recon magnitude"], viewer.layers["tube recon GPU magnitude"]
    assert cpu.metadata["mrmicro"]["device"] == "cpu"
    assert gpu.metadata["mrmicro"]["device"] == "gpu"
    assert type(gpu.data) is np.ndarray and gpu.data.dtype == np.float32
    np.testing.assert_array_equal(gpu.data, cpu.data)


def qsm_viewer(make_napari_viewer):
    """A viewer holding one echo (magnitude and phase) of a χ ball in a bigger ball."""
    shape, spacing = (16, 16, 16), (100.0,) * 3
    grid = np.indices(shape) - 7.5
    ball = (grid**2).sum(0) < 6.0**2
    chi = np.where((grid**2).sum(0) < 2.5**2, 0.5, 0.0).astype(np.float32)
    field = forward_field(chi, spacing, (1.0, 0.0, 0.0))
    phase = 2 * np.pi * 42.577478 * 9.4 * field * 5e-3  # TE 5 ms, 9.4 T (DESIGN.md)
    viewer = make_napari_viewer()
    noise = np.abs(np.random.default_rng(0).normal(0.0, 0.02, shape))
    viewer.add_image((ball + noise).astype(np.float32), name="x magnitude", scale=spacing)
    viewer.add_image(np.where(ball, phase, 0).astype(np.float32), name="x phase",
                     scale=spacing)
    return viewer


def test_qsm_runs_on_the_chosen_device(make_napari_viewer, qtbot, monkeypatch, fake_gpu,
                                       logged):
    viewer = qsm_viewer(make_napari_viewer)
    dock = QSMWidget(viewer)
    dock.te.value, dock.b0.value, dock.method.value = "5", 9.4, "tkd"
    calls = spy(monkeypatch, qsm_dock, "qsm_stages")
    dock.device.value = "gpu"
    finish(qtbot, viewer, dock, 3)
    assert calls == [("gpu", "mrmicro job")] and backend.resolve() == "cpu"
    chi_layer = viewer.layers[-1]
    assert chi_layer.name.endswith(" GPU") and chi_layer.metadata["mrmicro"]["device"] == "gpu"
    assert type(chi_layer.data) is np.ndarray and chi_layer.data.dtype == np.float32


def test_simulation_runs_on_the_chosen_device(make_napari_viewer, qtbot, monkeypatch, fake_gpu,
                                              logged):
    viewer = make_napari_viewer()
    dock = SimulationWidget(viewer)
    dock.preset.value = "9.4 T cochlea quick look (50 µm, 3D GRE)"
    dock.specimen.value, dock.truth.value = "tube", False
    for box, n in zip(dock.matrix, (8, 16, 16)):
        box.value = n
    calls = spy(monkeypatch, core_simulate, "simulate")
    dock.device.value = "gpu"
    finish(qtbot, viewer, dock, 3)
    assert calls == [("gpu", "mrmicro job")] and backend.resolve() == "cpu"
    assert all(layer.name.startswith("tube 9.4 T GRE") and " GPU" in layer.name
               and layer.metadata["mrmicro"]["device"] == "gpu" for layer in viewer.layers)
    assert all(type(layer.data) is np.ndarray for layer in viewer.layers)


@pytest.mark.parametrize("unwrap, background, method",
                         [("laplacian", "vsharp", "tv"), ("laplacian", "pdf", "tikhonov"),
                          ("region_growing", "lbv", "tkd")])
def test_qsm_dock_on_the_gpu_equals_the_cpu(make_napari_viewer, qtbot, gpu, logged, unwrap,
                                            background, method):
    """The GPU branches themselves, from the dock's worker thread to numpy layers (on the
    strict CuPy stand-in of tests/fake_cupy.py where no CUDA device exists)."""
    viewer = qsm_viewer(make_napari_viewer)
    dock = QSMWidget(viewer)
    dock.te.value, dock.b0.value = "5", 9.4
    dock.unwrap.value, dock.background.value, dock.method.value = unwrap, background, method
    dock.iterations.value = 20
    results = []
    for device in ("cpu", "gpu"):
        dock.device.value = device
        finish(qtbot, viewer, dock, 3 + len(results))
        results.append(viewer.layers[-1])
    cpu, on_gpu = results
    assert on_gpu.name == cpu.name + " GPU" and on_gpu.metadata["mrmicro"]["device"] == "gpu"
    assert type(on_gpu.data) is np.ndarray and on_gpu.data.dtype == np.float32
    # on a device, PDF's stopping iteration follows its dot products' rounding
    # (tests/core/qsm/test_background_device.py): the stand-in rounds as numpy does
    rtol = 1e-4 if fake_cupy.is_stand_in(gpu) else 3e-2
    np.testing.assert_allclose(on_gpu.data, cpu.data, atol=rtol * np.abs(cpu.data).max())


@pytest.mark.parametrize("cs_method", ["l1_wavelet", "tv"])
def test_compressed_sensing_dock_on_the_gpu_equals_the_cpu(make_napari_viewer, qtbot, gpu,
                                                           small_kspace, logged, cs_method):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(small_kspace, "tube", truth=False))
    dock = ReconstructionWidget(viewer)
    dock.cs_method.value, dock.acceleration.value, dock.iterations.value = cs_method, 3.0, 10
    for device, count in (("cpu", 5), ("gpu", 7)):
        dock.device.value = device
        finish(qtbot, viewer, dock, count)
    cpu, on_gpu = (viewer.layers[f"tube CS {cs_method} λ0.005 10 it R3{suffix} magnitude"]
                   for suffix in ("", " GPU"))
    assert cpu.metadata["mrmicro"]["device"] == "cpu"
    assert type(on_gpu.data) is np.ndarray and on_gpu.metadata["mrmicro"]["device"] == "gpu"
    np.testing.assert_allclose(on_gpu.data, cpu.data, atol=1e-4 * np.abs(cpu.data).max())
