"""Concept prompts on a ``clicklabel serve`` server (SAM 3): the client has uploaded the image once (its embedding
key), then sends each concept as text (``POST /v1/concepts/{key}``: ``{"concept", "exemplars", "negative",
"threshold"}``); the server runs the text encoder (once per phrase: its text cache), the detector and the masks on
its cached vision features and answers ``{"instances": [{"score", "rle"}]}``, best first.

``answer`` is the server's half (plain Python, no web framework), ``remote_find`` the client's."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ClickLabelError
from ..masks import decode_rle, encode_rle

MAX_EXEMPLARS = 64
MAX_PHRASE = 100


def _boxes(value, what: str) -> list[tuple[float, ...]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_EXEMPLARS:
        raise ClickLabelError(f"{what}: a list of at most {MAX_EXEMPLARS} boxes")
    out = []
    for b in value:
        if not isinstance(b, list) or len(b) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b):
            raise ClickLabelError(f"{what}: each box is four finite numbers x0, y0, x1, y1")
        out.append(tuple(float(v) for v in b))
    return out


def answer(engine, emb, payload) -> dict:
    """The server's answer for one concept on a cached embedding (ClickLabelError: a bad request, in one line)."""
    if not hasattr(engine, "find"):
        raise ClickLabelError(f"this server's model ({engine.model}) takes no concept prompts; serve --model sam3")
    if not isinstance(payload, dict):
        raise ClickLabelError("the body is a JSON object {\"concept\", \"exemplars\", \"threshold\"}")
    phrase = payload.get("concept")
    if phrase is not None and (not isinstance(phrase, str) or not 0 < len(phrase) <= MAX_PHRASE):
        raise ClickLabelError(f"concept: a phrase of 1 to {MAX_PHRASE} characters")
    threshold = payload.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise ClickLabelError("threshold: a number from 0 to 1")
    exemplars, negative = _boxes(payload.get("exemplars"), "exemplars"), _boxes(payload.get("negative"), "negative")
    engine.set_embedding(emb)
    found = engine.find(phrase, exemplars, threshold=float(threshold), negative=negative)
    return {"instances": [{"score": s, "rle": encode_rle(m)} for s, m in found]}


def remote_find(engine, client):
    """``engine.find`` sent to the server ``client`` (a ``remote.EncoderClient``) for the engine's current image."""

    def find(phrase, exemplars=(), threshold: float = 0.5, mask_threshold: float = 0.5, negative=()):
        from .remote import RemoteError

        engine._require_image()
        body = {"concept": phrase, "exemplars": [list(map(float, b)) for b in exemplars],
                "negative": [list(map(float, b)) for b in negative], "threshold": threshold}
        r = client.request("POST", f"/v1/concepts/{engine.current_key}", json=body)
        if r.status_code != 200:
            raise client._refused(r)
        try:
            items = r.json()["instances"]
            return [(float(i["score"]), np.asarray(decode_rle(i["rle"]), bool)) for i in items]
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"the server {client.url} sent an unreadable concept answer") from None

    return find
