"""EPI distortion undone by a field map: analytic shifts and stretches, and the real study
(EPI scan 7, field map scan 8, RARE scan 5 of the same head)."""

import dataclasses

import numpy as np
import pytest

from napari_mrmicro.core.epi_distortion import phase_encode_shift, unwarp
from napari_mrmicro.core.reslice import resample_onto_grid
from napari_mrmicro.io import read_volume
from napari_mrmicro.pipeline import unwarp_epi

STUDY = "bruker_pv/pv360_rodent"


def bump(y):
    return np.exp(-((y - 20.0) / 5.0) ** 2)


def test_constant_field_is_a_whole_shift():
    """100 Hz at 0.25 ms echo spacing over 40 lines: 1 pixel, towards lower rows for a
    train through increasing steps."""
    shift = phase_encode_shift(np.full((1, 40, 3), 100.0), 0.25, 40, direction=1)
    np.testing.assert_allclose(shift, -1.0)
    assert phase_encode_shift(np.full(2, 100.0), 0.25, 40, direction=-1)[0] == 1.0
    y = np.arange(40.0)
    distorted = np.broadcast_to(bump(y - 1.0)[None, :, None], (1, 40, 3))  # tissue at y + 1
    restored = unwarp(distorted, np.full((1, 40, 3), 1.0), axis=1)
    np.testing.assert_allclose(restored[0, :-1, 1], bump(y)[:-1], atol=1e-6)  # edge repeated


def test_field_gradient_stretch_and_intensity():
    """A field growing along the phase encode stretches the image; the unwarped profile
    is the object's again and keeps its total signal (the Jacobian)."""
    y = np.arange(64.0)
    a, b = 0.2, -3.0  # s(y) = a·y + b: tissue at y shows at y + s(y), density / (1 + a)
    shift = np.broadcast_to((a * y + b)[None, :, None], (2, 64, 2))
    distorted = bump((y - b) / (1 + a)) / (1 + a)  # I(y') with y' = (1 + a) y + b
    image = np.broadcast_to(distorted[None, :, None], (2, 64, 2))
    restored = unwarp(image, shift, axis=1)[0, :, 0]
    np.testing.assert_allclose(restored, bump(y), atol=0.01)
    assert restored.sum() == pytest.approx(distorted.sum(), rel=0.01)


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="echo_spacing_ms"):
        phase_encode_shift(np.zeros(3), 0.0, 40)
    with pytest.raises(ValueError, match="direction"):
        phase_encode_shift(np.zeros(3), 0.25, 40, direction=2)
    with pytest.raises(ValueError, match="NaN"):
        phase_encode_shift(np.array([np.nan]), 0.25, 40)
    with pytest.raises(ValueError, match="differ in shape"):
        unwarp(np.zeros((2, 3, 4)), np.zeros((2, 3, 3)), axis=1)


def test_real_epi_unwarped_by_the_scanners_field_map(realdata):
    """EPI scan 7 unwarped with field map scan 8 matches the undistorted RARE scan 5 of
    the same head better, best at the physical shift and its sign."""
    epi = read_volume(realdata(f"{STUDY}/7/pdata/1/2dseq"))
    field = read_volume(realdata(f"{STUDY}/8/pdata/1/2dseq"))
    rare = read_volume(realdata(f"{STUDY}/5/pdata/1/2dseq"))
    assert epi.metadata["acquisition"]["epi_direction"] == 1
    assert field.metadata["value_unit"] == "Hz"
    shape = epi.data.shape
    reference, reached = resample_onto_grid(rare.data, rare.affine_um, shape, epi.affine_um)
    mask = reached & (reference > np.percentile(reference[reached], 60))

    def match(volume):
        a, b = np.asarray(volume.data, float)[mask], reference[mask]
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    unwarped = unwarp_epi(epi, field)
    assert unwarped.metadata["unwarped"]["axis"] == "y"
    assert 5 < unwarped.metadata["unwarped"]["max_shift_px"] < 8
    before, after = match(epi), match(unwarped)
    assert after > before + 0.02, (before, after)
    for wrong in ({"echo_spacing_ms": 0.124}, {"echo_spacing_ms": 0.372}, {"direction": -1}):
        assert match(unwarp_epi(epi, field, **wrong)) < after, wrong
    with pytest.raises(ValueError, match="covers 0 %"):
        far = read_volume(realdata(f"{STUDY}/8/pdata/1/2dseq"))
        far.affine_um = far.affine_um.copy()
        far.affine_um[:3, 3] += 1e5
        unwarp_epi(epi, far)
    with pytest.raises(ValueError, match="Hz"):
        unwarp_epi(epi, rare)


def test_mrmicro_unwarp(realdata, tmp_path):
    from napari_mrmicro.cli import main

    epi, field = realdata(f"{STUDY}/7/pdata/1/2dseq"), realdata(f"{STUDY}/8/pdata/1/2dseq")
    assert main(["unwarp", str(epi), str(field), str(tmp_path / "u.nii.gz")]) == 0
    written = read_volume(tmp_path / "u.nii.gz")
    expected = unwarp_epi(read_volume(epi), read_volume(field))
    np.testing.assert_allclose(np.asarray(written.data), expected.data, rtol=1e-5,
                               atol=1e-5 * float(np.max(expected.data)))
    np.testing.assert_allclose(written.affine_um, expected.affine_um, atol=1e-3)
    # the file says it is unwarped, and with what: unwarping it again is refused
    assert written.metadata["unwarped"] == expected.metadata["unwarped"]
    assert main(["unwarp", str(tmp_path / "u.nii.gz"), str(field),
                 str(tmp_path / "twice.nii.gz")]) == 2
    assert not (tmp_path / "twice.nii.gz").exists()
    # a RARE scan states no EPI phase-encode direction: named, nothing written
    rare = realdata(f"{STUDY}/5/pdata/1/2dseq")
    assert main(["unwarp", str(rare), str(field), str(tmp_path / "r.nii.gz")]) != 0
    assert not (tmp_path / "r.nii.gz").exists()


def test_mrmicro_recon_with_field_map(realdata, tmp_path):
    """`mrmicro recon <EPI scan> --field-map <B0 map>`: the raw reconstruction unwarped in
    one step, magnitude and phase together, as unwarping the complex image."""
    from napari_mrmicro.cli import main

    scan, field = realdata(f"{STUDY}/7"), realdata(f"{STUDY}/8/pdata/1/2dseq")
    assert main(["recon", str(scan), str(tmp_path / "m.nii"), "--phase",
                 str(tmp_path / "p.nii")]) == 0
    assert main(["recon", str(scan), str(tmp_path / "um.nii"), "--phase",
                 str(tmp_path / "up.nii"), "--field-map", str(field)]) == 0
    plain = read_volume(tmp_path / "m.nii")
    phase = np.asarray(read_volume(tmp_path / "p.nii").data)
    signal = np.asarray(plain.data) * np.exp(1j * phase)
    expected = unwarp_epi(dataclasses.replace(plain, data=signal), read_volume(field))
    got = np.asarray(read_volume(tmp_path / "um.nii").data)
    np.testing.assert_allclose(got, np.abs(expected.data), rtol=1e-4,
                               atol=1e-4 * float(np.abs(expected.data).max()))
    phase = np.asarray(read_volume(tmp_path / "up.nii").data)
    strong = got > 0.2 * got.max()
    np.testing.assert_allclose(np.exp(1j * phase[strong]),
                               np.exp(1j * np.angle(expected.data[strong])), atol=1e-3)
