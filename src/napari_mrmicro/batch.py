"""Batches of specimens on dask.distributed: a local cluster or an existing one.

Each specimen is one task running :func:`napari_mrmicro.pipeline.run_specimen` on a worker:
outputs go to ``<out>/<specimen>/`` atomically, a failure to ``<out>/<specimen>.error.txt``,
and the other specimens finish. Specimens already done with the same pipeline are skipped
before anything is sent to the cluster, so an interrupted batch resumes. Workers get one
thread each by default (the FFT and chunked steps inside a task use that many threads), so
specimens, not threads, share the cores.
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


def run_batch(pipeline: Pipeline, inputs, out_dir, scheduler: str | None = None,
              n_workers: int | None = None, threads_per_worker: int = 1,
              force: bool = False, client=None, progress=print) -> list[SpecimenResult]:
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
        (default one worker per core, one thread each).
    force : bool
        Rerun specimens that are already done.
    client : distributed.Client, optional
        Use this client instead of connecting or starting a cluster.
    progress : callable(str), optional
        Gets one line per finished specimen.
    """
    from distributed import as_completed

    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"run_batch: {name} must be a whole number >= 1, got {value!r}")
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
            if client is None:
                client = _client(stack, scheduler, n_workers, threads_per_worker)
            threads = max(1, threads_per_worker)
            futures = {client.submit(run_specimen, pipeline, str(inputs[i]), str(out_dir),
                                     threads, force, pure=False,
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
