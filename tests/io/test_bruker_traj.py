"""ParaVision ``traj`` files: written here in ParaVision's layout (float64 LE, column-major
(ndim, samples, readouts), read/phase/slice order, ±0.5 at k_max) and read back as KSpace
trajectories in cycles per FOV."""

import numpy as np
import pytest

from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.bruker_traj import read_trajectory


def write_traj(folder, kappa_zyx, matrix_read_first, scale=0.5):
    """Store κ (readouts, samples, ndim), image order, the way ParaVision does."""
    n = np.asarray(matrix_read_first, float)
    bruker = kappa_zyx[..., ::-1] / n * (scale / 0.5)  # read, phase, slice; ±scale at k_max
    # column-major (ndim, samples, readouts) == C-order (readouts, samples, ndim)
    np.asfortranarray(bruker.transpose(2, 1, 0)).ravel(order="F").astype("<f8").tofile(
        folder / "traj")


def spiral_zyx(ny, nx, interleaves=4, samples=50):
    t = np.linspace(0, 1, samples)
    angle = 2 * np.pi * (2 * t[None, :] + np.arange(interleaves)[:, None] / interleaves)
    return np.stack([ny / 2 * t * np.sin(angle), nx / 2 * t * np.cos(angle)], -1)


def test_2d_spiral_round_trip_and_units(tmp_path):
    kappa = spiral_zyx(32, 48)  # anisotropic grid: y 32, x 48 (PVM_Matrix = read 48, phase 32)
    method = {"PVM_Matrix": [48, 32], "PVM_SpiralMode": "SpiralOut"}
    acqp = {"ACQ_dim": 2}
    write_traj(tmp_path, kappa, (48, 32))
    traj = read_trajectory(tmp_path, acqp, method, samples=50, readouts=4)
    assert traj.shape == (4, 50, 2) and traj.dtype == np.float32
    np.testing.assert_allclose(traj, kappa, atol=1e-4)
    assert traj[..., 1].max() == pytest.approx(24, abs=0.01)  # x reaches k_max = 48/2
    write_traj(tmp_path, kappa, (48, 32), scale=1.0)  # normalised to ±1 at k_max
    np.testing.assert_allclose(read_trajectory(tmp_path, acqp, method, 50, 4), kappa,
                               atol=1e-4)


def test_3d_radial_axis_order(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.standard_normal((6, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = np.linspace(0, 0.5, 10)
    matrix = (40, 20, 10)  # read x 40, phase y 20, slice z 10
    kappa = d[:, None, :] * r[None, :, None] * np.asarray(matrix[::-1])
    write_traj(tmp_path, kappa, matrix)
    traj = read_trajectory(tmp_path, {"ACQ_dim": 3}, {"PVM_Matrix": list(matrix), "NPro": 6},
                           samples=10, readouts=6)
    np.testing.assert_allclose(traj, kappa, atol=1e-4)


def test_refusals(tmp_path):
    method, acqp = {"PVM_Matrix": [16, 16]}, {"ACQ_dim": 2}
    with pytest.raises(FormatError, match="traj.*no trajectory file"):
        read_trajectory(tmp_path, acqp, method, 10, 2)
    write_traj(tmp_path, spiral_zyx(16, 16, 2, 10), (16, 16))
    with pytest.raises(FormatError, match=r"traj: holds 320 bytes but 3 readouts"):
        read_trajectory(tmp_path, acqp, method, 10, 3)
    with pytest.raises(FormatError, match="ACQ_dim = 3 disagrees"):
        read_trajectory(tmp_path, {"ACQ_dim": 3}, method, 10, 2)
    with pytest.raises(FormatError, match="PVM_Matrix"):
        read_trajectory(tmp_path, acqp, {}, 10, 2)
    (np.full(40, 3.0, "<f8")).tofile(tmp_path / "traj")
    with pytest.raises(FormatError, match="neither normalised"):
        read_trajectory(tmp_path, acqp, method, 10, 2)
