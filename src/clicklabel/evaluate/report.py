"""``clicklabel report``: compare selections by provenance (manual / click / box / proposed) in a real project:
objects, seconds and clicks per object, acceptance of proposals, how often people overruled the model's label,
tokens and money per object, and the agreement of manual and SAM selections of the same object; then the review
lists (``review.py``): box-only and refined objects, those refine flagged, and the class audit's disagreements,
with crops."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..files import ensure_folder, save_figure, write_text
from ..masks import box_iou, mask_iou
from ..project import Store
from .review import review_numbers, write_review

SAM_KINDS = ("click", "box", "proposed")


def compute(store: Store) -> dict:
    """The report's numbers, from the store's objects and event log."""
    objs = store.objects(states=("accepted",))
    masked = [o for o in objs if o.has_mask]  # box-only objects have no mask to compare yet
    by = defaultdict(list)
    for o in objs:
        by[o.provenance].append(o)
    rows = {}
    for prov, group in sorted(by.items()):
        secs = [o.seconds for o in group if o.seconds is not None]
        clicks = [o.clicks for o in group if o.clicks is not None]
        labelled = [o for o in group if o.label_status in ("done", "edited")]
        model_labelled = [o for o in labelled if o.lmm_model]
        rows[prov] = {
            "objects": len(group),
            "seconds_per_object": float(np.mean(secs)) if secs else None,
            "median_seconds": float(np.median(secs)) if secs else None,
            "clicks_per_object": float(np.mean(clicks)) if clicks else None,
            "labelled": len(labelled),
            "human_edits": sum(o.label_status == "edited" for o in model_labelled),
            "edit_rate": (sum(o.label_status == "edited" for o in model_labelled) / len(model_labelled))
            if model_labelled else None,
            "tokens_per_object": float(np.mean([o.prompt_tokens + o.completion_tokens for o in group])),
            "cost_per_object": float(np.mean([o.cost for o in group])),
        }
    decided = [e for e in store.events(["accept_proposal", "reject_proposal"]) if e["undone"] == 0]
    acc = sum(e["kind"] == "accept_proposal" for e in decided)
    auto = sum(1 for o in by.get("proposed", []) if not any(e["object_id"] == o.id for e in decided))
    rej = sum(e["kind"] == "reject_proposal" for e in decided)
    proposals = {"accepted": acc + auto, "rejected": rej,
                 "acceptance_rate": (acc + auto) / (acc + auto + rej) if acc + auto + rej else None}
    pairs = []
    for image_id in {o.image_id for o in masked}:
        manual = [o for o in masked if o.image_id == image_id and o.provenance == "manual"]
        sam = [o for o in masked if o.image_id == image_id and o.provenance in SAM_KINDS]
        for m in manual:
            if not sam:
                continue
            mm = m.mask
            best = max(sam, key=lambda s: mask_iou(mm, s.mask))
            pairs.append({"manual_id": m.id, "sam_id": best.id, "mask_iou": mask_iou(mm, best.mask),
                          "box_iou": box_iou(m.bbox, best.bbox)})
    return {"by_provenance": rows, "proposals": proposals, "pairs": pairs,
            "mean_pair_mask_iou": float(np.mean([p["mask_iou"] for p in pairs])) if pairs else None,
            "mean_pair_box_iou": float(np.mean([p["box_iou"] for p in pairs])) if pairs else None,
            "usage": store.usage(), **review_numbers(store)}


def _fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_report(store: Store, out: str | Path) -> dict:
    """Write ``index.html`` with PNG plots and ``numbers.json`` into ``out``; returns the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ensure_folder(out)
    nums = compute(store)
    rows = nums["by_provenance"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    provs = list(rows)
    ax.bar(provs, [rows[p]["seconds_per_object"] or 0 for p in provs], color="#4c72b0")
    ax.set_ylabel("seconds per object")
    ax.set_title("time per object by selection")
    fig.tight_layout()
    save_figure(fig, out / "seconds_per_object.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([p["mask_iou"] for p in nums["pairs"]], bins=10, range=(0, 1), color="#55a868")
    ax.set_xlabel("mask IoU, manual vs SAM selection of the same object")
    ax.set_ylabel("objects")
    fig.tight_layout()
    save_figure(fig, out / "manual_vs_sam_iou.png")
    plt.close(fig)
    cols = ["objects", "seconds_per_object", "median_seconds", "clicks_per_object", "labelled", "human_edits",
            "edit_rate", "tokens_per_object", "cost_per_object"]
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in ["selection"] + cols)
    body = "".join(
        f"<tr><td>{html.escape(p)}</td>" + "".join(
            f'<td data-key="{p}.{c}">{_fmt(r[c], 6 if c == "cost_per_object" else 2)}</td>' for c in cols) + "</tr>"
        for p, r in rows.items())
    pr = nums["proposals"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>clicklabel report</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>clicklabel report: {html.escape(store.path.name)}</h1>
<h2>Selections by provenance</h2><table><tr>{head}</tr>{body}</table>
<h2>Proposals</h2><p>accepted <span data-key="proposals.accepted">{pr['accepted']}</span>, rejected
<span data-key="proposals.rejected">{pr['rejected']}</span>, acceptance rate
<span data-key="proposals.acceptance_rate">{_fmt(pr['acceptance_rate'], 4)}</span></p>
<h2>Manual vs SAM selection of the same object</h2><p>{len(nums['pairs'])} pairs; mean mask IoU
<span data-key="pairs.mask_iou">{_fmt(nums['mean_pair_mask_iou'], 4)}</span>, mean box IoU
<span data-key="pairs.box_iou">{_fmt(nums['mean_pair_box_iou'], 4)}</span></p>
<img src="seconds_per_object.png"><img src="manual_vs_sam_iou.png">
{write_review(store, nums, out)}
<h2>Model use</h2><p>{nums['usage']['prompt_tokens']:,} prompt + {nums['usage']['completion_tokens']:,} completion
tokens, ${nums['usage']['cost']:.4f}</p>
<script type="application/json" id="numbers">{json.dumps(nums)}</script></body></html>"""
    write_text(out / "index.html", doc)
    write_text(out / "numbers.json", json.dumps(nums, indent=2))
    return nums
