"""Bruker ParaVision 2dseq + visu_pars: synthetic scans following the documented layout."""

import time

import dask.array as da
import numpy as np
import pytest

from napari_mrmicro.core.acquisition import GAMMA_BAR_MHZ_PER_T
from napari_mrmicro.io import bruker
from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.jcamp import format_jcamp

CORE = {"TITLE": "Parameter List, ParaVision 6.0.1", "JCAMPDX": "4.24",
        "DATATYPE": "Parameter Values", "ORIGIN": "Bruker BioSpin MRI GmbH"}


def write_scan(root, raw, visu, scan=5, pdata=1, visu_text=None):
    """A study folder ``root/<scan>/pdata/<pdata>/`` with 2dseq (raw bytes as given) and
    visu_pars; returns the scan folder."""
    folder = root / str(scan) / "pdata" / str(pdata)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("acqp", "method"):
        (root / str(scan) / name).write_text("##TITLE=Parameter List\n##END=\n")
    (folder / "2dseq").write_bytes(raw if isinstance(raw, bytes) else raw.tobytes())
    (folder / "visu_pars").write_text(visu_text or format_jcamp({**CORE, **visu}))
    return root / str(scan)


def volume_visu(size, extent, frames=1, word="_16BIT_SGN_INT", order="littleEndian",
                **extra):
    return {"VisuCoreFrameCount": frames, "VisuCoreDim": len(size),
            "VisuCoreSize": list(size), "VisuCoreDimDesc": ["spatial"] * len(size),
            "VisuCoreExtent": list(extent), "VisuCoreUnits": ["mm"] * len(size),
            "VisuCoreWordType": word, "VisuCoreByteOrder": order, **extra}


@pytest.fixture
def volume_3d(tmp_path):
    """3-D _16BIT_SGN_INT little-endian, slope/offset, anisotropic extent."""
    nz, ny, nx = 4, 5, 6
    raw = (np.arange(nz * ny * nx, dtype=np.int16) - 60).reshape(nz, ny, nx)
    visu = volume_visu(
        (nx, ny, nz), (1.2, 0.5, 0.8), VisuCoreDataSlope=[0.25], VisuCoreDataOffs=[10.0],
        VisuCoreOrientation=[[1, 0, 0, 0, 1, 0, 0, 0, 1]],
        VisuCorePosition=[[-0.6, -0.25, -0.4]], VisuCoreFrameThickness=[0.8],
        VisuAcqEchoTime=[12.5], VisuAcqRepetitionTime=[400.0], VisuAcqFlipAngle=30.0,
        VisuAcqImagingFrequency=400.13, VisuAcqImagedNucleus="1H",
        VisuAcqNumberOfAverages=4, VisuAcqPixelBandwidth=500.0,
        VisuAcqImagePhaseEncDir=["col_dir"], VisuAcqEchoSequenceType="GradientEcho",
        VisuAcquisitionProtocol="FLASH3D", VisuSubjectId="molar_7",
        VisuCoreDataUnits=["a.u."])
    scan = write_scan(tmp_path, raw.astype("<i2"), visu)
    return scan, raw


def test_3d_volume_spacing_values_and_acquisition(volume_3d):
    scan, raw = volume_3d
    vol = bruker.read(scan)
    assert vol.data.shape == (4, 5, 6)  # x fastest in the file -> last axis
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data, raw * 0.25 + 10.0)
    assert vol.spacing_um == pytest.approx((200.0, 100.0, 200.0))  # extent/size·1000
    assert vol.axis_labels == ("z", "y", "x")
    # VisuCorePosition (-0.6, -0.25, -0.4) mm LPS -> RAS (0.6, 0.25, -0.4) -> napari (S, A, R)
    assert vol.origin_um == pytest.approx((-400.0, 250.0, 600.0))
    np.testing.assert_allclose(vol.affine_um[:3, :3], np.diag([200.0, -100.0, -200.0]))
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == (4, 5, 6)
    assert acq["fov_um"] == pytest.approx((800.0, 500.0, 1200.0))
    assert acq["te_ms"] == (12.5,) and acq["tr_ms"] == 400.0 and acq["flip_deg"] == 30.0
    assert acq["b0_tesla"] == pytest.approx(400.13 / 42.577478)
    assert acq["averages"] == 4 and acq["nucleus"] == "1H"
    assert acq["readout_axis"] == 2 and acq["bandwidth_hz"] == pytest.approx(500.0 * 6)
    assert acq["sequence"] == "gradient_echo"
    md = vol.metadata
    assert md["format"] == "bruker" and md["source"].endswith("pdata/1/2dseq")
    assert md["header"]["VisuCoreWordType"] == "_16BIT_SGN_INT"
    assert md["subject"] == {"id": "molar_7"} and md["unit"] == "a.u."
    assert md["scaled"] and md["pdata"] == "1" and md["other_pdata"] == []
    assert vol.name == "FLASH3D E5 P1"
    from napari_mrmicro.core import Acquisition
    assert Acquisition.from_dict(acq).voxel_um == pytest.approx(vol.spacing_um)


def test_every_way_of_opening_gives_the_same_volume(volume_3d):
    scan, raw = volume_3d
    pdata = scan / "pdata" / "1"
    paths = [scan, pdata, pdata / "2dseq", pdata / "visu_pars"]
    for path in paths:
        assert bruker.can_read(path), path
        np.testing.assert_allclose(bruker.read(path).data, raw * 0.25 + 10.0)
    # the scan-level visu_pars ParaVision 6 also writes resolves to the pdata
    (scan / "visu_pars").write_text("##TITLE=scan\n##END=\n")
    assert bruker.can_read(scan / "visu_pars")
    assert bruker.read(scan / "visu_pars").metadata["source"] == str(pdata / "2dseq")


