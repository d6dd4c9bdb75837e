"""Shared fixtures: temporary weight and cache folders, random SAM checkpoints built once per session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

# Ray reads RAY_AUTH_MODE at import: set every RAY_* variable before any test module imports ray.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(16).hex())  # throw-away: nothing written to ~/.ray

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "clicklabel" / "data" / "samples"
SHARED_DATA = ROOT.parent / "shared" / "data"
# A small SAM: the real builder and the real neck/decoder, with a 2-block, 64-wide encoder.
TINY_ARCH = (64, 2, 2, (1,))
NO_DISPLAY = ("no display: GUI tests skipped. Install xvfb (Debian/Ubuntu: apt install xvfb) and run "
              "./scripts/test.sh, which runs them under xvfb-run")


def _have_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or \
        os.environ.get("QT_QPA_PLATFORM") == "offscreen"


def pytest_collection_modifyitems(config, items):
    """Without a display, Qt aborts the whole process when the first viewer starts: skip the GUI tests instead."""
    if _have_display():
        return
    skip = pytest.mark.skip(reason=NO_DISPLAY)
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)
            config._clicklabel_gui_skipped = True


def pytest_terminal_summary(terminalreporter, config):
    if getattr(config, "_clicklabel_gui_skipped", False):
        terminalreporter.write_line(f"clicklabel: {NO_DISPLAY}", yellow=True)


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    """Tests never touch the user's cache or weights, and never download."""
    base = tmp_path_factory.mktemp("clicklabel_home")
    os.environ["CLICKLABEL_CACHE"] = str(base / "cache")
    os.environ["CLICKLABEL_WEIGHTS"] = str(base / "weights")
    os.environ.pop("OPENAI_API_KEY", None)
    # the encoders' arithmetic the same on every machine (fp32, stock's); tests of the automatic choice unset it
    os.environ["CLICKLABEL_PRECISION"] = "fp32"
    yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from clicklabel.weights import save_random_checkpoint

    return save_random_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth", TINY_ARCH, seed=1)


@pytest.fixture(scope="session")
def vit_b_checkpoint(tmp_path_factory) -> Path:
    from clicklabel.weights import save_random_checkpoint

    return save_random_checkpoint(tmp_path_factory.mktemp("ck") / "vit_b_random.pth", "vit_b", seed=0)


def _family_checkpoint(tmp_path_factory, package: str, model: str) -> Path:
    """A random checkpoint of ``model`` built by its family's own package (skipped where the extra is missing)."""
    pytest.importorskip(package, reason=f"{model} needs its extra: pip install 'clicklabel[sam2,hq]'")
    from clicklabel.segment.models import save_random_checkpoint

    return save_random_checkpoint(tmp_path_factory.mktemp("ck") / f"{model}_random.pt", model, seed=0)


@pytest.fixture(scope="session")
def sam2_checkpoint(tmp_path_factory) -> Path:
    """SAM 2.1 hiera tiny, the real architecture (random weights)."""
    return _family_checkpoint(tmp_path_factory, "sam2", "sam2.1_hiera_tiny")


@pytest.fixture(scope="session")
def hq_checkpoint(tmp_path_factory) -> Path:
    """HQ-SAM vit_tiny (Light HQ-SAM), the real architecture (random weights)."""
    return _family_checkpoint(tmp_path_factory, "segment_anything_hq", "hq_vit_tiny")


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emb_cache")


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint, session_cache_dir):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.sam import SamEngine

    return SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(session_cache_dir))


@pytest.fixture(scope="session")
def vit_b_engine(vit_b_checkpoint, session_cache_dir):
    """The real vit_b architecture (random weights); its one image embedding is computed once per session."""
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.sam import SamEngine

    eng = SamEngine("vit_b", vit_b_checkpoint, device="cpu", cache=EmbeddingCache(session_cache_dir))
    eng.set_image(sample("coffee"))
    return eng


def sample(name: str) -> np.ndarray:
    from clicklabel.images import load_image

    return load_image(SAMPLES / f"{name}.jpg")


def sample_folder(folder: Path, names=("coffee", "rocket")) -> Path:
    """A folder holding copies of the bundled sample photos ``names``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SAMPLES / f"{name}.jpg", folder / f"{name}.jpg")
    return folder


@pytest.fixture
def folder(tmp_path) -> Path:
    """tmp_path/images with two sample photos (coffee, rocket)."""
    return sample_folder(tmp_path / "images")


@pytest.fixture
def chelsea() -> np.ndarray:
    return sample("chelsea")


def wait_ready(qtbot, w, timeout=180_000):
    """GUI tests: the widget's image is shown and no prompt is being answered."""
    qtbot.waitUntil(lambda: w.session is not None and w.session.image is not None and w.nav.loading is None
                    and not w.prompter.answering, timeout=timeout)


