"""Non-Cartesian k-space on the GPU (cuFINUFFT): gridding, Pipe-Menon density and
compressed sensing equal the CPU's (FINUFFT) within float32 rounding — on the CuPy and
cuFINUFFT stand-ins of tests/fake_cupy.py where no device exists, where the two are the same
transform and the test proves the dispatch and its host/device boundaries."""

import fake_cupy
import numpy as np
import pytest

pytest.importorskip("finufft")

from napari_mrmicro.core import backend  # noqa: E402
from napari_mrmicro.core.acquisition import Acquisition  # noqa: E402
from napari_mrmicro.core.compressed_sensing import cs_reconstruct  # noqa: E402
from napari_mrmicro.core.kspace import KSpace  # noqa: E402
from napari_mrmicro.core.nufft import (nufft_adjoint, nufft_forward,  # noqa: E402
                                       pipe_menon_density)
from napari_mrmicro.core.recon import reconstruct  # noqa: E402

N = 32


def _radial(spokes=40, samples=64):
    k = (np.arange(samples) - samples / 2) / samples * N
    theta = np.pi * np.arange(spokes) / spokes
    return np.stack([k * np.sin(theta)[:, None], k * np.cos(theta)[:, None]],
                    -1).astype(np.float32)


def _kspace(echoes=2):
    traj = _radial()
    z = np.indices((N, N)) - N / 2
    image = np.where((z**2).sum(0) < 100, 1.0, 0.2).astype(np.complex64)
    y = nufft_forward(image, traj)
    data = np.stack([y * (e + 1) for e in range(echoes)])
    acquisition = Acquisition(matrix=(1, N, N), fov_um=(500.0, 2000.0, 2000.0))
    return KSpace(data, acquisition, trajectory=traj), image


def _close(gpu, gpu_result, cpu_result, eps=1e-5):
    """Equal within float32 rounding on the stand-in (the same FINUFFT behind both); on a
    device cuFINUFFT and FINUFFT each meet the tolerance ``eps`` on their own, so they
    agree within 10·eps of the peak."""
    assert type(gpu_result) is np.ndarray and gpu_result.dtype == cpu_result.dtype
    rtol = 2e-5 if fake_cupy.is_stand_in(gpu) else 10 * eps
    np.testing.assert_allclose(gpu_result, cpu_result, atol=rtol * np.abs(cpu_result).max())


def test_nufft_pair_and_density_on_the_gpu_equal_the_cpu(gpu_nufft):
    traj = _radial()
    image = np.random.default_rng(1).standard_normal((2, N, N)).astype(np.complex64)
    _close(gpu_nufft, nufft_forward(image, traj, device="gpu"), nufft_forward(image, traj))
    samples = nufft_forward(image, traj)
    _close(gpu_nufft, nufft_adjoint(samples, traj, (N, N), device="gpu"),
           nufft_adjoint(samples, traj, (N, N)))
    _close(gpu_nufft, pipe_menon_density(traj, (N, N), iterations=5, device="gpu"),
           pipe_menon_density(traj, (N, N), iterations=5), eps=1e-4)


def test_gridding_on_the_gpu_equals_the_cpu(gpu_nufft, monkeypatch):
    kspace, _ = _kspace()
    cpu = reconstruct(kspace, zero_fill=1.5, window="hann")
    spaces = []
    namespace = backend.namespace
    monkeypatch.setattr(backend, "namespace", lambda device: spaces.append(device) or
                        namespace(device))
    with backend.use_device("gpu"):  # the dock's and the CLI's way
        on_gpu = reconstruct(kspace, zero_fill=1.5, window="hann")
    assert spaces and set(spaces) == {"gpu"}
    _close(gpu_nufft, on_gpu, cpu, eps=1e-4)  # the density's tolerance


@pytest.mark.parametrize("method", ["l1_wavelet", "tv"])
def test_noncartesian_cs_on_the_gpu_equals_the_cpu(gpu_nufft, method):
    kspace, _ = _kspace(echoes=1)
    options = dict(method=method, lam=0.01, iterations=8, tol=0, cg_iterations=3)
    cpu = cs_reconstruct(kspace, **options)
    calls = []
    on_gpu = cs_reconstruct(kspace, device="gpu", callback=lambda i, n: calls.append(i),
                            **options)
    assert calls == list(range(1, 9))
    # on a device: the NUFFTs' own tolerance, amplified by the iterations (and TV's CG)
    _close(gpu_nufft, on_gpu, cpu, eps=1e-3)


def test_gpu_memory_is_checked_before_gridding(gpu_nufft, monkeypatch):
    kspace, _ = _kspace()
    monkeypatch.setattr(backend, "device_free_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match="gridding 2 non-Cartesian volume.*GPU memory"):
        reconstruct(kspace, device="gpu")
    with pytest.raises(MemoryError, match="compressed sensing.*non-Cartesian.*GPU memory"):
        cs_reconstruct(kspace, device="gpu")