def test_lowest_pdata_with_images_is_chosen_and_others_noted(tmp_path):
    visu = volume_visu((3, 2), (3.0, 2.0))
    scan = write_scan(tmp_path, np.full(6, 2, "<i2"), visu, pdata=3)
    write_scan(tmp_path, np.full(6, 1, "<i2"), visu, pdata=2)
    (scan / "pdata" / "1").mkdir()  # an empty pdata (no 2dseq) is skipped
    vol = bruker.read(scan)
    assert vol.metadata["pdata"] == "2" and vol.metadata["other_pdata"] == ["3"]
    assert np.all(vol.data == 1) and vol.data.dtype == np.int16  # slope 1, offset 0
    assert vol.data.shape == (2, 3) and vol.spacing_um == (1000.0, 1000.0)
    assert vol.axis_labels == ("y", "x")


def test_multislice_2d_becomes_a_volume(tmp_path):
    nslice, ny, nx = 3, 4, 5
    truth = np.random.default_rng(0).integers(-500, 500, (nslice, ny, nx)).astype(np.int16)
    positions = [[-1.0, -2.0, -0.7 + 0.7 * k] for k in range(nslice)]
    visu = volume_visu(
        (nx, ny), (2.0, 1.6), frames=nslice, VisuCoreFrameThickness=[0.5],
        VisuFGOrderDescDim=1, VisuFGOrderDesc=[[nslice, "FG_SLICE", "", 0, 2]],
        VisuGroupDepVals=[["VisuCoreOrientation", 0], ["VisuCorePosition", 0]],
        VisuCoreOrientation=[[1, 0, 0, 0, 1, 0, 0, 0, 1]] * nslice,
        VisuCorePosition=positions, VisuCoreDataSlope=[1.0] * nslice,
        VisuCoreDataOffs=[0] * nslice)
    vol = bruker.read(write_scan(tmp_path, truth.astype("<i2"), visu))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.data.dtype == np.int16
    assert vol.spacing_um == pytest.approx((700.0, 400.0, 400.0))  # positions, not thickness
    assert vol.metadata["spacing_source"] == "VisuCoreExtent, VisuCorePosition"
    assert vol.origin_um == pytest.approx((-700.0, 2000.0, 1000.0))  # S, A, R of (1, 2, -0.7) mm
    assert vol.metadata["acquisition"]["matrix"] == (3, 4, 5)


def test_disk_reverse_slice_order_flips_z(tmp_path):
    truth = np.arange(3 * 2 * 2, dtype=np.int16).reshape(3, 2, 2)  # in position order
    visu = volume_visu(
        (2, 2), (1.0, 1.0), frames=3, VisuFGOrderDesc=[[3, "FG_SLICE", "", 0, 0]],
        VisuCoreOrientation=[[1, 0, 0, 0, 1, 0, 0, 0, 1]] * 3,
        VisuCorePosition=[[0, 0, 0.5 * k] for k in range(3)],
        VisuCoreDiskSliceOrder=["disk_reverse_slice_order"], VisuCoreWordType=["_16BIT_SGN_INT"])
    vol = bruker.read(write_scan(tmp_path, truth[::-1].astype("<i2"), visu))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.metadata["disk_slice_order"] == "reverse"
    assert vol.spacing_um == pytest.approx((500.0, 500.0, 500.0))


def test_multislice_without_positions_uses_frame_thickness(tmp_path):
    visu = volume_visu((2, 2), (1.0, 1.0), frames=2, VisuCoreFrameThickness=[0.3],
                       VisuFGOrderDesc=[[2, "FG_SLICE", "", 0, 0]])
    vol = bruker.read(write_scan(tmp_path, np.arange(8, dtype="<i2"), visu))
    assert vol.spacing_um == pytest.approx((300.0, 500.0, 500.0))
    assert vol.metadata["spacing_source"] == "VisuCoreExtent, VisuCoreFrameThickness"


# A multi-echo multi-slice visu_pars written the way ParaVision writes it, by hand.
MSME_VISU = """\
##TITLE=Parameter List, ParaVision 6.0.1
##JCAMPDX=4.24
##DATATYPE=Parameter Values
$$ /opt/PV6.0.1/data/user/nmr/ear.b1/7/pdata/1/visu_pars
##$VisuCoreFrameCount=6
##$VisuCoreDim=2
##$VisuCoreSize=( 2 )
4 3
##$VisuCoreDimDesc=( 2 )
spatial spatial
##$VisuCoreExtent=( 2 )
0.4 0.3
##$VisuCoreFrameThickness=( 1 )
0.1
##$VisuCoreUnits=( 2, 65 )
<mm> <mm>
##$VisuCoreOrientation=( 3, 9 )
0 1 0 -1 0 0 0 0 1 0 1 0 -1 0 0 0 0 1 0 1 0 -1 0 0 0 0 1
##$VisuCorePosition=( 3, 3 )
1 2 3 1 2 3.25 1 2 3.5
##$VisuCoreDataOffs=( 6 )
@6*(0)
##$VisuCoreDataSlope=( 6 )
@2*(0.5) @2*(1) @2*(2)
##$VisuCoreFrameType=MAGNITUDE_IMAGE
##$VisuCoreWordType=_32BIT_SGN_INT
##$VisuCoreByteOrder=littleEndian
##$VisuFGOrderDescDim=2
##$VisuFGOrderDesc=( 2 )
(2, <FG_ECHO>, <>, 0, 1) (3, <FG_SLICE>, <>, 1, 2)
##$VisuGroupDepVals=( 3 )
(<VisuAcqEchoTime>, 0) (<VisuCoreOrientation>, 0) (<VisuCorePosition>, 0)
##$VisuAcqSequenceName=( 65 )
<Bruker:MSME>
##$VisuAcqEchoTime=( 2 )
8 16
##$VisuAcqRepetitionTime=( 1 )
2500
##$VisuMagneticFieldStrength=11.7
##$VisuAcqImagePhaseEncDir=( 3 )
row_dir row_dir row_dir
##$VisuAcqPixelBandwidth=100
##END=
"""


