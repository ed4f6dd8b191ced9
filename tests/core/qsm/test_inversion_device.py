"""The direct inversions, MEDI and Laplacian unwrapping on the GPU: equal to the CPU within
float32 rounding (on the CuPy stand-in of tests/fake_cupy.py where no device exists)."""

import numpy as np
import pytest

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm.kernel import forward_field
from napari_mrmicro.core.qsm.medi import invert_medi
from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
from napari_mrmicro.core.qsm.tkd import invert_tkd
from napari_mrmicro.core.qsm.unwrap import unwrap_laplacian, wrap_phase

SHAPE, SPACING, B0 = (20, 18, 16), (40.0, 40.0, 60.0), (0.2, 0.1, 1.0)


def _phantom():
    z, y, x = np.indices(SHAPE)
    r2 = (z - 10) ** 2 + (y - 9) ** 2 + ((x - 8) * 1.5) ** 2
    chi = np.where(r2 < 16, 0.3, 0.0) + np.where((z - 6) ** 2 + (y - 12) ** 2 < 5, -0.2, 0)
    mask = r2 < 64
    return forward_field(chi, SPACING, B0).astype(np.float32), mask, chi


def _close(gpu_result, cpu_result, rtol=1e-5):
    assert isinstance(gpu_result, np.ndarray) and gpu_result.dtype == cpu_result.dtype
    np.testing.assert_allclose(gpu_result, cpu_result, atol=rtol * np.abs(cpu_result).max())


@pytest.mark.parametrize("pad", [0, 3])
def test_tkd_and_tikhonov_on_the_gpu_equal_the_cpu(gpu, pad):
    field, mask, _ = _phantom()
    _close(invert_tkd(field, mask, SPACING, B0, pad=pad, device="gpu"),
           invert_tkd(field, mask, SPACING, B0, pad=pad))
    for regularizer in ("gradient", "identity"):
        cpu = invert_tikhonov(field, mask, SPACING, B0, regularizer=regularizer, pad=pad)
        gpu_chi = invert_tikhonov(field, mask, SPACING, B0, regularizer=regularizer, pad=pad,
                                  device="gpu")
        _close(gpu_chi, cpu)


def test_the_default_device_reaches_the_direct_inversions_and_medi(gpu, monkeypatch):
    field, mask, chi = _phantom()
    magnitude = np.where(chi > 0, 0.5, 1.0).astype(np.float32)
    cpu = [invert_tkd(field, mask, SPACING, B0), invert_tikhonov(field, mask, SPACING, B0),
           invert_medi(field, mask, SPACING, B0, magnitude=magnitude, max_iter=15, tol=0)]
    spaces = []
    namespace = backend.namespace
    monkeypatch.setattr(backend, "namespace", lambda device: spaces.append(device) or
                        namespace(device))
    with backend.use_device("gpu"):
        on_gpu = [invert_tkd(field, mask, SPACING, B0),
                  invert_tikhonov(field, mask, SPACING, B0),
                  invert_medi(field, mask, SPACING, B0, magnitude=magnitude, max_iter=15,
                              tol=0)]
    assert spaces and set(spaces) == {"gpu"}
    for g, c in zip(on_gpu, cpu):
        _close(g, c, rtol=1e-4)


def test_gpu_memory_is_checked_before_the_work(gpu, monkeypatch):
    field, mask, _ = _phantom()
    monkeypatch.setattr(backend, "device_free_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match="invert_tkd on a padded grid.*GPU memory"):
        invert_tkd(field, mask, SPACING, B0, device="gpu")
    with pytest.raises(MemoryError, match="unwrap_laplacian of a .* phase.*GPU memory"):
        unwrap_laplacian(field, SPACING, device="gpu")


@pytest.mark.parametrize("shape", [(24, 20, 16), (1, 20, 16)])
def test_laplacian_unwrapping_on_the_gpu_equals_the_cpu(gpu, shape):
    z, y, x = np.indices(shape)
    truth = (0.04 * (x - 8) ** 2 + 0.5 * y - 0.3 * z + 2.0).astype(np.float32)
    noisy = truth + np.random.default_rng(2).normal(0, 0.3, shape).astype(np.float32)
    wrapped = wrap_phase(noisy)
    cpu = unwrap_laplacian(wrapped, (30.0, 30.0, 45.0))
    gpu_phase = unwrap_laplacian(wrapped, (30.0, 30.0, 45.0), device="gpu")
    _close(gpu_phase, cpu)
    with backend.use_device("gpu"):
        _close(unwrap_laplacian(wrapped, (30.0, 30.0, 45.0)), cpu)
