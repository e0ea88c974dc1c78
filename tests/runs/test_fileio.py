"""Writing the files of a run folder: never through a planted link, and a
full disk as one line naming the file (the OS's ENOSPC and MXNet's
"FileStream.Write incomplete"), whichever writer meets it, with no
temporary left behind. Each case is injected."""
import errno
import json
import os

import mxnet as mx
import pytest

import rpn
import rpn.runs.checkpoint
import rpn.runs.fileio
from conftest import copy_run, errors, train_tiny
from rpn.cli import main
from rpn.runs.lock import LOCK_NAME


def test_writes_never_follow_a_planted_link(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in ("metrics.json", "metrics.json.tmp", "curves.png", ".metrics.json.tmp"):
        os.symlink(victim, out / name)
    assert train_tiny(out) == 0
    assert victim.read_text() == "keep me"
    assert not os.path.islink(out / "metrics.json")
    assert json.load(open(out / "metrics.json"))["history"]
    # a checkpoint folder planted as a link to elsewhere is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(elsewhere, other / "checkpoint")
    assert train_tiny(other, extra=["--resume"]) == 1
    assert list(elsewhere.iterdir()) == []


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _incomplete(*args, **kwargs):
    raise mx.base.MXNetError("[12:00:00] src/io/local_filesys.cc:38: Check failed: "
                             "nwrite == size (0 vs. 4096) : FileStream.Write incomplete\n"
                             "Stack trace:\n  [bt] (0) libmxnet.so(+0x1234)")


@pytest.mark.parametrize("where", ["optimizer", "parameters"])
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_one(
        tiny_run, tmp_path, capsys, monkeypatch, where):
    copy = copy_run(tiny_run, tmp_path)
    before = rpn.latest_checkpoint(str(copy / "checkpoint"))
    with monkeypatch.context() as patch:
        if where == "optimizer":
            patch.setattr(rpn.runs.checkpoint, "_save_optimizer", _enospc)
            file = "epoch-0002/optimizer.params"
        else:
            patch.setattr(mx.gluon.Block, "save_parameters", _incomplete)
            file = "epoch-0002/output.params"           # the first part saved
        capsys.readouterr()
        assert train_tiny(copy, epochs=2, extra=["--resume"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1, err
    assert "disk is full" in err[0] and file in err[0] and "epoch-0001" in err[0]
    assert "Traceback" not in err[0] and "Stack trace" not in err[0]
    assert rpn.latest_checkpoint(str(copy / "checkpoint")) == before
    assert sorted(os.listdir(copy / "checkpoint")) == ["epoch-0001", "latest"]
    assert train_tiny(copy, epochs=2, extra=["--resume"]) == 0       # once there is space


def test_a_full_disk_for_config_json_names_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(rpn.runs.fileio.os, "fsync", _enospc)
    assert train_tiny(out) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "disk is full" in err[0] and "config.json" in err[0]
    assert [e for e in os.listdir(out) if e != LOCK_NAME] == []     # no temporary left


@pytest.mark.parametrize("fault", [_enospc, _incomplete])
def test_a_failed_export_removes_its_temporary_folder(tiny_run, tmp_path, capsys,
                                                      monkeypatch, fault):
    out = tmp_path / "export"
    monkeypatch.setattr(mx.gluon.HybridBlock, "export", fault)
    assert main(["export", "--checkpoint", tiny_run, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "disk is full" in err and str(out) in err
    assert os.listdir(out) == []
