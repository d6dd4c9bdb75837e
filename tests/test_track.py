"""Sequences and SAM 2.1 propagation: our tracker against the stock SAM2VideoPredictor (random tiny model at a
128-pixel input so the tests stay fast), the project workflow (one track id, corrections that re-encode nothing and
leave earlier frames alone, the object leaving), and the sequence sources (mp4, frame folder, TIFF stack)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sam2")
av = pytest.importorskip("av")

N = 6
H, W = 72, 96


def clip_frames(n=N, h=H, w=W):
    """A bright square moving right over a dark textured background."""
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 3)) * 40).astype(np.uint8)
    frames = []
    for i in range(n):
        a = bg.copy()
        a[20:50, 8 + 4 * i:38 + 4 * i] = (220, 180, 40)
        frames.append(a)
    return frames


def write_mp4(path, frames, fps=10):
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"qscale": "2"}
        for a in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


@pytest.fixture(scope="session")
def frame_dir(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("frames")
    for i, a in enumerate(clip_frames()):
        Image.fromarray(a).save(d / f"{i:05d}.jpg", quality=95)
    return d


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _model(predictor, cache=None):
    from clicklabel.track.propagate import VideoModel

    return VideoModel(predictor, "tiny-random-128", cache=cache, fill_hole_area=0)


def test_agrees_with_sam2_video_predictor(small_predictor, frame_dir):
    """Click on frame 3, propagate forward then backward, correct frame 4 with a negative click, propagate
    forward again: every frame's mask matches the stock predictor's (IoU >= 0.99) and nothing is encoded twice."""
    from PIL import Image

    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.images import image_hash
    from clicklabel.track.propagate import FrameSource, Tracker

    p = small_predictor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = p.init_state(str(frame_dir))
        p.add_new_points_or_box(st, 3, 1, points=[[30, 35]], labels=[1])
        ref = {f: (m[0, 0] > 0).numpy() for f, _, m in p.propagate_in_video(st, start_frame_idx=3)}
        ref.update({f: (m[0, 0] > 0).numpy() for f, _, m in p.propagate_in_video(st, 3, reverse=True)})
        p.add_new_points_or_box(st, 4, 1, points=[[50, 40]], labels=[0], clear_old_points=False)
        ref2 = {f: (m[0, 0] > 0).numpy() for f, _, m in p.propagate_in_video(st, start_frame_idx=4)}
    imgs = [np.array(Image.open(frame_dir / f"{i:05d}.jpg").convert("RGB")) for i in range(N)]
    model = _model(p, EmbeddingCache(disk=False, memory_items=N))
    tr = Tracker(model, FrameSource(lambda i: imgs[i], N, lambda i: image_hash(imgs[i])))
    try:
        tr.prompt(3, points=[[30, 35]], labels=[1])
        ours = {r.frame: r.mask for r in tr.propagate(3, min_score=-1e9)}
        ours.update({r.frame: r.mask for r in tr.propagate(3, reverse=True, min_score=-1e9)})
        assert sorted(ours) == list(range(N))
        for f in range(N):
            assert _iou(ours[f], ref[f]) >= 0.99, f
        assert model.encoded == N
        tr.prompt(4, points=[[50, 40]], labels=[0])
        again = {r.frame: r.mask for r in tr.propagate(4, min_score=-1e9)}
        assert sorted(again) == list(range(4, N))
        for f in range(4, N):
            assert _iou(again[f], ref2[f]) >= 0.99, f
        assert model.encoded == N  # the correction encoded nothing again
    finally:
        tr.close()


def test_memory_stays_bounded_and_reloads(small_predictor, frame_dir, tmp_path, shared_cache):
    """The non-conditioning outputs live in a small window over files: a second TrackMemory on the same folder
    (another process) reads the same state back exactly."""
    import torch
    from PIL import Image

    from clicklabel.images import image_hash
    from clicklabel.track.memory import TrackMemory
    from clicklabel.track.propagate import FrameSource, Tracker

    imgs = [np.array(Image.open(frame_dir / f"{i:05d}.jpg").convert("RGB")) for i in range(N)]
    model = _model(small_predictor, shared_cache)
    mem = TrackMemory(tmp_path / "state", window=2)
    tr = Tracker(model, FrameSource(lambda i: imgs[i], N, lambda i: image_hash(imgs[i])), mem)
    tr.prompt(0, box=(5, 15, 45, 55))
    list(tr.propagate(0, min_score=-1e9))
    assert len(mem.non_cond._lru) <= 2 and mem.stored == set(range(N))
    again = TrackMemory(tmp_path / "state")
    again.pos_enc = model.memory_pos_enc()
    again.load_cond()
    assert set(again.cond) == {0} and again.tracked == mem.tracked
    for t in range(1, N):
        a, b = mem.non_cond.get(t), again.non_cond.get(t)
        for k in ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits"):
            assert torch.equal(a[k], b[k]), (t, k)
    assert torch.equal(mem.cond[0]["maskmem_features"], again.cond[0]["maskmem_features"])


def test_stop_event_and_leaving_object(small_predictor, frame_dir, shared_cache):
    from PIL import Image

    from clicklabel.images import image_hash
    from clicklabel.track.propagate import FrameSource, Tracker

    imgs = [np.array(Image.open(frame_dir / f"{i:05d}.jpg").convert("RGB")) for i in range(N)]
    frames = FrameSource(lambda i: imgs[i], N, lambda i: image_hash(imgs[i]))
    tr = Tracker(_model(small_predictor, shared_cache), frames)
    tr.prompt(0, points=[[20, 30]])
    stop = threading.Event()
    seen = []
    for r in tr.propagate(0, min_score=-1e9, stop=stop):
        seen.append(r.frame)
        if r.frame == 2:
            stop.set()
    assert seen == [0, 1, 2]
    # a threshold no frame reaches: the object "leaves" at once, after `patience` frames
    left = [r.frame for r in tr.propagate(0, min_score=1e9, patience=2)]
    assert left == [0, 1, 2]
    tr.close()


@pytest.fixture(scope="module")
def shared_cache():
    """Frame features shared by the tests that do not count encodings (the clip is the same in each)."""
    from clicklabel.embeddings import EmbeddingCache

    return EmbeddingCache(disk=False, memory_items=4 * N)


@pytest.fixture()
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    write_mp4(path, clip_frames())
    return path


def test_sources_mp4_folder_tiff(tmp_path, clip, frame_dir):
    from PIL import Image

    from clicklabel.errors import ClickLabelError
    from clicklabel.project import open_project
    from clicklabel.track.sources import add_sequence

    store = open_project(tmp_path / "proj", create=True)
    seen = []
    rep = add_sequence(store, clip, progress=lambda done, total: seen.append(done))
    assert (rep.kind, rep.frames, seen[-1]) == ("video", N, N)
    seq = store.sequence("clip")
    ids = store.frame_ids(seq.id)
    assert len(ids) == N and [store.frame_of(i)[1] for i in ids] == list(range(N))
    first = store.load_image(ids[0])  # frames are ordinary images of the project
    assert first.shape == (H, W, 3) and abs(int(first[35, 20, 0]) - 220) < 30
    assert store.image_path(ids[0]).parent == tmp_path / "proj-frames" / "clip"  # beside the project file
    assert add_sequence(store, clip, step=3, name="every3").frames == 2  # frames 0 and 3
    assert store.image_path(store.frame_ids(store.sequence("every3").id)[1]).name == "00003.jpg"
    with pytest.raises(ClickLabelError, match="already has a sequence"):
        add_sequence(store, clip)
    stop = threading.Event()
    stop.set()
    assert add_sequence(store, clip, name="stopped", stop=stop).cancelled
    assert add_sequence(store, frame_dir, name="folder").frames == N  # the files stay where they are
    assert store.image_path(store.frame_ids(store.sequence("folder").id)[0]).resolve().parent == frame_dir
    pages = [Image.fromarray((np.arange(H * W).reshape(H, W) * (i + 1)).astype(np.uint16)) for i in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    rep = add_sequence(store, tmp_path / "stack.tif")
    assert (rep.kind, rep.frames) == ("tiff", 3)
    assert store.load_image(store.frame_ids(rep.sequence_id)[2]).shape == (H, W, 3)


def test_track_in_project_correction_and_export(small_predictor, tmp_path, clip, monkeypatch):
    import json

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from clicklabel.coco import export_coco
    from clicklabel.coco.ytvis import export_ytvis
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.project import open_project
    from clicklabel.track.sources import add_sequence
    from clicklabel.track.workflow import track_object

    store = open_project(tmp_path / "proj", create=True)
    add_sequence(store, clip)
    ids = store.frame_ids(store.sequence("clip").id)
    model = _model(small_predictor, EmbeddingCache(tmp_path / "emb"))
    steps = []
    rep = track_object(store, model, "clip", 3, points=[[30, 35]], min_score=-1e9, state_root=tmp_path / "st",
                       progress=lambda d, t: steps.append((d, t)))
    assert sorted(rep.written) == list(range(N)) and rep.encoded == N and steps[-1] == (N - 1, N - 1)
    objs = store.track_objects(rep.track_id)
    assert sorted(objs) == list(range(N)) and objs[3].role == "annotated"
    assert {o.role for t, o in objs.items() if t != 3} == {"propagated"}
    assert store.object_tracks() == {o.object_id: rep.track_id for o in objs.values()}
    before = {t: store.object(o.object_id).rle["counts"] for t, o in objs.items()}
    # a later run (a new model object over the same caches) corrects frame 4: nothing is encoded again, frames
    # before 4 keep their objects, and the frames after it change
    later = _model(small_predictor, EmbeddingCache(tmp_path / "emb"))
    calls = []
    encode = small_predictor.forward_image
    monkeypatch.setattr(small_predictor, "forward_image", lambda x: calls.append(1) or encode(x))  # a spy
    rep2 = track_object(store, later, "clip", 4, points=[[50, 40]], labels=[0], track_id=rep.track_id,
                        min_score=-1e9, state_root=tmp_path / "st")
    assert rep2.encoded == 0 and later.encoded == 0 and calls == []
    objs2 = store.track_objects(rep.track_id)
    after = {t: store.object(o.object_id).rle["counts"] for t, o in objs2.items()}
    assert all(after[t] == before[t] for t in range(4)) and objs2[4].role == "annotated"
    assert after[4] != before[4] and sorted(rep2.written) == list(range(4, N))
    assert {o.object_id for o in objs2.values()} == {o.object_id for o in objs.values()}  # ids (labels) kept
    # one label for the whole track
    assert store.set_track_label(rep.track_id, "cat", "animal") == N
    # COCO: one image per frame, track_id on each annotation, as many annotations as frames covered
    export_coco(store, tmp_path / "coco.json")
    coco = COCO(str(tmp_path / "coco.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len([a for a in anns if a.get("track_id") == rep.track_id]) == N
    assert {coco.imgs[a["image_id"]]["frame_index"] for a in anns} == set(range(N))
    for a in anns:
        assert coco.annToMask(a).sum() == a["area"]
    # YouTube-VIS: one video, one instance with a mask per frame
    export_ytvis(store, tmp_path / "ytvis.json")
    doc = json.loads((tmp_path / "ytvis.json").read_text())
    assert {"videos", "annotations", "categories"} <= set(doc)
    (video,) = doc["videos"]
    assert video["length"] == N == len(video["file_names"]) and (video["height"], video["width"]) == (H, W)
    (inst,) = doc["annotations"]
    assert inst["video_id"] == video["id"] and len(inst["segmentations"]) == N == len(inst["bboxes"])
    assert sum(s is not None for s in inst["segmentations"]) == N
    cat = {c["id"]: c["name"] for c in doc["categories"]}[inst["category_id"]]
    assert cat == "cat"
    for t, seg in enumerate(inst["segmentations"]):
        m = mask_utils.decode(seg)
        assert m.shape == (H, W) and m.sum() == inst["areas"][t]
        assert (store.load_image(ids[t]).shape[:2]) == m.shape


def test_track_leaving_object_clears_stale_frames(small_predictor, tmp_path, clip, shared_cache):
    from clicklabel.project import open_project
    from clicklabel.track.sources import add_sequence
    from clicklabel.track.workflow import track_object

    store = open_project(tmp_path / "proj", create=True)
    add_sequence(store, clip)
    model = _model(small_predictor, shared_cache)
    rep = track_object(store, model, "clip", 0, box=(5, 15, 45, 55), min_score=-1e9, state_root=tmp_path / "st")
    assert len(store.track_objects(rep.track_id)) == N
    # the same object again from frame 2 with a threshold nothing reaches: it "leaves" at frame 3 (patience 2);
    # the frames past that lose their propagated objects, frame 2 (annotated now) and the ones before stay
    rep2 = track_object(store, model, "clip", 2, points=[[30, 35]], track_id=rep.track_id, min_score=1e9,
                        patience=2, state_root=tmp_path / "st")
    assert rep2.left == [(3, "forward")] and rep2.encoded == 0
    assert sorted(store.track_objects(rep.track_id)) == [0, 1, 2]
    assert any("left the view at frame 3" in line for line in rep2.lines())


def test_cli_add_track_correct_export(small_predictor, tmp_path, clip, frame_dir, monkeypatch, capsys):
    """The commands end to end (the model swapped for the small one): add an mp4 and a frame folder, track with a
    click, correct with a click on the tracked object (it finds its track), export COCO and YouTube-VIS."""
    import json

    import clicklabel.track.model as track_model
    from clicklabel.cli import main
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.project import open_project

    cache = EmbeddingCache(tmp_path / "emb")
    made = []

    def small(*args, **kwargs):
        made.append(_model(small_predictor, cache))
        return made[-1]

    monkeypatch.setattr(track_model, "video_model", small)
    proj = str(tmp_path / "proj")
    assert main(["add", proj, str(clip), "--step", "1"]) == 0
    assert main(["add", proj, str(frame_dir), "--sequence", "--name", "folder"]) == 0
    out = capsys.readouterr().out
    assert f"sequence 1 ('clip', video): {N} frames added" in out and f"('folder', folder): {N} frames" in out
    assert main(["track", proj, "--sequence", "clip", "--frame", "0", "--point", "20,35", "--random-weights",
                 "--min-score=-1e9"]) == 0
    assert f"track 1: {N} frames with the object (from frame 0), {N} frames encoded" in capsys.readouterr().out
    # a negative click on the tracked object's mask on frame 3 corrects track 1, forward, encoding nothing
    store = open_project(proj)
    on3 = store.object(store.track_objects(1)[3].object_id).mask
    y, x = (int(v) for v in np.argwhere(on3)[len(np.argwhere(on3)) // 2])
    before = {t: store.object(o.object_id).rle["counts"] for t, o in store.track_objects(1).items()}
    assert main(["track", proj, "--sequence", "clip", "--frame", "3", "--point", f"{x},{y}:0", "--random-weights",
                 "--min-score=-1e9"]) == 0
    out = capsys.readouterr().out
    assert "correcting track 1 from frame 3 (forward)" in out and "0 frames encoded" in out
    after = {t: store.object(o.object_id).rle["counts"] for t, o in store.track_objects(1).items()}
    assert all(after[t] == before[t] for t in range(3)) and len(store.tracks()) == 1
    assert main(["export", proj, "--out", str(tmp_path / "v.json"), "--format", "ytvis"]) == 0
    doc = json.loads((tmp_path / "v.json").read_text())
    assert [v["length"] for v in doc["videos"]] == [N, N] and len(doc["annotations"]) == 1
    assert main(["export", proj, "--out", str(tmp_path / "c.json")]) == 0
    coco = json.loads((tmp_path / "c.json").read_text())
    assert len(coco["images"]) == 2 * N and sum(a.get("track_id") == 1 for a in coco["annotations"]) == N
    # bad input: one line, exit 2
    assert main(["track", proj, "--sequence", "nope", "--frame", "0", "--point", "1,1"]) == 2
    assert main(["track", proj, "--sequence", "clip", "--frame", "99", "--point", "1,1", "--random-weights"]) == 2
    assert main(["add", proj, str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert "no sequence 'nope'" in err and "frame 99 is not in sequence" in err and "Traceback" not in err


def test_session_stack_and_track_from_accepted_object(small_predictor, tmp_path, clip, shared_cache):
    """What the widget calls: the lazy frame stack, a click accepted on a frame then propagated from a worker
    (frames reported as they are written), the tracks list, and one label for the track."""
    from clicklabel.project import open_project
    from clicklabel.track.session import FrameStack, sequence_tracks, track_accepted
    from clicklabel.track.sources import add_sequence

    store = open_project(tmp_path / "proj", create=True)
    add_sequence(store, clip)
    stack = FrameStack(store, "clip", keep=2)
    assert stack.shape == (N, H, W, 3) and stack.dtype == np.uint8 and stack.ndim == 4
    assert stack[2].shape == (H, W, 3) and stack[1:3, 0, 0].shape == (2, 3) and len(stack._frames) <= 2
    assert np.array_equal(stack[-1], store.load_image(store.frame_ids(1)[-1]))
    assert stack[..., 0].shape == (N, H, W) and stack[[0, 2]].shape == (2, H, W, 3)
    mask = np.zeros((H, W), bool)
    mask[20:50, 16:46] = True
    oid = store.accept(stack.image_ids[2], mask, provenance="click", clicks=1)
    seen = []
    rep = track_accepted(store, _model(small_predictor, shared_cache), oid, on_frame=lambda t, o: seen.append((t, o)),
                         min_score=-1e9, state_root=tmp_path / "st")
    assert sorted(t for t, _ in seen) == list(range(N)) and (2, oid) in seen
    (summary,) = sequence_tracks(store, "clip")
    assert summary.track_id == rep.track_id and summary.frames == list(range(N)) and summary.annotated == [2]
    assert store.best_track_object(rep.track_id) == oid
    # labelling asks once per track (its best frame) and gives the answer to every frame
    every = [o.object_id for o in store.track_objects(rep.track_id).values()]
    assert store.one_per_track(every) == [oid]
    store.set_label(oid, "dog", None, 0.9, "test-lmm")
    store.spread_track_labels([oid])
    assert {store.object(o).label for o in every} == {"dog"}
    store.set_track_label(rep.track_id, "ball")
    assert {store.object(o.object_id).label for o in store.track_objects(rep.track_id).values()} == {"ball"}
    assert sequence_tracks(store, "clip")[0].label == "ball"


def test_annotation_session_tracks_with_its_sam2_engine(small_predictor, tmp_path, frame_dir, shared_cache):
    """The widget's door: ``AnnotationSession.track`` reuses the session's SAM 2.1 engine (its loaded model and
    cache) and fills small holes as the stock predictor does (OpenCV instead of SAM 2's CUDA kernel)."""
    from clicklabel.annotate import AnnotationSession
    from clicklabel.errors import ClickLabelError
    from clicklabel.project import open_project
    from clicklabel.segment.models import LoadedModel
    from clicklabel.segment.sam2 import Sam2Engine
    from clicklabel.track.sources import add_sequence

    store = open_project(tmp_path / "proj", create=True)
    add_sequence(store, frame_dir, step=2)  # frames 0, 2, 4 of the folder
    ids = store.frame_ids(1)
    engine = Sam2Engine(loaded=LoadedModel("sam2.1_hiera_tiny", "sam2.1", small_predictor, None), device="cpu",
                        cache=shared_cache)
    session = AnnotationSession(store, engine)
    mask = np.zeros((H, W), bool)
    mask[20:50, 8:38] = True
    oid = store.accept(ids[0], mask)
    rep = session.track(oid, min_score=-1e9, state_root=tmp_path / "st")
    assert sorted(store.track_objects(rep.track_id)) == [0, 1, 2] and rep.encoded == 3
    assert session._video[1].fill_hole_area == 8
    lone = store.accept(store.add_image(frame_dir / "00001.jpg", W, H), mask)  # not a frame of a sequence
    with pytest.raises(ClickLabelError, match="not on a frame of a sequence"):
        session.track(lone)


def test_fill_holes_matches_the_stock_rule():
    """Background components of at most ``fill_hole_area`` low-res pixels (8-connected) become 0.1."""
    import torch

    from clicklabel.track.propagate import Tracker

    low = torch.full((1, 1, 16, 16), 5.0)
    low[0, 0, 2:4, 2:4] = -3.0  # a 4-pixel hole: filled
    low[0, 0, 8:12, 8:12] = -3.0  # a 16-pixel hole: kept
    low[0, 0, 0, 15] = -1.0  # a 1-pixel hole at the edge: filled
    tracker = Tracker.__new__(Tracker)
    tracker.model = type("M", (), {"fill_hole_area": 8})()
    out = tracker._fill_holes(low)
    assert torch.all(out[0, 0, 2:4, 2:4] == 0.1) and out[0, 0, 0, 15] == 0.1
    assert torch.all(out[0, 0, 8:12, 8:12] == -3.0) and out[0, 0, 0, 0] == 5.0
