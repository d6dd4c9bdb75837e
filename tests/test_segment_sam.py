"""SamEngine on a small random SAM (plumbing) and on the real vit_b architecture (end to end)."""

import numpy as np
import pytest
from segment_anything import SamPredictor

from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import PromptError
from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.segment import Prompt
from clicklabel.segment.sam import SamEngine

from conftest import sample

PROMPTS = {
    "point": dict(points=[(200, 150)]),
    "box": dict(box=(120, 60, 330, 250)),
    "points": dict(points=[(200, 150), (100, 50), (300, 200)], labels=[1, 0, 1]),
    "points+box": dict(points=[(200, 150)], labels=[1], box=(120, 60, 330, 250)),
}


@pytest.fixture(scope="module")
def tiny_on_chelsea(tiny_engine):
    img = sample("chelsea")
    tiny_engine.set_image(img)
    stock = SamPredictor(tiny_engine.sam)
    stock.set_image(img)
    return tiny_engine, stock, img


def _stock(stock, kind, multimask, mask_input=None):
    p = PROMPTS[kind]
    pts = np.array(p["points"], dtype=float) if "points" in p else None
    labels = np.array(p.get("labels", [1] * len(p.get("points", [])))) if pts is not None else None
    box = np.array(p["box"], dtype=float) if "box" in p else None
    return stock.predict(pts, labels, box, mask_input=mask_input, multimask_output=multimask)


@pytest.mark.parametrize("kind", list(PROMPTS))
@pytest.mark.parametrize("multimask", [False, True])
def test_same_masks_as_stock_predictor(tiny_on_chelsea, kind, multimask):
    eng, stock, img = tiny_on_chelsea
    ours = eng.predict(Prompt.make(**PROMPTS[kind]), multimask=multimask)
    masks, scores, logits = _stock(stock, kind, multimask)
    order = np.argsort(-scores, kind="stable")
    assert len(ours) == len(scores) == (3 if multimask else 1)
    for o, i in zip(ours, order):
        assert o.mask.shape == img.shape[:2]
        assert mask_iou(o.mask, masks[i]) >= 0.999
        assert o.score == pytest.approx(float(scores[i]), abs=1e-4)
        assert np.abs(o.logits - logits[i]).max() < 1e-3
        assert o.bbox == tight_bbox(o.mask)


def test_refinement_uses_previous_logits(tiny_on_chelsea):
    eng, stock, _ = tiny_on_chelsea
    first = eng.predict(Prompt.make(**PROMPTS["point"]), multimask=True)[0]
    refined = eng.predict(Prompt.make(**PROMPTS["points"]), previous=first)[0]
    masks, scores, _ = _stock(stock, "points", False, mask_input=first.logits[None])
    assert mask_iou(refined.mask, masks[0]) >= 0.999
    without = eng.predict(Prompt.make(**PROMPTS["points"]))[0]
    assert np.abs(without.logits - refined.logits).max() > 1e-4  # the previous mask really went in


def test_batched_boxes_equal_single_calls(tiny_on_chelsea):
    eng, _, _ = tiny_on_chelsea
    boxes = [(10, 10, 200, 150), (120, 60, 330, 250), (0, 0, 451, 300)]
    batch = eng.predict_boxes(boxes)
    for b, r in zip(boxes, batch):
        single = eng.predict(Prompt.make(box=b))[0]
        assert mask_iou(single.mask, r.mask) >= 0.999
        assert r.score == pytest.approx(single.score, abs=1e-4)


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt.make([(451, 10)]),
        Prompt.make([(-1, 10)]),
        Prompt.make(box=(10, 10, 5, 50)),
        Prompt.make(box=(10, 10, 500, 50)),
        Prompt.make([(1, 1)], labels=[2]),
        Prompt(),
    ],
)
def test_bad_prompts_raise(tiny_on_chelsea, prompt):
    eng, _, _ = tiny_on_chelsea
    with pytest.raises(PromptError):
        eng.predict(prompt)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 255, (50, 70, 4), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65535, (50, 70), dtype=np.uint16),
        np.random.default_rng(3).random((70, 50, 3)).astype(np.float32),
    ],
    ids=["gray", "rgba", "uint16", "float"],
)
def test_every_image_kind(tiny_checkpoint, tmp_path, image):
    eng = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path))
    eng.set_image(image)
    r = eng.predict(Prompt.make([(10, 20)]))[0]
    assert r.mask.shape == image.shape[:2] and r.bbox == tight_bbox(r.mask)


