"""Faults injected into run folders: planted pickles and links, corrupt
checkpoints, killed processes. A run must survive them or name them."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import psutil
import pytest

import rpn
from rpn.cli import main
from conftest import small_model
from conftest import train_tiny as train
from rpn.config import PRESETS
from rpn.train import chapter_batch_fn


@pytest.fixture
def trained(tiny_run):
    return tiny_run


def fresh_copy(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    return copy, rpn.latest_checkpoint(str(copy / "checkpoint"))


class _Payload:
    """Unpickling this creates a file: the attack a pickled checkpoint allows."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_what_a_run_folder_holds(trained, tmp_path):
    copy, latest = fresh_copy(trained, tmp_path)
    marker = tmp_path / "pwned"
    with open(os.path.join(latest, "trainer.states"), "wb") as f:       # Gluon's file name
        pickle.dump(_Payload(str(marker)), f)
    assert train(copy, epochs=2, extra=["--resume"]) == 0
    assert not marker.exists()
    # a pickle in place of the optimizer state is refused as corrupt, unread
    latest = rpn.latest_checkpoint(str(copy / "checkpoint"))
    with open(os.path.join(latest, "optimizer.params"), "wb") as f:
        pickle.dump(_Payload(str(marker)), f)
    assert train(copy, epochs=3, extra=["--resume"]) == 1
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove_manifest", "remove_file"])
def test_a_corrupt_checkpoint_is_named_not_evaluated(trained, tmp_path, capsys, damage):
    copy, latest = fresh_copy(trained, tmp_path)
    params = os.path.join(latest, "output.params")
    data = bytearray(open(params, "rb").read())
    if damage == "truncate":
        open(params, "wb").write(data[:len(data) // 2])
    elif damage == "flip":
        data[len(data) - 20] ^= 0x01
        open(params, "wb").write(bytes(data))
    elif damage == "remove_manifest":
        os.remove(os.path.join(latest, "MANIFEST.json"))
    else:
        os.remove(params)
    assert main(["evaluate", "--checkpoint", str(copy), "--quiet", "--json"]) == 1
    err = capsys.readouterr().err
    assert ("output.params" in err or "MANIFEST" in err) and "Traceback" not in err
    assert capsys.readouterr().out == ""


def test_latest_cannot_point_outside_the_checkpoint_folder(trained, tmp_path, capsys):
    copy, latest = fresh_copy(trained, tmp_path)
    outside = tmp_path / "epoch-0001"
    shutil.copytree(latest, outside)
    (copy / "checkpoint" / "latest").write_text("../../epoch-0001")
    assert main(["evaluate", "--checkpoint", str(copy), "--quiet"]) == 1
    assert "latest" in capsys.readouterr().err
    os.remove(copy / "checkpoint" / "latest")
    os.symlink(outside, copy / "checkpoint" / "latest")
    assert main(["evaluate", "--checkpoint", str(copy), "--quiet"]) == 1


def test_writes_never_follow_a_planted_link(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in ("metrics.json", "metrics.json.tmp", "curves.png", ".metrics.json.tmp"):
        os.symlink(victim, out / name)
    assert train(out) == 0
    assert victim.read_text() == "keep me"
    assert not os.path.islink(out / "metrics.json")
    assert json.load(open(out / "metrics.json"))["history"]
    # a checkpoint folder planted as a link to elsewhere is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(elsewhere, other / "checkpoint")
    assert train(other, extra=["--resume"]) == 1
    assert list(elsewhere.iterdir()) == []


def test_the_optimizer_state_is_saved_as_arrays_and_resumes_exactly(tmp_path):
    def run(epochs, folder, resume=False):
        loader, _ = rpn.load_data_synthetic(4, 64, 64, num_train=8, num_val=4, seed=2)
        config = PRESETS["default"].replace(size=64, batch_size=4)
        net = small_model(config, seed=1)
        backbone, head = net.backbone, net.head
        rpn.train_detection(backbone, head, chapter_batch_fn(config.model), loader, None,
                            rpn.DetectionLoss(1),
                            epochs, 0.01, 0.01, mx.cpu(), optimizer="adam", seed=5,
                            checkpoint_dir=str(folder), resume=resume, verbose=False)
        return {k: p.data().asnumpy() for net in (backbone, head)
                for k, p in net._collect_params_with_prefix().items()}
    whole = run(3, tmp_path / "whole")
    run(1, tmp_path / "cut")
    meta = json.load(open(tmp_path / "cut" / "epoch-0001" / "optimizer.json"))
    assert meta["optimizer"] == "Adam" and meta["saved"] and meta["num_update"] == 2
    first = meta["states"][min(meta["states"], key=int)]
    assert len(first["tuple"]) == 2 and first["tuple"][0]["array"]   # Adam's mean, variance
    resumed = run(3, tmp_path / "cut", resume=True)
    for key in whole:
        onp.testing.assert_allclose(whole[key], resumed[key], rtol=1e-5, atol=1e-6)


def children_of(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_a_killed_run_leaves_no_orphans_and_no_half_files(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out),
               "--size", "64", "--batch-size", "4", "--epochs", "40", "--workers", "2",
               "--set", "num_train=32", "--set", "num_val=8", "--quiet"]
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
    rpn.runs.checkpoint.verify_manifest(latest)
    json.load(open(out / "config.json"))
    assert main(["train", "--data", "synthetic", "--out", str(out), "--resume", "--epochs",
                 "1", "--size", "64", "--batch-size", "4", "--workers", "0", "--quiet",
                 "--set", "num_train=32", "--set", "num_val=8"]) in (0,)
    leftovers = [p for p in os.listdir(out / "checkpoint") if p.startswith(".")]
    assert leftovers == []
