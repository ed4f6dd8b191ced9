"""Tecmag TNMR .tnt: files built here section by section with nmrglue's record dtypes
(nmrglue has no .tnt writer; nmrglue's own reader checks what we built), and a real old
TNT1.001 file (tests/data/tecmag, MIT licence in its README)."""

import json
import struct

import numpy as np
import pytest

ng = pytest.importorskip("nmrglue")
from nmrglue.fileio.tecmag import TNTTMAG, TNTTMG2  # noqa: E402
from pathlib import Path  # noqa: E402

from napari_mrmicro.core.kspace import centered_fft, centered_ifft  # noqa: E402
from napari_mrmicro.io import tecmag  # noqa: E402
from napari_mrmicro.io._common import FormatError  # noqa: E402


def section(tag, payload, flag=1):
    return tag + struct.pack("<II", flag, len(payload)) + payload


REAL_TNT = Path(__file__).resolve().parents[1] / "data" / "tecmag" / "FID_0.tnt"


def write_tnt(path, samples, ob_freq=100.2, sw=62500.0, scans=8, sequence=b"se3d",
              nucleus=b"1H", sidecar=None, data_bytes=None, old=False):
    """``samples``: (points, dim2, dim3, dim4) complex, written with dim 1 fastest.

    ``old``: the TNT1.001 layout, whose PSEQ has no length (its version text follows
    the flag), as in tests/data/tecmag/FID_0.tnt.
    """
    tmag = np.zeros(1, TNTTMAG)
    tmag["npts"] = tmag["actual_npts"] = samples.shape
    tmag["ob_freq"][0, 0] = ob_freq
    tmag["sw"][0, 0] = sw
    tmag["scans"] = tmag["actual_scans"] = scans
    tmag["sequence"] = sequence
    tmag["nuclei"][0, 0] = nucleus
    data = data_bytes if data_bytes is not None else \
        np.asarray(samples, "<c8").ravel(order="F").tobytes()
    pseq = b"PSEQ" + struct.pack("<I", 1) + b"1.12 BIN" + b"\x00" * 40 if old else \
        section(b"PSEQ", b"\x00" * 16)
    blob = (b"TNT1.001" if old else b"TNT1.005") + section(b"TMAG", tmag.tobytes()) \
        + section(b"DATA", data) + section(b"TMG2", np.zeros(1, TNTTMG2).tobytes()) + pseq
    path.write_bytes(blob)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def acquired(kspace, steps_y=None, steps_z=None):
    """Acquisition-order samples (points, y, z, echo) of ``kspace`` (echo, z, y, x)."""
    _, nz, ny, _ = kspace.shape
    iy = np.arange(ny) if steps_y is None else np.asarray(steps_y) + ny // 2
    iz = np.arange(nz) if steps_z is None else np.asarray(steps_z) + nz // 2
    return kspace[:, iz][:, :, iy].transpose(3, 2, 1, 0)


@pytest.fixture
def scan(tmp_path):
    image = np.random.default_rng(1).random((4, 6, 8)) + 0.5
    kspace = np.stack([centered_fft(image), centered_fft(image) * 0.5]).astype(np.complex64)
    steps_y, steps_z = [0, -1, 1, -2, 2, -3], [1, -2, 0, -1]
    side = {"fov_mm": [2.0, 3.0, 4.0], "phase_encode_steps_y": steps_y,
            "phase_encode_steps_z": steps_z, "te_ms": [8.0, 16.0], "tr_ms": 600.0,
            "flip_deg": 90.0}
    path = write_tnt(tmp_path / "molar.tnt", acquired(kspace, steps_y, steps_z),
                     sidecar=side)
    return path, kspace, image


def test_reorder_and_reconstruct(scan):
    path, kspace, image = scan
    ks = tecmag.read_kspace(path)
    assert ks.data.shape == (2, 4, 6, 8) and not ks.multislice
    np.testing.assert_array_equal(ks.data, kspace)
    np.testing.assert_allclose(centered_ifft(ks.data[0]).real, image, atol=1e-5)
    dic, ng_data = ng.tecmag.read(str(path))  # nmrglue reads the file we built
    assert ng_data.shape == (8, 6, 4, 2) and list(dic["actual_npts"]) == [8, 6, 4, 2]


