"""What we ask the model: the system prompt, the JSON schema of the answer (with the vocabulary as an enum), and
a defensive parser for servers that cannot enforce the schema."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..errors import LabelError
from ..project.schema import MAX_LABEL_CHARS

MAX_ANSWER_CHARS = 1000  # the model's whole answer (we ask for max_tokens=200: anything longer is not an answer)

SYSTEM_PROMPT = (
    "You label objects for an image-annotation tool. The image shows one object: the part in full colour, "
    "the rest is dimmed or greyed. Name that object. Answer with JSON only: "
    '{"label": fine-grained name, "supercategory": coarse class, "confidence": number from 0 to 1}. '
    'Be as specific as the image allows, for example "Siamese cat" with supercategory "cat".'
)
USER_PROMPT = "What is the highlighted object?"


@dataclass
class Answer:
    label: str  # the fine-grained name: COCO's category name
    supercategory: str | None  # the coarse class: COCO's supercategory
    confidence: float | None


def answer_schema(vocabulary: list[str] | None = None) -> dict:
    """The strict JSON schema of an answer; with a vocabulary, ``label`` is an enum of it."""
    label = {"type": "string", "description": "fine-grained name of the object"}
    if vocabulary:
        label = {"type": "string", "enum": list(vocabulary), "description": "one of the allowed labels"}
    return {
        "type": "object",
        "properties": {
            "label": label,
            "supercategory": {"type": "string", "description": "coarse class, e.g. cat, dog, car"},
            "confidence": {"type": "number", "description": "0 to 1"},
        },
        "required": ["label", "supercategory", "confidence"],
        "additionalProperties": False,
    }


def user_text(template: str | None, vocabulary: list[str] | None) -> str:
    """The user message text: the template (``{vocabulary}`` is filled in) plus the allowed labels, if any."""
    text = template or USER_PROMPT
    vocab = ", ".join(vocabulary) if vocabulary else ""
    if "{vocabulary}" in text:
        return text.replace("{vocabulary}", vocab)
    if vocabulary:
        text += f" Answer with one of these labels: {vocab}."
    return text


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_answer(text: str | None, vocabulary: list[str] | None = None) -> Answer:
    """Read the model's answer. JSON (possibly inside prose or a code fence) is preferred; a short plain-text
    answer is taken as the label. Answers longer than MAX_ANSWER_CHARS, names longer than MAX_LABEL_CHARS and
    labels outside the vocabulary are refused."""
    if not text or not text.strip():
        raise LabelError("the model sent an empty answer")
    text = text.strip()
    if len(text) > MAX_ANSWER_CHARS:
        raise LabelError(f"the model's answer is {len(text):,} characters long; at most {MAX_ANSWER_CHARS:,} are "
                         f"taken: {text[:60]!r}...")
    data = None
    m = _JSON_OBJECT.search(text)
    if m:
        try:
            data = json.loads(m.group(0))
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, dict) and isinstance(data.get("label"), str) and data["label"].strip():
        label = data["label"].strip()
        cat = data.get("supercategory", data.get("category"))  # servers without the schema may use either
        conf = data.get("confidence")
        try:
            conf = None if conf is None or isinstance(conf, bool) else float(conf)
            conf = min(1.0, max(0.0, conf)) if conf is not None and math.isfinite(conf) else None
        except (TypeError, ValueError):
            conf = None
        ans = Answer(label, cat.strip() if isinstance(cat, str) and cat.strip() else None, conf)
    elif "{" in text or "[" in text:
        raise LabelError(f"the model's answer is not the JSON we asked for: {text[:120]!r}")
    elif len(text) <= 80 and "\n" not in text:
        ans = Answer(text.strip('."'), None, None)
    else:
        raise LabelError(f"the model's answer is not the JSON we asked for: {text[:120]!r}")
    for name in (ans.label, ans.supercategory or ""):
        if len(name) > MAX_LABEL_CHARS:
            raise LabelError(f"the model's answer names a label of {len(name):,} characters; at most "
                             f"{MAX_LABEL_CHARS} are taken: {name[:60]!r}...")
    if not ans.label:
        raise LabelError(f"the model's answer has no label: {text[:120]!r}")
    if vocabulary:
        match = next((v for v in vocabulary if v.lower() == ans.label.lower()), None)
        if match is None:
            raise LabelError(f"the model answered {ans.label[:80]!r}, which is not in the vocabulary")
        ans.label = match
    return ans
