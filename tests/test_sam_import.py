"""A click on a cached image pays for no more than it uses: Segment Anything's model classes without its package's
__init__ (torchvision, torch._dynamo), the prompts' resize without torchvision, and a second `clicklabel segment`
that imports neither."""

import json
import os
import subprocess
import sys

import numpy as np

from clicklabel.segment.sam import LongestSide

from conftest import SAMPLES


def run_python(code: str, env=None) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_the_model_classes_come_without_torchvision_and_the_package_completes_when_asked():
    out = run_python(
        "import sys\n"
        "from clicklabel.sam_import import sam_part\n"
        "bs = sam_part('build_sam')\n"
        "print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)\n"
        "from segment_anything import SamPredictor, sam_model_registry\n"
        "import segment_anything, segment_anything.modeling as m\n"
        "print('torchvision' in sys.modules, SamPredictor.__name__, bs.Sam is m.Sam is segment_anything.modeling.Sam,"
        " sam_model_registry is bs.sam_model_registry)\n")
    assert out.split() == ["False", "False", "True", "SamPredictor", "True", "True"]


def test_prompts_are_resized_as_segment_anything_does():
    from segment_anything.utils.transforms import ResizeLongestSide

    rng = np.random.default_rng(0)
    for size in [(480, 640), (1000, 333), (17, 4000), (1024, 1024)]:
        ours, stock = LongestSide(1024), ResizeLongestSide(1024)
        pts = rng.uniform(0, max(size), (7, 2)).astype(np.float32)
        boxes = rng.uniform(0, max(size), (3, 4))
        assert np.array_equal(ours.apply_coords(pts, size), stock.apply_coords(pts, size))
        assert np.array_equal(ours.apply_boxes(boxes, size), stock.apply_boxes(boxes, size))
        assert ours.get_preprocess_shape(*size, 1024) == stock.get_preprocess_shape(*size, 1024)


def test_a_second_segment_imports_neither_torchvision_nor_dynamo(tiny_checkpoint, tmp_path):
    """The whole process, as a script calling `clicklabel segment` per prompt runs it: the first run encodes, the
    second reads the cache and imports only what decoding needs."""
    code = (
        "import sys, json\n"
        "from clicklabel.cli import main\n"
        f"rc = main(['segment', {str(SAMPLES / 'rocket.jpg')!r}, '--point', '60,60', '--model', 'auto',"
        f" '--checkpoint', {str(tiny_checkpoint)!r}, '--device', 'cpu'])\n"
        "print(json.dumps({'rc': rc, 'torchvision': 'torchvision' in sys.modules,"
        " 'dynamo': 'torch._dynamo' in sys.modules}))\n")
    env = {"CLICKLABEL_CACHE": str(tmp_path / "cache")}
    first, second = ([json.loads(line) for line in run_python(code, env).splitlines() if line.startswith("{")]
                     for _ in range(2))
    assert first[0]["embedding_cached"] is False and second[0]["embedding_cached"] is True
    assert first[0]["bbox"] == second[0]["bbox"]
    assert second[1] == {"rc": 0, "torchvision": False, "dynamo": False}
    assert first[1]["torchvision"]  # the encoder's resize (ResizeLongestSide.apply_image) needs it
