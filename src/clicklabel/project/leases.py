"""Leases on the objects a labelling run is sending: a run claims objects (with an expiry) just before it renders
and sends them, renews the claim right before each request, and gives it up with the answer. Two runs on one
project (two `clicklabel label`, or the CLI and the widget) so never send one object twice, an answer arriving
for an object that a person relabelled or deleted meanwhile is not written over their change, and a run that
died frees its objects when its leases run out, or at once when it ran on this machine (its process is gone)."""

from __future__ import annotations

import os
import socket
import time

_CHUNK = 500  # ids per query (SQLite's parameter limit is 999 on old builds)


def lease_owner(tag: str) -> str:
    """A run's owner name: this machine, this process and ``tag`` (unique per run), so a lease of a run that was
    killed can be told from a live one's."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}"


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:tag``) is a run on this machine whose process is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


class LeasesMixin:
    """Part of ``Store``: uses its ``conn`` and ``transaction()``."""

    def claim_for_labelling(self, object_ids, owner: str, seconds: float, since: float, check: bool = False
                            ) -> list[int]:
        """Claim those of ``object_ids`` that still wait for a label (accepted, pending or failed, unchanged since
        ``since``) and that no other run holds; returns the ids claimed, in the order given. With ``check`` (the
        class audit), those that have a label instead (concept proposals too): an answer or a check stored meanwhile
        changes the object, so a second run skips it."""
        wanted = "o.label IS NOT NULL" if check else "o.label_status IN ('pending', 'failed')"
        states = "'accepted', 'proposed'" if check else "'accepted'"  # a concept proposal is checked before review
        ids = list(object_ids)
        now = time.time()
        got: set[int] = set()
        with self.transaction():
            self._drop_dead_leases()
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                rows = self.conn.execute(
                    "SELECT o.id FROM objects o LEFT JOIN label_leases l ON l.object_id = o.id "
                    f"WHERE o.id IN ({','.join('?' * len(chunk))}) AND o.state IN ({states}) "
                    f"AND {wanted} AND o.updated <= ? "
                    "AND (l.owner IS NULL OR l.owner = ? OR l.expires < ?)",
                    (*chunk, since, owner, now),
                )
                got.update(int(r[0]) for r in rows)
            self.conn.executemany("INSERT OR REPLACE INTO label_leases(object_id, owner, expires) VALUES (?, ?, ?)",
                                  [(oid, owner, now + seconds) for oid in got])
        return [oid for oid in ids if oid in got]

    def _drop_dead_leases(self) -> int:
        """Inside a transaction: free the leases of runs on this machine whose process died (kill -9, a crash):
        their objects are labelled by the next run at once, not when the leases run out."""
        owners = [r[0] for r in self.conn.execute("SELECT DISTINCT owner FROM label_leases")]
        dead = [o for o in owners if _dead_here(o)]
        for o in dead:
            self.conn.execute("DELETE FROM label_leases WHERE owner=?", (o,))
        return len(dead)

    def renew_lease(self, object_id: int, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s lease on an object (right before its request); False if ``owner`` no longer holds it
        (it ran out and another run took the object, or a person relabelled or deleted it)."""
        with self.transaction():
            cur = self.conn.execute("UPDATE label_leases SET expires=? WHERE object_id=? AND owner=?",
                                    (time.time() + seconds, object_id, owner))
            return cur.rowcount == 1

    def release_leases(self, owner: str) -> None:
        """Give up every lease ``owner`` still holds (the end of a run, stopped or not)."""
        with self.transaction():
            self.conn.execute("DELETE FROM label_leases WHERE owner=?", (owner,))

    def leased_elsewhere(self, object_ids, owner: str | None = None) -> int:
        """How many of ``object_ids`` another run (not ``owner``) holds now."""
        ids = list(object_ids)
        n = 0
        if any(_dead_here(r[0]) for r in self.conn.execute("SELECT DISTINCT owner FROM label_leases")):
            with self.transaction():
                self._drop_dead_leases()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            n += self.conn.execute(
                f"SELECT COUNT(*) FROM label_leases WHERE object_id IN ({','.join('?' * len(chunk))}) "
                "AND expires >= ? AND owner IS NOT ?", (*chunk, time.time(), owner)).fetchone()[0]
        return int(n)

    def _holds(self, object_id: int, owner: str | None) -> bool:
        """Inside a transaction: whether ``owner`` may write the model's answer for the object (None: no lease
        asked for); the lease is given up either way."""
        if owner is None:
            self.conn.execute("DELETE FROM label_leases WHERE object_id=?", (object_id,))
            return True
        row = self.conn.execute("SELECT owner FROM label_leases WHERE object_id=?", (object_id,)).fetchone()
        if row is None or row[0] != owner:
            return False
        self.conn.execute("DELETE FROM label_leases WHERE object_id=?", (object_id,))
        return True