def test_multi_echo_multi_slice(tmp_path):
    ne, ns, ny, nx = 2, 3, 3, 4
    truth = np.arange(ne * ns * ny * nx, dtype=np.int32).reshape(ne, ns, ny, nx) * 1000
    file_order = truth.transpose(1, 0, 2, 3)  # echo varies fastest after the frame
    scan = write_scan(tmp_path, file_order.astype("<i4"), None, scan=7, visu_text=MSME_VISU)
    vol = bruker.read(scan)
    slope = np.array([0.5, 1.0, 2.0])[None, :, None, None]  # per frame = per slice here
    np.testing.assert_allclose(vol.data, truth * slope)
    assert vol.axis_labels == ("echo", "z", "y", "x")
    assert vol.spacing_um == pytest.approx((250.0, 100.0, 100.0))
    # rows of the orientation are the read, phase and slice directions
    # position (1, 2, 3) mm LPS -> RAS (-1, -2, 3); x along subject y, y along -x
    assert vol.origin_um == pytest.approx((3000.0, -2000.0, -1000.0))
    np.testing.assert_allclose(vol.affine_um[:3, :3], [[250, 0, 0], [0, 0, -100], [0, 100, 0]],
                               atol=1e-9)
    acq = vol.metadata["acquisition"]
    assert acq["te_ms"] == (8.0, 16.0) and acq["tr_ms"] == 2500
    assert acq["b0_tesla"] == 11.7 and acq["sequence"] == "spin_echo"
    assert acq["readout_axis"] == 1 and acq["bandwidth_hz"] == 300
    assert acq["matrix"] == (3, 3, 4) and acq["fov_um"] == pytest.approx((750, 300, 400))
    assert [g["name"] for g in vol.metadata["frame_groups"]] == ["FG_ECHO", "FG_SLICE"]


def test_slice_outer_echo_inner_and_generic_groups(tmp_path):
    """FG_SLICE fastest, then FG_CYCLE, then FG_ECHO: (echo, cycle, z, y, x)."""
    ns, nc, ne, ny, nx = 2, 3, 2, 2, 2
    truth = np.arange(ne * nc * ns * ny * nx, dtype=np.int16).reshape(ne, nc, ns, ny, nx)
    visu = volume_visu(
        (nx, ny), (1.0, 1.0), frames=ns * nc * ne, VisuCoreFrameThickness=[0.2],
        VisuFGOrderDesc=[[ns, "FG_SLICE", "", 0, 0], [nc, "FG_CYCLE", "", 0, 0],
                         [ne, "FG_ECHO", "", 0, 0]])
    # file order: frame index = slice + ns·(cycle + nc·echo) -> C order of (echo, cycle, slice)
    vol = bruker.read(write_scan(tmp_path, truth.astype("<i2"), visu))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.axis_labels == ("echo", "cycle", "z", "y", "x")
    visu["VisuFGOrderDesc"] = [[nc, "FG_CYCLE", "", 0, 0], [ne, "FG_ECHO", "", 0, 0],
                               [ns, "FG_SLICE", "", 0, 0]]
    # now cycle fastest: file layout is C order of (slice, echo, cycle)
    raw = truth.transpose(2, 0, 1, 3, 4)
    vol = bruker.read(write_scan(tmp_path, raw.astype("<i2"), visu, scan=8))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.axis_labels == ("echo", "cycle", "z", "y", "x")


def test_big_endian_float32(tmp_path):
    truth = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    visu = volume_visu((5, 4, 3), (0.5, 0.4, 0.3), word="_32BIT_FLOAT", order="bigEndian")
    vol = bruker.read(write_scan(tmp_path, truth.astype(">f4"), visu))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.data.dtype == np.float32 and vol.data.dtype.isnative
    assert vol.spacing_um == pytest.approx((100.0, 100.0, 100.0))


def test_8bit_unsigned(tmp_path):
    truth = np.arange(200, 224, dtype=np.uint8).reshape(4, 6)
    visu = volume_visu((6, 4), (0.6, 0.4), word="_8BIT_UNSGN_INT")
    vol = bruker.read(write_scan(tmp_path, truth, visu))
    np.testing.assert_array_equal(vol.data, truth)
    assert vol.data.dtype == np.uint8


@pytest.mark.parametrize("lazy", [False, True])
def test_complex_frames_become_complex64(tmp_path, lazy):
    ns, ny, nx = 3, 2, 4
    rng = np.random.default_rng(2)
    truth = (rng.integers(-99, 99, (ns, ny, nx)) + 1j * rng.integers(-99, 99, (ns, ny, nx)))
    raw = np.stack([truth.real, truth.imag], axis=1).astype("<i2")  # complex fastest
    visu = volume_visu(
        (nx, ny), (0.8, 0.4), frames=2 * ns, VisuCoreFrameType="COMPLEX_IMAGE",
        VisuCoreFrameThickness=[0.2], VisuCoreDataSlope=[0.5] * 2 * ns,
        VisuCoreDataOffs=[0] * 2 * ns,
        VisuFGOrderDesc=[[2, "FG_COMPLEX", "", 0, 0], [ns, "FG_SLICE", "", 0, 0]])
    vol = bruker.read(write_scan(tmp_path, raw, visu), lazy=lazy)
    assert isinstance(vol.data, da.Array) == lazy
    assert vol.data.dtype == np.complex64 and vol.data.shape == (ns, ny, nx)
    np.testing.assert_allclose(np.asarray(vol.data), truth * 0.5)
    assert vol.axis_labels == ("z", "y", "x")


