import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from clicklabel.cli import main
from clicklabel.coco import export_coco, import_coco, mask_to_polygons
from clicklabel.errors import CocoError
from clicklabel.masks import decode_rle, mask_iou
from clicklabel.project import Store

from conftest import needs_shared


def _ap(gt_file, dt_anns, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes([dict(a, score=1.0) for a in dt_anns])
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


@pytest.mark.parametrize("name, ann_file", [("panopticapi", "instances.json"), ("labelme", "annotations.json")])
def test_round_trip_real_coco_files(tmp_path, name, ann_file):
    src = needs_shared(f"coco_real/{name}")
    original = json.loads((src / ann_file).read_text())
    s1 = Store(tmp_path / "one.clicklabel", root=src / "images")
    rep = import_coco(src / ann_file, src / "images", s1)
    assert rep.problems == [] and rep.annotations == len(original["annotations"])
    export_coco(s1, tmp_path / "export.json")
    s2 = Store(tmp_path / "two.clicklabel", root=src / "images")
    assert import_coco(tmp_path / "export.json", src / "images", s2).problems == []

    orig_coco = COCO(str(src / ann_file))
    second = {o.source_id: o for o in s2.objects()}
    assert len(second) == len(original["annotations"])
    by_source = {o.source_id: o for o in s1.objects()}
    for ann in original["annotations"]:
        ours1 = by_source[ann["id"]]
        ours2 = second[ann["id"]]  # annotation ids survive the round trip
        ref = orig_coco.annToMask(ann).astype(bool)
        assert np.array_equal(ours1.mask, ref) and np.array_equal(ours2.mask, ref)
        assert list(ours2.bbox) == [float(v) for v in ann["bbox"]]
        assert ours2.iscrowd == ann.get("iscrowd", 0)
        assert ours2.label == next(c["name"] for c in original["categories"] if c["id"] == ann["category_id"])
    exported = json.loads((tmp_path / "export.json").read_text())  # every category, those without annotations too
    assert {(c["id"], c["name"]) for c in exported["categories"]} == {(c["id"], c["name"])
                                                                       for c in original["categories"]}
    assert sorted(i["id"] for i in exported["images"]) == sorted(i["id"] for i in original["images"])
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(tmp_path / "export.json"))  # loads in pycocotools
    for iou_type in ("segm", "bbox"):
        assert _ap(tmp_path / "export.json", exported["annotations"], iou_type) == pytest.approx(
            _ap(src / ann_file, original["annotations"], iou_type), abs=1e-9
        )


def _project_with_objects(tmp_path):
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "img.png")
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(tmp_path / "img.png", 80, 60)
    ring = np.zeros((60, 80), bool)
    ring[10:40, 10:40] = True
    ring[20:30, 20:30] = False  # a hole
    parts = np.zeros((60, 80), bool)
    parts[45:55, 5:15] = True
    parts[45:55, 50:75] = True  # two parts
    disk = (np.add.outer((np.arange(60) - 25) ** 2, (np.arange(80) - 60) ** 2) < 100)
    ids = [s.accept(iid, m) for m in (ring, parts, disk)]
    s.set_label(ids[0], "ring", "shape", 0.9, "m")
    s.set_label(ids[2], "disk", "shape", 0.8, "m")
    return s, {ids[0]: ring, ids[1]: parts, ids[2]: disk}


