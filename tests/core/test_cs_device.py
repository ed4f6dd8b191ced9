"""Compressed sensing on the GPU: the same FISTA (every wavelet, with the padding of axes
not divisible by 2^levels) and TV-ADMM iterations as the CPU, equal within float32
rounding (on the CuPy stand-in of tests/fake_cupy.py where no device exists)."""

import numpy as np
import pytest

from napari_mrmicro.core import backend
from napari_mrmicro.core.compressed_sensing import cs_reconstruct
from napari_mrmicro.core.kspace import centered_fft
from napari_mrmicro.core.sampling import poisson_disc_mask
from napari_mrmicro.core.specimens import make_specimen


@pytest.fixture(scope="module")
def undersampled():
    shape = (16, 40, 36)  # 36 is not divisible by 2^3: FISTA pads it
    truth = make_specimen("cochlea", shape, 200.0).property_map("proton_density")
    mask = poisson_disc_mask(shape, 3, calib=6, seed=0)
    kspace = np.where(mask, centered_fft(truth.astype(np.complex64)), 0)
    return kspace.astype(np.complex64), mask


def _close(gpu_image, cpu_image):
    assert type(gpu_image) is np.ndarray and gpu_image.dtype == np.complex64
    assert gpu_image.shape == cpu_image.shape
    np.testing.assert_allclose(gpu_image, cpu_image, atol=1e-4 * np.abs(cpu_image).max())


@pytest.mark.parametrize("method, wavelet", [("l1_wavelet", "haar"), ("l1_wavelet", "db4"),
                                             ("tv", "haar")])
def test_cs_on_the_gpu_equals_the_cpu(gpu, undersampled, method, wavelet, monkeypatch):
    kspace, mask = undersampled
    options = dict(method=method, wavelet=wavelet, lam=0.01, iterations=12, tol=0)
    cpu = cs_reconstruct(kspace, mask, **options)
    spaces, calls = [], []
    namespace = backend.namespace
    monkeypatch.setattr(backend, "namespace", lambda device: spaces.append(device) or
                        namespace(device))
    on_gpu = cs_reconstruct(kspace, mask, device="gpu", callback=lambda i, n: calls.append(i),
                            **options)
    assert set(spaces) == {"gpu"} and calls == list(range(1, 13))
    _close(on_gpu, cpu)
    with backend.use_device("gpu"):  # the dock's and the CLI's way
        _close(cs_reconstruct(kspace[None], mask, **options), cpu[None])


def test_cs_gpu_memory_is_checked_before_the_work(gpu, undersampled, monkeypatch):
    kspace, mask = undersampled
    monkeypatch.setattr(backend, "device_free_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match=r"compressed sensing \(tv\).*GPU memory"):
        cs_reconstruct(kspace, mask, method="tv", device="gpu")
