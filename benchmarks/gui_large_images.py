"""A large image in the widget: how long the UI thread is held when it is shown, how big the overlay layers are,
and how long a repaint of the visible region takes when the camera rests elsewhere; the bundled 512x341 photo is
the baseline, measured in the same run, interleaved (N, B, N, B ...).

    python benchmarks/gui_large_images.py [--size 20000x20000] [--objects 20] [--repeats 3]

(where there is no display it re-runs itself under ``xvfb-run``). A synthetic JPEG (smooth gradients and discs,
``large_images.py``) and the photo are opened in napari with the widget docked in a 1600x1000 window, GrabCut as
the engine (no weights); ``--objects`` discs are accepted as objects first. Measured per image shown: the UI
thread's time in ``LayerSet.show_image`` (the worker has read the image and built its pyramid by then; each switch
here changes the kind of image, so the image layer is made anew both ways), the time from N/B to the picture, the
overlay layers' pixels, and for the large image the repaint of the overlays for a view at zoom 1 around an object
and at the fitted zoom. Peak RSS at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="12000x8000", help="WxH of the large image")
    p.add_argument("--objects", type=int, default=20, help="discs accepted as objects before measuring")
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs (large, photo)")
    args = p.parse_args(argv)
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") and not os.environ.get("_GUI_LARGE_XVFB"):
        env = {**os.environ, "_GUI_LARGE_XVFB": "1"}
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__,
                                *(argv if argv is not None else sys.argv[1:])], env=env)
    import cv2
    import napari
    from large_images import synthetic
    from qtpy.QtWidgets import QApplication

    from clicklabel.segment.grabcut import GrabCutEngine
    from clicklabel_napari._viewport import camera
    from clicklabel_napari._widget import ClickLabelWidget

    w_px, h_px = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        img, _, discs = synthetic(w_px, h_px, 200, 30, 90, labels=False)
        cv2.imwrite(str(folder / "a_large.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        del img
        shutil.copy(ROOT / "src" / "clicklabel" / "data" / "samples" / "coffee.jpg", folder / "b_photo.jpg")
        discs = discs[-60:]  # drawn last: whole

        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1600, 1000)
        widget = ClickLabelWidget(viewer, engine=GrabCutEngine(), auto_label=False)
        viewer.window.add_dock_widget(widget, name="clicklabel", area="right")
        app = QApplication.instance()
        layers = widget.layers
        held: list[float] = []
        show = layers.show_image

        def timed_show(*a, **k):
            t = time.perf_counter()
            show(*a, **k)
            held.append(1000 * (time.perf_counter() - t))

        layers.show_image = timed_show

        def wait(cond, limit=900.0):
            end = time.perf_counter() + limit
            while not cond():
                if time.perf_counter() > end:
                    raise TimeoutError("the widget did not answer")
                app.processEvents()
                time.sleep(0.002)

        def ready():
            s = widget.session
            return s is not None and s.image is not None and widget.nav.loading is None and \
                not widget.prompter.answering

        widget.open_folder(str(folder))
        wait(ready)
        s = widget.session
        for x, y, _ in discs[: args.objects]:
            s.add_point(x, y)
            s.accept()
        widget.annotate.refresh()

        def repaint(zoom) -> tuple[float, int]:
            x, y, _ = discs[int(np.random.default_rng(len(rows["large"]["show"])).integers(len(discs)))]
            if zoom is None:
                viewer.reset_view()
            else:
                camera(viewer).center, camera(viewer).zoom = (y, x), zoom
            t = time.perf_counter()
            layers.viewport.follow(force=True)
            ms = 1000 * (time.perf_counter() - t)
            return ms, sum(layer.data.size for layer in (layers.objects, layers.preview, layers.proposals))

        rows = {k: {"show": [], "to_picture": [], "repaint1": [], "repaint_fit": [], "px": []}
                for k in ("large", "photo")}
        for _ in range(args.repeats):
            for name, step in (("photo", +1), ("large", -1)):  # the large one is shown first: B, N, B, N ...
                t = time.perf_counter()
                widget.nav.go(step)
                wait(lambda name=name: layers.image.name == ("a_large" if name == "large" else "b_photo"))
                rows[name]["to_picture"].append(time.perf_counter() - t)
                rows[name]["show"].append(held[-1])
                wait(ready)
                if name == "large":
                    for key, zoom in (("repaint1", 1.0), ("repaint_fit", None)):
                        ms, px = repaint(zoom)
                        rows[name][key].append(ms)
                        rows[name]["px"].append(px)
                else:
                    rows[name]["px"].append(sum(layer.data.size for layer in (layers.objects, layers.preview,
                                                                                layers.proposals)))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        load = os.getloadavg()[0]
        viewer.close()

    def med(name, key):
        v = rows[name][key]
        return float(np.median(v)) if v else float("nan")

    print(f"{w_px}x{h_px} vs the 512x341 photo, {args.objects} objects on the large image, GrabCut, {os.cpu_count()} "
          f"CPUs, 1-min load at the end {load:.1f}; medians of {args.repeats} showings each, interleaved")
    print("| image | UI thread in show_image ms | N/B -> picture s | overlay layers Mpx | repaint at zoom 1 ms | "
          "repaint fitted ms |")
    print("|---|---|---|---|---|---|")
    for name, label in (("large", f"{w_px}x{h_px}"), ("photo", "512x341 (baseline)")):
        print(f"| {label} | {med(name, 'show'):.0f} | {med(name, 'to_picture'):.2f} | "
              f"{max(rows[name]['px']) / 1e6:.2f} | {med(name, 'repaint1'):.0f} | {med(name, 'repaint_fit'):.0f} |")
    print(f"large / photo: UI thread in show_image {med('large', 'show') / med('photo', 'show'):.2f}x, overlay "
          f"pixels {max(rows['large']['px']) / max(rows['photo']['px']):.2f}x (image pixels "
          f"{w_px * h_px / (512 * 341):.0f}x); peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
