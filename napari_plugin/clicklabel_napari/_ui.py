"""The widget's controls and layout (``build_ui``); the behaviour stays in ``_widget.py``."""

from __future__ import annotations

import os

from magicgui.widgets import ComboBox, Container, FileEdit, LineEdit, PushButton, SpinBox
from qtpy.QtWidgets import QAbstractItemView, QLabel, QProgressBar, QTableWidget, QVBoxLayout

from clicklabel.segment import ENCODER_CHOICES, ENCODER_HELP
from clicklabel.weights import REGISTRY

HELP = """<b>Keys</b><br>
click: positive point &nbsp; right-click or Shift+click: negative point &nbsp; drag: box<br>
Enter: accept &nbsp; Escape: clear &nbsp; M: next of SAM's masks<br>
N / B: next / previous image &nbsp; D: image done &nbsp; L: label pending objects<br>
Ctrl+Z / Ctrl+Shift+Z: undo / redo &nbsp; G: accept the drawn box or polygon (manual)"""


def build_ui(w) -> None:
    """Create ``w``'s controls as attributes, lay them out and connect them to ``w``'s methods."""
    w.engine_box = ComboBox(label="engine", choices=[*REGISTRY, "grabcut"], value="vit_b")
    w.device_box = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
    w.encoder_box = ComboBox(label="encoder", choices=list(ENCODER_CHOICES), value="auto", tooltip=ENCODER_HELP)
    w.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth", value="")
    w.load_btn = PushButton(text="Load engine")
    w.download_btn = PushButton(text="Download weights", visible=False)
    w.folder = FileEdit(label="images", mode="d", value="")
    w.open_btn = PushButton(text="Open folder")
    w.prev_btn, w.next_btn = PushButton(text="< Previous (B)"), PushButton(text="Next (N) >")
    w.done_btn = PushButton(text="Image done (D)")
    w.accept_btn, w.clear_btn = PushButton(text="Accept (Enter)"), PushButton(text="Clear (Esc)")
    w.cycle_btn, w.manual_btn = PushButton(text="Next mask (M)"), PushButton(text="Accept drawn shape (G)")
    w.undo_btn, w.redo_btn = PushButton(text="Undo"), PushButton(text="Redo")
    w.lmm_model = LineEdit(label="LMM model", value=os.environ.get("CLICKLABEL_LMM_MODEL", "gpt-4o-mini"))
    w.vocab = LineEdit(label="vocabulary", value="")
    w.template = LineEdit(label="prompt", value="")
    w.concurrency = SpinBox(label="concurrency", value=8, min=1, max=64)
    w.label_btn, w.retry_btn = PushButton(text="Label pending (L)"), PushButton(text="Retry failed")
    w.delete_btn, w.jump_btn = PushButton(text="Delete selected"), PushButton(text="Go to selected")
    settings = Container(widgets=[w.engine_box, w.device_box, w.encoder_box, w.checkpoint, w.load_btn,
                                  w.download_btn, w.folder, w.open_btn])
    nav = Container(widgets=[w.prev_btn, w.next_btn, w.done_btn], layout="horizontal", labels=False)
    act = Container(widgets=[w.accept_btn, w.clear_btn, w.cycle_btn], layout="horizontal", labels=False)
    act2 = Container(widgets=[w.manual_btn, w.undo_btn, w.redo_btn], layout="horizontal", labels=False)
    lmm = Container(widgets=[w.lmm_model, w.vocab, w.template, w.concurrency])
    lab = Container(widgets=[w.label_btn, w.retry_btn, w.delete_btn, w.jump_btn], layout="horizontal",
                    labels=False)
    w.status = QLabel("Open a folder of images.")
    w.status.setWordWrap(True)
    w.counter = QLabel("")
    w.table = QTableWidget(0, 5)
    w.table.setHorizontalHeaderLabels(["id", "label", "status", "conf.", "by"])
    w.table.setSelectionBehavior(QAbstractItemView.SelectRows)
    w.table.itemChanged.connect(w._table_edited)
    help_label = QLabel(HELP)
    help_label.setWordWrap(True)
    layout = QVBoxLayout(w)
    w.progress = QProgressBar()
    w.progress.setVisible(False)
    w.stop_btn = PushButton(text="Stop labelling", visible=False)
    busy = Container(widgets=[w.stop_btn], layout="horizontal", labels=False)
    for part in (settings.native, w.status, w.progress, busy.native, w.counter, nav.native, act.native, act2.native,
                 lmm.native, lab.native, w.table, help_label):
        layout.addWidget(part)
    actions = [
        (w.load_btn, w.load_engine), (w.download_btn, w.download_weights),
        (w.open_btn, lambda: w.open_folder(str(w.folder.value))),
        (w.prev_btn, lambda: w.go(-1)), (w.next_btn, lambda: w.go(+1)), (w.done_btn, w.image_done),
        (w.accept_btn, w.accept), (w.clear_btn, w.clear), (w.cycle_btn, w.cycle), (w.manual_btn, w.accept_manual),
        (w.undo_btn, w.undo), (w.redo_btn, w.redo), (w.label_btn, w.label_pending), (w.retry_btn, w.retry_failed),
        (w.delete_btn, w.delete_selected), (w.jump_btn, w.jump_to_selected), (w.stop_btn, w.stop_labelling),
    ]
    for button, action in actions:
        button.changed.connect(lambda *_, action=action: action())
