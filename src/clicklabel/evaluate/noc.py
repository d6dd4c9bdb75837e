"""The simulated annotator of interactive segmentation (RITM, SimpleClick, SAM): NoC@85 / NoC@90 and mIoU per
click, plus the box-prompt variant and the box-jitter study.

Protocol: the first click is the deepest interior point of the ground truth (maximum of its distance transform,
image border counted as background); every next click goes to the maximum of the distance transform of the
larger error region (missed object -> positive click, spill -> negative click). Ground-truth pixels marked
"ignore" (GrabCut's 128 band) count for neither side. The engine sees its own previous mask (SAM: its low-res
logits) with every new click, and a single first click takes SAM's best of three.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClickLabelError
from ..files import atomic_write, ensure_folder, save_figure, write_text
from ..images import IMAGE_SUFFIXES, load_image
from ..masks import tight_bbox
from ..segment.base import Prompt


@dataclass
class Item:
    name: str
    image: Callable[[], np.ndarray]
    gt: np.ndarray  # bool
    ignore: np.ndarray | None = None  # bool


# -- data readers ---------------------------------------------------------------------------------------------
def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    m = np.array(Image.open(path))
    return m[..., 0] if m.ndim == 3 else m


def read_dataset(data: str | Path, limit: int | None = None) -> Iterator[Item]:
    """Items of a GrabCut-style or COCO-MVal-style folder (images/ + masks/<stem>.bmp|png: 255 object, 128 ignore)
    or of a COCO file (one item per non-crowd annotation; images beside it or in images/)."""
    data = Path(data)
    n = 0
    if data.is_file() and data.suffix == ".json":
        yield from _read_coco(data, limit)
        return
    images, masks = data / "images", data / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise ClickLabelError(f"{data}: expected images/ and masks/ folders, or a COCO .json file")
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        cands = [masks / f"{img.stem}{ext}" for ext in (".png", ".bmp", ".PNG", ".BMP")]
        mpath = next((c for c in cands if c.exists()), None)
        if mpath is None:
            continue
        raw = _read_mask(mpath)
        ignore = raw == 128 if (raw == 128).any() else None
        yield Item(img.stem, lambda p=img: load_image(p), raw > 128, ignore)
        n += 1
        if limit and n >= limit:
            return


def _read_coco(path: Path, limit: int | None) -> Iterator[Item]:
    from ..coco import iter_instances

    n = 0
    for image, inst in iter_instances(path):
        if inst.iscrowd:
            continue
        yield Item(f"{image.stem}_{inst.annotation_id}", lambda p=image: load_image(p), inst.mask)
        n += 1
        if limit and n >= limit:
            return


# -- the clicker ----------------------------------------------------------------------------------------------
def _dt_max(region: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Largest distance to the region's outside (image border counts as outside) and where it is (y, x)."""
    import cv2

    if not region.any():
        return 0.0, (0, 0)
    padded = np.pad(region.astype(np.uint8), 1)
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    idx = int(np.argmax(dt))
    return float(dt.flat[idx]), divmod(idx, region.shape[1])


def next_click(gt: np.ndarray, pred: np.ndarray | None, ignore: np.ndarray | None = None):
    """(x, y, positive) of the next simulated click, or None when there is no error left."""
    valid = ~ignore if ignore is not None else np.ones_like(gt, dtype=bool)
    if pred is None:
        d, (y, x) = _dt_max(gt & valid)
        return (x, y, True) if d > 0 else None
    fn = gt & ~pred & valid
    fp = pred & ~gt & valid
    dfn, (yn, xn) = _dt_max(fn)
    dfp, (yp, xp) = _dt_max(fp)
    if dfn == 0 and dfp == 0:
        return None
    return (xn, yn, True) if dfn > dfp else (xp, yp, False)


def iou_ignoring(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None) -> float:
    valid = ~ignore if ignore is not None else np.ones_like(gt, dtype=bool)
    inter = np.logical_and(pred, gt)[valid].sum()
    union = np.logical_or(pred, gt)[valid].sum()
    return float(inter / union) if union else 1.0


def simulate(engine, item: Item, max_clicks: int = 20, box_first: bool = False, stop_iou: float | None = None
             ) -> list[float]:
    """IoU after each interaction (the GT box counts as the first one in the box variant)."""
    image = item.image()
    gt, ign = item.gt, item.ignore
    if gt.shape != image.shape[:2]:  # e.g. an EXIF-rotated photo with a mask of the stored pixels
        raise ClickLabelError(f"{item.name}: the mask is {gt.shape[1]}x{gt.shape[0]} but the image is "
                              f"{image.shape[1]}x{image.shape[0]} as displayed")
    engine.set_image(image)
    prompt = Prompt()
    prev = None
    ious: list[float] = []
    if box_first:
        x, y, w, h = tight_bbox(gt)
        prompt = Prompt(box=(float(x), float(y), float(x + w), float(y + h)))
        prev = engine.predict(prompt)[0]
        ious.append(iou_ignoring(prev.mask, gt, ign))
    while len(ious) < max_clicks:
        click = next_click(gt, prev.mask if prev is not None else None, ign)
        if click is None:  # perfect already: the remaining clicks keep the IoU
            ious.extend([ious[-1] if ious else 1.0] * (max_clicks - len(ious)))
            break
        x, y, pos = click
        prompt = prompt.add_point(x, y, pos)
        single = len(prompt.points) == 1 and prompt.box is None
        res = engine.predict(prompt, multimask=single, previous=None if single else prev)
        prev = res[0]
        ious.append(iou_ignoring(prev.mask, gt, ign))
        if stop_iou is not None and ious[-1] >= stop_iou:
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
    return ious


