"""GUI tests of the Review panel's Find box (under xvfb-run): type the classes, every instance proposed with its
class (SAM 3, a tiny random model; or the multimodal model's boxes from the loopback server and the engine's
masks), reviewed with the keys, exported with the class."""

import json

import numpy as np
import pytest

pytest.importorskip("napari")
from gui_input import key  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import wait_ready  # noqa: E402
from lmm_server import FakeLMM  # noqa: E402

pytestmark = pytest.mark.gui


def _docked(make_napari_viewer, engine):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=engine, auto_label=False)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    return viewer, w


def _export(qtbot, w, path) -> dict:
    w.export(str(path))
    qtbot.waitUntil(lambda: not w.bench.tasks.running("exporting"), timeout=120_000)
    assert "Exported" in w.status.text(), w.status.text()
    return json.loads(path.read_text())


def test_find_proposes_every_instance_with_its_class_and_the_review_accepts_it(make_napari_viewer, qtbot, folder,
                                                                             sam3_checkpoint, tmp_path):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment import make_engine

    engine = make_engine("sam3", checkpoint=sam3_checkpoint, device="cpu", cache=EmbeddingCache(disk=False))
    viewer, w = _docked(make_napari_viewer, engine)
    w.open_folder(str(folder))
    wait_ready(qtbot, w, timeout=120_000)
    finder = w.review.finder
    finder.text.value = "cat, dog"
    finder.threshold.value = 0.0  # random weights: every score is low
    seen = []
    finder.arrived.connect(lambda name, crops: seen.append(name))
    finder.button.native.click()
    assert finder.finding and "Finding cat, dog with SAM 3" in w.status.text()
    qtbot.waitUntil(lambda: not finder.finding, timeout=120_000)
    assert seen == ["cat", "dog"]  # shown as each class was done
    waiting = w.session.proposals()
    assert waiting and w.review.reviewing and "Found cat" in w.status.text()
    assert {o.provenance for o in waiting} == {"concept"} and {o.label for o in waiting} <= {"cat", "dog"}
    first = w.review.highlighted
    key(viewer, "a")
    got = w.session.object(first.id)
    assert got.state == "accepted" and got.label == first.label and got.label_status == "done"
    doc = _export(qtbot, w, tmp_path / "found.json")
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert [names[a["category_id"]] for a in doc["annotations"]] == [first.label]


def test_find_without_sam3_asks_the_model_for_boxes_and_refuses_bad_ones(make_napari_viewer, qtbot, folder,
                                                                        tiny_engine, tmp_path):
    from clicklabel.label.grounding import Grounding

    def boxes(body, image):
        h, w_ = image.shape[:2]
        return {"objects": [{"concept": "cup", "box": [0.2 * w_, 0.1 * h, 0.7 * w_, 0.8 * h], "confidence": 0.9},
                            {"concept": "saucer", "box": [-5, 0, 2 * w_, h], "confidence": 0.5}]}

    viewer, w = _docked(make_napari_viewer, tiny_engine)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    with FakeLMM(answer=boxes) as lmm:
        finder = w.review.finder
        finder.grounding = Grounding("qwen2.5-vl", base_url=lmm.url, api_key="sk-test")
        finder.text.value = "cup, saucer"
        finder.button.native.click()
        qtbot.waitUntil(lambda: not finder.finding, timeout=60_000)
        assert len(lmm.requests) == 1
    waiting = w.session.proposals()
    if not waiting:
        pytest.skip("random weights gave an empty mask for the box")
    assert [o.label for o in waiting] == ["cup"] and "1 box(es) refused" in w.status.text()
    assert "outside the" in w.status.text()
    key(viewer, "a")
    assert w.session.object(waiting[0].id).label == "cup"
    doc = _export(qtbot, w, tmp_path / "grounded.json")
    assert [c["name"] for c in doc["categories"] if c["id"] == doc["annotations"][0]["category_id"]] == ["cup"]


def test_find_says_what_it_needs(make_napari_viewer, qtbot, folder, tiny_engine, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    viewer, w = _docked(make_napari_viewer, tiny_engine)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    finder = w.review.finder
    finder.button.native.click()  # no classes typed and no vocabulary
    assert "Type the classes" in w.status.text() and not finder.finding
    finder.text.value = "cup"
    finder.button.native.click()  # no SAM 3 and no model to find the boxes
    assert "load SAM 3" in w.status.text() and not finder.finding
    finder.exemplar.value = True
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    finder.button.native.click()  # an example wanted, none drawn
    assert "Drag a box around one instance" in w.status.text() and not finder.finding
    assert np.asarray(w.layers.proposals.data).max() == 0


def test_proposals_are_coloured_by_class():
    from clicklabel_napari._proposal_layer import CLASS_BASE, PROPOSAL_COLOURS, WAITING, class_value

    assert class_value(None) == WAITING and class_value("cat") == class_value(" Cat ") >= CLASS_BASE
    assert len({class_value(n) for n in ("cat", "dog", "mug", "person", "car")}) > 1
    assert all(v in PROPOSAL_COLOURS for v in (class_value(n) for n in ("cat", "dog", "zebra")))
