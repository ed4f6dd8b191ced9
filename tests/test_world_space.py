"""World space (DESIGN.md): every layer placed where the instrument put it, µm RAS+."""

import numpy as np
import pytest
from napari.layers import Layer

from napari_mrmicro._layers import layer_geometry, layer_to_volume, like, volume_to_layer_data
from napari_mrmicro._reader import read_layers
from napari_mrmicro.core import geometry
from napari_mrmicro.io import Volume, read_volume, write_volume

nib = pytest.importorskip("nibabel")


def layers_of(path):
    return [Layer.create(d, k, t) for d, k, t in read_layers(path)]


def corners_match_nibabel(layer, img):
    """The layer's world position of every voxel corner is nibabel's, µm, RAS+ reversed."""
    ijk = geometry.corner_points(img.shape[:3])
    expected = nib.affines.apply_affine(img.affine, ijk) * 1e3  # mm -> µm, (x, y, z)
    lead = (0.0,) * (layer.ndim - 3)  # a time axis first
    got = np.array([layer.data_to_world(lead + tuple(p))[-3:] for p in ijk[:, ::-1]])
    np.testing.assert_allclose(got[:, ::-1], expected, atol=1e-3)


def oblique_affine():
    angle = np.radians(20.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])  # rotated and x flipped
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.05, 0.04, 0.2])
    affine[:3, 3] = (12.0, -3.5, 7.25)
    return affine


def test_oblique_nifti_layer_maps_corners_to_nibabel(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    img = nib.Nifti1Image(data, oblique_affine())
    img.header.set_slope_inter(0.5, 1.0)
    path = tmp_path / "oblique.nii"
    nib.save(img, path)
    (layer,) = layers_of(path)
    corners_match_nibabel(layer, nib.load(path))
    assert layer.data.dtype == np.float32  # scaled int16
    assert layer.scale == pytest.approx((200.0, 40.0, 50.0))
    assert tuple(str(u) for u in layer.units) == ("micrometer",) * 3


def test_unscaled_nifti_ints_stay_ints(tmp_path):
    path = tmp_path / "ints.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5), np.int16), np.eye(4)), path)
    assert read_volume(path).data.dtype == np.int16


def test_nifti_round_trip_keeps_placement(tmp_path):
    world = geometry.from_xyz_affine(oblique_affine(), 1e3)
    vol = Volume(np.random.default_rng(1).random((4, 5, 6), dtype=np.float32),
                 geometry.voxel_sizes(world), {}, affine_um=world)
    write_volume(tmp_path / "o.nii.gz", vol)
    back = read_volume(tmp_path / "o.nii.gz")
    np.testing.assert_allclose(back.affine_um, world, atol=1e-3)
    # the layer and back: layer_to_volume recovers the world affine
    data, kwargs, kind = volume_to_layer_data(back)[0]
    again = layer_to_volume(data, {**kwargs, "ndim": 3}, kind)
    np.testing.assert_allclose(again.affine_um, world, atol=1e-3)


def test_realdata_nifti_corners(realdata):
    for name in ("anatomical.nii", "functional.nii"):
        path = realdata(f"nifti/nibabel/{name}")
        (layer,) = layers_of(path)[:1]
        corners_match_nibabel(layer, nib.load(path))


def test_like_copies_placement(tmp_path):
    world = geometry.from_xyz_affine(oblique_affine(), 1e3)
    vol = Volume(np.zeros((2, 4, 5, 6), np.float32), geometry.voxel_sizes(world), {},
                 affine_um=world)
    _, kwargs, _ = volume_to_layer_data(vol)[0]
    layer = Layer.create(np.zeros((2, 4, 5, 6), np.float32), kwargs, "image")
    result = Layer.create(np.zeros((4, 5, 6), np.float32), like(layer, ndim=3), "image")
    np.testing.assert_allclose(layer_geometry(result).affine_um, world, atol=1e-9)
    np.testing.assert_allclose(layer_geometry(layer).affine_um, world, atol=1e-9)


def test_uncalibrated_layer_is_one_um_per_pixel():
    layer = Layer.create(np.zeros((3, 4)), {}, "image")
    geo = layer_geometry(layer)
    assert geo.spacing_um == (1.0, 1.0) and not geo.calibrated


@pytest.mark.gui
def test_npe2_writers_keep_layer_type_and_create_series_folder(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    layer = viewer.add_image(data, scale=(30.0, 20.0, 10.0), units="µm", name="img")
    for suffix in (".tif", ".nii"):
        out = tmp_path / f"img{suffix}"
        # the state napari hands to a writer, contrast limits removed: still an image
        from napari_mrmicro import _writer

        state = {k: v for k, v in layer._get_state().items() if k != "contrast_limits"}
        write = _writer.write_imagej_tiff if suffix == ".tif" else _writer.write_nifti
        write(str(out), layer.data, state)
        assert read_volume(out).layer_type == "image"
        layer.save(str(tmp_path / f"saved{suffix}"), plugin="napari-mrmicro")
        assert read_volume(tmp_path / f"saved{suffix}").layer_type == "image"
    seg = viewer.add_labels((data > 20).astype(np.uint8), scale=(30.0, 20.0, 10.0),
                            units="µm", name="seg")
    seg.save(str(tmp_path / "seg.nii"), plugin="napari-mrmicro")
    assert read_volume(tmp_path / "seg.nii").layer_type == "labels"
    # a CIVM series into a folder that does not exist yet, whose parent does
    target = tmp_path / "new_series" / "S1.headfile"
    layer.save(str(target), plugin="napari-mrmicro")
    back = read_volume(target)
    np.testing.assert_array_equal(back.data, data)
    with pytest.raises(OSError):  # the parent is missing too: refused, nothing created
        layer.save(str(tmp_path / "a" / "b" / "S2.headfile"), plugin="napari-mrmicro")
    assert not (tmp_path / "a").exists()


def optical_stack_at(path, centre_um, shape=(5, 40, 60), pixel_um=(100.0, 40.0, 40.0)):
    """An OME-TIFF z-stack (a bright ring) whose stage position puts its centre at world
    ``centre_um`` (S, A, R): PositionZ/Y/X of the first plane, µm."""
    import tifffile

    z, y, x = np.indices(shape)
    r = np.hypot((y - shape[1] / 2) * pixel_um[1], (x - shape[2] / 2) * pixel_um[2])
    data = ((np.abs(r - 600.0) < 150.0) * 200 + 20).astype(np.uint8)
    first = np.asarray(centre_um) - (np.asarray(shape) - 1) / 2 * np.asarray(pixel_um)
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeZ": pixel_um[0], "PhysicalSizeY": pixel_um[1],
        "PhysicalSizeX": pixel_um[2],
        "Plane": {"PositionZ": [first[0] + k * pixel_um[0] for k in range(shape[0])],
                  "PositionY": [first[1]] * shape[0], "PositionX": [first[2]] * shape[0]}})
    return data


