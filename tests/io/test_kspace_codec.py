"""The k-space codec: KSpace <-> Volume, napari layer data and OME-Zarr store, losslessly,
and every reader, pipeline step and CLI command through it with the acquired mask."""

import json
import math

import numpy as np
import pytest
import zarr

from napari_mrmicro.core import Acquisition, KSpace, cs_reconstruct, reconstruct
from napari_mrmicro.core.kspace import centered_fft
from napari_mrmicro.io import FormatError, Volume, kspace_codec, omezarr, read_volume

SHAPE = (4, 8, 12)  # z, y, x


def _phantom_kspace(shape=SHAPE, echoes=2, coils=None, seed=0):
    image = np.random.default_rng(seed).random(((coils,) if coils else ()) + (echoes,) + shape)
    return centered_fft(image + 0.5).astype(np.complex64)


def _partial_fourier_mask(shape=SHAPE, missing=3):
    """Lines 0..missing-1 of y not acquired (one side: partial Fourier)."""
    mask = np.ones(shape, bool)
    mask[:, :missing, :] = False
    return mask


def _kspace(coils=None, **changes):
    acq = Acquisition(matrix=SHAPE, fov_um=(400.0, 800.0, 1200.0), te_ms=(3.0, 7.0),
                      b0_tesla=11.7)
    data = _phantom_kspace(coils=coils)
    mask = _partial_fourier_mask()
    data[..., ~mask] = 0
    fields = {"sampled": mask, "coil_axis": 0 if coils else None, "echo_position": 0.375,
              **changes}
    return KSpace(data, acq, **fields)


def _spiral_kspace():
    """Two interleaved spiral arms in the (y, x) plane, with density weights."""
    t = np.linspace(0, 1, 40, dtype=np.float32)
    arms = []
    for a in range(2):
        angle = 6 * np.pi * t + np.pi * a
        arms.append(np.stack([4 * t * np.sin(angle), 4 * t * np.cos(angle)], -1))
    trajectory = np.stack(arms).astype(np.float32)  # (readouts 2, samples 40, 2)
    rng = np.random.default_rng(3)
    data = (rng.normal(size=(1, 2, 40)) + 1j * rng.normal(size=(1, 2, 40))).astype(np.complex64)
    acq = Acquisition(matrix=(1, 8, 8), fov_um=(500.0, 800.0, 800.0), nucleus="13C")
    return KSpace(data, acq, trajectory=trajectory,
                  density=np.hypot(*trajectory.transpose(2, 0, 1)).astype(np.float32))


