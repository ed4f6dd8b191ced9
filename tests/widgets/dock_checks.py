"""Checks every dock test shares: inputs explained, errors counted, screenshots kept."""

import time
from pathlib import Path

from magicgui.widgets import Container, PushButton
from magicgui.widgets.bases import ValueWidget
from napari.utils.notifications import NotificationSeverity, notification_manager

#: Screenshots of the docks, for a person to look at.
SHOTS = Path("/tmp/mrmicro-docks")


def untipped(container: Container) -> list[str]:
    """Labels of the inputs (value widgets, not buttons) of a dock that have no tooltip."""
    missing = []
    for widget in container:
        if isinstance(widget, Container):
            missing += untipped(widget)
        elif isinstance(widget, ValueWidget) and not isinstance(widget, PushButton) \
                and widget.enabled is not None and widget.widget_type != "Label" \
                and not (widget.tooltip or "").strip():
            missing.append(widget.label or widget.name or type(widget).__name__)
    return missing


class Notices:
    """Every napari notification shown while the test runs."""

    def __init__(self):
        self.seen = []
        notification_manager.notification_ready.connect(self.seen.append)

    def close(self):
        notification_manager.notification_ready.disconnect(self.seen.append)

    @property
    def errors(self) -> list[str]:
        return [n.message for n in self.seen if n.severity >= NotificationSeverity.ERROR]

    @property
    def messages(self) -> list[str]:
        return [n.message for n in self.seen]


def screenshot(viewer, name: str):
    """The whole window (docks included) as a PNG under SHOTS; returns the image."""
    SHOTS.mkdir(exist_ok=True)
    return viewer.screenshot(str(SHOTS / f"{name}.png"), canvas_only=False, flash=False)


def wait_for_job(qtbot, dock, worker, timeout: int = 120_000) -> None:
    """Wait until ``dock``'s job ``worker`` has finished and its results are in. A small
    job can finish before a ``waitSignal`` connects (a race lost under load): this waits
    for the dock's own slot (JobDock._finished, connected before the start)."""
    assert worker is not None and dock.worker is worker
    qtbot.waitUntil(lambda: dock.worker is None, timeout=timeout)


def cancel_within_a_second(qtbot, dock, worker) -> None:
    """Let ``dock``'s ``worker`` run a moment, cancel it and check that it stopped within a
    second (then let its last signals arrive)."""
    qtbot.wait(300)
    start = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=5_000):
        dock.cancel()
    assert time.perf_counter() - start < 1.0
    qtbot.wait(200)
