"""The "Dual-mode particles" dock in a real viewer: microdiamonds seen as ¹³C MR (50 µm
voxels, block-averaged so its grid is offset by half a specimen voxel) and as fluorescence
(12.5 µm pixels in nm units, shifted by a known amount)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_mrmicro.core import make_specimen
from napari_mrmicro.core.particles import match_particles
from napari_mrmicro.core.reslice import reslice
from napari_mrmicro.core.transforms import translation_affine
from napari_mrmicro.widgets.particles import ParticlesWidget

from dock_checks import screenshot, untipped, wait_for_job

pytestmark = pytest.mark.gui

SPACING = 25.0                                  # specimen grid (µm)
SHIFT_UM = np.array([20.0, -35.0, 15.0])        # optical stage offset: sees truth at q + d
OPT_UM = 12.5


@pytest.fixture(scope="module")
def modes():
    specimen = make_specimen("microdiamonds", (32, 64, 64), SPACING, count=20,
                             diameter_um=50.0)
    truth = specimen.truth["particle_centres_um"]
    rng = np.random.default_rng(4)
    # ¹³C MR: density blurred at 50 µm FWHM, 2×2×2 block average → 50 µm voxels whose
    # centres sit half a specimen voxel (12.5 µm) from the specimen's.
    c13 = ndi.gaussian_filter(specimen.property_map("c13_density"), 50 / 2.355 / SPACING)
    mr = c13.reshape(16, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5))
    mr = mr + rng.normal(0, 0.01, mr.shape).astype(np.float32)
    # Fluorescence: PSF σ (20, 8, 8) µm, resampled on 12.5 µm pixels displaced by d; the
    # tissue's autofluorescence continues past the specimen block.
    fluo = ndi.gaussian_filter(specimen.property_map("fluorescence"),
                               np.array([20.0, 8.0, 8.0]) / SPACING)
    optical = reslice(fluo, SPACING, translation_affine(SHIFT_UM), (64, 128, 128), OPT_UM,
                      cval=float(np.median(fluo)))
    optical += rng.normal(0, 0.005, optical.shape).astype(np.float32)
    return truth, mr, optical


def _viewer(make_napari_viewer, modes, show=False):
    truth, mr, optical = modes
    viewer = make_napari_viewer(show=show)
    viewer.add_image(mr, name="13C MR", scale=(50.0,) * 3, translate=(12.5,) * 3, units="µm")
    viewer.add_image(optical, name="fluorescence", scale=(OPT_UM * 1000,) * 3, units="nm",
                     colormap="magma", blending="additive")
    dock = ParticlesWidget(viewer)
    dock.mr_layer.value = viewer.layers["13C MR"]
    dock.optical_layer.value = viewer.layers["fluorescence"]
    dock.mr_diameter.value, dock.opt_diameter.value = 100.0, 60.0
    dock.max_distance.value = 100.0
    return viewer, dock


def test_detect_and_match_without_registration_sees_the_stage_offset(make_napari_viewer,
                                                                     qtbot, modes, logged):
    truth = modes[0]
    viewer, dock = _viewer(make_napari_viewer, modes, show=True)
    viewer.window.add_dock_widget(dock, name="Dual-mode particles")
    wait_for_job(qtbot, dock, dock.run())
    mr_pts = viewer.layers["MR particles (LoG ⌀100 µm)"]  # method and key settings
    opt_pts = viewer.layers["optical particles (LoG ⌀60 µm)"]
    offsets = viewer.layers["particle offsets (gate 100 µm)"]
    assert str(mr_pts.units[0]) == "micrometer"
    assert mr_pts.features["matched"].sum() == len(dock.result["match"].pairs)
    assert set(mr_pts.features) >= {"precision_z_um", "precision_y_um", "precision_x_um"}
    # MR detections are where the particles are (the half-voxel grid offset handled).
    found = match_particles(mr_pts.data, truth, 25.0)
    assert found.fraction_b >= 0.95 and np.all(np.abs(found.offsets_um) < 25.0)
    # Optical detections (nm layer) are displaced by −d in world µm.
    assert match_particles(opt_pts.data + SHIFT_UM, truth, 15.0).fraction_b >= 0.95
    match = dock.result["match"]
    assert match.fraction_a >= 0.95 and match.fraction_b >= 0.95
    np.testing.assert_allclose(match.mean_offset_um, -SHIFT_UM, atol=10.0)
    assert offsets.data.shape == (len(match.pairs), 2, 3)
    np.testing.assert_allclose(offsets.data[:, 1], match.offsets_um)
    np.testing.assert_allclose(offsets.data[:, 0] + offsets.data[:, 1],
                               opt_pts.data[match.pairs[:, 1]])
    text = dock.summary.text()
    assert f"matched: {len(match.pairs)}" in text and "precision MR" in text
    # The fluorescence is the sharper mode: its precision bound is smaller.
    prec = dock.result["precision_um"]
    assert np.all(np.median(prec["optical"], axis=0) < np.median(prec["mr"], axis=0))

    viewer.window._qt_window.resize(1400, 900)
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    import imageio.v3 as iio

    iio.imwrite("/tmp/particles_dock.png", shot)
    screenshot(viewer, "particles")


def test_registered_sets_match_within_one_mr_voxel(make_napari_viewer, qtbot, modes):
    viewer, dock = _viewer(make_napari_viewer, modes)
    dock.register.value = "rigid"
    wait_for_job(qtbot, dock, dock.run())
    match, fit = dock.result["match"], dock.result["fit"]
    assert match.fraction_a >= 0.95 and match.fraction_b >= 0.95
    assert np.all(np.linalg.norm(match.offsets_um, axis=1) < 50.0)
    # The fit finds the stage offset: optical world + d = MR world.
    np.testing.assert_allclose(fit.affine[:3, 3], SHIFT_UM, atol=10.0)
    opt_pts = viewer.layers["optical particles (LoG ⌀60 µm)"]
    np.testing.assert_allclose(opt_pts.affine.affine_matrix, fit.affine)
    assert "registered" in dock.summary.text()
    assert "particle offsets (rigid ICP, gate 100 µm)" in viewer.layers
    # A second run replaces the layers instead of piling them up.
    wait_for_job(qtbot, dock, dock.run())
    assert [layer.name.startswith("MR particles") for layer in viewer.layers].count(True) == 1


def test_refuses_one_layer_for_both(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8, 8)), name="only")
    dock = ParticlesWidget(viewer)
    assert dock.run() is None


def test_pickers_filter_by_role_and_never_offer_one_layer_twice(make_napari_viewer):
    viewer = make_napari_viewer()
    kspace = np.zeros((8, 8, 8), np.complex64)
    viewer.add_image(np.zeros((8, 8, 8)), name="sim k-space",
                     metadata={"mrmicro": {"kspace": kspace, "acquisition": {"b0_tesla": 9.4}}})
    viewer.add_image(np.zeros((8, 8, 8)), name="13C magnitude",
                     metadata={"mrmicro": {"acquisition": {"b0_tesla": 9.4}}})
    viewer.add_image(np.zeros((8, 8, 8)), name="sim phase (rad)",
                     metadata={"mrmicro": {"value_unit": "rad", "acquisition": {}}})
    viewer.add_image(np.zeros((8, 8, 8)), name="fluorescence",
                     metadata={"mrmicro": {"format": "tiff"}})
    dock = ParticlesWidget(viewer)
    mr = [layer.name for layer in dock.mr_layer.choices]
    optical = [layer.name for layer in dock.optical_layer.choices]
    assert mr == ["13C magnitude"]  # neither k-space nor phase nor optical
    assert optical == ["fluorescence"]
    assert dock.mr_layer.value is not dock.optical_layer.value
    viewer.add_image(np.zeros((8, 8, 8)), name="plain")  # no role: offered to both ...
    dock.optical_layer.value = viewer.layers["plain"]
    assert viewer.layers["plain"] not in dock.mr_layer.choices  # ... but not twice
    assert untipped(dock) == []


def test_cancel_says_cancelled(make_napari_viewer, qtbot, modes, logged):
    viewer, dock = _viewer(make_napari_viewer, modes, show=True)
    dock.mr_diameter.value = 100.0
    worker = dock.run()
    with qtbot.waitSignal(worker.finished, timeout=1_000):
        dock.cancel_button.changed.emit(True)
    assert "Dual-mode particles: cancelled" in logged.messages
    assert not any(layer.name.startswith("MR particles") for layer in viewer.layers)
    assert dock.run_button.enabled
