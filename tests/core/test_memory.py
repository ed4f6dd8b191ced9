"""The memory guard: available (not installed) memory, refusal before allocating, with the
estimate in the message."""

import subprocess
import sys
import time
import tracemalloc

import dask.array as da
import numpy as np
import pytest

from napari_mrmicro.cli import EXIT_NO_MEMORY, main
from napari_mrmicro.core import memory
from napari_mrmicro.core.centerline import centerline
from napari_mrmicro.core.morphometry import region_table
from napari_mrmicro.core.specimens import make_specimen
from napari_mrmicro.io import Volume
from napari_mrmicro.pipeline import Specimen, recon_step


def test_available_memory_honours_the_address_space_limit():
    code = ("import resource; from napari_mrmicro.core.memory import available_memory_bytes;"
            "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY));"
            "print(available_memory_bytes())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert 0 < int(run.stdout) < 3 * 2**30


def test_available_memory_is_at_most_what_the_kernel_calls_available():
    with open("/proc/meminfo") as f:
        stated = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    assert memory.available_memory_bytes() <= stated["MemAvailable"] * 1.05 + 2**26


@pytest.fixture
def eight_gib(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 8 * 2**30)


def test_recon_of_a_huge_kspace_is_refused_before_it_is_loaded(eight_gib):
    kspace = da.zeros((1, 1024, 1024, 1024), dtype=np.complex64, chunks=(1, 64, 1024, 1024))
    s = Specimen("big", None)
    s.volumes["kspace"] = Volume(kspace, (10.0, 10.0, 10.0), {"kspace": True})
    tracemalloc.start()
    with pytest.raises(MemoryError, match=r"recon of k-space \(1, 1024, 1024, 1024\) .* "
                                          r"needs about \d+\.\d+ GiB"):
        recon_step(s)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**26  # nothing of the 8 GiB was allocated


def test_simulate_of_a_huge_matrix_is_refused_at_once(eight_gib, tmp_path, capsys):
    start = time.perf_counter()
    assert main(["simulate", "tube", str(tmp_path / "k.zarr"), "--matrix", "400"]) \
        == EXIT_NO_MEMORY
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "(800, 800, 800) specimen" in err and "GiB" in err and "--matrix" in err
    assert not (tmp_path / "k.zarr").exists()


def test_make_specimen_compares_with_available_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(MemoryError, match=r"make_specimen: a cochlea .* needs about "
                                          r"3.00 MiB but only 1.00 MiB"):
        make_specimen("cochlea", (64, 64, 64), 20.0)


def test_a_centerline_at_a_nanometre_step_is_refused_with_its_estimate():
    mask = np.zeros((12, 12, 30), bool)
    mask[4:8, 4:8, 2:28] = True
    with pytest.raises(MemoryError,
                       match=r"at \d+ points .*needs about \d+\.\d+ [MG]iB.* step_um"):
        centerline(mask, (10.0, 10.0, 10.0), step_um=1e-9)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_a_label_id_of_two_to_the_31_is_measured_not_a_memory_error(dtype):
    labels = np.zeros((6, 6, 6), dtype)
    labels[1:3, 1:3, 1:3] = 2**31 - 1
    labels[3:6, 3:6, 3:6] = 5
    table = region_table(labels, (2.0, 2.0, 2.0))
    assert list(table["label"]) == [5, 2**31 - 1]
    np.testing.assert_allclose(table["volume_um3"], [27 * 8.0, 8 * 8.0])
