"""``clicklabel label --ray``: the model's requests are sent from Ray actors; everything else stays on the driver.

The driver keeps the run's guarantees exactly as without Ray, because it keeps the run itself (``label_objects``):
it claims and renews each object's lease right before its request, checks the label cache before anything is
sent, keeps ``--concurrency`` requests in flight across all actors, puts every answer into the label cache the
moment it arrives (so no answer that was paid for is lost, even if the project cannot be written), and alone writes
the project. An actor only turns a crop into a chat request and the answer into a ``LabelResult`` (async, many
requests at once); a request lost with its actor is reported as failed and retried by the next run, never resent
automatically (it may have been paid for: the answer cache cannot know).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

from ..errors import ClickLabelError
from ..label.client import Labeler, LabelResult
from . import ClusterError


class LabelWorker:
    """Ray actor body (async): one ``Labeler`` without a cache; the driver owns the cache."""

    def __init__(self, config):
        self.labeler = Labeler(config, cache=None, prices={})

    async def ask(self, crop: bytes, examples: tuple, fmt: str) -> tuple[LabelResult, str]:
        self.labeler.format = fmt
        return await self.labeler.label(crop, examples), self.labeler.format

    def ping(self) -> int:
        return os.getpid()


class RayLabeler(Labeler):
    """A ``Labeler`` whose requests run on ``workers`` Ray actors (module docstring)."""

    def __init__(self, ray, config, cache=None, prices=None, workers: int = 2, ready_timeout: float = 120.0):
        super().__init__(config, cache, prices)
        self.ray = ray
        key = config.api_key or os.environ.get("OPENAI_API_KEY")
        base = config.base_url or os.environ.get("OPENAI_BASE_URL")
        remote_config = replace(config, api_key=key, base_url=base)  # the actors may run on other machines
        cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0,
                         max_concurrency=max(1, config.concurrency))(LabelWorker)
        self.workers = [cls.remote(remote_config) for _ in range(max(1, workers))]
        try:
            ray.get([w.ping.remote() for w in self.workers], timeout=ready_timeout)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"the Ray labelling workers were not ready after {ready_timeout:.0f} s") from None
        self._next = itertools.cycle(self.workers)

    async def _request(self, crop: bytes, examples: tuple, key: str) -> LabelResult:
        """On an actor (``Labeler.label`` has checked the cache here, on the driver)."""
        try:
            res, fmt = await next(self._next).ask.remote(crop, examples, self.format)
        except self.ray.exceptions.RayTaskError as exc:  # the request itself raised (a refused API key)
            if isinstance(getattr(exc, "cause", None), ClickLabelError):
                raise exc.cause from None
            return LabelResult(None, f"the request failed on its Ray worker: {type(exc.cause).__name__}")
        except self.ray.exceptions.RayError as exc:
            return LabelResult(None, f"the Ray worker sending this request was lost ({type(exc).__name__}); "
                                     "run the labelling again")
        self.format = fmt  # stepped down where the server refused a response format: for every later request too
        if res.answer is not None and self.cache is not None:
            self.cache.put(key, res.answer)  # before the driver records it: kept even if the project is busy
        if res.prompt_tokens or res.completion_tokens:  # priced here, with the driver's price table
            from ..label.prices import cost

            res = replace(res, cost=cost(self.config.lmm, res.prompt_tokens, res.completion_tokens, self.prices))
        return res

    def shutdown(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
