"""Run a core function off the GUI thread with a napari progress bar and cancellation.

Core functions report progress through a callback, as often as they like (per slab, per
iteration, per label). napari's progress bars belong to the GUI thread, and every change
of a bar calls ``QApplication.processEvents``: a burst of queued updates re-enters the
bar from inside its own update until Python's recursion limit. :func:`progress_worker`
therefore decouples the two clocks:

- the core function runs in a plain thread and ``report`` only records the latest
  fraction and stage (no signal, no lock, any rate);
- a generator worker samples that state every :data:`INTERVAL` seconds and yields it, so
  the GUI sees at most ``1 / INTERVAL`` updates per second whatever the job reports, and
  the worker notices a cancel request within one interval;
- the GUI applies an update only when it is not already applying one (a nested call,
  from the bar's own ``processEvents``, leaves its value for the outer call to apply).

Cancelling (``worker.quit()``, the dock's Cancel button or napari's activity dialog)
takes effect at once in the GUI — the bar closes, "<desc>: cancelled" is shown and no
result is added — and in the job at its next report: ``report`` raises
:class:`JobCancelled`, which stops any core loop that reports between iterations or slabs.
The worker never re-raises errors into napari's global handler: the dock's ``errored``
handler shows each error once.
"""

from __future__ import annotations

import threading

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_info

#: Seconds between two progress updates in the GUI (at most 10 per second).
INTERVAL = 0.1
STEPS = 100


class JobCancelled(Exception):
    """Raised inside a job by ``report`` once the user cancelled it."""


class JobWorker(GeneratorWorker):
    """A GeneratorWorker whose ``quit`` also tells the running job to stop."""

    cancel_event: threading.Event

    def quit(self) -> None:
        super().quit()  # first: a job that sees the cancel finds the worker aborting
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        """Whether the user asked this job to stop."""
        return self.cancel_event.is_set()


class _Latest:
    """The job's most recent report, written by the job thread, read by the worker."""

    def __init__(self):
        self.fraction, self.stage = 0.0, None


def _relay(func, latest: _Latest, cancel: threading.Event):
    """Run ``func(report)`` in a thread; yield its latest state every INTERVAL seconds."""
    outcome = {}

    def report(fraction, stage=None):
        if cancel.is_set():
            raise JobCancelled("cancelled")
        latest.fraction = float(fraction)
        if stage is not None:
            latest.stage = str(stage)
        return True

    def target():
        try:
            outcome["value"] = func(report)
        except BaseException as error:  # re-raised in the worker, shown by the dock
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True, name="mrmicro job")
    thread.start()
    while thread.is_alive():
        thread.join(INTERVAL)
        yield latest.fraction, latest.stage
    if cancel.is_set():  # the worker aborts before taking the next value: no error shown
        yield latest.fraction, latest.stage
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _Bar:
    """The GUI side: a napari progress bar fed by the worker's yields, never re-entered."""

    def __init__(self, desc: str):
        self.desc, self.stage = desc, None
        self.pbar = progress(total=STEPS, desc=desc)
        self._busy, self._pending, self._closing = False, None, False
        self.updates = 0  # how many updates reached the bar (tests check the rate)

    def show(self, state) -> None:
        self._pending = state
        if self._busy:  # called again from inside processEvents: the outer call applies it
            return
        self._busy = True
        try:
            while self._pending is not None and not self._closing:
                (fraction, stage), self._pending = self._pending, None
                self._apply(fraction, stage)
        finally:
            self._busy = False
            if self._closing:
                self.close()

    def _apply(self, fraction, stage) -> None:
        if self.pbar is None:
            return
        if stage != self.stage:
            self.stage = stage
            self.pbar.set_description(f"{self.desc}: {stage}" if stage else self.desc)
            if self._closing:  # the job finished while the description was drawn
                return
        step = max(0, min(STEPS, int(fraction * STEPS)))
        if step != self.pbar.n:
            self.updates += 1
            self.pbar.update(step - self.pbar.n)

    def close(self) -> None:
        """Close the bar (after the update in progress, when called from inside one)."""
        self._closing = True
        if not self._busy and self.pbar is not None:
            self.pbar.close()
            self.pbar = None


def progress_worker(func, desc: str) -> JobWorker:
    """A not-yet-started worker running ``func(report)``; its return value is the result.

    ``report(fraction, stage=None)`` records progress (0–1) and the stage's name; it
    returns True, and raises :class:`JobCancelled` once the user cancelled, so a job
    stops at its next report. Signals: ``returned`` (the result, never after a cancel),
    ``errored`` (the exception: the dock shows it), ``aborted`` (cancelled: the bridge
    says so) and ``finished`` (always; the bar is closed by then).
    """
    latest, cancel = _Latest(), threading.Event()
    worker = create_worker(_relay, func, latest, cancel, _worker_class=JobWorker,
                           _ignore_errors=True)
    worker.cancel_event = cancel
    bar = _Bar(desc)
    worker.bar = worker.pbar = bar
    worker.yielded.connect(bar.show)
    worker.aborted.connect(lambda: show_info(f"{desc}: cancelled"))
    worker.finished.connect(bar.close)
    return worker
