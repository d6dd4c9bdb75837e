"""Smoke runs of the benchmark scripts (small sizes: the scripts' own plumbing, no figure is judged), the device
scripts' commands checked against the CLI's parser, and the interleaving every A/B in `bench` uses."""

import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from clicklabel.bench.agreement import Paired, interleaved, ratio_text

from conftest import ROOT


def run_script(*args, timeout=900):
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return r.stdout


def test_interleaved_alternates_the_order_and_warms_both_up():
    calls = []
    pairs = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), pairs=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then AB, BA, AB
    assert len(pairs.a) == len(pairs.b) == 3 and len(pairs.loads) == 4


def test_ratio_is_the_median_of_pairs_and_never_prints_as_zero():
    p = Paired(a=[2.0, 9.0, 3.0], b=[1.0, 1.0, 1.0], loads=[1.0, 2.0])
    assert p.ratios == [2.0, 9.0, 3.0] and p.ratio == 3.0
    assert p.spread() == "3x (pairs 2x-9x, n=3)" and p.load_text() == "load average 1.0-2.0"
    assert ratio_text(0.0042) == "0.0042x" and ratio_text(0.31) == "0.31x" and ratio_text(float("inf")) == "n/a"


@pytest.mark.parametrize("script", ["gpu_first_click.sh", "gpu_fast_path.sh", "gpu_precompute.sh"])
def test_device_scripts_ask_only_what_the_cli_accepts(script):
    """A typo in a device script would cost a device call: every `clicklabel.cli` command in it parses here."""
    from clicklabel.cli import build_parser

    path = ROOT / "benchmarks" / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text().replace("\\\n", " ")
    commands = [line.split("clicklabel.cli", 1)[1].split("|")[0].split("2>&1")[0]
                for line in text.splitlines() if "python3 -m clicklabel.cli" in line]
    assert commands
    parser = build_parser()
    for cmd in commands:
        args = parser.parse_args(shlex.split(cmd))
        assert args.func is not None


def test_encoder_agreement_script_runs():
    out = run_script("benchmarks/encoder_agreement.py", "--arch", "tiny")
    assert "fp32 + SDPA: max |features" in out and "bf16 + SDPA" in out


def test_store_scale_script_runs(tmp_path):
    out = run_script("benchmarks/store_scale.py", "--objects", "40", "--images", "4", "--dir", str(tmp_path))
    assert "store_scale: 40 objects" in out and "export 40 annotations" in out


def test_cpu_paths_script_runs_and_reports_each_path():
    out = run_script("benchmarks/cpu_paths.py", "--model", "vit_b", "--size", "128", "--paths", "sdpa,int8,bf16")
    rows = {r.split("|")[1].strip() for r in out.splitlines() if r.startswith("| ")}
    assert {"fp32 SDPA", "dynamic int8 (Linear)", "bf16 autocast"} <= rows
    loads = re.search(r"load average ([0-9.]+) -> ([0-9.]+)", out)
    assert loads and all(np.isfinite(float(v)) for v in loads.groups())


def test_second_run_script_times_a_first_and_a_cached_run(tiny_checkpoint):
    out = run_script("benchmarks/second_run.py", "--model", "auto", "--checkpoint", str(tiny_checkpoint),
                     "--pairs", "1")
    row = next(r for r in out.splitlines() if r.startswith("| 1 |")).strip("| ").split(" | ")
    first, second = float(row[2]), float(row[4])
    assert first > 0 and second > 0 and abs(float(row[6]) - second / first) < 0.002
    assert "second / first: median" in out


@pytest.mark.gui
def test_gui_latency_script_runs_in_the_real_widget():
    """A few of each action in the real widget (a small random SAM, small images): the script's plumbing, and its
    last line carries every figure."""
    out = run_script("benchmarks/gui_latency.py", "--model", "tiny", "--image-size", "320x240", "--clicks", "3",
                     "--switches", "2", "--reviews", "2", "--drags", "1", "--proposals", "10", "--pause", "0.05",
                     timeout=600)
    last = out.strip().splitlines()[-1]
    assert re.search(r"click p50 [0-9.]+ ms p90 [0-9.]+ ms \(decoder alone p90 [0-9.]+ ms\); switch p50 [0-9.]+ ms; "
                     r"review p50 [0-9.]+ ms; drag first paint p50 [0-9.]+ ms; max UI gap [0-9.]+ ms; load engine "
                     r"max gap [0-9.]+ ms", last), last
