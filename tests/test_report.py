import re

import numpy as np
import pytest

from clicklabel.cli import main
from clicklabel.masks import box_iou, mask_iou
from clicklabel.project import Store


def _box(y0, x0, y1, x1, shape=(60, 80)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_report_numbers_match_the_store(tmp_path, capsys):
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(tmp_path / "a.png", 80, 60)
    man = s.accept(iid, _box(10, 10, 30, 40), provenance="manual", clicks=4, seconds=12.0)
    sam = s.accept(iid, _box(12, 10, 30, 42), provenance="click", clicks=2, seconds=3.0)
    s.accept(iid, _box(40, 50, 55, 70), provenance="box", clicks=1, seconds=2.0)
    s.set_label(sam, "cup", "cup", 0.9, "gpt-4o-mini", 100, 10, 0.002)
    s.relabel(sam, "mug")
    p1 = s.accept(iid, _box(0, 60, 10, 79), provenance="proposed", state="proposed", score=0.9)
    p2 = s.accept(iid, _box(45, 0, 59, 10), provenance="proposed", state="proposed", score=0.8)
    s.decide_proposal(p1, True)
    s.decide_proposal(p2, False)
    assert main(["report", str(s.path), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert (tmp_path / "r" / "seconds_per_object.png").exists() and (tmp_path / "r" / "manual_vs_sam_iou.png").exists()
    vals = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', page))
    assert vals["manual.objects"] == "1" and vals["click.objects"] == "1" and vals["proposed.objects"] == "1"
    assert float(vals["manual.seconds_per_object"]) == 12.0 and float(vals["click.clicks_per_object"]) == 2.0
    assert float(vals["click.edit_rate"]) == 1.0  # the model's label was overruled
    assert float(vals["click.cost_per_object"]) == pytest.approx(0.002)
    assert vals["proposals.accepted"] == "1" and vals["proposals.rejected"] == "1"
    assert float(vals["proposals.acceptance_rate"]) == 0.5
    expected = mask_iou(s.object(man).mask, s.object(sam).mask)
    assert float(vals["pairs.mask_iou"]) == pytest.approx(expected, abs=1e-4)
    assert float(vals["pairs.box_iou"]) == pytest.approx(box_iou(s.object(man).bbox, s.object(sam).bbox), abs=1e-4)
