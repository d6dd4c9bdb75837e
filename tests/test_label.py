import threading

import numpy as np
import pytest
from PIL import Image

from clicklabel.cli import main
from clicklabel.errors import LabelError
from clicklabel.label import CropSettings, LabelCache, Labeler, LabelerConfig, label_objects, render_crop
from clicklabel.label.crop import encode_image
from clicklabel.label.prices import DEFAULT_PRICES, cost
from clicklabel.label.prompt import parse_answer
from clicklabel.project import Store

from lmm_server import FakeLMM

KEY = "sk-test-secret-key-123456"


@pytest.fixture
def project(tmp_path):
    """A project with one 320x240 image and 200 distinct rectangular objects."""
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(tmp_path / "img.png", 320, 240)
    for i in range(200):
        m = np.zeros((240, 320), bool)
        y, x = divmod(i, 20)
        m[y * 20 + 2 : y * 20 + 18, x * 15 + 1 : x * 15 + 14] = True
        s.accept(iid, m)
    return s, img


def _labeler(server, tmp_path, **kw):
    cfg = LabelerConfig(lmm="gpt-4o-mini", base_url=server.url, api_key=KEY, timeout=kw.pop("timeout", 10),
                        **kw)
    return Labeler(cfg, LabelCache(tmp_path / "labels.sqlite"))


def test_crop_dims_outside_the_mask_and_fits_512():
    img = np.full((1000, 800, 3), 200, np.uint8)
    m = np.zeros((1000, 800), bool)
    m[100:900, 100:700] = True
    crop = render_crop(img, m)
    assert max(crop.shape[:2]) == 512
    assert crop[256, 256].tolist() == [200, 200, 200]  # inside: untouched
    assert crop[2, 2].max() <= 200 * 0.35 + 1  # outside: dimmed
    for kind in (img[..., 0], np.dstack([img, img[..., :1]]), img.astype(np.uint16) * 200):
        assert render_crop(kind, m).shape[2] == 3
    boxed = render_crop(img, m, CropSettings(mode="box"))
    assert boxed[2, 2].tolist() == [200, 200, 200] and (boxed == [255, 0, 0]).all(axis=2).any()
    with pytest.raises(LabelError, match="empty"):
        render_crop(img, np.zeros_like(m))


def test_parse_answer():
    assert parse_answer('{"label": "Siamese cat", "category": "cat", "confidence": 1.4}').confidence == 1.0
    assert parse_answer('Here: ```json\n{"label": "dog", "category": "dog", "confidence": 0.5}\n```').label == "dog"
    assert parse_answer("Beagle").label == "Beagle"
    assert parse_answer('{"label": "CAT"}', ["cat", "dog"]).label == "cat"
    for bad in ("", '{"label": ""}', "a long\nstory without json", '{"label": "fox"}'):
        with pytest.raises(LabelError):
            parse_answer(bad, ["cat", "dog"] if "fox" in bad else None)


def test_answer_limits_and_what_is_wrong_with_an_answer():
    """One length limit for a whole answer, one for a name; a broken JSON answer is called that, not a label
    outside the vocabulary."""
    from clicklabel.label.prompt import MAX_ANSWER_CHARS
    from clicklabel.project.schema import MAX_LABEL_CHARS

    with pytest.raises(LabelError, match=f"at most {MAX_ANSWER_CHARS:,} are taken"):
        parse_answer('{"label": "' + "x" * 1_000_000 + '"}')
    with pytest.raises(LabelError, match=f"at most {MAX_LABEL_CHARS} are taken"):
        parse_answer('{"label": "' + "x" * (MAX_LABEL_CHARS + 1) + '"}')
    with pytest.raises(LabelError, match=f"at most {MAX_LABEL_CHARS} are taken"):
        parse_answer('{"label": "cat", "supercategory": "' + "y" * 500 + '"}')
    for broken in ('{"label": "cat"', '{"label": "cat", }', "[1, 2]"):
        with pytest.raises(LabelError, match="not the JSON we asked for"):
            parse_answer(broken, ["cat", "dog"])
    assert parse_answer('{"label": "cat", "confidence": NaN}').confidence is None
    assert parse_answer('{"label": "cat", "confidence": true}').confidence is None


def test_a_huge_answer_fails_that_object_only(project, tmp_path):
    store, _ = project
    obs = store.objects()[:3]
    with FakeLMM(answer=lambda body, image: {"label": "x" * 1_000_000, "supercategory": "y"}) as server:
        summary = label_objects(store, [o.id for o in obs], _labeler(server, tmp_path))
    assert summary.failed == 3
    for ob in obs:
        got = store.object(ob.id)
        assert got.label is None and got.label_status == "failed" and len(got.label_error) < 300


