"""How fast the annotator answers, measured in the real widget with real Qt input on napari's canvas.

    python benchmarks/gui_latency.py [--random-weights] [--image-size 1024x768] [--model vit_b]

(where there is no display it re-runs itself under ``xvfb-run``). Three images of the chosen size (the bundled
photos, resized) are opened in napari with the clicklabel widget docked in a 1280x800 window; labels come from the
tests' loopback chat-completions server. Measured, each from the input event to the end of the first canvas draw
that shows its result (a draw handler placed last, after ``glFinish``):

- click:  mouse press + release on the canvas -> the new mask drawn (every 5th mask is accepted, so objects pile up)
- drag:   each mouse move while a box is dragged (5 per box) -> the box drawn (its first paint)
- switch: key N or B (the other image's embedding cached) -> the new image drawn
- review: key A or X on a proposal (200 proposals on the image) -> the next one highlighted
- UI gap: the longest wait between ticks of a 10 ms Qt timer during all of the above, proposing included; the
  first image's embedding (computed in the GUI) is reported on its own line and left out.
- load engine: the longest UI gap while Load engine builds the same model again (in a worker) and the image is
  shown again with it.

Baselines in the same run: the decoder alone (``engine.predict`` at the same point right after each click,
interleaved, no GUI) and a canvas redraw with nothing changed. With ``--random-weights`` the masks are meaningless
and proposing keeps every candidate (thresholds off, NMS off, the first 200 kept): timings only. The last line reads
``click p50 <ms> p90 <ms> (decoder alone p90 <ms>); switch p50 <ms>; review p50 <ms>; drag first paint p50 <ms>;
max UI gap <ms>; load engine max gap <ms>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random-weights", action="store_true", help="a randomly initialised model (timings only)")
    p.add_argument("--model", default="vit_b", help="vit_b, vit_l, vit_h (or 'tiny': a small random SAM, for tests)")
    p.add_argument("--image-size", default="1024x768", help="WxH of the images")
    p.add_argument("--window", default="1280x800", help="WxH of napari's window")
    p.add_argument("--clicks", type=int, default=30)
    p.add_argument("--switches", type=int, default=12)
    p.add_argument("--reviews", type=int, default=30)
    p.add_argument("--drags", type=int, default=6, help="boxes dragged (5 mouse moves each)")
    p.add_argument("--proposals", type=int, default=200)
    p.add_argument("--pause", type=float, default=0.25, help="seconds between actions (an annotator's pace)")
    return p.parse_args(argv)


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def pct(values, q):
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def make_images(folder: Path, wh: tuple[int, int]) -> None:
    from PIL import Image

    for name in ("chelsea", "coffee", "rocket"):
        Image.open(ROOT / "src/clicklabel/data/samples" / f"{name}.jpg").convert("RGB").resize(wh).save(
            folder / f"{name}.jpg", quality=92)


def make_engine(args, tmp: Path):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.sam import SamEngine
    from clicklabel.weights import save_random_checkpoint

    cache = EmbeddingCache(tmp / "cache")
    if args.model == "tiny" or args.random_weights:
        arch = (64, 2, 2, (1,)) if args.model == "tiny" else args.model
        ck = save_random_checkpoint(tmp / "random.pth", arch, seed=0)
        return SamEngine("auto" if args.model == "tiny" else args.model, ck, device="cpu", cache=cache)
    return SamEngine(args.model, device="cpu", cache=cache, download=False)


def weights_file(args, tmp: Path) -> Path:
    """The checkpoint ``make_engine`` built the engine from."""
    from clicklabel.weights import checkpoint_path

    return tmp / "random.pth" if args.model == "tiny" or args.random_weights else checkpoint_path(args.model)


class Clock:
    """Draw starts and ends of napari's canvas, the moments the widget changed a layer, and a 10 ms tick."""

    def __init__(self, viewer, widget):
        from qtpy.QtCore import QTimer
        from vispy.gloo import gl

        self.gl = gl
        self.starts, self.ends, self.ticks = [], [], []
        self.marks: list[float] = []
        scene = viewer.window._qt_viewer.canvas._scene_canvas
        scene.events.draw.connect(lambda e: self.starts.append(time.perf_counter()), position="first")
        scene.events.draw.connect(self._end, position="last")
        self.timer = QTimer()
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start(10)
        self.renderer = None
        layers = widget.layers
        for name in ("show_preview", "show_image", "highlight"):
            self._wrap(layers, name)

    def _end(self, event):
        self.gl.glFinish()
        self.ends.append(time.perf_counter())
        if self.renderer is None:
            self.renderer = self.gl.glGetParameter(self.gl.GL_RENDERER)

    def _wrap(self, obj, name):
        fn = getattr(obj, name)

        def wrapped(*a, **k):
            out = fn(*a, **k)
            self.marks.append(time.perf_counter())
            return out

        setattr(obj, name, wrapped)

    def drawn_after(self, t: float) -> float | None:
        """End of the first draw that started after the first layer change after ``t``."""
        mark = next((m for m in self.marks if m >= t), None)
        if mark is None:
            return None
        for start, end in zip(self.starts, self.ends):
            if start >= mark:
                return end
        return None

    def gaps(self, t0: float, t1: float, after: float | None = None) -> list[float]:
        """Gaps (ms) between consecutive ticks in [t0, t1]; with ``after``, only those that end after it."""
        ticks = [t for t in self.ticks if t0 <= t <= t1]
        return [(b - a) * 1000 for a, b in zip(ticks, ticks[1:]) if after is None or b > after]


