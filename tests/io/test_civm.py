"""Duke CIVM headfile + raw slice series: hand-built fixtures, round trips, bad input."""

import os
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.io import FormatError, Volume, civm, read_volume, write_volume

RUNNO = "N51234"
HEADER = [
    "dim_X={nx}", "dim_Y={ny}", "dim_Z={nz}", "fovx=1.2", "fovy=0.6", "fovz=0.4",
    "te=2.4", "tr=600000", "alpha=30", "ne=1", "S_PSDname=GRE3D", "S_tesla=7t",
    f"U_runno={RUNNO}", "U_specid=141209-1:1", "U_civmid=Smith, John", "U_code=0007",
    "z_Agilent_sfrq=300.13", "z_Bruker_ACQ_method=FLASH", "bval_dir=3:1,x y z",
]


def make_series(folder, data, lines=HEADER, newline="\n", ext="raw", runno=RUNNO):
    """A CIVM images folder built by hand from the documented layout."""
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = data.shape
    text = newline.join(line.format(nx=nx, ny=ny, nz=nz) for line in lines) + newline
    (folder / f"{runno}.headfile").write_bytes(text.encode())
    disk = ">u2" if ext == "raw" else ">f4"
    for z in range(nz):
        data[z].astype(disk).tofile(folder / f"{runno}imx.{z + 1:04d}.{ext}")
    return folder / f"{runno}.headfile"


def assert_same_acquisition(got, expected):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == (value if isinstance(value, str) else pytest.approx(value)), name


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def volume_u16():
    return np.random.default_rng(0).integers(0, 65536, (4, 6, 12)).astype(np.uint16)


@pytest.fixture
def series(tmp_path, volume_u16):
    return make_series(tmp_path / f"{RUNNO}images", volume_u16)


# --------------------------------------------------------------------------- reading


def test_read_hand_built_series(series, volume_u16):
    vol = civm.read(series)
    assert isinstance(vol.data, np.ndarray) and vol.data.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(vol.data, volume_u16)
    assert vol.spacing_um == pytest.approx((100.0, 100.0, 100.0))  # fov mm * 1000 / dim
    meta = vol.metadata
    assert meta["format"] == "civm" and meta["source"] == str(series)
    assert meta["header"]["z_Bruker_ACQ_method"] == "FLASH"
    assert meta["header"]["U_specid"] == "141209-1:1" and meta["header"]["U_code"] == "0007"
    assert meta["header"]["bval_dir"] == [["x"], ["y"], ["z"]]
    acq = meta["acquisition"]
    assert acq["te_ms"] == (2.4,) and acq["tr_ms"] == 600.0 and acq["flip_deg"] == 30.0
    assert acq["b0_tesla"] == 7.0 and acq["sequence"] == "gradient_echo"
    assert acq["matrix"] == (4, 6, 12) and acq["fov_um"] == pytest.approx((400, 600, 1200))
    assert meta["spacing_known"] and vol.name == RUNNO


def test_folder_headfile_and_slice_read_the_same(series, volume_u16):
    assert civm.can_read(series) and civm.can_read(series.parent)
    assert civm.can_read(series.parent / f"{RUNNO}imx.0002.raw")
    for path in (series, series.parent, series.parent / f"{RUNNO}imx.0002.raw"):
        np.testing.assert_array_equal(civm.read(path).data, volume_u16)
    np.testing.assert_array_equal(read_volume(series.parent).data, volume_u16)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_headfiles_read_the_same(tmp_path, volume_u16, newline):
    lf = civm.read(make_series(tmp_path / "lf", volume_u16))
    other = civm.read(make_series(tmp_path / "other", volume_u16, newline=newline))
    np.testing.assert_array_equal(other.data, lf.data)
    assert other.spacing_um == lf.spacing_um and other.metadata["header"] == lf.metadata["header"]


@pytest.mark.parametrize("line, b0", [("S_tesla=9t", 9.0), ("S_tesla=bt7", 7.0),
                                      ("z_Agilent_sfrq=400.25", 400.25 / 42.577478),
                                      ("B_tesla=9.4", 9.4)])
def test_field_strength_spellings(tmp_path, volume_u16, line, b0):
    lines = [x for x in HEADER if not x.startswith(("S_tesla", "z_Agilent_sfrq"))] + [line]
    vol = civm.read(make_series(tmp_path / "s", volume_u16, lines=lines))
    assert vol.metadata["acquisition"]["b0_tesla"] == pytest.approx(b0)


