"""Where clicklabel keeps files of its own, and how every file it writes gets there whole.

- One cache root: ``$CLICKLABEL_CACHE``, else the platform's user cache folder. Each cache has a named subfolder
  (``embeddings/``, ``labels/``); nothing is written beside or above the root.
- One atomic write: a temporary file in the target's folder, flushed and fsynced, then renamed over the target. A
  failure (a full disk, a killed process) never leaves half a file under the real name, and the temporary file
  is removed on any error. Caches whose reader detects a torn entry (the embedding cache) skip the fsync
  (``durable=False``): after a power loss an entry may be empty or torn, and is then recomputed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import ClickLabelError, ResourceError

# OS errors that say the machine could not do it (not that the user asked for something wrong)
MACHINE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM)


def cache_root() -> Path:
    """$CLICKLABEL_CACHE, else the user cache folder (``~/.cache/clicklabel`` on Linux)."""
    env = os.environ.get("CLICKLABEL_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("clicklabel"))


def cache_path(name: str) -> Path:
    """The named subfolder or file of the cache root (``embeddings``, ``labels``)."""
    return cache_root() / name


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")


def describe_os_error(exc: OSError, path: str | Path) -> str:
    """One line naming what went wrong with ``path``: full disk and read-only media by name."""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full: cannot write {path}"
    if exc.errno == errno.EROFS:
        return f"{path} is on read-only media"
    if exc.errno == errno.EDQUOT:
        return f"the disk quota is used up: cannot write {path}"
    if exc.errno == errno.EFBIG:
        return f"{path} would be larger than this system allows a file to be"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write {path}"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and not Path(path).parent.is_dir():
        return f"cannot write {path}: {Path(path).parent} is not a folder"
    if exc.errno == errno.EISDIR or Path(path).is_dir():
        return f"{path} is a folder; give a file name"
    return f"cannot write {path}: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None, durable: bool = True) -> Iterator:
    """``with atomic_write(p, "w") as f: ...``: ``f`` is a temporary file that replaces ``p`` when the block ends
    without an error. The folder is created if needed. OS errors become one-line ClickLabelErrors. ``durable``:
    fsync the file before the rename (else the rename is still atomic for running processes, but the content
    may not be on the disk yet when the power fails)."""
    path = output_target(Path(path))
    tmp = _temporary(path)
    try:
        if path.is_dir():  # inside the try: a folder that may not be looked into raises PermissionError here
            raise ClickLabelError(f"{path} is a folder; give a file name")
        if not path.parent.is_dir():  # one stat, not mkdir's exception, in the common case of an existing folder
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        kind = ResourceError if exc.errno in MACHINE_ERRNOS else ClickLabelError
        raise kind(describe_os_error(exc, path)) from None
    except BaseException:
        _remove(tmp)
        raise


def output_target(path: Path) -> Path:
    """The file a write to ``path`` may replace: ``path`` itself when it is missing or a regular file; the file a
    symbolic link points to (kept a link: the file it names is written); never a device, a FIFO, a socket or
    anything else that a rename would turn into a regular file (``export --out /dev/full`` as root)."""
    try:
        st = os.lstat(path)
    except OSError:  # missing (or not to be looked at: the write says why)
        return path
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        try:
            st = os.stat(target)
        except OSError:  # a link to a path not there yet: the write creates it, the link stays
            return target
        path = target
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):  # a folder is refused with its own message
        return path
    kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "not a regular file")
    raise ClickLabelError(f"{path} is {kind}; clicklabel writes only regular files and leaves it as it is: give a "
                          "file name")


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # the folder itself is not there (a file in its place): nothing was written
        pass


def ensure_folder(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents); one-line errors for a file in the way, no space, ..."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():  # inside the try: exists() raises PermissionError where one may not look
            raise ClickLabelError(f"{p} is a file; give a folder for the output")
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        kind = ResourceError if exc.errno in MACHINE_ERRNOS else ClickLabelError
        raise kind(describe_os_error(exc, p)) from None
    return p


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """A matplotlib figure as PNG, atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))