def assert_same_kspace(a: KSpace, b: KSpace):
    assert b.data.dtype == np.complex64
    np.testing.assert_array_equal(b.data, a.data)
    for name in ("sampled", "trajectory", "density"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert y.dtype == x.dtype
            np.testing.assert_array_equal(y, x)
    assert b.acquisition == a.acquisition
    assert (b.coil_axis, b.multislice, b.echo_position) == \
        (a.coil_axis, a.multislice, a.echo_position)


@pytest.mark.parametrize("kind", ["partial_fourier", "coils_multislice", "spiral"])
def test_volume_round_trip(kind):
    kspace = {"partial_fourier": lambda: _kspace(),
              "coils_multislice": lambda: _kspace(coils=3, multislice=True),
              "spiral": _spiral_kspace}[kind]()
    volume = kspace_codec.kspace_to_volume(kspace, {"format": "test", "source": "here"})
    assert volume.metadata["kspace"] is True and volume.metadata["format"] == "test"
    assert volume.data is kspace.data
    if kspace.cartesian:
        assert volume.spacing_um == kspace.acquisition.voxel_um
        assert volume.axis_labels[-4:] == ("echo", "z", "y", "x")
        assert volume.metadata["sampled_fraction"] == pytest.approx(5 / 8)
    else:
        assert volume.axis_labels == ("echo", "readout", "sample")
    assert_same_kspace(kspace, kspace_codec.volume_to_kspace(volume))


def test_stated_fields_and_assumed_ones_rebuild_the_protocol():
    kspace = _kspace()
    stated = {"matrix": list(SHAPE), "te_ms": [3.0, 7.0], "b0_tesla": 11.7}  # no FOV stated
    volume = kspace_codec.kspace_to_volume(kspace, stated=stated)
    assert volume.metadata["acquisition"] == stated
    assert volume.metadata["acquisition_assumed"]["fov_um"] == [400.0, 800.0, 1200.0]
    assert kspace_codec.volume_to_kspace(volume).acquisition == kspace.acquisition
    with pytest.raises(ValueError, match="stated acquisition"):
        kspace_codec.kspace_to_volume(kspace, stated={**stated, "b0_tesla": 9.4})


@pytest.mark.parametrize("kind", ["partial_fourier", "coils_multislice", "spiral"])
def test_layer_round_trip(kind):
    kspace = {"partial_fourier": lambda: _kspace(),
              "coils_multislice": lambda: _kspace(coils=2, multislice=True),
              "spiral": _spiral_kspace}[kind]()
    shown, meta = kspace_codec.layer_data(kspace_codec.kspace_to_volume(kspace))
    assert shown.dtype == np.float32
    np.testing.assert_allclose(shown, np.log1p(np.abs(kspace.data)), rtol=1e-6)
    assert meta["kspace"] is kspace.data and kspace_codec.is_kspace(meta)
    assert_same_kspace(kspace, kspace_codec.layer_to_kspace(meta))


def test_one_echo_layer_of_zyx_kspace_gets_its_echo_axis():
    kspace = _kspace()
    meta = {"kspace": kspace.data[0], "acquisition": kspace.acquisition.to_dict()}
    back = kspace_codec.layer_to_kspace(meta)
    assert back.data.shape == (1,) + SHAPE and back.sampled is None


@pytest.mark.parametrize("kind", ["partial_fourier", "coils_multislice", "spiral"])
def test_ome_zarr_round_trip_is_lossless_and_json_clean(tmp_path, kind):
    kspace = {"partial_fourier": lambda: _kspace(),
              "coils_multislice": lambda: _kspace(coils=2, multislice=True),
              "spiral": _spiral_kspace}[kind]()
    path = tmp_path / "k.ome.zarr"
    omezarr.write(path, kspace_codec.kspace_to_volume(kspace, name="E6 k-space",
                                                      origin_um=(-200.0, 10.0, 5.0)))
    text = (path / ".zattrs").read_text()
    assert "array(" not in text and "\\n" not in text  # never an array's repr
    attrs = json.loads(text)
    described = attrs["napari-mrmicro"]["kspace"]
    assert json.loads(json.dumps(described, allow_nan=False)) == described
    assert described["echo_position"] == kspace.echo_position
    if kspace.cartesian:  # NGFF: receivers are channels, echoes one custom (slider) axis
        coils = [{"name": "coil", "type": "channel"}] if kspace.coil_axis is not None else []
        assert attrs["multiscales"][0]["axes"][:-3] == coils + [{"name": "echo"}]
    group = zarr.open_group(str(path), mode="r")
    shown = group["0"]  # what an OME-NGFF viewer shows: the log-magnitude
    assert shown.dtype == np.float32 and shown.shape == kspace.data.shape
    assert group["kspace/data"].dtype == np.float32
    if kspace.sampled is not None:
        assert group["kspace/sampled"].dtype == np.uint8

    volume = read_volume(path)
    assert volume.data.dtype == np.complex64 and volume.name == "E6 k-space"
    if kspace.cartesian:
        assert volume.origin_um == (-200.0, 10.0, 5.0)
    assert_same_kspace(kspace, kspace_codec.volume_to_kspace(volume))


def test_stored_kspace_keeps_assumed_protocol_fields(tmp_path):
    kspace = _kspace()
    path = tmp_path / "k.zarr"
    omezarr.write(path, kspace_codec.kspace_to_volume(kspace, stated={"matrix": list(SHAPE)}))
    back = omezarr.read(path)
    assert back.metadata["acquisition"] == {"matrix": list(SHAPE)}
    assert kspace_codec.volume_to_kspace(back).acquisition == kspace.acquisition


def _store(tmp_path):
    path = tmp_path / "k.zarr"
    omezarr.write(path, kspace_codec.kspace_to_volume(_kspace()))
    return path


def _edit_payload(path, change):
    attrs = json.loads((path / ".zattrs").read_text())
    change(attrs["napari-mrmicro"])
    (path / ".zattrs").write_text(json.dumps(attrs))


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(kspace="array([[0.1+0.2j]])"), "older napari-mrmicro"),
    (lambda p: p.update(kspace=True), "older napari-mrmicro"),
    (lambda p: p["kspace"].update(shape=[2, 4, 8, 13]), r"kspace/data is \(2, 4, 8, 12, 2\)"),
    (lambda p: p["kspace"].update(arrays=["data", "labels"]), "not valid"),
    (lambda p: p["kspace"].update(coil_axis=2), "coil_axis"),
    (lambda p: p["kspace"].update(echo_position=1.5), "echo_position"),
    (lambda p: p["kspace"].update(arrays=["data", "sampled", "density"]),
     "array 'density' named in the attributes is missing"),
])
def test_bad_stores_are_refused_naming_the_file(tmp_path, change, message):
    path = _store(tmp_path)
    _edit_payload(path, change)
    with pytest.raises(FormatError, match=message) as error:
        omezarr.read(path)
    assert str(path) in str(error.value)