def test_200_crops_concurrent_bounded_and_all_stored(project, tmp_path):
    """Requests overlap (a slow server is not asked one crop at a time) but never beyond the concurrency asked for.
    The server holds its first answers until 16 requests are in flight at once (a client that sent fewer at a time
    would leave it at fewer): the overlap is an event, not a matter of how fast this machine is. Seconds are not
    asserted here: `bench labels` measures them."""
    store, _ = project
    wave = threading.Event()  # set once 16 requests are in flight together

    def answer(body, image):
        if server._in_flight >= 16:
            wave.set()
        wave.wait(timeout=30)
        return {"label": "Siamese cat", "category": "cat", "confidence": 0.9}

    with FakeLMM(answer=answer) as server:
        labeler = _labeler(server, tmp_path, concurrency=16)
        ids = [o.id for o in store.objects()]
        summary = label_objects(store, ids, labeler)
    assert summary.labelled == 200 and summary.failed == 0
    assert wave.is_set() and server.max_in_flight == 16
    assert all(o.label == "Siamese cat" and o.label_status == "done" for o in store.objects())
    assert store.usage()["prompt_tokens"] == 200 * 100


def test_retries_after_429_and_500_bill_once(project, tmp_path):
    store, _ = project
    flaky = {}

    def plan(attempt, key):
        if attempt == 0 and int(key[:8], 16) % 5 == 0:  # about one in five crops fails first
            flaky[key] = True
            return "429" if int(key[8:10], 16) % 2 else "500"
        return "ok"

    with FakeLMM(latency=0.05, plan=plan) as server:
        summary = label_objects(store, [o.id for o in store.objects()], _labeler(server, tmp_path, concurrency=16))
    assert 20 <= len(flaky) <= 80
    assert summary.labelled == 200 and len(server.requests) == 200 + len(flaky)
    usage = store.usage()
    assert usage["prompt_tokens"] == 200 * 100 and usage["completion_tokens"] == 200 * 20
    assert usage["cost"] == pytest.approx(200 * cost("gpt-4o-mini", 100, 20, DEFAULT_PRICES))


def test_retry_after_is_honoured(project, tmp_path):
    store, _ = project
    with FakeLMM(plan=lambda attempt, key: "429" if attempt == 0 else "ok", retry_after="0.5") as server:
        label_objects(store, [store.objects()[0].id], _labeler(server, tmp_path))
    assert len(server.times) == 2 and server.times[1] - server.times[0] >= 0.45


