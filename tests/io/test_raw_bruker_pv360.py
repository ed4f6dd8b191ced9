"""ParaVision 360 raw data from a real 9.4 T study (../shared/realdata/bruker_pv), checked
against Bruker's own reconstruction of the same raw (pdata/1/2dseq), and the PV 360 V3.1 and
PV 5.1 parameter dialects."""

import shutil

import numpy as np
import pytest

from epi_scanner import echo_trains

from napari_mrmicro.core import reconstruct
from napari_mrmicro.core.kspace import centered_fft, centered_ifft
from napari_mrmicro.io import bruker_raw, read_volume
from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.jcamp import format_jcamp, read_jcamp

STUDY = "bruker_pv/pv360_rodent"


def correlations(image, reference):
    """Pearson correlation of each slice (first axis) of two stacks."""
    out = []
    for a, b in zip(image, reference):
        a, b = a - a.mean(), b - b.mean()
        out.append(float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())))
    return np.array(out)


def vendor(scan):
    return np.asarray(read_volume(scan / "pdata" / "1" / "2dseq").data, np.float32)


def test_flash_partial_echo_matches_bruker_reconstruction(realdata):
    scan = realdata(f"{STUDY}/6")
    ks = bruker_raw.read_kspace(scan / "rawdata.job0")
    assert ks.data.shape == (1, 18, 128, 256) and ks.multislice
    assert ks.echo_position == pytest.approx(43 / 139)
    # 139 samples from 85 (echo sample 43 at 128), phase encodes -48..47 at rows 16..111
    assert ks.sampled[:, 16:112, 85:224].all() and ks.sampled.sum() == 18 * 96 * 139
    image = np.abs(reconstruct(ks.data, kspace_axes=(-2, -1))[0])  # zero-filled, as Bruker
    reference = vendor(scan)
    assert image.shape == reference.shape == (18, 128, 256)
    r = correlations(image, reference)
    assert np.median(r) >= 0.95 and r.min() > 0.9
    for flipped in (image[:, ::-1], image[:, :, ::-1], image[::-1]):
        assert np.median(correlations(flipped, reference)) < np.median(r) - 0.05
    # the acquired mask makes the KSpace reconstruct with partial Fourier along the readout
    pf = np.abs(reconstruct(ks)[0])
    assert np.median(correlations(pf, reference)) >= 0.95


def test_flash_acquisition_from_the_headers(realdata):
    vol = bruker_raw.read(realdata(f"{STUDY}/6"))
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == [18, 128, 256]
    np.testing.assert_allclose(acq["fov_um"], [9000.0, 10000.0, 16000.0])
    np.testing.assert_allclose(vol.spacing_um, (500.0, 78.125, 62.5))
    assert acq["te_ms"] == [pytest.approx(2.3422565)] and acq["sequence"] == "gradient_echo"
    assert acq["b0_tesla"] == pytest.approx(9.4, abs=0.01)
    assert vol.metadata["word_type"] == "<i4" and not vol.metadata["kblock_padded"]
    assert vol.metadata["fov_shift"] == [pytest.approx(0.0116822, rel=1e-4)]


def test_rare_echo_trains_match_bruker_reconstruction(realdata):
    scan = realdata(f"{STUDY}/5")
    vol = bruker_raw.read(scan)
    assert vol.metadata["acquisition"]["te_ms"] == [36.0]  # effective TE, not the spacing
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (1, 18, 100, 160)
    image = np.abs(centered_ifft(ks.data[0], axes=(-2, -1)))
    reference = vendor(scan)
    r = correlations(image, reference)
    assert np.median(r) >= 0.95 and r.min() > 0.9


