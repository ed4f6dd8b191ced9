"""Make docs/screenshot.png: the sample molar in napari (run under Xvfb: xvfb-run -a)."""

import sys
from pathlib import Path

import napari


def main(out=Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"):
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 750)
    image, labels = viewer.open_sample("napari-mrmicro", "molar")
    labels.visible = True
    labels.contour = 1
    labels.opacity = 0.7
    viewer.dims.order = (1, 0, 2)  # a section through both roots: y-plane, z up
    viewer.dims.set_point(1, 64 * image.scale[1])
    overlays = viewer.canvas.overlays if hasattr(viewer, "canvas") else viewer  # napari 0.9
    overlays.scale_bar.visible = True
    viewer.reset_view()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(out)


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
