"""The labeler: masked crops to any OpenAI-compatible chat API (``AsyncOpenAI``), at bounded concurrency, with the
SDK's retries (which honour Retry-After), a per-request timeout, a cache so the same crop is never paid twice,
and a response-format fallback for servers without json_schema support."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import openai  # imported here, not lazily: imports from worker threads can deadlock against other threads' imports

from ..errors import LabelError, ResourceLabelError, ServerDown
from ..files import cache_path
from .crop import CropSettings, data_url
from .prices import Price, cost, load_prices
from .prompt import SYSTEM_PROMPT, Answer, answer_schema, parse_answer, user_text

FORMATS = ("json_schema", "json_object", "text")
DOWN_AFTER = 3  # requests that reached no server, with none answered yet, before a run stops: the server is down


@dataclass
class LabelerConfig:
    lmm: str = "gpt-4o-mini"  # the multimodal model's name on the server
    vocabulary: list[str] | None = None
    template: str | None = None
    detail: str = "low"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    crop: CropSettings = field(default_factory=CropSettings)
    base_url: str | None = None  # default: $OPENAI_BASE_URL, else OpenAI
    few_shot: int = 0  # send the K nearest confirmed objects' crops and labels with each crop
    knn_only_above: float | None = None  # skip the model when this share of the k nearest agree (k = knn_k)
    knn_k: int = 5
    api_key: str | None = None  # default: $OPENAI_API_KEY; never stored anywhere

    def __post_init__(self):
        if self.detail not in ("low", "high", "auto"):
            raise LabelError(f"detail {self.detail!r}; use low, high or auto")
        if self.concurrency < 1:
            raise LabelError("concurrency must be at least 1")
        if self.few_shot < 0 or self.few_shot > 64:
            raise LabelError(f"few-shot {self.few_shot}: use 0 (none) to 64 examples per request")
        if self.knn_only_above is not None and not 0 < self.knn_only_above <= 1:
            raise LabelError(f"knn-only-above {self.knn_only_above}: a share of the neighbours, above 0, at most 1")
        if self.knn_k < 1:
            raise LabelError("the number of neighbours must be at least 1")


@dataclass
class LabelResult:
    answer: Answer | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False
    unreachable: bool = False  # no server answered (connection refused, timed out): not this crop's fault

    @property
    def ok(self) -> bool:
        return self.answer is not None


class LabelCache:
    """Answers by (crop bytes, model, prompt, vocabulary, detail): a small SQLite file in the cache folder, shared
    by every run on the machine. An answer is put here before it is written to the project, so one that the
    project could not take (busy, full disk) is not paid for again."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            path = cache_path("labels") / "answers.sqlite"
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise cache_error(exc, self.path) from None

    def get(self, key: str) -> Answer | None:
        try:
            with self._lock:
                row = self.conn.execute("SELECT answer FROM answers WHERE key=?", (key,)).fetchone()
            d = json.loads(row[0]) if row else None
            return Answer(str(d["label"]), d.get("supercategory"), d.get("confidence")) if d else None
        except (sqlite3.Error, ValueError, TypeError, KeyError):  # a damaged entry is a miss
            return None

    def put(self, key: str, answer: Answer) -> None:
        try:
            with self._lock:
                self.conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(answer.__dict__)))
        except sqlite3.Error:  # the cache is busy or its disk full: the answer still goes to the project
            pass


def cache_error(exc: BaseException, path: Path) -> LabelError:
    """The one line for a label cache that cannot be opened: a full disk named as such (SQLite says only
    "disk I/O error"), else the cause, with what to do."""
    import errno
    import shutil

    folder = path.parent if path.parent.is_dir() else cache_path("")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "full" in str(exc).lower() \
        or (free is not None and free < 1 << 20 and "i/o" in str(exc).lower())
    if full:
        return ResourceLabelError(f"the disk holding the label cache {path} is full; free some space (or set "
                                  "CLICKLABEL_CACHE to a folder on another disk) and try again")
    return LabelError(f"the label cache {path} cannot be used ({exc}); delete it (it only saves paying twice for "
                      "the same crop) or set CLICKLABEL_CACHE")