def test_lazy_reading(volume_3d, tmp_path):
    scan, raw = volume_3d
    vol = bruker.read(scan, lazy=True)  # slope -> dask
    assert isinstance(vol.data, da.Array) and vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data.compute(), raw * 0.25 + 10.0)
    visu = volume_visu((6, 5, 4), (1.2, 0.5, 0.8))
    plain = bruker.read(write_scan(tmp_path, raw.astype("<i2"), visu, scan=9), lazy=True)
    assert isinstance(plain.data, np.memmap)  # trivial slope: the file itself
    np.testing.assert_array_equal(plain.data, raw)


def test_read_volume_dispatches_to_bruker(volume_3d):
    from napari_mrmicro.io import read_volume, reader_for
    scan, raw = volume_3d
    assert reader_for(scan) == "bruker"
    assert read_volume(scan / "pdata" / "1" / "2dseq").metadata["format"] == "bruker"


# --------------------------------------------------------------------------- bad input


def _expect(path, problem, names):
    start = time.perf_counter()
    with pytest.raises(FormatError, match=problem) as info:
        bruker.read(path)
    assert info.value.path == str(names)
    assert time.perf_counter() - start < 1.0


def test_unknown_word_type(tmp_path):
    visu = volume_visu((2, 2), (1.0, 1.0), word="_64BIT_FLOAT")
    scan = write_scan(tmp_path, np.zeros(4, "<f8"), visu)
    _expect(scan, "_64BIT_FLOAT", scan / "pdata/1/visu_pars")


@pytest.mark.parametrize("nbytes", [2 * 23, 2 * 25])
def test_2dseq_shorter_or_longer_than_the_header(tmp_path, nbytes):
    visu = volume_visu((4, 3, 2), (1.0, 1.0, 1.0))
    scan = write_scan(tmp_path, b"\x01" * nbytes, visu)
    _expect(scan, f"48 bytes .* holds {nbytes}", scan / "pdata/1/2dseq")


def test_absurd_size_fails_fast_without_allocating(tmp_path):
    text = format_jcamp({**CORE, **volume_visu((2, 2, 2), (1.0, 1.0, 1.0))}).replace(
        "##$VisuCoreSize=( 3 )\n2 2 2", "##$VisuCoreSize=( 3 )\n1000000000 1000000000 1000000000")
    scan = write_scan(tmp_path, b"\x00" * 16, None, visu_text=text)
    _expect(scan, "header implies 2000000000000000000000000000 bytes", scan / "pdata/1/2dseq")


def test_missing_visu_pars(tmp_path):
    scan = write_scan(tmp_path, b"\x00" * 8, volume_visu((2, 2), (1.0, 1.0)))
    (scan / "pdata/1/visu_pars").unlink()
    seq = scan / "pdata/1/2dseq"
    assert not bruker.can_read(seq) and not bruker.can_read(scan)
    _expect(seq, "no visu_pars", seq)
    _expect(scan, "no pdata", scan)


def test_missing_2dseq(tmp_path):
    scan = write_scan(tmp_path, b"\x00" * 8, volume_visu((2, 2), (1.0, 1.0)))
    (scan / "pdata/1/2dseq").unlink()
    assert not bruker.can_read(scan / "pdata/1/visu_pars")
    _expect(scan / "pdata/1/visu_pars", "2dseq image file is missing", scan / "pdata/1/2dseq")


def test_array_shorter_than_declared_is_refused(tmp_path):
    text = format_jcamp({**CORE, **volume_visu((2, 2), (1.0, 1.0))}).replace(
        "##$VisuCoreSize=( 2 )", "##$VisuCoreSize=( 3 )")
    scan = write_scan(tmp_path, b"\x00" * 8, None, visu_text=text)
    _expect(scan, r"VisuCoreSize declares size \[3\] but holds 2", scan / "pdata/1/visu_pars")


def test_empty_2dseq(tmp_path):
    scan = write_scan(tmp_path, b"", volume_visu((2, 2), (1.0, 1.0)))
    _expect(scan, "empty", scan / "pdata/1/2dseq")


def test_garbage_visu_pars(tmp_path):
    scan = write_scan(tmp_path, b"\x00" * 8, None, visu_text="x")
    (scan / "pdata/1/visu_pars").write_bytes(b"\x89PNG\x00\x01garbage")
    assert not bruker.can_read(scan)
    _expect(scan / "pdata/1/2dseq", "binary", scan / "pdata/1/visu_pars")


@pytest.mark.parametrize("change, problem", [
    ({"VisuCoreFrameCount": 3}, "hold 2 frames but VisuCoreFrameCount = 3"),
    ({"VisuCoreDataSlope": [1.0, 2.0, 3.0]}, "VisuCoreDataSlope holds 3 values for 2"),
    ({"VisuFGOrderDesc": [[2, "FG_COMPLEX", "", 0, 0]]}, None),
    ({"VisuCoreDimDesc": ["spectroscopic", "spatial"]}, "only spatial"),
    ({"VisuCoreSize": [2.5, 2]}, "not integers"),
    ({"VisuCoreExtent": [1.0]}, "VisuCoreExtent"),
    ({"VisuCoreUnits": ["s", "mm"]}, "not lengths"),
    ({"VisuCoreByteOrder": "middleEndian"}, "middleEndian"),
])
def test_inconsistent_headers(tmp_path, change, problem):
    visu = volume_visu((2, 2), (1.0, 1.0), frames=2,
                       VisuFGOrderDesc=[[2, "FG_ECHO", "", 0, 0]])
    visu.update(change)
    scan = write_scan(tmp_path, np.zeros(4 * visu["VisuCoreFrameCount"], "<i2"), visu)
    if problem is None:  # a valid 2-frame FG_COMPLEX needs no error
        assert bruker.read(scan).data.dtype == np.complex64
        return
    _expect(scan, problem, scan / "pdata/1/visu_pars")


