import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clicklabel.errors import StoreError
from clicklabel.masks import tight_bbox
from clicklabel.project import Store
from clicklabel.project.schema import SCHEMA_VERSION


def _mask(h=40, w=50, y=5, x=7, s=10):
    m = np.zeros((h, w), bool)
    m[y : y + s, x : x + s + 3] = True
    return m


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    yield s
    s.close()


def test_accept_writes_everything(store, tmp_path):
    iid = store.add_image(tmp_path / "a.jpg", 50, 40, "h1")
    assert store.add_image(tmp_path / "a.jpg", 50, 40) == iid
    assert store.image(iid).path == "a.jpg"
    m = _mask()
    oid = store.accept(iid, m, provenance="click", clicks=2, seconds=1.5, score=0.9, engine="sam", model="vit_b")
    ob = store.object(oid)
    assert (ob.mask == m).all() and ob.bbox == tight_bbox(m) and ob.area == m.sum()
    assert (ob.label_status, ob.provenance, ob.clicks, ob.seconds) == ("pending", "click", 2, 1.5)
    assert [e["kind"] for e in store.events()] == ["accept"]
    with pytest.raises(StoreError):
        store.accept(iid, m, provenance="guess")


def test_labels_history_and_usage(store, tmp_path):
    iid = store.add_image(tmp_path / "a.jpg", 50, 40)
    oid = store.accept(iid, _mask())
    store.set_label_failed(oid, "timeout", "m", prompt_tokens=10)
    assert store.object(oid).label_status == "failed"
    store.set_label(oid, "Siamese cat", "cat", 0.9, "m", 100, 10, 0.001)
    ob = store.object(oid)
    assert (ob.label, ob.supercategory, ob.label_status, ob.prompt_tokens) == ("Siamese cat", "cat", "done", 110)
    store.relabel(oid, "Birman cat")
    assert store.object(oid).label_status == "edited"
    assert [h[0] for h in store.label_history(oid)] == ["Siamese cat", "Birman cat"]
    assert store.usage()["prompt_tokens"] == 110
    assert {c[1] for c in store.categories()} == {"Siamese cat", "Birman cat"}


def test_undo_redo(store, tmp_path):
    iid = store.add_image(tmp_path / "a.jpg", 50, 40)
    a = store.accept(iid, _mask())
    b = store.accept(iid, _mask(x=20))
    store.set_label(b, "cat", None, 0.8, "m")
    store.relabel(b, "dog")
    store.delete(a)
    assert [o.id for o in store.objects()] == [b]
    assert store.undo()["kind"] == "delete"
    assert [o.id for o in store.objects()] == [a, b]
    assert store.undo()["kind"] == "relabel"
    assert store.object(b).label == "cat" and store.object(b).label_status == "done"
    assert store.undo()["kind"] == "accept"
    assert [o.id for o in store.objects()] == [a]
    assert store.redo()["kind"] == "accept"
    assert store.redo()["kind"] == "relabel" and store.object(b).label == "dog"
    store.undo()
    c = store.accept(iid, _mask(y=25))  # a new action ends the redo chain
    assert store.redo() is None
    assert {o.id for o in store.objects()} == {a, b, c}
    assert store.object(b).label == "cat"


def test_proposals(store, tmp_path):
    iid = store.add_image(tmp_path / "a.jpg", 50, 40)
    p1 = store.accept(iid, _mask(), provenance="proposed", state="proposed", score=0.9)
    p2 = store.accept(iid, _mask(x=20), provenance="proposed", state="proposed", score=0.8)
    store.decide_proposal(p1, True)
    store.decide_proposal(p2, False)
    assert [o.id for o in store.objects()] == [p1]
    store.undo()
    assert store.object(p2).state == "proposed"
    kinds = [e["kind"] for e in store.events()]
    assert kinds.count("propose") == 2 and "reject_proposal" in kinds and "undo" in kinds


def test_reopen_and_schema_version(tmp_path):
    p = tmp_path / "p.clicklabel"
    s = Store(p, root=tmp_path)
    iid = s.add_image(tmp_path / "x.png", 50, 40)
    s.accept(iid, _mask())
    s.close()
    s = Store(p)
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION) and s.count_objects() == 1 and s.root == tmp_path
    s.set_meta("schema_version", "99")
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(p)
    (tmp_path / "junk.clicklabel").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store(tmp_path / "junk.clicklabel")