@pytest.mark.parametrize("method", ["homodyne", "pocs"])
def test_partial_echo_beats_zero_filling_against_the_vendor_image(realdata, method):
    """Scan 6's 2dseq is itself zero-filled (PVM_EncPftAlgorithm = Zerofilling), so the
    truth for partial Fourier is a full echo: cut scan 5's symmetric readout to an
    asymmetric echo (25 of 105 samples before it) and compare with Bruker's image of the
    full readout."""
    scan = realdata(f"{STUDY}/5")
    ks = bruker_raw.read_kspace(scan)
    reference = vendor(scan)
    cut = ks.data.copy()
    cut[..., :55] = 0

    def error(image):
        image = image * (reference.sum() / image.sum())
        return np.linalg.norm(image - reference) / np.linalg.norm(reference)

    zero_filled = np.abs(centered_ifft(cut[0], axes=(-2, -1)))
    restored = np.abs(reconstruct(cut, partial_fourier={"axis": -1, "method": method},
                                  kspace_axes=(-2, -1))[0])
    assert error(restored) < 0.92 * error(zero_filled)


def test_a_chosen_method_finds_the_partial_echo_axis(realdata, tmp_path):
    """Scan 6 is partial echo along the readout (x), its phase encodes symmetric: a method
    chosen without an axis (the CLI's --partial-fourier homodyne) takes x, as the sampled
    mask shows, rather than failing on y."""
    from napari_mrmicro.cli import main

    scan = realdata(f"{STUDY}/6")
    ks = bruker_raw.read_kspace(scan)
    chosen = reconstruct(ks, partial_fourier={"method": "homodyne"}, output="magnitude")
    along_x = reconstruct(ks, partial_fourier={"axis": -1, "method": "homodyne"},
                          output="magnitude")
    np.testing.assert_array_equal(chosen, along_x)
    with pytest.raises(ValueError, match="symmetric about the k-space centre"):
        reconstruct(ks, partial_fourier={"axis": -2, "method": "homodyne"})
    assert main(["recon", str(scan), str(tmp_path / "h.nii"),
                 "--partial-fourier", "homodyne"]) == 0


def test_echo_planar_matches_bruker_reconstruction(realdata):
    """EPI scan 7 (single shot, 30 ramp-sampled echoes, 115-sample navigator): regridded on
    the measured trajectory, alternate lines reversed, polarity phase and ghost corrected,
    its zero-filled image is Bruker's 2dseq; placed where the 2dseq lies."""
    scan = realdata(f"{STUDY}/7")
    vol = bruker_raw.read(scan)
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (1, 18, 40, 80) and ks.multislice
    epi = dict(vol.metadata["epi"])
    assert np.shape(epi.pop("ghost_phase_rad")) == (18, 1, 2)  # object, receiver, (φ0, φ1)
    assert epi == {"echoes": 30, "samples": 80, "navigator_samples": 115,
                   "regridded": "PVM_EpiTrajAdjkx",
                   "ghost_correction": "PVM_EpiPhaseCorrection refined by image entropy"}
    # PE steps -10..19 on rows 10..39 (partial Fourier); the lobe spans ±23.8 cycles/FOV
    rows, columns = ks.sampled.any(axis=(0, 2)), ks.sampled.any(axis=(0, 1))
    assert np.flatnonzero(rows).tolist() == list(range(10, 40))
    assert np.flatnonzero(columns).tolist() == list(range(16, 65))
    image = np.abs(reconstruct(ks.data, kspace_axes=(-2, -1))[0])  # zero-filled, as Bruker
    reference = vendor(scan)
    r = correlations(image, reference)
    assert np.median(r) >= 0.99 and r.min() >= 0.98
    two_dseq = read_volume(scan / "pdata" / "1" / "2dseq")
    np.testing.assert_allclose(vol.affine_um, two_dseq.affine_um, atol=1e-3)
    np.testing.assert_allclose(vol.spacing_um, (500.0, 250.0, 200.0))
    # the raw and the 2dseq readers state the same protocol: a gradient-echo EPI train
    ours, theirs = vol.metadata["acquisition"], two_dseq.metadata["acquisition"]
    assert ours["sequence"] == theirs["sequence"] == "gradient_echo"
    for key in ("te_ms", "tr_ms", "echo_train", "echo_spacing_ms", "b0_tesla", "scan_time_s"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-9, err_msg=key)


def edited_scan(source, tmp_path, change):
    """A copy of the scan folder whose method has ``change`` applied (None deletes)."""
    scan = tmp_path / source.name
    shutil.copytree(source, scan)
    method = read_jcamp(source / "method")
    for key, value in change.items():
        if value is None:
            del method[key]
        else:
            method[key] = value
    (scan / "method").write_text(format_jcamp(method))
    return scan


