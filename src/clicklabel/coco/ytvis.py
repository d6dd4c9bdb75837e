"""YouTube-VIS export: a project's sequences as videos and its tracks as video instances.

The layout is the YouTube-VIS 2019/2021 annotation file (as its ``ytvos`` API and detectron2-style loaders read
it): ``videos`` (``id``, ``width``, ``height``, ``length``, ``file_names`` with one frame file per frame, relative to
the images root), ``annotations`` (one per track: ``video_id``, ``category_id``, and per frame ``segmentations``
(compressed RLE), ``bboxes`` and ``areas``, ``null`` on the frames without the object), and ``categories``. Images
outside any sequence and objects outside any track are not in the file (the COCO export has them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .write import UNLABELLED, write_json


@dataclass
class YtvisReport:
    videos: int = 0
    tracks: int = 0
    masks: int = 0  # per-frame masks written, over every track
    unlabelled: int = 0  # tracks without a label (category 'unlabelled')
    left_out: int = 0  # accepted objects outside any track (not in a YouTube-VIS file)


def export_ytvis(store, out: str | Path, images_root: str | Path | None = None) -> YtvisReport:
    """Write the project's sequences and tracks as a YouTube-VIS annotation file (atomically)."""
    rep = YtvisReport()
    root = Path(images_root).resolve() if images_root else None
    videos, lengths = [], {}
    for seq in store.sequences():
        ids = store.frame_ids(seq.id)
        if not ids:
            continue
        recs = [store.image(i) for i in ids]
        names = [r.path if root is None else Path(os.path.relpath(store.root / r.path, root)).as_posix()
                 for r in recs]
        videos.append({"id": seq.id, "name": seq.name, "width": recs[0].width, "height": recs[0].height,
                       "length": len(ids), "file_names": names})
        lengths[seq.id] = len(ids)
    rep.videos = len(videos)
    cats = {name: (cid, sup) for cid, name, sup in store.categories()}
    categories = [{"id": cid, "name": name, "supercategory": sup or name} for name, (cid, sup) in cats.items()]
    unl_id = None
    anns = []
    for track_id, seq_id in store.tracks():
        if seq_id not in lengths:
            continue
        objects = store.track_objects(track_id)
        if not objects:
            continue
        n = lengths[seq_id]
        segs: list = [None] * n
        boxes: list = [None] * n
        areas: list = [None] * n
        label = None
        for t, o in objects.items():
            ob = store.object(o.object_id)
            segs[t] = {"size": ob.rle["size"], "counts": ob.rle["counts"]}
            boxes[t] = [float(v) for v in ob.bbox]
            areas[t] = int(ob.area)
            label = label or ob.label
            rep.masks += 1
        if label is not None and label in cats:
            cid = cats[label][0]
        else:
            if unl_id is None:
                unl_id = max([c["id"] for c in categories], default=0) + 1
                categories.append({"id": unl_id, "name": UNLABELLED, "supercategory": UNLABELLED})
            cid = unl_id
            rep.unlabelled += 1
        anns.append({"id": track_id, "video_id": seq_id, "category_id": cid, "iscrowd": 0,
                     "width": videos[[v["id"] for v in videos].index(seq_id)]["width"],
                     "height": videos[[v["id"] for v in videos].index(seq_id)]["height"], "length": 1,
                     "segmentations": segs, "bboxes": boxes, "areas": areas})
    rep.tracks = len(anns)
    rep.left_out = store.count_objects() - rep.masks
    doc = {"info": {"description": "exported by clicklabel", "version": "1.0"}, "licenses": [],
           "videos": videos, "annotations": anns, "categories": categories}
    write_json(out, doc)
    return rep
