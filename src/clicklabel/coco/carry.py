"""What a COCO file carries beyond the fields clicklabel works with, kept so that nothing is lost between tools:
the other keys of each image, annotation and category (CVAT's ``attributes``, a license, a URL, a colour) and the
file's top-level keys (``info``, ``licenses``), written back on export; and clicklabel's own per-annotation block
(``clicklabel``: provenance, label status, clicks, seconds, score, engine and model, the box an object came with,
the review flag), read back on import so that export -> import -> export gives the same file."""

from __future__ import annotations

import json
import math

from ..project.schema import LABEL_STATUSES, PROVENANCES

EXTRA_KEY = "clicklabel"  # our per-object fields, ignored by COCO readers
UNLABELLED = "unlabelled"  # the category an export gives objects without a label
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", EXTRA_KEY)
CATEGORY_KEYS = ("id", "name", "supercategory")
DOCUMENT_KEYS = ("images", "annotations", "categories")
MAX_EXTRA_CHARS = 100_000  # per entry: a tool's attributes, not a second data set hidden in one annotation
META_KEY = "coco_extra"  # the file's top-level keys (info, licenses), in the project's meta table


def extra(entry: dict, known) -> dict | None:
    """The keys of ``entry`` that are not in ``known``, or None when there are none (or too many to keep)."""
    rest = {k: v for k, v in entry.items() if k not in known}
    if not rest:
        return None
    try:
        text = json.dumps(rest, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return rest if len(text) <= MAX_EXTRA_CHARS else None


def dumps(value: dict | None) -> str | None:
    return json.dumps(value, separators=(",", ":")) if value else None


def loads(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _finite(v, low: float | None = None) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (low is None or v >= low):
        return v
    return None


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 else None


def _text(v, limit: int = 200) -> str | None:
    return v if isinstance(v, str) and 0 < len(v) <= limit else None


def _box(v) -> tuple | None:
    if isinstance(v, list) and len(v) == 4 and all(_finite(x) is not None for x in v) and v[2] >= 0 and v[3] >= 0:
        return tuple(float(x) for x in v)
    return None


def read_ours(block) -> tuple[dict, bool]:
    """Our block of an annotation, checked field by field: (the fields to restore, whether some were unreadable).
    ``labelled`` says whether the object had a label (an unlabelled one is exported under 'unlabelled')."""
    if not isinstance(block, dict):
        return {}, block is not None
    out: dict = {"labelled": "label" in block}
    readers = {
        "provenance": lambda v: v if v in PROVENANCES else None,
        "label_status": lambda v: v if v in LABEL_STATUSES else None,
        "label_confidence": lambda v: _finite(v),
        "supercategory": _text,
        "clicks": _count,
        "seconds": lambda v: _finite(v, 0),
        "score": lambda v: _finite(v),
        "engine": _text,
        "model": _text,
        "lmm_model": _text,
        "tokens": _count,
        "cost": lambda v: _finite(v, 0),
        "given_bbox": _box,
        "review": lambda v: _text(v, 1000),
        "object_id": lambda v: v if _count(v) else None,
    }
    bad = False
    for key, read in readers.items():
        if key in block and block[key] is not None:
            value = read(block[key])
            bad |= value is None
            if value is not None:
                out[key] = value
    return out, bad


def ours(ob) -> dict:
    """An object's block for export (None values left out)."""
    fields = {
        "object_id": ob.id,
        "label": ob.label,
        "supercategory": ob.supercategory,
        "label_status": ob.label_status,
        "label_confidence": ob.label_confidence,
        "provenance": ob.provenance,
        "clicks": ob.clicks,
        "seconds": ob.seconds,
        "score": ob.score,
        "engine": ob.engine,
        "model": ob.model,
        "lmm_model": ob.lmm_model,
        "tokens": ob.prompt_tokens + ob.completion_tokens,
        "cost": ob.cost,
        "mask_state": ob.mask_state,
        "given_bbox": list(ob.given_bbox) if ob.given_bbox else None,  # the box it came with, before refine
        "review": ob.review,  # why a person should look at it
    }
    return {k: v for k, v in fields.items() if v is not None}


# -- the store's side ------------------------------------------------------------------------------------------
def restore(store, object_id: int, fields: dict, extras: dict | None) -> None:
    """Inside a transaction: an imported object's own fields (our block) and its other keys, as they were."""
    sets = {"extra": dumps(extras)}
    for key in ("label_status", "label_confidence", "lmm_model", "cost", "review"):
        if key in fields:
            sets[key] = fields[key]
    if "tokens" in fields:
        sets["prompt_tokens"], sets["completion_tokens"] = fields["tokens"], 0
    if "given_bbox" in fields:
        sets["given_bbox"] = json.dumps(list(fields["given_bbox"]))
    cols = ", ".join(f"{k}=?" for k in sets)
    store.conn.execute(f"UPDATE objects SET {cols} WHERE id=?", (*sets.values(), object_id))


def set_extra(store, table: str, row_id: int, value: dict | None) -> None:
    """Inside a transaction: the other keys of an image or category (kept: a later import adds to them)."""
    if not value:
        return
    old = loads(store.conn.execute(f"SELECT extra FROM {table} WHERE id=?", (row_id,)).fetchone()[0])
    store.conn.execute(f"UPDATE {table} SET extra=? WHERE id=?", (dumps({**old, **value}), row_id))


def extras(store, table: str) -> dict[int, dict]:
    """Row id -> its other keys, for the rows that have some."""
    return {int(i): loads(t) for i, t in store.conn.execute(f"SELECT id, extra FROM {table} WHERE extra IS NOT NULL")}


def document_extra(store) -> dict:
    return loads(store.get_meta(META_KEY))


def set_document_extra(store, doc: dict) -> None:
    """Inside a transaction: the file's top-level keys other than images, annotations, categories."""
    rest = extra(doc, DOCUMENT_KEYS)
    if rest:
        merged = {**document_extra(store), **rest}
        store.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_KEY, dumps(merged)))