def test_metadata_and_acquisition(scan):
    path, _, _ = scan
    vol = tecmag.read(path)
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == [4, 6, 8]
    np.testing.assert_allclose(acq["fov_um"], [2000.0, 3000.0, 4000.0])
    assert acq["b0_tesla"] == pytest.approx(100.2 / 42.577478)  # the 2.35 T microscope
    assert acq["bandwidth_hz"] == 62500.0 and acq["averages"] == 8
    assert acq["sequence"] == "spin_echo" and acq["nucleus"] == "1H"
    assert acq["te_ms"] == [8.0, 16.0] and acq["tr_ms"] == 600.0
    np.testing.assert_allclose(vol.spacing_um, (500.0, 500.0, 500.0))
    md = vol.metadata
    assert md["format"] == "tecmag" and md["kspace"] and md["spacing_known"]
    assert md["header"]["TMAG"]["actual_npts"] == [8, 6, 4, 2]
    assert md["header"]["TMAG"]["sequence"] == "se3d"
    assert md["header"]["sections"]["DATA"] == 8 * 6 * 4 * 2 * 8
    assert md["header"]["version"] == "TNT1.005"
    json.dumps(md["header"])


def test_sidecar_without_fov_spacing_unknown(tmp_path):
    samples = (np.arange(4 * 3 * 2) + 1j).reshape(4, 3, 2, 1)
    path = write_tnt(tmp_path / "fid.tnt", samples, sequence=b"gre", sidecar={})
    vol = tecmag.read(path)
    assert vol.spacing_um == (1.0, 1.0, 1.0) and vol.metadata["spacing_known"] is False
    assert "fov_um" not in vol.metadata["acquisition"]
    assert vol.metadata["acquisition"]["sequence"] == "gradient_echo"
    np.testing.assert_array_equal(vol.data[0], samples[..., 0].T)


def test_multislice_sidecar(tmp_path):
    samples = np.ones((4, 2, 3, 1), np.complex64)
    path = write_tnt(tmp_path / "ms.tnt", samples,
                     sidecar={"fov_mm": [1.5, 2.0, 2.0], "multislice": True})
    ks = tecmag.read_kspace(path)
    assert ks.multislice and ks.kspace_axes == (-2, -1)


def test_can_read(scan, tmp_path):
    path, _, _ = scan
    assert tecmag.can_read(path)
    (tmp_path / "x.tnt").write_bytes(b"NOTATNT!" + b"\0" * 100)
    assert not tecmag.can_read(tmp_path / "x.tnt")
    assert not tecmag.can_read(path.with_suffix(".json"))


def test_truncated_and_size_mismatch(scan, tmp_path):
    path, _, _ = scan
    blob = path.read_bytes()
    cut = tmp_path / "cut.tnt"
    cut.write_bytes(blob[:2000])
    with pytest.raises(FormatError, match="cut.tnt.*runs past the end.*truncated"):
        tecmag.read(cut)
    short = write_tnt(tmp_path / "short.tnt", np.ones((4, 2, 1, 1)), data_bytes=b"\0" * 48)
    with pytest.raises(FormatError, match=r"short.tnt: header implies 64 bytes "
                                          r"\(actual_npts \[4, 2, 1, 1\].*holds 48"):
        tecmag.read(short)
    huge = write_tnt(tmp_path / "huge.tnt", np.ones((4, 2, 1, 1)), data_bytes=b"\0" * 64)
    raw = bytearray(huge.read_bytes())
    npts = struct.pack("<4i", 4, 2, 100000, 100000)
    raw[20:36] = npts  # TMAG starts after 8 + 12 bytes; actual_npts follows npts
    raw[36:52] = npts
    huge.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="huge.tnt: header implies 640000000000 bytes"):
        tecmag.read(huge)


def test_bad_magic_and_sidecar(tmp_path):
    (tmp_path / "bad.tnt").write_bytes(b"TNT2.000" + b"\0" * 64)
    with pytest.raises(FormatError, match="bad.tnt.*not a TNMR file"):
        tecmag.read(tmp_path / "bad.tnt")
    samples = np.ones((4, 2, 1, 1))
    for side, message in (({"fov_mm": [1, 2]}, "fov_mm"), ({"speed": 3}, "unknown keys"),
                          ({"phase_encode_steps_y": [0, 0]}, "not a permutation"),
                          ({"sequence": "ute"}, "sequence 'ute'")):
        path = write_tnt(tmp_path / "s.tnt", samples, sidecar=side)
        with pytest.raises(FormatError, match=message) as info:
            tecmag.read(path)
        assert "s.json" in str(info.value)


