"""A large image's tiles in the widget: the counter line says how many are ready ("tiles 12/96 ready"), and after a
click the tiles around it are encoded ahead in a worker (Stop ends it; it ends by itself when the image changes),
so that the next clicks nearby find their tile's embedding cached."""

from __future__ import annotations

import threading

JOB = "tiles"


class TilePrefetch:
    """The tiles' part of the counter line, and encoding ahead around the clicks (``session.prefetch_tiles``)."""

    def __init__(self, bench, rings: int = 1):
        self.bench, self.rings = bench, rings
        self.encoded = 0  # tiles encoded ahead so far (tests look at it)

    def status(self) -> tuple[int, int] | None:
        """(ready, all) of the current image's tiles; None when the image is used whole."""
        s = self.bench.session
        return None if s is None or s.image is None else s.tile_status()

    def show(self) -> None:
        tiles = self.status()
        self.bench.count(JOB, f"tiles {tiles[0]}/{tiles[1]} ready" if tiles else "")

    def around(self, x: float, y: float) -> None:
        """After a click at (x, y): the counter, and the tiles around it encoded in a worker (one job at a time)."""
        self.show()
        tiles = self.status()
        if tiles is None or tiles[0] == tiles[1] or self.bench.tasks.running(JOB):
            return
        stop = threading.Event()
        self.bench.start_job(JOB, "encoding the tiles around the click", self.bench.session.prefetch_tiles, x, y,
                             rings=self.rings, stop=stop, done=self._done, failed=self._failed, cancel=stop.set)

    def _done(self, encoded: int) -> None:
        self.bench.end_job(JOB)
        self.encoded += int(encoded or 0)
        self.show()

    def _failed(self, exc) -> None:
        self.bench.end_job(JOB)
        self.show()
        self.bench.say(f"Encoding the tiles ahead stopped: {exc}")
