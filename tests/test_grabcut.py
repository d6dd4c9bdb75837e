import numpy as np

from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.segment import Prompt
from clicklabel.segment.grabcut import GrabCutEngine


def _disk_image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :160]
    disk = (yy - 60) ** 2 + (xx - 90) ** 2 < 30**2
    img = np.where(disk[..., None], [200, 40, 40], [30, 90, 160]).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), disk


def test_box_prompt_finds_the_object():
    img, disk = _disk_image()
    eng = GrabCutEngine()
    eng.set_image(img)
    r = eng.predict(Prompt.make(box=(50, 20, 130, 100)))[0]
    assert mask_iou(r.mask, disk) > 0.9
    assert r.bbox == tight_bbox(r.mask)


def test_points_only_and_negative_seed():
    img, disk = _disk_image()
    eng = GrabCutEngine()
    eng.set_image(img[..., 0])  # grayscale works too
    r = eng.predict(Prompt.make([(90, 60)]))[0]
    assert mask_iou(r.mask, disk) > 0.8
    r2 = eng.predict(Prompt.make([(90, 60), (90, 40)], [1, 0]), previous=r)[0]
    assert not r2.mask[40, 90]


def test_batch_boxes():
    img, disk = _disk_image()
    eng = GrabCutEngine()
    eng.set_image(img)
    boxes = [(50, 20, 130, 100), (0, 0, 40, 40)]
    out = eng.predict_boxes(boxes)
    assert len(out) == 2 and mask_iou(out[0].mask, disk) > 0.9
    # the second box holds background only: its mask (if any) stays inside it, off the disk
    assert not out[1].mask[40:].any() and not out[1].mask[:, 40:].any() and not (out[1].mask & disk).any()
    for b, r in zip(boxes, out):  # each the mask a single call gives for its own box
        assert mask_iou(r.mask, eng.predict(Prompt.make(box=b))[0].mask) >= 0.99
