"""ISMRMRD/MRD HDF5: files written here with the reference ``ismrmrd`` package (header via
its XSD bindings, acquisitions via ``Dataset.append_acquisition``)."""

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
ismrmrd = pytest.importorskip("ismrmrd")
import ismrmrd.xsd as xsd  # noqa: E402

from napari_mrmicro.core.kspace import centered_fft, centered_ifft  # noqa: E402
from napari_mrmicro.io import ismrmrd as mrd  # noqa: E402
from napari_mrmicro.io._common import FormatError  # noqa: E402


def make_header(matrix, fov_mm, recon_x=None, trajectory=xsd.trajectoryType.CARTESIAN,
                te=(5.0,), centre_y=None, centre_z=None, channels=1):
    """An ismrmrdHeader for an encoded matrix/FOV given (z, y, x)."""
    (nz, ny, nx), (fz, fy, fx) = matrix, fov_mm
    recon_x = recon_x or nx
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=ny - 1,
                                             center=ny // 2 if centre_y is None else centre_y),
        kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=nz - 1,
                                             center=nz // 2 if centre_z is None else centre_z))
    encoding = xsd.encodingType(
        trajectory=trajectory,
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=nz),
            fieldOfView_mm=xsd.fieldOfViewMm(x=fx, y=fy, z=fz)),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=recon_x, y=ny, z=nz),
            fieldOfView_mm=xsd.fieldOfViewMm(x=fx * recon_x / nx, y=fy, z=fz)),
        encodingLimits=limits)
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=400_130_000))
    header.acquisitionSystemInformation = xsd.acquisitionSystemInformationType(
        systemFieldStrength_T=9.4, receiverChannels=channels)
    header.encoding.append(encoding)
    header.sequenceParameters = xsd.sequenceParametersType(
        TR=[120.0], TE=list(te), flipAngle_deg=[25.0], sequence_type="Flash")
    return header


