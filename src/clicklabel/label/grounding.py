"""Grounding by the multimodal model, for those without SAM 3: the OpenAI-compatible model is sent the whole image
once with the concepts and answers with a box per instance; the segmentation engine already loaded turns each box
into a mask (``predict_boxes``).

The answer's schema (``grounding_schema``)::

    {"objects": [{"concept": "<one of the concepts>", "box": [x0, y0, x1, y1], "confidence": 0.9}, ...]}

with the box in pixels of the image as sent (its size is in the question; boxes are scaled back to the image).
Every box is checked on its own: not an object of that shape, a concept not asked for, a box that is not four
finite numbers, empty, or outside the image is refused with its reason, and the others are kept. An answer that is
not JSON, or has no ``objects`` list, refuses the whole image with its reason. Nothing here raises for the model's
or the network's failures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LabelError
from .crop import data_url, encode_image
from .prices import cost, image_tokens, load_prices, price_for

SYSTEM = ("You find objects in images. Answer only with JSON: {\"objects\": [{\"concept\": ..., \"box\": [x0, y0, "
          "x1, y1], \"confidence\": ...}]}: one entry per instance, the box in pixels of the image (x to the right, "
          "y down, x0 < x1, y0 < y1), the concept exactly as asked, confidence from 0 to 1. No instance: {\"objects\": "
          "[]}.")
EDGE_TOLERANCE = 2.0  # pixels of the image as sent: rounding beyond the border is clipped, more is refused
TYPICAL_COMPLETION_TOKENS = 120


def grounding_schema(concepts: Sequence[str]) -> dict:
    box = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
    item = {"type": "object", "additionalProperties": False, "required": ["concept", "box", "confidence"],
            "properties": {"concept": {"type": "string", "enum": list(concepts)}, "box": box,
                           "confidence": {"type": "number"}}}
    return {"type": "object", "additionalProperties": False, "required": ["objects"],
            "properties": {"objects": {"type": "array", "items": item}}}


def question(concepts: Sequence[str], width: int, height: int) -> str:
    return (f"Find every instance of each of these concepts: {', '.join(concepts)}. The image is {width}x{height} "
            "pixels; give each box in those pixels.")


@dataclass
class GroundedBox:
    concept: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the original image
    confidence: float | None


def parse_boxes(content, concepts: Sequence[str], width: int, height: int,
                scale: float = 1.0) -> tuple[list[GroundedBox], list[str]]:
    """(boxes kept, reasons of those refused) from the model's answer text; ``width`` x ``height``: the image as
    sent, ``scale``: original pixels per sent pixel."""
    try:
        doc = json.loads(content) if isinstance(content, str) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        text = str(content)[:80].replace("\n", " ")
        return [], [f"the answer is not {{\"objects\": [...]}} (it began: {text!r})"]
    kept: list[GroundedBox] = []
    refused: list[str] = []
    for n, item in enumerate(doc["objects"]):
        reason, box = check_box(item, concepts, width, height)
        if reason:
            refused.append(f"box {n + 1}: {reason}")
            continue
        conf = item.get("confidence")
        ok_conf = isinstance(conf, (int, float)) and not isinstance(conf, bool) and 0 <= conf <= 1
        kept.append(GroundedBox(item["concept"], tuple(v * scale for v in box), float(conf) if ok_conf else None))
    return kept, refused


def check_box(item, concepts: Sequence[str], width: int, height: int):
    """(reason, None) for a refused entry, (None, clipped box) for a kept one."""
    if not isinstance(item, dict) or "box" not in item or "concept" not in item:
        return "not an object with \"concept\" and \"box\"", None
    if item["concept"] not in concepts:
        return f"concept {str(item['concept'])[:40]!r} was not asked for", None
    box = item["box"]
    if not isinstance(box, list) or len(box) != 4 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return f"box {str(box)[:60]} is not four numbers", None
    if not all(math.isfinite(v) for v in box):
        return f"box {box} has a number that is not finite", None
    x0, y0, x1, y1 = (float(v) for v in box)
    t = EDGE_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        return f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is outside the {width}x{height} image", None
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is empty (needs x0 < x1 and y0 < y1)", None
    return None, (x0, y0, x1, y1)


class Grounding:
    """One grounding run: the model, its client (the ``label`` settings' server and key) and the size images are
    sent at."""

    def __init__(self, lmm: str, base_url: str | None = None, api_key: str | None = None, max_side: int = 1024,
                 detail: str = "high", timeout: float = 120.0, max_retries: int = 4, prices=None):
        self.model = lmm
        self.base_url = base_url
        self.api_key = api_key
        self.max_side = max_side
        self.detail = detail
        self.timeout = timeout
        self.max_retries = max_retries
        self.prices = prices if prices is not None else load_prices()
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import openai

            from .client import tls_context

            key = self.api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                raise LabelError("OPENAI_API_KEY is not set. Export your key (for a local server such as Ollama or "
                                 "vLLM, any value works, together with OPENAI_BASE_URL)")
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url or os.environ.get("OPENAI_BASE_URL"),
                                         max_retries=self.max_retries, timeout=self.timeout,
                                         http_client=openai.DefaultHttpxClient(verify=tls_context()))
        return self._client

    def sent_size(self, height: int, width: int) -> tuple[int, int, float]:
        s = min(1.0, self.max_side / max(height, width))
        return max(1, round(width * s)), max(1, round(height * s)), 1.0 / s

    def ask(self, image: np.ndarray, concepts: Sequence[str]):
        """(boxes, refused reasons, prompt tokens, completion tokens, cost) for one image."""
        import cv2
        import openai

        h, w = image.shape[:2]
        sw, sh, scale = self.sent_size(h, w)
        sent = image if (sw, sh) == (w, h) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": [
            {"type": "text", "text": question(concepts, sw, sh)},
            {"type": "image_url", "image_url": {"url": data_url(encode_image(sent, "png")), "detail": self.detail}}]}]
        rf = {"type": "json_schema", "json_schema": {"name": "grounding", "strict": True,
                                                     "schema": grounding_schema(concepts)}}
        try:
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=2000,
                                                           response_format=rf)
            except openai.BadRequestError as exc:
                if "response_format" not in str(exc).lower() and "json_schema" not in str(exc).lower():
                    raise
                resp = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=2000,
                                                           response_format={"type": "json_object"})
        except openai.AuthenticationError:
            raise LabelError("the API key was refused (401); check OPENAI_API_KEY") from None
        except (openai.APIError, ValueError) as exc:
            return [], [f"no answer: {type(exc).__name__}: {str(exc)[:160]}"], 0, 0, 0.0
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        money = cost(self.model, pt, ct, self.prices)
        try:
            msg = resp.choices[0].message
            content = msg.content if not getattr(msg, "refusal", None) else None
        except (AttributeError, IndexError, TypeError):
            return [], ["the server's answer has no choices"], pt, ct, money
        if content is None:
            return [], ["the model refused or gave no text"], pt, ct, money
        boxes, refused = parse_boxes(content, concepts, sw, sh, scale)
        return boxes, refused, pt, ct, money

    def find(self, engine, image: np.ndarray, concepts: Sequence[str], existing=(), progress=None, stop=None,
             on_concept=None):
        """``segment.concepts.ConceptReport`` for the engine's current image (``image``): the model's boxes, each
        made a mask by the engine. A box whose mask comes out empty is refused too."""
        from ..segment.concepts import DUPLICATE_IOU, ConceptInstance, ConceptReport, mask_iou

        rep = ConceptReport(requests=1)
        if stop is not None and stop.is_set():
            rep.cancelled, rep.requests = True, 0
            return rep
        boxes, rep.refused, _, _, rep.cost = self.ask(image, concepts)
        found: list[tuple[ConceptInstance, tuple]] = []
        masks = engine.predict_boxes([b.box for b in boxes]) if boxes else []
        for n, (b, m) in enumerate(zip(boxes, masks)):
            if m.empty:
                rep.refused.append(f"{b.concept} box {n + 1}: the segmentation model found no mask in it")
                continue
            found.append((ConceptInstance(b.concept, b.confidence if b.confidence is not None else m.score, m.mask),
                          b.box))
        for c in concepts:
            rep.found[c] = sum(1 for i, _ in found if i.label == c)
            if on_concept is not None:
                on_concept(c, [i for i, _ in found if i.label == c])
        # one instance per box the model gave, except the same box under two concepts (kept with both names)
        kept: list[tuple[ConceptInstance, tuple]] = []
        for inst, box in sorted(found, key=lambda f: -f[0].score):
            twin = next((k for k, kb in kept if box_iou(box, kb) >= DUPLICATE_IOU), None)
            if twin is None:
                kept.append((inst, box))
            elif inst.label != twin.label and inst.label not in {n for n, _ in twin.also}:
                twin.also.append((inst.label, inst.score))
        rep.instances = [i for i, _ in kept if not any(mask_iou(i.mask, m) >= DUPLICATE_IOU for m in existing)]
        if progress is not None:
            progress(1, 1)
        return rep

    def estimate(self, sizes: Sequence[tuple[int, int]], concepts: Sequence[str]) -> dict:
        """Requests, tokens and money for images of ``sizes`` ((height, width) each), sending nothing."""
        text = (len(SYSTEM) + len(question(concepts, 9999, 9999)) + len(json.dumps(grounding_schema(concepts)))) // 4
        prompt = 0
        for h, w in sizes:
            sw, sh, _ = self.sent_size(h, w)
            prompt += text + image_tokens(self.model, sw, sh, self.detail, self.prices)
        completion = len(sizes) * TYPICAL_COMPLETION_TOKENS
        return {"requests": len(sizes), "prompt_tokens": prompt, "completion_tokens": completion,
                "cost": cost(self.model, prompt, completion, self.prices),
                "priced": price_for(self.model, self.prices) is not None}


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
