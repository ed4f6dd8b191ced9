"""All nine docks as napari docks them from the manifest: they scroll and fit a 900 px screen."""

import pytest
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_mrmicro.widgets._dock import ScrollingDock

pytestmark = pytest.mark.gui

DOCKS = ("MR Simulation", "MR Reconstruction", "QSM", "Relaxometry", "T1 mapping",
         "Diffusion tensor", "Morphometry", "Register", "Dual-mode particles")


def test_every_dock_scrolls_and_fits_900_px(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    docked = {}
    for name in DOCKS:
        dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-mrmicro", name,
                                                                  tabify=False)
        assert isinstance(widget, ScrollingDock) and isinstance(widget, QScrollArea), name
        docked[name] = widget
    window.resize(1440, 900)
    for _ in range(5):
        QApplication.processEvents()
    # the window could shrink to 900 px with all nine docks open on one side
    assert window.height() <= 900, window.height()
    for name, widget in docked.items():
        inner = widget.widget().sizeHint().height()
        assert widget.minimumSizeHint().height() <= 100, name
        if inner > widget.viewport().height():  # taller than shown: a scroll bar reaches it
            assert widget.verticalScrollBar().maximum() > 0, name
    # the Simulate button of the tallest dock can be scrolled into view
    simulation = docked["MR Simulation"]
    simulation.ensureWidgetVisible(simulation.dock.run_button.native)
    QApplication.processEvents()
    button = simulation.dock.run_button.native
    top = button.mapTo(simulation.viewport(), button.rect().topLeft()).y()
    assert 0 <= top <= simulation.viewport().height()
    shot = viewer.screenshot(str(tmp_path / "docks.png"), canvas_only=False, flash=False)
    assert shot.shape[0] <= 900
    for name, widget in docked.items():  # no dock is cut on the right
        assert widget.widget().width() <= widget.viewport().width(), name


@pytest.mark.parametrize("module, cls", [("simulation", "SimulationWidget"),
                                         ("reconstruction", "ReconstructionWidget"),
                                         ("morphometry", "MorphometryWidget"),
                                         ("register", "RegisterWidget"), ("qsm", "QSMWidget"),
                                         ("relaxometry", "RelaxometryWidget"),
                                         ("t1_mapping", "T1MappingWidget"),
                                         ("diffusion", "DiffusionWidget"),
                                         ("particles", "ParticlesWidget")])
def test_every_input_has_a_tooltip(make_napari_viewer, module, cls):
    import importlib

    from dock_checks import untipped

    viewer = make_napari_viewer()
    dock = getattr(importlib.import_module(f"napari_mrmicro.widgets.{module}"), cls)(viewer)
    assert untipped(dock) == []


def test_docks_leave_a_laptop_its_canvas_and_cut_no_label(make_napari_viewer):
    """On a 1366 px screen each dock leaves the canvas most of the width, whatever the
    length of the layer names its pickers list, and shows every row label whole."""
    import numpy as np
    from qtpy.QtWidgets import QLabel

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 740)
    viewer.add_image(np.zeros((4, 8, 8), np.float32),
                     name="EPI_trig_TE6p5 (E7) recon magnitude of a rather long scan name")
    for name in DOCKS:
        dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-mrmicro", name)
        for _ in range(5):
            QApplication.processEvents()
        assert dock_widget.width() <= 560, (name, dock_widget.width())
        for label in widget.widget().findChildren(QLabel):
            plain = label.text() and "<" not in label.text()  # rich text renders narrower
            if label.isVisible() and plain and not label.wordWrap():
                text = label.fontMetrics().horizontalAdvance(label.text())
                assert label.width() >= text, (name, label.text(), label.width(), text)
        viewer.window.remove_dock_widget(dock_widget)
