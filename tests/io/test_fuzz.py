"""Mutation fuzzing of every reader: small valid files (written here, and real instrument
files from ../shared/realdata) with bytes flipped, files cut short or header numbers
replaced by extreme values must read as data that make sense (every axis >= 1, finite
values, an allocation bounded by the file size) or fail with a FormatError naming the
file, within a second or two. Anything else (a library's own exception, an infinity, an
empty axis, a hang) is a reader that lies or crashes.

Few examples per format and a fixed seed (derandomized) keep this fast and reproducible.
"""

import re
import shutil
import struct
import time

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_mrmicro.io import FormatError, Volume, read_volume, write_volume
from napari_mrmicro.io import omezarr

EXAMPLES = 80
SECONDS = 2.0
#: Extreme values a header number is replaced by.
EXTREMES = ("0", "-1", "1e39", "-1e39", "nan", "inf", "352.5", "2147483647", "1e-300", "",
            "8", "65536")
#: Extreme binary header fields (either byte order) written over a header word.
FIELDS = tuple(struct.pack(order + code, v) for order in "<>" for code, v in (
    ("h", 0), ("h", 8), ("h", -1), ("H", 65535), ("i", 0), ("i", 2**31 - 1),
    ("f", 352.5), ("f", 3e38), ("f", float("nan")), ("f", 0.0), ("d", 1e300)))
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TEXT_SUFFIXES = (".headfile", ".zattrs", ".zarray", ".zgroup", "visu_pars", "reco",
                  "acqp", "method")


def _data(shape=(3, 5, 6)):
    return np.arange(np.prod(shape), dtype=np.uint16).reshape(shape) * 7


def _tiff(folder):
    write_volume(folder / "v.tif", Volume(_data(), (10.0, 8.0, 8.0)))
    return folder / "v.tif"


def _nifti(folder):
    write_volume(folder / "v.nii", Volume(_data(), (10.0, 8.0, 8.0)))
    return folder / "v.nii"


def _nifti_gz(folder):
    write_volume(folder / "v.nii.gz", Volume(_data(), (10.0, 8.0, 8.0)))
    return folder / "v.nii.gz"


def _civm(folder):
    scaled = _data().astype(np.float32) / 3.0  # written with mrmicro_slope/intercept
    write_volume(folder / "v.headfile", Volume(scaled, (10.0, 8.0, 8.0)), scale=True)
    return folder / "v.headfile"


def _omezarr(folder):
    omezarr.write(folder / "v.ome.zarr", Volume(_data(), (10.0, 8.0, 8.0)), chunks=4)
    return folder / "v.ome.zarr"


def _nih_tiff(folder):
    """An NIH Image TIFF: its 512-byte header (ImageJ's offsets) in tag 43314 as 256
    big-endian shorts, 12.5 µm pixels, 3 slices 40 µm apart."""
    header = bytearray(512)
    header[0:8] = b"IPICIMAG"
    struct.pack_into(">h", header, 12, 160)  # version
    struct.pack_into(">d", header, 160, 80.0)  # pixels per mm: 12.5 µm
    struct.pack_into(">h", header, 172, 7)  # unit code 7: mm
    struct.pack_into(">h", header, 260, 3)  # slices
    struct.pack_into(">f", header, 262, 0.04)  # slice spacing, mm
    tag = (43314, "H", 256, np.frombuffer(bytes(header), ">u2"), True)
    tifffile.imwrite(folder / "v.tif", _data().astype(np.uint8), byteorder=">",
                     photometric="minisblack", metadata=None, extratags=[tag])
    return folder / "v.tif"


def _real(relative, files):
    def build(folder, realdata):
        source = realdata(relative)
        for name in files:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name if source.is_dir() else source, target)
        return folder / files[0]
    return build


BUILDERS = {
    "tiff": _tiff, "nifti": _nifti, "nifti_gz": _nifti_gz, "civm": _civm,
    "omezarr": _omezarr, "nih_tiff": _nih_tiff,
    "real_nifti": _real("nifti/nibabel/anatomical.nii", ["anatomical.nii"]),
    "real_paravision": _real("bruker_pv/pv360_rodent/8/pdata/1",
                             ["2dseq", "visu_pars", "reco"]),
    "real_paravision_epi_raw": _real("bruker_pv/pv360_rodent/7",
                                     ["rawdata.job0", "acqp", "method"]),
}


def _mutable_files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _mutate(path, kind, where, value):
    raw = path.read_bytes()
    if not raw:
        return
    if kind == "text" and path.name.endswith(_TEXT_SUFFIXES):
        numbers = list(_NUMBER.finditer(raw))
        if numbers:
            match = numbers[where % len(numbers)]
            raw = raw[:match.start()] + EXTREMES[value % len(EXTREMES)].encode() \
                + raw[match.end():]
            path.write_bytes(raw)
            return
    if kind == "field":
        field = FIELDS[value % len(FIELDS)]
        position = (where % max(1, min(len(raw), 512) - len(field) + 1)) & ~1
        path.write_bytes(raw[:position] + field + raw[position + len(field):])
        return
    if kind == "truncate":
        path.write_bytes(raw[:where % len(raw)])
        return
    position = where % min(len(raw), 1024) if kind == "header" else where % len(raw)
    mutated = bytearray(raw)
    mutated[position] ^= (value % 255) + 1
    path.write_bytes(bytes(mutated))


