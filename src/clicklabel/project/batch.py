"""Running a per-image workflow over a project (propose, refine): each image made the engine's current one in
turn, images that cannot be read reported instead of stopping the run, progress per image, a stop between images."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..errors import ClickLabelError
from .store import Store


def embedded_images(store: Store, engine, image_ids: list[int], errors: list[str],
                    progress: Callable[[int, int], None] | None = None, stop=None) -> Iterator[int]:
    """Yield each of ``image_ids`` once ``engine`` has it as its current image (its embedding from the cache when
    there); an image that cannot be read goes to ``errors`` with the reason. ``progress(done, total)`` after each
    image; a set ``stop`` (an Event) ends the loop before the next image."""
    for n, image_id in enumerate(image_ids):
        if stop is not None and stop.is_set():
            return
        try:
            engine.set_image(store.load_image(image_id))
        except ClickLabelError as exc:
            errors.append(str(exc))
        else:
            yield image_id
        if progress is not None:
            progress(n + 1, len(image_ids))