def test_embedding_cache_hit_in_a_new_engine(tiny_checkpoint, tmp_path):
    img = sample("rocket")
    a = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path))
    a.set_image(img)
    assert not a.last_from_cache
    b = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path))
    b.set_image(img)
    assert b.last_from_cache
    assert np.allclose(a.embedding.features, b.embedding.features, atol=1e-2)
    pa = a.predict(Prompt.make([(100, 100)]))[0]
    pb = b.predict(Prompt.make([(100, 100)]))[0]
    assert mask_iou(pa.mask, pb.mask) > 0.99


def test_empty_mask_is_reported_as_empty(tiny_on_chelsea):
    eng, _, _ = tiny_on_chelsea
    from clicklabel.segment.base import MaskResult

    r = MaskResult(np.zeros((5, 5), bool), 0.1)
    assert r.empty and r.bbox is None and r.area == 0


@pytest.mark.slow
def test_vit_b_end_to_end(vit_b_engine, vit_b_checkpoint):
    """The real vit_b architecture from a random checkpoint through our loader: point, box, points with refinement,
    each the mask stock SamPredictor gives for the same embedding."""
    eng = vit_b_engine
    assert eng.model == "vit_b"
    img = sample("coffee")
    h, w = img.shape[:2]
    stock = SamPredictor(eng.sam)
    stock.features = __import__("torch").as_tensor(eng.embedding.features)  # same embedding, no second encode
    stock.original_size, stock.input_size, stock.is_image_set = (h, w), eng.embedding.input_size, True
    pt = Prompt.make([(w // 2, h // 2)])
    res = eng.predict(pt, multimask=True)
    m, s, _ = stock.predict(np.array([[w // 2, h // 2]]), np.array([1]), multimask_output=True)
    assert res[0].mask.any() and mask_iou(res[0].mask, m[int(np.argmax(s))]) >= 0.999  # IoU(empty, empty) is 1
    box = eng.predict(Prompt.make(box=(50, 40, 400, 300)))[0]
    m, _, _ = stock.predict(box=np.array([50, 40, 400, 300]), multimask_output=False)
    assert box.mask.any() and mask_iou(box.mask, m[0]) >= 0.999
    pts = eng.predict(Prompt.make([(w // 2, h // 2), (20, 20)], [1, 0]), previous=res[0])[0]
    m, _, _ = stock.predict(np.array([[w // 2, h // 2], [20, 20]]), np.array([1, 0]), mask_input=res[0].logits[None],
                            multimask_output=False)
    assert pts.mask.any() and mask_iou(pts.mask, m[0]) >= 0.999
    for r in (*res, box, pts):
        assert r.mask.shape == (h, w) and r.bbox == tight_bbox(r.mask)


def test_concurrent_requests_for_one_image_encode_once(tiny_checkpoint, tmp_path):
    import threading

    eng = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path))
    calls = []
    real = eng.encode
    eng.encode = lambda img: calls.append(1) or real(img)
    img = sample("astronaut")
    threads = [threading.Thread(target=eng.get_embedding, args=(img,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_cache_entry_claiming_another_image_size_is_not_trusted(tiny_engine):
    """A well-formed cache entry whose sizes are not those of the image it is keyed by (a 30000x40000 image for
    a 300x451 photo) is dropped and recomputed: masks come out at the image's size, not 7 GB of them."""
    from clicklabel.embeddings import Embedding

    img = sample("chelsea")
    key = tiny_engine.embedding_key(img)
    good = tiny_engine.get_embedding(img)
    for bad in (Embedding(good.features, (30000, 40000), (768, 1024)),
                Embedding(good.features, good.original_size, (1024, 1024)),
                Embedding(good.features[:, :8], good.original_size, good.input_size)):
        tiny_engine.cache.put(key, bad)
        tiny_engine.cache.clear_memory()
        tiny_engine.forget_kept()  # as a new process: the image's state is not on the device
        tiny_engine.set_image(img)
        assert not tiny_engine.last_from_cache and tiny_engine.embedding.original_size == img.shape[:2]
        assert tiny_engine.predict(Prompt.make([(200, 150)]))[0].mask.shape == img.shape[:2]
    tiny_engine.forget_kept()
    tiny_engine.set_image(img)
    assert tiny_engine.last_from_cache  # the recomputed entry is trusted