def test_missing_fov_gives_unit_spacing(tmp_path, volume_u16):
    lines = [x for x in HEADER if not x.startswith("fov")]
    vol = civm.read(make_series(tmp_path / "s", volume_u16, lines=lines))
    assert vol.spacing_um == (1.0, 1.0, 1.0) and vol.metadata["spacing_known"] is False
    assert "fov_um" not in vol.metadata["acquisition"]


def test_float32_slices(tmp_path):
    data = np.random.default_rng(1).normal(size=(3, 5, 7)).astype(np.float32)
    vol = civm.read(make_series(tmp_path / "s", data, ext="f32"))
    assert vol.data.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(vol.data, data)


def test_other_runno_files_and_stale_slices_are_ignored(tmp_path, volume_u16):
    headfile = make_series(tmp_path / "s", volume_u16)
    (tmp_path / "s" / "N99999imx.0001.raw").write_bytes(b"\0" * 10)   # another run
    (tmp_path / "s" / f"{RUNNO}imx.0005.raw").write_bytes(b"\0" * 10)  # beyond dim_Z
    np.testing.assert_array_equal(civm.read(headfile).data, volume_u16)


def test_lazy_read_equals_eager(series, volume_u16):
    vol = civm.read(series, lazy=True)
    assert isinstance(vol.data, da.Array) and vol.data.chunks[0] == (1, 1, 1, 1)
    assert vol.data.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(vol.data.compute(), volume_u16)
    np.testing.assert_array_equal(vol.data[2].compute(), volume_u16[2])


def test_large_series_opens_lazily_and_shows_first_slice_fast(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    n = 1024
    (folder / "B1.headfile").write_text(f"dim_X={n}\ndim_Y={n}\ndim_Z={n}\nfovx=10.24\n"
                                        f"fovy=10.24\nfovz=10.24\n")
    for z in range(n):  # sparse files of the right size: 2 GiB on paper, none on disk
        with open(folder / f"B1imx.{z + 1:04d}.raw", "wb") as f:
            f.truncate(n * n * 2)
    start = time.perf_counter()
    vol = civm.read(folder)
    first = vol.data[0].compute()
    assert time.perf_counter() - start < 1.0
    assert isinstance(vol.data, da.Array) and first.shape == (n, n) and not first.any()
    assert vol.spacing_um == pytest.approx((10.0, 10.0, 10.0))


# --------------------------------------------------------------------------- bad input


def test_missing_slice_names_numbers_and_folder(series):
    (series.parent / f"{RUNNO}imx.0002.raw").unlink()
    (series.parent / f"{RUNNO}imx.0004.raw").unlink()
    with pytest.raises(FormatError, match=r"0002, 0004") as error:
        civm.read(series)
    assert str(series.parent) in str(error.value)


def test_truncated_slice_names_the_file(series):
    victim = series.parent / f"{RUNNO}imx.0003.raw"
    victim.write_bytes(victim.read_bytes()[:-2])
    with pytest.raises(FormatError, match=victim.name):
        civm.read(series)


def test_dims_disagreeing_with_file_sizes(tmp_path, volume_u16):
    lines = [x.replace("dim_X={nx}", "dim_X=13") for x in HEADER]
    headfile = make_series(tmp_path / "s", volume_u16, lines=lines)
    with pytest.raises(FormatError, match=f"{RUNNO}imx.0001.raw.*dim_X=13"):
        civm.read(headfile)


@pytest.mark.parametrize("key", ["dim_X", "dim_Z"])
def test_absurd_dims_fail_fast(tmp_path, volume_u16, key):
    lines = [x.replace(f"{key}={{n{key[-1].lower()}}}", f"{key}=1000000000") for x in HEADER]
    headfile = make_series(tmp_path / "s", volume_u16, lines=lines)
    start = time.perf_counter()
    with pytest.raises(FormatError) as error:
        civm.read(headfile, lazy=False)
    assert time.perf_counter() - start < 0.5
    assert str(tmp_path / "s") in str(error.value)


@pytest.mark.parametrize("value", ["-3", "12.5", "big"])
def test_bad_dim_values(tmp_path, volume_u16, value):
    lines = [x.replace("dim_Y={ny}", f"dim_Y={value}") for x in HEADER]
    headfile = make_series(tmp_path / "s", volume_u16, lines=lines)
    with pytest.raises(FormatError, match=f"{headfile.name}.*dim_Y"):
        civm.read(headfile)


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 4, b"just words\n",
                                     b"dim_X=4\ndim_Y=4\n"])