def test_complex_group_of_wrong_length(tmp_path):
    visu = volume_visu((2, 2), (1.0, 1.0), frames=3,
                       VisuFGOrderDesc=[[3, "FG_COMPLEX", "", 0, 0]])
    scan = write_scan(tmp_path, np.zeros(12, "<i2"), visu)
    _expect(scan, "FG_COMPLEX has 3 frames", scan / "pdata/1/visu_pars")


def test_can_read_refuses_other_things(tmp_path):
    other = tmp_path / "image.raw"
    other.write_bytes(b"\x00" * 10)
    assert not bruker.can_read(other)
    assert not bruker.can_read(tmp_path)
    assert not bruker.can_read(tmp_path / "missing")
    with pytest.raises(FormatError, match="not a Bruker"):
        bruker.read(other)


# ------------------------------------------------------------------ world geometry

def tripilot_visu(n=8, fov=16.0):
    """Three orthogonal one-frame slices through the isocentre (axial, coronal, sagittal),
    as a ParaVision tripilot stores them: one FG_SLICE group, orientation per frame."""
    half = fov / 2 - fov / n / 2  # first voxel centre, in-plane
    orientations = [[1, 0, 0, 0, 1, 0, 0, 0, 1],   # normal along subject z
                    [1, 0, 0, 0, 0, -1, 0, 1, 0],  # normal along y
                    [0, 1, 0, 0, 0, -1, 1, 0, 0]]  # normal along x
    positions = []
    for o in orientations:
        r = np.reshape(o, (3, 3))
        positions.append([float(v) for v in -half * r[0] - half * r[1]])
    return volume_visu((n, n), (fov, fov), frames=3, VisuCoreFrameThickness=[1.0],
                       VisuFGOrderDescDim=1, VisuFGOrderDesc=[[3, "FG_SLICE", "", 0, 2]],
                       VisuGroupDepVals=[["VisuCoreOrientation", 0], ["VisuCorePosition", 0]],
                       VisuCoreOrientation=orientations, VisuCorePosition=positions,
                       VisuSubjectPosition="Head_Prone", VisuAcquisitionProtocol="TriPilot")


def test_tripilot_becomes_three_one_slice_volumes_in_their_planes(tmp_path):
    n = 8
    raw = np.arange(3 * n * n, dtype="<i2")
    scan = write_scan(tmp_path, raw, tripilot_visu(n))
    volumes = bruker.read_all(scan)
    assert [v.data.shape for v in volumes] == [(1, n, n)] * 3
    assert sorted(v.name.split()[-1] for v in volumes) == ["axial", "coronal", "sagittal"]
    normals = []
    for k, vol in enumerate(volumes):
        np.testing.assert_array_equal(vol.data[0], raw[k * n * n:(k + 1) * n * n]
                                      .reshape(n, n))
        centre = vol.affine_um @ np.array([0.0, (n - 1) / 2, (n - 1) / 2, 1.0])
        np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)  # through the isocentre
        assert vol.spacing_um == pytest.approx((1000.0, 2000.0, 2000.0))
        normals.append(vol.affine_um[:3, 0] / 1000.0)
    np.testing.assert_allclose(np.abs(np.array(normals) @ np.array(normals).T), np.eye(3),
                               atol=1e-9)
    assert bruker.read(scan).metadata["packages"] == 3


def paravision_export_affine(visu: dict) -> np.ndarray:
    """The NIfTI affine (mm) ParaVision's exporter gives (REFERENCES.md "ParaVision
    geometry"): VisuCorePosition with x and y negated, data as (x, y, slice), the slice
    axis reversed when that is needed for a right-handed affine."""
    size = visu["VisuCoreSize"]
    extent = visu["VisuCoreExtent"]
    rows = np.asarray(visu["VisuCoreOrientation"], float).reshape(-1, 9)[0].reshape(3, 3)
    pos = np.asarray(visu["VisuCorePosition"], float).reshape(-1, 3)
    flip = np.diag([-1.0, -1.0, 1.0])
    cols = [extent[0] / size[0] * rows[0], extent[1] / size[1] * rows[1], pos[1] - pos[0]]
    affine = np.eye(4)
    affine[:3, :3] = flip @ np.stack(cols, axis=1)
    affine[:3, 3] = flip @ pos[0]
    if np.linalg.det(affine[:3, :3]) < 0:
        affine[:3, 3] = flip @ pos[-1]
        affine[:3, 2] *= -1
    return affine


def test_rare_2dseq_and_its_nifti_overlap_voxel_for_voxel(realdata, tmp_path):
    nib = pytest.importorskip("nibabel")
    from napari.layers import Layer

    from napari_mrmicro._reader import read_layers
    from napari_mrmicro.core import geometry
    from napari_mrmicro.io import write_volume
    from napari_mrmicro.io.jcamp import read_jcamp

    scan = realdata("bruker_pv/pv360_rodent/5")
    seq = scan / "pdata" / "1" / "2dseq"
    vol = bruker.read(seq)
    assert vol.data.shape == (18, 100, 160)
    out = tmp_path / "rare.nii.gz"
    write_volume(out, vol)
    img = nib.load(out)
    expected = paravision_export_affine(read_jcamp(scan / "pdata" / "1" / "visu_pars"))
    np.testing.assert_allclose(img.affine[:3] / 1e3, expected[:3], atol=1e-6)  # µm file
    assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(expected)
    np.testing.assert_allclose(np.asanyarray(img.dataobj), vol.data.T)  # (x, y, slice)
    from_seq, from_nifti = (Layer.create(*read_layers(p)[0]) for p in (seq, out))
    corners = geometry.corner_points(vol.data.shape)
    for a, b in ((from_seq, from_nifti),):
        wa = np.array([a.data_to_world(c) for c in corners])
        wb = np.array([b.data_to_world(c) for c in corners])
        np.testing.assert_allclose(wa, wb, atol=1e-3)  # µm
    # the centre of the first voxel: VisuCorePosition with x, y negated, in µm (S, A, R)
    first = np.asarray(read_jcamp(scan / "pdata" / "1" / "visu_pars")["VisuCorePosition"],
                       float).reshape(-1, 3)[0]
    np.testing.assert_allclose(from_seq.data_to_world((0, 0, 0)),
                               (first * [-1, -1, 1])[::-1] * 1e3, atol=1e-3)


