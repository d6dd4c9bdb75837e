"""The Annotate panel: moving between images, the prompt's actions (accept, clear, M, G, undo, redo), and the table
of the image's objects (type over a label, delete, go to one). The canvas part (clicks, boxes, answers) is its
``Prompter``. Strokes of napari's brush, eraser or fill on the objects layer change the objects' masks in the
project, undoably: what the layer shows is what is stored."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import PushButton
from qtpy.QtCore import QTimer

from clicklabel.errors import ClickLabelError

from ._boxes import object_text
from ._controls import buttons, page, row
from ._prompting import Prompter
from ._table import ObjectsTable, status_cell


def _painted(atom):
    """(values before, values after) of one history atom of napari's Labels (either of its two forms)."""
    if hasattr(atom, "new_value"):  # a masked edit: a bounding box, the pixels changed in it, one new value
        return np.unique(atom.old_values), np.array([atom.new_value])
    _, before, after = atom
    return np.unique(before), np.unique(after)


def _beyond_window(ob, shown: np.ndarray, frame) -> np.ndarray:
    """The full-size mask of a stroke on a large image's objects layer at full resolution (``frame.step`` 1): what the
    layer shows inside its region, the object's stored mask (``ob``; None for a new one) outside it."""
    mask = ob.mask if ob is not None else np.zeros(frame.image_shape, bool)
    x0, y0, x1, y1 = frame.box
    mask[y0:y1, x0:x1] = shown
    return mask