def test_own_project_polygons_and_ap(tmp_path):
    s, masks = _project_with_objects(tmp_path)
    for polygons in (False, True):
        out = tmp_path / f"e{polygons}.json"
        rep = export_coco(s, out, polygons=polygons)
        doc = json.loads(out.read_text())
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(out))
        for ann in doc["annotations"]:
            m = coco.annToMask(ann).astype(bool)
            assert mask_iou(m, masks[ann["clicklabel"]["object_id"]]) == 1.0
            assert ann["area"] == masks[ann["clicklabel"]["object_id"]].sum()
            assert "clicklabel" in ann and ann["iscrowd"] == 0
        if polygons:
            kinds = {a["clicklabel"]["object_id"]: type(a["segmentation"]).__name__ for a in doc["annotations"]}
            ring_id = next(i for i, m in masks.items() if not m[25, 25] and m[15, 15])
            assert rep.rle_fallbacks == [ring_id] and kinds[ring_id] == "dict"
            assert sum(k == "list" for k in kinds.values()) == 2
        assert _ap(out, doc["annotations"], "segm") == pytest.approx(1.0, abs=1e-9)
        assert _ap(out, doc["annotations"], "bbox") == pytest.approx(1.0, abs=1e-9)
    assert {c["name"] for c in doc["categories"]} == {"ring", "disk", "unlabelled"}
    assert next(c for c in doc["categories"] if c["name"] == "ring")["supercategory"] == "shape"


def test_polygons_are_exact_or_refused():
    from pycocotools import mask as mu

    rng = np.random.default_rng(0)
    exact = 0
    for _ in range(50):
        m = rng.random((15, 15)) > 0.55
        p = mask_to_polygons(m)
        if p is not None:
            back = mu.decode(mu.merge(mu.frPyObjects(p, 15, 15))).astype(bool)
            assert np.array_equal(back, m)
            exact += 1
    assert exact >= 40  # 45 of these 50 masks come back as polygons (refusing every mask would pass the loop)


def _bad_file(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    good_rle = {"size": [20, 30], "counts": [10, 5, 585]}
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
            {"id": 2, "file_name": "../../etc/passwd", "width": 30, "height": 20},
            {"id": 3, "file_name": "/etc/hosts", "width": 30, "height": 20},
            {"id": 4, "file_name": "missing.png", "width": 30, "height": 20},
        ],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": good_rle, "iscrowd": 1},
            {"id": 11, "image_id": 1, "category_id": 1},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]]},
            {"id": 13, "image_id": 1, "category_id": 1, "segmentation": {"size": [40, 30], "counts": [1200]}},
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": good_rle},
            {"id": 14, "image_id": 1, "category_id": 7, "segmentation": good_rle},
            {"id": 15, "image_id": 2, "category_id": 1, "segmentation": good_rle},
            {"id": 16, "image_id": 4, "category_id": 1, "segmentation": good_rle},
            {"id": 17, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]]},
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


def test_bad_annotations_are_reported_by_id(tmp_path):
    path = _bad_file(tmp_path)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    rep = import_coco(path, tmp_path, s)
    text = "\n".join(rep.problems)
    for needle in ("annotation 11: missing key 'segmentation'", "annotation 12: polygon with 2 points",
                   "annotation 13: RLE size 40x30", "annotation 14: unknown category",
                   "image 2: file_name '../../etc/passwd' points outside", "image 3: file '/etc/hosts' not found",
                   "image 4: file 'missing.png' not found", "annotation 15:", "annotation 16:"):
        assert needle in text, needle
    assert rep.notes == ["annotation 10: duplicate id; imported as annotation 18"]  # renumbered, not dropped
    assert rep.annotations == 3
    obs = s.objects()
    assert [o.source_id for o in obs] == [10, 18, 17] and obs[0].iscrowd == 1 and obs[1].iscrowd == 0
    assert decode_rle(obs[0].rle).sum() == 5


def test_strict_imports_nothing(tmp_path):
    path = _bad_file(tmp_path)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    with pytest.raises(CocoError, match="nothing imported"):
        import_coco(path, tmp_path, s, strict=True)
    assert s.count_objects() == 0 and s.images() == []


def test_cli_export_import(tmp_path, capsys):
    s, _ = _project_with_objects(tmp_path)
    s.close()
    assert main(["export", str(tmp_path / "p.clicklabel"), "--out", str(tmp_path / "o.json"), "--polygons"]) == 0
    out = capsys.readouterr().out
    assert "3 annotations" in out and "written as RLE instead" in out
    code = main(["import", str(tmp_path / "o.json"), "--images", str(tmp_path), "--project", str(tmp_path / "q")])
    assert code == 0 and "imported 3 annotations" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["import", str(_bad_file(tmp_path)), "--images", str(tmp_path), "--project",
                 str(tmp_path / "r.clicklabel"), "--strict"]) == 2


