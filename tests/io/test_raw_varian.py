"""Agilent/Varian fid + procpar: fids written here with nmrglue's header/block writers
and procpars with ``nmrglue.varian.write_procpar``, following the VnmrJ layout."""

import shutil

import numpy as np
import pytest

ng = pytest.importorskip("nmrglue")
from nmrglue.fileio import varian as ngv  # noqa: E402

from napari_mrmicro.core.kspace import centered_fft, centered_ifft  # noqa: E402
from napari_mrmicro.io import varian  # noqa: E402
from napari_mrmicro.io._common import FormatError  # noqa: E402

SCALE = 1000.0
STATUS = {">i2": 0x11, ">i4": 0x15, ">f4": 0x19}  # data, complex (+ 32-bit / float)


def param(name, values):
    entry = ngv.create_pdic_param(name, [str(v) for v in values])
    if any(isinstance(v, str) for v in values):
        entry["basictype"] = "2"
    return entry


def write_fid_folder(folder, kspace, seqcon, pss=(0.0,), table=None, table2=None,
                     pelist=None, dtype=">i2", extra=None, blocks_extra=0):
    """Write ``kspace`` (receiver, echo, z, y, x; DC at N//2) as fid + procpar.

    Traces in a block: echo fastest, then compressed slice, pe1, pe2; blocks: receiver
    fastest, then standard slice, pe1, pe2. Slice ``s`` of the acquisition is at
    ``pss[s]``; z of the k-space is the rank of its position.
    """
    folder.mkdir(parents=True, exist_ok=True)
    receivers, echoes, nz, ny, nx = kspace.shape
    three_d = seqcon[3] != "n"
    nv2 = nz if three_d else 1
    slices = len(pss)
    rank = np.argsort(np.argsort(pss))
    steps1 = table if table is not None else (pelist if pelist is not None else
                                              list(range(-(ny // 2), ny - ny // 2)))
    steps2 = table2 if table2 is not None else list(range(-(nv2 // 2), nv2 - nv2 // 2))
    loops = [("slice", slices, seqcon[1]), ("pe1", ny, seqcon[2]), ("pe2", nv2, seqcon[3])]
    standard = [(n, k) for n, k, c in loops if c == "s"]
    compressed = [(n, k) for n, k, c in loops if c == "c"]

    def counters(names_sizes, flat):
        out = {}
        for name, size in names_sizes:  # fastest first
            out[name], flat = flat % size, flat // size
        return out

    n_std = int(np.prod([k for _, k in standard])) if standard else 1
    n_cmp = int(np.prod([k for _, k in compressed])) if compressed else 1
    blocks = []
    for b in range(n_std * receivers + blocks_extra):
        r, std = b % receivers, counters(standard, (b // receivers) % n_std)
        trace_values = []
        for t in range(n_cmp * echoes):
            e, cmp_ = t % echoes, counters(compressed, t // echoes)
            c = {"slice": 0, "pe1": 0, "pe2": 0, **std, **cmp_}
            y = steps1[c["pe1"]] + ny // 2
            z = steps2[c["pe2"]] + nv2 // 2 if three_d else rank[c["slice"]]
            line = kspace[r, e, z, y]
            trace_values.append(np.stack([line.real, line.imag], -1).ravel())
        blocks.append(np.concatenate(trace_values).astype(dtype))
    itemsize = np.dtype(dtype).itemsize
    with open(folder / "fid", "wb") as f:
        ngv.put_fileheader(f, [len(blocks), n_cmp * echoes, 2 * nx, itemsize, 2 * nx * itemsize,
                               n_cmp * echoes * 2 * nx * itemsize + 28, 0, STATUS[dtype], 1])
        for i, block in enumerate(blocks):
            ngv.put_block(f, block, 1, [1, STATUS[dtype], i + 1, 0, 1, 0.0, 0.0, 0.0, 0.0])
    params = {"seqfil": "gems", "seqcon": seqcon, "np": 2 * nx, "nv": ny,
              "nv2": nv2 if three_d else 0, "ns": slices, "pss": list(pss), "ne": echoes,
              "rcvrs": "y" * receivers, "lro": 1.2, "lpe": 0.8, "lpe2": 0.4, "thk": 0.5,
              "te": 0.005, "tr": 0.1, "flip1": 20.0, "sfrq": 400.13, "tn": "H1",
              "sw": 50000.0, "nt": 4, "array": "", "petable": "n", **(extra or {})}
    if pelist is not None:
        params["pelist"] = list(pelist)
    if table is not None:
        params["petable"] = "tcentric"
        text = "t1 =\n" + "\n".join(" ".join(map(str, table[i:i + 4]))
                                    for i in range(0, len(table), 4))
        if table2 is not None:
            text += "\nt2 =\n" + " ".join(map(str, table2))
        (folder / "tcentric").write_text(text + "\n")
    pdic = {k: param(k, v if isinstance(v, list) else [v]) for k, v in params.items()}
    ngv.write_procpar(str(folder / "procpar"), pdic, overwrite=True)
    return folder


def phantom(shape, axes, seed=0):
    image = np.random.default_rng(seed).random(shape) + 0.5
    return np.round(centered_fft(image, axes=axes) * SCALE).astype(np.complex64), image


def centric(n):
    return sorted(range(-(n // 2), n - n // 2), key=lambda s: (abs(s), s))


@pytest.fixture
def gems(tmp_path):
    kspace, image = phantom((3, 8, 10), (-2, -1))
    folder = write_fid_folder(tmp_path / "gems_01.fid", kspace[None, None], "nccnn",
                              pss=(0.1, -0.1, 0.0), table=centric(8))
    return folder, kspace, image


def test_gems_compressed_multislice_petable(gems):
    folder, kspace, image = gems
    ks = varian.read_kspace(folder)
    assert ks.data.shape == (1, 3, 8, 10) and ks.multislice
    np.testing.assert_array_equal(ks.data[0], kspace)
    recon = centered_ifft(ks.data[0], axes=(-2, -1)).real / SCALE
    np.testing.assert_allclose(recon, image, atol=2e-3)
    # nmrglue reads the same fid: 1 block of 24 traces of 10 points
    _, ng_data = ng.varian.read_fid_ntraces(str(folder / "fid"), as_2d=True)
    assert ng_data.shape == (24, 10)


def test_gems_metadata(gems):
    folder, _, _ = gems
    vol = varian.read(folder / "fid")
    acq = vol.metadata["acquisition"]
    assert acq["matrix"] == [3, 8, 10]
    np.testing.assert_allclose(acq["fov_um"], [3000.0, 8000.0, 12000.0])
    assert acq["b0_tesla"] == pytest.approx(400.13 / 42.577478) and acq["nucleus"] == "1H"
    assert acq["te_ms"] == [5.0] and acq["tr_ms"] == 100.0 and acq["flip_deg"] == 20.0
    assert acq["bandwidth_hz"] == 50000.0 and acq["averages"] == 4
    assert acq["sequence"] == "gradient_echo"
    np.testing.assert_allclose(vol.spacing_um, (1000.0, 1000.0, 1200.0))
    md = vol.metadata
    assert md["format"] == "varian" and md["kspace"] and md["multislice"]
    assert md["phase_encode_table"] == "petable tcentric"
    assert md["header"]["procpar"]["pss"] == [0.1, -0.1, 0.0]
    assert md["header"]["fid_header"]["ntraces"] == 24


def test_sems_standard_pe_two_receivers_float_pelist(tmp_path):
    kspace = np.stack([phantom((2, 6, 8), (-2, -1), seed=s)[0] for s in range(2)])[:, None]
    pelist = [2, -3, 1, -2, 0, -1]
    folder = write_fid_folder(tmp_path / "sems.fid", kspace / 3, "ncsnn", pss=(-0.05, 0.05),
                              pelist=pelist, dtype=">f4",
                              extra={"seqfil": "sems"})
    vol = varian.read(folder)
    assert vol.data.shape == (2, 1, 2, 6, 8) and vol.metadata["coil_axis"] == 0
    np.testing.assert_allclose(vol.data, kspace / 3, rtol=1e-6)
    assert vol.metadata["acquisition"]["sequence"] == "spin_echo"
    assert vol.metadata["phase_encode_table"] == "pelist"


def test_ge3d_two_echoes_int32_tables(tmp_path):
    kspace = np.stack([phantom((4, 6, 8), (-3, -2, -1), seed=s)[0] for s in range(2)])
    folder = write_fid_folder(tmp_path / "ge3d.fid", kspace[None], "cccsn",
                              table=centric(6), table2=[1, -2, 0, -1], dtype=">i4",
                              extra={"seqfil": "ge3d", "te": [0.004, 0.009]})
    ks = varian.read_kspace(folder)
    assert ks.data.shape == (2, 4, 6, 8) and not ks.multislice
    np.testing.assert_array_equal(ks.data, kspace)
    vol = varian.read(folder)
    assert vol.metadata["acquisition"]["te_ms"] == [4.0, 9.0]
    assert vol.spacing_um == pytest.approx((1000.0, 8000 / 6, 1500.0))


def test_can_read(gems, tmp_path):
    folder, _, _ = gems
    assert varian.can_read(folder) and varian.can_read(folder / "fid")
    assert not varian.can_read(folder / "procpar")
    (tmp_path / "bruker").mkdir()
    (tmp_path / "bruker" / "fid").write_bytes(b"\0" * 64)
    (tmp_path / "bruker" / "acqp").write_text("##TITLE=x\n")
    assert not varian.can_read(tmp_path / "bruker")


def test_truncated_fid(gems):
    folder, _, _ = gems
    data = (folder / "fid").read_bytes()
    (folder / "fid").write_bytes(data[:-7])
    with pytest.raises(FormatError, match=r"gems_01.fid/fid: header implies"):
        varian.read(folder)


def test_a_procpar_without_its_fid_is_named_as_such(realdata, tmp_path):
    """The real procpar-only experiment: read_volume names the missing fid (it said "not a
    format napari-mrmicro reads"); a fid cut inside its header and an image folder of FDF
    files are named too."""
    from napari_mrmicro.io import read_volume

    source = realdata("varian_agilent/vnmrj_imaging_procpar_only/procpar")
    folder = tmp_path / "im2D.fid"
    folder.mkdir()
    shutil.copy(source, folder / "procpar")
    with pytest.raises(FormatError, match=r"im2D.fid: a VnmrJ procpar without its raw data: "
                                          r"no fid file"):
        read_volume(folder)
    (folder / "fid").write_bytes(b"\0" * 10)
    with pytest.raises(FormatError, match=r"fid: 10 bytes is too short for a Varian fid"):
        read_volume(folder)
    (folder / "fid").unlink()
    (folder / "slice001image001echo001.fdf").write_bytes(b"#!/usr/local/fdf/startup\n")
    with pytest.raises(FormatError, match=r"VnmrJ image folder .*FDF is not read"):
        read_volume(folder)


def test_arrayed_blocks_refused(tmp_path):
    kspace, _ = phantom((1, 4, 6), (-2, -1))
    folder = write_fid_folder(tmp_path / "arr.fid", kspace[None, None], "nccnn",
                              blocks_extra=1, extra={"array": "te"})
    with pytest.raises(FormatError, match="arr.fid/fid.*2 blocks.*arrayed parameters 'te'"):
        varian.read(folder)


@pytest.mark.parametrize("extra, message", [
    ({"seqfil": "epip"}, "sequence epip"),
    ({"np": 14}, "np = 12 in the fid but 14"),
    ({"seqcon": "nccxn"}, "seqcon"),
    ({"lpe": 0}, "no field of view"),
    ({"ns": 3}, "ns = 3 but pss holds 1"),
])
def test_bad_procpar(tmp_path, extra, message):
    kspace, _ = phantom((1, 4, 6), (-2, -1))
    folder = write_fid_folder(tmp_path / "bad.fid", kspace[None, None], "nccnn", extra=extra)
    with pytest.raises(FormatError, match=message) as info:
        varian.read(folder)
    assert "bad.fid" in str(info.value)


def test_bad_tables_and_headers(tmp_path):
    kspace, _ = phantom((1, 4, 6), (-2, -1))
    folder = write_fid_folder(tmp_path / "t.fid", kspace[None, None], "nccnn",
                              table=[0, 0, 1, -1])
    with pytest.raises(FormatError, match="t1 is not a permutation"):
        varian.read(folder)
    (folder / "tcentric").unlink()
    with pytest.raises(FormatError, match="petable 'tcentric' is not in the .fid folder"):
        varian.read(folder)
    folder = write_fid_folder(tmp_path / "s.fid", kspace[None, None], "nccnn")
    raw = bytearray((folder / "fid").read_bytes())
    raw[26:28] = (0x13).to_bytes(2, "big")  # spectrum bit
    (folder / "fid").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="s.fid/fid: status 0x13"):
        varian.read(folder)
    raw[26:28] = (0x15).to_bytes(2, "big")  # claims int32 with ebytes 2
    (folder / "fid").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="ebytes = 2 but status says i4"):
        varian.read(folder)
    (folder / "procpar").write_bytes(b"\x00\x01\x02")
    with pytest.raises(FormatError, match="procpar.*binary"):
        varian.read(folder)


# --------------------------------------------------------------------------- spectra


def write_spectrum(folder, shape, params):
    """A 1-D or 2-D NMR fid + procpar written entirely by nmrglue's own writer."""
    udic = ng.fileiobase.create_blank_udic(len(shape))
    for axis, size in enumerate(shape):
        udic[axis].update(size=size, complex=True)
    dic = ng.varian.create_dic(udic)
    dic["procpar"].update({k: param(k, v if isinstance(v, list) else [v])
                           for k, v in params.items()})
    data = (np.arange(np.prod(shape)) + 1j).reshape(shape).astype(np.complex64)
    ng.varian.write(str(folder), dic, data, overwrite=True)
    return folder


@pytest.mark.parametrize("shape, params, kind", [
    ((64,), {"seqfil": "s2pul", "seqcon": "", "nv": 0}, "1-D NMR"),
    ((64,), {}, "1-D NMR"),  # nmrglue's minimal procpar: only np
    ((4, 32), {"seqfil": "hsqc", "seqcon": "", "nv": 0, "ni": 4}, "2-D NMR"),
    ((32,), {"seqfil": "gems", "seqcon": "nccnn", "nv": 0}, "1-D NMR"),
    ((32,), {"seqfil": "gems", "seqcon": "ncnnn", "nv": 1}, "1-D NMR"),
])
def test_spectrum_refused(tmp_path, shape, params, kind):
    folder = write_spectrum(tmp_path / "proton.fid", shape, params)
    with pytest.raises(FormatError, match=f"a spectrum, not an image.*{kind}") as info:
        varian.read(folder)
    assert "proton.fid/procpar" in str(info.value)


# --------------------------------------------------------------------------- bad input


def test_header_disagrees_with_file_size_no_allocation(gems):
    folder, _, _ = gems
    raw = bytearray((folder / "fid").read_bytes())
    raw[0:4] = (2**30).to_bytes(4, "big")  # nblocks: 2**30 blocks of 24 traces
    (folder / "fid").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"gems_01.fid/fid: header implies \d+ bytes "
                                          r"\(nblocks 1073741824"):
        varian.read(folder)


def test_missing_procpar(gems):
    folder, _, _ = gems
    (folder / "procpar").unlink()
    with pytest.raises(FormatError, match=r"gems_01.fid/fid: no procpar beside the fid"):
        varian.read(folder)
    assert not varian.can_read(folder)


# --------------------------------------------------------------------------- geometry


def euler_peer(psi, phi, theta):
    """VnmrJ's orientation rows from scipy's Euler composition (independent of ours)."""
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("zxz", [-psi, theta, phi], degrees=True).as_matrix()
    return np.diag([-1.0, -1.0, 1.0]) @ rotation


@pytest.mark.parametrize("angles", [(0, 0, 0), (90, 0, 0), (0, 90, 90),
                                    (318.33, 120.57, 120.74), (-17.0, 33.0, 250.0)])
def test_orientation_matrix(angles):
    rows = varian.orientation_matrix(*angles)
    np.testing.assert_allclose(rows @ rows.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rows) == pytest.approx(1.0)  # a proper rotation, every angle
    np.testing.assert_allclose(rows, euler_peer(*angles), atol=1e-12)


@pytest.mark.parametrize("angles, normal", [
    ((0, 0, 0), [0, 0, 1]),  # VnmrJ's named planes (psi, phi, theta): transverse
    ((0, 0, 90), [0, 1, 0]),  # coronal: theta 90
    ((90, 0, 90), [-1, 0, 0]),  # sagittal: theta 90, psi 90
])
def test_orientation_named_planes(angles, normal):
    rows = varian.orientation_matrix(*angles)
    np.testing.assert_allclose(rows[2], normal, atol=1e-15)  # slice direction
    if angles == (0, 0, 0):  # read -x, phase -y
        np.testing.assert_allclose(rows, np.diag([-1, -1, 1]), atol=1e-15)


def test_multislice_oblique_affine(tmp_path):
    kspace, _ = phantom((3, 4, 6), (-2, -1))
    pss = (0.2, -0.1, 0.05)  # cm, acquired out of order; 0.15 cm apart once sorted
    folder = write_fid_folder(tmp_path / "obl.fid", kspace[None, None], "nccnn", pss=pss,
                              extra={"psi": 30.0, "phi": -20.0, "theta": 70.0,
                                     "pro": 0.3, "ppe": -0.2})
    vol = varian.read(folder)
    a = vol.affine_um
    assert a.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(a[:3, :3], axis=0), vol.spacing_um)
    np.testing.assert_allclose(vol.spacing_um, (1500.0, 2000.0, 2000.0))  # pss, lpe, lro
    rows = euler_peer(30.0, -20.0, 70.0)  # read, phase, slice in magnet (x, y, z)
    for k, slice_cm in enumerate(sorted(pss)):
        centre_xyz = (0.3 * rows[0] - 0.2 * rows[1] + slice_cm * rows[2]) * 1e4
        world = a @ [k, 4 // 2, 6 // 2, 1]
        np.testing.assert_allclose(world[:3], centre_xyz[::-1], atol=1e-6)  # (S, A, R)
    assert vol.metadata["orientation_deg"] == {"psi": 30, "phi": -20, "theta": 70}


def test_no_angles_no_affine(gems):
    folder, _, _ = gems
    assert varian.read(folder).affine_um is None


def test_ge3d_slab_affine(tmp_path):
    kspace, _ = phantom((4, 6, 8), (-3, -2, -1))
    folder = write_fid_folder(tmp_path / "ge3d.fid", kspace[None, None], "cccsn",
                              extra={"seqfil": "ge3d", "psi": 0, "phi": 0, "theta": 0,
                                     "ppe2": 0.1, "pro": 0.0, "ppe": 0.0})
    a = varian.read(folder).affine_um
    # slab of lpe2 0.4 cm in 4 steps of 1000 µm; its centre (voxel 2) at ppe2 along +z
    np.testing.assert_allclose(a @ [2, 3, 4, 1], [1000.0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(a[:3, :3], np.diag([1000.0, -8000 / 6, -1500.0]),
                               atol=1e-9)


def test_real_oblique_procpar(realdata, tmp_path):
    """VnmrJ's own procpar (9.4 T, im2D, oblique 318.33/120.57/120.74) with a synthetic
    fid written by nmrglue beside a copy of it."""
    import shutil

    source = realdata("varian_agilent/vnmrj_imaging_procpar_only/procpar")
    folder = tmp_path / "T1map.fid"
    folder.mkdir()
    shutil.copy(source, folder / "procpar")
    pp = ng.varian.read_procpar(str(folder / "procpar"))
    points = int(pp["np"]["values"][0]) // 2
    line = np.exp(-((np.arange(points) - points / 2) / 40.0) ** 2).astype(np.complex64)
    udic = ng.fileiobase.create_blank_udic(1)
    udic[0].update(size=points, complex=True)
    dic = ng.varian.create_dic(udic)  # one block of one float trace
    ng.varian.write_fid(str(folder / "fid"), dic, line, overwrite=True)

    vol = varian.read(folder)
    acq = vol.metadata["acquisition"]
    assert vol.data.shape == (1, 1, 1, points)
    np.testing.assert_allclose(vol.data[0, 0, 0], line)
    np.testing.assert_allclose(acq["fov_um"], [2000.0, 192000.0, 192000.0])  # thk 2 mm, 19.2 cm
    assert acq["te_ms"] == [4.0] and acq["tr_ms"] == 20.0  # te 0.004 s, tr 0.02 s
    # `ti 0.06` stands in this procpar with `ir 'n'`: no inversion, so no inversion time
    assert "ti_ms" not in acq
    assert varian._acquisition({"ir": "y", "ti": [0.06, 0.3]}, 1, (1, 4, 4),
                               (1e3,) * 3)["ti_ms"] == (60.0, 300.0)
    assert acq["b0_tesla"] == pytest.approx(400.5391732 / 42.577478)  # sfrq MHz: 9.41 T
    a = vol.affine_um
    rotation = a[:3, :3] / np.array(vol.spacing_um)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    # napari order reverses rows and columns together, so the determinant stays +1
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    rows = euler_peer(318.33, 120.57, 120.74)
    np.testing.assert_allclose(rotation[::-1, ::-1], rows.T, atol=1e-12)
    # FOV centre: pro -2.67 cm along read, ppe 0, pss 1.24 cm along the slice normal
    centre = (-2.67 * rows[0] + 1.24 * rows[2]) * 1e4
    np.testing.assert_allclose((a @ [0, 0, points // 2, 1])[:3], centre[::-1], atol=1e-6)


def test_uneven_slices_spacing_from_thk_no_affine(tmp_path):
    kspace, _ = phantom((3, 4, 6), (-2, -1))
    folder = write_fid_folder(tmp_path / "gap.fid", kspace[None, None], "nccnn",
                              pss=(0.0, 0.1, 0.35), extra={"psi": 0, "phi": 0, "theta": 0})
    vol = varian.read(folder)
    assert vol.spacing_um[0] == 500.0  # thk 0.5 mm
    assert vol.metadata["spacing_source"] == "lro, lpe, thk" and vol.affine_um is None
