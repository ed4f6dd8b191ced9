"""The array-namespace dispatch: numpy everywhere; CPU against GPU where a CUDA device exists."""

import numpy as np
import pytest
import scipy.fft

from napari_mrmicro.core import backend
from napari_mrmicro.core.kspace import centered_fft, centered_ifft, centered_ifft_magnitude
from napari_mrmicro.core.qsm.kernel import forward_field
from napari_mrmicro.core.qsm.tv import invert_tv
from napari_mrmicro.core.recon import reconstruct

def _complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_cpu_namespace_and_transforms_are_numpy_and_scipy():
    assert backend.namespace("cpu") is np
    assert backend.array_namespace(np.zeros(3)) is np
    x = np.random.default_rng(1).standard_normal((6, 5, 4)).astype(np.float32)
    fft = backend.fft(np)
    np.testing.assert_array_equal(fft.rfftn(x), scipy.fft.rfftn(x))
    np.testing.assert_array_equal(fft.irfftn(fft.rfftn(x), s=x.shape),
                                  scipy.fft.irfftn(scipy.fft.rfftn(x), s=x.shape))
    np.testing.assert_array_equal(fft.ifftn(x, axes=(0, 2), norm="ortho"),
                                  scipy.fft.ifftn(x, axes=(0, 2), norm="ortho"))


@pytest.mark.parametrize("shape, s, axes, norm, dtype", [
    ((16, 8, 9), None, None, None, np.complex64),  # power-of-two: bit-identical
    ((16, 8, 9), (16, 8, 17), None, "ortho", np.complex64),  # odd last length
    ((6, 10, 7), None, None, "forward", np.complex128),  # other lengths: within rounding
    ((3, 12, 6, 5), (12, 6, 9), (1, 2, 3), None, np.complex64),  # a stack of volumes
])
def test_in_place_inverse_real_transform_is_scipy_irfftn(shape, s, axes, norm, dtype):
    rng = np.random.default_rng(2)
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    expected = scipy.fft.irfftn(spectrum, s=s, axes=axes, norm=norm)
    work = spectrum.copy()
    got = backend.fft(np).irfftn(work, s=s, axes=axes, norm=norm, overwrite_x=True)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    exact = all(n & (n - 1) == 0 for n in expected.shape)  # the transforms' lengths
    tol = 0 if exact else 8 * np.finfo(dtype).eps * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    assert not np.array_equal(work, spectrum)  # it did run in the caller's memory
    # without overwrite_x, or on a strided view, the input is left as it was
    for x, overwrite in ((spectrum, False), (np.asfortranarray(spectrum), True)):
        before = x.copy()
        np.testing.assert_allclose(backend.fft(np).irfftn(x, s=s, axes=axes, norm=norm,
                                                          overwrite_x=overwrite),
                                   expected, rtol=0, atol=tol)
        if not overwrite:
            np.testing.assert_array_equal(x, before)


def test_device_names_are_checked():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.check_device("tpu")
    assert backend.resolve(None, np.zeros(2)) == "cpu"
    with backend.use_device("cpu"):
        assert backend.resolve() == "cpu"


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_gpu_without_cupy_or_device_is_a_clear_error():
    with pytest.raises(RuntimeError, match="device 'gpu' is not available"):
        backend.namespace("gpu")
    with pytest.raises(RuntimeError, match="not available"):
        reconstruct(_complex((4, 4, 4)), device="gpu")
    with pytest.raises(RuntimeError, match="not available"):
        backend.use_device("gpu").__enter__()


def test_host_round_trip_and_memory_guard():
    x = np.arange(6.0)
    assert backend.to_device(x, "cpu") is x
    assert backend.to_host(x) is x
    assert backend.device_free_bytes("cpu") > 0
    with pytest.raises(MemoryError, match="huge job needs about"):
        backend.check_device_memory(2**62, "huge job", "cpu")
    backend.check_device_memory(1, "tiny job", "cpu")


def test_slabs_cover_every_plane_once():
    seen = np.zeros(1000, int)

    def work(start, stop):
        seen[start:stop] += 1

    backend.for_each_slab(np, work, 1000, 2**12)  # slabs of 64 planes on all cores
    assert np.all(seen == 1)


