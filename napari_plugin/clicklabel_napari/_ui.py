"""The widget's controls and layout (``build_ui``); the behaviour stays in the widget's modules.

Layout: the status line, the progress bar (with its Stop button) and the image counter are always in view; the
controls sit in tabs (Annotate, Review, Labels, Project, Keys), each in a scroll area, so that at 1280x800 and at
napari's default window size nothing is squashed: a tab that does not fit scrolls."""

from __future__ import annotations

import os

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QScrollArea,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from clicklabel.segment import ENCODER_CHOICES, ENCODER_HELP
from clicklabel.weights import REGISTRY

KEYS = """<b>Click mode</b><br>
click: positive point &nbsp; right-click or Shift+click: negative point &nbsp; drag: box<br>
Enter: accept &nbsp; Esc: clear &nbsp; M: next of SAM's masks<br>
G: accept the box or polygon drawn on 'clicklabel manual'<br>
<b>Review mode</b> (P proposes)<br>
A or Enter: accept &nbsp; X: reject &nbsp; S: skip &nbsp; click: correct the highlighted proposal<br>
Esc: leave the correction, then the review (P comes back to it)<br>
<b>Everywhere</b><br>
N / B: next / previous image &nbsp; D: image done &nbsp; L: label pending objects<br>
Ctrl+Z / Ctrl+Shift+Z: undo / redo<br>
Keys reach clicklabel while the canvas has the focus and one of its layers (or the image) is selected."""


def engine_choices() -> list[str]:
    """What the engine box offers: every registered model, then the engines without weights."""
    return [*REGISTRY, "grabcut"]


def _row(*widgets) -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False)


def _tab(tabs: QTabWidget, title: str, *parts) -> None:
    page = QWidget()
    lay = QVBoxLayout(page)
    lay.setContentsMargins(4, 4, 4, 4)
    for part in parts:
        lay.addWidget(getattr(part, "native", part))
    lay.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(page)
    tabs.addTab(scroll, title)


