"""The "Diffusion tensor" dock in a real viewer: a NIfTI diffusion series opened with its
FSL table, fitted into MD, FA and the direction colours; an ADC series; cancel."""

import numpy as np
import pytest

from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion
from napari_mrmicro.widgets.diffusion import DiffusionWidget

from dock_checks import cancel_within_a_second, screenshot, untipped, wait_for_job

pytestmark = pytest.mark.gui
nib = pytest.importorskip("nibabel")

rng = np.random.default_rng(0)
DIRECTIONS = rng.normal(size=(12, 3))
DIRECTIONS /= np.linalg.norm(DIRECTIONS, axis=1)[:, None]
B = np.r_[0.0, np.full(12, 1000.0)]


def two_bundles(folder, shape=(40, 32, 16)):
    """A NIfTI (i, j, k = R, A, S; 60 µm) with fibres along world R in the left half and
    along A in the right half, in a noise background, and its FSL table."""
    g = np.r_[np.zeros((1, 3)), DIRECTIONS]
    inside = np.zeros(shape, bool)
    inside[4:-4, 4:-4, 3:-3] = True
    right = np.arange(shape[0])[:, None, None] >= shape[0] // 2
    signal = np.zeros(shape + (len(B),))
    for fibre, part in (((1.0, 0, 0), ~right), ((0, 1.0, 0), right)):
        d = 0.3 * np.eye(3) + 1.4 * np.outer(fibre, fibre)
        attenuation = np.exp(-1e-3 * B * np.einsum("ni,ij,nj->n", g, d, g))
        signal[inside & part] = 800.0 * attenuation
    noise = np.random.default_rng(1).normal(0, 8, signal.shape + (2,))
    data = np.abs(signal + noise[..., 0] + 1j * noise[..., 1]).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.06, 0.06, 0.06, 1.0])), folder / "dwi.nii")
    vox = g.copy()
    vox[:, 0] *= -1  # FSL: i negated for a positive determinant
    (folder / "dwi.bval").write_text(" ".join(f"{v:g}" for v in B))
    (folder / "dwi.bvec").write_text("\n".join(" ".join(f"{v:.7f}" for v in row)
                                               for row in vox.T))
    return folder / "dwi.nii", inside.T, np.broadcast_to(right, shape).T  # (z, y, x)


def test_a_nifti_series_gives_md_fa_and_world_colours(make_napari_viewer, qtbot, logged,
                                                      tmp_path):
    path, inside, right = two_bundles(tmp_path)
    viewer = make_napari_viewer(show=True)
    (series,) = viewer.open(str(path), plugin="napari-mrmicro")
    dock = DiffusionWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Diffusion tensor")
    assert not untipped(dock)
    assert dock.images.value is series
    assert dock.scheme.value == "13 images, b 0, 1000 s/mm², 12 directions"
    assert dock.model.value == "tensor"
    dock.extra.value = dock.glyphs.value = True
    wait_for_job(qtbot, dock, dock.run())
    md = viewer.layers["MD (µm²/ms, wls)"]
    fa, colour = viewer.layers["FA"], viewer.layers["FA colour (R-L, A-P, S-I)"]
    assert tuple(md.scale) == tuple(series.scale[1:]) and colour.rgb
    # the dock only plumbs: its maps are the core fit of the layer
    b = series.metadata["mrmicro"]["acquisition"]["b_matrix_s_per_mm2"]
    expected = fit_diffusion(np.asarray(series.data), b)
    np.testing.assert_allclose(md.data, expected.md(), rtol=1e-6)
    assert np.median(np.asarray(md.data)[inside]) == pytest.approx(2.3 / 3, rel=0.03)
    assert np.median(np.asarray(fa.data)[inside]) == pytest.approx(0.80, abs=0.03)
    rgb = np.asarray(colour.data).astype(float)
    left_rgb, right_rgb = rgb[inside & ~right], rgb[inside & right]
    assert np.median(left_rgb[:, 0]) > 150 > np.median(left_rgb[:, 1])  # red: R-L
    assert np.median(right_rgb[:, 1]) > 150 > np.median(right_rgb[:, 0])  # green: A-P
    for name in ("AD (µm²/ms)", "RD (µm²/ms)", "S0"):
        assert name in viewer.layers
    glyphs = viewer.layers["principal directions"]
    assert len(glyphs.data) == 2 * inside.sum()  # both halves of a line through each voxel
    starts = np.round(glyphs.data[:, 0]).astype(int)
    along_x = np.abs(glyphs.data[:, 1, 2]) > 5 * np.abs(glyphs.data[:, 1, 1])
    assert (along_x == ~right[tuple(starts.T)]).mean() > 0.99  # R-L left, A-P right
    np.testing.assert_allclose(glyphs.data_to_world(glyphs.data[0, 0]),
                               md.data_to_world(glyphs.data[0, 0]))  # placed like the maps
    assert md.metadata["mrmicro"]["diffusion"]["fitted_voxels"] == int(inside.sum())
    assert "b_matrix_s_per_mm2" not in md.metadata["mrmicro"]["acquisition"]
    assert dock.status.value.startswith("MD median 0.76") and not logged.errors
    colour.visible = False  # the glyphs over FA
    viewer.layers.selection.active = glyphs
    viewer.dims.set_point(0, 8 * 60.0)
    screenshot(viewer, "diffusion")