def test_empty_garbage_or_incomplete_headfile(tmp_path, content):
    path = tmp_path / "bad.headfile"
    path.write_bytes(content)
    assert not civm.can_read(path) and not civm.can_read(tmp_path)
    with pytest.raises(FormatError, match="bad.headfile"):
        civm.read(path)


def test_can_read_false_on_unrelated_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("a=1\n")
    (tmp_path / "scan.raw").write_bytes(b"\0" * 64)
    (tmp_path / "x0001.raw").write_bytes(b"\0" * 64)
    for path in (tmp_path, tmp_path / "notes.txt", tmp_path / "scan.raw",
                 tmp_path / "x0001.raw", tmp_path / "missing"):
        assert not civm.can_read(path)


# --------------------------------------------------------------------------- writing


def test_round_trip_keeps_data_spacing_acquisition_and_header(series, tmp_path):
    original = civm.read(series)
    out = tmp_path / "out" / "N70000.headfile"
    out.parent.mkdir()
    written = civm.write(out, original)
    assert written[-1] == str(out) and written[0].endswith("N70000imx.0001.raw")
    back = civm.read(out)
    np.testing.assert_array_equal(back.data, original.data)
    assert back.data.dtype == original.data.dtype
    assert back.spacing_um == pytest.approx(original.spacing_um, rel=1e-12)
    assert_same_acquisition(back.metadata["acquisition"], original.metadata["acquisition"])
    assert back.metadata["header"]["U_runno"] == "N70000"
    header = {k: v for k, v in back.metadata["header"].items() if k != "U_runno"}
    assert header == {k: v for k, v in original.metadata["header"].items() if k != "U_runno"}
    # the slices follow the documented layout
    raw = np.fromfile(out.parent / "N70000imx.0003.raw", ">u2").reshape(6, 12)
    np.testing.assert_array_equal(raw, original.data[2])


def test_round_trip_of_a_full_acquisition(tmp_path):
    protocol = Acquisition(matrix=(2, 3, 4), fov_um=(40, 60, 80), b0_tesla=11.7,
                           nucleus="13C", sequence="gradient_echo", te_ms=(3.0, 6.5),
                           tr_ms=45.5, flip_deg=20, bandwidth_hz=80_000, averages=4,
                           temperature_k=290, b0_direction=(0, 0, 1), readout_axis=1,
                           max_gradient_mT_per_m=750)
    acq = protocol.to_dict()
    vol = Volume(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), (20, 20, 20),
                 {"acquisition": acq})
    write_volume(tmp_path / "A1.headfile", vol)
    back = civm.read(tmp_path / "A1.headfile")
    np.testing.assert_array_equal(back.data, vol.data)
    assert Acquisition.from_headfile(back.metadata["header"]) == protocol
    assert_same_acquisition(back.metadata["acquisition"],
                            {k: v for k, v in acq.items() if k != "extra"})