def main(argv=None) -> int:
    args = parse(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and shutil.which("xvfb-run"):
        os.execvp("xvfb-run", ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv])
    if args.model != "tiny" and not args.random_weights:
        from clicklabel.weights import checkpoint_path

        if not checkpoint_path(args.model).is_file():
            print(f"gui_latency: no {args.model} weights at {checkpoint_path(args.model)}; pass --random-weights "
                  "for timings only", file=sys.stderr)
            return 2
    import numpy as np
    from gui_input import click, key, move, press, pump, release

    import clicklabel_napari  # noqa: F401  (before any OpenGL context)
    from clicklabel.label import LabelCache, Labeler, LabelerConfig
    from clicklabel.segment.base import Prompt
    from clicklabel.segment.propose import ProposeSettings

    from lmm_server import FakeLMM

    tmp = Path(tempfile.mkdtemp(prefix="clicklabel-gui-bench-"))
    os.environ["CLICKLABEL_CACHE"] = str(tmp / "cache")
    iw, ih = size(args.image_size)
    folder = tmp / "images"
    folder.mkdir()
    make_images(folder, (iw, ih))
    engine = make_engine(args, tmp)
    from clicklabel.images import load_image

    images = sorted(folder.glob("*.jpg"))
    for p in images[1:]:  # the others' embeddings are cached first: "N with the next embedding cached"
        print(f"encoding {p.name} once ...", file=sys.stderr, flush=True)
        engine.prefetch(load_image(p))
    load = os.getloadavg()[0]

    import napari

    from clicklabel_napari._widget import ClickLabelWidget

    with FakeLMM(latency=0.05, answer=lambda body, img: {"label": "thing", "category": "thing",
                                                         "confidence": 0.5}) as lmm:
        viewer = napari.Viewer(title="clicklabel", show=True)
        viewer.window._qt_window.resize(*size(args.window))
        answers = LabelCache(tmp / "labels.sqlite")  # one cache, opened once, as the widget's own
        labeler = lambda: Labeler(LabelerConfig(base_url=lmm.url, api_key="local"), answers)  # noqa: E731
        w = ClickLabelWidget(viewer, engine=engine, labeler=labeler)
        viewer.window.add_dock_widget(w, name="clicklabel", area="right")
        pump(0.5)
        clock = Clock(viewer, w)
        def wait(cond, limit=600.0):
            end = time.perf_counter() + limit
            while not cond():
                if time.perf_counter() > end:
                    raise SystemExit("gui_latency: timed out waiting for the widget")
                pump(0.002)

        def idle():
            return (w.session is not None and w.session.image is not None and w.nav.loading is None
                    and not w.prompter.answering and not w.review.proposing and not w.bench.drawing_pending)

        def measure(action):
            """Run ``action`` (which sends the input), wait for its result on screen; ms from input to drawn."""
            wait(idle)
            pump(args.pause)
            t0 = time.perf_counter()
            action()
            wait(lambda: clock.drawn_after(t0) is not None and idle(), limit=120)
            return (clock.drawn_after(t0) - t0) * 1000

        t_first = time.perf_counter()
        w.open_folder(str(folder))
        wait(idle, limit=1800)
        first_embed = time.perf_counter() - t_first
        first_picture = (clock.drawn_after(t_first) or float("nan")) - t_first  # the image on screen, unencoded
        first_gaps = clock.gaps(t_first, time.perf_counter())
        pump(1.0)  # the next image's embedding is found cached
        windows = []  # the stretches whose UI gaps count: the GUI at work (not the baselines run in between)

        # a redraw with nothing changed (the floor of any answer on this machine)
        redraw = []
        scene = viewer.window._qt_viewer.canvas._scene_canvas
        for _ in range(10):
            pump(0.05)
            t0 = time.perf_counter()
            before = len(clock.ends)
            scene.update()
            wait(lambda before=before: len(clock.ends) > before)
            redraw.append((clock.ends[-1] - t0) * 1000)

        rng = np.random.default_rng(0)
        points = [(float(x), float(y)) for x, y in zip(rng.uniform(0.1, 0.9, args.clicks) * iw,
                                                       rng.uniform(0.1, 0.9, args.clicks) * ih)]
        clicks, boxes, decoder = [], [], []
        t_a = time.perf_counter()
        for n, (x, y) in enumerate(points):
            if w.session.state.preview is not None:
                key(viewer, "Return" if n % 5 == 0 else "Escape")
            clicks.append(measure(lambda x=x, y=y: click(viewer, x, y)))
            pv = w.session.state.preview
            boxes.append(0 if pv is None or pv.bbox is None else pv.bbox[2] * pv.bbox[3])
            t0 = time.perf_counter()  # the baseline, interleaved (ABAB): the same prompt, the decoder alone
            r = engine.predict(Prompt.make([(x, y)]), multimask=True)
            r[0].bbox  # noqa: B018
            decoder.append((time.perf_counter() - t0) * 1000)
        key(viewer, "Escape")
        wait(idle)
        windows.append(("clicks", t_a, time.perf_counter(), None))
        drags = []  # a box dragged: each mouse move -> the band drawn
        t_a = time.perf_counter()
        for n in range(args.drags):
            x0, y0 = points[n % len(points)]
            x1, y1 = min(iw - 1, x0 + 0.25 * iw), min(ih - 1, y0 + 0.25 * ih)
            wait(idle)
            pump(args.pause)
            press(viewer, x0, y0)
            for step in range(1, 6):
                t0 = time.perf_counter()
                before = len(clock.ends)
                move(viewer, x0 + (x1 - x0) * step / 5, y0 + (y1 - y0) * step / 5)
                wait(lambda before=before: len(clock.ends) > before, limit=30)
                drags.append((clock.ends[before] - t0) * 1000)
                pump(0.03)  # a hand's pace between moves
            release(viewer, x1, y1)
            wait(idle)
            key(viewer, "Escape")
        windows.append(("drags", t_a, time.perf_counter(), None))

        switches = []
        t_a = time.perf_counter()
        order = ["n", "n", "b", "b"]
        for n in range(args.switches):
            switches.append(measure(lambda k=order[n % 4]: key(viewer, k)))

        wait(idle)
        windows.append(("switches", t_a, time.perf_counter(), None))
        if args.random_weights or args.model == "tiny":  # keep every candidate; 3 per grid point
            grid = int(np.ceil(np.sqrt(args.proposals / 3))) + 1
            w.review.settings = ProposeSettings(grid=grid, pred_iou_thresh=0.0, stability_thresh=0.0,
                                                 nms_thresh=1.0, max_proposals=args.proposals)
        else:
            w.review.settings = ProposeSettings(max_proposals=args.proposals)
        t0 = t_a = time.perf_counter()
        key(viewer, "p")
        wait(lambda: w.review.reviewing or (not w.review.proposing and idle()), limit=1800)
        propose_s = time.perf_counter() - t0
        t_review = time.perf_counter()
        offered = len(w.review.proposed)
        reviews = []
        for n in range(min(args.reviews, max(0, offered - 1))):
            reviews.append(measure(lambda k="ax"[n % 2]: key(viewer, k)))
        wait(idle)
        pump(0.5)
        # proposing and review are one stretch; a gap counts in the phase where it ends
        windows += [("proposing", t_a, t_review, None), ("review", t_a, time.perf_counter(), t_review)]
        chooser = w.project.engine  # Load engine: the same weights again, built in a worker, the image re-shown
        chooser.checkpoint.value = str(weights_file(args, tmp))
        t_a = time.perf_counter()
        chooser.load_btn.native.click()
        wait(lambda: not chooser.loading and idle(), limit=600)
        load_s = time.perf_counter() - t_a
        windows.append(("load engine", t_a, time.perf_counter(), None))
        phase_gaps = {name: clock.gaps(a, b, after) for name, a, b, after in windows}
        gaps = [g for v in phase_gaps.values() for g in v]
        renderer = clock.renderer
        from superqt.utils._qthreading import WorkerBase

        WorkerBase.await_workers(msecs=600_000)  # the next image's embedding, computed ahead, ends first
        viewer.close()

    import torch

    random = args.random_weights or args.model == "tiny"
    model = f"{args.model}, {'RANDOM WEIGHTS (timings only)' if random else 'official weights'}"
    print(f"clicklabel GUI latency: {platform.machine()}, {os.cpu_count()} CPUs (load {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end), torch {torch.__version__} on {engine.device} "
          f"({torch.get_num_threads()} threads); {model}; images {iw}x{ih}; window {args.window}; GL: {renderer}")
    rows = [
        ("click -> mask drawn", clicks),
        ("  baseline: decoder alone, same points", decoder),
        ("drag: mouse move -> box drawn (first paint)", drags),
        ("switch: N/B -> image drawn (embedding cached)", switches),
        (f"review: A/X -> next of {offered} highlighted", reviews),
        ("  baseline: canvas redraw, nothing changed", redraw),
        ("UI gap (10 ms timer): clicks, switches, proposing, review", gaps),
        *((f"  of which {name}", v) for name, v in phase_gaps.items()),
    ]
    print("| measure | n | p50 ms | p90 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, v in rows:
        print(f"| {name} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 90):.1f} | {max(v, default=float('nan')):.1f} |")
    ratio = pct(clicks, 50) / pct(decoder, 50)
    print(f"| click p50 / decoder p50 | | {ratio:.2f}x | | |")
    print(f"| mask box, mean pixels (of {iw * ih}) | {len(boxes)} | {np.mean(boxes):.0f} | | |")
    print(f"| first image: picture on screen after open (not encoded yet), s | 1 | {first_picture:.2f} | | |")
    print(f"| first image: embedding in the GUI, s | 1 | {first_embed:.1f} | | |")
    print(f"| UI gap during that embedding (left out above) | {len(first_gaps)} | {pct(first_gaps, 50):.1f} | "
          f"{pct(first_gaps, 90):.1f} | {max(first_gaps, default=float('nan')):.1f} |")
    print(f"| proposing {offered} (in the background), s | 1 | {propose_s:.1f} | | |")
    print(f"| Load engine (in a worker, image shown again), s | 1 | {load_s:.1f} | | |")
    print(f"click p50 {pct(clicks, 50):.0f} ms p90 {pct(clicks, 90):.0f} ms (decoder alone p90 {pct(decoder, 90):.0f} "
          f"ms); switch p50 {pct(switches, 50):.0f} ms; review p50 {pct(reviews, 50):.0f} ms; drag first paint p50 "
          f"{pct(drags, 50):.0f} ms; max UI gap {max(gaps, default=float('nan')):.0f} ms; load engine max gap "
          f"{max(phase_gaps['load engine'], default=float('nan')):.0f} ms")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
