import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from clicklabel.cli import main
from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.project import Store
from clicklabel.segment.propose import ProposeSettings, grid_points, propose, stock_with_embedding

from conftest import SAMPLES, sample


def _matched(a, b, thr=0.95):
    if not a:
        return 1.0
    return float(np.mean([max((mask_iou(x, y) for y in b), default=0) >= thr for x in a]))


@pytest.mark.parametrize("nms", [0.7, 1.0])
def test_same_proposals_as_stock_generator(tiny_engine, nms):
    img = sample("coffee")
    tiny_engine.set_image(img)
    s = ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=nms)
    ours = propose(tiny_engine, s)
    ref = stock_with_embedding(tiny_engine.sam, s, tiny_engine.embedding).generate(img)
    assert len(ours) >= 1 and abs(len(ours) - len(ref)) <= max(1, 0.05 * len(ref))
    om, rm = [p.mask for p in ours], [r["segmentation"] for r in ref]
    assert _matched(om, rm) >= 0.95 and _matched(rm, om) >= 0.95
    for p in ours:
        assert p.bbox == tight_bbox(p.mask) and p.mask.shape == img.shape[:2]
    if nms == 1.0:
        assert len(ours) > 10  # without suppression the comparison covers many masks


def test_thresholds_filter_like_stock(tiny_engine):
    img = sample("coffee")
    tiny_engine.set_image(img)
    probe = propose(tiny_engine, ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0))
    thr = float(np.percentile([p.predicted_iou for p in probe], 80))
    assert thr > 0  # the generators skip the filter for thresholds <= 0
    s = ProposeSettings(grid=4, pred_iou_thresh=thr, stability_thresh=0.0, nms_thresh=1.0)
    ours = propose(tiny_engine, s)
    ref = stock_with_embedding(tiny_engine.sam, s, tiny_engine.embedding).generate(img)
    assert 0 < len(ours) < len(probe) and len(ours) == len(ref)
    assert all(p.predicted_iou > thr for p in ours)


def test_dedupe_min_area_and_cap(tiny_engine):
    tiny_engine.set_image(sample("coffee"))
    s = ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0)
    allp = propose(tiny_engine, s)
    existing = [allp[0].mask]
    deduped = propose(tiny_engine, s, existing=existing)
    assert all(mask_iou(p.mask, existing[0]) < 0.8 for p in deduped) and len(deduped) < len(allp)
    # exactly the proposals that are not close to the existing object: no more, no fewer
    assert [p.bbox for p in deduped] == [p.bbox for p in allp if mask_iou(p.mask, existing[0]) < 0.8]
    big = sorted(p.area for p in allp)[len(allp) // 2]
    large = propose(tiny_engine, ProposeSettings(**{**s.__dict__, "min_area": big}))
    assert all(p.area >= big for p in large)
    assert [p.bbox for p in large] == [p.bbox for p in allp if p.area >= big] != []
    capped = propose(tiny_engine, ProposeSettings(**{**s.__dict__, "max_proposals": 3}))
    assert [p.predicted_iou for p in capped] == sorted((p.predicted_iou for p in allp), reverse=True)[:3]


def test_grid_is_the_generators():
    pts = grid_points(2, 100, 50)
    assert pts.tolist() == [[25, 12.5], [75, 12.5], [25, 37.5], [75, 37.5]]


def test_cli_propose_image_and_project(tmp_path, tiny_checkpoint, capsys):
    common = ["--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--grid", "4",
              "--pred-iou-thresh", "0", "--stability-thresh", "0"]
    out = tmp_path / "props.json"
    assert main(["propose", str(SAMPLES / "rocket.jpg"), "--out", str(out), *common]) == 0
    doc = json.loads(out.read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(out))
    assert doc["categories"][0]["name"] == "object" and all("score" in a for a in doc["annotations"])

    proj = tmp_path / "p.clicklabel"
    assert main(["add", str(proj), str(SAMPLES / "rocket.jpg"), str(SAMPLES / "coffee.jpg")]) == 0
    assert main(["propose", str(proj), *common, "--accept-above", "-100", "--max", "2"]) == 0
    s = Store(proj)
    accepted = s.objects()
    assert {o.image_id for o in accepted} == {1, 2} and len(accepted) <= 4
    assert all(o.provenance == "proposed" and o.clicks == 0 for o in accepted)
    # a second run proposes nothing that repeats an accepted object
    assert main(["propose", str(proj), *common, "--max", "5"]) == 0
    for o in s.objects(states=("proposed",)):
        assert all(mask_iou(o.mask, a.mask) < 0.8 for a in s.objects(o.image_id))
