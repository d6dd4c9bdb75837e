"""``clicklabel serve``'s Ray Serve deployment: the image encoder on a GPU server, one embedding per image.

HTTP API (every route but ``/v1/health`` needs ``Authorization: Bearer <token>`` when the server has a token):

    GET  /v1/health              200 {"ok": true}
    GET  /v1/info                200 {"model", "model_id", "precision", "device"}: the client checks the weights
    HEAD /v1/embeddings/{key}    200 (the server holds it) | 404
    GET  /v1/embeddings/{key}    200 the cache entry (.npz, float16) | 404
    PUT  /v1/embeddings/{key}    body: the image (a PNG of the decoded pixels); 200 the cache entry.
                                 401 no or wrong token (before any byte of the body is read), 409 the key is not
                                 this image's under this server's weights, 411 no length, 413 too large, 415 not
                                 an image
    POST /v1/concepts/{key}      SAM 3: body {"concept", "exemplars", "negative", "threshold"}; 200 {"instances":
                                 [{"score", "rle"}]} on the image's cached features (``segment.remote_concepts``);
                                 404 the image was not uploaded, 400 a bad body or a model without concepts

``{key}`` is the embedding cache's key (the image's content hash under the weights fingerprint), so the server's
cache is an ordinary clicklabel cache folder, shared by its replicas, and an image is sent at most once. Concurrent
uploads are encoded together (``serve.batch``), off the event loop, so fetches of cached embeddings never wait for
an encoding.
"""

# No ``from __future__ import annotations`` here: FastAPI must see ``request: Request`` as the class itself on the
# ingress methods, or every route answers 422 "Field required".
import asyncio
import hmac
import io
import os
import re
import threading
from collections import OrderedDict

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from ..embeddings import Embedding, EmbeddingCache, write_embedding
from ..errors import ClickLabelError, ImageError, ImageTooLarge
from ..images import load_image

app = FastAPI(title="clicklabel encoder", docs_url=None, redoc_url=None, openapi_url=None)
NPZ = "application/octet-stream"
KEY_CHARS = re.compile(r"[A-Za-z0-9_.-]{1,200}")


@app.exception_handler(HTTPException)  # before @serve.ingress wraps the app: errors as {"error": "one line"}
async def _json_error(request, exc):
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def decode_upload(data: bytes) -> np.ndarray:
    """An uploaded image -> RGB uint8 pixels, by ``load_image`` itself (so the server hashes what a client's
    ``load_image`` gives); HTTP 415 for anything that is not an image, 413 for one above its pixel limit."""
    try:
        return load_image(data)
    except ImageTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except ImageError as exc:
        raise HTTPException(415, str(exc)) from None


