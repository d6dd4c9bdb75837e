"""The report's review sections: the objects' mask states (box-only, refined from a box, flagged by refine) and the
class audit (``clicklabel label --check``: agreement counts and the open disagreements), each listed object with
its crop. The lists come from the store's own queries (``Store.objects(flagged=True)``, ``Store.disagreements``),
the ones the widget filters with."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from ..errors import ClickLabelError
from ..files import ensure_folder, write_bytes
from ..project import Store

MAX_CROPS = 500  # crops written per list; the lists themselves are complete


def review_numbers(store: Store) -> dict:
    """Mask states, flagged objects, audit counts and open disagreements, as plain data."""
    paths = {im.id: im.path for im in store.images()}
    states = store.count_mask_states()
    refined = store.conn.execute("SELECT COUNT(*) FROM objects WHERE state='accepted' AND given_bbox IS NOT NULL "
                                 "AND mask_state='mask'").fetchone()[0]
    flagged = [{"object_id": o.id, "image": paths.get(o.image_id), "label": o.label, "review": o.review,
                "mask_state": o.mask_state, "bbox": list(o.bbox),
                "given_bbox": list(o.given_bbox) if o.given_bbox else None}
               for o in store.objects(flagged=True)]
    checks = store.checks()
    count = defaultdict(int)
    for c in checks:
        count[c.verdict] += 1
        if c.decision:
            count[c.decision] += 1
    disagreements = [{"object_id": c.object_id, "image": paths.get(c.image_id), "label": c.given,
                      "model_label": c.label, "model_supercategory": c.supercategory, "confidence": c.confidence,
                      "lmm": c.lmm_model} for c in store.disagreements()]
    return {"masks": {"with_mask": states["mask"], "box_only": states["box"], "refined_from_box": int(refined),
                      "flagged": len(flagged)},
            "flagged": flagged,
            "audit": {"checked": len(checks), "agree": count["agree"], "disagree": count["disagree"],
                      "failed": count["failed"], "accepted_model_label": count["accepted"],
                      "kept_own_label": count["kept"], "open": len(disagreements)},
            "disagreements": disagreements}


def write_crops(store: Store, object_ids, folder: Path) -> dict[int, str]:
    """One PNG crop per object (the mask's, or a box-only object's box), at most MAX_CROPS; object id -> file
    name inside ``folder``. An image that cannot be read gives no crops (the list still names its objects)."""
    from ..label.crop import CropSettings, encode_image, object_crop

    ids = list(object_ids)[:MAX_CROPS]
    if not ids:
        return {}
    folder = ensure_folder(folder)
    by_image = defaultdict(list)
    for ob in store.objects_by_id(ids):
        by_image[ob.image_id].append(ob)
    out = {}
    settings = CropSettings(mode="both", max_side=256)
    for image_id, obs in by_image.items():
        try:
            image = store.load_image(image_id)
        except ClickLabelError:
            continue
        for ob in obs:
            try:
                crop = object_crop(image, ob, settings)
            except ClickLabelError:
                continue
            name = f"object_{ob.id}.png"
            write_bytes(folder / name, encode_image(crop))
            out[ob.id] = name
    return out


def _crop_cell(crops: dict[int, str], oid: int, sub: str) -> str:
    name = crops.get(oid)
    return f'<img src="{sub}/{name}" alt="object {oid}">' if name else "-"


def review_html(nums: dict, crops: dict[int, str], sub: str = "crops") -> str:
    """The two review sections of the report page."""
    m, a = nums["masks"], nums["audit"]
    esc = html.escape

    def cell(v):
        return esc("-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v))

    flagged_rows = "".join(
        f'<tr data-flagged="{f["object_id"]}"><td>{_crop_cell(crops, f["object_id"], sub)}</td>'
        f'<td>{f["object_id"]}</td><td>{cell(f["image"])}</td><td>{cell(f["label"])}</td>'
        f'<td>{cell(f["mask_state"])}</td><td>{cell(f["review"])}</td></tr>' for f in nums["flagged"])
    dis_rows = "".join(
        f'<tr data-disagreement="{d["object_id"]}"><td>{_crop_cell(crops, d["object_id"], sub)}</td>'
        f'<td>{d["object_id"]}</td><td>{cell(d["image"])}</td><td>{cell(d["label"])}</td>'
        f'<td>{cell(d["model_label"])}</td><td>{cell(d["model_supercategory"])}</td><td>{cell(d["confidence"])}</td>'
        f'<td>{cell(d["lmm"])}</td></tr>' for d in nums["disagreements"])
    return f"""<h2>Masks</h2><p><span data-key="masks.with_mask">{m['with_mask']}</span> objects with masks,
<span data-key="masks.box_only">{m['box_only']}</span> box-only (no mask yet: <code>clicklabel refine</code>),
<span data-key="masks.refined_from_box">{m['refined_from_box']}</span> refined from a box,
<span data-key="masks.flagged">{m['flagged']}</span> flagged for review</p>
<table><tr><th>crop</th><th>object</th><th>image</th><th>label</th><th>mask</th><th>why</th></tr>{flagged_rows}</table>
<h2>Class audit</h2><p>checked <span data-key="audit.checked">{a['checked']}</span>: agree
<span data-key="audit.agree">{a['agree']}</span>, disagree <span data-key="audit.disagree">{a['disagree']}</span>,
failed <span data-key="audit.failed">{a['failed']}</span>; decided: the model's label taken
<span data-key="audit.accepted_model_label">{a['accepted_model_label']}</span>, own label kept
<span data-key="audit.kept_own_label">{a['kept_own_label']}</span>; waiting for a decision
<span data-key="audit.open">{a['open']}</span></p>
<table><tr><th>crop</th><th>object</th><th>image</th><th>label</th><th>model's label</th><th>model's supercategory</th>
<th>confidence</th><th>model</th></tr>{dis_rows}</table>"""


def write_review(store: Store, nums: dict, out: Path) -> str:
    """Crops for the flagged objects and the open disagreements under ``out/crops``; returns the sections' HTML."""
    ids = [f["object_id"] for f in nums["flagged"]] + [d["object_id"] for d in nums["disagreements"]]
    crops = write_crops(store, dict.fromkeys(ids), Path(out) / "crops")
    return review_html(nums, crops)