def test_field_map_carries_hz(realdata):
    from napari_mrmicro._reader import read_layers

    (data, kwargs, kind), = read_layers(realdata("bruker_pv/pv360_rodent/8"))
    assert kwargs["metadata"]["mrmicro"]["value_unit"] == "Hz"
    assert kwargs["name"].endswith("(Hz)")
    from napari_mrmicro._layers import layer_to_volume, volume_to_layer_data
    again, = volume_to_layer_data(layer_to_volume(data, kwargs))  # saved and reopened
    assert again[1]["name"] == kwargs["name"]  # not "... (Hz) (Hz)"
    low, high = kwargs["contrast_limits"]  # symmetric, saturating the 0.5 % largest |Hz|
    inside = np.abs(data[data != 0])
    assert low == -high and high == pytest.approx(np.percentile(inside, 99.5))
    assert 0.99 < (inside <= high).mean() < 1 and high < 0.8 * inside.max()
    assert kwargs["colormap"] == "bwr"
    assert data.min() == pytest.approx(-908, abs=1) and data.max() == pytest.approx(943, abs=1)
    acq = kwargs["metadata"]["mrmicro"]["acquisition"]
    # Head_Prone: the bore runs along the subject's S-I axis; the frame's y runs along it
    # (VisuCoreOrientation row 2 is (0, 0, -1)), so B0 is along the file's array axis y,
    # which the layer puts first (its axes follow the world: S, A, R); the metadata follows
    assert kwargs["metadata"]["mrmicro"]["array_axes_from_file"] == (1, 2, 0)
    assert np.abs(acq["b0_direction"]) == pytest.approx((1, 0, 0))
    world_b0 = np.asarray(kwargs["affine"])[:3, :3] @ acq["b0_direction"]
    assert np.abs(world_b0) == pytest.approx((1, 0, 0))  # along S, the bore
    # the map's Hz are relative to the imaging frequency (acqp BF1 = 400.30774 MHz), not to
    # γ̄ times ParaVision's nominal VisuMagneticFieldStrength (9.40219 T: 400.3213 MHz)
    assert acq["b0_tesla"] * GAMMA_BAR_MHZ_PER_T["1H"] == pytest.approx(400.30774436548796,
                                                                        rel=1e-12)


@pytest.mark.parametrize("number, excitation", [(5, 90.0), (6, 50.0)])
def test_image_and_raw_of_one_scan_state_one_protocol(realdata, number, excitation):
    """B0 from the imaging frequency, and the flip angle of the excitation pulse (method
    ExcPulse1): RARE's VisuAcqFlipAngle and ACQ_flip_angle are its 180° refocusing."""
    from napari_mrmicro.io import bruker_raw

    scan = realdata(f"bruker_pv/pv360_rodent/{number}")
    image = bruker.read(scan / "pdata" / "1" / "2dseq").metadata["acquisition"]
    raw = bruker_raw.read(scan).metadata["acquisition"]
    assert image["b0_tesla"] == pytest.approx(raw["b0_tesla"], rel=1e-12)
    assert image["flip_deg"] == raw["flip_deg"] == excitation


@pytest.mark.parametrize("number, train, spacing_ms, steps, multislice, seconds", [
    (5, 16, 6.0, 96, True, 180.0),           # RARE x16, 10 averages, TR 3 s
    (6, 1, None, 96, True, 304.26615626),   # FLASH, partial Fourier: 96 of 128 rows
    (7, 30, 0.248, 30, True, 1.0),           # single-shot EPI
    (8, 1, None, 4096, False, 91.20195957),  # 3-D field map, 64 x 64 steps, 2 averages
])
def test_scan_time_from_the_encoding_matches_paravision(realdata, number, train, spacing_ms,
                                                        steps, multislice, seconds):
    """The planner's scan time, TR · ⌈phase steps / echo train⌉ · averages, from what the
    2dseq's visu_pars and its scan's method state (echo train, acquired phase steps,
    multi-slice), equals ParaVision's own VisuAcqScanTime; so does the raw reader's."""
    from napari_mrmicro.core import Acquisition
    from napari_mrmicro.core.physics import protocol_summary
    from napari_mrmicro.io import bruker_raw

    scan = realdata(f"bruker_pv/pv360_rodent/{number}")
    acq = bruker.read(scan / "pdata" / "1" / "2dseq").metadata["acquisition"]
    assert (acq["echo_train"], acq["phase_steps"], acq["multislice"]) == (train, steps,
                                                                          multislice)
    assert acq.get("echo_spacing_ms") == (None if spacing_ms is None
                                          else pytest.approx(spacing_ms, rel=1e-12))
    assert acq["scan_time_s"] == pytest.approx(seconds, rel=1e-9)
    summary = protocol_summary(Acquisition.from_dict(acq))
    assert summary["phase_steps"] == steps
    assert summary["scan_time_s"] == pytest.approx(seconds, rel=1e-9)
    if number in (5, 6):
        raw = bruker_raw.read(scan).metadata["acquisition"]
        assert protocol_summary(Acquisition.from_dict(raw))["scan_time_s"] == pytest.approx(
            seconds, rel=1e-9)


