"""Our exports read by the real consumer packages: supervision (COCO, RLE and polygons, multi-part and holed masks,
class ids with empty categories), torchvision (upright copies for a reader that ignores EXIF), ultralytics (the
YOLO segmentation export, where the package is installed), and recursive `add`."""

import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image
from torchvision import datasets

from clicklabel.cli import main
from clicklabel.coco import export_coco
from clicklabel.coco.yolo import export_yolo
from clicklabel.project import Store

H, W = 48, 64


def _masks():
    two = np.zeros((H, W), bool)  # two parts
    two[2:10, 2:12] = True
    two[30:40, 40:60] = True
    holed = np.zeros((H, W), bool)  # a ring
    holed[12:28, 14:34] = True
    holed[17:23, 20:28] = False
    ell = np.zeros((H, W), bool)
    ell[30:45, 5:8] = True
    ell[42:45, 5:30] = True
    dot = np.zeros((H, W), bool)
    dot[5, 50] = True
    return [two, holed, ell, dot]


@pytest.fixture
def project(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(d / "a.png")
    s = Store(d / "p.clicklabel", root=d)
    iid = s.add_image_file(d / "a.png")
    s.category_id("empty first", None)  # a category without objects, before the others: class ids must not shift
    labels = ["cat", "dog", "cat", None]
    ids = {}
    for m, lab in zip(_masks(), labels):
        oid = s.accept(iid, m)
        if lab:
            s.set_label(oid, lab, None, 0.9, "m")
        ids[oid] = m
    s.accept(iid, provenance="imported", bbox=(40, 20, 10, 8), mask_state="box", label="dog")
    return s, ids


def test_supervision_reads_our_rle_exactly_with_the_right_classes(project, tmp_path):
    s, ids = project
    out = tmp_path / "coco.json"
    export_coco(s, out)
    ds = sv.DetectionDataset.from_coco(str(s.root), str(out), force_masks=True)
    (_, _, det), = list(ds)
    doc = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    with_masks = [a for a in doc["annotations"] if a["segmentation"]]
    assert len(det) == len(doc["annotations"]) == 5
    for k, ann in enumerate(doc["annotations"]):
        assert ds.classes[det.class_id[k]] == names[ann["category_id"]]
        if ann in with_masks:
            assert np.array_equal(det.mask[k], ids[ann["clicklabel"]["object_id"]])  # parts and the hole too


@pytest.mark.parametrize("rasteriser", ["pycocotools", "rounding"])
def test_polygons_for_each_rasteriser(project, tmp_path, rasteriser):
    """`--polygons` is exact in pycocotools; `--polygons rounding` in supervision 0.31 (real reader), whose
    rounding puts the first kind one pixel past the right and bottom edges."""
    from pycocotools.coco import COCO

    s, ids = project
    out = tmp_path / "poly.json"
    rep = export_coco(s, out, polygons=rasteriser)
    doc = json.loads(out.read_text())
    polys = [a for a in doc["annotations"] if isinstance(a["segmentation"], list) and a["segmentation"]]
    assert len(polys) == 3 and len(rep.rle_fallbacks) == 1  # the ring stays RLE
    ds = sv.DetectionDataset.from_coco(str(s.root), str(out), force_masks=True)
    (_, _, det), = list(ds)
    coco = COCO(str(out))
    for k, ann in enumerate(doc["annotations"]):
        if ann not in polys:
            continue
        truth = ids[ann["clicklabel"]["object_id"]]
        assert np.array_equal(det.mask[k], truth) == (rasteriser == "rounding")
        assert np.array_equal(coco.annToMask(ann).astype(bool), truth) == (rasteriser == "pycocotools")


def _published_yolo_reader(line, h, w):
    """A YOLO segmentation line read as the format is published: normalised points scaled to the image,
    truncated to integers, filled with cv2.fillPoly."""
    import cv2

    vals = line.split()
    xy = (np.asarray(vals[1:], float).reshape(-1, 2) * (w, h)).astype(np.int32)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [xy], 1)
    return int(vals[0]), m.astype(bool)