def test_old_tnt1001_layout_reads(scan, tmp_path):
    """TNT1.001: PSEQ's length field holds its version text (842083889 as a length)."""
    _, kspace, image = scan
    side = json.loads(scan[0].with_suffix(".json").read_text())
    path = write_tnt(tmp_path / "old.tnt", acquired(kspace, side["phase_encode_steps_y"],
                                                    side["phase_encode_steps_z"]),
                     sidecar=side, old=True)
    assert tecmag.can_read(path)
    ks = tecmag.read_kspace(path)
    np.testing.assert_array_equal(ks.data, kspace)
    np.testing.assert_allclose(centered_ifft(ks.data[0]).real, image, atol=1e-5)
    header = tecmag.read(path).metadata["header"]
    assert header["version"] == "TNT1.001"
    assert header["sections"]["PSEQ"] < 842083889  # what is left of the file
    _, ng_data = ng.tecmag.read(str(path))  # nmrglue agrees on the acquired samples
    np.testing.assert_array_equal(ng_data, acquired(kspace, side["phase_encode_steps_y"],
                                                    side["phase_encode_steps_z"]))


def test_real_tnt1001_file():
    """A real TNT1.001 file: the old reader stopped at its PSEQ ("842083889 bytes runs
    past the end"); now its header and FID are read, and the FID is refused as a
    spectrum."""
    header, data = tecmag.read_header(REAL_TNT)
    assert header["version"] == "TNT1.001"
    assert header["TMAG"]["actual_npts"] == [1024, 1, 1, 1]
    assert header["TMAG"]["ob_freq"][0] == pytest.approx(4.64372301)
    assert header["TMAG"]["sw"][0] == 50000.0 and header["TMAG"]["scans"] == 8
    assert header["TMAG"]["nuclei"][0] == "H1" and header["TMAG"]["magnet_field"] == 2.11
    assert header["sections"]["DATA"] == 8192 and "PSEQ" in header["sections"]
    # independent of nmrglue: DATA follows the magic, TMAG (12 + 1024) and DATA's own tag
    raw = np.frombuffer(REAL_TNT.read_bytes(), "<c8", count=1024, offset=8 + 12 + 1024 + 12)
    np.testing.assert_array_equal(data[:, 0, 0, 0], raw)
    json.dumps(header)
    with pytest.raises(FormatError, match="FID_0.tnt: a spectrum, not an image: 1 FID"):
        tecmag.read(REAL_TNT)


@pytest.mark.parametrize("shape, sidecar, message", [
    ((16, 1, 1, 1), {"fov_mm": [1.0, 1.0, 1.0]}, "1 FID.s. of 16 points"),
    ((16, 1, 1, 4), None, "4 FID.s. of 16 points"),
    ((16, 8, 1, 1), None, "as far as the file says.*put nmr.json"),
])
def test_spectrum_refused(tmp_path, shape, sidecar, message):
    path = write_tnt(tmp_path / "nmr.tnt", np.ones(shape, np.complex64), sidecar=sidecar)
    with pytest.raises(FormatError, match=f"nmr.tnt: a spectrum, not an image.*{message}"):
        tecmag.read(path)


def test_bad_sections(tmp_path):
    samples = np.ones((4, 2, 1, 1))
    blob = write_tnt(tmp_path / "a.tnt", samples, sidecar={}).read_bytes()
    no_tmg2 = blob.replace(b"TMG2", b"XXXX")
    (tmp_path / "b.tnt").write_bytes(no_tmg2)
    with pytest.raises(FormatError, match="b.tnt: no TMG2 section"):
        tecmag.read(tmp_path / "b.tnt")
    tmag = bytearray(blob)
    tmag[16:20] = struct.pack("<I", 1000)  # TMAG length
    (tmp_path / "c.tnt").write_bytes(bytes(tmag))
    with pytest.raises(FormatError, match="c.tnt: "):
        tecmag.read(tmp_path / "c.tnt")