def build_ui(w) -> None:
    """Create ``w``'s controls as attributes, lay them out and connect them to ``w``'s methods."""
    # Annotate
    w.prev_btn, w.next_btn, w.done_btn = PushButton(text="< Prev (B)"), PushButton(text="Next (N) >"), \
        PushButton(text="Done (D)")
    w.accept_btn, w.clear_btn, w.cycle_btn = PushButton(text="Accept (Enter)"), PushButton(text="Clear (Esc)"), \
        PushButton(text="Mask (M)")
    w.manual_btn, w.undo_btn, w.redo_btn = PushButton(text="Accept drawn (G)"), PushButton(text="Undo"), \
        PushButton(text="Redo")
    w.delete_btn, w.jump_btn = PushButton(text="Delete selected"), PushButton(text="Go to selected")
    w.table = QTableWidget(0, 5)
    w.table.setHorizontalHeaderLabels(["id", "label", "status", "conf.", "by"])
    w.table.setSelectionBehavior(QAbstractItemView.SelectRows)
    w.table.setMinimumHeight(140)
    w.table.verticalHeader().setVisible(False)
    head = w.table.horizontalHeader()
    head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the label
    w.table.itemChanged.connect(w._table_edited)
    # Review
    w.grid = SpinBox(label="grid", value=32, min=4, max=128, tooltip="points per side of the grid SAM is asked at")
    w.min_area = SpinBox(label="min area", value=0, min=0, max=10_000_000, tooltip="smallest proposal, pixels")
    w.max_props = SpinBox(label="at most", value=200, min=0, max=100_000, tooltip="0: no limit; best first")
    w.propose_btn = PushButton(text="Propose (P)")
    w.accept_prop_btn, w.reject_btn, w.skip_btn = PushButton(text="Accept (A)"), PushButton(text="Reject (X)"), \
        PushButton(text="Skip (S)")
    w.threshold = FloatSpinBox(label="score", value=0.90, min=0.0, max=1.0, step=0.01)
    w.above_btn = PushButton(text="Accept all >= score")
    w.review_info = QLabel("No proposals yet: Propose asks SAM for every object of this image.")
    w.review_info.setWordWrap(True)
    # Labels
    w.lmm_model = LineEdit(label="LMM model", value=os.environ.get("CLICKLABEL_LMM_MODEL", "gpt-4o-mini"))
    w.vocab = LineEdit(label="vocabulary", value="")
    w.template = LineEdit(label="prompt", value="")
    w.concurrency = SpinBox(label="concurrency", value=8, min=1, max=64)
    w.few_shot = SpinBox(label="examples", value=0, min=0, max=16,
                         tooltip="few-shot: the most similar objects whose label you typed or confirmed go with each "
                                 "crop, with their labels (0: none)")
    w.label_btn, w.retry_btn = PushButton(text="Label pending (L)"), PushButton(text="Retry failed")
    w.value_btn = PushButton(text="Next by value",
                             tooltip="the model's label most worth a look: low confidence, the most similar objects "
                                     "you confirmed say otherwise, or a rare class (clicklabel review-order)")
    # Project
    w.folder = FileEdit(label="images", mode="d", value="")
    w.open_btn = PushButton(text="Open folder")
    w.polygons = CheckBox(text="polygons (else RLE)", value=False)
    w.export_btn = PushButton(text="Export COCO...")
    choices = engine_choices()
    w.engine_box = ComboBox(label="engine", choices=choices, value="vit_b" if "vit_b" in choices else choices[0])
    w.device_box = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
    w.encoder_box = ComboBox(label="encoder", choices=list(ENCODER_CHOICES), value="auto", tooltip=ENCODER_HELP)
    w.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth", value="")
    w.remote_box = CheckBox(text="encode on a server (clicklabel serve)", value=False,
                            tooltip="the image encoder runs on the server's GPU, the clicks are answered here; "
                                    "the engine box must name the server's model")
    w.server = LineEdit(label="server", value=os.environ.get("CLICKLABEL_SERVER", ""),
                        tooltip="http://HOST:PORT, as `clicklabel serve` printed it")
    w.token_file = FileEdit(label="token file", mode="r", value="",
                            tooltip="the server's token (empty: $CLICKLABEL_SERVE_TOKEN)")
    w.load_btn = PushButton(text="Load engine")
    w.download_btn = PushButton(text="Download weights", visible=False)
    w.engine_help = QLabel("")
    w.engine_help.setWordWrap(True)
    w.engine_help.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    # always in view: status, progress + stop, counter
    w.status = QLabel("Open a folder of images (Project tab).")
    w.status.setWordWrap(True)
    w.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    w.status.setMinimumHeight(3 * w.status.fontMetrics().lineSpacing() + 4)  # most texts fit: no relayout
    w.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    w.progress = QProgressBar()
    w.progress.setVisible(False)
    w.stop_btn = PushButton(text="Stop", visible=False)
    w.counter = QLabel("")
    w.counter.setWordWrap(True)
    busy = QWidget()
    busy_row = QHBoxLayout(busy)
    busy_row.setContentsMargins(0, 0, 0, 0)
    busy_row.addWidget(w.progress, 1)
    busy_row.addWidget(w.stop_btn.native)
    for part in (w.progress, w.stop_btn.native):  # shown and hidden at each labelling run: no relayout each time
        policy = part.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        part.setSizePolicy(policy)

    w.tabs = QTabWidget()
    _tab(w.tabs, "Annotate", _row(w.prev_btn, w.next_btn, w.done_btn), _row(w.accept_btn, w.clear_btn, w.cycle_btn),
         _row(w.manual_btn, w.undo_btn, w.redo_btn), w.table, _row(w.delete_btn, w.jump_btn))
    _tab(w.tabs, "Review", Container(widgets=[w.grid, w.min_area, w.max_props]), w.propose_btn,
         _row(w.accept_prop_btn, w.reject_btn, w.skip_btn), _row(w.threshold, w.above_btn), w.review_info)
    _tab(w.tabs, "Labels", Container(widgets=[w.lmm_model, w.vocab, w.template, w.concurrency, w.few_shot]),
         _row(w.label_btn, w.retry_btn), w.value_btn)
    _tab(w.tabs, "Project", Container(widgets=[w.folder]), _row(w.open_btn), _row(w.polygons, w.export_btn),
         Container(widgets=[w.engine_box, w.device_box, w.encoder_box, w.checkpoint]), w.remote_box,
         Container(widgets=[w.server, w.token_file]),
         _row(w.load_btn, w.download_btn), w.engine_help)
    keys = QLabel(KEYS)
    keys.setWordWrap(True)
    _tab(w.tabs, "Keys", keys)

    layout = QVBoxLayout(w)
    layout.setContentsMargins(4, 4, 4, 4)
    for part in (w.status, busy, w.counter, w.tabs):
        layout.addWidget(part)
    layout.setStretch(3, 1)

    actions = [
        (w.prev_btn, lambda: w.go(-1)), (w.next_btn, lambda: w.go(+1)), (w.done_btn, w.image_done),
        (w.accept_btn, w.accept), (w.clear_btn, w.clear), (w.cycle_btn, w.cycle), (w.manual_btn, w.accept_manual),
        (w.undo_btn, w.undo), (w.redo_btn, w.redo), (w.delete_btn, w.delete_selected),
        (w.jump_btn, w.jump_to_selected), (w.propose_btn, w.propose), (w.accept_prop_btn, lambda: w.decide(True)),
        (w.reject_btn, lambda: w.decide(False)), (w.skip_btn, w.skip), (w.above_btn, w.accept_all_above),
        (w.label_btn, w.label_pending), (w.retry_btn, w.retry_failed), (w.value_btn, w.next_by_value),
        (w.open_btn, lambda: w.open_folder(
            str(w.folder.value))), (w.export_btn, w.export_dialog), (w.load_btn, w.load_engine),
        (w.download_btn, w.download_weights), (w.stop_btn, w.stop),
    ]
    for button, action in actions:
        button.native.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        button.changed.connect(lambda *_, action=action: w.run_action(action))
    w.threshold.changed.connect(lambda *_: w.show_review_info())
