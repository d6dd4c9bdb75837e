"""``--engine remote --server URL``: the image encoder runs on a ``clicklabel serve`` server (a GPU), the decoder
here, so a click costs no round trip.

The client asks for an image's embedding by its cache key (the image's content hash under the model's weights
fingerprint: the key every clicklabel cache uses); only on a miss does it upload the image, as a lossless PNG of
the decoded pixels, so the server hashes exactly the pixels the client hashed. The answer is a cache entry
(``.npz``, float16), stored in the local cache as well. The local engine must hold the same weights as the server
(the decoder is local): the two weights fingerprints are compared when connecting.

Connection errors and 502/503/504 (a restarting server) are retried with backoff; each retry is reported through
``notify`` (the GUI's status line, stderr in the CLI), and the last failure is one ``RemoteError`` line. The caller
runs this off the UI thread (the widget's embedding worker), so a dead server never freezes the GUI.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, read_embedding
from ..errors import ClickLabelError

REMOTE_HINT = "pip install 'clicklabel[remote]'"
TOKEN_ENV = "CLICKLABEL_SERVE_TOKEN"
RETRY_STATUS = (502, 503, 504)


class RemoteError(ClickLabelError):
    """The encoding server refused a request, answered nonsense, or could not be reached."""


def read_token(token_file: str | Path | None = None) -> str | None:
    """The bearer token: ``token_file``'s first line, else $CLICKLABEL_SERVE_TOKEN, else None."""
    if token_file:
        p = Path(token_file)
        try:
            token = p.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise RemoteError(f"cannot read the token file {p}: {getattr(exc, 'strerror', None) or exc}") from None
        if not token:
            raise RemoteError(f"the token file {p} is empty")
        return token.splitlines()[0].strip()
    return os.environ.get(TOKEN_ENV, "").strip() or None