def colour_fractions(image):
    """Fractions of screenshot pixels that are grey-ish MR and magenta-ish optical."""
    rgb = image[..., :3].astype(int)
    magenta = (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 2] - rgb[..., 1] > 60)
    grey = (np.ptp(rgb, axis=-1) < 12) & (rgb.mean(axis=-1) > 40)
    return magenta.mean(), grey.mean()


@pytest.mark.gui
def test_screenshots_mr_and_optical_overlaid_in_2d_and_3d(make_napari_viewer, realdata,
                                                          tmp_path):
    """The RARE scan (2dseq and the NIfTI written from it) and an optical stack placed by
    its stage position at the scan's centre: overlaid on screen in 2-D and in 3-D."""
    from napari_mrmicro.io import read_volume

    seq = realdata("bruker_pv/pv360_rodent/5/pdata/1/2dseq")
    vol = read_volume(seq)
    write_volume(tmp_path / "rare.nii.gz", vol)
    centre = geometry.world_points(vol.affine_um,
                                   ((np.asarray(vol.data.shape) - 1) / 2)[None])[0]
    optical_stack_at(tmp_path / "optical.ome.tif", centre)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(seq), plugin="napari-mrmicro")
    viewer.open(str(tmp_path / "rare.nii.gz"), plugin="napari-mrmicro")
    viewer.layers[-1].visible = False  # the same voxels; shown in the check below
    (optical,) = viewer.open(str(tmp_path / "optical.ome.tif"), plugin="napari-mrmicro")
    optical.colormap, optical.blending, optical.opacity = "magenta", "additive", 0.8
    mr = viewer.layers[0]
    for layer in viewer.layers[:2]:
        layer.contrast_limits = tuple(np.percentile(layer.data, [1, 99.5]))
    # the optical ring sits inside the MR field of view in world space
    box = np.array([mr.data_to_world(c) for c in geometry.corner_points(mr.data.shape)])
    ring = np.array(optical.data_to_world((2, 20, 30)))
    assert np.all(ring > box.min(axis=0)) and np.all(ring < box.max(axis=0))
    viewer.window.show()
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, centre[0])
    viewer.reset_view()
    shot2d = viewer.screenshot(str(tmp_path / "overlay_2d.png"), canvas_only=False)
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    camera = getattr(viewer, "scene", viewer).camera  # viewer.scene from napari 0.9
    camera.angles = (-20.0, 35.0, 120.0)
    camera.zoom *= 0.8
    shot3d = viewer.screenshot(str(tmp_path / "overlay_3d.png"), canvas_only=False)
    for shot in (shot2d, shot3d):
        magenta, grey = colour_fractions(shot)
        assert magenta > 0.002 and grey > 0.01, (magenta, grey)
    # the NIfTI layer shown alone gives the same picture as the 2dseq layer
    viewer.dims.ndisplay = 2
    optical.visible = False
    canvas_seq = viewer.screenshot(canvas_only=True)
    mr.visible, viewer.layers[1].visible = False, True
    viewer.layers[1].contrast_limits = mr.contrast_limits
    canvas_nifti = viewer.screenshot(canvas_only=True)
    assert np.abs(canvas_seq.astype(int) - canvas_nifti.astype(int)).mean() < 2.0


