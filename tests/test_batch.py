"""Batches on a dask.distributed LocalCluster (2 worker processes on loopback)."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

from napari_mrmicro.batch import run_batch
from napari_mrmicro.cli import main
from napari_mrmicro.io import Volume, read_volume, write_volume
from napari_mrmicro.pipeline import is_done, parse_pipeline

PIPELINE = """
name = "cubes"
[[step]]
run = "threshold"
threshold = 0.5
[[step]]
run = "components"
[[step]]
run = "measure"
[[step]]
run = "save"
labels = "labels.tif"
"""


def _cubes(path, count):
    image = np.zeros((16, 16, 16 * count), np.float32)
    for i in range(count):
        image[4:10, 4:10, 16 * i + 4:16 * i + 10] = 1.0
    write_volume(path, Volume(image, (5.0, 5.0, 5.0)))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield cluster, client


def test_batch_runs_in_parallel_reports_a_broken_specimen_and_resumes(tmp_path, cluster,
                                                                        capsys):
    local, client = cluster
    inputs = []
    for i in range(1, 4):
        _cubes(tmp_path / f"tooth{i}.tif", i)
        inputs.append(tmp_path / f"tooth{i}.tif")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00\x08\x00\x00\x00 truncated")
    inputs.insert(1, tmp_path / "broken.tif")
    pipeline = parse_pipeline(PIPELINE, "cubes.toml")
    out = tmp_path / "out"

    results = run_batch(pipeline, inputs, out, client=client, progress=None)
    assert [r.status for r in results] == ["done", "failed", "done", "done"]
    assert "broken.tif" in results[1].error
    assert "broken.tif" in (out / "broken.error.txt").read_text()
    for i in range(1, 4):
        rows = np.genfromtxt(out / f"tooth{i}" / "regions.csv", delimiter=",", names=True)
        assert np.atleast_1d(rows["volume_um3"]).tolist() == [216 * 125.0] * i
        assert read_volume(out / f"tooth{i}" / "labels.tif").data.max() == i

    # the same batch through the command line on the running scheduler: finished
    # specimens are skipped, the broken one fails again, a new one is done
    _cubes(tmp_path / "tooth4.tif", 2)
    (tmp_path / "cubes.toml").write_text(PIPELINE)
    code = main(["batch", str(tmp_path / "cubes.toml"),
                 *map(str, inputs), str(tmp_path / "tooth4.tif"), "-o", str(out),
                 "--scheduler", local.scheduler_address])
    text = capsys.readouterr().out
    assert code == 1
    assert "1 done, 3 skipped (already done), 1 failed" in text
    assert is_done(out, "tooth4", pipeline)


def test_duplicate_specimen_names_are_refused_before_anything_runs(tmp_path, cluster):
    (tmp_path / "a").mkdir()
    for folder in (tmp_path, tmp_path / "a"):
        _cubes(folder / "same.tif", 1)
    with pytest.raises(ValueError, match="same.tif.*both write specimen 'same'"):
        run_batch(parse_pipeline(PIPELINE, "p.toml"),
                  [tmp_path / "same.tif", tmp_path / "a" / "same.tif"], tmp_path / "o",
                  client=cluster[1])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", [{"n_workers": -1}, {"n_workers": 0},
                                    {"threads_per_worker": 0}, {"n_workers": 1.5}])
def test_nonsense_worker_counts_are_refused_at_once(tmp_path, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        run_batch(parse_pipeline(PIPELINE, "p.toml"), [tmp_path / "a.tif"], tmp_path,
                  **option)


def test_a_format_error_on_a_worker_keeps_its_message(tmp_path, cluster):
    _cubes(tmp_path / "half.tif", 1)
    (tmp_path / "half.tif").write_bytes((tmp_path / "half.tif").read_bytes()[:300])
    write_volume(tmp_path / "frac.tif", Volume(np.full((4, 4, 4), 1.5, np.float32), (5, 5, 5)))
    write_volume(tmp_path / "whole.tif", Volume(np.ones((4, 4, 4), np.float32), (5, 5, 5)))
    pipeline = parse_pipeline('[[step]]\nrun = "save"\nimage = "x.headfile"\n', "p.toml")
    results = run_batch(pipeline, [tmp_path / n for n in ("half.tif", "frac.tif", "whole.tif")],
                        tmp_path / "out", client=cluster[1], progress=None)
    assert [r.status for r in results] == ["failed", "failed", "done"]
    assert results[0].error.startswith("FormatError: ") and "half.tif" in results[0].error
    assert results[1].error.startswith("FormatError: ") and "fractional values" in \
        results[1].error and "step 1 (save)" in results[1].error


@pytest.mark.skipif(__import__("napari_mrmicro.core.backend", fromlist=["x"]).gpu_available(),
                    reason="a GPU is present")
def test_a_gpu_batch_asks_every_worker_first(tmp_path, cluster, capsys):
    """Workers without a CUDA device are named before any specimen is sent to them (each
    would fail the same way); the command line says so and writes nothing."""
    _cubes(tmp_path / "tooth.tif", 1)
    with pytest.raises(ValueError, match=r"device 'gpu' is not usable on 2 dask worker\(s\)"
                                         r": tcp://127\.0\.0\.1:\d+: device 'gpu' is not "
                                         "available"):
        run_batch(parse_pipeline(PIPELINE, "p.toml"), [tmp_path / "tooth.tif"],
                  tmp_path / "out", client=cluster[1], device="gpu")
    assert not any((tmp_path / "out").iterdir())
    (tmp_path / "p.toml").write_text(PIPELINE)
    address = cluster[0].scheduler_address
    assert main(["batch", str(tmp_path / "p.toml"), str(tmp_path / "tooth.tif"), "-o",
                 str(tmp_path / "out"), "--scheduler", address, "--device", "gpu"]) == 2
    assert "is not usable on 2 dask worker(s)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="device must be one of"):
        run_batch(parse_pipeline(PIPELINE, "p.toml"), [tmp_path / "tooth.tif"],
                  tmp_path / "out", client=cluster[1], device="tpu")
    # a local cluster is this machine: refused before one is started
    assert main(["batch", str(tmp_path / "p.toml"), str(tmp_path / "tooth.tif"), "-o",
                 str(tmp_path / "out"), "--device", "gpu"]) == 2
    assert "device 'gpu' is not usable here" in capsys.readouterr().err