def test_mask_that_is_not_zero_or_one_is_refused(tmp_path):
    path = _store(tmp_path)
    group = zarr.open_group(str(path), mode="r+")
    group["kspace/sampled"][0, 0, 0] = 2
    with pytest.raises(FormatError, match="sampled holds values other than 0 and 1"):
        omezarr.read(path)


def test_what_counts_as_kspace():
    complex_k = np.zeros((1, 2, 2, 2), np.complex64)
    assert kspace_codec.is_kspace({"kspace": True})  # a Volume's
    assert kspace_codec.is_kspace({"kspace": complex_k})  # a layer's
    for meta in ({"kspace": "array([[0j]])"}, {"kspace": np.ones(3)}, {"kspace": None}, {},
                 None):
        assert not kspace_codec.is_kspace(meta)


def test_parts_that_do_not_fit_are_refused():
    kspace = _kspace()
    with pytest.raises(ValueError, match="sampled must be a bool mask of shape"):
        kspace_codec.kspace_to_volume(KSpace(kspace.data, kspace.acquisition,
                                             sampled=kspace.sampled[:, :4]))
    with pytest.raises(ValueError, match="acquisition matrix"):
        kspace_codec.kspace_to_volume(KSpace(kspace.data[..., :6], kspace.acquisition))
    with pytest.raises(ValueError, match="holds an image, not k-space"):
        kspace_codec.volume_to_kspace(Volume(np.ones(SHAPE, np.float32), (1, 1, 1),
                                             {"source": "mag.tif"}))
    with pytest.raises(ValueError, match="layer 'mag' holds no k-space"):
        kspace_codec.layer_to_kspace({"kspace": True}, "mag")


# --------------------------------------------------------------------------- napari layers


@pytest.mark.gui
def test_kspace_layer_saved_as_ome_zarr_and_opened_again(make_napari_viewer, tmp_path):
    """The napari path: k-space layer -> Save (npe2 writer) -> store -> Open -> layer."""
    from napari_mrmicro._layers import volume_to_layer_data
    from napari_mrmicro.widgets._results import add_layers

    viewer = make_napari_viewer()
    kspace = _kspace(coils=2)
    (layer,) = add_layers(viewer, volume_to_layer_data(kspace_codec.kspace_to_volume(
        kspace, {"source": "scan 6"}, name="E6", origin_um=(100.0, 0.0, -50.0))))
    assert layer.name == "E6 k-space"
    np.testing.assert_allclose(layer.data, np.log1p(np.abs(kspace.data)), rtol=1e-6)

    path = tmp_path / "saved.zarr"
    layer.save(str(path), plugin="napari-mrmicro")
    assert "array(" not in (path / ".zattrs").read_text()

    (back,) = viewer.open(path, plugin="napari-mrmicro")
    assert back.name.startswith("E6 k-space")  # napari numbers the second one
    np.testing.assert_array_equal(back.data, layer.data)  # the log-magnitude shown ...
    assert_same_kspace(kspace, kspace_codec.layer_to_kspace(back.metadata["mrmicro"]))
    assert tuple(back.translate)[-3:] == pytest.approx((100.0, 0.0, -50.0))


def test_image_layer_still_saves_as_an_image(tmp_path):
    from napari_mrmicro._writer import write_omezarr

    data = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    write_omezarr(str(tmp_path / "i.zarr"), data, {"scale": (2.0, 1.0, 1.0),
                                                   "units": ("µm",) * 3, "name": "mag",
                                                   "metadata": {"mrmicro": {}}})
    back = omezarr.read(tmp_path / "i.zarr")
    assert "kspace" not in back.metadata
    np.testing.assert_array_equal(back.data, data)


# --------------------------------------------------------------------------- readers, pipeline, CLI


def _partial_fourier_scan(tmp_path):
    """A Bruker FLASH with 6 of 8 lines and 12 of 16 readout samples (partial echo)."""
    from test_raw_bruker import phantom_kspace, write_scan

    kspace, _ = phantom_kspace((1, 8, 16), (-2, -1))
    write_scan(tmp_path / "4", kspace[None, None], [-2, -1, 0, 1, 2, 3], points=12)
    return tmp_path / "4"