@pytest.mark.parametrize("suffix", [".tif", ".nii", ".zarr"])
def test_rotated_placement_survives_a_round_trip(tmp_path, suffix):
    world = geometry.from_xyz_affine(oblique_affine(), 1e3)
    vol = Volume(np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6),
                 geometry.voxel_sizes(world), {}, affine_um=world)
    write_volume(tmp_path / f"r{suffix}", vol)
    back = read_volume(tmp_path / f"r{suffix}")
    np.testing.assert_allclose(back.affine_um, world, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(back.data, vol.data)


def test_civm_headfile_keeps_the_placement(tmp_path):
    world = geometry.from_xyz_affine(oblique_affine(), 1e3)
    vol = Volume(np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6),
                 geometry.voxel_sizes(world), {}, affine_um=world)
    folder = tmp_path / "S1images"
    folder.mkdir()
    write_volume(folder / "S1.headfile", vol)
    back = read_volume(folder / "S1.headfile")
    np.testing.assert_allclose(back.affine_um, world, rtol=1e-9)
    plain = Volume(vol.data, (30.0, 20.0, 10.0), {}, origin_um=(1.0, 2.0, 3.0))
    write_volume(folder / "S2.headfile", plain)
    again = read_volume(folder / "S2.headfile")
    assert again.origin_um == pytest.approx((1.0, 2.0, 3.0)) and again.affine_um is None


@pytest.mark.parametrize("suffix", [".nii", ".tif", ".zarr"])
def test_field_map_unit_survives_a_round_trip(tmp_path, suffix):
    vol = Volume(np.linspace(-900, 940, 60, dtype=np.float32).reshape(3, 4, 5),
                 (100.0,) * 3, {"value_unit": "Hz"}, name="field")
    write_volume(tmp_path / f"f{suffix}", vol)
    (data, kwargs, _), = volume_to_layer_data(read_volume(tmp_path / f"f{suffix}"))
    assert kwargs["metadata"]["mrmicro"]["value_unit"] == "Hz"
    assert kwargs["name"] == "field (Hz)" and kwargs["colormap"] == "bwr"
    limit = np.percentile(np.abs(vol.data), 99.5)  # (no zero among these values)
    assert kwargs["contrast_limits"] == pytest.approx((-limit, limit))


def sagittal_volume():
    """A (4, 5, 6) grid stored with its first axis along world R, its second along S
    (reversed) and its third along A, as ParaVision stores a sagittal slab."""
    linear = np.zeros((3, 3))
    linear[2, 0], linear[0, 1], linear[1, 2] = 200.0, -50.0, 40.0  # world (S, A, R) rows
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = (900.0, -120.0, 35.0)
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return Volume(data, (200.0, 50.0, 40.0), {"value_unit": "Hz"}, affine_um=affine)


