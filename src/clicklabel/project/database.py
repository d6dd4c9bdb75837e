"""The project's SQLite plumbing: opening the file, transactions that wait for a busy database for a bounded and
reported time, and SQLite's errors as one line that names the cause (read-only media, a full disk, a busy or
damaged file) instead of "not a clicklabel project"."""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ClickLabelError, ResourceError, StoreError

BUSY_TIMEOUT_ENV = "CLICKLABEL_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 120.0  # seconds a write waits for another program's write lock before giving up
_TRY_SECONDS = 1.0  # SQLite's own busy handler waits this long per try; between tries the wait is reported
_REPORT_EVERY = 10.0


def busy_timeout() -> float:
    """How long a write waits for a busy project: ``$CLICKLABEL_BUSY_TIMEOUT`` seconds, else 120."""
    try:
        value = float(os.environ.get(BUSY_TIMEOUT_ENV, DEFAULT_BUSY_TIMEOUT))
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT
    return value if math.isfinite(value) and value >= 0 else DEFAULT_BUSY_TIMEOUT


def report_wait(message: str) -> None:
    """The default report of a wait for a busy project: one line on stderr."""
    print(f"clicklabel: {message}", file=sys.stderr, flush=True)


def _read_only(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def sqlite_error(exc: BaseException, path: str | Path) -> ClickLabelError:
    """The one-line error for a SQLite failure on the project file ``path``: a ResourceError when the machine is
    the cause (read-only media, a full disk, a busy or failing disk), else a StoreError."""
    path = Path(path)
    text = str(exc)
    low = text.lower()
    if "readonly" in low or "read-only" in low or ("unable to open" in low and _read_only(path)):
        return ResourceError(f"{path} cannot be written (read-only media or no write permission); copy the project "
                             "to a writable folder")
    if "full" in low:
        return ResourceError(f"the disk is full: cannot write {path}; free some space and try again (nothing "
                             "was lost)")
    if "locked" in low or "busy" in low:
        return ResourceError(f"{path} is busy: another program holds its write lock")
    if "disk i/o" in low:
        return ResourceError(f"the disk failed while writing {path} ({text})")
    if "not a database" in low or "malformed" in low:
        return StoreError(f"{path} is not a clicklabel project, or it is damaged ({text})")
    if "unable to open" in low:
        return StoreError(f"cannot open {path}: its folder is missing or cannot be written")
    return StoreError(f"{path}: {text}")


def is_busy(exc: BaseException) -> bool:
    low = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in low or "busy" in low)


def check_ours(path: Path) -> None:
    """Refuse, before anything is written to it, an SQLite file that is not a clicklabel project: another program's
    database (tables but no clicklabel schema version) or a project whose schema version is unreadable. A missing
    or empty file and a database with no tables are fine (a new project is made there)."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_TRY_SECONDS)
    except (OSError, sqlite3.Error):  # cannot look: opening it for real names the cause
        return
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        version = None
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = row[0] if row else None
    except sqlite3.Error as exc:
        if is_busy(exc):  # another program is writing it: the real open waits and says so
            return
        raise sqlite_error(exc, path) from None
    finally:
        conn.close()
    if not tables:
        return
    if version is None:
        shown = ", ".join(tables[:5]) + (" ..." if len(tables) > 5 else "")
        raise StoreError(f"{path} is an SQLite database of another program (tables {shown}), not a clicklabel "
                         "project; it was left untouched: give another project file name")
    if not str(version).strip().isdigit() or int(version) < 1:
        raise StoreError(f"{path}: its schema version {str(version)[:40]!r} is not a version clicklabel wrote "
                         "(a whole number >= 1); the project is damaged and was left untouched")


def connect(path: Path) -> sqlite3.Connection:
    """The project's connection (WAL, autocommit: transactions are explicit)."""
    check_ours(path)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=_TRY_SECONDS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def begin(conn: sqlite3.Connection, path: Path, timeout: float, report: Callable[[str], None] | None) -> None:
    """BEGIN IMMEDIATE, waiting at most ``timeout`` seconds for another program's write lock (reported every
    10 s through ``report``); a wait that runs out is a one-line ResourceError and nothing is written."""
    start = time.monotonic()
    next_report = start
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise sqlite_error(exc, path) from None
        waited = time.monotonic() - start
        if waited >= timeout:
            raise ResourceError(f"{path} is busy: another program has held its write lock for {waited:.0f} s; nothing "
                             f"was written. Try again when it is done (or wait longer: {BUSY_TIMEOUT_ENV}=SECONDS)")
        if report is not None and time.monotonic() >= next_report:
            report(f"waiting for {path}: another program is writing it ({waited:.0f} s so far, giving up after "
                   f"{timeout:.0f} s)")
            next_report = time.monotonic() + _REPORT_EVERY


class Transaction:
    """One atomic action on a store: BEGIN IMMEDIATE (waiting for a busy database) ... COMMIT, ROLLBACK on any
    error; SQLite errors leave as one-line errors (``sqlite_error``). Nested uses join the outer transaction."""

    def __init__(self, store):
        self.store = store
        self.outer = False

    def __enter__(self):
        s = self.store
        s._lock.acquire()
        try:
            self.outer = not s.conn.in_transaction
            if self.outer:
                begin(s.conn, s.path, s.busy_timeout, s.on_busy)
        except BaseException:
            s._lock.release()
            raise
        return s.conn

    def __exit__(self, exc_type, exc, tb):
        s = self.store
        try:
            if self.outer:
                if exc_type is None:
                    try:
                        s.conn.execute("COMMIT")
                    except sqlite3.Error as err:
                        rollback(s.conn)
                        raise sqlite_error(err, s.path) from None
                else:
                    rollback(s.conn)
        finally:
            s._lock.release()
        if exc_type is not None and issubclass(exc_type, sqlite3.Error):
            raise sqlite_error(exc, s.path) from None
        return False


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite already rolled back (a full disk, an I/O error)
            pass