def write_mrd(path, header, lines):
    """``lines``: list of (complex data (channels, samples), header fields, idx dict, flags)."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dataset:
        dataset.write_xml_header(xsd.ToXML(header))
        for data, fields, idx, flags, position in lines:
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, np.complex64),
                                                 **fields)
            for key, value in idx.items():
                setattr(acq.idx, key, value)
            for flag in flags:
                acq.set_flag(flag)
            acq.position[:] = position
            acq.slice_dir[:] = (0.0, 0.0, 1.0)
            dataset.append_acquisition(acq)
    return path


def phantom_kspace(shape, axes, seed=0):
    image = np.random.default_rng(seed).random(shape) + 0.5
    return centered_fft(image, axes=axes).astype(np.complex64), image


@pytest.fixture
def volume3d(tmp_path):
    """3-D, 2 channels, 2 contrasts, shuffled lines, centre of step 1 at 4 (of 6), noise."""
    nz, ny, nx = 4, 6, 8
    kspace = np.empty((2, 2, nz, ny, nx), np.complex64)
    images = np.empty(kspace.shape)
    for c in range(2):
        for e in range(2):
            kspace[c, e], images[c, e] = phantom_kspace((nz, ny, nx), (-3, -2, -1), 2 * c + e)
    rng = np.random.default_rng(5)
    noise = (rng.normal(size=(3, 2, nx)) + 1j * rng.normal(size=(3, 2, nx))) * [[[1.0], [2.0]]]
    lines = [(n, {"center_sample": nx // 2, "sample_time_us": 20.0}, {}, [19], (0, 0, 0))
             for n in noise]
    order = rng.permutation([(e, z, y) for e in range(2) for z in range(nz) for y in range(ny)])
    for e, z, y in order:
        # step 1 index s sits at k index s - 4 + ny // 2: stored step = y + 1
        lines.append((kspace[:, e, z, y], {"center_sample": nx // 2, "sample_time_us": 20.0},
                      {"kspace_encode_step_1": y + 1, "kspace_encode_step_2": z,
                       "contrast": e}, [], (0, 0, 0)))
    header = make_header((nz, ny, nx), (2.0, 3.0, 4.0), te=(5.0, 9.0), centre_y=4, channels=2)
    path = write_mrd(tmp_path / "flash3d.h5", header, lines)
    return path, kspace, images


def test_3d_two_channels_two_echoes(volume3d):
    path, kspace, images = volume3d
    ks = mrd.read_kspace(path)
    assert ks.data.shape == (2, 2, 4, 6, 8) and ks.coil_axis == 0
    np.testing.assert_array_equal(ks.data, kspace)
    assert not ks.multislice and ks.sampled is None
    recon = centered_ifft(ks.data).real
    np.testing.assert_allclose(recon, images, atol=1e-5)


def test_3d_metadata_acquisition_and_noise(volume3d):
    path, _, _ = volume3d
    vol = mrd.read(path)
    md = vol.metadata
    assert md["format"] == "ismrmrd" and md["kspace"] is True and md["coil_axis"] == 0
    acq = md["acquisition"]
    assert acq["matrix"] == [4, 6, 8]
    np.testing.assert_allclose(acq["fov_um"], [2000.0, 3000.0, 4000.0])
    # B0 from H1resonanceFrequency_Hz (the phase's reference), not the nominal 9.4 T
    assert acq["b0_tesla"] == pytest.approx(400.13 / 42.577478, rel=1e-12)
    assert acq["te_ms"] == [5.0, 9.0] and acq["tr_ms"] == 120.0
    assert acq["flip_deg"] == 25.0 and acq["sequence"] == "gradient_echo"
    assert acq["bandwidth_hz"] == pytest.approx(50000.0) and acq["averages"] == 1
    np.testing.assert_allclose(vol.spacing_um, (500.0, 500.0, 500.0))
    assert vol.axis_labels == ("coil", "echo", "z", "y", "x")
    noise = md["noise"]
    assert noise["scans"] == 3 and noise["samples"] == 24
    assert noise["std"][1] > noise["std"][0]
    assert md["header"]["encoding"]["encodedSpace"]["matrixSize"] == {"x": 8, "y": 6, "z": 4}
    assert md["header"]["sequenceParameters"]["TE"] == [5.0, 9.0]


def test_multislice_oversampled_readout_averages_and_reverse(tmp_path):
    slices, ny, nx = 3, 4, 16  # encoded readout 2x the 8-point recon matrix
    kspace, _ = phantom_kspace((slices, ny, nx), (-2, -1))
    rng = np.random.default_rng(2)
    lines = []
    for s in range(slices):
        for y in range(ny):
            line = kspace[s, y][None]
            offset = (rng.normal(size=nx) * 0.1).astype(np.float32)
            for average in range(2):
                stored, flags = line + offset * (1 - 2 * average), []
                if y % 2:  # reversed readout, mirrored about centre sample
                    stored, flags = np.roll(stored[:, ::-1], 1, axis=-1), [22]
                lines.append((stored, {"center_sample": nx // 2, "sample_time_us": 10.0},
                              {"kspace_encode_step_1": y, "slice": s, "average": average},
                              flags, (0.0, 0.0, 0.25 * s)))
    header = make_header((1, ny, nx), (0.2, 2.0, 4.0), recon_x=8)
    path = write_mrd(tmp_path / "ms.mrd", header, lines)
    vol = mrd.read(path)
    assert vol.data.shape == (1, slices, ny, nx)
    np.testing.assert_allclose(vol.data[0], kspace, atol=1e-5)  # averages cancel offsets
    md = vol.metadata
    assert md["multislice"] is True and md["readout_oversampling"] == 2.0
    assert md["acquisition"]["averages"] == 2
    assert vol.spacing_um == pytest.approx((250.0, 500.0, 250.0))  # slice step from positions
    assert md["spacing_source"] == "acquisition positions"


def test_partial_readout_and_skipped_navigators(tmp_path):
    ny, nx = 4, 8
    kspace, _ = phantom_kspace((1, ny, nx), (-2, -1))
    lines = [(np.ones((1, nx)), {"center_sample": 4}, {}, [23], (0, 0, 0))]
    for y in range(ny):  # partial echo: 6 samples, centre at sample 2; first one discarded
        lines.append((kspace[0, y, 2:][None], {"center_sample": 2, "discard_pre": 1},
                      {"kspace_encode_step_1": y}, [], (0, 0, 0)))
    path = write_mrd(tmp_path / "pe.h5", make_header((1, ny, nx), (1.0, 1.0, 1.0)), lines)
    ks = mrd.read_kspace(path)
    expected = np.zeros_like(kspace)
    expected[..., 3:] = kspace[..., 3:]
    np.testing.assert_allclose(ks.data[0], expected)
    assert ks.sampled[0, :, 3:].all() and not ks.sampled[0, :, :3].any()
    assert mrd.read(path).metadata["skipped_scans"] == {"navigation": 1}


def test_can_read(volume3d, tmp_path):
    path, _, _ = volume3d
    assert mrd.can_read(path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    assert not mrd.can_read(other)
    (tmp_path / "text.h5").write_text("not hdf5")
    assert not mrd.can_read(tmp_path / "text.h5")
    assert not mrd.can_read(tmp_path)


def test_non_cartesian_refused(tmp_path):
    header = make_header((1, 4, 8), (1.0, 1.0, 1.0), trajectory=xsd.trajectoryType.RADIAL)
    lines = [(np.ones((1, 8)), {"center_sample": 4}, {}, [], (0, 0, 0))]
    path = write_mrd(tmp_path / "radial.h5", header, lines)
    with pytest.raises(FormatError, match="radial.h5.*non-Cartesian trajectory 'radial' "
                                          "but the acquisitions carry no 2-D traj"):
        mrd.read(path)


def test_truncated_file(volume3d, tmp_path):
    path, _, _ = volume3d
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(FormatError, match="cut.h5"):
        mrd.read(cut)


def test_lines_outside_matrix_and_absurd_matrix(tmp_path):
    lines = [(np.ones((1, 8)), {"center_sample": 4}, {"kspace_encode_step_1": 9}, [],
              (0, 0, 0))]
    path = write_mrd(tmp_path / "out.h5", make_header((1, 4, 8), (1, 1, 1)), lines)
    with pytest.raises(FormatError, match="out.h5.*outside the 4-line"):
        mrd.read(path)
    lines[0][2]["kspace_encode_step_1"] = 0
    path = write_mrd(tmp_path / "huge.h5", make_header((60000, 60000, 8), (1, 1, 1)), lines)
    with pytest.raises(FormatError, match="huge.h5.*more than 64 x the acquired"):
        mrd.read(path)


def test_data_size_disagreeing_with_header(volume3d):
    path, _, _ = volume3d
    with h5py.File(path, "r+") as f:
        record = f["dataset/data"][5]
        record["head"]["number_of_samples"] = 9
        f["dataset/data"][5] = record
    with pytest.raises(FormatError, match="differ in active_channels or number_of_samples"):
        mrd.read(path)


def test_repetitions_refused_and_bad_xml(tmp_path):
    lines = [(np.ones((1, 8)), {"center_sample": 4}, {"repetition": r}, [], (0, 0, 0))
             for r in range(2)]
    path = write_mrd(tmp_path / "rep.h5", make_header((1, 4, 8), (1, 1, 1)), lines)
    with pytest.raises(FormatError, match="rep.h5.*idx.repetition takes 2 values"):
        mrd.read(path)
    with h5py.File(path, "r+") as f:
        f["dataset/xml"][0] = b"<ismrmrdHeader><encoding>"
    with pytest.raises(FormatError, match="rep.h5.*not valid XML"):
        mrd.read(path)


# --------------------------------------------------------------------------- non-Cartesian


def blob_kspace(kappa, n, centre=(3.0, -5.0), sigma=4.0):
    """Samples at κ (cycles/FOV, (y, x)) of a Gaussian blob exp(−|r − c|²/2σ²) (pixels) on an
    n × n grid: (1/n)·2πσ²·e^{−2π²σ²|κ/n|²}·e^{−2πiκ·c/n}, its continuous transform."""
    q = np.asarray(kappa, float) / n
    value = 2 * np.pi * sigma**2 * np.exp(-2 * np.pi**2 * sigma**2 * (q**2).sum(-1)) \
        * np.exp(-2j * np.pi * (q @ np.asarray(centre)))
    return (value / n).astype(np.complex64)


def blob_image(n, centre=(3.0, -5.0), sigma=4.0):
    r = np.arange(n) - n // 2
    return np.exp(-((r[:, None] - centre[0]) ** 2 + (r[None, :] - centre[1]) ** 2)
                  / (2 * sigma**2))


def spiral_yx(n, interleaves=12, samples=400):
    t = np.linspace(0, 1, samples)
    angle = 2 * np.pi * (3 * t[None, :] + np.arange(interleaves)[:, None] / interleaves)
    return np.stack([n / 2 * t * np.sin(angle), n / 2 * t * np.cos(angle)], -1)


def test_spiral_two_channels_two_contrasts(tmp_path):
    """Gadgetron-style spiral: traj (kx, ky) within ±0.5 of the matrix, per acquisition."""
    pytest.importorskip("finufft")
    from napari_mrmicro.core.recon import reconstruct

    n, gains = 32, (1.0, 0.5j)
    kappa = spiral_yx(n)
    values = blob_kspace(kappa, n)
    lines = [(np.ones((2, 400)), {"center_sample": 0}, {}, [19], (0, 0, 0))]  # noise scan
    for e in range(2):
        for i in range(kappa.shape[0]):
            traj = (kappa[i, :, ::-1] / n).astype(np.float32)  # (samples, (kx, ky))
            data = np.stack([g * (e + 1) * values[i] for g in gains])
            lines.append((data, {"trajectory_dimensions": 2, "trajectory": traj,
                                 "sample_time_us": 4.0}, {"contrast": e, "kspace_encode_step_1": i},
                          [], (0, 0, 0)))
    header = make_header((1, n, n), (1.0, 4.0, 4.0), te=(1.0, 2.0),
                         trajectory=xsd.trajectoryType.SPIRAL, channels=2)
    path = write_mrd(tmp_path / "spiral.h5", header, lines)
    ks = mrd.read_kspace(path)
    assert ks.data.shape == (2, 2, 12, 400) and ks.coil_axis == 0
    np.testing.assert_allclose(ks.trajectory, kappa, atol=1e-4)
    assert ks.density is None and ks.acquisition.matrix == (1, n, n)
    np.testing.assert_allclose(ks.data[1, 1], 2 * gains[1] * values, rtol=1e-6)
    image = reconstruct(ks)  # root-sum-of-squares of the two coils
    assert image.shape == (2, 1, n, n)
    truth = np.hypot(*np.abs(gains)) * blob_image(n)
    assert np.linalg.norm(image[0, 0] - truth) / np.linalg.norm(truth) < 0.05
    vol = mrd.read(path)
    md = vol.metadata
    assert md["trajectory_type"] == "spiral" and md["noise"]["scans"] == 1
    assert md["trajectory_units"].startswith("relative to the encoded matrix")
    np.testing.assert_allclose(md["acquisition"]["fov_um"], [1000.0, 4000.0, 4000.0])


def test_radial_in_cycles_per_fov_with_density_weights(tmp_path):
    pytest.importorskip("finufft")
    from napari_mrmicro.core.nufft import reconstruct_noncartesian

    n, spokes, samples = 24, 40, 48
    k = (np.arange(samples) - samples / 2) / 2
    theta = np.pi * np.arange(spokes) / spokes
    kappa = np.stack([k * np.sin(theta)[:, None], k * np.cos(theta)[:, None]], -1)
    weights = (np.pi / spokes * np.maximum(np.abs(k), 0.125) * 0.5)[None].repeat(spokes, 0)
    values = blob_kspace(kappa, n)
    lines = []
    for i in range(spokes):
        traj = np.column_stack([kappa[i, :, 1], kappa[i, :, 0], weights[i]]).astype(np.float32)
        lines.append((values[i][None], {"trajectory_dimensions": 3, "trajectory": traj},
                      {"kspace_encode_step_1": i}, [], (0, 0, 0)))
    header = make_header((1, n, n), (1.0, 2.0, 2.0), trajectory=xsd.trajectoryType.RADIAL)
    ks = mrd.read_kspace(write_mrd(tmp_path / "radial.mrd", header, lines))
    assert ks.data.shape == (1, spokes, samples) and ks.coil_axis is None
    np.testing.assert_allclose(ks.trajectory, kappa, atol=1e-5)
    np.testing.assert_allclose(ks.density, weights, rtol=1e-6)
    image = reconstruct_noncartesian(ks)[0, 0]
    truth = blob_image(n)
    assert np.linalg.norm(image - truth) / np.linalg.norm(truth) < 0.05


def test_non_cartesian_trajectory_errors(tmp_path):
    header = make_header((1, 8, 8), (1.0, 1.0, 1.0), trajectory=xsd.trajectoryType.SPIRAL)
    traj = np.full((8, 2), 0.9, np.float32)  # beyond ±0.5: taken as cycles per FOV
    # 9 cycles/FOV is beyond the 8-point matrix's ±4 (+ half a cell): refused, not wrapped
    lines = [(np.ones((1, 8)), {"trajectory_dimensions": 2, "trajectory": traj * 10}, {}, [],
              (0, 0, 0))]
    with pytest.raises(FormatError, match="big.h5.*traj reaches"):
        mrd.read_kspace(write_mrd(tmp_path / "big.h5", header, lines))
    lines = [(np.ones((1, 8)), {"trajectory_dimensions": 2, "trajectory": traj},
              {"contrast": e}, [], (0, 0, 0)) for e in range(2)]
    lines[1][1]["trajectory"] = traj * 0.5
    with pytest.raises(FormatError, match="contrasts are sampled on different trajectories"):
        mrd.read_kspace(write_mrd(tmp_path / "two.h5", header, lines))
