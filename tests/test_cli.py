import json

import numpy as np
import pytest
from PIL import Image

from clicklabel.cli import main
from clicklabel.masks import mask_iou, tight_bbox

from conftest import SAMPLES, sample


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_segment_writes_mask_and_json(capsys, tmp_path, tiny_checkpoint):
    out = tmp_path / "m.png"
    code, stdout, _ = run(capsys, "segment", SAMPLES / "chelsea.jpg", "--point", "200,150", "--point", "20,20:0",
                          "--box", "100,50,350,280", "--model", "auto", "--checkpoint", tiny_checkpoint,
                          "--device", "cpu", "--out", out)
    assert code == 0
    info = json.loads(stdout)
    mask = np.array(Image.open(out)) > 0
    assert mask.shape == (300, 451) and mask.any() and not info["empty"]
    assert info["area"] == mask.sum()
    assert info["bbox"] == list(tight_bbox(mask))
    assert set(info) >= {"bbox", "area", "score"}
    # the mask written is the engine's answer to these prompts
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment import Prompt
    from clicklabel.segment.sam import SamEngine

    eng = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "own", disk=False))
    eng.set_image(sample("chelsea"))
    ref = eng.predict(Prompt.make([(200, 150), (20, 20)], [1, 0], (100, 50, 350, 280)))[0]
    assert mask_iou(mask, ref.mask) >= 0.99 and info["score"] == pytest.approx(ref.score, abs=1e-3)


def test_segment_fast_encoder_gives_the_same_mask(capsys, tmp_path, tiny_checkpoint, monkeypatch):
    """Two real encodings (each run has an empty cache of its own), one with stock attention and one with SDPA,
    compared on a non-empty mask."""
    from clicklabel.segment import fast_encoder
    from clicklabel.segment.encoder import ImageEncoder

    ran = []
    forward = ImageEncoder.forward

    def spy(self, x):  # what the encoder really ran with: its switches and the attention in the model
        out = forward(self, x)
        ran.append((self.describe(), fast_encoder.is_enabled(self.sam)))
        return out

    monkeypatch.setattr(ImageEncoder, "forward", spy)
    masks = []
    for enc in ("stock", "fast"):
        monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / f"cache_{enc}"))
        out = tmp_path / f"{enc}.png"
        code, stdout, _ = run(capsys, "segment", SAMPLES / "chelsea.jpg", "--box", "100,50,350,280", "--model",
                              "auto", "--checkpoint", tiny_checkpoint, "--device", "cpu", "--encoder", enc,
                              "--out", out)
        assert code == 0
        info = json.loads(stdout)
        assert info["embedding_cached"] is False and not info["empty"]
        masks.append(np.array(Image.open(out)) > 0)
    assert ran == [("fp32", False), ("fp32 + SDPA", True)]
    assert masks[0].sum() > 100
    inter, union = (masks[0] & masks[1]).sum(), (masks[0] | masks[1]).sum()
    assert inter / union >= 0.999


def test_make_engine_rejects_unknown_encoder():
    from clicklabel.errors import ClickLabelError
    from clicklabel.segment import make_engine

    with pytest.raises(ClickLabelError, match="unknown encoder"):
        make_engine("grabcut", encoder="turbo")