def test_centred_transforms_gpu_match_cpu(gpu):
    cp = gpu
    k = _complex((16, 12, 10))
    for fn in (centered_fft, centered_ifft, centered_ifft_magnitude):
        cpu = fn(k)
        gpu = fn(cp.asarray(k))
        assert backend.on_gpu(gpu) and gpu.dtype == cpu.dtype
        np.testing.assert_allclose(backend.to_host(gpu), cpu, atol=1e-5 * np.abs(cpu).max())


def test_reconstruct_gpu_matches_cpu_and_returns_where_it_came_from(gpu):
    cp = gpu
    k = _complex((2, 16, 12, 10), seed=3)
    for options in ({"output": "magnitude"}, {"window": "hann", "zero_fill": 1.5}, {}):
        cpu = reconstruct(k, **options)
        host = reconstruct(k, device="gpu", **options)
        assert isinstance(host, np.ndarray) and host.dtype == cpu.dtype
        np.testing.assert_allclose(host, cpu, atol=1e-5 * np.abs(cpu).max())
        on_device = reconstruct(cp.asarray(k), **options)
        assert backend.on_gpu(on_device)
        np.testing.assert_allclose(on_device.get(), cpu, atol=1e-5 * np.abs(cpu).max())


def test_tv_qsm_and_forward_field_gpu_match_cpu(gpu):
    shape, spacing, b0 = (24, 20, 16), (1.0, 1.0, 1.5), (0.3, 0.1, 1.0)
    z, y, x = np.indices(shape)
    mask = (z - 12) ** 2 + (y - 10) ** 2 + (x - 8) ** 2 < 49
    chi = np.where((z - 12) ** 2 + (y - 10) ** 2 + (x - 8) ** 2 < 9, 0.2, 0.0)
    field_cpu = forward_field(chi, spacing, b0)
    field_gpu = forward_field(chi, spacing, b0, device="gpu")
    np.testing.assert_allclose(field_gpu, field_cpu, atol=1e-5 * np.abs(field_cpu).max())
    cpu = invert_tv(field_cpu, mask, spacing, b0, max_iter=30, tol=0)
    gpu = invert_tv(field_cpu, mask, spacing, b0, max_iter=30, tol=0, device="gpu")
    assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=1e-4 * np.abs(cpu).max())


def test_tv_qsm_slabs_on_threads_equal_one_slab(monkeypatch):
    """The slab-parallel updates (periodic differences across slab borders included) give
    the same bits as one slab."""
    rng = np.random.default_rng(5)
    shape, spacing, b0 = (20, 12, 10), (1.0, 1.2, 1.5), (0.2, 0.3, 1.0)
    field = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    mask = rng.random(shape) > 0.1
    whole = invert_tv(field, mask, spacing, b0, max_iter=8, tol=0)
    monkeypatch.setattr(backend, "SLAB_VOXELS", 3 * 12 * 10)  # slabs of 3 planes
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    np.testing.assert_array_equal(invert_tv(field, mask, spacing, b0, max_iter=8, tol=0), whole)


@pytest.mark.parametrize("cores", [1, 2])
def test_centring_ramps_need_no_volume_sized_factor(monkeypatch, cores):
    """The ramps' per-slab factor stays one slab, also when one thread runs every slab."""
    import tracemalloc

    from napari_mrmicro.core.kspace import _centering_ramps, multiply_along_axes
    monkeypatch.setattr(backend, "SLAB_VOXELS", 64 * 64 * 2)  # slabs of 2 planes
    monkeypatch.setattr(backend._slabs, "core_count", lambda: cores)
    backend.for_each_slab(np, lambda start, stop: None, 4, 1)  # the pool exists already
    for shape in ((96, 64, 64), (95, 63, 63)):  # ±1 ramps, and complex ones
        k = _complex(shape, seed=3)
        pre, _ = _centering_ramps(shape, (0, 1, 2), True, np.float32)
        expected = k * np.multiply.outer(np.multiply.outer(pre[0], pre[1]), pre[2])
        tracemalloc.start()
        multiply_along_axes(k, pre, k)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 0.25 * k.nbytes  # a whole-volume factor: 0.5 (float32) or 1 (complex)
        np.testing.assert_allclose(k, expected, rtol=1e-6, atol=1e-6)


