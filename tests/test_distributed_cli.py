"""The README's distributed command on a real loopback cluster: rank 0
writes checkpoints (with the optimizer state) and metrics, and --resume
continues from them."""
import json
import os
import subprocess
import sys

import pytest

import rpn

COMMAND = ["rpn", "train", "--data", "synthetic", "--kvstore", "dist_sync", "--size", "64",
           "--batch-size", "4", "--workers", "0", "--quiet", "--set", "num_train=16",
           "--set", "num_val=4"]


def launch(tmp_path, out, epochs, extra=()):
    rpn_script = os.path.join(os.path.dirname(sys.executable), "rpn")
    command = [rpn_script] + COMMAND[1:] + ["--out", str(out), "--epochs", str(epochs)]
    return subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "2", "-s", "1",
                           "--timeout", "180", "--"] + command + list(extra),
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_dist_sync_writes_checkpoints_and_metrics_and_resumes(tmp_path):
    out = tmp_path / "dist"
    result = launch(tmp_path, out, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.load(open(out / "metrics.json"))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["final"]["images"] == 4
    latest = rpn.latest_checkpoint(str(out / "checkpoint"))
    rpn.runs.checkpoint.verify_manifest(latest)
    before = json.load(open(os.path.join(latest, "optimizer.json")))
    # each worker trains on its half: 16 images / 2 workers / batch 4 = 2 steps an epoch
    assert before["saved"] and before["num_update"] == 4
    result = launch(tmp_path, out, 3, ["--resume"])
    # every worker resumes: one that started over would wait for the others forever
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1:" not in result.stderr
    metrics = json.load(open(out / "metrics.json"))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    after = json.load(open(os.path.join(rpn.latest_checkpoint(str(out / "checkpoint")),
                                        "optimizer.json")))
    # the optimizer continued from the saved state, as a resumed single process does
    assert after["num_update"] == 6