def test_echo_planar_ghost_found_without_the_scanners_coefficients(realdata, tmp_path):
    """Without PVM_EpiPhaseCorrection (an older protocol, the adjustment not run) the
    ghost correction is found from each slice's image entropy: the image is still the
    2dseq's (with no correction at all it correlates 0.88)."""
    source = realdata(f"{STUDY}/7")
    vol = bruker_raw.read(edited_scan(source, tmp_path, {"PVM_EpiPhaseCorrection": None}))
    assert vol.metadata["epi"]["ghost_correction"] == "image entropy"
    image = np.abs(reconstruct(vol.data, kspace_axes=(-2, -1))[0])
    r = correlations(image, vendor(source))
    assert np.median(r) >= 0.99 and r.min() >= 0.98


@pytest.mark.parametrize("change, at_most", [
    ({"PVM_EpiTrajAdjb0": None}, 0.7),          # forward/reversed lines out of phase
    ({"PVM_EpiTrajAdjkx": "uniform"}, 0.4),     # ramp samples taken as equally spaced
])
def test_echo_planar_each_correction_counts(realdata, tmp_path, change, at_most):
    source = realdata(f"{STUDY}/7")
    if change.get("PVM_EpiTrajAdjkx") == "uniform":
        trajectory = read_jcamp(source / "method")["PVM_EpiTrajAdjkx"]
        change = {"PVM_EpiTrajAdjkx": [float(k) for k in np.linspace(0, max(trajectory), 80)]}
    ks = bruker_raw.read_kspace(edited_scan(source, tmp_path, change))
    image = np.abs(reconstruct(ks.data, kspace_axes=(-2, -1))[0])
    assert np.median(correlations(image, vendor(source))) < at_most


@pytest.mark.parametrize("change, message", [
    ({"PVM_EpiNShots": 2}, "PVM_EpiNShots = 2: segmented"),
    ({"PVM_EpiTrajAdjkx": None}, "no measured EPI readout trajectory"),
    ({"PVM_EpiTrajAdjb0": [0.0] * 79}, "PVM_EpiTrajAdjb0 holds 79 values"),
    ({"PVM_EpiPhaseCorrection": [0.0] * 34}, "PVM_EpiPhaseCorrection holds 34 values"),
    ({"PVM_EpiNSamplesPerScan": 2600}, "PVM_EpiNSamplesPerScan = 2600 but a scan holds 2628"),
    ({"PVM_EpiNEchoes": 40}, "do not fit a scan of 2628 samples"),
    ({"PVM_EpiReadAsym": 20}, "asymmetric EPI readouts"),
    ({"PVM_SpatDimEnum": "3D"}, "3-D EPI: only multi-slice"),
])
def test_echo_planar_bad_headers_named(realdata, tmp_path, change, message):
    scan = edited_scan(realdata(f"{STUDY}/7"), tmp_path, change)
    with pytest.raises(FormatError, match=message) as info:
        bruker_raw.read(scan)
    assert str(scan) in str(info.value) and "\n" not in str(info.value)


def test_echo_planar_truncated_raw_named(realdata, tmp_path):
    source = realdata(f"{STUDY}/7")
    scan = tmp_path / "7"
    shutil.copytree(source, scan)
    (scan / "rawdata.job0").write_bytes((source / "rawdata.job0").read_bytes()[:-100])
    with pytest.raises(FormatError, match=r"rawdata.job0: header implies 378432 bytes .*"
                                          r"18 objects \(NI\), one echo train each"):
        bruker_raw.read(scan)


def test_truncated_rawdata_names_file_and_parameters(realdata, tmp_path):
    source = realdata(f"{STUDY}/6")
    scan = tmp_path / "6"
    scan.mkdir()
    for name in ("acqp", "method"):
        shutil.copy(source / name, scan / name)
    (scan / "rawdata.job0").write_bytes((source / "rawdata.job0").read_bytes()[:-4096])
    with pytest.raises(FormatError, match=r"rawdata.job0: header implies 1921536 bytes .*"
                                          r"NI.*PVM_EncMatrix.*holds 1917440"):
        bruker_raw.read(scan)
    (scan / "method").unlink()
    with pytest.raises(FormatError, match="no method beside the raw data"):
        bruker_raw.read(scan)


