"""The canvas part of the Annotate panel: prompts from the mouse (or the prompt layers), answered off the UI
thread, and accepting.

A prompt is planned in the UI thread (``session.plan``), answered in the decoder thread (the engine; the mask's box
and crop too; one long-lived thread, see ``_workers.DecodeThread``), and applied back in the UI thread
(``session.commit``), which drops answers the annotator has moved past. One answer is computed at a time: prompts
arriving meanwhile are merged into the next one (the latest wins). A press starts answering at once, as if it
were a click (most are): the release confirms it, a drag replaces it, and the box being dragged is drawn at every
mouse move. A click's point is drawn together with its mask (one canvas draw, not two), or after
``POINT_DELAY_MS`` if the answer is slower than that (GrabCut, a busy CPU).

The review panel is asked, by name, which proposal a click corrects and is told when a corrected one is accepted;
everything else here is this part's own state."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer

from clicklabel.annotate import polygon_mask
from clicklabel.errors import ClickLabelError
from clicklabel.segment.base import Prompt

from ._lean import PaintHold, skip_picking
from ._paint import result_crop
from ._tiles import TilePrefetch
from ._workers import DecodeThread

POINT_DELAY_MS = 250
DRAG_PX = 4  # a press that moves further than this (screen pixels) is a box
BAND_PX = 2.0  # the width of the box being dragged, in screen pixels


def _answer(job):
    """Decoder thread: the engine's answer, and the crop of the mask to draw."""
    job.run()
    return job, result_crop(job.candidates[0])