def test_permuted_grid_is_reordered_to_the_world_axes():
    """napari cannot draw a 2-D slice of a layer whose affine permutes the displayed axes
    (the block is singular): the layer's axes follow the world's, every voxel where it was."""
    vol = sagittal_volume()
    (data, kwargs, kind), = volume_to_layer_data(vol)
    layer = Layer.create(data, kwargs, kind)
    order = kwargs["metadata"]["mrmicro"]["array_axes_from_file"]
    assert order == (1, 2, 0) and data.shape == (5, 6, 4)
    block = np.asarray(kwargs["affine"])[:3, :3]
    np.testing.assert_allclose(np.abs(block), np.eye(3))  # only a flip is left
    assert kwargs["scale"] == (50.0, 40.0, 200.0)
    for index in np.ndindex(vol.data.shape):
        new = tuple(index[j] for j in order)
        assert data[new] == vol.data[index]
        expected = geometry.world_points(vol.affine_um, np.array([index], float))[0]
        np.testing.assert_allclose(layer.data_to_world(new), expected, atol=1e-9)
    # an axis-aligned or merely oblique grid keeps its axes
    for plain in (Volume(vol.data, (1.0,) * 3, {}),
                  Volume(vol.data, (50.0, 40.0, 200.0), {},
                         affine_um=geometry.from_xyz_affine(oblique_affine(), 1e3))):
        (same, kw, _), = volume_to_layer_data(plain)
        assert same is plain.data and "array_axes_from_file" not in kw["metadata"]["mrmicro"]


def test_reordered_layer_writes_back_to_the_same_place(tmp_path):
    vol = sagittal_volume()
    (data, kwargs, kind), = volume_to_layer_data(vol)
    layer = Layer.create(data, kwargs, kind)
    write_volume(tmp_path / "back.nii", layer_to_volume(layer.data, layer.as_layer_data_tuple()[1]))
    back = read_volume(tmp_path / "back.nii")
    for index in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        new = tuple(index[j] for j in (1, 2, 0))
        world = geometry.world_points(vol.affine_um, np.array([index], float))[0]
        np.testing.assert_allclose(
            geometry.world_points(back.affine_um, np.array([new], float))[0], world, atol=1e-3)
        assert back.data[new] == vol.data[index]


@pytest.mark.gui
def test_paravision_sagittal_field_map_draws_in_2d(make_napari_viewer, realdata):
    """ParaVision scan 8 stores its field map with the first axis along world R: before its
    axes were reordered, napari's 2-D canvas failed to draw it (singular affine block)."""
    path = realdata("bruker_pv/pv360_rodent/8/pdata/1/2dseq")
    vol = read_volume(path)
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(path), plugin="napari-mrmicro")
    assert layer.metadata["mrmicro"]["array_axes_from_file"] == (1, 2, 0)
    # a voxel lies where the file puts it: layer voxel (a, b, c) is stored voxel (c, a, b)
    voxel = np.array([10, 20, 40])
    np.testing.assert_allclose(layer.data_to_world(tuple(voxel)),
                               geometry.world_points(vol.affine_um, voxel[None, [2, 0, 1]]
                                                     .astype(float))[0], atol=1e-6)
    assert layer.data[tuple(voxel)] == np.asarray(vol.data)[tuple(voxel[[2, 0, 1]])]
    viewer.dims.set_point(0, layer.data_to_world((32, 0, 0))[0])
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].std() > 5  # the map is drawn, not a blank or failed canvas
    # the QSM dock reads the map's unit, and the Larmor frequency the Hz are relative to
    from napari_mrmicro.widgets.qsm import QSMWidget

    dock = QSMWidget(viewer)
    dock.field.value = layer
    assert dock.field_unit.value == "Hz"
    assert dock.larmor.value == pytest.approx(400.3077, abs=1e-3)  # acqp BF1, in MHz


def test_reordered_diffusion_series_keeps_its_gradients_in_the_world():
    """The b-matrices are in array axes: reordering a sagittal series' axes reorders them,
    so a gradient along world R stays along the layer axis that now runs along R."""
    vol = sagittal_volume()
    b = np.zeros((2, 3, 3))
    b[1, 0, 0] = 1000.0  # along stored axis 0, world R
    series = Volume(np.stack([vol.data, vol.data]), vol.spacing_um,
                    {"acquisition": {"b_matrix_s_per_mm2": b.tolist()}},
                    affine_um=vol.affine_um, axis_labels=("diffusion", "z", "y", "x"))
    (data, kwargs, _), = volume_to_layer_data(series)
    assert data.shape == (2, 5, 6, 4)
    moved = np.asarray(kwargs["metadata"]["mrmicro"]["acquisition"]["b_matrix_s_per_mm2"])
    expected = np.zeros((2, 3, 3))
    expected[1, 2, 2] = 1000.0  # layer axis 2 runs along world R now
    np.testing.assert_array_equal(moved, expected)
