"""Batches of specimens on dask.distributed: a local cluster or an existing one.

Each specimen is one task running :func:`napari_mrmicro.pipeline.run_specimen` on a worker:
outputs go to ``<out>/<specimen>/`` atomically, a failure to ``<out>/<specimen>.error.txt``,
and the other specimens finish. Specimens already done with the same pipeline are skipped
before anything is sent to the cluster, so an interrupted batch resumes. Workers get one
thread each by default (the FFT and chunked steps inside a task use that many threads), so
specimens, not threads, share the cores. With ``device="gpu"`` the reconstruction and QSM
steps run on each worker's CUDA device: every worker is asked first whether it has one,
and a local cluster then has one worker, with all the cores as its threads, so that
specimens do not compete for one device's memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from napari_mrmicro.pipeline import (Pipeline, SpecimenResult, write_text_atomic,
                                     check_names, is_done, run_specimen)


def _client(stack: contextlib.ExitStack, scheduler: str | None, n_workers: int | None,
            threads_per_worker: int):
    """A distributed Client on ``scheduler``, or on a loopback-only LocalCluster of
    ``n_workers`` processes; both closed with ``stack``."""
    from distributed import Client, LocalCluster

    if scheduler:
        return stack.enter_context(Client(scheduler))
    cluster = stack.enter_context(LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker,
        processes=True, host="127.0.0.1", dashboard_address=None))
    return stack.enter_context(Client(cluster))


def device_problem(device: str) -> str | None:
    """Why this process cannot run on ``device``, or None when it can (run on each worker
    before a batch is sent to it)."""
    from napari_mrmicro.core import backend

    try:
        backend.check_device(device)
    except RuntimeError as error:
        return str(error)
    return None


def _check_workers(client, device: str) -> None:
    """Refuse (ValueError naming the workers and why) when any worker cannot use
    ``device``: otherwise every specimen sent to it would fail the same way."""
    problems = {worker: problem for worker, problem in
                client.run(device_problem, device).items() if problem}
    if problems:
        listed = "; ".join(f"{worker}: {problem}" for worker, problem in
                           sorted(problems.items()))
        raise ValueError(f"device {device!r} is not usable on {len(problems)} dask "
                         f"worker(s): {listed}")


def run_batch(pipeline: Pipeline, inputs, out_dir, scheduler: str | None = None,
              n_workers: int | None = None, threads_per_worker: int | None = None,
              force: bool = False, client=None, progress=print,
              device: str = "cpu") -> list[SpecimenResult]:
    """Run ``pipeline`` on every input in parallel; return one result per input, in order.

    Parameters
    ----------
    pipeline : Pipeline
    inputs : sequence of path
        One file or folder per specimen; specimen names (file names without suffixes)
        must differ.
    out_dir : path
        Created if needed; one subfolder per specimen.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); its workers must see
        ``inputs`` and ``out_dir`` at the same paths (a shared file system).
    n_workers, threads_per_worker : int
        For the LocalCluster started when no ``scheduler`` or ``client`` is given
        (default one worker per core, one thread each; on the GPU one worker with a
        thread per core). Each specimen's steps use its worker's threads.
    force : bool
        Rerun specimens that are already done.
    client : distributed.Client, optional
        Use this client instead of connecting or starting a cluster.
    progress : callable(str), optional
        Gets one line per finished specimen.
    device : {"cpu", "gpu"}
        Where the reconstruction and QSM steps run. Every worker must have it: checked
        (ValueError) before any specimen is sent.
    """
    from distributed import as_completed

    from napari_mrmicro.core.backend import DEVICES

    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"run_batch: {name} must be a whole number >= 1, got {value!r}")
    if device not in DEVICES:
        raise ValueError(f"run_batch: device must be one of {DEVICES}, got {device!r}")
    local = client is None and not scheduler
    problem = local and device_problem(device)  # a local cluster's workers are this machine
    if problem:
        raise ValueError(f"device {device!r} is not usable here: {problem}")
    if device == "gpu" and local and n_workers is None:
        n_workers, threads_per_worker = 1, threads_per_worker or os.cpu_count() or 1
    inputs = [Path(p) for p in inputs]
    names = check_names(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, SpecimenResult] = {}
    todo = []
    for index, (path, name) in enumerate(zip(inputs, names)):
        if not force and is_done(out_dir, name, pipeline):
            results[index] = SpecimenResult(name, str(path), "skipped")
        else:
            todo.append(index)
    if todo:
        with contextlib.ExitStack() as stack:
            threads = threads_per_worker or 1
            if client is None:
                client = _client(stack, scheduler, n_workers, threads)
            if device != "cpu":
                _check_workers(client, device)
            futures = {client.submit(run_specimen, pipeline, str(inputs[i]), str(out_dir),
                                     threads, force, device, pure=False,
                                     key=f"mrmicro-{names[i]}-{time.time_ns()}"): i
                       for i in todo}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001 - a worker died on this specimen
                    message = f"{inputs[index]}: the worker failed: {error!r}"
                    write_text_atomic(out_dir / f"{names[index]}.error.txt", message + "\n")
                    result = SpecimenResult(names[index], str(inputs[index]), "failed",
                                            error=message)
                results[index] = result
                if progress:
                    progress(f"  {result.name}: {result.status}"
                             + (f" ({result.seconds:.1f} s)" if result.status == "done" else ""))
    return [results[i] for i in range(len(inputs))]