def needs_shared(sub: str) -> Path:
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"../shared/data/{sub} is not present (benchmark data lives outside the repo)")
    return p


# -- a detection data set: one picture and a COCO file whose annotations are boxes, a polygon and an RLE --------
W, H = 160, 120  # box_scene's size


def box_scene(path):
    """A dark picture with a bright block, a green ellipse, and a plain dark corner."""
    import cv2
    from PIL import Image

    img = np.full((H, W, 3), 12, np.uint8)
    img[20:60, 30:90] = 220
    cv2.ellipse(img, (120, 90), (10, 8), 0, 0, 360, (0, 200, 0), -1)
    Image.fromarray(img).save(path)
    return img


def box_only_file(tmp_path, extra=()):
    """One image; every way tools write a box-only annotation, beside a polygon and an RLE, plus ``extra``."""
    import json

    from clicklabel.masks import encode_rle

    box_scene(tmp_path / "scene.png")
    rect = np.zeros((H, W), bool)
    rect[70:100, 10:40] = True
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [28, 18, 64, 44], "segmentation": [], "area": 2816},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [95, 65, 55, 50]},  # no segmentation key at all
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [2, 2, 20, 15], "segmentation": None},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [140.5, 100.25, 30, 30], "segmentation": [[]]},  # past
        {"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[60, 70, 80, 70, 80, 90, 60, 95]],
         "bbox": [60, 70, 20, 25]},
        {"id": 6, "image_id": 1, "category_id": 2, "segmentation": encode_rle(rect), "bbox": [10, 70, 30, 30]},
        *extra,
    ]
    doc = {"images": [{"id": 1, "file_name": "scene.png", "width": W, "height": H}], "annotations": anns,
           "categories": [{"id": 1, "name": "block", "supercategory": "shape"}, {"id": 2, "name": "blob"}]}
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    return tmp_path / "boxes.json", doc


@pytest.fixture(scope="session")
def ray_cluster():
    """One small local Ray cluster (2 logical CPUs) for the whole session; skipped without the [ray] extra."""
    ray = pytest.importorskip("ray", reason="needs the optional extra: pip install 'clicklabel[ray]'")
    import logging

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


SERVE_TOKEN = "t0ken-for-the-tests-" + "x" * 12


@pytest.fixture(scope="session")
def encode_server(ray_cluster, tiny_checkpoint, tmp_path_factory):
    """A loopback `clicklabel serve` of the tiny random SAM with SERVE_TOKEN, taking at most 1 MB uploads; its
    replica reserves no CPU, so the other Ray tests keep both. Yields (url, the server's cache folder)."""
    pytest.importorskip("requests", reason="needs the optional extra: pip install 'clicklabel[remote]'")
    from clicklabel.cluster.serving import start_server, stop_server

    cache = tmp_path_factory.mktemp("server_cache")
    spec = {"engine": "sam", "model": "auto", "checkpoint": str(tiny_checkpoint), "device": "cpu", "encoder": "stock"}
    url = start_server(spec, cache, SERVE_TOKEN, port=0, replica_cpus=0, max_upload_mb=1)
    yield url, cache
    stop_server()


@pytest.fixture(autouse=True)
def _finish_widget_workers(request):
    """GUI tests: the widget's background workers (embedding, pre-computing the next image, labelling) end before
    the viewer goes."""
    yield
    if request.node.get_closest_marker("gui") is not None and "superqt.utils._qthreading" in sys.modules:
        from superqt.utils._qthreading import WorkerBase

        WorkerBase.await_workers(msecs=300_000)
    if request.node.get_closest_marker("gui") is not None and "clicklabel_napari._workers" in sys.modules:
        sys.modules["clicklabel_napari._workers"].await_decoders(300)


@pytest.fixture(scope="session")
def sam3_checkpoint(tmp_path_factory) -> Path:
    """A tiny random SAM 3 (transformers' own Sam3Model + Sam3TrackerModel) as a checkpoint folder in the published
    layout (skipped without the [sam3] extra)."""
    pytest.importorskip("transformers.models.sam3", reason="SAM 3 needs its extra: pip install 'clicklabel[sam3]'")
    from clicklabel.segment.sam3_model import random_pair, save_pair

    return save_pair(random_pair("tiny", seed=3), tmp_path_factory.mktemp("sam3") / "sam3-tiny")


@pytest.fixture(scope="session")
def small_predictor():
    """The stock video predictor (random weights, 128-pixel input, corrections kept as conditioning frames as our
    tracker keeps them; hole filling off: it needs SAM 2's CUDA extension)."""
    pytest.importorskip("sam2", reason="SAM 2.1 needs its extra: pip install 'clicklabel[sam2]'")
    import warnings

    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
                                       hydra_overrides_extra=["++model.image_size=128",
                                                              "++model.add_all_frames_to_correct_as_cond=true"])
    p.fill_hole_area = 0
    return p
