"""Fixtures every dock test may use."""

import logging
import sys
import threading

import pytest
from dock_checks import Notices


@pytest.fixture
def logged(caplog):
    """What a dock leaves in the logs while the test runs: error toasts, exceptions that
    reached ``sys.excepthook`` or ``threading.excepthook`` (GUI or worker thread), and
    ERROR log records. Yields the :class:`~dock_checks.Notices`; at teardown the test fails
    if any of them was logged."""
    notices, uncaught = Notices(), []
    hooks = sys.excepthook, threading.excepthook
    sys.excepthook = lambda kind, error, trace: uncaught.append(error)
    threading.excepthook = lambda args: uncaught.append(args.exc_value)
    try:
        yield notices
    finally:
        notices.close()
        sys.excepthook, threading.excepthook = hooks
    records = [r.getMessage() for when in ("setup", "call")
               for r in caplog.get_records(when) if r.levelno >= logging.ERROR]
    assert (notices.errors, uncaught, records) == ([], [], []), "the dock logged errors"
