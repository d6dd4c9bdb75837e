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


def _register(monkeypatch, url, path):
    ck = weights.Checkpoint("vit_test", url + path.name, weights.file_xxh128(path), path.stat().st_size)
    monkeypatch.setitem(weights.REGISTRY, "vit_test", ck)
    return ck


def test_registry_has_official_checkpoints():
    assert set(weights.REGISTRY) == {"vit_b", "vit_l", "vit_h"}
    assert weights.REGISTRY["vit_b"].xxh128 == "6923c33df3637b6a922d7682bfc9a86b"
    assert weights.checkpoint_path("vit_b").name == "sam_vit_b_01ec64.pth"


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
    monkeypatch.setitem(weights.REGISTRY, "vit_test", weights.Checkpoint("vit_test", ck.url, "0" * 32, ck.size))
    with pytest.raises(WeightsError, match="did not verify"):
        weights.download("vit_test", progressbar=False, retries=0)
    assert not (tmp_path / "w" / "sam_test.pth").exists()


def test_offline_error_names_url_and_path(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    ck = weights.Checkpoint("vit_test", "http://127.0.0.1:9/sam_x.pth", "0" * 32, 10)
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
