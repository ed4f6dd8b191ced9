"""The "QSM" dock in a real viewer, on a simulated multi-echo scan."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, make_specimen, simulate
from napari_mrmicro.core.qsm import forward_field, qsm_from_field, qsm_stages
from napari_mrmicro.core.qsm.field_map import field_map_mask
from napari_mrmicro.core.qsm.pipeline import BOUNDARY_PASSES
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.qsm import FIELD_MAP, QSMWidget, chi_name, compute

from dock_checks import screenshot

pytestmark = pytest.mark.gui


def test_qsm_dock_reads_metadata_runs_and_shows_chi(make_napari_viewer, qtbot, logged):
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
    name = f"χ (ppm, tv, {dock.background.value})"  # the method and key settings
    assert chi_name(dock.request()) == name
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=10_000)
    chi = viewer.layers[name]
    assert tuple(chi.scale) == pytest.approx((100.0, 100.0, 100.0))
    low, high = chi.contrast_limits
    assert low == pytest.approx(-high) and high > 0
    assert chi.colormap.name == "PiYG"
    assert {"total field (ppm)", "local field (ppm)", "QSM mask"} <= {l.name for l in viewer.layers}
    # the dock only plumbs: its χ is the core pipeline's on the same inputs
    expected = qsm_stages(**dock.request())
    np.testing.assert_allclose(chi.data, expected.chi_ppm, atol=1e-5)
    np.testing.assert_array_equal(viewer.layers["QSM mask"].data, expected.local_mask)
    assert "left out" in dock.status.value  # what the automatic mask excluded
    viewer.dims.set_point(0, 24 * 100.0)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    screenshot(viewer, "qsm")


def test_bad_te_is_reported(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((2, 8, 8, 8)), name="x magnitude")
    viewer.add_image(np.zeros((2, 8, 8, 8)), name="x phase")
    dock = QSMWidget(viewer)
    dock.te.value = "5"
    with pytest.raises(ValueError, match="TE"):
        dock.request()
    assert dock.run() is None


def test_a_magnitude_alone_is_not_taken_for_a_phase(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((2, 8, 8, 8), np.float32), name="x magnitude")
    dock = QSMWidget(viewer)
    assert dock.magnitude.value.name == "x magnitude" and dock.phase.value is None
    assert dock.run() is None and len(viewer.layers) == 1
    assert dock.magnitude.value not in dock.phase.choices  # never offered twice
    with pytest.raises(ValueError, match="not a valid choice"):
        dock.phase.value = dock.magnitude.value


def test_pickers_by_role_never_offer_one_layer_twice(make_napari_viewer):
    """Roles from the layer metadata: a k-space layer, a χ map and a 2-D image are no
    input; magnitude and phase exclude each other's choice and follow a change."""
    viewer = make_napari_viewer()
    acq = {"te_ms": [5.0], "b0_tesla": 9.4}
    magnitude = viewer.add_image(np.ones((8, 8, 8), np.float32), name="scan A",
                                 metadata={"mrmicro": {"acquisition": acq}})
    phase = viewer.add_image(np.zeros((8, 8, 8), np.float32), name="scan B",
                             metadata={"mrmicro": {"acquisition": acq, "value_unit": "rad"}})
    field = viewer.add_image(np.zeros((8, 8, 8), np.float32), name="B0 map",
                             metadata={"mrmicro": {"value_unit": "Hz"}})
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="χ (ppm, tv)",
                     metadata={"mrmicro": {"value_unit": "ppm"}})
    viewer.add_image(np.zeros((8, 8), np.float32), name="photo")
    labels = viewer.add_labels(np.zeros((8, 8, 8), np.uint8), name="tissue")
    dock = QSMWidget(viewer)
    assert (dock.magnitude.value, dock.phase.value, dock.field.value) == \
        (magnitude, phase, field)
    assert [c for c in dock.magnitude.choices if c is not None] == [magnitude]
    assert [c for c in dock.phase.choices if c is not None] == [phase]
    assert [c for c in dock.field.choices if c is not None] == [field]
    assert dock.mask_source.choices[1:] == (labels,)
    plain = viewer.add_image(np.zeros((8, 8, 8), np.float32), name="no metadata")
    assert plain in dock.magnitude.choices and plain in dock.phase.choices  # role unknown
    dock.magnitude.value = plain  # ... but once taken, never offered twice
    assert plain not in dock.phase.choices and dock.phase.value is phase
    dock.magnitude.value = magnitude
    assert plain in dock.phase.choices