def test_raw_reader_volume_keeps_the_acquired_mask(tmp_path):
    from napari_mrmicro.io import bruker_raw

    scan = _partial_fourier_scan(tmp_path)
    kspace = bruker_raw.read_kspace(scan)
    volume = read_volume(scan)
    assert kspace.sampled is not None and not kspace.sampled.all()
    np.testing.assert_array_equal(volume.metadata["sampled"], kspace.sampled)
    assert volume.metadata["echo_position"] == kspace.echo_position
    assert_same_kspace(kspace, kspace_codec.volume_to_kspace(volume))


def test_recon_from_a_store_runs_partial_fourier_from_the_acquired_mask(tmp_path, capsys):
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import bruker_raw

    scan = _partial_fourier_scan(tmp_path)
    kspace = bruker_raw.read_kspace(scan)
    assert main(["convert", str(scan), str(tmp_path / "k.zarr")]) == 0
    assert main(["recon", str(tmp_path / "k.zarr"), str(tmp_path / "mag.tif")]) == 0
    import tifffile

    magnitude = tifffile.imread(tmp_path / "mag.tif")
    with_mask = np.abs(reconstruct(kspace))[0, 0]  # POCS on the acquired mask
    zero_filled = np.abs(reconstruct(kspace.data))[0, 0]
    np.testing.assert_allclose(magnitude, with_mask, rtol=1e-4, atol=1e-4 * with_mask.max())
    assert np.abs(magnitude - zero_filled).max() > 0.01 * zero_filled.max()


def test_pipeline_compressed_sensing_uses_the_acquired_mask(tmp_path):
    from napari_mrmicro.pipeline import Specimen, recon_step

    kspace = _kspace(echo_position=None)
    kspace.data = kspace.data[:1]
    kspace.acquisition = Acquisition(matrix=SHAPE, fov_um=(400.0, 800.0, 1200.0))
    rng = np.random.default_rng(5)
    mask = rng.random(SHAPE) < 0.5
    mask[:, 3:5, :] = True  # calibration lines
    kspace.sampled = mask
    kspace.data = np.where(mask, kspace.data, 0).astype(np.complex64)
    specimen = Specimen("s", tmp_path, {"kspace": kspace_codec.kspace_to_volume(kspace)})
    recon_step(specimen, cs="tv", lam=0.01, iterations=5)  # acceleration 1: the acquired mask
    expected = cs_reconstruct(kspace, mask=mask, method="tv", lam=0.01, iterations=5)
    np.testing.assert_allclose(specimen.volumes["image"].data, np.abs(expected[0]),
                               rtol=1e-5, atol=1e-6)
    for key in kspace_codec.KSPACE_KEYS:
        assert key not in specimen.volumes["image"].metadata


def test_real_pv360_partial_echo_flash_through_the_store(tmp_path, realdata):
    """ParaVision 360 scan 6 (partial echo, zero-filled): mask and echo position survive the
    Volume and the OME-Zarr store, and the recon from the store is the recon of the file."""
    from napari_mrmicro.io import bruker_raw
    from napari_mrmicro.pipeline import Specimen, recon_step

    raw = realdata("bruker_pv/pv360_rodent/6") / "rawdata.job0"
    acquired = bruker_raw.read_kspace(raw)
    assert acquired.sampled is not None and 0 < acquired.echo_position < 0.5
    volume = read_volume(raw)
    kspace = kspace_codec.volume_to_kspace(volume)
    np.testing.assert_array_equal(kspace.sampled, acquired.sampled)
    assert kspace.echo_position == acquired.echo_position
    path = tmp_path / "6.zarr"
    omezarr.write(path, volume)
    stored = read_volume(path)
    assert_same_kspace(kspace, kspace_codec.volume_to_kspace(stored))
    assert math.isclose(stored.metadata["sampled_fraction"], kspace.sampled.mean())
    specimen = Specimen("6", tmp_path, {"kspace": stored})
    recon_step(specimen)
    np.testing.assert_allclose(specimen.volumes["image"].data, np.abs(reconstruct(kspace))[0],
                               rtol=1e-5, atol=1e-6)


def test_spiral_from_a_store_reconstructs_as_the_kspace_it_holds(tmp_path):
    """A trajectory survives the store, so the pipeline's recon grids it (NUFFT)."""
    from napari_mrmicro.pipeline import Specimen, load_volume, recon_step

    kspace = _spiral_kspace()
    omezarr.write(tmp_path / "spiral.zarr", kspace_codec.kspace_to_volume(kspace))
    specimen = Specimen("spiral", tmp_path, {"kspace": load_volume(tmp_path / "spiral.zarr")})
    recon_step(specimen)
    image = specimen.volumes["image"]
    np.testing.assert_allclose(image.data, np.abs(reconstruct(kspace))[0], rtol=1e-5, atol=1e-6)
    assert image.spacing_um == (500.0, 100.0, 100.0)