def test_b_values_along_one_direction_fit_an_adc(make_napari_viewer, qtbot, logged):
    viewer = make_napari_viewer()
    b_values = np.array([0.0, 300.0, 600.0, 1200.0])
    b = b_matrices(b_values, np.tile([1.0, 0.0, 0.0], (4, 1)))
    adc = np.full((6, 12, 12), 2.1)
    images = 500.0 * np.exp(-1e-3 * b_values[:, None, None, None] * adc)
    images[:, :, :, :3] = 0.0
    images = np.abs(images + np.random.default_rng(2).normal(0, 2, images.shape))
    viewer.add_image(images.astype(np.float32), name="DWI", metadata={"mrmicro": {
        "acquisition": {"b_matrix_s_per_mm2": b.tolist()}}})
    dock = DiffusionWidget(viewer)
    assert dock.model.value == "adc"  # one direction determines no tensor
    wait_for_job(qtbot, dock, dock.run())
    layer = viewer.layers["ADC (µm²/ms, wls)"]
    assert np.median(np.asarray(layer.data)[:, :, 4:]) == pytest.approx(2.1, rel=0.02)
    assert "FA" not in viewer.layers and not logged.errors


def test_cancel_and_no_series(make_napari_viewer, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_mrmicro.widgets._dock.show_error", shown.append)
    viewer = make_napari_viewer()
    dock = DiffusionWidget(viewer)
    assert dock.run() is None and "choose a diffusion-weighted series" in shown[-1]
    b = b_matrices(np.r_[0.0, np.full(30, 1500.0)], np.r_[np.zeros((1, 3)), rng.normal(
        size=(30, 3))])
    images = np.random.default_rng(3).uniform(100, 200, (31, 96, 128, 128)).astype(
        np.float32)
    images[:, :, :, :16] = np.random.default_rng(4).uniform(0, 5, (31, 96, 128, 16))
    viewer.add_image(images, name="big", metadata={"mrmicro": {"acquisition": {
        "b_matrix_s_per_mm2": b.tolist()}}})
    dock.method.value = "nlls"
    cancel_within_a_second(qtbot, dock, dock.run())
    assert dock.status.value == "cancelled" and "MD (µm²/ms, nlls)" not in viewer.layers
    assert shown == ["Diffusion tensor: choose a diffusion-weighted series stating its "
                     "b-matrices"]


def test_the_dock_names_the_noise_floor_and_fits_rician(make_napari_viewer, qtbot, logged):
    from napari_mrmicro.core.diffusion_tensor import diffusion_scheme

    viewer = make_napari_viewer()
    b = np.concatenate([diffusion_scheme(12, 1000.0), diffusion_scheme(12, 3000.0)[1:]])
    inside = np.zeros((8, 24, 24), bool)
    inside[2:6, 4:20, 8:20] = True
    clean = np.exp(-2e-3 * np.trace(b, axis1=1, axis2=2))[:, None, None, None] * inside
    noise = np.random.default_rng(6).normal(0, 1 / 30, clean.shape + (2,))
    images = np.abs(clean + noise[..., 0] + 1j * noise[..., 1]).astype(np.float32)
    viewer.add_image(images, name="fluid", metadata={"mrmicro": {"acquisition": {
        "b_matrix_s_per_mm2": b.tolist()}}})
    dock = DiffusionWidget(viewer)
    wait_for_job(qtbot, dock, dock.run())
    assert "below 3σ, where a wls fit reads the diffusivity low: fit 'rician'" in \
        dock.status.value
    dock.method.value = "rician"
    wait_for_job(qtbot, dock, dock.run())
    assert "rician" not in dock.status.value.split("MD median")[1]
    md = np.asarray(viewer.layers["MD (µm²/ms, rician)"].data)
    assert np.median(md[inside]) == pytest.approx(2.0, rel=0.04) and not logged.errors


def test_a_labels_layer_as_the_mask(make_napari_viewer, qtbot, monkeypatch):
    """The fit docks' shared mask choice: a Labels layer's non-zero voxels are fitted; one
    on another grid is refused by name."""
    shown = []
    monkeypatch.setattr("napari_mrmicro.widgets._dock.show_error", shown.append)
    viewer = make_napari_viewer()
    b = b_matrices(np.r_[0.0, np.full(12, 1000.0)], np.r_[np.zeros((1, 3)), DIRECTIONS])
    decay = 150.0 * np.exp(-1e-3 * np.trace(b, axis1=1, axis2=2))  # D 1 µm²/ms
    images = (decay[:, None, None, None] + np.random.default_rng(8).uniform(
        0, 1, (13, 4, 10, 12))).astype(np.float32)
    viewer.add_image(images, name="dwi", metadata={"mrmicro": {"acquisition": {
        "b_matrix_s_per_mm2": b.tolist()}}})
    region = np.zeros((4, 10, 12), np.uint8)
    region[1:3, 2:6, 3:9] = 2
    labels = viewer.add_labels(region, name="region")
    viewer.add_labels(np.ones((4, 10, 11), np.uint8), name="other grid")
    dock = DiffusionWidget(viewer)
    assert dock.mask_source.choices[0] == "signal" and labels in dock.mask_source.choices
    dock.mask_source.value = viewer.layers["other grid"]
    assert dock.run() is None and "does not match the images (4, 10, 12)" in shown[-1]
    dock.mask_source.value = labels
    wait_for_job(qtbot, dock, dock.run())
    fitted = np.asarray(viewer.layers["MD (µm²/ms, wls)"].data) > 0
    np.testing.assert_array_equal(fitted, region > 0)
