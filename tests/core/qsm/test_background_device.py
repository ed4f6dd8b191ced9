"""V-SHARP, SHARP, PDF and LBV on the GPU: equal to the CPU within float32 rounding, the same
eroded mask, memory checked first (on the CuPy stand-in of tests/fake_cupy.py where no
device exists)."""

import numpy as np
import pytest

from napari_mrmicro.core import backend
from napari_mrmicro.core.qsm.background import lbv, pdf, sharp, vsharp
from napari_mrmicro.core.qsm.kernel import forward_field

SHAPE, SPACING, B0 = (28, 26, 24), (40.0, 40.0, 60.0), (0.2, 0.1, 1.0)


def _total_field():
    """A ball of sources inside a spherical mask plus the field of an air-like block
    outside it (the background)."""
    z, y, x = np.indices(SHAPE)
    r2 = (z - 14) ** 2 + (y - 13) ** 2 + ((x - 12) * 1.5) ** 2
    mask = r2 < 100
    chi = np.where(r2 < 9, 0.3, 0.0) + np.where((z < 3) & (y < 6), -9.0, 0.0)
    return forward_field(chi, SPACING, B0).astype(np.float32), mask


def _close(gpu_result, cpu_result, rtol=1e-5):
    assert isinstance(gpu_result, np.ndarray) and gpu_result.dtype == cpu_result.dtype
    np.testing.assert_allclose(gpu_result, cpu_result, atol=rtol * np.abs(cpu_result).max())


@pytest.mark.parametrize("radii", [None, [160.0, 120.0]])
def test_vsharp_on_the_gpu_equals_the_cpu(gpu, radii, monkeypatch):
    field, mask = _total_field()
    cpu, cpu_mask = vsharp(field, mask, SPACING, radii_um=radii)
    spaces = []
    namespace = backend.namespace
    monkeypatch.setattr(backend, "namespace", lambda device: spaces.append(device) or
                        namespace(device))
    local, eroded = vsharp(field, mask, SPACING, radii_um=radii, device="gpu")
    assert type(eroded) is np.ndarray and eroded.dtype == bool
    assert spaces == ["gpu"]
    np.testing.assert_array_equal(eroded, cpu_mask)
    assert cpu_mask.sum() > 50 and np.abs(cpu).max() > 0
    _close(local, cpu)
    with backend.use_device("gpu"):
        _close(sharp(field, mask, SPACING, 200.0)[0],
               sharp(field, mask, SPACING, 200.0, device="cpu")[0])


def test_pdf_on_the_gpu_equals_the_cpu(gpu):
    field, mask = _total_field()
    weight = np.where(mask, 1.0, 0.0) + 0.5
    iterations = {}
    for device in ("cpu", "gpu"):
        iterations[device] = []
        local, kept = pdf(field, mask, SPACING, B0, weight=weight, pad=4, max_iter=40,
                          tol=0, device=device, callback=lambda i, n, d=device:
                          iterations[d].append(i))
        iterations[device + " result"] = local
        np.testing.assert_array_equal(kept, mask)
    assert iterations["cpu"] == iterations["gpu"] == list(range(1, 41))
    # PDF's conjugate gradients amplify the rounding of the transforms and dot products
    # about 1e4-fold: a device (which sums the dot products in its own order) moves these 40
    # iterations by 2e-3 of the peak, the stand-in (scipy's irfftn, scaled once, against
    # the CPU's in-place inverse, scaled per step) by 1.3e-3 (both measured); with the same
    # transforms the two are equal to the bit.
    _close(iterations["gpu result"], iterations["cpu result"], rtol=1e-2)


def test_lbv_on_the_gpu_equals_the_cpu(gpu):
    field, mask = _total_field()
    iterations = {"cpu": [], "gpu": []}
    # 12 multigrid-preconditioned iterations: the residual falls to 2e-11 of its start
    # (by 25 it underflows float32 here)
    results = {device: lbv(field, mask, SPACING, tol=0, max_iter=12, device=device,
                           callback=lambda i, n, d=device: iterations[d].append(i))
               for device in ("cpu", "gpu")}
    assert iterations["cpu"] == iterations["gpu"] == list(range(1, 13))
    np.testing.assert_array_equal(results["gpu"][1], results["cpu"][1])
    _close(results["gpu"][0], results["cpu"][0], rtol=1e-4)
    with backend.use_device("gpu"):  # converged, as the pipeline runs it
        _close(lbv(field, mask, SPACING)[0], lbv(field, mask, SPACING, device="cpu")[0],
               rtol=1e-4)


def test_vsharp_errors_on_the_gpu_match_the_cpu(gpu, monkeypatch):
    field, mask = _total_field()
    thin = np.zeros_like(mask)
    thin[14, 13, 10:14] = True
    for device in ("cpu", "gpu"):
        with pytest.raises(ValueError, match="mask is too thin"):
            vsharp(field, thin, SPACING, device=device)
    monkeypatch.setattr(backend, "device_free_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match="vsharp of a .* field.*GPU memory"):
        vsharp(field, mask, SPACING, device="gpu")
    with pytest.raises(MemoryError, match="pdf on a padded grid.*GPU memory"):
        pdf(field, mask, SPACING, B0, device="gpu")
    with pytest.raises(MemoryError, match="lbv of a .* field.*GPU memory"):
        lbv(field, mask, SPACING, device="gpu")
