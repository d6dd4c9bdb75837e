"""A real chat-completions server on 127.0.0.1 for tests: it checks what the OpenAI SDK sends (image parts
included) and answers as told: slowly, 429 with Retry-After, 500, malformed JSON, refusals, or a timeout."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import threading
import time

import numpy as np
from PIL import Image


class FakeLMM:
    def __init__(self, latency: float = 0.0, answer=None, plan=None, reject_json_schema: bool = False,
                 retry_after: str = "0.2"):
        self.latency = latency
        self.answer = answer or (lambda body, image: {"label": "Siamese cat", "category": "cat", "confidence": 0.9})
        self.plan = plan or (lambda attempt, key: "ok")  # attempt = how many times this image was sent before
        self.reject_json_schema = reject_json_schema
        self.retry_after = retry_after
        self.requests: list[dict] = []
        self.images: list[np.ndarray] = []
        self.attempts: dict[str, int] = {}
        self.times: list[float] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def ok_count(self) -> int:
        return sum(1 for r in self.requests if r.get("_outcome") == "ok")

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code, payload, headers=None, raw=None, kind="application/json"):
                body = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._post()
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _post(self):
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                problem, image = _validate(body, self.headers)
                if problem:
                    return self._send(422, {"error": {"message": problem, "type": "invalid_request_error"}})
                key = hashlib.sha256(image.tobytes()).hexdigest()
                with server._lock:
                    attempt = server.attempts.get(key, 0)
                    server.attempts[key] = attempt + 1
                    server.requests.append(body)
                    server.images.append(image)
                    server.times.append(time.time())
                rf = body.get("response_format") or {}
                if server.reject_json_schema and rf.get("type") == "json_schema":
                    body["_outcome"] = "400"
                    return self._send(400, {"error": {"message": "response_format json_schema is not supported",
                                                      "type": "invalid_request_error", "param": "response_format"}})
                outcome = server.plan(attempt, key)
                body["_outcome"] = outcome
                time.sleep(server.latency)
                if outcome == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": server.retry_after})
                if outcome == "500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if outcome == "timeout":
                    time.sleep(5)
                    return self._send(500, {"error": {"message": "too late"}})
                if outcome == "html":  # a web server's page where the API was expected
                    return self._send(200, None, raw=b"<!DOCTYPE html><html><body>Welcome</body></html>",
                                      kind="text/html")
                if outcome == "malformed":
                    return self._send(200, None, raw=b'{"id": "x", "choices": [')
                if outcome == "bad_choices":  # well-formed JSON, but choices that are not objects
                    return self._send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                            "model": body["model"], "choices": [1, "two"]})
                ans = server.answer(body, image)
                content = ans if isinstance(ans, str) else json.dumps(ans)
                message = {"role": "assistant", "content": content, "refusal": None}
                if outcome == "refusal":
                    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
                if outcome == "not_json":
                    message["content"] = "Sure! Here is a long explanation without any JSON.\nIt goes on."
                return self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                })

        return Handler


def _validate(body: dict, headers) -> tuple[str | None, np.ndarray | None]:
    """What a real server would refuse: no model, no messages, no image part, an image that does not decode."""
    if not headers.get("Authorization", "").startswith("Bearer "):
        return "missing bearer token", None
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        return "model and messages are required", None
    for msg in body["messages"]:
        if msg.get("role") not in ("system", "user", "assistant"):
            return f"bad role {msg.get('role')}", None
    user = [m for m in body["messages"] if m["role"] == "user"]
    parts = user[-1]["content"] if user and isinstance(user[-1]["content"], list) else []
    urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    if len(urls) != 1 or not urls[0].startswith("data:image/"):
        return "expected one image_url part with a data URL", None
    try:
        raw = base64.b64decode(urls[0].split(",", 1)[1], validate=True)
        image = np.array(Image.open(io.BytesIO(raw)).convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's fault
        return f"image does not decode: {exc}", None
    return None, image
