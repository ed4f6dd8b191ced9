"""The "MR Reconstruction" dock in a real viewer."""

import numpy as np
import pytest

from napari_mrmicro._layers import layer_geometry
from napari_mrmicro.core import Acquisition, make_specimen, reconstruct, simulate
from napari_mrmicro.widgets._results import add_layers, kspace_layers
from napari_mrmicro.widgets.reconstruction import ReconstructionWidget

from dock_checks import cancel_within_a_second, wait_for_job

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def cochlea_kspace():
    acq = Acquisition(matrix=(32, 64, 64), fov_um=(3200.0, 6400.0, 6400.0), b0_tesla=9.4,
                      te_ms=(8.0,), tr_ms=500.0, bandwidth_hz=50_000.0)
    specimen = make_specimen("cochlea", (64, 128, 128), 50.0)
    return simulate(specimen, acq, seed=1)


def finish(qtbot, dock, viewer, count):
    """Run the dock's job and wait for its ``count`` layers."""
    wait_for_job(qtbot, dock, dock.run())
    qtbot.waitUntil(lambda: len(viewer.layers) >= count, timeout=10_000)


def test_reconstruct_zero_fill_and_cs(make_napari_viewer, qtbot, cochlea_kspace, logged):
    viewer = make_napari_viewer(show=True)
    add_layers(viewer, kspace_layers(cochlea_kspace, "cochlea", truth=False))
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock, name="MR Reconstruction")
    assert dock.layer.value.name == "cochlea k-space"

    dock.window.value = "hann"
    finish(qtbot, dock, viewer, 5)
    magnitude = viewer.layers["cochlea recon hann magnitude"]
    expected = np.abs(reconstruct(cochlea_kspace, window="hann"))[0]
    np.testing.assert_allclose(magnitude.data, expected, rtol=1e-4, atol=1e-6)
    assert tuple(magnitude.scale) == pytest.approx((100.0, 100.0, 100.0))
    np.testing.assert_allclose(layer_geometry(magnitude).affine_um,
                               layer_geometry(viewer.layers["cochlea k-space"]).affine_um)
    assert magnitude.metadata["mrmicro"]["snr"]["snr"] > 5
    assert float(dock.status.value) == pytest.approx(magnitude.metadata["mrmicro"]["snr"]["snr"],
                                                     abs=0.051)  # shown to 0.1

    dock.window.value, dock.zero_fill.value = "none", 2.0
    finish(qtbot, dock, viewer, 7)
    filled = viewer.layers[-2]
    assert filled.name == "cochlea recon zf2 magnitude"
    assert filled.data.shape == (64, 128, 128)
    assert tuple(filled.scale) == pytest.approx((50.0, 50.0, 50.0))

    dock.zero_fill.value = 1.0
    dock.cs_method.value, dock.acceleration.value, dock.iterations.value = "tv", 4.0, 20
    finish(qtbot, dock, viewer, 9)
    cs = viewer.layers[-2]
    assert cs.name == "cochlea CS tv λ0.005 20 it R4 magnitude"
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


def test_file_layer_reconstructs_with_its_acquired_mask(make_napari_viewer, qtbot, tmp_path):
    """Partial-Fourier k-space opened from a file: the dock's "auto" partial Fourier
    completes the lines the acquired mask says are missing (POCS), not zero-filling."""
    from napari_mrmicro.core import KSpace
    from napari_mrmicro.core.kspace import centered_fft
    from napari_mrmicro.io import kspace_codec, omezarr

    image = np.random.default_rng(2).random((1, 4, 16, 16)) + 0.5
    data = centered_fft(image).astype(np.complex64)
    sampled = np.ones((4, 16, 16), bool)
    sampled[:, :5] = False  # 11 of 16 lines: partial Fourier along y
    data[..., ~sampled] = 0
    acquired = KSpace(data, Acquisition(matrix=(4, 16, 16), fov_um=(400.0, 800.0, 800.0)),
                      sampled=sampled)
    omezarr.write(tmp_path / "pf.zarr", kspace_codec.kspace_to_volume(acquired, name="pf"))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "pf.zarr", plugin="napari-mrmicro")
    dock = ReconstructionWidget(viewer)
    assert dock.layer.value is layer
    finish(qtbot, dock, viewer, 3)
    magnitude = viewer.layers["pf recon magnitude"]
    expected = np.abs(reconstruct(acquired))[0]
    zero_filled = np.abs(reconstruct(data))[0]
    np.testing.assert_allclose(magnitude.data, expected, rtol=1e-4, atol=1e-4 * expected.max())
    assert np.abs(magnitude.data - zero_filled).max() > 0.01 * zero_filled.max()


