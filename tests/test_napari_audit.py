"""GUI test of the review panel (run under xvfb-run): a detection data set opened in the widget, its boxes refined
in a worker, the flagged objects stepped through across images, the table filtered to the class audit's
disagreements, and each decision undone with the widget's undo."""

import shutil

import pytest

pytest.importorskip("napari")
import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel.coco import import_coco  # noqa: E402
from clicklabel.project import RefineSettings, Store, refine_project  # noqa: E402
from clicklabel.segment import make_engine  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import box_only_file  # noqa: E402

pytestmark = pytest.mark.gui
MASK_COL = 2  # the audit table: id, label, mask, model says


def _rows(w) -> dict[int, list[str]]:
    table = w.audit.table
    return {int(table.item(r, 0).text()): [table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())}


def _selected(w) -> int:
    return w.audit.table.selected_ids()[0]


def _idle(w) -> bool:
    return w.nav.loading is None and not w.audit.refining


def test_review_panel_refines_steps_filters_and_decides(make_napari_viewer, qtbot, tmp_path):
    path, _ = box_only_file(tmp_path)
    store = Store(tmp_path / "p.clicklabel", root=tmp_path)
    import_coco(path, tmp_path, store)
    shutil.copy(tmp_path / "scene.png", tmp_path / "scene2.png")  # a second image with a box over nothing
    second = store.add_image_file(tmp_path / "scene2.png")
    lone = store.accept(second, provenance="imported", mask_state="box", bbox=(2, 2, 20, 15), label="blob")
    refine_project(store, make_engine("grabcut"), RefineSettings(only_boxes=True), image_ids=[second])
    assert store.object(lone).review  # flagged there already
    obs = {o.source_id: o for o in store.objects(1)}
    store.set_check(obs[1].id, "blob", "shape", 0.8, "lmm")  # 'block' answered as 'blob': a disagreement
    store.set_check(obs[2].id, "blob", "shape", 0.7, "lmm")  # agrees
    store.close()

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=make_engine("grabcut"), auto_label=False)
    viewer.window.add_dock_widget(w, area="right")
    w.open_project(str(tmp_path / "p.clicklabel"))
    qtbot.waitUntil(lambda: _idle(w) and w.session is not None and w.session.image is not None,
                    timeout=60_000)
    s = w.session
    w.audit.filter.value = "all objects"
    rows = _rows(w)
    assert w.audit.table.horizontalHeaderItem(MASK_COL).text() == "mask"
    assert [rows[obs[k].id][MASK_COL] for k in (1, 2, 3, 4, 5)] == ["box only"] * 4 + ["mask"]
    assert rows[obs[1].id][MASK_COL + 1] == "≠ blob 0.80" and rows[obs[2].id][MASK_COL + 1] == "= blob 0.70"
    assert any("[box only]" in t for t in w.layers.boxes.features["text"])
    assert w.layers.objects.data[20:60, 30:90].max() == 0  # box-only: a rectangle, no mask drawn

    # refine the image in a worker: progress, then the table filtered to what was flagged
    w.audit.refine_here()
    assert w.audit.refining and not w.progress.isHidden() and w.progress.maximum() == 5
    qtbot.waitUntil(lambda: not w.audit.refining, timeout=60_000)
    assert w.progress.isHidden() and "Refined" in w.status.text()
    flagged = [o.id for o in s.flagged()]
    assert w.audit.filter.value == "flagged for review" and sorted(_rows(w)) == flagged
    assert (w.layers.objects.data == obs[1].id).sum() == 2400  # the block's mask, drawn

    # step through the flagged, across images, wrapping around
    for oid in flagged:
        w.audit.next_in_filter()
        assert _selected(w) == oid
    w.audit.next_in_filter()  # the last one here: the next is on the second image
    qtbot.waitUntil(lambda: s.index == 1 and _idle(w) and w.audit.table.selected_ids() == [lone], timeout=60_000)
    w.audit.next_in_filter()
    qtbot.waitUntil(lambda: s.index == 0 and _idle(w) and w.audit.table.selected_ids() == [flagged[0]],
                    timeout=60_000)

    # fine as it is: gone from the filter; undo brings it back
    w.audit.fine_as_it_is()
    assert flagged[0] not in _rows(w) and s.object(flagged[0]).review is None
    w.annotate.undo()
    assert flagged[0] in _rows(w) and s.object(flagged[0]).review

    # the class audit's disagreements: take the model's label (one action), undo it
    w.audit.filter.value = "disagreements with the model"
    assert sorted(_rows(w)) == [obs[1].id]
    w.audit.next_in_filter()
    assert _selected(w) == obs[1].id
    w.audit.take_model_label()
    assert s.object(obs[1].id).label == "blob" and _rows(w) == {}
    w.annotate.undo()
    assert s.object(obs[1].id).label == "block" and sorted(_rows(w)) == [obs[1].id]
    w.audit.table.selectRow(0)
    w.audit.keep_own_label()
    assert s.object(obs[1].id).label == "block" and _rows(w) == {} and s.disagreements() == []
    w.audit.filter.value = "all objects"
    assert _rows(w)[obs[1].id][MASK_COL + 1] == "≠ blob 0.80 (kept)"
