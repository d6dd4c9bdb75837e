"""clicklabel.segment.openmp: a thread's idle OpenMP team is handed back (the GUI's workers do it when they end)."""

import os

import pytest

CHILD = """
import json, threading
import torch
from clicklabel.segment.openmp import release_threads

def threads():
    for line in open("/proc/self/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])

out = {}

def work():
    x = torch.randn(1 << 22)
    (x + 1).sum()  # a parallel region: this thread now keeps an OpenMP team
    out["with"] = threads()
    out["released"] = release_threads()
    out["after"] = threads()
    (x + 1).sum()  # and makes one again when it needs it
    out["again"] = float((x * 0 + 1).sum())

t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux and 2 CPUs (an OpenMP team of 2)")
def test_release_threads_hands_back_the_threads_team():
    """In a process of its own: the suite's process runs other tests' threads, which would change the count."""
    import json
    import subprocess
    import sys

    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["released"]:
        pytest.skip("this PyTorch's OpenMP runtime cannot release a team")
    assert out["after"] < out["with"] and out["again"] == float(1 << 22)


def test_release_threads_without_torch_does_nothing(monkeypatch):
    import sys

    from clicklabel.segment import openmp

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    openmp._pause_all.cache_clear()
    assert openmp.release_threads() is False and openmp._pause_all.cache_info().currsize == 0  # not looked up
