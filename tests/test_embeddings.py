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
    for k in ("trunc", "garbage", "flip", "nan"):
        c.put(k, _emb())
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
    for k in ("trunc", "garbage", "flip", "nan"):
        assert fresh.get(k) is None, k
        assert not fresh.path(k).exists()


def test_memory_only(tmp_path):
    c = EmbeddingCache(tmp_path, disk=False)
    c.put("a", _emb())
    assert c.get("a") is not None and not list(tmp_path.iterdir())