def test_pv360_v31_flash_dialect_zero_filled_grid(realdata, tmp_path):
    """A PV 360 V3.1 FLASH method (RLE arrays, 3 slice packages, PVM_EncZf 2): raw data
    written for its 128 x 128 encoding land in the middle of the 256 x 256 grid."""
    method = read_jcamp(realdata("bruker_pv/brkraw_param_fixtures/method_FLASH_pv360_3_1.jdx"))
    steps = method["PVM_EncSteps1"]
    assert method["PVM_EncMatrix"] == [128, 128] and len(steps) == 128
    slices = 3
    rng = np.random.default_rng(0)
    image = rng.random((slices, 128, 128)) + 1j * rng.random((slices, 128, 128))
    kspace = np.round(centered_fft(image, axes=(-2, -1)) * 1000).astype(np.complex64)
    lines = np.empty((128, slices, 128), np.complex64)  # phase encode outer, slices inner
    for i, step in enumerate(steps):
        lines[i] = kspace[:, step + 64, :]
    pairs = np.stack([lines.real, lines.imag], -1).astype("<i4")
    scan = tmp_path / "12"
    scan.mkdir()
    (scan / "rawdata.job0").write_bytes(pairs.tobytes())
    (scan / "method").write_text(format_jcamp(method))
    acqp = {"TITLE": "Parameter List, ParaVision 360 V3.1", "JCAMPDX": "4.24",
            "ACQ_size": [1024, 1], "ACQ_dim": 2, "NI": slices, "NR": 1, "NSLICES": slices,
            "ACQ_phase_factor": 1, "ACQ_obj_order": [0, 2, 1], "BYTORDA": "little",
            "ACQ_word_size": "_32_BIT", "NUC1": "1H", "BF1": 300.3,
            "ACQ_ScanPipeJobSettings": [["STORE_processed", "STORE_32bit_signed",
                                         "ACCUM_average", 1, 384]],
            "ACQ_jobs": [[256, slices, 128, 384, 101, 50000.0, 384, 1, "job0"]]}
    (scan / "acqp").write_text(format_jcamp(acqp))
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (1, slices, 256, 256) and ks.echo_position == 0.5
    order = [0, 2, 1]  # the i-th acquired object is slice order[i]
    for position, slice_ in enumerate(order):
        np.testing.assert_array_equal(ks.data[0, slice_, 64:192, 64:192], kspace[position])
    assert ks.sampled.sum() == slices * 128 * 128