def test_excitation_angle_across_paravision_versions(realdata):
    from napari_mrmicro.io.jcamp import read_jcamp

    fixtures = realdata("bruker_pv/brkraw_param_fixtures")
    assert bruker.excitation_angle(read_jcamp(fixtures / "method_EPI_pv5_1.jdx")) == 68.4
    assert bruker.excitation_angle(read_jcamp(fixtures / "method_FLASH_pv360_3_1.jdx")) == 30
    assert bruker.excitation_angle({"ExcPulse1": [1.0, 5400]}) is None  # too short
    assert bruker.excitation_angle({"ExcPulse1": [1.0, 5400, "Yes"]}) is None


def test_tripilot_opens_as_three_layers(tmp_path):
    from napari.layers import Layer

    from napari_mrmicro._reader import read_layers

    n = 8
    scan = write_scan(tmp_path, np.ones(3 * n * n, "<i2"), tripilot_visu(n))
    layers = [Layer.create(*ld) for ld in read_layers(scan)]
    assert len(layers) == 3 and all(layer.ndim == 3 for layer in layers)
    for layer in layers:  # each slice's centre at the isocentre, in its own plane (a
        # sagittal or coronal slice's axes follow the world's: its single plane may be any)
        assert sorted(layer.data.shape) == [1, n, n]
        centre = tuple((np.array(layer.data.shape) - 1) / 2)
        np.testing.assert_allclose(layer.data_to_world(centre), 0, atol=1e-6)


