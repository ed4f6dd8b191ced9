"""Bruker ParaVision raw data (fid / rawdata.job0 + acqp + method): scans written here
scan by scan following the documented layout, from the centred FFT of a phantom."""

import numpy as np
import pytest

from napari_mrmicro.core.kspace import centered_fft, centered_ifft
from napari_mrmicro.io import bruker_raw
from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.jcamp import format_jcamp

CORE = {"TITLE": "Parameter List, ParaVision 6.0.1", "JCAMPDX": "4.24"}
SCALE = 1000.0


def phantom_kspace(shape, axes, seed=0):
    """Integer-valued k-space of a random positive phantom, and the phantom (scaled)."""
    image = np.random.default_rng(seed).random(shape) + 0.5
    kspace = np.round(centered_fft(image, axes=axes) * SCALE)
    return kspace.astype(np.complex64), image


def write_scan(folder, kspace, steps1, steps2=None, obj_order=None, slices=1,
               phase_factor=1, word="GO_32BIT_SGN_INT", dtype="<i4", kblock=True,
               raw_name="fid", bipolar=False, acqp=None, method=None, points=None):
    """Write ``kspace`` (receiver, echo, z, y, x; DC at N//2) as ParaVision raw data.

    Scans go out fastest first: phase factor, objects (echo fastest), phase-encode
    groups, second phase encode; each scan holds every receiver's readout.
    """
    folder.mkdir(parents=True, exist_ok=True)
    receivers, echoes, nz, ny, nx = kspace.shape
    points = points or nx
    dim = 3 if steps2 is not None else 2
    objects = echoes * (slices if dim == 2 else 1)
    obj_order = list(range(objects)) if obj_order is None else obj_order
    steps2 = steps2 if steps2 is not None else [0]
    scans = []
    for p2 in range(len(steps2)):
        for group in range(len(steps1) // phase_factor):
            for obj in obj_order:
                echo, slice_ = obj % echoes, obj // echoes
                for f in range(phase_factor):
                    y = steps1[group * phase_factor + f] + ny // 2
                    z = steps2[p2] + nz // 2 if dim == 3 else slice_
                    values = []
                    for r in range(receivers):
                        line = kspace[r, echo, z, y, nx - points:]
                        if bipolar and echo % 2:
                            line = np.roll(line, -1)[::-1]
                        pair = np.stack([line.real, line.imag], -1).ravel()
                        values.append(pair.astype(dtype))
                    block = b"".join(v.tobytes() for v in values)
                    if kblock:
                        block += b"\0" * (-len(block) % 1024)
                    scans.append(block)
    (folder / raw_name).write_bytes(b"".join(scans))
    size = [2 * points, len(steps1)] + ([len(steps2)] if dim == 3 else [])
    acqp_params = {**CORE, "ACQ_dim": dim, "ACQ_size": size, "NI": objects, "NR": 1,
                   "NSLICES": slices if dim == 2 else 1, "ACQ_phase_factor": phase_factor,
                   "ACQ_obj_order": obj_order, "GO_raw_data_format": word,
                   "BYTORDA": "big" if dtype.startswith(">") else "little",
                   "GO_block_size": "Standard_KBlock_Format" if kblock else "continuous",
                   "BF1": 400.13, "NUC1": "1H", "ACQ_flip_angle": 30.0,
                   "ACQ_echo_time": [4.0 + 6.0 * e for e in range(echoes)],
                   "ACQ_method": "Bruker:FLASH", "ACQ_scan_name": "FLASH (E5)",
                   **(acqp or {})}
    method_params = {**CORE, "Method": "Bruker:FLASH", "PVM_Matrix": [nx, ny, nz][:dim],
                     "PVM_Fov": [1.2, 0.8, 0.4][:dim], "PVM_EncSteps1": list(steps1),
                     "PVM_EncNReceivers": receivers, "PVM_NEchoImages": echoes,
                     "PVM_EchoTime": 4.0, "PVM_RepetitionTime": 50.0, "PVM_EffSWh": 50000.0,
                     "PVM_NAverages": 2, "PVM_SliceThick": 0.3, **(method or {})}
    if dim == 3:
        method_params["PVM_EncSteps2"] = list(steps2)
    (folder / "acqp").write_text(format_jcamp(acqp_params))
    (folder / "method").write_text(format_jcamp(method_params))
    return folder


def centric(n):
    """Centre-out phase-encode order: 0, -1, 1, -2, 2, ..."""
    return sorted(range(-(n // 2), n - n // 2), key=lambda s: (abs(s), s))


@pytest.fixture
def flash3d(tmp_path):
    kspace, image = phantom_kspace((4, 6, 10), axes=(-3, -2, -1))
    scan = write_scan(tmp_path / "5", kspace[None, None], centric(6), steps2=[1, -2, 0, -1])
    return scan, kspace, image


def test_3d_fid_kblock_padding_and_centric_order(flash3d):
    scan, kspace, image = flash3d
    assert (scan / "fid").stat().st_size == 6 * 4 * 1024  # each 80-byte scan padded
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (1, 4, 6, 10) and ks.data.dtype == np.complex64
    np.testing.assert_array_equal(ks.data[0], kspace)
    assert not ks.multislice and ks.coil_axis is None and ks.sampled is None
    recon = centered_ifft(ks.data[0]).real / SCALE
    np.testing.assert_allclose(recon, image, atol=2e-3)
    assert np.unravel_index(np.abs(ks.data[0]).argmax(), (4, 6, 10)) == (2, 3, 5)


def test_3d_acquisition_and_volume(flash3d):
    scan, kspace, _ = flash3d
    vol = bruker_raw.read(scan / "fid")
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == [4, 6, 10]
    np.testing.assert_allclose(acq["fov_um"], [400.0, 800.0, 1200.0])
    assert acq["b0_tesla"] == pytest.approx(400.13 / 42.577478)
    assert acq["te_ms"] == [4.0] and acq["tr_ms"] == 50.0 and acq["flip_deg"] == 30.0
    assert acq["bandwidth_hz"] == 50000.0 and acq["averages"] == 2
    assert acq["sequence"] == "gradient_echo" and acq["nucleus"] == "1H"
    np.testing.assert_allclose(vol.spacing_um, (100.0, 800 / 6, 120.0))
    assert vol.axis_labels == ("echo", "z", "y", "x")
    md = vol.metadata
    assert md["format"] == "bruker_raw" and md["kspace"] is True
    assert md["multislice"] is False and md["kblock_padded"] is True
    assert md["header"]["method"]["PVM_EncSteps1"] == centric(6)
    assert md["source"].endswith("fid")


def test_multislice_multiecho_two_receivers_big_endian_int16(tmp_path):
    receivers, echoes, slices, ny, nx = 2, 2, 3, 8, 6
    kspace = np.empty((receivers, echoes, slices, ny, nx), np.complex64)
    images = np.empty(kspace.shape)
    for r in range(receivers):
        for e in range(echoes):
            kspace[r, e], images[r, e] = phantom_kspace((slices, ny, nx), (-2, -1),
                                                        seed=10 * r + e)
    # interleaved slices 0, 2, 1 with two echoes each; RARE-like phase factor 2
    order = [0, 1, 4, 5, 2, 3]
    scan = write_scan(tmp_path / "7", kspace, centric(ny), obj_order=order, slices=slices,
                      phase_factor=2, word="GO_16BIT_SGN_INT", dtype=">i2",
                      method={"Method": "Bruker:MSME", "PVM_SPackArrSliceDistance": [0.5]},
                      acqp={"ACQ_method": "Bruker:MSME"})
    vol = bruker_raw.read(scan)
    assert vol.data.shape == kspace.shape
    np.testing.assert_array_equal(vol.data, kspace)
    assert vol.axis_labels == ("coil", "echo", "z", "y", "x")
    md = vol.metadata
    assert md["multislice"] is True and md["coil_axis"] == 0 and md["receivers"] == 2
    assert md["acquisition"]["te_ms"] == [4.0, 10.0]
    assert md["acquisition"]["sequence"] == "spin_echo"
    assert md["acquisition"]["fov_um"][0] == pytest.approx(1500.0)
    assert vol.spacing_um[0] == pytest.approx(500.0)
    recon = centered_ifft(vol.data, axes=(-2, -1)).real / SCALE
    np.testing.assert_allclose(recon, images, atol=2e-3)


def test_pv360_rawdata_job0_is_continuous(tmp_path):
    kspace, _ = phantom_kspace((1, 8, 12), (-2, -1))
    steps = [3, -4, 2, -3, 1, -2, 0, -1]
    scan = write_scan(tmp_path / "9", kspace[None, None], steps, kblock=False,
                      raw_name="rawdata.job0",
                      acqp={"ACQ_jobs": [[24, 8, 1, 1, 0, "job0"]],
                            "ACQ_sw_version": "PV-360.3.4"})
    assert (scan / "rawdata.job0").stat().st_size == 8 * 24 * 4
    ks = bruker_raw.read_kspace(scan / "rawdata.job0")
    np.testing.assert_array_equal(ks.data[0], kspace)
    assert ks.multislice


def test_pv360_float64_pipeline_storage(tmp_path):
    kspace, _ = phantom_kspace((1, 4, 8), (-2, -1))
    write_scan(tmp_path / "3", kspace[None, None] / 7, centric(4), kblock=False,
               raw_name="rawdata.job0", dtype="<f8",
               acqp={"ACQ_ScanPipeJobSettings": [["job0", "STORE_64bit_float"]]})
    ks = bruker_raw.read_kspace(tmp_path / "3")
    np.testing.assert_allclose(ks.data[0], kspace / 7, rtol=1e-6)


def test_partial_fourier_and_readout_oversampling(tmp_path):
    nz, ny, nx = 1, 8, 16  # grid: readout oversampled 2x over PVM_Matrix[0] = 8
    kspace, _ = phantom_kspace((nz, ny, nx), (-2, -1))
    steps = [-2, -1, 0, 1, 2, 3]  # 6 of 8 lines: partial Fourier
    write_scan(tmp_path / "4", kspace[None, None], steps, points=12,
               method={"PVM_Matrix": [8, 8], "PVM_AntiAlias": [2.0, 1.0]})
    vol = bruker_raw.read(tmp_path / "4")
    ks = bruker_raw.read_kspace(tmp_path / "4")
    assert vol.data.shape == (1, 1, 8, 16)
    expected = np.zeros_like(kspace)
    expected[:, 2:, 4:] = kspace[:, 2:, 4:]  # lines -2..3 and the last 12 readout samples
    np.testing.assert_array_equal(vol.data[0], expected)
    assert ks.sampled.sum() == 6 * 12 and ks.sampled[0, 2:, 4:].all()
    assert vol.metadata["readout_oversampling"] == 2.0
    np.testing.assert_allclose(vol.spacing_um[1:], (100.0, 150.0))  # FOV / PVM_Matrix
    assert vol.metadata["acquisition"]["fov_um"][2] == pytest.approx(2400.0)
    assert vol.metadata["sampled_fraction"] == pytest.approx(72 / 128)


def test_repetitions_are_read_one_at_a_time(tmp_path):
    first, _ = phantom_kspace((1, 4, 8), (-2, -1), seed=1)
    second, _ = phantom_kspace((1, 4, 8), (-2, -1), seed=2)
    write_scan(tmp_path / "a", first[None, None], centric(4))
    write_scan(tmp_path / "b", second[None, None], centric(4), acqp={"NR": 2})
    fid = tmp_path / "b" / "fid"
    fid.write_bytes((tmp_path / "a" / "fid").read_bytes() + fid.read_bytes())
    with pytest.raises(FormatError, match=r"NR = 2 repetitions: choose one \(mrmicro recon "
                                          r"--repetition 0..1; repetition= in Python\)"):
        bruker_raw.read(tmp_path / "b")
    np.testing.assert_array_equal(bruker_raw.read_kspace(fid, repetition=0).data[0], first)
    vol = bruker_raw.read(fid, repetition=1)
    np.testing.assert_array_equal(vol.data[0], second)
    assert "rep 2/2" in vol.name and vol.metadata["repetitions"] == 2
    with pytest.raises(FormatError, match="repetition 2 of NR = 2"):
        bruker_raw.read(fid, repetition=2)
    # the command line chooses one too
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import read_volume

    assert main(["recon", str(tmp_path / "b"), str(tmp_path / "rep1.nii"),
                 "--repetition", "1"]) == 0
    image = np.asarray(read_volume(tmp_path / "rep1.nii").data)
    expected = np.abs(centered_ifft(second, axes=(-2, -1)))
    np.testing.assert_allclose(image.squeeze(), expected.squeeze(), rtol=1e-5,
                               atol=1e-6 * expected.max())
    assert main(["recon", str(tmp_path / "b"), str(tmp_path / "r.nii")]) != 0
    assert main(["recon", str(tmp_path / "rep1.nii"), str(tmp_path / "r.nii"),
                 "--repetition", "0"]) != 0


def test_napari_opens_each_repetition_as_a_k_space_layer(tmp_path):
    """What napari's reader gets for NR > 1: one k-space per repetition, in order; a scan
    with more repetitions than open together is refused with the ways to see it."""
    from napari_mrmicro._reader import read_layers
    from napari_mrmicro.io import read_volumes

    reps = [phantom_kspace((1, 4, 8), (-2, -1), seed=s)[0] for s in range(3)]
    for name, count in (("3", 3), ("many", bruker_raw.OPEN_REPETITIONS + 1)):
        write_scan(tmp_path / name, reps[0][None, None], centric(4), acqp={"NR": count})
        fid = tmp_path / name / "fid"
        fid.write_bytes(b"".join(_fid_bytes(tmp_path, r, s) for s, r in
                                 zip(range(count), (reps * count)[:count])))
    volumes = read_volumes(tmp_path / "3")
    assert [v.metadata["repetition"] for v in volumes] == [0, 1, 2]
    for volume, expected in zip(volumes, reps):
        np.testing.assert_array_equal(volume.data[0], expected)
    layers = read_layers(tmp_path / "3" / "fid")
    assert [kwargs["name"].split("rep ")[1].split()[0] for _, kwargs, _ in layers] == \
        ["1/3", "2/3", "3/3"]
    with pytest.raises(FormatError, match=rf"NR = {bruker_raw.OPEN_REPETITIONS + 1} "
                                          r"repetitions, more than the 16 opened together: "
                                          r"reconstruct one \(mrmicro recon --repetition"):
        read_volumes(tmp_path / "many")


def _fid_bytes(tmp_path, kspace, seed) -> bytes:
    """The fid of a one-repetition scan of ``kspace`` (written beside, then read)."""
    folder = tmp_path / f"one{seed}"
    write_scan(folder, kspace[None, None], centric(4))
    return (folder / "fid").read_bytes()


def test_bipolar_multi_gradient_echo_readouts_reversed(tmp_path):
    kspace = np.stack([phantom_kspace((1, 4, 8), (-2, -1), seed=s)[0] for s in range(3)])
    write_scan(tmp_path / "6", kspace[None], centric(4), bipolar=True,
               method={"Method": "Bruker:MGE", "EchoAcqMode": "allEchoes",
                       "PVM_NEchoImages": 3})
    ks = bruker_raw.read_kspace(tmp_path / "6")
    np.testing.assert_array_equal(ks.data, kspace)


def test_can_read(flash3d, tmp_path):
    scan, _, _ = flash3d
    assert bruker_raw.can_read(scan) and bruker_raw.can_read(scan / "fid")
    assert not bruker_raw.can_read(scan / "acqp")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not bruker_raw.can_read(empty)
    assert not bruker_raw.can_read(tmp_path / "missing")
    (scan / "acqp").write_bytes(b"\x00\x01binary")
    assert not bruker_raw.can_read(scan)


def test_truncated_fid(flash3d):
    scan, _, _ = flash3d
    raw = (scan / "fid").read_bytes()
    (scan / "fid").write_bytes(raw[:-1024])
    with pytest.raises(FormatError, match=r"fid.*header implies 24576 bytes.*holds 23552"):
        bruker_raw.read(scan)


def test_absurd_acq_size_refused_before_allocation(tmp_path):
    kspace, _ = phantom_kspace((1, 4, 8), (-2, -1))
    write_scan(tmp_path / "2", kspace[None, None], centric(4))
    text = (tmp_path / "2" / "acqp").read_text().replace("16 4", "16 400000000")
    (tmp_path / "2" / "acqp").write_text(text)
    with pytest.raises(FormatError, match="fid.*header implies"):
        bruker_raw.read(tmp_path / "2")


@pytest.mark.parametrize("acqp, method, message", [
    ({"GO_raw_data_format": "GO_8BIT_SGN_INT"}, {}, "unknown GO_raw_data_format"),
    ({"BYTORDA": "middle"}, {}, "unknown BYTORDA"),
    ({"NR": 3}, {}, r"header implies 12288 bytes \(3 repetitions \(NR\)"),
    ({"ACQ_obj_order": [1]}, {}, "ACQ_obj_order"),
    ({}, {"PVM_EncSteps1": [0, 1, 2, 3]}, "do not fit"),
    ({}, {"PVM_EncSteps1": [0, 1]}, "2 steps for 4"),
    ({}, {"PVM_EncSteps1": [0, 0, 1, -1]}, "same k-space line"),
    ({"ACQ_method": "Bruker:UTE", "PULPROG": "UTE.ppg"}, {"Method": "Bruker:UTE"},
     "UTE: non-Cartesian"),
    ({}, {"Method": "Bruker:SPIRAL", "PVM_SpiralMode": "SpiralOut"}, "spiral"),
    ({}, {"Method": "Bruker:EPI"}, "EPI method without PVM_EpiNEchoes"),
    ({"ACQ_size": [16]}, {}, "only 2-D and 3-D"),
    ({}, {"PVM_Fov": "none"}, "PVM_Fov"),
    ({}, {"PVM_Matrix": [8, 400000]}, "more than 64 x the 32 acquired samples"),
])
def test_bad_headers_name_the_file(tmp_path, acqp, method, message):
    kspace, _ = phantom_kspace((1, 4, 8), (-2, -1))
    write_scan(tmp_path / "8", kspace[None, None], centric(4), acqp=acqp, method=method)
    with pytest.raises(FormatError, match=message) as info:
        bruker_raw.read(tmp_path / "8")
    assert str(tmp_path / "8") in str(info.value)


def test_missing_method_and_raw(tmp_path):
    kspace, _ = phantom_kspace((1, 4, 8), (-2, -1))
    scan = write_scan(tmp_path / "1", kspace[None, None], centric(4))
    (scan / "method").unlink()
    with pytest.raises(FormatError, match="no method beside the raw data"):
        bruker_raw.read(scan)
    (scan / "fid").unlink()
    with pytest.raises(FormatError, match="no fid or rawdata.job0"):
        bruker_raw.read(scan)


def spiral_trajectory(interleaves, samples, n):
    """An Archimedean spiral out to k_max = n/2, in ParaVision's ±0.5 units (read, phase)."""
    t = np.linspace(0, 1, samples, endpoint=False)
    turns = n / (2 * interleaves)
    angle = 2 * np.pi * turns * t[None] + 2 * np.pi * np.arange(interleaves)[:, None] / interleaves
    radius = 0.5 * t[None]
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)


def test_spiral_read_with_its_trajectory_and_gridded(tmp_path):
    from napari_mrmicro.core import reconstruct
    from napari_mrmicro.core.nufft import nufft_forward

    n, interleaves, samples = 32, 16, 400
    yy, xx = np.mgrid[:n, :n] - n // 2
    image = (np.hypot(yy, xx) < 9).astype(np.complex64)
    traj = spiral_trajectory(interleaves, samples, n)
    kappa = (traj * n)[..., ::-1].astype(np.float32)  # cycles per FOV, (y, x)
    k = nufft_forward(image[None], kappa)[0]  # (interleaves, samples)
    scan = tmp_path / "13"
    write_scan(scan, np.zeros((1, 1, 1, 4, 8), np.complex64), centric(4))  # headers only
    values = np.round(np.stack([k.real, k.imag], -1) * 1e4).astype("<i4")
    blocks = [line.tobytes() + b"\0" * (-line.nbytes % 1024) for line in values]
    (scan / "fid").write_bytes(b"".join(blocks))
    traj.astype("<f8").tofile(scan / "traj")
    (scan / "method").write_text(format_jcamp({
        **CORE, "Method": "Bruker:SPIRAL", "PVM_SpiralMode": "SpiralOut",
        "PVM_SpiralNbOfInterleaves": interleaves, "PVM_Matrix": [n, n],
        "PVM_Fov": [3.2, 3.2], "PVM_SliceThick": 1.0, "PVM_EncNReceivers": 1}))
    text = (scan / "acqp").read_text().replace("##$ACQ_size=( 2 )\n16 4",
                                               f"##$ACQ_size=( 2 )\n{2 * samples} "
                                               f"{interleaves}")
    (scan / "acqp").write_text(text)
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (1, interleaves, samples) and not ks.cartesian
    np.testing.assert_allclose(ks.trajectory, kappa, atol=1e-5)
    np.testing.assert_allclose(ks.data[0], values[..., 0] + 1j * values[..., 1])
    assert ks.acquisition.matrix == (1, n, n)
    recon = np.abs(reconstruct(ks))[0, 0] / 1e4
    assert np.linalg.norm(recon - np.abs(image)) / np.linalg.norm(image) < 0.1
    (scan / "traj").unlink()
    with pytest.raises(FormatError, match="traj: no trajectory file") as info:
        bruker_raw.read(scan)
    assert "\n" not in str(info.value)
