"""Nothing lost between tools: export -> import -> export of a project gives the same file (our block included),
and a foreign file's categories, image ids, other keys and attributes survive import -> export."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from clicklabel.cli import main
from clicklabel.coco import export_coco, import_coco
from clicklabel.project import MaskUpdate, Store


def _img(path, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _rect(y0, y1, x0, x1, shape=(48, 64)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def mixed(tmp_path):
    """A project with every kind of object: clicked and labelled, edited, unlabelled (pending), failed, an accepted
    proposal, a box refined into a mask (its given box kept, flagged), a box-only one, a category without objects."""
    d = tmp_path / "src"
    d.mkdir()
    a, b = _img(d / "a.png"), _img(d / "b.png", seed=1)
    s = Store(d / "p.clicklabel", root=d)
    ia, ib = s.add_image_file(a), s.add_image_file(b)
    s.category_id("zebra", "animal")  # no objects
    o1 = s.accept(ia, _rect(2, 10, 3, 20), provenance="click", clicks=3, seconds=4.25, score=0.93, engine="sam",
                  model="vit_b")
    s.set_label(o1, "cat", "animal", 0.8, "gpt-4o-mini", 100, 20, 0.0012)
    o2 = s.accept(ia, _rect(20, 30, 5, 9), provenance="box", clicks=1, seconds=2.0, engine="sam", model="vit_h")
    s.set_label(o2, "dog", "animal", 0.6, "gpt-4o-mini", 90, 10, 0.001)
    s.relabel(o2, "wolf", "animal")
    s.accept(ia, _rect(33, 40, 30, 60), provenance="manual", seconds=9.5)  # unlabelled: pending
    o4 = s.accept(ib, _rect(1, 5, 1, 5), provenance="click", clicks=1)
    s.set_label_failed(o4, "server error 500", "gpt-4o-mini", 50, 0, 0.0001)
    o5 = s.accept(ib, _rect(10, 20, 10, 30), provenance="proposed", state="proposed", score=0.97, engine="sam",
                  model="vit_b")
    s.decide_proposal(o5, True)
    s.set_label(o5, "cat", "animal", 0.99, "gpt-4o-mini")
    o6 = s.accept(ib, provenance="imported", bbox=(30, 30, 20, 10), mask_state="box", label="car",
                  supercategory="vehicle", source_id=77)
    s.set_masks([MaskUpdate(o6, s.object(o6).updated, _rect(28, 42, 28, 52), "IoU 0.61 with the given box",
                            "sam-vit_b", 0.88, "sam", "vit_b")])
    s.accept(ib, provenance="imported", bbox=(40, 2, 10, 10), mask_state="box", label="car", source_id=78)
    s.delete(s.accept(ia, _rect(40, 44, 0, 4)))  # deleted: not exported, leaves a gap in the ids
    return s


def _roundtrip(store, tmp_path, polygons=False):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    export_coco(store, first, polygons=polygons)
    fresh = Store(tmp_path / "again.clicklabel", root=store.root)
    rep = import_coco(first, store.root, fresh)
    export_coco(fresh, second, polygons=polygons)
    return json.loads(first.read_text()), json.loads(second.read_text()), rep, fresh


def test_export_import_export_is_identical(mixed, tmp_path):
    one, two, rep, fresh = _roundtrip(mixed, tmp_path)
    assert not rep.problems
    assert one == two
    ours = {a["clicklabel"]["object_id"]: a["clicklabel"] for a in two["annotations"]}
    assert ours[1]["provenance"] == "click" and ours[1]["clicks"] == 3 and ours[1]["seconds"] == 4.25
    assert ours[1]["engine"] == "sam" and ours[1]["model"] == "vit_b" and ours[1]["label_status"] == "done"
    assert ours[2]["label_status"] == "edited" and ours[4]["label_status"] == "failed"
    assert ours[3]["label_status"] == "pending" and "label" not in ours[3]
    assert ours[6]["given_bbox"] == [30.0, 30.0, 20.0, 10.0] and ours[6]["review"].startswith("IoU")
    assert {c["name"] for c in two["categories"]} >= {"zebra", "cat", "wolf", "car", "unlabelled"}
    # the unlabelled object comes back waiting for a label, not as a category named "unlabelled"
    back = fresh.object(3)
    assert back.label is None and back.label_status == "pending" and back.category_id is None
    assert "unlabelled" not in [c[1] for c in fresh.categories()]
    assert fresh.object(6).provenance == "imported" and fresh.object(1).provenance == "click"


def test_round_trip_with_polygons_too(mixed, tmp_path):
    one, two, rep, _ = _roundtrip(mixed, tmp_path, polygons=True)
    assert one == two and not rep.problems


def test_importing_again_skips_and_replaces_by_annotation_id(mixed, tmp_path):
    first = tmp_path / "first.json"
    export_coco(mixed, first)
    fresh = Store(tmp_path / "again.clicklabel", root=mixed.root)
    import_coco(first, mixed.root, fresh)
    rep = import_coco(first, mixed.root, fresh)
    n = len(json.loads(first.read_text())["annotations"])
    assert rep.skipped == n and rep.annotations == 0
    rep = import_coco(first, mixed.root, fresh, mode="replace")
    assert rep.replaced == n and fresh.count_objects() == n


def _foreign(tmp_path):
    """A CVAT-like file: a category without annotations, sparse image ids, extra image keys, attributes
    (occluded, a custom one, a rotation), info and licenses, and a polygon whose bbox is wrong."""
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "x.png")  # the file says cats/x.png: a copy that dropped the sub-folder
    _img(d / "y.png", seed=2)
    poly = [10, 10, 30, 10, 30, 20, 10, 20]
    return d, {
        "info": {"description": "CVAT export", "year": 2026},
        "licenses": [{"id": 3, "name": "CC-BY", "url": "https://example.org"}],
        "categories": [{"id": 4, "name": "cat", "supercategory": "animal"},
                       {"id": 9, "name": "dog", "supercategory": "animal", "color": "#ff0000"},
                       {"id": 2, "name": "bird", "supercategory": ""}],
        "images": [{"id": 17, "file_name": "cats/x.png", "width": 64, "height": 48, "license": 3,
                    "flickr_url": "", "date_captured": 0},
                   {"id": 5, "file_name": "y.png", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 17, "category_id": 4, "segmentation": [poly], "area": 200.0,
             "bbox": [10, 10, 20, 10], "iscrowd": 0,
             "attributes": {"occluded": True, "breed": "tabby", "rotation": 0.0}},
            {"id": 2, "image_id": 5, "category_id": 4, "segmentation": [poly], "area": 200.0,
             "bbox": [40, 30, 30, 25], "iscrowd": 0, "attributes": {"occluded": False}},  # wrong bbox, off image
            {"id": 3, "image_id": 5, "category_id": 2, "segmentation": [], "area": 300.0,
             "bbox": [5, 5, 20, 15], "iscrowd": 0, "attributes": {"rotation": 30.0, "occluded": False}},
        ],
    }


def test_a_foreign_files_taxonomy_ids_and_attributes_survive(tmp_path):
    d, doc = _foreign(tmp_path)
    src = tmp_path / "cvat.json"
    src.write_text(json.dumps(doc))
    s = Store(tmp_path / "p.clicklabel", root=d)
    rep = import_coco(src, d, s)
    assert not rep.problems and rep.annotations == 3
    assert any("disagrees with their mask" in n for n in rep.notes)
    assert any("rotated boxes" in n for n in rep.notes)
    out = tmp_path / "out.json"
    export_coco(s, out)
    back = json.loads(out.read_text())
    assert back["info"] == doc["info"] and back["licenses"] == doc["licenses"]
    assert {(c["id"], c["name"]) for c in back["categories"]} == {(4, "cat"), (9, "dog"), (2, "bird")}
    assert next(c for c in back["categories"] if c["id"] == 9)["color"] == "#ff0000"
    assert {i["id"]: i["file_name"] for i in back["images"]} == {17: "cats/x.png", 5: "y.png"}  # its own name
    im17 = next(i for i in back["images"] if i["id"] == 17)
    assert im17["license"] == 3 and im17["flickr_url"] == "" and im17["date_captured"] == 0
    anns = {a["id"]: a for a in back["annotations"]}
    assert anns[1]["attributes"] == {"occluded": True, "breed": "tabby", "rotation": 0.0}
    assert anns[3]["attributes"]["rotation"] == 30.0 and anns[3]["segmentation"] == []
    assert anns[2]["bbox"] == [10.0, 10.0, 20.0, 10.0]  # the mask's own box; the file's kept
    assert anns[2]["clicklabel"]["given_bbox"] == [40, 30, 30, 25]
    assert anns[1]["bbox"] == [10, 10, 20, 10]  # agreeing boxes are the file's own
    coco = COCO(str(out))  # pycocotools reads it all
    assert len(coco.getAnnIds()) == 3 and sorted(coco.getCatIds()) == [2, 4, 9]


def test_renumbering_images_is_asked_for(tmp_path, capsys):
    d, doc = _foreign(tmp_path)
    src = tmp_path / "cvat.json"
    src.write_text(json.dumps(doc))
    assert main(["import", str(src), "--images", str(d), "--project", str(tmp_path / "p.clicklabel"),
                 "--renumber-images"]) == 0
    s = Store(tmp_path / "p.clicklabel")
    assert sorted(im.id for im in s.images()) == [1, 2]


def test_label_studio_absolute_file_names_resolve_inside_images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "a.png")
    outside = tmp_path / "secret.png"
    _img(outside)
    doc = {"images": [{"id": 0, "file_name": "/label-studio/media/upload/1/a.png", "width": 64, "height": 48},
                      {"id": 1, "file_name": str(d / "a.png"), "width": 64, "height": 48},
                      {"id": 2, "file_name": str(outside), "width": 64, "height": 48}],
           "categories": [{"id": 0, "name": "cat"}],
           "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "segmentation": []}]}
    src = tmp_path / "ls.json"
    src.write_text(json.dumps(doc))
    s = Store(tmp_path / "p.clicklabel", root=d)
    rep = import_coco(src, d, s)
    assert [im.path for im in s.images()] == ["a.png"] and rep.annotations == 1
    assert len(rep.problems) == 1 and "secret.png" in rep.problems[0] and "not found" in rep.problems[0]


def test_a_zero_area_polygon_is_kept_as_its_box_and_flagged(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 20, 5, 30, 5]],
                            "bbox": [5, 5, 25, 0.5]},
                           {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 20, 5, 30, 5]],
                            "bbox": [5, 5, 25, 0]}]}
    src = tmp_path / "z.json"
    src.write_text(json.dumps(doc))
    s = Store(tmp_path / "p.clicklabel", root=d)
    rep = import_coco(src, d, s)
    ob = s.objects()[0]
    assert rep.annotations == 1 and not ob.has_mask and ob.area > 0 and "zero-area" in ob.review
    assert len(rep.problems) == 1 and "covers no pixel" in rep.problems[0]


# datumaro's own test asset tests/assets/coco_dataset/coco_instances/annotations/instances_val.json (MIT licence):
# a category without annotations, image id 40 with its extra keys, attributes, a crowd RLE in uncompressed counts.
DATUMARO = {
    "licenses": [{"name": "", "id": 0, "url": ""}],
    "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
    "categories": [{"id": 1, "name": "a", "supercategory": ""}, {"id": 2, "name": "b", "supercategory": ""},
                   {"id": 3, "name": "c", "supercategory": ""}],
    "images": [{"id": 40, "width": 5, "height": 10, "file_name": "b.jpg", "license": 0, "flickr_url": "",
                "coco_url": "", "date_captured": 0}],
    "annotations": [
        {"id": 1, "image_id": 40, "category_id": 1, "segmentation": [[0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.0, 2.0]],
         "area": 2.0, "bbox": [0.0, 0.0, 1.0, 2.0], "iscrowd": 0, "attributes": {"x": 1, "y": "hello"}},
        {"id": 2, "image_id": 40, "category_id": 2, "segmentation": {"counts": [0, 20, 30], "size": [10, 5]},
         "area": 20.0, "bbox": [0.0, 0.0, 1.0, 9.0], "iscrowd": 1}],
}


def test_datumaros_asset_comes_back_whole(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(np.zeros((10, 5, 3), np.uint8)).save(d / "b.jpg")
    src = tmp_path / "instances_val.json"
    src.write_text(json.dumps(DATUMARO))
    s = Store(tmp_path / "p.clicklabel", root=d)
    rep = import_coco(src, d, s)
    assert not rep.problems and rep.annotations == 2
    out = tmp_path / "out.json"
    export_coco(s, out)
    back = json.loads(out.read_text())
    assert back["categories"] == DATUMARO["categories"] and back["images"] == DATUMARO["images"]
    assert back["info"] == DATUMARO["info"] and back["licenses"] == DATUMARO["licenses"]
    for mine, theirs in zip(back["annotations"], DATUMARO["annotations"]):
        assert {k: mine[k] for k in ("id", "image_id", "category_id", "bbox", "iscrowd")} == \
            {k: theirs[k] for k in ("id", "image_id", "category_id", "bbox", "iscrowd")}
        assert mine.get("attributes") == theirs.get("attributes")
    a, b = COCO(str(src)), COCO(str(out))
    for i in (1, 2):
        assert (a.annToMask(a.anns[i]) == b.annToMask(b.anns[i])).all()