def _supervision_reader(seg, h, w):
    """supervision's own COCO polygon reader (the installed package's function, not a copy)."""
    from supervision.dataset.formats.coco import coco_annotations_to_masks

    return coco_annotations_to_masks([{"segmentation": seg}], (w, h))[0]


def _ultralytics_reader(seg, h, w):
    """How ultralytics reads it, as its format is published (the package cannot be installed beside our headless
    OpenCV): coordinates normalised to 0..1 in its label files (6 decimals), scaled back, truncated to int32,
    cv2.fillPoly."""
    import cv2

    m = np.zeros((h, w), np.uint8)
    for poly in seg:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2) / (w, h)
        xy = np.round(xy, 6) * (w, h)
        cv2.fillPoly(m, [xy.astype(np.int32)], 1)
    return m.astype(bool)


def test_polygons_rasterise_to_the_same_pixels_in_pycocotools_and_cv2_readers(tmp_path):
    """`export --polygons`: pycocotools and ultralytics get the mask back exactly (corner polygons came back one
    pixel too big on the right and bottom in the cv2 readers: a 1-pixel object at IoU 0.25); `--polygons rounding`:
    supervision >= 0.30.4 (which rounds coordinates) and ultralytics do. No polygon is exact in both pycocotools and
    a rounding reader."""
    h, w = 48, 64
    masks = []
    one = np.zeros((h, w), bool)
    one[7, 9] = True
    line = np.zeros((h, w), bool)
    line[20, 3:40] = True
    ell = np.zeros((h, w), bool)
    ell[30:45, 5:8] = True
    ell[42:45, 5:30] = True
    masks += [one, line, ell]
    rng = np.random.default_rng(5)
    while len(masks) < 40:  # random walks of 1-3 px brushes: one connected piece each, ragged outlines
        m = np.zeros((h, w), bool)
        y, x = rng.integers(5, 40), rng.integers(5, 55)
        for _ in range(rng.integers(5, 120)):
            r = int(rng.integers(0, 2))
            m[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = True
            y, x = np.clip(y + rng.integers(-1, 2), 0, h - 1), np.clip(x + rng.integers(-1, 2), 0, w - 1)
        masks.append(m)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "img.png")
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image_file(tmp_path / "img.png")
    ids = {s.accept(iid, m): m for m in masks}
    rep = export_coco(s, tmp_path / "e.json", polygons=True)
    doc = json.loads((tmp_path / "e.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "e.json"))
    polys = [a for a in doc["annotations"] if isinstance(a["segmentation"], list)]
    assert len(polys) == len(masks) - len(rep.rle_fallbacks) >= 30  # the rest have holes: RLE
    for ann in polys:
        truth = ids[ann["clicklabel"]["object_id"]]
        for reader in (lambda a: coco.annToMask(a).astype(bool),
                       lambda a: _ultralytics_reader(a["segmentation"], h, w)):
            assert mask_iou(reader(ann), truth) == 1.0
    assert sum(not np.array_equal(_supervision_reader(a["segmentation"], h, w), ids[a["clicklabel"]["object_id"]])
               for a in polys) == len(polys)  # supervision rounds: one pixel too big right and bottom
    export_coco(s, tmp_path / "r.json", polygons="rounding")
    rounded = [a for a in json.loads((tmp_path / "r.json").read_text())["annotations"]
               if isinstance(a["segmentation"], list)]
    assert len(rounded) == len(polys)
    for ann in rounded:
        truth = ids[ann["clicklabel"]["object_id"]]
        assert np.array_equal(_supervision_reader(ann["segmentation"], h, w), truth)
        assert np.array_equal(_ultralytics_reader(ann["segmentation"], h, w), truth)
    corner = [[9, 7, 10, 7, 10, 8, 9, 8]]  # the 1-pixel object as a pixel-corner polygon (our old export)
    assert mask_iou(_supervision_reader(corner, h, w), one) == 0.25
