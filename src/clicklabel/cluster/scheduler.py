"""``BatchScheduler``: a bounded work queue of item batches over a pool of Ray actors, with worker-death retry.

* bounded: at most ``per_worker_inflight`` batches queued per worker;
* per-item errors come back as rows from the worker itself;
* a worker that dies is restarted by Ray (max_restarts=-1); its running batch is charged one attempt, the batches
  queued behind it are requeued free, and nothing is sent to it until it answers a ping;
* a batch charged twice is split into single items; a single item charged ``max_attempts`` times is reported
  failed ("the worker died N times on this file"), and the rest of the run goes on;
* a worker that does not come back within ``restart_timeout`` s stops the run with a clear error.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

from . import ClusterError


class BatchScheduler:
    def __init__(self, ray, workers, method: str, per_worker_inflight: int = 2, max_attempts: int = 3,
                 restart_timeout: float = 120.0):
        self.ray, self.workers, self.method = ray, workers, method
        self.per_worker_inflight, self.max_attempts = per_worker_inflight, max_attempts
        self.restart_timeout = restart_timeout

    def run(self, items: list, batch: int, **kwargs) -> Iterator[dict]:
        """Yields the worker's result rows, unordered; a poison item as {"items", "failed", "errors"}."""
        ray = self.ray
        errors = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        queue = deque((tuple(items[i : i + batch]), 0) for i in range(0, len(items), batch))
        inflight: dict = {}  # ref -> (worker, batch, attempts, seq)
        free_retry: set = set()
        pings: dict = {}
        down: dict = {}  # worker -> since
        load = [0] * len(self.workers)
        seq = 0
        while queue or inflight:
            while queue:
                up = [i for i in range(len(self.workers)) if i not in down and load[i] < self.per_worker_inflight]
                if not up:
                    break
                i = min(up, key=load.__getitem__)
                b, attempt = queue.popleft()
                seq += 1
                inflight[getattr(self.workers[i], self.method).remote(list(b), **kwargs)] = (i, b, attempt, seq)
                load[i] += 1
            done, _ = ray.wait(list(inflight) + list(pings), num_returns=1)
            for ref in done:
                if ref in pings:
                    i = pings.pop(ref)
                    try:
                        ray.get(ref)
                        down.pop(i, None)
                    except errors as exc:
                        if time.monotonic() - down[i] > self.restart_timeout:
                            raise ClusterError(f"a Ray worker did not come back: {exc}") from None
                        time.sleep(0.2)
                        pings[self.workers[i].ping.remote()] = i
                    continue
                i, b, attempt, s = inflight.pop(ref)
                load[i] -= 1
                try:
                    yield from ray.get(ref)
                    continue
                except errors as exc:
                    err = exc
                if i not in down:
                    down[i] = time.monotonic()
                    pings[self.workers[i].ping.remote()] = i
                same = {r: v for r, v in inflight.items() if v[0] == i}
                if ref in free_retry or any(v[3] < s for v in same.values()):
                    free_retry.discard(ref)  # queued behind the call that died: not its fault
                    queue.appendleft((b, attempt))
                    continue
                free_retry.update(same)
                attempt += 1
                if len(b) == 1 and attempt >= self.max_attempts:
                    why = f"the worker died {attempt} times on this file ({type(err).__name__})"
                    yield {"items": list(b), "failed": 1, "errors": [f"{_name(b[0])}: {why}"]}
                elif len(b) > 1 and attempt >= 2:
                    queue.extendleft(((p,), attempt) for p in reversed(b))
                else:
                    queue.appendleft((b, attempt))


def _name(item) -> str:
    """How a failed item is named: a path, or the path of an (id, path, ...) tuple."""
    return str(item[1]) if isinstance(item, tuple) else str(item)