def noc(ious: list[float], thr: float, max_clicks: int) -> int:
    """Clicks needed to reach ``thr`` (``max_clicks`` if never)."""
    return next((i + 1 for i, v in enumerate(ious) if v >= thr), max_clicks)


@dataclass
class NocResult:
    per_item: dict[str, list[float]] = field(default_factory=dict)
    max_clicks: int = 20

    def noc(self, thr: float) -> float:
        return float(np.mean([noc(v, thr, self.max_clicks) for v in self.per_item.values()]))

    def miou(self, k: int) -> float:
        return float(np.mean([v[min(k, len(v)) - 1] for v in self.per_item.values()]))

    def failures(self, thr: float = 0.90) -> float:
        return float(np.mean([max(v) < thr for v in self.per_item.values()]))

    def summary(self) -> dict:
        return {"items": len(self.per_item), "NoC@85": self.noc(0.85), "NoC@90": self.noc(0.90),
                "mIoU@1": self.miou(1), "mIoU@3": self.miou(3), "mIoU@5": self.miou(5),
                "fail@90": self.failures(0.90), "max_clicks": self.max_clicks}


def run_noc(engine, items, max_clicks: int = 20, box_first: bool = False, progress=None) -> NocResult:
    res = NocResult(max_clicks=max_clicks)
    for item in items:
        res.per_item[item.name] = simulate(engine, item, max_clicks, box_first)
        if progress is not None:
            progress(item.name)
    return res


def write_noc_outputs(res: NocResult, out: str | Path, title: str) -> dict:
    """Per-image CSV, mIoU-vs-clicks PNG and a JSON summary in folder ``out``."""
    out = ensure_folder(out)
    with atomic_write(out / "per_image.csv", "w", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "NoC@85", "NoC@90"] + [f"IoU@{k + 1}" for k in range(res.max_clicks)])
        for name, ious in res.per_item.items():
            w.writerow([name, noc(ious, 0.85, res.max_clicks), noc(ious, 0.90, res.max_clicks)]
                       + [f"{v:.4f}" for v in ious])
    curve = [res.miou(k) for k in range(1, res.max_clicks + 1)]
    _line_plot(list(range(1, res.max_clicks + 1)), curve, "clicks", "mean IoU", title, out / "miou_vs_clicks.png")
    summary = res.summary()
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


# -- box jitter -----------------------------------------------------------------------------------------------
def jitter_box(box, level: float, rng: np.random.Generator, shape) -> tuple[float, float, float, float]:
    """Shift the XYWH box by up to ``level`` of its size in each direction and scale each side by 1 +- ``level``."""
    x, y, w, h = box
    dx, dy = rng.uniform(-level, level, 2) * (w, h)
    sw, sh = 1 + rng.uniform(-level, level, 2)
    cx, cy = x + w / 2 + dx, y + h / 2 + dy
    nw, nh = max(2.0, w * sw), max(2.0, h * sh)
    H, W = shape[:2]
    x0, y0 = np.clip(cx - nw / 2, 0, W - 2), np.clip(cy - nh / 2, 0, H - 2)
    x1, y1 = np.clip(cx + nw / 2, x0 + 1, W), np.clip(cy + nh / 2, y0 + 1, H)
    return float(x0), float(y0), float(x1), float(y1)


def run_box_jitter(engine, items, levels=(0.0, 0.05, 0.1, 0.2, 0.3), trials: int = 3, seed: int = 0
                   ) -> dict[float, list[float]]:
    """Mask IoU per jitter level (``trials`` random boxes per item and level)."""
    rng = np.random.default_rng(seed)
    out: dict[float, list[float]] = {lv: [] for lv in levels}
    for item in items:
        image = item.image()
        engine.set_image(image)
        box = tight_bbox(item.gt)
        for lv in levels:
            for _ in range(1 if lv == 0 else trials):
                b = jitter_box(box, lv, rng, image.shape)
                m = engine.predict(Prompt(box=b))[0].mask
                out[lv].append(iou_ignoring(m, item.gt, item.ignore))
    return out


def write_jitter_outputs(res: dict[float, list[float]], out: str | Path, title: str) -> list[list]:
    out = ensure_folder(out)
    rows = [[f"{lv:.2f}", len(v), f"{np.mean(v):.4f}", f"{np.median(v):.4f}"] for lv, v in res.items()]
    _line_plot([lv * 100 for lv in res], [np.mean(v) for v in res.values()], "box jitter (% of box size)",
               "mean mask IoU", title, out / "box_jitter.png")
    write_text(out / "box_jitter.json", json.dumps({str(k): v for k, v in res.items()}))
    return rows


def _line_plot(x, y, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """A small line plot saved as PNG (IoU axes run from 0 to 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, y, marker="o")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
