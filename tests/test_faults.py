"""Writers killed at random instants (SIGKILL in a subprocess): the target is the old
version or the new one, complete, never a mixture or nothing; the next write clears the
temporaries the killed one left."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_mrmicro.io import Volume, read_volume, write_volume
from napari_mrmicro.io import omezarr
from napari_mrmicro.pipeline import parse_pipeline, run_specimen

SHAPE = (6, 8, 8)
KILLS = 20

#: Kills a forked writer of versions 1, 2, 1, ... of a volume at random instants, checks
#: the target after each kill and prints a JSON summary (forking keeps a kill cheap).
CAMPAIGN = textwrap.dedent("""
    import json, os, random, signal, sys, time
    import dask
    import numpy as np
    from napari_mrmicro.io import Volume, read_volume, write_volume
    from napari_mrmicro.io import omezarr
    target, kills = sys.argv[1], int(sys.argv[2])
    dask.config.set(scheduler="synchronous")  # no thread pool to lose in the forks
    zarr = target.endswith(".zarr")
    write, read = (omezarr.write, omezarr.read) if zarr else (write_volume, read_volume)
    versions = [Volume(np.full({shape}, v, np.uint16), (10.0, 10.0, 10.0)) for v in (1, 2)]
    write(target, versions[0])  # imports what the writer needs before forking
    start = time.perf_counter()
    write(target, versions[0])
    scale = 1.5 * (time.perf_counter() - start)
    rng, seen, written = random.Random(target), set(), 0
    for kill in range(kills):
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(done_r)
            i = kill
            while True:
                write(target, versions[i % 2])
                os.write(done_w, b".")
                i += 1
        os.close(done_w)
        for _ in range(rng.randrange(3)):  # let it finish 0..2 writes, then kill it
            written += len(os.read(done_r, 1))
        time.sleep(rng.uniform(0.0, scale))  # at a random instant of the next write
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(done_r, 4096):
            written += len(chunk)
        os.close(done_r)
        data = np.asarray(read(target, lazy=False).data)
        value = int(data.flat[0])
        if data.shape != {shape} or not np.all(data == value) or value not in (1, 2):
            print(json.dumps({{"kill": kill, "shape": data.shape,
                               "values": np.unique(data).tolist()}}))
            sys.exit(1)
        seen.add(value)
    print(json.dumps({{"written": written, "seen": sorted(seen)}}))
""").format(shape=SHAPE)

WRITERS = ("s.headfile", "s.tif", "s.nii", "s.nii.gz", "s.ome.zarr")


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name", WRITERS)
def test_a_killed_write_leaves_the_old_or_the_new_volume(tmp_path, name):
    target = tmp_path / name
    write = omezarr.write if name.endswith(".zarr") else write_volume
    write(target, Volume(np.full(SHAPE, 1, np.uint16), (10.0, 10.0, 10.0)))
    (tmp_path / "neighbour.txt").write_text("not ours")
    run = subprocess.run([sys.executable, "-c", CAMPAIGN, str(target), str(KILLS)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["written"] >= KILLS // 2 and summary["seen"] == [1, 2]
    assert (tmp_path / "neighbour.txt").read_text() == "not ours"
    # the next write removes what the killed ones left behind
    write(target, Volume(np.full(SHAPE, 3, np.uint16), (10.0, 10.0, 10.0)))
    read = omezarr.read if name.endswith(".zarr") else read_volume
    assert np.all(np.asarray(read(target, lazy=False).data) == 3)
    assert _temporaries(tmp_path) == []


#: A child that writes version 2 of a series and dies just after moving the old headfile
#: aside, before the new one is in: the worst instant of a CIVM commit.
DIES_BETWEEN_HEADFILES = textwrap.dedent("""
    import os, sys
    import numpy as np
    from napari_mrmicro.io import Volume, civm
    real_replace = os.replace
    def replace(source, target):
        real_replace(source, target)
        if str(source) == sys.argv[1]:  # the old headfile went aside
            os._exit(0)
    civm.os.replace = replace
    civm.write(sys.argv[1], Volume(np.full({shape}, 2, np.uint16), (10.0, 10.0, 10.0)))