def test_mrmicro_recon_gives_brukers_matrix_slices_and_placement(realdata, tmp_path):
    """``mrmicro recon <scan>/rawdata.job0 out.nii.gz`` lands on the vendor's image: same
    matrix, slice order and world placement as the 2dseq converted to NIfTI."""
    nibabel = pytest.importorskip("nibabel")
    from napari_mrmicro.cli import main

    scan = realdata(f"{STUDY}/6")
    # the scan folder itself names its raw data (not the 2dseq image in its pdata)
    assert main(["recon", str(scan), str(tmp_path / "raw.nii.gz")]) == 0
    assert main(["convert", str(scan / "pdata/1/2dseq"), str(tmp_path / "2dseq.nii.gz")]) == 0
    ours, theirs = (nibabel.load(tmp_path / f) for f in ("raw.nii.gz", "2dseq.nii.gz"))
    assert ours.shape == theirs.shape == (256, 128, 18)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
    r = correlations(np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0))
    assert np.median(r) >= 0.95
    # zero-filling twice halves the in-plane voxels and keeps the FOV centre in place
    assert main(["recon", str(scan / "rawdata.job0"), str(tmp_path / "zf.nii.gz"),
                 "--zero-fill", "2"]) == 0
    zf = nibabel.load(tmp_path / "zf.nii.gz")
    assert zf.shape == (512, 256, 18)
    np.testing.assert_allclose(zf.header.get_zooms(), (31.25, 39.0625, 500.0), rtol=1e-5)
    centre = lambda img: img.affine @ np.array([s // 2 for s in img.shape[:2]] + [0, 1])
    np.testing.assert_allclose(centre(zf), centre(ours), atol=1e-6)


def test_pv51_epi_dialect_four_receivers(realdata, tmp_path):
    """A PV 5.1 EPI (acqp/method without RLE, ACQ_size in real values, GO_raw_data_format,
    4 receivers, 32 interleaved slices, 51 echoes of 72 ramp samples, no navigator) with a
    fid written by the analytic scanner of ``tests/epi_scanner.py``: every slice and
    receiver comes back as its Cartesian k-space, each with its own ghost coefficients."""
    fixtures = realdata("bruker_pv/brkraw_param_fixtures")
    scan = tmp_path / "3"
    scan.mkdir()
    shutil.copy(fixtures / "acqp_EPI_pv5_1.jdx", scan / "acqp")
    acqp, method = read_jcamp(scan / "acqp"), read_jcamp(fixtures / "method_EPI_pv5_1.jdx")
    assert acqp["GO_raw_data_format"] == "GO_32BIT_SGN_INT" and acqp["ACQ_size"][0] == 7344
    trajectory = np.asarray(method["PVM_EpiTrajAdjkx"])
    polarity = np.asarray(method["PVM_EpiTrajAdjb0"])
    steps = np.asarray(method["PVM_EncSteps1"])
    order = acqp["ACQ_obj_order"]
    receivers, slices, echoes, n = 4, 32, 51, 72
    rng = np.random.default_rng(5)
    # ghost slopes of whole cycles over the readout keep the object band-limited, so the
    # analytic scanner's samples are exact on the grid (real slopes are any value)
    ghost = np.stack([rng.uniform(-1, 1, (receivers, slices)),
                      rng.integers(-1, 2, (receivers, slices)) * 2 * np.pi / n], -1)
    method["PVM_EpiPhaseCorrection"] = [float(v) for v in ghost.ravel()]
    (scan / "method").write_text(format_jcamp(method))
    # a head-like ellipse per slice, its readout spectrum cut beyond the lobe's ±31 cycles/FOV
    y, x = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
    heads = np.stack([(((y - 3 * np.sin(i)) / (18 + i % 5)) ** 2 + (x / 24) ** 2 <= 1)
                      * (1 + 0.3 * np.cos(x / 6)) for i in range(slices)])
    truth = centered_fft(heads.astype(np.complex64), axes=(-2, -1))
    truth[..., np.abs(np.arange(n) - n // 2) > 29] = 0
    coils = np.exp(2j * np.pi * np.arange(receivers) / receivers) * (1 + np.arange(4))
    rows = centered_ifft(truth[:, steps + n // 2], axes=(-1,))  # slice, echo, x
    trains = np.empty((slices, receivers, echoes, n), np.complex128)
    for position, slice_ in enumerate(order):  # the i-th scan is object order[i]
        for r in range(receivers):
            trains[position, r] = echo_trains(coils[r] * rows[slice_], trajectory, polarity,
                                              ghost[r, position])
    trains *= 2e5
    pairs = np.stack([trains.real, trains.imag], -1).round().astype("<i4")
    (scan / "fid").write_bytes(pairs.tobytes())  # GO_block_size continuous
    ks = bruker_raw.read_kspace(scan)
    assert ks.data.shape == (receivers, 1, slices, n, n) and ks.coil_axis == 0
    sampled = ks.sampled[0]
    assert np.flatnonzero(sampled.any(1)).tolist() == list(range(21, 72))  # steps -15..35
    assert np.flatnonzero(sampled.any(0)).tolist() == list(range(5, 68))
    # without a reco, the slice package's phase offset is applied as ParaVision does: a
    # k-space ramp of PVM_SPackArrPhase1Offset / PVM_Fov[1] = 2.2 / 28.8 of the FOV
    shift = method["PVM_SPackArrPhase1Offset"][0] / method["PVM_Fov"][1]
    ramp = np.exp(-2j * np.pi * shift * (np.arange(21, 72) - n // 2))
    got = ks.data[:, 0][:, :, 21:, 5:68] / 2e5
    want = coils[:, None, None, None] * truth[None, :, 21:, 5:68] * ramp[:, None]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-3
