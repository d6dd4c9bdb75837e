"""Detection data sets: box-only COCO annotations imported as objects without a mask (mixed with polygons and RLE in
one file), exported as box-only COCO until refined, labelled from their box, kept through the store's reads."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from clicklabel.cli import main
from clicklabel.coco import export_coco, import_coco
from clicklabel.errors import StoreError
from clicklabel.label import CropSettings, LabelCache, Labeler, LabelerConfig, label_objects
from clicklabel.label.crop import crop_box, pixel_box
from clicklabel.project import Store

from conftest import H, W, box_only_file, needs_shared
from lmm_server import FakeLMM

BAD = [
    {"id": 20, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 9], "segmentation": []},  # no area
    {"id": 21, "image_id": 1, "category_id": 1, "segmentation": []},  # neither a mask nor a box
    {"id": 22, "image_id": 1, "category_id": 1, "bbox": [170, 5, 4, 4], "segmentation": []},  # outside
    {"id": 23, "image_id": 1, "category_id": 1, "bbox": [5, 5, -3, 9], "segmentation": []},
]


def test_box_only_import_keeps_every_valid_annotation_and_exports_box_only_coco(tmp_path, capsys):
    path, doc = box_only_file(tmp_path, BAD)
    project = tmp_path / "p.clicklabel"
    assert main(["import", str(path), "--images", str(tmp_path), "--project", str(project)]) == 1  # 4 refused
    out = capsys.readouterr().out
    assert "imported 6 annotations" in out and "4 of them are box-only" in out
    assert "clipped" in out and out.count("skipped: annotation 2") == 4  # ids 20..23, each with a reason
    assert "has no area" in out and "neither a segmentation nor a bbox" in out and "outside its image" in out
    s = Store(project)
    obs = {o.source_id: o for o in s.objects()}
    assert sorted(obs) == [1, 2, 3, 4, 5, 6]  # count in (valid) = count kept
    assert {k: obs[k].label for k in obs} == {1: "block", 2: "blob", 3: "blob", 4: "block", 5: "block", 6: "blob"}
    for k in (1, 2, 3, 4):
        ob = obs[k]
        assert not ob.has_mask and ob.mask_state == "box" and not ob.mask.any() and ob.mask.shape == (H, W)
        assert ob.area == pytest.approx(ob.bbox[2] * ob.bbox[3]) and ob.label_status == "done"
    assert obs[1].bbox == (28, 18, 64, 44) and obs[4].bbox == (140.5, 100.25, 19.5, 19.75)  # clipped to the image
    assert obs[5].has_mask and obs[6].has_mask and obs[6].mask[70:100, 10:40].all()
    assert s.count_mask_states() == {"mask": 2, "box": 4, "review": 0}

    assert main(["export", str(project), "--out", str(tmp_path / "out.json")]) == 0
    assert "4 objects are box-only" in capsys.readouterr().out
    coco = COCO(str(tmp_path / "out.json"))  # pycocotools loads it
    anns = {a["id"]: a for a in coco.dataset["annotations"]}
    assert sorted(anns) == [1, 2, 3, 4, 5, 6]
    for k in (1, 2, 3):
        a = anns[k]
        src = next(x for x in doc["annotations"] if x["id"] == k)
        assert a["segmentation"] == [] and a["bbox"] == src["bbox"] and a["area"] == pytest.approx(
            src["bbox"][2] * src["bbox"][3])
        assert a["clicklabel"]["mask_state"] == "box" and "given_bbox" not in a["clicklabel"]
    cats = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    assert cats[anns[2]["category_id"]] == "blob" and cats[anns[1]["category_id"]] == "block"
    assert coco.getAnnIds(imgIds=[1]) and len(coco.getAnnIds(catIds=[anns[1]["category_id"]])) == 3
    rle = anns[6]["segmentation"]
    assert mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).sum() == 900
    assert anns[6]["clicklabel"]["mask_state"] == "mask"

    # the export imports again as the same box-only objects (a round trip)
    s2 = Store(tmp_path / "again.clicklabel", root=tmp_path)
    rep = import_coco(tmp_path / "out.json", tmp_path, s2)
    assert rep.annotations == 6 and rep.boxes == 4 and not rep.problems
    again = {o.source_id: o for o in s2.objects()}
    assert all(again[k].bbox == obs[k].bbox and again[k].mask_state == obs[k].mask_state for k in obs)


def test_box_only_store_rules(tmp_path):
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(tmp_path / "x.png", W, H)
    oid = s.accept(iid, provenance="imported", mask_state="box", bbox=(10, 10, 20.5, 5), label="cat")
    ob = s.object(oid)
    assert ob.mask_state == "box" and ob.area == pytest.approx(102.5) and ob.rle["size"] == [H, W]
    for bad in [None, (1, 1, 0, 5), (1, 1, float("nan"), 5), (1, 1, 5)]:
        with pytest.raises(StoreError, match="box-only object needs a box"):
            s.accept(iid, provenance="imported", mask_state="box", bbox=bad)
    with pytest.raises(StoreError, match="mask state"):
        s.accept(iid, np.ones((H, W), bool), mask_state="outline")
    assert [o.id for o in s.objects(mask_state="box")] == [oid] and s.objects(mask_state="mask") == []
    s.delete(oid)
    assert s.undo()["kind"] == "delete" and s.object(oid).state == "accepted"


def test_box_only_objects_are_labelled_from_their_box(tmp_path):
    path, _ = box_only_file(tmp_path)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    import_coco(path, tmp_path, s)
    boxes = s.objects(mask_state="box")
    s.mark_pending([o.id for o in boxes])
    with FakeLMM() as server:
        # asked for mask crops: a box-only object still gets its box's crop
        labeler = Labeler(LabelerConfig(base_url=server.url, api_key="k", crop=CropSettings(mode="mask")),
                          LabelCache(tmp_path / "answers.sqlite"))
        summary = label_objects(s, [o.id for o in boxes], labeler)
    assert summary.labelled == 4 and summary.failed == 0
    sizes = sorted(c.shape[:2] for c in server.images)
    want = []
    for o in boxes:  # each crop is the box's own window (box plus margin, clipped to the image)
        x0, y0, x1, y1 = crop_box(pixel_box(o.bbox, (H, W)), (H, W), CropSettings())
        want.append((y1 - y0, x1 - x0))
    assert sizes == sorted(want)
    crop = next(c for c in server.images if c.shape[:2] == (60, 84))  # box 28,18 64x44: margins 10 and 8 px
    assert (crop[8, 10:74] == [255, 0, 0]).all()  # the box, drawn in red
    assert crop[30, 40].tolist() == [220, 220, 220] and crop[2, 2].tolist() == [12, 12, 12]  # nothing dimmed
    assert all(s.object(o.id).label == "Siamese cat" for o in boxes)


def test_a_real_detection_file_imports_whole(tmp_path):
    """The Oxford-IIIT Pet COCO file (real boxes) with its segmentations stripped, as detection exports write it:
    every annotation whose image is here is kept, box-only, with its category; the export loads in pycocotools."""
    pets = needs_shared("pets")
    doc = json.loads((pets / "instances_sample_all.json").read_text())
    for a in doc["annotations"]:
        a["segmentation"] = []
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    here = {p.name for p in (pets / "images").iterdir()}
    on_disk = {im["id"] for im in doc["images"] if im["file_name"].split("/")[-1] in here}
    expected = [a for a in doc["annotations"] if a["image_id"] in on_disk]
    assert len(expected) > 100
    s = Store(tmp_path / "p.clicklabel", root=pets / "images")
    rep = import_coco(tmp_path / "boxes.json", pets / "images", s)
    assert rep.annotations == rep.boxes == len(expected)  # count in = count kept
    # the only refusals: images that are not in the folder, and their annotations
    assert all("not found" in p or "is missing or was refused" in p for p in rep.problems), rep.problems[:3]
    names = {c["id"]: c["name"] for c in doc["categories"]}
    kept = {o.source_id: o for o in s.objects()}
    for a in expected:
        assert kept[a["id"]].label == names[a["category_id"]] and kept[a["id"]].mask_state == "box"
    export = tmp_path / "out.json"
    export_coco(s, export)
    coco = COCO(str(export))
    assert len(coco.dataset["annotations"]) == len(expected)
    assert all(a["segmentation"] == [] for a in coco.dataset["annotations"])
