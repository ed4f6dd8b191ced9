"""The simulator's transforms through the backend: CPU as before, the GPU equal to it."""

import numpy as np
import pytest

from napari_mrmicro.core import Acquisition, backend, make_specimen, simulate

def _case():
    specimen = make_specimen("cochlea", (32, 32, 32), 50.0)
    acquisition = Acquisition(matrix=(16, 16, 16), fov_um=(1600.0,) * 3,
                              sequence="gradient_echo", te_ms=(3.0, 6.0))
    return specimen, acquisition


def test_cpu_device_is_the_default_bit_for_bit():
    specimen, acquisition = _case()
    default = simulate(specimen, acquisition, seed=2)
    cpu = simulate(specimen, acquisition, seed=2, device="cpu")
    np.testing.assert_array_equal(cpu.data, default.data)
    np.testing.assert_array_equal(cpu.truth["field_ppm"], default.truth["field_ppm"])


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_gpu_without_a_device_is_a_clear_error():
    specimen, acquisition = _case()
    with pytest.raises(RuntimeError, match="device 'gpu' is not available"):
        simulate(specimen, acquisition, device="gpu")


@pytest.mark.parametrize("name, sequence, multislice", [
    ("cochlea", "gradient_echo", False), ("tooth", "spin_echo", False),
    ("tube", "gradient_echo", True)])
def test_gpu_transforms_equal_the_cpu_within_float32(gpu, name, sequence, multislice):
    """Phase per echo (complex images), real images (spin echo), multi-slice block means;
    one tissue group per modulation, uniform and look-up amplitudes."""
    specimen = make_specimen(name, (32, 32, 32), 50.0)
    acquisition = Acquisition(matrix=(16, 16, 16), fov_um=(1600.0,) * 3, sequence=sequence,
                              te_ms=(3.0, 6.0) if sequence == "gradient_echo" else (8.0,),
                              extra={"multislice": multislice})
    cpu = simulate(specimen, acquisition, seed=2)
    gpu = simulate(specimen, acquisition, seed=2, device="gpu")
    assert isinstance(gpu.data, np.ndarray) and gpu.data.dtype == np.complex64
    peak = np.abs(cpu.data).max()
    assert np.abs(gpu.data - cpu.data).max() < 1e-5 * peak
    field = np.abs(cpu.truth["field_ppm"]).max()
    assert np.abs(gpu.truth["field_ppm"] - cpu.truth["field_ppm"]).max() < 1e-5 * field