def entry_bytes(emb: Embedding) -> bytes:
    """An embedding as the bytes of its cache entry (what GET and PUT answer)."""
    buf = io.BytesIO()
    write_embedding(buf, emb)
    return buf.getvalue()


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization`` header, or None; the scheme's case does not matter (RFC 7235: ``bearer``,
    ``Bearer`` and ``BEARER`` are one scheme)."""
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@serve.deployment(max_ongoing_requests=32, health_check_period_s=5, graceful_shutdown_timeout_s=5)
@serve.ingress(app)
class EncoderServer:
    """One replica: the engine (one model load), the shared cache folder, and the last answers as bytes."""

    def __init__(self, spec: dict, cache_dir: str, token: "str | None", max_upload: int):
        from ..segment import make_engine

        self.engine = make_engine(cache=EmbeddingCache(cache_dir, memory_items=64), download=False, **spec)
        self.token = token.encode() if token else None
        self.max_upload = max_upload
        self.hot: OrderedDict[str, bytes] = OrderedDict()
        self._concept_lock = threading.Lock()  # concept prompts set the engine's current image
        if not str(self.engine.device).startswith("cuda"):  # a CPU encodes a batch slower per image than one by
            self._encode.set_max_batch_size(1)  # one (docs/benchmarks.md): batches are for the GPU

    # -- helpers ----------------------------------------------------------------------------------------------
    def _auth(self, request: Request) -> None:
        if self.token is None:
            return
        got = bearer_token(request.headers.get("authorization", ""))
        if got is None or not hmac.compare_digest(got.encode(), self.token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def _check_key(self, key: str) -> None:
        if not KEY_CHARS.fullmatch(key) or ".." in key:  # a key names a file in the cache: nothing else
            raise HTTPException(400, "not an embedding key")
        if not key.startswith(self.engine.model_id + "-"):
            raise HTTPException(409, f"this server encodes with {self.engine.model_id}; the key {key[:80]} is "
                                     "for other weights")

    def _bytes(self, key: str) -> "bytes | None":
        body = self.hot.get(key)
        if body is not None:
            self.hot.move_to_end(key)
            return body
        emb = self.engine.cache.get(key)
        return None if emb is None else self._remember(key, emb)

    def _remember(self, key: str, emb: Embedding) -> bytes:
        body = self.hot[key] = entry_bytes(emb)
        while len(self.hot) > 32:
            self.hot.popitem(last=False)
        return body

    async def _found(self, key: str) -> "bytes | None":
        body = self.hot.get(key)
        return body if body is not None else await asyncio.to_thread(self._bytes, key)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _encode(self, images: "list[np.ndarray]") -> "list[Embedding]":
        return await asyncio.to_thread(self.engine.encode_batch, images)

    # -- routes -----------------------------------------------------------------------------------------------
    @app.get("/v1/health")
    async def health(self):
        return {"ok": True}

    @app.get("/v1/info")
    async def info(self, request: Request):
        self._auth(request)
        e = self.engine
        return {"model": e.model, "model_id": e.model_id, "precision": e.precision, "device": e.device,
                "pid": os.getpid()}

    @app.head("/v1/embeddings/{key}")
    async def head(self, key: str, request: Request):
        self._auth(request)
        self._check_key(key)
        body = await self._found(key)
        return Response(status_code=404 if body is None else 200, media_type=NPZ)

    @app.get("/v1/embeddings/{key}")
    async def get(self, key: str, request: Request):
        self._auth(request)
        self._check_key(key)
        body = await self._found(key)
        if body is None:
            raise HTTPException(404, f"no embedding for {key} yet (upload the image with PUT)")
        return Response(body, media_type=NPZ)

    @app.put("/v1/embeddings/{key}")
    async def put(self, key: str, request: Request):
        self._auth(request)  # before a single byte of the body is read
        self._check_key(key)
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "an upload needs a Content-Length")
        if not length.isdigit() or int(length) > self.max_upload:
            raise HTTPException(413, f"the upload is {length} bytes; this server takes at most {self.max_upload} "
                                     "(clicklabel serve --max-upload-mb)")
        body = await self._found(key)
        if body is not None:
            return Response(body, media_type=NPZ)
        data, got = [], 0
        async for chunk in request.stream():  # Content-Length is a claim: count what arrives
            got += len(chunk)
            if got > self.max_upload:
                raise HTTPException(413, f"the upload is larger than {self.max_upload} bytes")
            data.append(chunk)
        img = await asyncio.to_thread(decode_upload, b"".join(data))
        real = self.engine.embedding_key(img)
        if real != key:
            raise HTTPException(409, f"the uploaded image's key is {real}, not {key}")
        emb = await self._encode(img)
        try:
            await asyncio.to_thread(self.engine.cache.put, key, emb)
        except ClickLabelError:  # a full server disk: the answer still goes out, and stays in memory
            pass
        return Response(self._remember(key, emb), media_type=NPZ)

    @app.post("/v1/concepts/{key}")
    async def concepts(self, key: str, request: Request):
        from ..segment.remote_concepts import answer

        self._auth(request)
        self._check_key(key)
        try:
            payload = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        emb = await asyncio.to_thread(self.engine.cache.get, key)
        if emb is None:
            raise HTTPException(404, f"no embedding for {key} yet (upload the image with PUT)")

        def run():
            with self._concept_lock:
                return answer(self.engine, emb, payload)

        try:
            return await asyncio.to_thread(run)
        except ClickLabelError as exc:
            raise HTTPException(400, str(exc)) from None


def build(spec: dict, cache_dir: str, token: "str | None", replicas: int = 1, actor_options: "dict | None" = None,
          max_upload: int = 32 * 2**20):
    """The bound application for ``serve.run``."""
    return EncoderServer.options(num_replicas=replicas, ray_actor_options=actor_options or {"num_cpus": 1}).bind(
        spec, cache_dir, token, max_upload)
