"""`mrmicro run|batch --device gpu`: a pipeline's recon and QSM steps on the GPU, equal to
the CPU within float32 rounding (on the CuPy stand-in of tests/fake_cupy.py where no device
exists), and where it ran recorded with the result."""

import json

import numpy as np
import pytest

from napari_mrmicro.cli import main
from napari_mrmicro.core import backend
from napari_mrmicro.io import read_volume
from napari_mrmicro.pipeline import parse_pipeline, run_specimen

PIPELINE = """
name = "tube chi"
[[step]]
run = "recon"
window = "hann"
[[step]]
run = "qsm"
max_iter = 30
boundary_passes = 2
[[step]]
run = "save"
image = "magnitude.ome.zarr"
chi = "chi.ome.zarr"
"""


@pytest.fixture(scope="module")
def kspace(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "tube.zarr"
    assert main(["simulate", "tube", str(path), "--matrix", "24", "--fov-mm", "2.4",
                 "--te-ms", "3,6,9"]) == 0
    return path


def test_a_pipeline_runs_its_recon_and_qsm_on_the_gpu(kspace, tmp_path, gpu, monkeypatch):
    pipeline = parse_pipeline(PIPELINE, "tube.toml")
    for device in ("cpu", "gpu"):
        (tmp_path / device).mkdir()
    on_cpu = run_specimen(pipeline, kspace, tmp_path / "cpu")
    spaces = []
    namespace = backend.namespace
    monkeypatch.setattr(backend, "namespace", lambda device: spaces.append(device) or
                        namespace(device))
    on_gpu = run_specimen(pipeline, kspace, tmp_path / "gpu", device="gpu")
    assert on_cpu.status == on_gpu.status == "done", (on_cpu.error, on_gpu.error)
    assert "gpu" in spaces
    for device in ("cpu", "gpu"):
        folder = tmp_path / device / "tube"
        assert json.loads((folder / "done.json").read_text())["device"] == device
        for name in ("magnitude", "chi"):
            assert read_volume(folder / f"{name}.ome.zarr").metadata["device"] == device
    for name in ("magnitude", "chi"):
        cpu, gpu_result = (np.asarray(read_volume(tmp_path / d / "tube" / f"{name}.ome.zarr")
                                      .data) for d in ("cpu", "gpu"))
        assert np.ptp(cpu) > 0
        np.testing.assert_allclose(gpu_result, cpu, atol=1e-4 * np.abs(cpu).max())
    # the device is not part of the pipeline: a specimen done on one is done for the other
    assert run_specimen(pipeline, kspace, tmp_path / "cpu", device="gpu").status == "skipped"


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_run_on_a_gpu_that_is_not_there_fails_the_specimen_with_the_reason(kspace,
                                                                          tmp_path):
    result = run_specimen(parse_pipeline(PIPELINE, "tube.toml"), kspace, tmp_path,
                          device="gpu")
    assert result.status == "failed" and "device 'gpu' is not available" in result.error
    assert not (tmp_path / "tube").exists()
