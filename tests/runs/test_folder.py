"""A run folder's files: whether it holds a checkpoint (whole or not) or a
run, an export's graph, and its config.json read back or named when
broken."""
import json
import os

import pytest

from rpn.config import PRESETS
from rpn.runs.folder import SYMBOL_FILE, RunError, RunFolder


def test_a_folder_without_a_checkpoint_folder_or_with_an_empty_one_has_none(tmp_path):
    assert not RunFolder(tmp_path / "not-yet").has_checkpoint()
    assert not RunFolder(tmp_path).has_checkpoint()
    (tmp_path / "checkpoint").mkdir()
    assert not RunFolder(tmp_path).has_checkpoint()
    # entries that are no checkpoint's
    (tmp_path / "checkpoint" / "notes.txt").write_text("mine")
    (tmp_path / "checkpoint" / "epoch-").mkdir()
    (tmp_path / "checkpoint" / "epoch-12a").mkdir()
    (tmp_path / "checkpoint" / ".epoch-0002-x1y2").mkdir()          # a writer's temporary
    assert not RunFolder(tmp_path).has_checkpoint()


@pytest.mark.parametrize("entry", ["latest", "epoch-0003/", "epoch-0003", "epoch-12/"])
def test_latest_or_an_epoch_folder_is_a_checkpoint(tmp_path, entry):
    path = tmp_path / "checkpoint" / entry.rstrip("/")
    path.parent.mkdir()
    if entry.endswith("/"):
        path.mkdir()
    else:
        path.write_text("epoch-0003")
    assert RunFolder(tmp_path).has_checkpoint()
    assert RunFolder(str(tmp_path)).has_checkpoint()


@pytest.mark.parametrize("kind", ["file", "link to a folder", "dangling link"])
def test_a_checkpoint_that_is_no_plain_folder_counts_as_one(tmp_path, kind):
    """Not the package's to judge: a run that has one is resumed (and the
    resume says what is wrong), never started afresh over it."""
    path = tmp_path / "checkpoint"
    if kind == "file":
        path.write_text("not a folder")
    elif kind == "link to a folder":
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", path)
    else:
        os.symlink(tmp_path / "gone", path)
    assert RunFolder(tmp_path).has_checkpoint()
    assert RunFolder(tmp_path).has_run()


def test_a_run_an_export_and_their_config(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.has_run() and not folder.is_export
    assert folder.checkpoint_dir == os.path.join(tmp_path, "run", "checkpoint")
    config = PRESETS["default"].replace(size=64)
    folder.write_config(config, data="synthetic", seed=3)
    assert folder.has_run() and not folder.has_checkpoint()
    assert folder.read() == (config, {"data": "synthetic", "seed": 3})
    (tmp_path / "run" / SYMBOL_FILE).write_text("{}")
    assert folder.is_export


@pytest.mark.parametrize("text, words", [
    (None, "holds no config.json"),
    ("{ not json", "config.json"),
    ("[1, 2]", "expected an object with a 'config' entry"),
    (json.dumps({"config": {"stride": 5}}), "config.json"),
])
def test_a_config_that_cannot_be_read_is_named(tmp_path, text, words):
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    with pytest.raises(RunError, match=words):
        RunFolder(tmp_path).read()
