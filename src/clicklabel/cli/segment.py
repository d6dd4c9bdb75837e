"""``clicklabel segment | demo | precompute``: SAM on images, without a project."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .common import add_engine_args, add_ray_args, engine_from_args, engine_spec, parse_box, parse_point, positive_int

SAMPLES = Path(__file__).parents[1] / "data" / "samples"


def write_mask_png(mask, path: str | Path) -> None:
    """A 0/255 PNG of ``mask``, written atomically."""
    import numpy as np
    from PIL import Image

    from ..files import atomic_write

    with atomic_write(path) as f:
        Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(f, format="PNG")


def cmd_segment(args) -> int:
    from ..images import load_image
    from ..segment import Prompt

    image = load_image(args.image)
    pts = [parse_point(p) for p in args.point or []]
    box = parse_box(args.box) if args.box else None
    prompt = Prompt.make([(x, y) for x, y, _ in pts], [lab for _, _, lab in pts], box)
    prompt.validate(image.shape)  # before loading any model: bad prompts fail fast
    if args.out:
        from ..files import output_target

        output_target(Path(args.out))  # a device, a FIFO: refused before the model loads
    engine = engine_from_args(args)
    started = time.perf_counter()
    engine.set_image(image)
    set_image_ms = (time.perf_counter() - started) * 1000
    result = engine.predict(prompt, multimask=False)[0]
    if args.out:
        write_mask_png(result.mask, args.out)
    print(json.dumps({
        "bbox": list(result.bbox) if result.bbox else None,
        "area": result.area,
        "score": round(result.score, 4),
        "empty": result.empty,
        "engine": engine.name,
        "model": engine.model,
        "image_size": [int(image.shape[1]), int(image.shape[0])],
        "embedding_cached": bool(engine.last_from_cache),
        "tiles": len(engine.grid) if getattr(engine, "grid", None) is not None else None,
        "set_image_ms": round(set_image_ms, 1),
        "out": args.out,
    }))
    return 0


def cmd_demo(args) -> int:
    """Segment the main object of each bundled sample (SAM vit_b, or GrabCut offline) and save overlays."""
    import numpy as np
    from PIL import Image

    from ..errors import WeightsError
    from ..files import atomic_write, ensure_folder
    from ..images import list_images, load_image
    from ..segment import Prompt, make_engine

    out = ensure_folder(args.out)  # before any model loads
    try:
        engine = engine_from_args(args)
    except WeightsError as exc:
        print(f"clicklabel: {exc}", file=sys.stderr)
        print("clicklabel: using the GrabCut engine instead (no weights needed)", file=sys.stderr)
        engine = make_engine("grabcut")
    for path in list_images(SAMPLES):
        image = load_image(path)
        h, w = image.shape[:2]
        box = (0.2 * w, 0.15 * h, 0.8 * w, 0.95 * h)  # the bundled photos have their object in the middle
        engine.set_image(image)
        r = engine.predict(Prompt.make(box=box))[0]
        overlay = image.copy()
        overlay[r.mask] = (0.5 * overlay[r.mask] + [0, 110, 0]).astype(np.uint8)
        target = out / f"{path.stem}_mask.png"
        with atomic_write(target) as f:
            Image.fromarray(overlay).save(f, format="PNG")
        print(json.dumps({"image": path.name, "engine": engine.name, "bbox": r.bbox, "area": r.area,
                          "overlay": str(target)}))
    return 0


def cmd_precompute(args) -> int:
    from tqdm import tqdm

    from ..embeddings import EmbeddingCache
    from ..project import image_files
    from ..segment.precompute import precompute

    paths = image_files(args.target)
    if args.ray:
        return precompute_on_ray(args, paths)
    engine = engine_from_args(args, cache=EmbeddingCache.at_root(args.cache) if args.cache else None,
                              compile=args.compile)
    large, tiled = [], engine
    if hasattr(engine, "prefetch_tiles"):  # large images: every tile (segment.tile_precompute)
        from ..segment.tile_precompute import split_large

        paths, large = split_large(engine, paths)
        engine = engine.inner
    bar = tqdm(total=len(paths), unit="image", desc=f"embedding ({engine.model}, {engine.device})", disable=None)
    stats = precompute(engine, paths, batch=args.batch, workers=args.workers, progress=bar.update)
    bar.close()
    rc = _report_precompute(stats, f"encoder: {engine.encoder.describe()}", engine.cache.folder)
    if large:
        _precompute_tiles(tiled, large)
    return rc


def _precompute_tiles(engine, large) -> None:
    """Every tile of the large images, with one line on what was done."""
    from tqdm import tqdm

    from ..segment.tile_precompute import precompute_tiles

    bar = tqdm(total=len(large), unit="image", desc=f"tiles of {len(large)} large images", disable=None)
    stats = precompute_tiles(engine, large, progress=bar.update)
    bar.close()
    print(f"{stats['images']} large images in tiles: {stats['encoded']} tiles encoded, {stats['cached']} already "
          f"cached, {stats['failed']} unreadable")
    for e in stats["errors"][:10]:
        print(f"skipped: {e}")


def _report_precompute(stats: dict, how: str, folder) -> int:
    """What a precompute run did, in one line, then the first unreadable files."""
    rate = stats["encoded"] / stats["seconds"] if stats["seconds"] > 0 else 0.0
    print(f"{stats['encoded']} encoded, {stats['cached']} already cached, {stats['failed']} unreadable "
          f"in {stats['seconds']:.1f} s ({rate:.1f} images/s, {how}); cache: {folder}")
    for e in stats["errors"][:10]:
        print(f"skipped: {e}")
    return 0


def precompute_on_ray(args, paths) -> int:
    """``precompute --ray [ADDRESS]``: the same cache entries, encoded by Ray actors (one model load each)."""
    from tqdm import tqdm

    from ..cluster import ray_session
    from ..cluster.workers import make_workers, ray_precompute
    from ..files import cache_root

    spec = engine_spec(args, compile=args.compile)
    root = str(args.cache or cache_root())
    with ray_session(args.ray) as ray:
        workers = make_workers(ray, spec, root, max_workers=args.ray_workers,
                                   say=lambda line: print(f"clicklabel: {line}", file=sys.stderr))
        bar = tqdm(total=len(paths), unit="image", desc=f"embedding on Ray ({len(workers)} workers)", disable=None)
        stats = ray_precompute(ray, workers, paths, batch=args.batch, progress=bar.update)
        bar.close()
    return _report_precompute(stats, f"{len(workers)} Ray workers", Path(root) / "embeddings")


def add_segment_parsers(sub) -> None:
    p = sub.add_parser("segment", help="one prompt on one image -> mask PNG + JSON (bbox XYWH, area, score)")
    p.add_argument("image")
    p.add_argument("--point", action="append", help="X,Y[:1|0] (repeatable; 1 positive, 0 negative)")
    p.add_argument("--box", help="X0,Y0,X1,Y1")
    p.add_argument("--out", help="mask PNG to write")
    add_engine_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("demo", help="segment the bundled sample images and save overlays")
    p.add_argument("--out", default="clicklabel-demo")
    add_engine_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("precompute", help="fill the embedding cache for a folder or project (resumable)")
    p.add_argument("target", help="folder of images or a project")
    add_engine_args(p, engine=False)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder (a minute or more once; pays off over hundreds of images)")
    p.add_argument("--workers", type=positive_int,
                   help="CPU threads reading and resizing images (default: cores, max 16)")
    p.add_argument("--cache", help="cache folder (default $CLICKLABEL_CACHE or the user cache folder); copy it to "
                                   "another machine and pass it to `clicklabel gui --cache`")
    add_ray_args(p)
    p.set_defaults(func=cmd_precompute)