class Labeler:
    """Sends crops, returns LabelResults; one instance per run (it remembers the server's response format)."""

    def __init__(self, config: LabelerConfig, cache: LabelCache | None = None, prices: dict[str, Price] | None = None,
                 response_format: str | None = None):
        self.config = config
        self.cache = cache
        self.prices = prices if prices is not None else load_prices()
        self.format = response_format or "json_schema"
        self._client = None

    @property
    def client(self):
        if self._client is None:
            key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                raise LabelError(
                    "OPENAI_API_KEY is not set. Export your key (for a local server such as Ollama or vLLM, any "
                    "value works, together with OPENAI_BASE_URL)"
                )
            self._client = openai.AsyncOpenAI(
                api_key=key, base_url=self.config.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                max_retries=self.config.max_retries, timeout=self.config.timeout,
                http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
            )
        return self._client

    def cache_key(self, crop: bytes, examples: tuple = ()) -> str:
        """The answer cache's key: the crop, the model, the prompt, the vocabulary, the detail, and the few-shot
        examples (crops and labels) if any, so an answer given with other examples is never reused."""
        c = self.config
        h = hashlib.sha256(crop)
        h.update(json.dumps([c.lmm, SYSTEM_PROMPT, user_text(c.template, c.vocabulary), c.vocabulary, c.detail,
                             self.config.crop.fmt]).encode())
        for ex_crop, *ex_answer in examples:
            h.update(hashlib.sha256(ex_crop).digest() + json.dumps(ex_answer).encode())
        return h.hexdigest()

    def messages(self, crop: bytes, examples: tuple = ()) -> list[dict]:
        """The chat: the system prompt, then each few-shot example as a question with its crop (at low detail, the
        cheapest) answered with its confirmed label, then the question about ``crop``."""
        c = self.config
        question = user_text(c.template, c.vocabulary)
        msgs: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
        for ex_crop, ex_label, ex_super in examples:
            msgs.append({"role": "user", "content": [
                {"type": "text", "text": question},
                {"type": "image_url", "image_url": {"url": data_url(ex_crop, c.crop.fmt), "detail": "low"}}]})
            answer = {"label": ex_label, **({"supercategory": ex_super} if ex_super else {}), "confidence": 1.0}
            msgs.append({"role": "assistant", "content": json.dumps(answer)})
        msgs.append({"role": "user", "content": [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": data_url(crop, c.crop.fmt), "detail": c.detail}}]})
        return msgs

    def _format_arg(self) -> dict | None:
        if self.format == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": "object_label", "strict": True,
                                    "schema": answer_schema(self.config.vocabulary)}}
        if self.format == "json_object":
            return {"type": "json_object"}
        return None

    async def label(self, crop: bytes, examples: tuple = ()) -> LabelResult:
        """Label one encoded crop (with few-shot ``examples``: (crop, label, supercategory) triples); never raises
        for the model's or the network's failures (they become errors)."""
        key = self.cache_key(crop, examples)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return LabelResult(hit, cached=True)
        return await self._request(crop, examples, key)

    async def _request(self, crop: bytes, examples: tuple, key: str) -> LabelResult:
        """The request itself (the answer cache missed): the model's answer, stored in the cache under ``key``."""
        while True:
            fmt = self.format
            kwargs = {"model": self.config.lmm, "messages": self.messages(crop, examples), "max_tokens": 200}
            rf = self._format_arg()
            if rf is not None:
                kwargs["response_format"] = rf
            try:
                resp = await self.client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                text = str(exc).lower()
                if fmt != "text" and ("response_format" in text or "json_schema" in text or "json_object" in text):
                    if self.format == fmt:  # step down once, for every request that follows too
                        self.format = FORMATS[FORMATS.index(fmt) + 1]
                    continue
                return LabelResult(None, f"request refused by the server: {_short(exc)}")
            except openai.AuthenticationError:
                raise LabelError("the API key was refused (401); check OPENAI_API_KEY") from None
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                return LabelResult(None, f"no answer from {self.server} after {self.config.max_retries} retries: "
                                   f"{_cause(exc, self.config.timeout)}", unreachable=True)
            except openai.APIStatusError as exc:
                return LabelResult(None, f"server error {exc.status_code} after retries: {_short(exc)}")
            except (openai.APIError, ValueError) as exc:  # e.g. a body that is not JSON
                return LabelResult(None, f"unusable response: {type(exc).__name__}: {_short(exc)}")
            return self._read(resp, key)

    @property
    def server(self) -> str:
        """The address requests go to (the base URL the client resolved)."""
        return str(self.client.base_url).rstrip("/")

    def _read(self, resp, key: str) -> LabelResult:
        if isinstance(resp, (str, bytes)):  # the SDK hands over a body that is not JSON as it came
            text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
            what = "a web page (HTML)" if text.lstrip()[:1] == "<" else f"text that is not JSON ({_short(text)[:60]!r})"
            return LabelResult(None, f"{self.server} answered with {what}, not a chat completion: is it an "
                                     "OpenAI-compatible API address (OPENAI_BASE_URL, usually ending in /v1)?")
        try:
            usage = getattr(resp, "usage", None)
            pt = _count(getattr(usage, "prompt_tokens", 0))
            ct = _count(getattr(usage, "completion_tokens", 0))
            choices = getattr(resp, "choices", None)
            msg = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
            content, refusal = getattr(msg, "content", None), getattr(msg, "refusal", None)
        except Exception as exc:  # noqa: BLE001 - the SDK builds responses without validating them
            return LabelResult(None, f"unusable response: {type(exc).__name__}: {_short(exc)}")
        money = cost(self.config.lmm, pt, ct, self.prices)
        if msg is None:
            return LabelResult(None, "the server's answer has no choices", pt, ct, money)
        if refusal:
            return LabelResult(None, f"the model refused: {_short(refusal)}", pt, ct, money)
        if content is not None and not isinstance(content, str):
            return LabelResult(None, f"the server's answer is a {type(content).__name__}, not text", pt, ct, money)
        try:
            ans = parse_answer(content, self.config.vocabulary)
        except LabelError as exc:
            return LabelResult(None, str(exc), pt, ct, money)
        if self.cache is not None:
            self.cache.put(key, ans)
        return LabelResult(ans, None, pt, ct, money)

    async def label_many(self, crops, on_result, before_send=None) -> None:
        """Label an async or sync iterable of (key, crop bytes) with ``concurrency`` requests in flight;
        ``on_result(key, LabelResult)`` is called as each one ends (in the event loop's thread);
        ``before_send(key) -> bool``, if given, is asked right before each request (False: not sent)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.config.concurrency * 2)
        n = self.config.concurrency
        seen = {"answered": False, "unreachable": 0, "last": ""}

        def down() -> bool:
            return not seen["answered"] and seen["unreachable"] >= DOWN_AFTER

        async def produce():
            if hasattr(crops, "__aiter__"):
                async for item in crops:
                    if down():
                        break
                    await queue.put(item)
            else:
                for item in crops:
                    if down():
                        break
                    await queue.put(item)
            for _ in range(n):
                await queue.put(None)

        async def work():
            while True:
                item = await queue.get()
                if item is None:
                    return
                if down():  # the server is down for everyone: send nothing more, drain the queue
                    continue
                key, crop, *examples = item  # (key, crop) or (key, crop, few-shot examples)
                if before_send is not None and not before_send(key):
                    continue
                res = await self.label(crop, examples[0] if examples else ())
                if res.unreachable:
                    seen["unreachable"] += 1
                    seen["last"] = res.error or ""
                elif not res.cached:
                    seen["answered"] = True
                on_result(key, res)

        _ = self.client  # fail fast on a missing key, before any work
        await asyncio.gather(produce(), *(work() for _ in range(n)))
        if down():
            raise ServerDown(f"stopped: the model server answered none of the first {seen['unreachable']} requests "
                             f"({seen['last']}); check OPENAI_BASE_URL and that the server runs. Objects not sent "
                             "are still waiting for a label")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


_tls: list = []
_tls_lock = threading.Lock()


def tls_context():
    """The system's TLS settings (CA certificates loaded), made once per process and shared by every run's HTTP
    client: loading them took 40 ms each time here, and the widget starts a run for each accepted object."""
    with _tls_lock:
        if not _tls:
            import ssl

            _tls.append(ssl.create_default_context())
        return _tls[0]


def warm_up() -> None:
    """Import what the client loads lazily and make the TLS settings, so that a first run in a worker thread of an
    interactive program neither imports (imports racing in threads can deadlock) nor stalls it."""
    client = openai.AsyncOpenAI(api_key="-", http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()))
    _ = client.chat.completions


def _cause(exc: Exception, timeout: float) -> str:
    """Why no server answered, in words: the timeout, or the network's own reason (refused, no such host)."""
    if isinstance(exc, openai.APITimeoutError):
        return f"each try timed out after {timeout:g} s"
    reason, seen = " ".join(str(exc).split()), set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:  # the innermost reason names the socket's error
        seen.add(id(cause))
        reason = " ".join(str(cause).split()) or reason
        if isinstance(cause, OSError) and cause.errno is not None:
            reason = os.strerror(cause.errno) if cause.errno > 0 else cause.strerror or reason
            break
        cause = cause.__cause__ or cause.__context__
    return f"cannot connect ({reason[:160]})"


def _short(exc) -> str:
    return str(exc).replace("\n", " ")[:200]


def _count(value) -> int:
    """A token count from the server (anything else counts as 0)."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else 0
