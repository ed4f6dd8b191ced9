"""The worker bridge in a real viewer: throttled, never re-entrant, cancellable, one toast."""

import time

import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager, show_error

from napari_mrmicro.widgets._worker import INTERVAL, JobCancelled, progress_worker

pytestmark = pytest.mark.gui


@pytest.fixture
def toasts(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield viewer, seen
    notification_manager.notification_ready.disconnect(seen.append)


def _flood(report, seconds=1.5, stop_on_cancel=True):
    """A fake long job: thousands of progress reports as fast as it can."""
    start, calls = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        report(elapsed / seconds, f"stage {int(4 * elapsed / seconds)}")
        calls += 1
    return calls


def _cancel(worker, qtbot) -> float:
    """Start, let it run a moment, cancel; the seconds until the worker finished."""
    worker.start()
    qtbot.wait(300)
    asked = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=1_000):
        worker.quit()
    return time.perf_counter() - asked


def test_flood_of_reports_is_throttled_and_never_reentrant(toasts, qtbot):
    viewer, seen = toasts
    worker = progress_worker(_flood, "flood")
    results = []
    worker.returned.connect(results.append)
    start = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=20_000):
        worker.start()
    elapsed = time.perf_counter() - start
    calls = results[0]
    assert calls > 5_000  # the job really reported thousands of times ...
    # ... and the bar moved at most ten times a second (plus the final one)
    assert 2 <= worker.bar.updates <= elapsed / INTERVAL + 2
    assert worker.bar.pbar is None  # closed
    assert not [n for n in seen if n.severity >= NotificationSeverity.WARNING]


def test_reentrant_update_is_deferred(toasts):
    viewer, _ = toasts
    worker = progress_worker(lambda report: None, "nested")
    bar = worker.bar
    applied = []
    original = bar._apply

    def apply(fraction, stage):  # as napari's processEvents would: a nested update
        applied.append(fraction)
        if len(applied) == 1:
            bar.show((0.9, "late"))
        original(fraction, stage)

    bar._apply = apply
    bar.show((0.5, "first"))
    assert applied == [0.5, 0.9]  # applied after the outer call, not inside it
    assert bar.pbar.n == 90
    bar.close()


def test_cancel_within_a_second_says_cancelled(toasts, qtbot):
    viewer, seen = toasts
    stopped = []

    def endless(report):
        try:
            while True:
                report(0.5, "iterating")
                time.sleep(0.01)
        except JobCancelled:
            stopped.append(time.perf_counter())
            raise

    worker = progress_worker(endless, "endless job")
    returned = []
    worker.returned.connect(returned.append)
    assert _cancel(worker, qtbot) < 1.0
    qtbot.waitUntil(lambda: bool(stopped), timeout=1_000)  # the job itself stopped too
    assert not returned
    assert [n.message for n in seen] == ["endless job: cancelled"]


def test_cancel_job_that_never_reports(toasts, qtbot):
    """A job that never reports: the GUI is free within a second all the same."""
    viewer, seen = toasts
    worker = progress_worker(lambda report: time.sleep(3), "silent job")
    assert _cancel(worker, qtbot) < 1.0
    assert "silent job: cancelled" in [n.message for n in seen]


def test_error_shows_one_toast(toasts, qtbot):
    viewer, seen = toasts

    def broken(report):
        report(0.2, "almost")
        raise ValueError("TE: must be positive")

    worker = progress_worker(broken, "broken job")
    worker.errored.connect(lambda e: show_error(f"Broken: {e}"))
    with qtbot.waitSignal(worker.finished, timeout=5_000):
        worker.start()
    qtbot.wait(100)
    errors = [n.message for n in seen if n.severity == NotificationSeverity.ERROR]
    assert errors == ["Broken: TE: must be positive"]
