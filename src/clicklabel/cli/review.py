"""``clicklabel review-order PROJECT``: what to review next, by expected value, with the reasons."""

from __future__ import annotations

from .common import positive_int


def cmd_review_order(args) -> int:
    from ..bench.harness import print_table
    from ..label.value import image_order, object_order
    from ..project import open_project

    store = open_project(args.project)
    objects = object_order(store, k=args.k)
    images, missing = image_order(store)
    print(f"objects to review first ({len(objects)} with a reason; the model's labels a person has not confirmed):")
    print_table([[it.id, it.image, f"{it.score:.2f}", "; ".join(it.reasons)] for it in objects[: args.limit]],
                ["object", "image", "value", "why"])
    print(f"\nimages to annotate next ({len(images)} without objects, most unlike the annotated ones first):")
    print_table([[it.id, it.image, f"{it.score:.3f}", "; ".join(it.reasons)] for it in images[: args.limit]],
                ["image", "path", "distance", "why"])
    if missing:
        print(f"{missing} image(s) without objects have no descriptor yet (not opened with a segmentation model "
              "in the widget): they are not ranked")
    return 0


def add_review_parser(sub) -> None:
    p = sub.add_parser("review-order", help="objects and images in the order a person's review is worth most")
    p.add_argument("project")
    p.add_argument("--limit", type=positive_int, default=20, help="rows of each table (default 20)")
    p.add_argument("--k", type=positive_int, default=5, help="neighbours that vote (default 5)")
    p.set_defaults(func=cmd_review_order)