def test_centred_transforms_in_slabs_equal_one_slab(monkeypatch):
    k = _complex((2, 9, 8, 7), seed=7)
    # trailing axes (the magnitude's slab-fused last axis, odd and even rolls across the
    # echo boundary), trailing 2-D (slices as planes), and axes with a gap
    cases = ((-3, -2, -1), (-2, -1), (0, 1, 3))
    functions = (centered_fft, centered_ifft, centered_ifft_magnitude)
    whole = [fn(k, axes) for fn in functions for axes in cases]
    monkeypatch.setattr(backend, "SLAB_VOXELS", 1)  # one plane per slab
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    sliced = [fn(k, axes) for fn in functions for axes in cases]
    for a, b in zip(whole, sliced):
        np.testing.assert_array_equal(a, b)
    n = len(cases)
    for magnitude, image in zip(sliced[2 * n:], sliced[n:2 * n]):
        np.testing.assert_allclose(magnitude, np.abs(image), atol=1e-6 * magnitude.max())


def test_haar_wavelet_in_slabs_equals_one_slab_and_inverts(monkeypatch):
    from napari_mrmicro.core.wavelets import wavelet_forward, wavelet_inverse
    x = _complex((4, 16, 8, 8), seed=9)
    cases = [((-3, -2, -1), 2), ((0, 1, 2, 3), 1), ((0, 2), 1), ((1, 3), 2)]
    whole = [wavelet_forward(x, "haar", levels, axes) for axes, levels in cases]
    monkeypatch.setattr(backend, "SLAB_VOXELS", 1)  # one plane per slab
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    for (axes, levels), expected in zip(cases, whole):
        coefficients = wavelet_forward(x, "haar", levels, axes)
        np.testing.assert_array_equal(coefficients, expected)
        np.testing.assert_allclose(wavelet_inverse(coefficients, "haar", levels, axes), x,
                                   atol=1e-5)


@pytest.mark.parametrize("slab_voxels", [1, 2**18])
def test_roll_into_is_np_roll(monkeypatch, slab_voxels):
    monkeypatch.setattr(backend, "SLAB_VOXELS", slab_voxels)
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    x = _complex((7, 6, 5), seed=2)
    for shifts in ({0: 3, 1: -2, 2: 9}, {1: 1}, {0: 0, 2: 4}, {}):
        out = backend.roll_into(x, shifts, np.empty_like(x))
        np.testing.assert_array_equal(out, np.roll(x, tuple(shifts.values()),
                                                   tuple(shifts.keys())) if shifts else x)
    magnitude = backend.roll_into(x, {0: 3, 2: 2}, np.empty(x.shape, np.float32), np.abs)
    np.testing.assert_array_equal(magnitude, np.abs(np.roll(x, (3, 2), (0, 2))))


def test_centred_magnitude_leaves_its_input_unless_told():
    k = _complex((8, 12, 10), seed=5)
    before = k.copy()
    magnitude = centered_ifft_magnitude(k)
    np.testing.assert_array_equal(k, before)  # the input is left alone
    assert magnitude.dtype == np.float32 and magnitude.flags.owndata
    np.testing.assert_allclose(magnitude, np.abs(centered_ifft(k)), atol=1e-6 * magnitude.max())
    odd = _complex((7, 9, 5), seed=6)  # N // 2 on odd axes too
    np.testing.assert_allclose(centered_ifft_magnitude(odd), np.abs(centered_ifft(odd)),
                               atol=1e-6 * np.abs(centered_ifft(odd)).max())
    overwritten = centered_ifft_magnitude(k, overwrite_x=True)  # k is the transform's buffer
    np.testing.assert_allclose(overwritten, magnitude, atol=1e-6 * magnitude.max())
    assert not np.array_equal(k, before)


