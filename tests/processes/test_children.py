"""Child processes that end with their parent: a run killed with SIGKILL
leaves no loader process behind (and nothing half written)."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import rpn
import rpn.runs.manifest
from conftest import tiny_options, train_tiny


def children_of(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_a_killed_run_leaves_no_orphans_and_no_half_files(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out)] \
        + tiny_options(num_train=32, num_val=8, epochs=40) + ["--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint" / "latest").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.2)
    time.sleep(1.5)                        # somewhere inside a later epoch, or saving
    workers = children_of(proc.pid)
    assert workers, "the run should decode images in worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, [p.pid for p in alive]
    # whatever is at a final name is whole, and the run resumes
    latest = rpn.latest_checkpoint(str(out / "checkpoint"))
    rpn.runs.manifest.verify_manifest(latest)
    json.load(open(out / "config.json"))
    assert train_tiny(out, 1, ["--resume"], num_train=32, num_val=8) in (0,)
    leftovers = [p for p in os.listdir(out / "checkpoint") if p.startswith(".")]
    assert leftovers == []