def test_an_msme_scan_gives_its_t2_map(tmp_path, capsys):
    """A ParaVision multi-echo spin echo (8 echoes of 3 slices, float32, echo varying
    fastest after the frame): ``mrmicro relax`` on the scan folder reads the echo times and
    the sequence from visu_pars and maps T2, skipping the first echo, which lies 15 % low."""
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import read_volume

    ne, ns, ny, nx = 8, 3, 24, 32
    te = 10.0 * np.arange(1, ne + 1)
    t2 = np.where(np.arange(nx) < nx // 2, 30.0, 70.0)[None, None, :] * np.ones((ns, ny, nx))
    signal = 1000.0 * np.exp(-te[:, None, None, None] / t2)
    signal[..., :4] = 0.0  # a strip without signal: the background
    signal[0] *= 0.85
    rng = np.random.default_rng(2)
    echoes = np.abs(signal + rng.normal(0, 2, signal.shape) + 1j * rng.normal(0, 2, signal.shape))
    visu = volume_visu((nx, ny), (3.2, 2.4), frames=ne * ns, word="_32BIT_FLOAT",
                       VisuFGOrderDescDim=2,
                       VisuFGOrderDesc=[[ne, "FG_ECHO", "", 0, 0], [ns, "FG_SLICE", "", 0, 0]],
                       VisuCoreFrameThickness=[0.5], VisuAcqEchoTime=te.tolist(),
                       VisuAcqRepetitionTime=[3000.0], VisuAcqEchoSequenceType="SpinEcho",
                       VisuAcqSequenceName="Bruker:MSME", VisuMagneticFieldStrength=9.4)
    file_order = echoes.transpose(1, 0, 2, 3)  # frames: echo fastest, then slice
    scan = write_scan(tmp_path, file_order.astype("<f4"), visu, scan=9)
    assert main(["relax", str(scan), str(tmp_path / "t2.nii.gz"), "--skip-echoes", "1"]) == 0
    assert "T2 in ms, nonlinear fit of 7 echoes" in capsys.readouterr().out
    found = np.asarray(read_volume(tmp_path / "t2.nii.gz").data)
    assert found.shape == (ns, ny, nx) and (found == 0).sum() == ns * ny * 4  # background
    for truth, part in ((30.0, (found > 0) & (found < 50)), (70.0, found >= 50)):
        assert part.sum() == ns * ny * (12 if truth == 30 else 16)
        assert np.median(found[part]) == pytest.approx(truth, rel=0.01)


def _t1_scan(tmp_path, scan, images, visu_extra, group=None, rng_seed=3):
    """A 2-D multi-slice ParaVision scan of ``images`` (point, slice, y, x) with a
    background strip, Rician noise σ 2, float32; ``group`` the frame group of the points
    (fastest after the frame, before the slices)."""
    points, ns, ny, nx = images.shape
    rng = np.random.default_rng(rng_seed)
    noisy = np.abs(images + rng.normal(0, 2, images.shape)
                   + 1j * rng.normal(0, 2, images.shape))
    groups = ([group] if group else []) + [[ns, "FG_SLICE", "", 0, 0]]
    visu = volume_visu((nx, ny), (nx / 10, ny / 10), frames=points * ns, word="_32BIT_FLOAT",
                       VisuFGOrderDescDim=len(groups), VisuFGOrderDesc=groups,
                       VisuCoreFrameThickness=[0.5], VisuMagneticFieldStrength=9.4,
                       **visu_extra)
    order = noisy.transpose(1, 0, 2, 3) if group else noisy[0]
    return write_scan(tmp_path, order.astype("<f4"), visu, scan=scan)


def _two_t1(shape):
    """No signal in the first third of the columns (the background, where the noise is
    measured), then T1 500 ms and 1500 ms."""
    ns, ny, nx = shape
    t1 = np.where(np.arange(nx) < 2 * nx // 3, 500.0, 1500.0) * np.ones(shape)
    m0 = np.full(shape, 1000.0)
    m0[..., :nx // 3] = 0.0
    return m0, t1


def _check_t1(found, m0, t1, rel):
    assert (found[m0 == 0] == 0).all()
    for truth in (500.0, 1500.0):
        part = (t1 == truth) & (m0 > 0)
        assert (found[part] > 0).mean() > 0.99
        assert np.median(found[part]) == pytest.approx(truth, rel=rel)


def test_an_inversion_recovery_series_gives_its_t1_map(tmp_path, capsys):
    """Inversion times vary with an FG_MOVIE group (VisuAcqInversionTime, as ParaVision's
    IR methods write it): the scan opens as (movie, z, y, x) with its TIs, and `mrmicro t1
    inversion_recovery <scan>` maps T1 (a 0.95 inversion, TR 6 s)."""
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import read_volume

    ti = np.array([25.0, 150.0, 400.0, 1000.0, 2500.0, 5000.0])
    m0, t1 = _two_t1((2, 16, 36))
    images = np.abs(m0 * (1 - 1.9 * np.exp(-ti[:, None, None, None] / t1)
                          + np.exp(-6000.0 / t1)))
    scan = _t1_scan(tmp_path, 4, images, {
        "VisuGroupDepVals": [["VisuAcqInversionTime", 0]], "VisuAcqInversionTime": ti.tolist(),
        "VisuAcqRepetitionTime": [6000.0]},
        group=[len(ti), "FG_MOVIE", "Selective Inversion", 0, 1])
    volume = bruker.read(scan)
    assert volume.axis_labels == ("movie", "z", "y", "x")
    assert volume.metadata["acquisition"]["ti_ms"] == tuple(ti)
    assert main(["t1", "inversion_recovery", str(scan), str(tmp_path / "t1.nii.gz"),
                 "--sd", str(tmp_path / "sd.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "inversion_recovery fit of 6 images (ti_ms 25, 150, 400, 1000, 2500, 5000 ms)" in out
    t1_map = read_volume(tmp_path / "t1.nii.gz")
    assert t1_map.metadata["value_unit"] == "ms" and t1_map.metadata["relaxometry"][
        "median_inversion"] == pytest.approx(1.9 / (1 + np.exp(-6000 / 1500)), rel=0.02)
    _check_t1(np.asarray(t1_map.data), m0, t1, 0.01)
    sd = np.asarray(read_volume(tmp_path / "sd.nii.gz").data)
    assert 0 < np.median(sd[(t1 == 1500) & (m0 > 0)]) < 0.02 * 1500  # SNR 500


def test_a_variable_tr_series_gives_its_t1_map(tmp_path, capsys):
    """A RARE-VTR: VisuAcqRepetitionTime varies with the cycle group; tr_ms keeps the first
    frame's TR and tr_series_ms holds all."""
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import read_volume

    tr = np.array([200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0])
    m0, t1 = _two_t1((2, 16, 36))
    images = m0 * (1 - np.exp(-tr[:, None, None, None] / t1))
    scan = _t1_scan(tmp_path, 5, images, {
        "VisuGroupDepVals": [["VisuAcqRepetitionTime", 0]],
        "VisuAcqRepetitionTime": tr.tolist(), "VisuAcqSequenceName": "Bruker:RAREVTR"},
        group=[len(tr), "FG_CYCLE", "", 0, 1])
    acq = bruker.read(scan).metadata["acquisition"]
    assert acq["tr_series_ms"] == tuple(tr) and acq["tr_ms"] == 200.0
    assert main(["t1", "saturation_recovery", str(scan), str(tmp_path / "t1.nii.gz")]) == 0
    _check_t1(np.asarray(read_volume(tmp_path / "t1.nii.gz").data), m0, t1, 0.01)


def test_vfa_scans_give_a_t1_map_with_their_flip_angles(tmp_path, capsys):
    """Four FLASH scans of one grid at 3, 8, 15 and 30 degrees (TR 20 ms), given in any
    order: `mrmicro t1 vfa` reads each scan's flip angle; a scan on another grid, one with
    another TR, and a missing angle are refused by name."""
    from napari_mrmicro.cli import main
    from napari_mrmicro.io import read_volume

    m0, t1 = _two_t1((2, 16, 36))
    m0 = m0 * 3
    scans = []
    for number, angle in zip((8, 6, 9, 7), (15.0, 3.0, 30.0, 8.0)):
        a, e = np.deg2rad(angle), np.exp(-20.0 / t1)
        image = m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e)
        scans.append(str(_t1_scan(tmp_path, number, image[None], {
            "VisuAcqFlipAngle": angle, "VisuAcqRepetitionTime": [20.0]}, rng_seed=number)))
    assert main(["t1", "vfa", *scans, str(tmp_path / "t1.nii.gz"),
                 "--m0", str(tmp_path / "m0.nii.gz")]) == 0
    assert "vfa fit of 4 images (flip_deg 3, 8, 15, 30 °)" in capsys.readouterr().out
    _check_t1(np.asarray(read_volume(tmp_path / "t1.nii.gz").data), m0, t1, 0.03)
    m0_map = np.asarray(read_volume(tmp_path / "m0.nii.gz").data)
    assert np.median(m0_map[m0 > 0]) == pytest.approx(3000, rel=0.03)

    other = _t1_scan(tmp_path, 10, m0[None, :, :12] * 0.1, {"VisuAcqFlipAngle": 20.0,
                                                          "VisuAcqRepetitionTime": [20.0]})
    assert main(["t1", "vfa", *scans[:2], str(other), str(tmp_path / "x.nii.gz")]) == 2
    assert "is not on the grid of" in capsys.readouterr().err
    slow = _t1_scan(tmp_path, 11, m0[None] * 0.1, {"VisuAcqFlipAngle": 20.0,
                                                   "VisuAcqRepetitionTime": [40.0]})
    assert main(["t1", "vfa", *scans[:2], str(slow), str(tmp_path / "x.nii.gz")]) == 2
    assert "needs one TR" in capsys.readouterr().err
    bare = _t1_scan(tmp_path, 12, m0[None] * 0.1, {"VisuAcqRepetitionTime": [20.0]})
    assert main(["t1", "vfa", *scans[:2], str(bare), str(tmp_path / "x.nii.gz")]) == 2
    assert "states no flip_deg" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