class Prompter(QObject):
    """Clicks and boxes on the canvas -> the session's preview; Enter, Esc, M, G. ``review`` is the review panel."""

    def __init__(self, bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.review = None  # set by the widget: the review panel
        self._job = None  # the prompt being answered in a worker
        self._then_accept = False  # Enter came while an answer was on its way
        self._dragging = False  # a box is being dragged
        self._syncing = False
        self._prompt = Prompt()  # what the annotator asked for; the prompt layers show it
        self._decoder = DecodeThread(self)
        self._after_answer: list = []  # background results held while a click is answered (``hold_for_answer``)
        self.tiles = TilePrefetch(bench)  # a large image's tiles: encoded ahead around the clicks
        skip_picking(bench.viewer.window._qt_viewer.canvas)
        self._status_hold = PaintHold.status_bar(bench.viewer, POINT_DELAY_MS)  # repainted with the answer

    @property
    def answering(self) -> bool:
        return self._job is not None

    @property
    def layers(self):
        return self.bench.layers

    def say(self, text: str) -> None:
        self.bench.say(text)

    def _why_no_click(self, viewer) -> str | None:
        """One sentence when a click on the canvas cannot be a prompt, else None."""
        s = self.bench.session
        if s is None:
            return "Open a folder of images first (Project tab)."
        why = self.bench.locked(prompts=True)
        if why:
            return why
        if s.image is None:
            return "No image is shown: press N, or open a folder in the Project tab."
        active = viewer.layers.selection.active
        mode = str(getattr(active, "mode", "pan_zoom"))
        if active is None or mode == "pan_zoom" or active in (self.layers.prompts, self.layers.box):
            return None
        if active is self.layers.manual:
            return (f"You are drawing on '{active.name}' ({mode} mode): G accepts the shape; select pan/zoom on "
                    "that layer to click objects again.")
        if active is self.layers.objects and mode in ("paint", "erase", "fill"):
            return (f"You are painting on '{active.name}' ({mode} mode): each stroke changes that object's mask in "
                    "the project (Ctrl+Z undoes); select pan/zoom on that layer to click objects again.")
        return (f"The click went to the {mode} tool of layer '{active.name}': choose pan/zoom for that layer, or "
                "select the image layer, to click objects.")

    # -- the mouse -----------------------------------------------------------------------------------------------
    def on_mouse(self, viewer, event):
        """Click = point (right button or Shift = negative), drag = box; whichever layer is selected."""
        if event.button not in (1, 2):
            return
        why = self._why_no_click(viewer)
        if why:
            if event.button == 1:
                self.say(why)
            return
        image = self.layers.image
        start = np.asarray(image.world_to_data(event.position))[-2:]
        positive = event.button == 1 and "Shift" not in event.modifiers
        h, w = self.bench.session.image.shape[:2]
        inside = 0 <= start[1] < w and 0 <= start[0] < h
        if self._job is None and inside:  # most presses are clicks: start now
            self._ask(self._prompt.add_point(start[1], start[0], positive))
        pan, viewer.camera.mouse_pan = viewer.camera.mouse_pan, False
        yield
        dragged, cur = False, start
        width = BAND_PX / max(viewer.camera.zoom, 1e-6)  # the band's width on screen, whatever the zoom
        while event.type == "mouse_move":
            cur = np.asarray(image.world_to_data(event.position))[-2:]
            if event.button == 1 and (dragged or np.abs(cur - start).max() * viewer.camera.zoom > DRAG_PX):
                self._dragging = dragged = True  # the press's answer (a click's mask) is not shown any more
                self._syncing = True
                self.layers.show_box_prompt(start, cur, width)  # the rubber band, at every move
                self._syncing = False
            yield
        viewer.camera.mouse_pan = pan
        self._dragging = False
        if dragged:
            (y0, x0), (y1, x1) = start, cur
            box = (max(0.0, min(x0, x1)), max(0.0, min(y0, y1)), min(float(w), max(x0, x1)),
                   min(float(h), max(y0, y1)))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                self.say("That box lies outside the image: drag a box around an object inside it.")
                return
            self._prompt = Prompt(self._prompt.points, self._prompt.labels, box)
            self._prompt_changed()
            return
        y, x = start
        if inside:
            self.add_point(x, y, positive)
        else:
            self.say(f"That click ({x:.0f}, {y:.0f}) is outside the {w}x{h} image.")

    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        self._prompt = self._prompt.add_point(x, y, positive)
        self._prompt_changed(draw_now=False)

    def current_prompt(self) -> Prompt:
        """The prompt: points with their sign, and at most one box."""
        return self._prompt

    def _prompt_from_layers(self) -> Prompt:
        pts = self.layers.prompts
        data = np.asarray(pts.data)
        pos = np.asarray(pts.features["positive"], dtype=bool) if len(data) else np.zeros(0, bool)
        box = None
        if len(self.layers.box.data):
            r = np.asarray(self.layers.box.data[-1])
            box = (r[:, 1].min(), r[:, 0].min(), r[:, 1].max(), r[:, 0].max())
        return Prompt.make([(p[1], p[0]) for p in data], [int(v) for v in pos], box)

    def layer_prompt_changed(self, event=None) -> None:
        """Points or a box edited on the layers directly (napari's own tools, scripts, tests)."""
        if self._syncing or getattr(event, "action", None) in ("adding", "removing", "changing"):
            return
        self._prompt = self._prompt_from_layers()
        self._prompt_changed()

    def _draw_prompt(self) -> None:
        """Show the prompt's points on the prompt layer (the box is drawn while it is dragged)."""
        pts = self.layers.prompts
        if pts is None:  # the viewer closed meanwhile
            return
        p = self._prompt
        rc = np.array([[y, x] for x, y in p.points], dtype=float).reshape(-1, 2)
        if len(rc) == len(pts.data) and np.array_equal(rc, pts.data):
            return
        self._syncing = True
        self.layers.set_points(rc, np.array(p.labels, dtype=bool))
        self._syncing = False

    # -- answers -------------------------------------------------------------------------------------------------
    def _prompt_changed(self, draw_now: bool = True) -> None:
        if self._syncing or not self.bench.ready():
            return
        if draw_now:
            self._draw_prompt()
        else:
            QTimer.singleShot(POINT_DELAY_MS, self._draw_prompt)  # unless the answer draws it first
        if self._job is None:
            self._ask(self._prompt)
        # else: the answer on its way is checked against the prompt when it is back

    def _ask(self, prompt: Prompt) -> None:
        """Answer ``prompt`` in a worker (one at a time)."""
        if prompt.empty:
            self.layers.show_preview(None)
            return
        session = self.bench.session
        target = self.review.correction_target() if self.review is not None else None
        if target is not None and (session.state.proposal is None or session.state.proposal.id != target.id):
            session.correct(target.id)  # a click in review mode corrects the highlighted proposal
        try:
            job = session.plan(prompt)
        except ClickLabelError as exc:
            self.say(str(exc))
            return
        self._job = job
        self._status_hold.hold()
        self._decoder.submit(_answer, job, self._answered, self._answer_failed)

    def hold_for_answer(self, fn) -> bool:
        """While a click is being answered, keep ``fn`` (a background result's redraw) until that answer is on
        screen, so that the click's mask is drawn first: True if held."""
        if self._job is None:
            return False
        self._after_answer.append(fn)
        return True

    def _answered(self, result) -> None:
        try:
            self._apply_answer(result)
        finally:
            if self._job is None:  # not asked again for a newer prompt
                self._answer_done(self.bench.after_draw)

    def _answer_done(self, then) -> None:
        """No answer on its way any more: the status bar repaints (with the answer's frame), and the results held
        meanwhile go to ``then`` (after that frame, or at once when there is nothing to draw)."""
        self._status_hold.release()
        held, self._after_answer = self._after_answer, []
        for fn in held:
            then(fn)

    def _apply_answer(self, result) -> None:
        job, crop = result
        self._job = None
        session = self.bench.session
        if session is None or not self.bench.ready():
            return
        latest = self._prompt
        if self._dragging:  # the press became a drag: its box is asked for at the release
            return
        if job.prompt != latest:  # the prompt changed meanwhile, or the press became a drag: answer the latest
            n = len(job.prompt.points)
            if latest.points[:n] == job.prompt.points and latest.labels[:n] == job.prompt.labels and \
                    job.prompt.box in (None, latest.box):
                session.commit(job)  # a step on the way: the next answer refines it
            self._ask(latest)
            return
        if session.commit(job) is None:
            return
        self._draw_prompt()
        self.layers.show_preview(crop)
        self._say_preview()
        p = job.prompt
        self.tiles.around(*(p.points[-1] if p.points else ((p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2)))
        if self._then_accept:
            self._then_accept = False
            self.accept()

    def _answer_failed(self, exc) -> None:
        self._job, self._then_accept = None, False
        self.say(f"no mask: {exc}")
        self._answer_done(lambda fn: fn())

    def _say_preview(self) -> None:
        st = self.bench.session.state
        pv = st.preview
        if pv is None:
            return
        if pv.empty:
            self.say("Empty mask: click inside the object, or drag a box around it.")
            return
        n = len(st.candidates)
        which = f" (mask {st.shown + 1} of {n}: M shows the next)" if n > 1 else ""
        what = f"proposal #{st.proposal.id} corrected" if st.proposal is not None else "mask"
        self.say(f"{what}: score {pv.score:.3f}, box {pv.bbox}{which}. Enter accepts, Esc clears.")

    def cycle(self) -> None:
        if not self.bench.ready():
            self.say("No mask to cycle: open an image first.")
            return
        st = self.bench.session.state
        if len(st.candidates) < 2:
            self.say("Only one mask here: M cycles SAM's three masks after a single click (not for a box, "
                     "several points or GrabCut)." if st.candidates else "No mask yet: click an object first.")
            return
        self.bench.session.cycle()
        self.layers.show_preview(result_crop(st.preview))
        self._say_preview()

    def clear(self) -> None:
        session = self.bench.session
        if session is None:
            self.say("Nothing to clear.")
            return
        if self.review is not None and self.review.leave_step():
            return
        had = not self._prompt.empty or session.state.preview is not None
        session.clear()
        self.clear_prompt()
        self.say("Cleared: click an object, or drag a box around it." if had else "Nothing to clear: click an object.")

    def clear_prompt(self) -> None:
        """Forget the prompt and empty the prompt and preview layers."""
        self._prompt = Prompt()
        self._syncing = True
        self.layers.clear_points()
        if len(self.layers.box.data):
            self.layers.box.data = []
        self._syncing = False
        self.layers.show_preview(None)

    # -- accepting -----------------------------------------------------------------------------------------------
    def accept(self) -> int | None:
        """Enter: accept the mask shown (in review mode: the highlighted proposal, corrected or not)."""
        if not self.bench.ready():
            self.say("Nothing to accept: no image is ready yet.")
            return None
        if self._job is not None:
            self._then_accept = True
            self.say("Accepting as soon as the mask for the last prompt is ready ...")
            return None
        session = self.bench.session
        if session.state.proposal is None and session.state.preview is None and self.review is not None \
                and self.review.reviewing:
            return self.review.decide(True)
        correcting = session.state.proposal
        try:
            oid = session.accept()
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        self.clear_prompt()
        if correcting is not None:
            self.review.after_decision(oid, accepted=True)
        else:
            self.bench.changed.emit()
            self.say(f"Object #{oid} accepted: click the next object.")
        self.bench.accepted.emit([oid], False)
        return oid

    def accept_manual(self) -> int | None:
        """G: accept the last box or polygon drawn by hand on the manual layer (no SAM)."""
        layer = self.layers.manual if self.bench.ready() else None
        if layer is None or not len(layer.data):
            self.say("Nothing drawn: draw a rectangle or polygon on the 'clicklabel manual' layer, then press G.")
            return None
        verts = np.asarray(layer.data[-1])
        session = self.bench.session
        mask = polygon_mask(verts[:, ::-1], session.image.shape[:2])
        try:
            oid = session.accept_manual(mask, vertices=len(verts))
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        layer.data = []
        self.bench.changed.emit()
        self.say(f"Drawn object #{oid} accepted.")
        self.bench.accepted.emit([oid], False)
        return oid