_WRITER = """
import sys, numpy as np
from clicklabel.project import Store
s = Store(sys.argv[1])
iid = s.add_image("img.png", 64, 48)
m = np.zeros((48, 64), bool)
for i in range(100000):
    m[:] = False
    m[i % 40 : i % 40 + 5, :10] = True
    s.accept(iid, m, provenance="click", clicks=i)
    if i == 50:
        print("started", flush=True)
"""


def test_sigkill_mid_write_keeps_committed_objects(tmp_path):
    path = tmp_path / "k.clicklabel"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = Store(path)
    assert s.integrity_ok()
    obs = s.objects()
    assert len(obs) > 50
    for ob in obs:  # every committed object is whole: mask, box and its accept event
        m = ob.mask
        assert m.sum() == ob.area == 50 and ob.bbox == tight_bbox(m)
    assert len(s.events(["accept"])) == len(obs)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_projects_of_earlier_schemas_open_and_migrate(tmp_path, version):
    """A project written at schema 1, 2 or 3 opens: its objects and labels read back, its objects have their masks
    (schema 4 adds box-only objects), and labelling leases work."""
    import sqlite3

    from clicklabel.masks import encode_rle
    from clicklabel.project.schema import MIGRATIONS

    p = tmp_path / "old.clicklabel"
    conn = sqlite3.connect(p, isolation_level=None)
    for v in range(1, version + 1):
        conn.executescript(MIGRATIONS[v])
    coarse = "coarse" if version == 1 else "supercategory"
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?), ('root', '.')", (str(version),))
    conn.execute("INSERT INTO images(path, width, height, created) VALUES ('x.png', 50, 40, 0)")
    conn.execute("INSERT INTO categories(id, name) VALUES (7, 'cat')")
    conn.execute(f"INSERT INTO objects(image_id, rle, bbox, area, category_id, label, {coarse}, label_status, "
                 "provenance, created, updated) VALUES (1, ?, '[7, 5, 13, 10]', 130, 7, 'cat', 'animal', 'done', "
                 "'click', 0, 0)", (encode_rle(_mask())["counts"],))
    conn.close()
    s = Store(p)
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION) == "8"
    (ob,) = s.objects()
    assert np.array_equal(ob.mask, _mask()) and (ob.label, ob.supercategory) == ("cat", "animal")
    assert ob.has_mask and ob.given_bbox is None and ob.review is None and s.checks() == []
    assert s.claim_for_labelling([ob.id], "run-a", 60, since=time.time()) == []  # labelled: nothing to claim
    s.mark_pending([ob.id])
    concept = s.accept(1, _mask(), provenance="concept", label="cat", state="proposed")  # schema 7
    assert s.object(concept).provenance == "concept" and s.object(ob.id).label == "cat"
    assert s.claim_for_labelling([ob.id], "run-a", 60, since=time.time()) == [ob.id]
    assert s.integrity_ok()


def test_category_ids_clash_map_by_name(store, tmp_path):
    iid = store.add_image(tmp_path / "x.png", 50, 40)
    assert store.category_id("dog", cid=1) == 1
    assert store.category_id("cat", cid=1) != 1  # id 1 is the dog's here: the cat gets a new id, no IntegrityError
    assert store.category_id("dog", cid=5) == 1  # and names find their category whatever id is offered
    store.accept(iid, _mask(), label="cat")
    assert store.objects()[0].category_id == store.category_id("cat")


def test_non_finite_box_is_refused(store, tmp_path):
    iid = store.add_image(tmp_path / "x.png", 50, 40)
    with pytest.raises(StoreError, match="finite"):
        store.accept(iid, _mask(), bbox=(float("nan"), 0, 1, 1))
    assert store.count_objects() == 0


def test_a_busy_project_is_waited_for_then_named(tmp_path, monkeypatch):
    """A busy project is waited for (bounded, reported), then named; a write that runs out writes nothing."""
    import sqlite3

    from clicklabel.errors import ResourceError

    monkeypatch.setenv("CLICKLABEL_BUSY_TIMEOUT", "1.5")
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(tmp_path / "x.png", 50, 40)
    reports = []
    s.on_busy = reports.append
    other = sqlite3.connect(tmp_path / "p.clicklabel", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    with pytest.raises(ResourceError, match="busy: another program has held its write lock"):
        s.accept(iid, _mask())
    # waited (the report comes only after a try found the lock held), bounded (it gave up, as the report said)
    assert reports and "waiting for" in reports[0] and "giving up after 2 s" in reports[0]
    assert s.count_objects() == 0  # nothing written
    other.execute("ROLLBACK")
    s.accept(iid, _mask())
    assert s.count_objects() == 1 and s.integrity_ok()