def test_yolo_export(project, tmp_path):
    s, ids = project
    rep = export_yolo(s, tmp_path / "yolo")
    assert (rep.images, rep.instances, rep.joined, rep.filled, rep.boxes) == (1, 5, 1, 1, 1)
    yaml = (tmp_path / "yolo" / "data.yaml").read_text()
    assert '0: "empty first"' in yaml and '1: "cat"' in yaml and '2: "dog"' in yaml and '3: "unlabelled"' in yaml
    assert (tmp_path / "yolo" / "images" / "a.png").read_bytes() == (s.root / "a.png").read_bytes()
    lines = (tmp_path / "yolo" / "labels" / "a.txt").read_text().splitlines()
    masks = list(ids.values())
    got = [_published_yolo_reader(ln, H, W) for ln in lines]
    assert [c for c, _ in got] == [1, 2, 1, 3, 2]
    assert np.array_equal(got[2][1], masks[2]) and np.array_equal(got[3][1], masks[3])  # one part, no hole: exact
    assert np.array_equal(got[0][1] & masks[0], masks[0])  # both parts, joined by a bridge
    holed = masks[1].copy()
    holed[17:23, 20:28] = True
    assert np.array_equal(got[1][1], holed)  # the hole filled, as said


def test_yolo_export_loads_in_ultralytics(project, tmp_path, capsys):
    """Where ultralytics is installed (it cannot be installed beside our headless OpenCV in the test environment)."""
    pytest.importorskip("ultralytics")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    s, _ = project
    assert main(["export", str(s.path), "--format", "yolo", "--out", str(tmp_path / "yolo")]) == 0
    data = check_det_dataset(str(tmp_path / "yolo" / "data.yaml"))
    ds = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False)
    assert sum(len(lb["cls"]) for lb in ds.labels) == 5
    assert sorted(int(c) for c in ds.labels[0]["cls"].ravel()) == [1, 1, 2, 2, 3]


def test_auto_orient_copies_upright_for_torchvision(tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned: 30 wide, 50 high
    im.save(d / "phone.jpg", exif=exif)
    assert main(["add", str(tmp_path / "p.clicklabel"), str(d)]) == 0
    s = Store(tmp_path / "p.clicklabel")
    m = np.zeros((50, 30), bool)
    m[10:20, 5:15] = True
    s.accept(1, m)
    s.close()
    out = tmp_path / "export" / "coco.json"
    assert main(["export", str(tmp_path / "p.clicklabel"), "--out", str(out), "--auto-orient"]) == 0
    assert "1 turned upright" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["images"][0]["file_name"] == "images_upright/phone.jpg"
    ds = datasets.CocoDetection(str(out.parent), str(out))
    picture, _ = ds[0]
    assert picture.size == (doc["images"][0]["width"], doc["images"][0]["height"]) == (30, 50)
    plain = datasets.CocoDetection(str(d), str(out))  # the original, EXIF ignored: turned the other way
    plain.coco.imgs[1]["file_name"] = "phone.jpg"
    assert plain[0][0].size == (50, 30)


def test_add_finds_images_in_sub_folders_and_keeps_their_names(tmp_path, capsys):
    d = tmp_path / "data"
    for sub in ("cats", "dogs/big", ".hidden"):
        (d / sub).mkdir(parents=True)
    for name in ("top.png", "cats/a.png", "dogs/big/b.png", ".hidden/x.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / name)
    assert main(["add", str(tmp_path / "p.clicklabel"), str(d)]) == 0
    s = Store(tmp_path / "p.clicklabel")
    assert sorted(im.path for im in s.images()) == ["cats/a.png", "dogs/big/b.png", "top.png"]
    export_coco(s, tmp_path / "o.json")
    names = sorted(i["file_name"] for i in json.loads((tmp_path / "o.json").read_text())["images"])
    assert names == ["cats/a.png", "dogs/big/b.png", "top.png"]
    assert main(["add", str(tmp_path / "q.clicklabel"), str(d), "--flat"]) == 0
    assert [im.path for im in Store(tmp_path / "q.clicklabel").images()] == ["top.png"]
