"""The widget with the encoder on a `clicklabel serve` server: `clicklabel gui --engine remote --server URL`, a real
click answered by the local decoder, and a server that goes away reported in the status line, never a frozen UI."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("requests")
from gui_input import click  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari.launch import build  # noqa: E402

from conftest import SERVE_TOKEN  # noqa: E402

pytestmark = pytest.mark.gui


def _ready(w):
    return w.session is not None and w.session.image is not None and w.nav.loading is None and not w.prompter.answering


class _Down(BaseHTTPRequestHandler):
    """A server that knows the model (``info``) but answers 503 to every embedding: a restarting server."""

    info: dict = {}

    def do_GET(self):  # noqa: N802
        ok = self.path == "/v1/info"
        body = json.dumps(self.info if ok else {"error": "restarting"}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_gui_remote_engine_click_and_a_server_that_goes_away(make_napari_viewer, qtbot, encode_server,
                                                             tiny_checkpoint, folder, tmp_path, monkeypatch):
    url, server_cache = encode_server
    monkeypatch.setenv("CLICKLABEL_SERVE_TOKEN", SERVE_TOKEN)
    viewer = make_napari_viewer()
    _, w = build([str(folder), "--project", str(tmp_path / "p.clicklabel"), "--engine", "remote", "--server", url,
                  "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                  "--cache", str(tmp_path / "laptop_cache")], viewer=viewer)
    qtbot.waitUntil(lambda: _ready(w), timeout=120_000)
    assert w.project.engine.remote_box.value and f"remote: {url}" in w.project.engine.help.text()
    key = w.session.engine.embedding_key(w.session.image)
    assert any(key in p.name for p in server_cache.rglob("*.npz"))  # encoded there, not here

    click(viewer, 200, 150)  # a real click on the canvas: decoded here
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=20_000)
    assert np.array_equal(w.layers.preview.data.astype(bool), w.session.state.preview.mask)

    # the server restarts: the image is retried, each retry said in the status line, the UI keeps running
    _Down.info = w.session.engine.encoder.client.info()
    down = ThreadingHTTPServer(("127.0.0.1", 0), _Down)
    threading.Thread(target=down.serve_forever, daemon=True).start()
    said, shown = [], []
    w.bench.notice.connect(said.append)
    timer = QTimer()
    from superqt.utils._qthreading import WorkerBase

    from clicklabel.segment import remote

    WorkerBase.await_workers(msecs=60_000)  # the next image's prefetch (from the live server) is over ...
    shutil.rmtree(tmp_path / "laptop_cache")  # ... and the laptop forgets every embedding: all must be fetched
    on_screen = threading.Event()
    made = remote.EncoderClient.__init__

    def held_client(client, *args, **kwargs):  # the new engine's client: quick retries, each waiting until shown
        made(client, *args, **kwargs)
        client.backoff = 0.05
        notify = client.notify

        def held_notify(text):  # the worker's retries wait until the UI thread has shown one
            notify(text)
            on_screen.wait(30)

        client.notify = held_notify

    def note():  # the UI thread's own timer: what the status line shows while the worker retries
        shown.append((w.nav.loading is not None, w.status.text()))
        if shown[-1][0] and "HTTP 503; retrying" in shown[-1][1]:
            on_screen.set()

    monkeypatch.setattr(remote.EncoderClient, "__init__", held_client)
    try:
        w.project.engine.server.value = f"http://127.0.0.1:{down.server_port}"
        timer.timeout.connect(note)
        timer.start(20)
        w.project.engine.load()  # in a worker; the new engine shows the current image again: its embedding is fetched
        qtbot.waitUntil(lambda: not w.project.engine.loading, timeout=60_000)
        assert w.engine.encoder.client.url.endswith(str(down.server_port))
        qtbot.waitUntil(lambda: w.nav.loading is None, timeout=120_000)
        timer.stop()
    finally:
        down.shutdown()
        down.server_close()
    assert said and all("HTTP 503; retrying" in s for s in said)
    assert "Cannot show" in w.status.text() and "cannot reach the encoding server" in w.status.text()
    # never frozen: the UI thread turned its event loop and showed the retries while the image was still loading
    assert on_screen.is_set() and any(loading and "HTTP 503; retrying" in text for loading, text in shown)
