"""`mrmicro simulate|recon|qsm --device`: the CPU by default, a clear refusal when no GPU
is there."""

import importlib

import pytest

from napari_mrmicro.cli import _parser, main
from napari_mrmicro.core import backend


@pytest.mark.parametrize("command", [["simulate", "tube", "k.zarr"],
                                     ["recon", "k.zarr", "out.tif"],
                                     ["qsm", "mag.tif", "phase.tif", "chi.tif"],
                                     ["run", "p.toml", "k.zarr"],
                                     ["batch", "p.toml", "k.zarr"]])
def test_device_defaults_to_cpu_and_is_checked(command, capsys):
    assert _parser().parse_args(command).device == "cpu"
    assert _parser().parse_args(command + ["--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        _parser().parse_args(command + ["--device", "tpu"])
    assert "device must be one of ('cpu', 'gpu')" in capsys.readouterr().err


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
@pytest.mark.parametrize("command", [["recon", "k.zarr", "out.tif"], ["run", "p.toml", "k"]])
def test_gpu_refused_with_the_reason_when_there_is_none(command, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(command + ["--device", "gpu"])
    assert "device 'gpu' is not available" in capsys.readouterr().err
    # a batch's workers may have the GPU this machine lacks: they are asked (test_batch.py)
    assert _parser().parse_args(["batch", "p.toml", "k", "--device", "gpu"]).device == "gpu"


def test_simulate_device_reaches_the_simulator(tmp_path, monkeypatch):
    """Without a GPU here: the backend is told there is one, and the simulator records
    the device it was handed before computing on the CPU."""
    core = importlib.import_module("napari_mrmicro.core")
    real, seen = core.simulate, []

    def recording(*args, device=None, **kwargs):
        seen.append(device)
        return real(*args, device="cpu", **kwargs)

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    monkeypatch.setattr(core, "simulate", recording)
    out = tmp_path / "tube.zarr"
    assert main(["simulate", "tube", str(out), "--matrix", "8,8,8", "--fov-mm", "0.8",
                 "--device", "gpu"]) == 0
    assert seen == ["gpu"] and out.is_dir()