def test_round_trip_float32_with_nan(tmp_path):
    data = np.random.default_rng(2).normal(size=(3, 4, 5)).astype(np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(FormatError, match="NaN"):
        civm.write(tmp_path / "F1.headfile", Volume(data, (5, 5, 5)))
    civm.write(tmp_path / "F1.headfile", Volume(data, (5, 6, 7)), dtype="f32")
    back = civm.read(tmp_path / "F1.headfile")
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing_um == pytest.approx((5, 6, 7))
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "F1.headfile"
    assert (tmp_path / "F1imx.0001.f32").stat().st_size == 4 * 5 * 4


def test_round_trip_scaled(tmp_path):
    data = np.random.default_rng(3).normal(-5, 10, size=(3, 4, 5))
    civm.write(tmp_path / "S1.headfile", Volume(data, (5, 5, 5)), scale=True)
    back = civm.read(tmp_path / "S1.headfile")
    slope = (data.max() - data.min()) / 65535
    assert back.data.dtype == np.float32 and back.metadata["scaling"]["slope"] == slope
    np.testing.assert_allclose(back.data, data, atol=slope / 2 + 1e-5)
    assert back.data.min() == pytest.approx(data.min(), abs=1e-5)
    # lazily the same values
    np.testing.assert_array_equal(civm.read(tmp_path / "S1.headfile", lazy=True).data, back.data)


def test_whole_valued_floats_are_written_as_uint16(tmp_path):
    data = np.arange(60, dtype=np.float64).reshape(3, 4, 5) * 1000
    civm.write(tmp_path / "W1.headfile", Volume(data, (5, 5, 5)))
    back = civm.read(tmp_path / "W1.headfile")
    assert back.data.dtype == np.uint16 and np.array_equal(back.data, data)


@pytest.mark.parametrize("data, reason", [
    (np.array([[[-1, 2]]], dtype=np.int16), "negative values"),
    (np.array([[[0.5, 2]]]), "fractional values"),
    (np.array([[[70000, 2]]], dtype=np.int32), "above 65535"),
    (np.array([[[np.nan, 2]]]), "NaN"),
])
def test_non_lossless_data_are_refused(tmp_path, data, reason):
    with pytest.raises(FormatError, match=reason) as error:
        civm.write(tmp_path / "R1.headfile", Volume(data, (1, 1, 1)))
    assert "dtype='f32'" in str(error.value) and "scale=True" in str(error.value)
    assert "R1.headfile" in str(error.value) and not list(tmp_path.iterdir())


@pytest.mark.parametrize("data, spacing, words", [
    (np.ones((2, 3, 4), np.complex64), (1, 1, 1), "magnitude and the phase"),
    (np.ones((2, 2, 3, 4), np.uint16), (1, 1, 1), "each echo"),
])
def test_complex_and_echo_data_are_refused(tmp_path, data, spacing, words):
    with pytest.raises(FormatError, match=words):
        civm.write(tmp_path / "C1.headfile", Volume(data, spacing))


def test_two_d_is_one_slice(tmp_path):
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    civm.write(tmp_path / "P1.headfile", Volume(data, (20, 30)))
    back = civm.read(tmp_path / "P1.headfile")
    np.testing.assert_array_equal(back.data, data[None])
    assert back.spacing_um == pytest.approx((30, 20, 30))


def test_unknown_spacing_stays_unknown(tmp_path, volume_u16):
    lines = [x for x in HEADER if not x.startswith("fov")]
    vol = civm.read(make_series(tmp_path / "s", volume_u16, lines=lines))
    civm.write(tmp_path / "U1.headfile", vol)
    assert civm.read(tmp_path / "U1.headfile").metadata["spacing_known"] is False


def test_rewrite_removes_stale_slices_only(tmp_path):
    path = tmp_path / "N2.headfile"
    civm.write(path, Volume(np.ones((4, 2, 2), np.uint16), (1, 1, 1)))
    (tmp_path / "N3imx.0004.raw").write_bytes(b"keep")                 # another run
    civm.write(path, Volume(np.full((2, 2, 2), 0.5, np.float32), (1, 1, 1)), dtype="f32")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "N2.headfile", "N2imx.0001.f32", "N2imx.0002.f32", "N3imx.0004.raw"]
    assert civm.read(path).data.shape == (2, 2, 2)


def _fail_on_slice(number):
    def write_slice(file, *args):
        if file.name.endswith(f".{number:04d}.raw"):
            raise OSError("disk full")
        real_write_slice(file, *args)
    return write_slice


real_write_slice = civm._write_slice


@pytest.mark.parametrize("failure", ["refused", "slice", "headfile_move"])
def test_failed_write_leaves_previous_output_intact(tmp_path, monkeypatch, failure):
    path = tmp_path / "N4.headfile"
    civm.write(path, Volume(np.arange(48, dtype=np.uint16).reshape(3, 4, 4), (1, 1, 1)))
    (tmp_path / "other.txt").write_text("unrelated")
    before, calls = snapshot(tmp_path), []
    new = Volume(np.full((5, 4, 4), 7, np.uint16), (2, 2, 2))
    if failure == "refused":
        new = Volume(np.full((5, 4, 4), -7.5), (2, 2, 2))
    elif failure == "slice":
        monkeypatch.setattr(civm, "_write_slice", _fail_on_slice(4))
    else:
        real_replace = os.replace

        def replace(src, dst):
            if str(dst) == str(path) and not calls:
                calls.append(dst)
                raise OSError("simulated crash while moving the headfile")
            real_replace(src, dst)
        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises((FormatError, OSError)):
        civm.write(path, new)
    if failure == "headfile_move":
        assert calls  # the crash happened after the new slices were moved in
    assert snapshot(tmp_path) == before  # same names (no temp leftovers), same bytes


