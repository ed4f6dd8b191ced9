import json

import pytest

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core.acquisition import acquisition_from_headfile, b0_from_headfile
from napari_mrmicro.io import read_headfile, write_headfile

DENTAL = dict(matrix=(256, 128, 128), fov_um=(25_000, 12_500, 12_500), b0_tesla=2.35,
              te_ms=(2.4,), tr_ms=600, sequence="spin_echo", max_gradient_mT_per_m=250)


def test_voxel_size_and_types():
    acq = Acquisition(**DENTAL)
    assert acq.voxel_um == pytest.approx((97.65625,) * 3)
    assert acq.matrix == (256, 128, 128) and isinstance(acq.matrix[0], int)
    assert acq.gamma_bar_hz_per_t == pytest.approx(42.577478e6)


def test_dict_round_trip_through_json():
    acq = Acquisition(**DENTAL, b0_direction=(0, 0.5, 0.5), extra={"coil": "solenoid"})
    back = Acquisition.from_dict(json.loads(json.dumps(acq.to_dict())))
    assert back == acq and back.extra == {"coil": "solenoid"}
    assert back.b0_direction == pytest.approx((0, 2**-0.5, 2**-0.5))


def test_unknown_keys_go_to_extra():
    acq = Acquisition.from_dict({"te_ms": [5, 10], "coil_temperature_k": 77})
    assert acq.te_ms == (5.0, 10.0) and acq.extra == {"coil_temperature_k": 77}


def test_headfile_round_trip(tmp_path):
    acq = Acquisition(**{**DENTAL, "te_ms": (3.0, 6.5, 10.0), "sequence": "gradient_echo"},
                      b0_direction=(0.8, 0.6, 0), bandwidth_hz=62_500, averages=4,
                      flip_deg=30, temperature_k=277, readout_axis=0)
    path = tmp_path / "scan.headfile"
    write_headfile(path, acq.to_headfile())
    header = read_headfile(path)
    assert header["tr"] == 600_000  # CIVM keeps TR in µs
    assert header["fovx"] == pytest.approx(12.5)  # and FOV in mm
    assert Acquisition.from_headfile(header) == acq


@pytest.mark.parametrize("header, tesla", [
    ({"S_tesla": "9t"}, 9.0), ({"B_tesla": "bt7"}, 7.0), ({"S_tesla": "9.4T"}, 9.4),
    ({"B_tesla": 2.35}, 2.35), ({"z_Agilent_sfrq": 400.2}, 400.2 / 42.577478),
    ({"S_tesla": None, "z_Agilent_sfrq": "NaN"}, None),
])
def test_field_strength_codes(header, tesla):
    assert b0_from_headfile(header) == (pytest.approx(tesla) if tesla else None)


def test_civm_header_mapping():
    header = {"dim_X": 512, "dim_Y": 256, "dim_Z": 256, "fovx": 22.0, "fovy": 11.0,
              "fovz": 11.0, "te": 4.3, "tr": 100000, "alpha": 60, "S_PSDname": "GRE3D",
              "S_tesla": "7t", "ne": 1}
    fields = acquisition_from_headfile(header)
    assert fields["matrix"] == (256, 256, 512)
    assert fields["fov_um"] == pytest.approx((11_000, 11_000, 22_000))
    assert fields["tr_ms"] == pytest.approx(100.0) and fields["te_ms"] == (4.3,)
    assert fields["sequence"] == "gradient_echo" and fields["b0_tesla"] == 7.0


@pytest.mark.parametrize("bad, word", [
    ({"nucleus": "19F"}, "nucleus"), ({"sequence": "epi"}, "sequence"),
    ({"matrix": (0, 4, 4)}, "matrix"), ({"fov_um": (1, 2)}, "fov_um"),
    ({"b0_direction": (0, 0, 0)}, "b0_direction"), ({"tr_ms": -1}, "tr_ms"),
    ({"readout_axis": 3}, "readout_axis"),
])
def test_bad_values_are_named(bad, word):
    with pytest.raises(ValueError, match=word):
        Acquisition(**bad)