""").format(shape=SHAPE)


def test_reading_a_series_killed_between_its_two_headfiles_rolls_it_forward(tmp_path):
    target = tmp_path / "s.headfile"
    write_volume(target, Volume(np.full(SHAPE, 1, np.uint16), (10.0, 10.0, 10.0)))
    run = subprocess.run([sys.executable, "-c", DIES_BETWEEN_HEADFILES, str(target)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not target.exists()  # the kill came at the instant meant
    assert np.all(np.asarray(read_volume(target, lazy=False).data) == 2)
    assert _temporaries(tmp_path) == []


#: A child that reruns one specimen with two pipelines in turn until killed.
RUNNER = textwrap.dedent("""
    import sys
    from napari_mrmicro.pipeline import parse_pipeline, run_specimen
    texts = [sys.argv[3], sys.argv[3].replace("0.5", "0.25")]
    pipelines = [parse_pipeline(t, "p.toml") for t in texts]
    print("ready", flush=True)
    i = 0
    while True:
        result = run_specimen(pipelines[i % 2], sys.argv[1], sys.argv[2], force=True)
        assert result.status == "done", result.error
        i += 1
""")
TRIALS = 3


def _kill_at_random(args, seed):
    """Start ``python -c args...``, wait until it is working, kill it at a random instant."""
    child = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(random.Random(seed).uniform(0.02, 0.4))
        assert child.poll() is None, child.stderr.read()  # still working
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()  # waits, and closes its pipes


PIPELINE = """
[[step]]
run = "threshold"
threshold = 0.5
[[step]]
run = "measure"
[[step]]
run = "save"
labels = "labels.tif"
"""


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_killed_specimen_run_leaves_the_old_or_the_new_result(tmp_path, trial):
    image = np.zeros(SHAPE, np.float32)
    image[2:4, 2:6, 2:6] = 1.0
    write_volume(tmp_path / "ear.tif", Volume(image, (10.0, 10.0, 10.0)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "other").mkdir()
    (out / "other" / "done.json").write_text("{}")  # another specimen's result
    pipeline = parse_pipeline(PIPELINE, "p.toml")
    assert run_specimen(pipeline, tmp_path / "ear.tif", out).status == "done"
    _kill_at_random([RUNNER, str(tmp_path / "ear.tif"), str(out), PIPELINE], seed=trial)
    done = json.loads((out / "ear" / "done.json").read_text())
    assert sorted(done["outputs"]) == ["labels.tif", "regions.csv"]
    assert sorted(p.name for p in (out / "ear").iterdir()) == ["done.json", "labels.tif",
                                                               "regions.csv"]
    labels = np.asarray(read_volume(out / "ear" / "labels.tif").data)
    assert labels.sum() == 32
    assert (out / "other" / "done.json").read_text() == "{}"
    assert run_specimen(pipeline, tmp_path / "ear.tif", out, force=True).status == "done"
    assert _temporaries(out) == []


def test_a_live_writers_temporaries_are_kept(tmp_path):
    target = tmp_path / "s.nii"
    live = tmp_path / f".s.nii.abcd1234.{os.getppid()}.part"  # our parent runs
    dead = tmp_path / ".s.nii.efgh5678.999999999.part"
    other = tmp_path / ".s.nii.gz.ijkl9012.999999999.part"  # another output's
    for path in (live, dead, other):
        path.write_bytes(b"half")
    write_volume(target, Volume(np.ones(SHAPE, np.uint16), (1.0, 1.0, 1.0)))
    assert live.exists() and other.exists() and not dead.exists()


def test_a_killed_table_write_leaves_the_old_or_the_new_table(tmp_path):
    """Measurement tables (CSV) go through the same atomic output: killed writers leave the
    old table or the new one, and their temporaries go with the next write."""
    from napari_mrmicro.pipeline import write_table

    target = tmp_path / "regions.csv"
    tables = [{"label": np.arange(n), "volume_um3": np.full(n, float(n))} for n in (2000, 3000)]
    write_table(target, tables[0])
    rng = random.Random(0)
    for kill in range(10):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child is killed
            i = kill
            while True:
                write_table(target, tables[i % 2])
                i += 1
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rows = target.read_text().splitlines()
        assert rows[0] == "label,volume_um3" and len(rows) - 1 in (2000, 3000)
        assert rows[-1].endswith(f"{len(rows) - 1:.1f}") or rows[-1].endswith(
            repr(float(len(rows) - 1)))
    write_table(target, tables[1])
    assert _temporaries(tmp_path) == []