MUTATIONS = st.tuples(st.sampled_from(["text", "field", "header", "byte", "truncate"]),
                      st.integers(0, 2**31), st.integers(0, 2**16), st.integers(0, 2**16))


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_a_mutated_file_reads_as_sense_or_a_format_error_naming_it(fmt, tmp_path_factory,
                                                                    realdata):
    pristine = tmp_path_factory.mktemp(f"{fmt}-pristine")
    builder = BUILDERS[fmt]
    target = builder(pristine, realdata) if fmt.startswith("real") else builder(pristine)
    original = read_volume(target, lazy=False)  # the unmutated file reads
    files = [p.relative_to(pristine) for p in _mutable_files(pristine)]
    budget = 1100 * sum((pristine / f).stat().st_size for f in files) + 2**20
    work = tmp_path_factory.mktemp(f"{fmt}-mutated")
    counter = iter(range(10**6))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(MUTATIONS)
    def check(mutation):
        kind, which, where, value = mutation
        folder = work / str(next(counter))
        shutil.copytree(pristine, folder)
        _mutate(folder / files[which % len(files)], kind, where, value)
        path = folder / target.relative_to(pristine)
        start = time.perf_counter()
        try:
            volume = read_volume(path, lazy=False)
            data = np.asarray(volume.data)
        except FormatError as error:
            assert str(folder) in str(error), f"{mutation}: {error} does not name the file"
            return
        finally:
            assert time.perf_counter() - start < SECONDS, f"{mutation}: too slow"
        assert data.ndim >= 2 and min(data.shape) >= 1, f"{mutation}: shape {data.shape}"
        assert data.nbytes <= budget, f"{mutation}: {data.nbytes} bytes from a small file"
        if data.dtype.kind in "fc":
            assert np.all(np.isfinite(data)), f"{mutation}: non-finite values"
        assert all(np.isfinite(s) and s > 0 for s in volume.spacing_um)
        shutil.rmtree(folder)

    assert original.data.size > 0
    check()


# --------------------------------------------------------------------------- known lies


def _set(path, offset, fmt, value):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))


def _tiff_tag(path, tag, value):
    raw = path.read_bytes()
    ifd = struct.unpack("<I", raw[4:8])[0]
    for i in range(struct.unpack("<H", raw[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * i
        code, kind = struct.unpack("<HH", raw[at:at + 4])
        if code == tag:
            _set(path, at + 8, "<H" if kind == 3 else "<I", value)
            return
    raise AssertionError(f"no tag {tag}")


def _replace(path, old, new):
    text = path.read_bytes()
    assert old in text
    path.write_bytes(text.replace(old, new, 1))


def _drop_a_chunk(path):
    chunk = next(p for p in sorted((path / "0").rglob("*")) if p.is_file()
                 and not p.name.startswith("."))
    chunk.unlink()


LIES = {  # format -> (mutation of the pristine target, what the refusal says)
    "nifti vox_offset 352.5": ("nifti", lambda p: _set(p, 108, "<f", 352.5), "vox_offset"),
    "nifti dim[0] 8": ("nifti", lambda p: _set(p, 40, "<h", 8), r"dim\[0\]"),
    "nifti scl_slope 1e38": ("nifti", lambda p: _set(p, 112, "<f", 3e38), "float32"),
    "tiff height 0": ("tiff", lambda p: _tiff_tag(p, 257, 0), "height"),
    "tiff width 0": ("tiff", lambda p: _tiff_tag(p, 256, 0), "corrupt TIFF"),
    "civm slope beyond float32": ("civm", lambda p: p.write_bytes(
        re.sub(rb"mrmicro_slope=[^\n]*", b"mrmicro_slope=9e33", p.read_bytes())), "float32"),
    "civm intercept cut off": ("civm", lambda p: p.write_bytes(
        re.sub(rb"mrmicro_intercept=[^\n]*\n", b"", p.read_bytes())), "need both"),
    "omezarr chunk gone": ("omezarr", _drop_a_chunk, "chunks are missing"),
    "paravision slope beyond float32": ("real_paravision", lambda p: _replace(
        p.parent / "visu_pars", b"4.3926659061351407e-07", b"1e30"), "float32"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_known_lie_is_refused(lie, tmp_path, realdata):
    fmt, mutate, reason = LIES[lie]
    builder = BUILDERS[fmt]
    target = builder(tmp_path, realdata) if fmt.startswith("real") else builder(tmp_path)
    read_volume(target, lazy=False)
    mutate(target)
    with pytest.raises(FormatError, match=reason) as error:
        read_volume(target, lazy=False)
    assert str(tmp_path) in str(error.value)
