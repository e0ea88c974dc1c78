"""Checkpoints kept as asked: the last ``--keep`` epochs and the best by
validation recall beside the latest; ``--epoch E|best`` reads one of them;
whole checkpoints for readers, also when the writer is killed while it
removes an old one, and nothing of the user's deleted."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import rpn
from conftest import race_a_reader, train_tiny
from rpn.cli import main
from rpn.runs import checkpoint
from rpn.runs.retention import superseded

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def names(*epochs):
    return [f"epoch-{e:04d}" for e in epochs]


@pytest.mark.parametrize("present, newest, keep, best, gone", [
    ((1, 2, 3), 3, 1, None, (1, 2)),
    ((1, 2, 3), 3, 2, None, (1,)),
    ((1, 2, 3), 3, 5, None, ()),
    ((1, 2, 3, 4), 4, 2, 1, (2,)),
    ((1, 2, 3, 4), 4, 1, 4, (1, 2, 3)),
    ((2, 5, 6), 5, 1, None, (2,)),          # a newer (unfinished) one is not touched
    ((3, 7), 7, 2, None, ()),               # the last two there are, gaps and all
])
def test_what_a_new_checkpoint_supersedes(present, newest, keep, best, gone):
    listing = names(*present) + ["latest", "best", "notes.txt", ".epoch-0009-x", "epoch-1"]
    best = names(best)[0] if best else None
    assert superseded(listing, newest, keep, best) == names(*gone)


def test_keep_must_be_a_whole_number_of_at_least_one():
    with pytest.raises(ValueError, match="keep must be an integer >= 1, got 0"):
        superseded(names(1), 1, 0)


def kept(run):
    return sorted(e for e in os.listdir(os.path.join(run, "checkpoint"))
                  if not e.startswith("."))


def history(run):
    with open(os.path.join(run, "metrics.json")) as f:
        return json.load(f)["history"]


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """A tiny run of 3 epochs with recall after each, keeping the last 2
    and the best."""
    out = str(tmp_path_factory.mktemp("watched") / "run")
    assert train_tiny(out, epochs=3, extra=["--eval-every", "1", "--keep", "2"]) == 0
    return out


def test_the_last_epochs_and_the_best_are_kept(watched_run):
    scores = [h["AR@100"] for h in history(watched_run)]
    best = scores.index(max(scores)) + 1              # the first of equal ones
    folder = os.path.join(watched_run, "checkpoint")
    assert checkpoint.checkpoint_epoch(checkpoint.best_checkpoint(folder)) == best
    assert rpn.latest_checkpoint(folder).endswith("epoch-0003")
    assert kept(watched_run) == sorted(["best", "latest"] + names(*sorted({2, 3, best})))


def test_evaluate_reads_the_epoch_asked_for(watched_run, tmp_path, capsys):
    records = history(watched_run)
    scores = [h["AR@100"] for h in records]
    own = open(os.path.join(watched_run, "recall_iou.png"), "rb").read()
    for epoch, expected in (("2", records[1]), ("best", records[scores.index(max(scores))])):
        assert main(["evaluate", "--checkpoint", watched_run, "--epoch", epoch, "--json",
                     "--quiet", "--workers", "0"]) == 0
        result = last_json(capsys.readouterr().out)
        assert result["AR@100"] == pytest.approx(expected["AR@100"], abs=1e-9)
        tag = "best" if epoch == "best" else "epoch-0002"
        assert os.path.isfile(os.path.join(watched_run, f"recall_iou-{tag}.png"))
        assert os.path.isfile(os.path.join(watched_run, f"recall_proposals-{tag}.png"))
    # the run's own pictures stay the latest's
    assert open(os.path.join(watched_run, "recall_iou.png"), "rb").read() == own
    model = rpn.load(watched_run, epoch=2)
    assert model.epoch == 2 and rpn.load(watched_run).epoch == 3


def test_an_epoch_not_kept_is_one_line_listing_those_kept(watched_run, tiny_run, tmp_path,
                                                          capsys):
    present = [checkpoint.checkpoint_epoch(e) for e in kept(watched_run)
               if e.startswith("epoch-")]
    gone = [e for e in (1, 9) if e not in present]
    for epoch in gone:
        assert main(["evaluate", "--checkpoint", watched_run, "--epoch", str(epoch),
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"no checkpoint of epoch {epoch}" in err
        assert f"it keeps epochs {', '.join(map(str, present))} (best: " in err
    # a run that measured no recall between epochs has no best
    assert main(["evaluate", "--checkpoint", tiny_run, "--epoch", "best", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no best checkpoint" in err and "--eval-every" in err
    for bad in ("0", "last", "-1"):
        assert main(["evaluate", "--checkpoint", tiny_run, "--epoch", bad]) == 2
        assert "rpn evaluate: error: argument --epoch" in capsys.readouterr().err
    export = str(tmp_path / "export")
    assert main(["export", "--checkpoint", watched_run, "--epoch", "best", "--out",
                 export]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", export, "--epoch", "2", "--quiet"]) == 2
    assert "is an export folder" in capsys.readouterr().err


@pytest.mark.parametrize("when", ["before its files are open", "while they are read"])
def test_a_reader_of_the_best_gets_a_whole_one_when_the_writer_moves_it(
        watched_run, tmp_path, monkeypatch, when):
    copy = str(tmp_path / "run")
    shutil.copytree(watched_run, copy)
    folder = os.path.join(copy, "checkpoint")
    old = checkpoint.best_checkpoint(folder)
    if old.endswith("epoch-0003"):
        pytest.skip("the best is the latest epoch: nothing to move")

    def writer_moves_on():          # as the writer does between a reader's steps
        rpn.runs.fileio.write_bytes(os.path.join(folder, "best"), b"epoch-0003")
        checkpoint._retire(folder, os.path.basename(old))

    moved = race_a_reader(monkeypatch, when, writer_moves_on)
    model = rpn.load(copy, epoch="best")
    assert moved == [when] and not os.path.exists(old)
    # files already open are read whole; a checkpoint gone before is followed
    expected = checkpoint.checkpoint_epoch(old) if when.startswith("while") else 3
    assert model.epoch == expected


SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import rpn.runs.retention as retention
from conftest import race_a_reader, train_tiny

remove = retention.shutil.rmtree
def killed_while_retiring(path, *args, **kwargs):
    if os.path.basename(path).startswith(".retired-"):
        os.kill(os.getpid(), signal.SIGKILL)
    return remove(path, *args, **kwargs)
retention.shutil.rmtree = killed_while_retiring
sys.exit(train_tiny({out!r}, epochs=3))
"""


@pytest.mark.slow
def test_a_writer_killed_while_it_retires_a_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(os.path.join(out, "checkpoint"))
    mine = {os.path.join(out, "notes.txt"): "mine", os.path.join(out, "checkpoint",
                                                                 "epoch-0002.bak"): "mine too"}
    for path, text in mine.items():
        with open(path, "w") as f:
            f.write(text)
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=TESTS, out=out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    # killed while removing epoch 1 after epoch 2 was saved: readers get epoch 2
    folder = os.path.join(out, "checkpoint")
    assert rpn.latest_checkpoint(folder).endswith("epoch-0002")
    assert "epoch-0001" not in os.listdir(folder)
    assert [e for e in os.listdir(folder) if e.startswith(".retired-")]
    assert rpn.load(out).epoch == 2
    # the next writer removes what the killed one left, and keeps what --keep asks
    assert train_tiny(out, epochs=3, extra=["--resume"]) == 0
    assert sorted(os.listdir(folder)) == ["epoch-0002.bak", "epoch-0003", "latest"]
    for path, text in mine.items():
        with open(path) as f:
            assert f.read() == text
    assert [h["epoch"] for h in history(out)] == [1, 2, 3]