class AnnotatePanel:
    """Owns the objects table and the prompter; draws the current image's objects."""

    def __init__(self, bench, navigator):
        self.bench, self.nav = bench, navigator
        self.prompter = Prompter(bench)
        self._painting = False  # our own writes to the objects layer are not strokes
        b = self.buttons = {
            "prev": PushButton(text="< Prev (B)"), "next": PushButton(text="Next (N) >"),
            "done": PushButton(text="Done (D)"), "accept": PushButton(text="Accept (Enter)"),
            "clear": PushButton(text="Clear (Esc)"), "cycle": PushButton(text="Mask (M)"),
            "manual": PushButton(text="Accept drawn (G)"), "undo": PushButton(text="Undo"),
            "redo": PushButton(text="Redo"), "delete": PushButton(text="Delete selected"),
            "jump": PushButton(text="Go to selected")}
        self.table = ObjectsTable(["id", "label", "status", "conf.", "by"])
        self.table.relabelled.connect(self.relabel)
        self.page = page(row(b["prev"], b["next"], b["done"]), row(b["accept"], b["clear"], b["cycle"]),
                         row(b["manual"], b["undo"], b["redo"]), self.table, row(b["delete"], b["jump"]))
        p = self.prompter
        buttons(bench, [(b["prev"], lambda: navigator.go(-1)), (b["next"], lambda: navigator.go(+1)),
                        (b["done"], navigator.image_done), (b["accept"], p.accept), (b["clear"], p.clear),
                        (b["cycle"], p.cycle), (b["manual"], p.accept_manual), (b["undo"], self.undo),
                        (b["redo"], self.redo), (b["delete"], self.delete_selected),
                        (b["jump"], self.jump_to_selected)])
        bench.changed.connect(self.refresh)
        navigator.opened.connect(lambda op: self.refresh())
        self._focus: tuple[int, str | None] | None = None  # an object to select once its image is shown
        bench.shown.connect(self._shown)

    def say(self, text: str) -> None:
        self.bench.say(text)

    # -- the image's objects -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the current image's objects, the table and the counter from the store."""
        s = self.bench.session
        if s is None or s.image is None:
            return
        obs = s.objects()
        votes = s.suggestions()
        self._painting = True
        try:
            self.bench.layers.show_objects(obs, s.image.shape[:2], votes)
        finally:
            self._painting = False
        self.table.fill([(ob, [status_cell(ob, votes.get(ob.id)), f"{ob.label_confidence:.2f}"
                               if ob.label_confidence is not None else "", ob.provenance]) for ob in obs])
        counts = [f"{n} {k}" for k in ("pending", "failed")
                  if (n := sum(1 for ob in obs if ob.label_status == k))]
        self.bench.count("objects", f"objects here: {len(obs)}" + (f" (labels: {', '.join(counts)})" if counts
                                                                   else ""))

    def object_texts(self) -> list[str]:
        """What the boxes say now (for tests and screenshots)."""
        s = self.bench.session
        if s is None:
            return []
        votes = s.suggestions()
        return [object_text(o, votes.get(o.id)) for o in s.objects()]

    def relabel(self, object_id: int, label: str) -> None:
        try:
            self.bench.session.relabel(object_id, label)
            self.say(f"#{object_id} is now '{label.strip()}'.")
        except ClickLabelError as exc:
            self.say(str(exc))
        self.bench.changed.emit()

    def delete_selected(self) -> None:
        ids = self.table.selected_ids()
        for oid in ids:
            self.bench.session.delete(oid)
        self.bench.changed.emit()
        self.say(f"Deleted {', '.join(f'#{i}' for i in ids)} (Ctrl+Z undoes)." if ids else
                 "Select rows in the table first.")

    def jump_to_selected(self) -> None:
        ids = self.table.selected_ids()
        if not ids:
            self.say("Select a row in the table first.")
            return
        self.jump_to(ids[0])

    def jump_to(self, object_id: int) -> None:
        """Bring the object into view."""
        x, y, w, h = self.bench.session.object(object_id).bbox
        viewer = self.bench.viewer
        viewer.camera.center = (y + h / 2, x + w / 2)
        viewer.camera.zoom = max(0.1, 0.5 * min(viewer.canvas.size) / max(w, h, 1))

    def go_to_object(self, image_index: int, object_id: int, note: str | None = None) -> None:
        """Open the object's image if needed, then select it in the table and bring it into view."""
        if image_index != self.bench.session.index or self.nav.loading is not None:
            self._focus = (object_id, note)
            self.nav.show_image(image_index)
        else:
            self.focus(object_id, note)

    def _shown(self) -> None:
        if self._focus is not None:
            (oid, note), self._focus = self._focus, None
            self.focus(oid, note)
        else:
            s = self.bench.session
            self.prompter.tiles.show()
            tiles = s.tile_status()
            where = (f" A large image: SAM works in {tiles[1]} tiles at full resolution ({tiles[0]} ready; the "
                     "others are encoded where you click)." if tiles else "")
            self.say(f"{s.current.path}: click an object, or drag a box around it.{where}{self.bench.engine_note}")

    def focus(self, object_id: int, note: str | None = None) -> None:
        """Select the object's row, bring it into view, and say why it was stepped to (``note``)."""
        if not self.table.select(object_id):
            return
        self.jump_to(object_id)
        ob = self.bench.session.object(object_id)
        why = note or ob.review or ("mask" if ob.has_mask else "box only")
        self.say(f"object {object_id} ({ob.label or 'no label'}): {why}")

    # -- undo ------------------------------------------------------------------------------------------------------
    def undo(self) -> None:
        self._step("undo")

    def redo(self) -> None:
        self._step("redo")

    def _step(self, word: str) -> None:
        s = self.bench.session
        done = getattr(s, word)() if self.bench.ready() else None
        if not done:
            self.say(f"Nothing to {word}.")
            return
        self.prompter.clear_prompt()
        self.bench.changed.emit()
        self.say(f"{word.capitalize()}: {done['kind'].replace('_', ' ')} of #{done['object_id']}.")

    # -- strokes on the objects layer ----------------------------------------------------------------------------
    def watch_paint(self, layer) -> None:
        layer.events.paint.connect(self._on_paint)

    def _on_paint(self, event) -> None:
        """A stroke of napari's brush, eraser or fill on the objects layer: each object it touched gets the mask the
        layer now shows; a stroke with a label that is no object of this image makes a new object (provenance
        manual). Every change is one undoable action in the project. On a large image the layer holds the visible
        region: strokes count at full resolution only."""
        s = self.bench.session
        layer = self.bench.layers.objects
        if self._painting or s is None or s.image is None or layer is None or not self.bench.ready():
            return
        frame = self.bench.layers.frame  # a large image's layer holds the visible region (``_viewport``)
        if frame is not None and frame.step > 1:  # every step-th pixel: a stroke would paint a sample of the image
            QTimer.singleShot(0, lambda: self.bench.layers.viewport.follow(force=True))  # the stroke undone
            self.say("On a large image, brush strokes work at full resolution: zoom in until one image pixel is at "
                     "least one screen pixel, then paint (the stroke just made was undone).")
            return
        touched: set[int] = set()
        for atom in event.value:
            before, after = _painted(atom)
            touched.update(int(v) for v in np.concatenate([before, after]) if v)
        mine = {ob.id: ob for ob in s.objects()}
        changed, new = [], []
        for value in sorted(touched):
            shown = np.asarray(layer.data) == value
            mask = shown if frame is None else _beyond_window(mine.get(value), shown, frame)
            if value in mine:
                if s.paint_mask(value, mask):
                    changed.append(value)
            elif shown.any():
                oid = s.accept_manual(mask)
                layer.data[shown] = oid
                new.append(oid)
        self.bench.changed.emit()
        if new:
            self.bench.accepted.emit(new, False)
        parts = ([f"#{i} repainted" for i in changed] + [f"#{i} painted as a new object" for i in new])
        self.say(f"{', '.join(parts)} (Ctrl+Z undoes)." if parts else "The stroke changed no object.")
