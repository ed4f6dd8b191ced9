"""Shared test set-up: in CI (CI=true) GUI tests must run, never skip."""

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config):
    if IN_CI and not shutil.which("Xvfb"):
        raise pytest.UsageError("CI=true but Xvfb is not installed: the GUI tests cannot run")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)  # napari's viewer fixture reads rep_call
    if IN_CI and report.skipped and item.get_closest_marker("gui"):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: GUI test skipped in CI ({report.longrepr})"


#: Real scanner and microscope files (../shared/realdata from the repository root). Never
#: copied into the repository; tests that need them skip with the reason when absent.
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture
def realdata():
    """``realdata("bruker_pv/pv360_rodent/6")`` -> the Path, or skip when it is absent."""

    def find(relative: str) -> Path:
        path = REALDATA / relative
        if not path.exists():
            pytest.skip(f"real-data file {relative} absent ({REALDATA} not found: "
                        "it is present in CI)")
        return path

    return find


@pytest.fixture
def gpu(monkeypatch):
    """The GPU's array module: CuPy on a machine with a CUDA device, else a strict
    numpy-backed stand-in (``tests/fake_cupy.py``) installed as the dispatch's GPU, so the
    GPU branches run and their host/device boundaries are checked everywhere."""
    from napari_mrmicro.core import backend

    if backend.gpu_available():
        return backend.namespace("gpu")
    import fake_cupy

    fake = fake_cupy.make()
    monkeypatch.setattr(backend, "_cupy", lambda: fake)
    monkeypatch.setattr(backend, "_gpu_fft",
                        lambda: backend._Transforms(fake.fft_module, threaded=False))
    return fake


@pytest.fixture
def gpu_nufft(gpu, monkeypatch):
    """:func:`gpu` with cuFINUFFT: the real one on a CUDA device (skip when it is not
    installed there), else a stand-in running FINUFFT's CPU plans behind cuFINUFFT's
    interface on the fake CuPy's arrays."""
    import fake_cupy

    from napari_mrmicro.core import nufft

    if not fake_cupy.is_stand_in(gpu):  # CuPy on a CUDA device
        pytest.importorskip("cufinufft", reason="cuFINUFFT is not installed on this GPU "
                                                "machine (the gpu extra brings it)")
        return gpu
    fake = fake_cupy.make_cufinufft()
    monkeypatch.setattr(nufft, "_cufinufft", lambda: fake)
    return gpu
