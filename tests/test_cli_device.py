"""`mrmicro recon|qsm --device`: the CPU by default, a clear refusal when no GPU is there."""

import pytest

from napari_mrmicro.cli import _parser
from napari_mrmicro.core import backend


@pytest.mark.parametrize("command", [["recon", "k.zarr", "out.tif"],
                                     ["qsm", "mag.tif", "phase.tif", "chi.tif"]])
def test_device_defaults_to_cpu_and_is_checked(command, capsys):
    assert _parser().parse_args(command).device == "cpu"
    assert _parser().parse_args(command + ["--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        _parser().parse_args(command + ["--device", "tpu"])
    assert "device must be one of ('cpu', 'gpu')" in capsys.readouterr().err


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_gpu_refused_with_the_reason_when_there_is_none(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["recon", "k.zarr", "out.tif", "--device", "gpu"])
    assert "device 'gpu' is not available" in capsys.readouterr().err