def test_a_folder_named_like_the_headfile_is_never_deleted(tmp_path):
    (tmp_path / "x.headfile").mkdir()
    (tmp_path / "x.headfile" / "notes.txt").write_text("mine")
    with pytest.raises(FormatError, match="refusing to replace"):
        civm.write(tmp_path / "x.headfile", Volume(np.ones((2, 2, 2), np.uint16), (1, 1, 1)))
    assert (tmp_path / "x.headfile" / "notes.txt").read_text() == "mine"


def test_slices_of_no_series_are_neither_mixed_in_nor_deleted(tmp_path):
    (tmp_path / "N5imx.0001.raw").write_bytes(b"\x00\x01" * 4)  # orphan, not ours
    with pytest.raises(FormatError, match="slices of no series"):
        civm.write(tmp_path / "N5.headfile", Volume(np.ones((2, 2, 2), np.float32),
                                                    (1, 1, 1)), dtype="f32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["N5imx.0001.raw"]


def test_a_commit_killed_halfway_is_completed_by_the_next_read(tmp_path, monkeypatch):
    path = tmp_path / "N6.headfile"
    civm.write(path, Volume(np.full((3, 2, 2), 1, np.uint16), (1, 1, 1)))
    moves, real_replace = [], os.replace

    def replace(src, dst):  # the process dies after two files of the new series moved in
        if ".replaced" not in str(dst) and str(dst).startswith(str(tmp_path / "N6imx")):
            moves.append(dst)
            if len(moves) > 2:
                raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(civm, "_undo", lambda *args: None)  # killed: nothing undone
    monkeypatch.setattr(Path, "unlink", lambda *args, **kw: None)
    monkeypatch.setattr(civm.shutil, "rmtree", lambda *args, **kw: None)
    with pytest.raises(KeyboardInterrupt):
        civm.write(path, Volume(np.full((5, 2, 2), 2, np.uint16), (1, 1, 1)))
    monkeypatch.undo()
    assert (tmp_path / ".N6.headfile.commit.json").is_file()
    volume = civm.read(tmp_path)  # rolled forward: the new series, whole
    assert volume.data.shape == (5, 2, 2) and np.all(volume.data == 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "N6.headfile"] + [f"N6imx.{n:04d}.raw" for n in range(1, 6)]


def test_stale_staging_of_a_killed_writer_is_removed(tmp_path):
    stale = tmp_path / ".N7.headfile.k2j3h4g5.999999999.part"
    stale.mkdir()
    (stale / "N7imx.0001.raw").write_bytes(b"half")
    civm.write(tmp_path / "N7.headfile", Volume(np.ones((1, 2, 2), np.uint16), (1, 1, 1)))
    assert not stale.exists()


def _series(folder, header_text, values=(0, 1, 2, 3)):
    (folder / "N8.headfile").write_text(header_text)
    (folder / "N8imx.0001.raw").write_bytes(np.asarray(values, ">u2").tobytes())
    return folder / "N8.headfile"


def test_unstated_protocol_values_stay_unknown(tmp_path):
    volume = civm.read(_series(tmp_path, "dim_X=2\ndim_Y=2\ndim_Z=1\nU_runno=N8\n"))
    assert volume.metadata["acquisition"] == {"matrix": (1, 2, 2)}  # no TE, FOV or B0
    assert volume.metadata["spacing_known"] is False


@pytest.mark.parametrize("scaling, reason", [
    ("mrmicro_slope=1e39\nmrmicro_intercept=0\n", "beyond the float32 range"),
    ("mrmicro_slope=1e34\nmrmicro_intercept=0\n", "beyond the float32 range"),
    ("mrmicro_slope=0.5\n", "need both"),
    ("mrmicro_slope=0\nmrmicro_intercept=1\n", "non-zero"),
])
def test_a_scaling_that_would_lie_is_refused(tmp_path, scaling, reason):
    path = _series(tmp_path, "dim_X=2\ndim_Y=2\ndim_Z=1\n" + scaling)
    with pytest.raises(FormatError, match=reason):
        civm.read(path)