def test_segment_grabcut(capsys, tmp_path):
    code, stdout, _ = run(capsys, "segment", SAMPLES / "coffee.jpg", "--box", "60,40,460,300", "--engine", "grabcut")
    assert code == 0 and json.loads(stdout)["area"] > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["segment", "missing.jpg", "--point", "1,1"], "image not found"),
        (["segment", "pyproject.toml", "--point", "1,1"], "not an image"),
        (["segment", SAMPLES / "chelsea.jpg", "--point", "900,10"], "outside"),
        (["segment", SAMPLES / "chelsea.jpg", "--box", "50,50,10,60"], "x1 > x0"),
        (["segment", SAMPLES / "chelsea.jpg", "--point", "1;1"], "must look like"),
        (["segment", SAMPLES / "chelsea.jpg", "--point", "1,1", "--model", "vit_q"], "unknown model"),
    ],
)
def test_bad_input_one_line_nonzero_nothing_written(capsys, tmp_path, args, message):
    out = tmp_path / "m.png"
    code, stdout, err = run(capsys, *args, "--out", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_wrong_and_truncated_checkpoints(capsys, tmp_path, vit_b_checkpoint):
    code, _, err = run(capsys, "segment", SAMPLES / "chelsea.jpg", "--point", "1,1", "--model", "vit_l",
                       "--checkpoint", vit_b_checkpoint)
    assert code == 2 and "holds a vit_b model, not vit_l" in err
    cut = tmp_path / "cut.pth"
    cut.write_bytes(vit_b_checkpoint.read_bytes()[:5000])
    code, _, err = run(capsys, "segment", SAMPLES / "chelsea.jpg", "--point", "1,1", "--checkpoint", cut)
    assert code == 2 and "truncated" in err and len(err.strip().splitlines()) == 1


def test_missing_weights_offline_message(capsys, monkeypatch, tmp_path):
    """The real download, offline (a closed port), without its waits between retries: one line that says what
    to do."""
    from functools import partial

    from clicklabel import weights

    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    ck = weights.REGISTRY["vit_b"]
    url = "http://127.0.0.1:9/" + ck.filename
    monkeypatch.setitem(weights.REGISTRY, "vit_b", weights.Checkpoint("vit_b", "sam", url, ck.size, xxh128=ck.xxh128))
    monkeypatch.setattr(weights, "download", partial(weights.download, retries=0))
    code, _, err = run(capsys, "segment", SAMPLES / "chelsea.jpg", "--point", "1,1")
    errors = [line for line in err.splitlines() if line.startswith("clicklabel: error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1  # after pooch's "Downloading file" notice
    assert "cannot download vit_b" in errors[0] and url in errors[0] and str(tmp_path / ck.filename) in errors[0]
    assert not (tmp_path / ck.filename).exists()


def test_weights_list_and_verify(capsys, monkeypatch, tmp_path):
    from clicklabel import weights

    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    code, out, _ = run(capsys, "weights", "list")
    assert code == 0 and "vit_h" in out and "missing" in out
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in out.splitlines()
            if r.startswith("| ") and "hash-pinned" not in r}
    assert set(rows) == set(weights.REGISTRY) and len(rows) == 12
    assert rows["sam2.1_hiera_tiny"][0] == "SAM 2.1" and rows["hq_vit_tiny"][0] == "HQ-SAM"
    assert rows["hq_vit_tiny"][1:4] == ["43 MB", "yes", "sha256"] and rows["vit_b"][3] == "xxh128"
    assert rows["vit_l"][7] == weights.REGISTRY["vit_l"].url and rows["vit_l"][5:7] == ["Apache-2.0", "open"]
    assert rows["sam3"][0] == "SAM 3" and rows["sam3"][1].startswith("~") and rows["sam3"][5:7] == [
        "SAM License", "gated: HF_TOKEN"]
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"short")
    code, out, _ = run(capsys, "weights", "list")
    vit_b = next(line for line in out.splitlines() if line.startswith("| vit_b "))
    assert code == 0 and "incomplete (5 of" in vit_b and "present" not in vit_b  # a truncated download
    code, out, _ = run(capsys, "weights", "verify")
    assert code == 1 and "wrong size" in out


def test_gui_is_a_command_of_its_own_program(monkeypatch, tmp_path):
    """`clicklabel gui ...` becomes the plugin's clicklabel-gui program with the same arguments (the core never
    imports the plugin): exec on POSIX (one process: a signal to `clicklabel gui` reaches the window), a child
    process where exec is refused. tests/test_napari_feedback.py kills a real one."""
    import os
    import subprocess

    from clicklabel.cli import gui

    class Execed(Exception):
        pass

    seen = {}

    def execv(path, argv):
        seen.update(exec=(path, argv))
        raise Execed

    monkeypatch.setattr(gui, "gui_program", lambda: "/bin/clicklabel-gui")
    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setattr(subprocess, "call", lambda argv: seen.update(argv=argv) or 7)
    want = ["/bin/clicklabel-gui", str(tmp_path), "--cache", str(tmp_path / "c"), "--encoder", "fast"]
    if os.name == "posix":
        with pytest.raises(Execed):
            main(["gui", *want[1:]])
        assert seen.pop("exec") == (want[0], want) and "argv" not in seen

        def refused(path, argv):
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(os, "execv", refused)
    assert main(["gui", *want[1:]]) == 7  # exec refused (or no exec here): a child process, its exit status
    assert seen["argv"] == want


def test_gui_program_reads_every_engine_option():
    pytest.importorskip("napari")
    from clicklabel_napari.launch import build_parser, engine_choice

    args = build_parser().parse_args(["imgs", "--engine", "grabcut", "--cache", "c", "--encoder", "fast"])
    assert (args.images, args.cache, args.encoder, engine_choice(args.engine, args.model)) == (
        ["imgs"], "c", "fast", "grabcut")
    args = build_parser().parse_args(["--model", "vit_h"])
    assert engine_choice(args.engine, args.model) == "vit_h"
    assert engine_choice("vit_l", "vit_b") == "vit_l"  # the 0.1 spelling, --engine vit_l
    assert engine_choice("sam", None) is None  # nothing chosen: the widget's default (CPU: fastest weights here)
    args = build_parser().parse_args(["--model", "hq_vit_tiny"])
    assert engine_choice(args.engine, args.model) == "hq_vit_tiny"
