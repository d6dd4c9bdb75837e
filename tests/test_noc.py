"""The simulated annotator is exact on synthetic cases; the harness runs GrabCut on real data when present."""

import numpy as np
import pytest

from clicklabel.cli import main
from clicklabel.evaluate.noc import Item, jitter_box, next_click, noc, run_box_jitter, run_noc
from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.segment.base import MaskResult

from conftest import needs_shared


class PerfectEngine:
    name = model = "perfect"

    def __init__(self, gt):
        self.gt = gt

    def set_image(self, image):
        pass

    def predict(self, prompt, multimask=False, previous=None):
        return [MaskResult(self.gt, 1.0)]


class DiskEngine:
    """Returns the union of radius-r disks around the positive clicks, minus those around negative ones."""

    name = model = "disk"

    def __init__(self, shape, r):
        self.yy, self.xx = np.mgrid[: shape[0], : shape[1]]
        self.r = r

    def set_image(self, image):
        pass

    def predict(self, prompt, multimask=False, previous=None):
        m = np.zeros(self.yy.shape, bool)
        for (x, y), lab in zip(prompt.points, prompt.labels):
            d = (self.xx - x) ** 2 + (self.yy - y) ** 2 <= self.r**2
            m = (m | d) if lab else (m & ~d)
        return [MaskResult(m, 1.0)]


def _disks(k, r=10, gap=40, h=60):
    yy, xx = np.mgrid[:h, : k * gap + gap]
    gt = np.zeros(yy.shape, bool)
    for i in range(k):
        gt |= (xx - (gap + i * gap)) ** 2 + (yy - h // 2) ** 2 <= r**2
    return gt


def test_perfect_engine_needs_one_click():
    gt = _disks(1)
    res = run_noc(PerfectEngine(gt), [Item("one", lambda: np.zeros((*gt.shape, 3), np.uint8), gt)], max_clicks=5)
    assert res.noc(0.85) == 1 and res.noc(0.90) == 1 and res.miou(1) == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_disk_engine_needs_the_expected_clicks(k):
    gt = _disks(k)
    item = Item("disks", lambda: np.zeros((*gt.shape, 3), np.uint8), gt)
    res = run_noc(DiskEngine(gt.shape, 10), [item], max_clicks=20)
    ious = res.per_item["disks"]
    assert ious[:k] == pytest.approx([(j + 1) / k for j in range(k)])  # one click per disk, deepest point first
    assert res.noc(0.90) == int(np.ceil(0.9 * k - 1e-9)) and res.noc(0.85) == int(np.ceil(0.85 * k - 1e-9))


def test_clicker_rules_and_ignore_band():
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True
    x, y, pos = next_click(gt, None)
    assert pos and (x, y) in {(14, 14), (15, 15), (14, 15), (15, 14)}
    spill = gt.copy()
    spill[:, 25:] = True  # a big false positive strip
    assert next_click(gt, spill)[2] is False
    ignore = np.zeros_like(gt)
    ignore[:, 25:] = True  # ... that lies in the ignore band: no error left
    assert next_click(gt, spill, ignore) is None
    assert noc([0.5, 0.86, 0.95], 0.9, 20) == 3 and noc([0.1], 0.9, 20) == 20


def test_box_jitter_is_bounded():
    rng = np.random.default_rng(0)
    for lv in (0.0, 0.1, 0.3):
        x0, y0, x1, y1 = jitter_box((20, 30, 40, 50), lv, rng, (200, 200))
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 200
    assert jitter_box((20, 30, 40, 50), 0.0, rng, (200, 200)) == (20, 30, 60, 80)
    gt = _disks(1)
    eng = BoxEngine(gt.shape)
    res = run_box_jitter(eng, [Item("a", lambda: np.zeros((*gt.shape, 3), np.uint8), gt)], trials=3)
    assert {lv: len(v) for lv, v in res.items()} == {0.0: 1, 0.05: 3, 0.1: 3, 0.2: 3, 0.3: 3}
    assert len(eng.boxes) == 13 and all(0 <= x0 < x1 <= gt.shape[1] and 0 <= y0 < y1 <= gt.shape[0]
                                        for x0, y0, x1, y1 in eng.boxes)
    x, y, w, h = tight_bbox(gt)
    assert eng.boxes[0] == (x, y, x + w, y + h)  # level 0: the object's own box
    assert res[0.0] == [mask_iou(eng.rect(eng.boxes[0]), gt)]  # the IoU of what the engine returned
    assert len(set(eng.boxes[1:])) == 12  # every jittered trial a box of its own


class BoxEngine:
    """Returns the prompt's box filled in, and records each box it was given."""

    name = model = "box"

    def __init__(self, shape):
        self.shape, self.boxes = shape, []

    def set_image(self, image):
        pass

    def rect(self, box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m = np.zeros(self.shape, bool)
        m[y0:y1, x0:x1] = True
        return m

    def predict(self, prompt, multimask=False, previous=None):
        self.boxes.append(tuple(prompt.box))
        return [MaskResult(self.rect(prompt.box), 1.0)]


def test_cli_noc_grabcut_on_real_data(tmp_path, capsys):
    data = needs_shared("grabcut")
    out = tmp_path / "noc"
    assert main(["bench", "noc", "--data", str(data), "--engine", "grabcut", "--limit", "2", "--max-clicks", "3",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NoC@90" in text and (out / "miou_vs_clicks.png").exists() and (out / "per_image.csv").exists()
