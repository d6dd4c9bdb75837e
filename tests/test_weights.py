import http.server
import threading
from functools import partial

import pytest
import torch

from clicklabel import weights
from clicklabel.errors import WeightsError

from conftest import TINY_ARCH


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = False

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        data = source.read()
        outputfile.write(data[: len(data) // 2] if self.truncate else data)


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = type("H", (_Handler,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()


def _register(monkeypatch, url, path, algorithm="xxh128"):
    digest = {algorithm: weights.file_digest(path, algorithm)} if algorithm else {}
    ck = weights.Checkpoint("vit_test", "sam", url + path.name, path.stat().st_size, **digest)
    monkeypatch.setitem(weights.REGISTRY, "vit_test", ck)
    return ck


def test_registry_has_official_checkpoints():
    reg = weights.REGISTRY
    assert set(reg) == {"vit_b", "vit_l", "vit_h", "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus",
                        "sam2.1_hiera_large", "hq_vit_tiny", "hq_vit_b", "hq_vit_l", "hq_vit_h", "sam3"}
    assert {n for n, c in reg.items() if c.family == "sam2.1"} == {n for n in reg if n.startswith("sam2.1_")}
    assert {n for n, c in reg.items() if c.family == "hq"} == {n for n in reg if n.startswith("hq_")}
    assert reg["vit_b"].xxh128 == "6923c33df3637b6a922d7682bfc9a86b" and reg["vit_b"].known_hash.startswith("xxh128:")
    assert weights.checkpoint_path("vit_b").name == "sam_vit_b_01ec64.pth"
    for ck in reg.values():
        assert ck.url.startswith("https://") and ck.size > 40_000_000 and ck.hash_source
        assert ck.sha256 is None or (len(ck.sha256) == 64 and int(ck.sha256, 16) >= 0)
    assert reg["hq_vit_tiny"].known_hash == "sha256:" + reg["hq_vit_tiny"].sha256
    assert reg["sam2.1_hiera_tiny"].filename == "sam2.1_hiera_tiny.pt"


def test_sha256_pinned_download(monkeypatch, tmp_path, file_server, tiny_checkpoint):
    served, url, _ = file_server
    src = served / "sam_test.pth"
    src.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    ck = _register(monkeypatch, url, src, "sha256")
    assert ck.pinned and ck.known_hash.startswith("sha256:")
    assert weights.download("vit_test", progressbar=False).read_bytes() == src.read_bytes()
    assert weights.verify("vit_test") == (True, f"vit_test: ok, sha256 verified ({tmp_path / 'w' / src.name})")
    bad = weights.Checkpoint("vit_test", "sam", ck.url, ck.size, sha256="0" * 64)
    monkeypatch.setitem(weights.REGISTRY, "vit_test", bad)
    assert weights.verify("vit_test")[0] is False


def test_unpinned_checkpoint_trusts_first_download_only(monkeypatch, tmp_path, file_server, tiny_checkpoint):
    """No published hash: the size is checked, the first download's sha256 is recorded beside the file, and a
    later file that differs is refused (and not kept when this call downloaded it)."""
    served, url, _ = file_server
    src = served / "sam_test.pth"
    data = tiny_checkpoint.read_bytes()
    src.write_bytes(data)
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    ck = _register(monkeypatch, url, src, None)
    assert not ck.pinned and ck.known_hash is None and ck.pin.startswith("size")
    path = weights.download("vit_test", progressbar=False)
    record = weights.first_use_record("vit_test")
    assert record.read_text().split() == [weights.file_digest(path, "sha256"), src.name]
    assert weights.verify("vit_test")[0]
    path.unlink()
    src.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes
    with pytest.raises(WeightsError, match="not the file first downloaded"):
        weights.download("vit_test", progressbar=False)
    assert not path.exists()
    path.write_bytes(src.read_bytes())  # put there by hand
    ok, line = weights.verify("vit_test")
    assert not ok and "not the file first downloaded" in line
    path.write_bytes(data[:100])
    assert "wrong size" in weights.verify("vit_test")[1]


def test_weights_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    assert weights.weights_dir() == tmp_path / "w"


def test_download_verifies_and_reuses(monkeypatch, tmp_path, file_server, tiny_checkpoint):
    served, url, _ = file_server
    src = served / "sam_test.pth"
    src.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    _register(monkeypatch, url, src)
    path = weights.download("vit_test", progressbar=False)
    assert path.read_bytes() == src.read_bytes()
    assert weights.verify("vit_test")[0]
    src.unlink()  # the second call must not need the server
    assert weights.download("vit_test", progressbar=False) == path


def test_truncated_download_leaves_no_file(monkeypatch, tmp_path, file_server, tiny_checkpoint):
    served, url, handler = file_server
    src = served / "sam_test.pth"
    src.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    _register(monkeypatch, url, src)
    handler.truncate = True
    with pytest.raises(WeightsError):
        weights.download("vit_test", progressbar=False, retries=1)
    assert not (tmp_path / "w" / "sam_test.pth").exists()


def test_hash_mismatch_is_refused(monkeypatch, tmp_path, file_server, tiny_checkpoint):
    served, url, _ = file_server
    src = served / "sam_test.pth"
    src.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    ck = _register(monkeypatch, url, src)
    monkeypatch.setitem(weights.REGISTRY, "vit_test", weights.Checkpoint("vit_test", "sam", ck.url, ck.size,
                                                                       xxh128="0" * 32))
    with pytest.raises(WeightsError, match="did not verify"):
        weights.download("vit_test", progressbar=False, retries=0)
    assert not (tmp_path / "w" / "sam_test.pth").exists()


def test_offline_error_names_url_and_path(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    ck = weights.Checkpoint("vit_test", "sam", "http://127.0.0.1:9/sam_x.pth", 10, xxh128="0" * 32)
    monkeypatch.setitem(weights.REGISTRY, "vit_test", ck)
    with pytest.raises(WeightsError) as info:
        weights.download("vit_test", progressbar=False, retries=0)
    msg = str(info.value)
    assert ck.url in msg and str(tmp_path / "w" / "sam_x.pth") in msg


def test_missing_weights_without_download_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="clicklabel weights download vit_b"):
        weights.resolve_checkpoint("vit_b", None, download_missing=False)


def test_architecture_is_read_from_weights(vit_b_checkpoint, tiny_checkpoint):
    sd = weights.read_state_dict(vit_b_checkpoint)
    assert weights.infer_architecture(sd) == weights.ARCHITECTURES["vit_b"]
    assert weights.infer_architecture(weights.read_state_dict(tiny_checkpoint)) == TINY_ARCH
    for name in ("vit_l", "vit_h"):  # the builders' shapes, without saving gigabytes
        from segment_anything import sam_model_registry

        enc_sd = {f"image_encoder.{k}": v for k, v in sam_model_registry[name]().image_encoder.state_dict().items()}
        assert weights.architecture_name(weights.infer_architecture(enc_sd)) == name


def test_load_errors(tmp_path, vit_b_checkpoint, tiny_checkpoint):
    with pytest.raises(WeightsError, match="holds a vit_b model, not vit_h"):
        weights.load_sam("vit_h", vit_b_checkpoint)
    with pytest.raises(WeightsError, match="not vit_b"):
        weights.load_sam("vit_b", tiny_checkpoint)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(vit_b_checkpoint.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError, match="truncated"):
        weights.load_sam("vit_b", cut)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="not a Segment Anything checkpoint"):
        weights.load_sam("vit_b", other)
    with pytest.raises(WeightsError, match="not found"):
        weights.load_sam("vit_b", tmp_path / "nothing.pth")
    with pytest.raises(WeightsError, match="unknown model"):
        weights.load_sam("vit_x", tiny_checkpoint)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_not_executed(tmp_path, capsys):
    p = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, p)
    with pytest.raises(WeightsError):
        weights.read_state_dict(p)
    assert "code ran" not in capsys.readouterr().out


def test_random_checkpoint_loads_through_loader(tiny_checkpoint):
    sam, name, path = weights.load_sam("auto", tiny_checkpoint)
    assert name.startswith("vit_custom") and path == tiny_checkpoint
    ref = torch.load(tiny_checkpoint, weights_only=True)
    assert torch.equal(sam.state_dict()["mask_decoder.iou_token.weight"], ref["mask_decoder.iou_token.weight"])