def test_paravision_360_raw_reconstructed_onto_its_2dseq(make_napari_viewer, qtbot, realdata):
    """Real FLASH raw data opened in napari: the dock's result lies on Bruker's own image
    of the same scan, voxel for voxel, and looks like it."""
    scan = realdata("bruker_pv/pv360_rodent/6")
    viewer = make_napari_viewer()
    (kspace,) = viewer.open(scan / "rawdata.job0", plugin="napari-mrmicro")
    (vendor,) = viewer.open(scan / "pdata/1/2dseq", plugin="napari-mrmicro")
    dock = ReconstructionWidget(viewer)
    assert dock.layer.value is kspace
    finish(qtbot, dock, viewer, 4)
    magnitude = viewer.layers[-2]
    assert magnitude.name.endswith("recon magnitude") and magnitude.data.shape == (18, 128, 256)
    np.testing.assert_allclose(layer_geometry(magnitude).affine_um,
                               layer_geometry(vendor).affine_um, atol=1e-6)
    a, b = magnitude.data[9], np.asarray(vendor.data[9], dtype=np.float32)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    # homodyne chosen, its axis left to the data: the partial echo's readout (x)
    dock.pf_method.value = "homodyne"
    assert dock.pf_axis.value == "detected" and "axis" not in dock.options()["partial_fourier"]
    finish(qtbot, dock, viewer, 6)
    homodyne = viewer.layers[-2]
    assert "homodyne" in homodyne.name and homodyne.data.shape == (18, 128, 256)
    a = homodyne.data[9]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    dock.pf_axis.value = "x"
    assert dock.options()["partial_fourier"] == {"method": "homodyne", "axis": -1}


def test_paravision_epi_raw_unwarped_with_the_field_map(make_napari_viewer, qtbot, realdata):
    """EPI scan 7's raw with field map scan 8 chosen: the reconstruction comes unwarped,
    as `pipeline.unwarp_epi` (what `mrmicro unwarp` runs) of the plain complex image."""
    from napari_mrmicro.io import Volume
    from napari_mrmicro.pipeline import unwarp_epi

    study = realdata("bruker_pv/pv360_rodent")
    viewer = make_napari_viewer()
    (kspace,) = viewer.open(study / "7" / "rawdata.job0", plugin="napari-mrmicro")
    (field,) = viewer.open(study / "8" / "pdata/1/2dseq", plugin="napari-mrmicro")
    dock = ReconstructionWidget(viewer)
    assert dock.layer.value is kspace and dock.field_map.value is None
    finish(qtbot, dock, viewer, 4)
    plain, phase = viewer.layers[-2], viewer.layers[-1]
    dock.field_map.value = field
    finish(qtbot, dock, viewer, 6)
    unwarped = viewer.layers[-2]
    assert unwarped.name.endswith("recon unwarped magnitude"), unwarped.name
    geo = layer_geometry(plain)
    field_geo = layer_geometry(field)
    complex_image = plain.data * np.exp(1j * np.asarray(phase.data))  # unwarped as a signal
    expected = unwarp_epi(
        Volume(complex_image, geo.spacing_um,
               {"acquisition": plain.metadata["mrmicro"]["acquisition"]},
               affine_um=geo.affine_um),
        Volume(np.asarray(field.data), field_geo.spacing_um, {"value_unit": "Hz"},
               affine_um=field_geo.affine_um))
    np.testing.assert_allclose(unwarped.data, np.abs(expected.data), rtol=1e-3,
                               atol=1e-3 * float(np.abs(expected.data).max()))
    assert np.abs(unwarped.data - plain.data).max() > 0.1 * plain.data.max()


def test_cancel_compressed_sensing_says_so_and_adds_nothing(make_napari_viewer, qtbot,
                                                            cochlea_kspace, logged):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(cochlea_kspace, "cochlea", truth=False))
    dock = ReconstructionWidget(viewer)
    dock.status.value = "15.5"
    dock.cs_method.value, dock.acceleration.value, dock.iterations.value = "l1_wavelet", 4.0, 1000
    count = len(viewer.layers)
    worker = dock.run()
    assert dock.status.value == "running…"
    cancel_within_a_second(qtbot, dock, worker)
    assert dock.status.value == "cancelled" and len(viewer.layers) == count
    assert dock.run_button.enabled and "MR reconstruction: cancelled" in logged.messages


def test_restore_defaults_keeps_the_layer(make_napari_viewer, cochlea_kspace):
    viewer = make_napari_viewer()
    add_layers(viewer, kspace_layers(cochlea_kspace, "cochlea", truth=False))
    dock = ReconstructionWidget(viewer)
    layer, defaults = dock.layer.value, dock.options()
    dock.window.value, dock.zero_fill.value, dock.cs_method.value = "hann", 2.0, "tv"
    dock.lam.value, dock.status.value = 0.5, "12.8"
    assert dock.options() != defaults
    restore = next(w for w in dock if getattr(w, "text", None) == "Restore defaults")
    restore.changed.emit(True)
    assert dock.options() == defaults and dock.layer.value is layer
    assert dock.status.value == "12.8"  # the last run's figure is no setting