def test_restore_defaults_keeps_layers_and_rereads_the_acquisition(make_napari_viewer):
    viewer = make_napari_viewer()
    acq = {"te_ms": [4.0, 8.0], "b0_tesla": 7.0}
    viewer.add_image(np.ones((2, 8, 8, 8), np.float32), name="s magnitude",
                     metadata={"mrmicro": {"acquisition": acq}})
    viewer.add_image(np.zeros((2, 8, 8, 8), np.float32), name="s phase (rad)",
                     metadata={"mrmicro": {"acquisition": acq, "value_unit": "rad"}})
    dock = QSMWidget(viewer)
    chosen = dock.magnitude.value, dock.phase.value
    defaults = dock.method.value, dock.iterations.value, dock.erode.value, dock.passes.value
    assert dock.request()["boundary_passes"] == BOUNDARY_PASSES == dock.passes.value
    dock.method.value, dock.iterations.value, dock.erode.value = "tkd", 7, 50.0
    dock.passes.value = 0
    assert dock.request()["boundary_passes"] == 0
    assert chi_name(dock.request()) == "χ (ppm, tkd, lbv, 0 passes)"  # told apart
    dock.te.value, dock.b0.value = "1, 2", 3.0
    dock.status.value = "χ in mask: …"
    restore = next(w for w in dock if getattr(w, "text", None) == "Restore defaults")
    restore.changed.emit(True)
    assert (dock.method.value, dock.iterations.value, dock.erode.value,
            dock.passes.value) == defaults
    assert (dock.magnitude.value, dock.phase.value) == chosen
    assert dock.te.value == "4, 8" and dock.b0.value == pytest.approx(7.0)
    assert dock.status.value == "χ in mask: …"