def test_compressed_sensing_in_slabs_equals_one_slab(monkeypatch):
    from napari_mrmicro.core.compressed_sensing import cs_reconstruct
    from napari_mrmicro.core.sampling import poisson_disc_mask
    shape = (20, 16, 12)
    k = _complex(shape, seed=4)
    mask = poisson_disc_mask(shape, 3, calib=6, seed=0)
    methods = ("l1_wavelet", "tv")
    whole = [cs_reconstruct(k, mask, method=m, iterations=4, tol=0) for m in methods]
    monkeypatch.setattr(backend, "SLAB_VOXELS", 1)  # one plane per slab
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    for method, expected in zip(methods, whole):
        np.testing.assert_array_equal(
            cs_reconstruct(k, mask, method=method, iterations=4, tol=0), expected)
        # a single echo (echo, z, y, x) is cut along z like the 3-D volume
        echo = cs_reconstruct(k[None], mask, method=method, iterations=4, tol=0)
        assert echo.shape == (1,) + shape
        np.testing.assert_array_equal(echo[0], expected)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_slab_pool_works_in_a_forked_child(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(backend._slabs, "core_count", lambda: 2)
    backend.for_each_slab(np, lambda start, stop: None, 64, 2**16)  # the pool now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        total = pool.apply_async(_slab_sum_in_child).get(timeout=60)
    assert total == sum(range(64))


def _slab_sum_in_child():
    backend._slabs.core_count = lambda: 2
    seen = np.zeros(64, int)
    backend.for_each_slab(np, lambda start, stop: seen.__setitem__(slice(start, stop),
                                                                   np.arange(start, stop)),
                          64, 2**16)
    return int(seen.sum())


def test_qsm_element_wise_steps_in_slabs_equal_one_slab(monkeypatch):
    from napari_mrmicro.core.qsm.kernel import dipole_kernel_fft_order
    from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
    from napari_mrmicro.core.qsm.tkd import invert_tkd
    from napari_mrmicro.core.qsm.unwrap import unwrap_laplacian
    rng = np.random.default_rng(6)
    shape = (11, 10, 9)
    phase = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    field = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) > 0.3

    def run():
        return [unwrap_laplacian(phase, (20.0, 25.0, 30.0)),
                invert_tkd(field, mask, (20.0, 20.0, 30.0), (1.0, 0.3, 0.2), pad=2),
                invert_tikhonov(field, mask, (20.0, 20.0, 30.0), (1.0, 0.3, 0.2)),
                invert_tikhonov(field, mask, 20.0, regularizer="identity", pad=1),
                dipole_kernel_fft_order((12, 10, 8), (1.0, 2.0, 1.5), (0.6, 0.8, 0.0), real=True)]

    whole = run()
    monkeypatch.setattr(backend, "SLAB_VOXELS", 1)  # one plane per slab
    monkeypatch.setattr(backend._slabs, "core_count", lambda: 3)
    for a, b in zip(whole, run()):
        np.testing.assert_array_equal(a, b)


def test_the_gpu_stand_in_refuses_to_mix_host_and_device(gpu):
    """Without a device the GPU tests run on tests/fake_cupy.py; it must fail where CuPy
    would, or those tests prove nothing."""
    if backend.gpu_available() and type(gpu).__name__ != "_Module":
        pytest.skip("a real CUDA device: nothing to check about the stand-in")
    host = np.arange(6.0)
    device = gpu.asarray(host)
    assert backend.on_gpu(device) and not isinstance(device, np.ndarray)
    host[0] = 7.0  # asarray copied to the device
    assert float(device[0]) == 0.0
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(device)
    with pytest.raises(TypeError, match="mix host and device"):
        device + host
    with pytest.raises(TypeError, match="mix host and device"):
        gpu.multiply(device, host, out=device)
    with pytest.raises(TypeError, match="mix host and device"):
        gpu.abs(host)
    doubled = np.multiply(device, 2.0)  # numpy ufuncs run on the device, as with CuPy
    assert backend.on_gpu(doubled) and doubled.get()[1] == 2.0
    assert np.array_equal(backend.to_host(device * device), np.arange(6.0) ** 2)
