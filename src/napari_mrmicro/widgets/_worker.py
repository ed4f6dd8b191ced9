"""Run a core function off the GUI thread with a napari progress bar and cancellation.

Core functions report progress through a callback; napari's progress bars belong to the
GUI thread and advance on a generator worker's yields. :func:`progress_worker` bridges
the two: the core function runs in a plain thread and the generator worker relays its
reports as yields (and the stage as the bar's description).
"""

from __future__ import annotations

import queue
import threading

from napari.qt.threading import thread_worker

STEPS = 100


def progress_worker(func, desc: str):
    """A started-later GeneratorWorker running ``func(report)``; its return is the result.

    ``report(fraction, stage=None)`` advances the bar and returns False once the user
    cancelled (``worker.quit()``), so iterative solvers can stop early.
    """
    @thread_worker(progress={"total": STEPS, "desc": desc})
    def work():
        updates, outcome, stop = queue.SimpleQueue(), {}, threading.Event()

        def report(fraction, stage=None):
            updates.put((fraction, stage))
            return not stop.is_set()

        def target():
            try:
                outcome["value"] = func(report)
            except BaseException as error:  # re-raised in the worker, shown by the dock
                outcome["error"] = error

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        done = 0
        try:
            while thread.is_alive() or not updates.empty():
                try:
                    fraction, stage = updates.get(timeout=0.05)
                except queue.Empty:
                    continue
                for _ in range(max(0, min(STEPS, int(fraction * STEPS)) - done)):
                    done += 1
                    yield stage
        finally:
            stop.set()  # cancelled (GeneratorExit) or done
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    worker = work()
    worker.yielded.connect(lambda stage: stage and worker.pbar.set_description(
        f"{desc}: {stage}"))
    return worker
