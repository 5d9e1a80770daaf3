"""Make ``docs/napari-screenshot.png``: napari with the ZERO-IG widget docked after a short fit,
the input and its enhanced and denoised results side by side.

Needs a display; headless, run it under Xvfb from the repository root::

    xvfb-run -a .venv/bin/python docs/make_screenshot.py [--steps 100] [--sample dark_photo]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_zeroig._widget import PLUGIN_NAME, WIDGET_NAME

SCREENSHOT = Path(__file__).resolve().parent / "napari-screenshot.png"
WINDOW_SIZE = (1500, 760)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="fitting steps (default 100)")
    parser.add_argument("--sample", default="dark_photo", choices=["dark_photo", "fluorescence"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=SCREENSHOT)
    args = parser.parse_args()

    viewer = napari.Viewer(title="napari + ZERO-IG", show=True)
    viewer.window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN_NAME, args.sample)
    source = viewer.layers[-1]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    widget.select_layer(source)
    widget["steps"].value = args.steps
    widget["device"].value = args.device
    widget["output"].value = "both"

    started = time.perf_counter()
    widget.run()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.02)
    print(f"{args.steps} steps on {widget['runs_on'].value}: {time.perf_counter() - started:.1f} s")
    if len(viewer.layers) != 3:
        raise SystemExit(f"the run added no layers: {widget['status'].value}")

    viewer.grid.enabled = True
    viewer.grid.shape = (1, 3)
    viewer.layers.selection.active = viewer.layers[-2]
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(args.output), canvas_only=False, flash=False)
    print(f"wrote {args.output}")
    viewer.close()


if __name__ == "__main__":
    main()
