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
from napari_mrmicro.io import bruker_raw, read_volume


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


@pytest.mark.parametrize("method", ["l1_wavelet", "tv"])
def test_cs_of_a_real_paravision_scan_on_the_gpu(gpu, realdata, method):
    """A ParaVision 360 multi-slice FLASH (18 × 128 × 256, partial echo, its acquired mask):
    the GPU's CS equals the CPU's and both match Bruker's own reconstruction (2dseq) slice
    by slice (measured: median correlation 0.999, lowest 0.992)."""
    scan = realdata("bruker_pv/pv360_rodent/6")
    kspace = bruker_raw.read_kspace(scan / "rawdata.job0")
    cpu = cs_reconstruct(kspace, method=method, iterations=15)
    _close(cs_reconstruct(kspace, method=method, iterations=15, device="gpu"), cpu)
    reference = np.asarray(read_volume(scan / "pdata" / "1" / "2dseq").data, np.float32)
    image = np.abs(cpu[0])
    assert image.shape == reference.shape == (18, 128, 256)
    r = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(image, reference)]
    assert np.median(r) > 0.99 and min(r) > 0.98
