import numpy as np

from clicklabel.embeddings import Embedding, EmbeddingCache


def _emb(seed=0):
    rng = np.random.default_rng(seed)
    return Embedding(rng.standard_normal((1, 8, 4, 4)).astype(np.float32), (30, 40), (768, 1024))


def test_memory_lru_and_disk(tmp_path):
    c = EmbeddingCache(tmp_path, memory_items=2)
    for i in range(3):
        c.put(f"k{i}", _emb(i))
    assert list(c._mem) == ["k1", "k2"]
    fresh = EmbeddingCache(tmp_path)  # as in a new process
    got = fresh.get("k0")
    assert got is not None and got.original_size == (30, 40) and got.input_size == (768, 1024)
    assert np.allclose(got.features, _emb(0).features, atol=2e-3)  # float16 on disk
    assert fresh.get("missing") is None
    assert not list(tmp_path.rglob("*.part"))


def test_corrupt_entries_are_dropped(tmp_path):
    c = EmbeddingCache(tmp_path)
    for k in ("trunc", "garbage", "flip", "nan", "empty"):
        c.put(k, _emb())
    c.path("empty").write_bytes(b"")  # renamed into place but never flushed (no fsync) before a power loss
    p = c.path("trunc")
    p.write_bytes(p.read_bytes()[:100])
    c.path("garbage").write_bytes(b"not a zip at all")
    p = c.path("flip")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # CRC check catches a flipped byte in the features
    p.write_bytes(bytes(data))
    bad = _emb()
    bad.features[0, 0, 0, 0] = np.nan
    c.put("nan", bad)
    fresh = EmbeddingCache(tmp_path)
    for k in ("trunc", "garbage", "flip", "nan", "empty"):
        assert fresh.get(k) is None, k
        assert not fresh.path(k).exists()


def test_memory_only(tmp_path):
    c = EmbeddingCache(tmp_path, disk=False)
    c.put("a", _emb())
    assert c.get("a") is not None and not list(tmp_path.iterdir())


def test_named_arrays_round_trip_in_float16(tmp_path):
    rng = np.random.default_rng(3)
    extra = {"high_res_0": rng.standard_normal((1, 2, 8, 8)).astype(np.float32),
             "hq_features": rng.standard_normal((1, 3, 4, 4)).astype(np.float32)}
    EmbeddingCache(tmp_path).put("k", Embedding(_emb().features, (30, 40), (1024, 1024), extra))
    got = EmbeddingCache(tmp_path).get("k")
    assert set(got.extra) == set(extra) and got.input_size == (1024, 1024)
    for k, v in extra.items():
        assert got.extra[k].dtype == np.float32 and np.allclose(got.extra[k], v, atol=2e-3)


def test_format_1_entries_still_read_and_newer_formats_are_misses(tmp_path):
    """An entry written before named arrays existed (no ``format`` member) reads as it did; one written by a newer
    clicklabel is a miss (recomputed), never misread."""
    c = EmbeddingCache(tmp_path)
    old = _emb(5)
    arrays = dict(features=old.features.astype(np.float16), original_size=np.asarray(old.original_size),
                  input_size=np.asarray(old.input_size))
    for key, more in (("old", {}), ("new", {"format": np.asarray(99)})):
        c.path(key).parent.mkdir(parents=True, exist_ok=True)
        with open(c.path(key), "wb") as f:
            np.savez(f, **arrays, **more)
    got = EmbeddingCache(tmp_path).get("old")
    assert got is not None and got.extra == {} and np.allclose(got.features, old.features, atol=2e-3)
    assert EmbeddingCache(tmp_path).get("new") is None


def test_extra_arrays_are_checked_too(tmp_path):
    c = EmbeddingCache(tmp_path)
    bad = _emb()
    bad.extra["high_res_0"] = np.full((1, 2, 4, 4), np.inf, dtype=np.float32)
    c.put("inf", bad)
    assert EmbeddingCache(tmp_path).get("inf") is None
