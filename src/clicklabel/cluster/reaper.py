"""Ray's agents are not left behind when the program that started a private local cluster is killed (kill -9).

Ray ties its GCS and raylet to the program's life, but the raylet's agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) outlive a killed raylet and ignore SIGTERM. A small watcher, started in its own session,
waits for the program to end and then kills the Ray processes left in the program's process group (those titled
``ray::``); nothing else in the group (a ``tee`` in the same pipeline) is touched. Linux only (it reads
/proc); elsewhere it is not started. Run as ``python -m clicklabel.cluster.reaper PID PGID``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
TITLE = b"ray::"  # how Ray titles its workers and agents


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def ray_leftovers(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` (other than this one) titled as Ray's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(TITLE):
            found.append(int(entry.name))
    return found


def watch(pid: int, pgid: int) -> int:
    """Wait for ``pid`` to end, then kill the Ray processes left in ``pgid``; returns how many."""
    while _alive(pid):
        time.sleep(POLL_SECONDS)
    left = ray_leftovers(pgid)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return len(left)


def start_reaper() -> subprocess.Popen | None:
    """The watcher for this process (None where /proc is missing); terminate it when the cluster is shut down."""
    if not sys.platform.startswith("linux") or not Path("/proc/self/stat").exists():
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "clicklabel.cluster.reaper", str(os.getpid()),
                                 str(os.getpgid(0))], start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no process to spare: Ray's agents may then outlive a killed program, as before
        return None


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
