"""Photos with an EXIF orientation are used as displayed everywhere: store sizes, masks, crops, export."""

import json

import numpy as np
import pytest
from PIL import Image

from clicklabel.annotate import AnnotationSession
from clicklabel.cli import main
from clicklabel.images import image_size, load_image
from clicklabel.masks import tight_bbox
from clicklabel.project import Store, open_project

# What a viewer shows for each EXIF orientation, written independently of Pillow (numpy on the stored pixels).
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # stored turned left: shown turned 90 degrees clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transposed across the other diagonal
    8: lambda a: np.rot90(a, 1),
}


def _stored_pixels() -> np.ndarray:
    """335 x 500 (H x W) like the issue's photo, with a different flat colour in each quadrant."""
    a = np.zeros((335, 500, 3), np.uint8)
    a[:160, :240] = (250, 20, 20)
    a[:160, 240:] = (20, 250, 20)
    a[160:, :240] = (20, 20, 250)
    a[160:, 240:] = (240, 240, 20)
    return a


def _photo(path, orientation: int) -> np.ndarray:
    """A JPEG with EXIF orientation ``orientation``; returns the pixels as displayed."""
    raw = _stored_pixels()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(raw).save(path, quality=95, exif=exif.tobytes())
    return np.ascontiguousarray(DISPLAYED[orientation](raw))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_as_displayed(tmp_path, orientation):
    shown = _photo(tmp_path / "p.jpg", orientation)
    img = load_image(tmp_path / "p.jpg")
    assert img.shape == shown.shape and image_size(tmp_path / "p.jpg") == shown.shape[:2]
    assert np.abs(img.astype(int) - shown).mean() < 3  # JPEG noise only: every quadrant where it is shown


@pytest.mark.parametrize("orientation", range(1, 9))
def test_project_export_has_displayed_size_and_a_tight_box_inside_it(tmp_path, capsys, orientation):
    """`add` stores the displayed size; a mask accepted on the displayed image exports with a tight bbox that lies
    inside that size; labelling crops and the widget's image read the same pixels."""
    shown = _photo(tmp_path / "p.jpg", orientation)
    h, w = shown.shape[:2]
    assert main(["add", str(tmp_path / "proj"), str(tmp_path / "p.jpg")]) == 0
    s = AnnotationSession(open_project(tmp_path / "proj"), engine=None)
    image = s.load(0)
    assert image.shape == shown.shape
    # a band along the displayed image's long side (wide on landscape, tall on portrait), in one quadrant
    band = np.zeros((h, w), bool)
    band[5 : h // 2 - 20, 10 : w - 30] = True
    s.index, s.image = 0, image
    oid = s.accept_manual(band)
    assert main(["export", str(tmp_path / "proj"), "--out", str(tmp_path / "out.json")]) == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    (im,) = doc["images"]
    (ann,) = doc["annotations"]
    assert (im["width"], im["height"]) == (w, h)
    x, y, bw, bh = ann["bbox"]
    assert [x, y, bw, bh] == list(tight_bbox(band)) and x + bw <= w and y + bh <= h
    assert np.array_equal(s.object(oid).mask, band)
    capsys.readouterr()


def test_project_of_an_older_version_with_rotated_sizes_is_repaired(tmp_path):
    """clicklabel 0.1 stored an EXIF-rotated photo with its size before rotation (335x500 for a 500x335 photo)
    while masks were made on the displayed image; opening the project repairs the size, so masks decode whole."""
    shown = _photo(tmp_path / "p.jpg", 6)
    h, w = shown.shape[:2]  # 500 x 335 as displayed
    s = Store(tmp_path / "old.clicklabel", root=tmp_path)
    iid = s.add_image_file(tmp_path / "p.jpg")
    band = np.zeros((h, w), bool)
    band[40:400, 100:150] = True
    oid = s.accept(iid, band)
    # what 0.1 left behind: the pre-rotation size, schema 2 (no leases table, none of schema 4's, 5's or 6's additions)
    s.conn.execute("UPDATE images SET width=?, height=? WHERE id=?", (h, w, iid))
    s.conn.execute("DROP TABLE label_leases")
    s.conn.executescript("DROP TABLE descriptors; DROP TABLE image_descriptors;")
    s.conn.executescript("DROP INDEX objects_mask_state; DROP INDEX objects_review; DROP TABLE label_checks; "
                         + "".join(f"ALTER TABLE objects DROP COLUMN {c};"
                                   for c in ("mask_state", "given_bbox", "refined_by", "review")))
    s.conn.executescript("".join(f"ALTER TABLE {t} DROP COLUMN extra;" for t in ("images", "objects", "categories")))
    s.conn.executescript("DROP INDEX images_frame; DROP INDEX objects_track; DROP TABLE tracks; DROP TABLE sequences; "
                         + "".join(f"ALTER TABLE {t} DROP COLUMN {c};" for t, c in (
                             ("images", "sequence_id"), ("images", "frame_index"), ("objects", "track_id"),
                             ("objects", "track_role"))))
    s.conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    s.close()
    s = Store(tmp_path / "old.clicklabel")
    assert (s.image(iid).width, s.image(iid).height) == (w, h)
    assert np.array_equal(s.object(oid).mask, band)
    assert s.events(["repair_size"])[0]["data"] == {"before": [h, w], "after": [w, h]}
