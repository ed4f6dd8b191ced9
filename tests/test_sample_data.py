"""File > Open Sample: the simulated samples open in a real viewer and feed the docks."""

import numpy as np
import pytest

from napari_mrmicro._sample_data import COCHLEA_PROTOCOL, TUBE_DIAMETER_UM

pytestmark = pytest.mark.gui


def test_cochlea_is_civm_style_25_um(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-mrmicro", "cochlea")
    names = [layer.name for layer in layers]
    assert "cochlea 9.4 T SE 25 µm magnitude" in names
    magnitude = viewer.layers["cochlea 9.4 T SE 25 µm magnitude"]
    assert tuple(magnitude.scale) == pytest.approx((25.0,) * 3)
    assert magnitude.metadata["mrmicro"]["acquisition"]["b0_tesla"] == 9.4
    assert magnitude.data.shape == COCHLEA_PROTOCOL.matrix
    labels = viewer.layers["cochlea 9.4 T SE 25 µm truth labels"]
    assert list(labels.features["name"]) == ["medium", "bone", "modiolus", "duct"]
    # the fluid-filled duct is bright, the bone dark
    data = magnitude.data
    assert data[labels.data == 3].mean() > 3 * data[labels.data == 1].mean()


def test_qsm_gre_has_echoes_and_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-mrmicro", "qsm_gre")
    name = "cochlea 9.4 T GRE 50 µm 3 echoes"
    phase = viewer.layers[f"{name} phase (rad)"]
    assert phase.data.shape == (3, 64, 64, 64)
    assert phase.metadata["mrmicro"]["acquisition"]["te_ms"] == [3.0, 6.0, 9.0]
    chi = viewer.layers[f"{name} truth chi_ppm"].data
    assert chi.min() < -1.0  # bone, about −2 ppm
    assert np.abs(viewer.layers[f"{name} truth field_ppm"].data).max() > 0


def test_tube_calibrates_in_the_morphometry_dock(make_napari_viewer, qtbot):
    from napari_mrmicro.widgets.morphometry import MorphometryWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-mrmicro", "calibration_tube")
    lumen = viewer.layers[f"tube lumen ⌀{TUBE_DIAMETER_UM:g} µm (segmented)"]
    dock = MorphometryWidget(viewer)
    dock.labels_layer.value = lumen
    assert dock.tube_diameter.value == TUBE_DIAMETER_UM  # from the layer's metadata
    lumen.selected_label = 1
    dock.calibrate()
    qtbot.waitUntil(lambda: dock.profile is not None, timeout=60_000)
    profile = dock.profile
    near, far = profile.distance_um.min(), profile.distance_um.max()
    # gradient non-linearity magnifies more the farther from the FOV centre
    assert profile.area_error(far) > profile.area_error(near) + 0.03


def test_microdiamond_pair_preselected_by_role(make_napari_viewer):
    from napari_mrmicro.widgets.particles import ParticlesWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-mrmicro", "microdiamonds")
    dock = ParticlesWidget(viewer)
    assert dock.mr_layer.value.name == "microdiamonds 9.4 T 13C GRE 50 µm magnitude"
    assert dock.optical_layer.value.name == "microdiamonds fluorescence 20 µm"
