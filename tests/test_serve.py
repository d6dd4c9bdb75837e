"""``clicklabel serve`` and ``--engine remote``: the same masks as the local engine, the token, the upload checks,
retries of a restarting server, and the rules that refuse to start."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import ClickLabelError
from clicklabel.segment import Prompt, make_engine
from clicklabel.segment.remote import EncoderClient, RemoteError, png_bytes

from conftest import SERVE_TOKEN as TOKEN
from conftest import TINY_ARCH, sample

requests = pytest.importorskip("requests", reason="needs the optional extra: pip install 'clicklabel[remote]'")


def _unsent(name: str) -> np.ndarray:
    """A bundled sample mirrored: an image no other test sends to the session's server, so its cache starts
    without it whichever tests ran before."""
    return np.ascontiguousarray(sample(name)[:, ::-1])


def _remote(url, checkpoint, cache, token=TOKEN, **kw):
    return make_engine("remote", "auto", checkpoint, "cpu", cache=EmbeddingCache(cache), server=url, token=token, **kw)


def test_remote_engine_gives_the_local_engines_masks(encode_server, tiny_checkpoint, tmp_path):
    url, server_cache = encode_server
    img = _unsent("coffee")
    local = make_engine("sam", "auto", tiny_checkpoint, "cpu", cache=EmbeddingCache(tmp_path / "local"),
                        encoder="stock")
    local.prefetch(img)
    local.cache.clear_memory()  # the local engine reads the float16 entry, as every cached image does
    local.set_image(img)
    remote = _remote(url, tiny_checkpoint, tmp_path / "remote")
    assert remote.encoder.describe().startswith(f"remote: {url}")
    key = remote.embedding_key(img)
    assert not remote.encoder.client.has(key)
    remote.set_image(img)
    assert remote.encoder.client.has(key) and list(server_cache.rglob("*.npz"))
    for prompt in (Prompt(points=[(200, 150)], labels=[1]), Prompt(box=(40, 30, 300, 250)),
                   Prompt(points=[(100, 100), (400, 300)], labels=[1, 0])):
        a, b = local.predict(prompt, multimask=True), remote.predict(prompt, multimask=True)
        assert [r.score for r in a] == [r.score for r in b]
        for ra, rb in zip(a, b):
            assert np.array_equal(ra.mask, rb.mask)
    # a second laptop (empty local cache) gets the server's entry without the server encoding again
    other = _remote(url, tiny_checkpoint, tmp_path / "other")
    other.set_image(img)
    assert np.array_equal(other.embedding.features, remote.embedding.features)


def test_requests_without_the_token_are_refused(encode_server, tiny_checkpoint, tmp_path):
    url, _ = encode_server
    assert requests.get(f"{url}/v1/health", timeout=30).status_code == 200  # the only open route
    key = make_engine("sam", "auto", tiny_checkpoint, "cpu", cache=EmbeddingCache(tmp_path, disk=False),
                      encoder="stock").embedding_key(sample("rocket"))
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-the-same-length-xxxx"}, {"Authorization": TOKEN}):
        assert requests.get(f"{url}/v1/info", headers=headers, timeout=30).status_code == 401
        assert requests.get(f"{url}/v1/embeddings/{key}", headers=headers, timeout=30).status_code == 401
        r = requests.put(f"{url}/v1/embeddings/{key}", data=png_bytes(sample("rocket")), headers=headers, timeout=30)
        assert r.status_code == 401 and "token" in r.json()["error"]
    with pytest.raises(RemoteError, match="HTTP 401.*--token-file"):
        _remote(url, tiny_checkpoint, tmp_path / "c", token=None)


def test_uploads_are_checked(encode_server, tiny_checkpoint, tmp_path):
    url, _ = encode_server
    eng = make_engine("sam", "auto", tiny_checkpoint, "cpu", cache=EmbeddingCache(tmp_path, disk=False),
                      encoder="stock")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rocket = _unsent("rocket")
    key = eng.embedding_key(rocket)

    def put(k, data):
        return requests.put(f"{url}/v1/embeddings/{k}", data=data, headers=auth, timeout=60)

    r = put(key, b"%PDF-1.4 not an image")
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    r = put(key, b"\0" * (1024 * 1024 + 10))  # the test server takes 1 MB
    assert r.status_code == 413 and "at most 1048576" in r.json()["error"]
    r = put(key, png_bytes(sample("coffee")))  # another image under this key: never cached under it
    assert r.status_code == 409 and "key is" in r.json()["error"]
    r = put("vit_h-0123456789abcdef-" + key.split("-", 2)[-1], png_bytes(rocket))
    assert r.status_code == 409 and "encodes with" in r.json()["error"]
    assert requests.head(f"{url}/v1/embeddings/{key}", headers=auth, timeout=30).status_code == 404
    for bad in (key.split("-")[0] + "-..%2F..%2Fx", key + "%00", "x" * 300):  # keys name cache files: nothing else
        assert requests.get(f"{url}/v1/embeddings/{bad}", headers=auth, timeout=30).status_code in (400, 404)
    assert put(key, png_bytes(rocket)).status_code == 200


def test_other_local_weights_are_refused(encode_server, tmp_path):
    from clicklabel.weights import save_random_checkpoint

    url, _ = encode_server
    other = save_random_checkpoint(tmp_path / "other.pth", TINY_ARCH, seed=2)
    with pytest.raises(RemoteError, match="encodes with .* but the local weights are"):
        _remote(url, other, tmp_path / "c")


class _Flaky(BaseHTTPRequestHandler):
    """503 for the first two requests (a server restarting), then a valid /v1/info."""

    calls = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).calls += 1
        body = json.dumps({"model_id": "m-1", "model": "m", "precision": "fp32", "device": "cpu"}).encode()
        self.send_response(503 if type(self).calls <= 2 else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_a_restarting_server_and_says_so():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    said = []
    try:
        client = EncoderClient(f"http://127.0.0.1:{httpd.server_port}", backoff=0.01, notify=said.append)
        assert client.info()["model_id"] == "m-1"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(said) == 2 and all("HTTP 503; retrying" in s for s in said)
    dead = EncoderClient(f"http://127.0.0.1:{httpd.server_port}", retries=2, backoff=0.01, notify=said.append)
    with pytest.raises(RemoteError, match=r"cannot reach the encoding server .* after 3 tries \(connection refused"):
        dead.info()
    assert len(said) == 4


def test_serve_refuses_to_start_open_to_all(capsys, tmp_path, monkeypatch):
    assert main(["serve", "--host", "0.0.0.0", "--no-auth"]) == 2
    assert "--no-auth is only allowed on a loopback address" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(short)]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["serve", "--token-file", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_default_token_is_made_once_and_private(tmp_path, monkeypatch):
    from clicklabel.cluster.serving import default_token_file, server_token

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CLICKLABEL_SERVE_TOKEN", raising=False)
    token, where = server_token(None, False, "0.0.0.0")
    assert where == str(default_token_file()) and default_token_file().stat().st_mode & 0o077 == 0
    assert server_token(None, False, "0.0.0.0")[0] == token and len(token) >= 32


def test_without_the_extras_each_use_names_them(monkeypatch, capsys, tiny_checkpoint):
    import sys

    from conftest import SAMPLES

    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(ClickLabelError, match=r"clicklabel\[remote\]"):
        EncoderClient("http://127.0.0.1:1")
    assert main(["segment", str(SAMPLES / "coffee.jpg"), "--point", "1,1", "--engine", "remote", "--server",
                 "http://127.0.0.1:1", "--device", "cpu", "--checkpoint", str(tiny_checkpoint), "--model", "auto"]) == 2
    assert "clicklabel[remote]" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["serve", "--no-auth", "--port", "0"]) == 2
    assert "clicklabel[ray]" in capsys.readouterr().err


def test_bench_remote_prints_every_row(tiny_checkpoint, tmp_path):
    """In its own process: the benchmark starts (and stops) its own Ray and server."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "clicklabel.cli", "bench", "remote", "--model", "auto", "--checkpoint",
                        str(tiny_checkpoint), "--device", "cpu", "--precompute-images", "2", "--repeats", "3"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in r.stdout.splitlines()
            if line.startswith("| ") and "measure" not in line}
    assert set(rows) == {"cached embedding fetch p50 (ms)", "cached embedding fetch p90 (ms)",
                         "serve, 1 client (images/s)", "serve, 4 clients at once (images/s)",
                         "precompute --ray, cluster start + model loads included (images/s)"}
    assert float(rows["cached embedding fetch p50 (ms)"][0]) > 0
    ray_row = rows["precompute --ray, cluster start + model loads included (images/s)"]
    assert float(ray_row[2].strip().rstrip("x")) > 0  # a number, never "0x"
    assert "(pairs " in rows["serve, 1 client (images/s)"][2] and "load average" in r.stdout
    assert "started 1 Ray worker(s): " in r.stdout and "images: 2 paired (1 client), 2 (4 clients)" in r.stdout
    assert "Traceback" not in r.stderr


def test_propose_and_segment_with_the_remote_engine(encode_server, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from conftest import SAMPLES

    url, _ = encode_server
    monkeypatch.setenv("CLICKLABEL_SERVE_TOKEN", TOKEN)
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "laptop"))
    remote = ["--engine", "remote", "--server", url, "--model", "auto", "--checkpoint", str(tiny_checkpoint),
              "--device", "cpu"]
    out = tmp_path / "props.json"
    assert main(["propose", str(SAMPLES / "astronaut.jpg"), *remote, "--grid", "4", "--pred-iou-thresh", "0",
                 "--stability-thresh", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["annotations"]
    assert main(["segment", str(SAMPLES / "astronaut.jpg"), "--point", "100,100", *remote]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["embedding_cached"] is True
    project = str(tmp_path / "p.clicklabel")
    assert main(["add", project, str(SAMPLES / "astronaut.jpg")]) == 0
    assert main(["propose", project, *remote, "--ray"]) == 2
    assert "leave out --engine remote" in capsys.readouterr().err