def test_request_carries_masked_crop_schema_and_vocabulary(project, tmp_path):
    store, img = project
    ob = store.objects()[0]
    with FakeLMM(answer=lambda body, image: {"label": "dog", "category": "animal", "confidence": 0.7}) as server:
        summary = label_objects(store, [ob.id], _labeler(server, tmp_path, vocabulary=["cat", "dog"]))
    assert summary.labelled == 1 and store.object(ob.id).label == "dog"
    body, sent = server.requests[0], server.images[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["properties"]["label"]["enum"] == ["cat", "dog"]
    assert "cat, dog" in body["messages"][1]["content"][0]["text"]
    assert body["messages"][1]["content"][1]["image_url"]["detail"] == "low"
    expected = render_crop(img, ob.mask)
    assert np.array_equal(sent, expected)  # PNG is lossless: exactly the crop we rendered
    x0, y0 = 0, 0  # object 0 sits at the top-left corner; crop starts at the image corner
    m = ob.mask[y0 : y0 + sent.shape[0], x0 : x0 + sent.shape[1]]
    assert sent[~m].mean() < 0.5 * img[: sent.shape[0], : sent.shape[1]][~m].mean()
    assert np.array_equal(sent[m], img[: sent.shape[0], : sent.shape[1]][m])


def test_format_fallback_is_chosen_and_remembered(project, tmp_path):
    store, _ = project
    ids = [o.id for o in store.objects()][:5]
    with FakeLMM(reject_json_schema=True) as server:
        summary = label_objects(store, ids, _labeler(server, tmp_path, concurrency=1))
        assert summary.labelled == 5
        kinds = [r.get("response_format", {}).get("type") for r in server.requests]
        assert kinds == ["json_schema", "json_object", "json_object", "json_object", "json_object", "json_object"]
        store.mark_pending(ids)
        label_objects(store, ids, Labeler(_labeler(server, tmp_path).config))  # new run, no cache
        assert "json_schema" not in [r.get("response_format", {}).get("type") for r in server.requests[6:]]


@pytest.mark.parametrize("outcome, reason", [("refusal", "refused"), ("malformed", "unusable"),
                                             ("not_json", "not the JSON"), ("500", "server error 500"),
                                             ("timeout", "no answer"), ("bad_choices", "no choices")])
def test_failures_keep_the_object_and_a_reason(project, tmp_path, outcome, reason):
    store, _ = project
    ob = store.objects()[0]
    with FakeLMM(plan=lambda attempt, key: outcome) as server:
        lab = _labeler(server, tmp_path, timeout=0.5)
        lab.config.max_retries = 1
        summary = label_objects(store, [ob.id], lab)
    got = store.object(ob.id)
    assert summary.failed == 1 and got.label_status == "failed" and reason in got.label_error
    assert got.state == "accepted" and (got.mask == ob.mask).all()


def test_cli_retries_only_pending_and_failed_and_uses_cache(project, tmp_path, monkeypatch, capsys):
    store, _ = project
    ids = [o.id for o in store.objects()]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache" / "emb"))
    def plan(attempt, key):  # first sends: a 500 (the SDK retries it within the run) or a refusal (fails the object)
        if attempt == 0 and key < "2":
            return "500"
        return "refusal" if attempt == 0 and key < "4" else "ok"

    with FakeLMM(plan=plan) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        path = str(store.path)
        store.close()
        code = main(["label", path, "--concurrency", "16", "--timeout", "5"])
        first = len(server.requests)
        s = Store(path)
        failed = [o.id for o in s.objects(label_status=["failed"])]
        assert code == 1 and 10 <= len(failed) <= 50  # about one crop in eight was refused
        assert len(s.objects(label_status=["done"])) == 200 - len(failed)
        capsys.readouterr()
        assert main(["label", path]) == 0  # only what failed is sent again (the others are not even read from cache)
        assert len(server.requests) == first + len(failed)
        assert f"labelled {len(failed)}, failed 0 (0 from the cache)" in capsys.readouterr().out
        assert len(s.objects(label_status=["done"])) == 200
        before = s.usage()["prompt_tokens"]
        assert main(["label", path, "--all"]) == 0  # every crop is in the cache: nothing is sent or billed
        assert len(server.requests) == first + len(failed) and s.usage()["prompt_tokens"] == before
        assert len(s.label_history(ids[0])) >= 2
    out = capsys.readouterr().out
    assert "labelled 200" in out
    assert KEY.encode() not in (tmp_path / "p.clicklabel").read_bytes()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


def test_dry_run_and_missing_key(project, tmp_path, monkeypatch, capsys):
    store, _ = project
    path = str(store.path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["label", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "200 requests to gpt-4o-mini" in out and "per object" in out and "$" in out
    assert main(["label", path]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert Store(path).objects(label_status=["pending"]).__len__() == 200


def test_stop_keeps_what_is_done(project, tmp_path):
    store, _ = project
    stop = threading.Event()
    ids = [o.id for o in store.objects()]

    def progress(done, total):
        if done >= 20:
            stop.set()

    with FakeLMM(latency=0.02) as server:
        summary = label_objects(store, ids, _labeler(server, tmp_path, concurrency=4), progress=progress, stop=stop)
    done = store.objects(label_status=["done"])
    assert 20 <= len(done) < 200 and len(done) == summary.labelled
    assert len(store.objects(label_status=["pending"])) == 200 - len(done)


def test_encoded_crop_is_png():
    crop = np.zeros((10, 10, 3), np.uint8)
    assert encode_image(crop).startswith(b"\x89PNG")


def test_bench_labels_harness_counts_right(tmp_path, monkeypatch, capsys):
    from conftest import needs_shared

    data = needs_shared("pets")
    from clicklabel.evaluate.labels import bench_labels, breed_matches, species_of

    assert species_of("Siamese cat (Cat)", None) == "cat" and species_of("a puppy", None) == "dog"
    assert species_of("fox", "animal") == "other"
    assert breed_matches("american_pit_bull_terrier", "American Pit Bull Terrier (Dog)")
    assert not breed_matches("Persian", "Siamese cat")
    with FakeLMM() as server:
        res = bench_labels(data, _labeler(server, tmp_path, concurrency=16), project=tmp_path / "b")
    n_images = len(list((data / "images").iterdir()))
    assert res.n == n_images and res.failed == 0
    cats = sum(1 for p in (data / "images").iterdir() if p.name[0].isupper())
    siamese = sum(1 for p in (data / "images").iterdir() if p.name.startswith("Siamese_"))
    assert res.species_accuracy == pytest.approx(cats / n_images)
    assert res.breed_accuracy == pytest.approx(siamese / n_images)
    assert res.per_class["Siamese"][0] == siamese
    assert "per class (breed)" in capsys.readouterr().out


def test_one_tls_context_for_every_run():
    """Loading the CA certificates took 40 ms per run: it is done once per process."""
    from clicklabel.label.client import tls_context, warm_up

    warm_up()
    a = Labeler(LabelerConfig(api_key="k")).client
    b = Labeler(LabelerConfig(api_key="k")).client
    assert a is not b and tls_context() is tls_context()