def png_bytes(image: np.ndarray) -> bytes:
    """The pixels as a lossless PNG (fast compression: this is for the wire, not for keeping)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class EncoderClient:
    """HTTP client of ``clicklabel serve`` (module docstring)."""

    def __init__(self, url: str, token: str | None = None, retries: int = 5, timeout: float = 120.0,
                 backoff: float = 0.5, notify: Callable[[str], None] | None = None):
        try:
            import requests
        except ImportError:
            raise RemoteError(f"--engine remote needs the requests package: {REMOTE_HINT}") from None
        url = (url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"--server must be an http:// or https:// address, not {url!r}")
        self.url, self.retries, self.timeout, self.backoff = url, retries, timeout, backoff
        self.notify = notify or (lambda message: None)
        self._requests = requests
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # -- transport ------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, retries: int | None = None, timeout: float | None = None, **kw):
        """One request, retried on a dropped connection or 502/503/504; any other answer is returned."""
        err = ""
        retries = self.retries if retries is None else retries
        timeout = timeout or self.timeout
        for attempt in range(retries + 1):
            if attempt:
                wait = min(self.backoff * 2 ** (attempt - 1), 8.0)
                self.notify(f"encoding server {self.url}: {err}; retrying in {wait:.1f} s ({attempt}/{retries})")
                time.sleep(wait)
            try:
                r = self.session.request(method, self.url + path, timeout=(min(5.0, timeout), timeout), **kw)
            except self._requests.RequestException as exc:
                err = _reason(exc)
                continue
            if r.status_code in RETRY_STATUS:
                err = f"HTTP {r.status_code}"
                continue
            return r
        raise RemoteError(f"cannot reach the encoding server {self.url} after {retries + 1} tries ({err})")

    @staticmethod
    def _refused(r) -> RemoteError:
        try:
            msg = str(r.json().get("error", ""))[:300]
        except ValueError:
            msg = r.text[:200].strip()
        if r.status_code == 401:
            msg = (msg or "missing or wrong token") + \
                f" (give the server's token with --token-file or ${TOKEN_ENV})"
        return RemoteError(f"the encoding server refused: HTTP {r.status_code}: {msg}")

    # -- API --------------------------------------------------------------------------------------------------
    def info(self, quick: bool = False) -> dict:
        """The server's model, weights id, precision and device (token checked); ``quick``: one retry and a
        short timeout (choosing the engine, where a user waits for the answer)."""
        r = self.request("GET", "/v1/info", **({"retries": 1, "timeout": 5.0} if quick else {}))
        if r.status_code != 200:
            raise self._refused(r)
        try:
            info = r.json()
            str(info["model_id"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"{self.url} is not a clicklabel encoding server (no model in /v1/info)") from None
        return info

    def has(self, key: str) -> bool:
        r = self.request("HEAD", f"/v1/embeddings/{key}")
        if r.status_code not in (200, 404):
            raise self._refused(r)
        return r.status_code == 200

    def embedding(self, key: str, image: np.ndarray | None = None,
                  image_bytes: Callable[[], bytes] | None = None) -> Embedding:
        """The embedding under ``key``: fetched if the server has it, else the image is uploaded and encoded."""
        r = self.request("GET", f"/v1/embeddings/{key}")
        if r.status_code == 404:
            data = image_bytes() if image_bytes is not None else png_bytes(image)
            r = self.request("PUT", f"/v1/embeddings/{key}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 200:
            raise self._refused(r)
        emb = read_embedding(io.BytesIO(r.content))
        if emb is None:
            raise RemoteError(f"the encoding server {self.url} sent an unreadable embedding for {key}")
        return emb


def _reason(exc) -> str:
    """A short reason for a failed request (no stack of wrapped urllib3 errors)."""
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset",
                   "RemoteDisconnected", "Connection aborted"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


class RemoteEncoder:
    """Stands in for an engine's encoder: ``encode`` fetches from the server; the rest (the resize the prompts'
    coordinates follow, ``prepare``) is the local encoder's."""

    def __init__(self, engine, client: EncoderClient, info: dict):
        self._local, self._engine, self.client, self.info = None, engine, client, info
        self.precision = str(info.get("precision", "?"))
        self.device = engine.device  # where the decoder runs

    def __getattr__(self, name):
        if name.startswith("__") or name == "_local":
            raise AttributeError(name)
        if self._local is None:  # built only when asked for: encoding happens on the server
            self._local = self._engine.local_encoder()
        return getattr(self._local, name)

    def describe(self) -> str:
        return f"remote: {self.client.url} ({self.info.get('model', '?')}, {self.precision}, " \
               f"{self.info.get('device', '?')})"

    def encode(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        out = []
        for img in images:
            key = self._engine.embedding_key(img)
            emb = self.client.embedding(key, img)
            if not self._engine._fits(emb, *img.shape[:2]):
                raise RemoteError(f"the encoding server {self.client.url} sent an embedding of another shape "
                                  f"or size for {key}")
            out.append(emb)
        return out


def attach_remote(engine, server: str, token: str | None = None, notify: Callable[[str], None] | None = None,
                  **client_options):
    """Make ``engine`` (a SAM-family engine with the server's weights) encode on ``server``; returns it."""
    if not hasattr(engine, "embedding_key") or not hasattr(engine, "encoder"):
        raise RemoteError(f"--engine remote needs a Segment Anything model, not {getattr(engine, 'name', engine)}")
    client = EncoderClient(server, token, notify=notify, **client_options)
    info = client.info(quick=True)
    if info["model_id"] != engine.model_id:
        raise RemoteError(f"the server {client.url} encodes with {info['model_id']}, but the local weights are "
                          f"{engine.model_id}: give --model/--checkpoint the same weights as the server")
    engine.encoder = RemoteEncoder(engine, client, info)
    if hasattr(engine, "find"):  # SAM 3: concepts go to the server as text (segment.remote_concepts)
        from .remote_concepts import remote_find

        engine.find = remote_find(engine, client)
    return engine