def test_field_map_in_hz_on_an_oblique_slab(make_napari_viewer, qtbot, logged):
    """A scanner field map (Hz) on a rotated slab: unit, Larmor frequency and B0 direction
    come from the layer, and χ is the core's qsm_from_field."""
    n, spacing = 32, 100.0
    g = np.arange(n) - n / 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    a = np.deg2rad(30)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b0 = rotation.T @ np.array([1.0, 0, 0])  # world S in the slab's array axes
    chi = np.where(z**2 + y**2 + x**2 < 4**2, 0.4, 0.0).astype(np.float32)
    inside = z**2 + y**2 + x**2 < 13**2
    larmor_mhz = 42.577478 * 9.4
    field_hz = np.where(inside, forward_field(chi, spacing, b0) * larmor_mhz, 0)
    viewer = make_napari_viewer(show=True)
    affine = np.eye(4)
    affine[:3, :3] = rotation
    viewer.add_image(field_hz.astype(np.float32), name="B0 map (Hz)", scale=(spacing,) * 3,
                     units=("µm",) * 3, affine=affine, colormap="PiYG",
                     metadata={"mrmicro": {"value_unit": "Hz",
                                           "acquisition": {"b0_tesla": 9.4}}})
    dock = QSMWidget(viewer)
    viewer.window.add_dock_widget(dock, name="QSM")
    assert dock.source.value == FIELD_MAP and dock.field.value.name == "B0 map (Hz)"
    assert dock.field_unit.value == "Hz"
    assert dock.larmor.value == pytest.approx(larmor_mhz, abs=1e-3)
    # the Larmor frequency converts the map: B0 (T) and TE, the phase's inputs, are hidden
    assert not dock.larmor.native.isHidden()
    assert dock.b0.native.isHidden() and dock.te.native.isHidden()
    direction = [float(v) for v in dock.direction.value.split(",")]
    np.testing.assert_allclose(direction, b0, atol=1e-3)
    dock.iterations.value = 80
    worker = dock.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    name = chi_name(dock.request())
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=10_000)
    layer = viewer.layers[name]
    request = dock.request()
    assert request["mask"] is None and request["erode_um"] == 0  # the map's own mask
    mask = field_map_mask(request["field"], request["spacing_um"])
    expected, _, local_mask = qsm_from_field(
        request["field"], mask, request["spacing_um"], request["b0_direction"],
        field_unit="Hz", larmor_hz=request["larmor_hz"], max_iter=80)
    np.testing.assert_allclose(layer.data, expected, atol=1e-5)
    core = (z**2 + y**2 + x**2 < 2.5**2) & local_mask
    assert layer.data[core].mean() - layer.data[local_mask & (chi == 0)].mean() == \
        pytest.approx(0.4, rel=0.25)
    np.testing.assert_allclose(layer.affine.affine_matrix[:3, :3], rotation, atol=1e-9)
    dock.lam.value, dock.background.value = 0.002, "vsharp"
    assert chi_name(dock.request()) == "χ (ppm, tv λ0.002, vsharp)"
    # "erode mask" shrinks the field map's mask too (its rim is the least reliable part)
    assert mask.sum() == inside.sum()
    dock.erode.value = 200.0
    dock.iterations.value = 5
    eroded = compute(dock.request(), lambda stage, fraction: None).mask
    np.testing.assert_array_equal(eroded, field_map_mask(field_hz, spacing, 200.0))
    assert not (eroded & ~inside).any() and eroded.sum() < 0.8 * inside.sum()
    assert eroded[z**2 + y**2 + x**2 < 10.5**2].all()
    screenshot(viewer, "qsm-field-map")


def test_cancel_stops_within_a_second_and_adds_nothing(make_napari_viewer, qtbot, logged):
    import time

    viewer = make_napari_viewer()
    field = np.zeros((32, 32, 32), np.float32)
    field[8:24, 8:24, 8:24] = np.random.default_rng(0).normal(size=(16,) * 3)
    viewer.add_image(field, name="B0 map (ppm)", metadata={"mrmicro": {"value_unit": "ppm"}})
    dock = QSMWidget(viewer)
    dock.method.value, dock.iterations.value = "tv", 5000
    count = len(viewer.layers)
    worker = dock.run()
    assert dock.status.value == "running…" and dock.cancel_button.enabled
    qtbot.wait(300)
    start = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=5_000):
        dock.cancel_button.changed.emit(True)
    assert time.perf_counter() - start < 1.0
    qtbot.wait(200)
    assert dock.status.value == "cancelled" and len(viewer.layers) == count
    assert dock.run_button.enabled and not dock.cancel_button.enabled
    assert "QSM: cancelled" in logged.messages


def test_b0_direction_reads_without_negative_zeros(make_napari_viewer):
    """A direction from a rotation matrix carries -0.0 and 1e-17 components (ParaVision
    scan 8 showed "-1, 0, -0")."""
    viewer = make_napari_viewer()
    acq = {"te_ms": [4.0], "b0_tesla": 9.4, "b0_direction": [-1.0, -0.0, -1e-17]}
    viewer.add_image(np.ones((8, 8, 8), np.float32), name="s magnitude",
                     metadata={"mrmicro": {"acquisition": acq}})
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="s phase (rad)",
                     metadata={"mrmicro": {"acquisition": acq, "value_unit": "rad"}})
    dock = QSMWidget(viewer)
    assert dock.direction.value == "-1, 0, 0"
