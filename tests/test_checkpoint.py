"""Checkpoints: one file a trained part, a manifest written last, and
loading that names what does not fit."""
import json
import os

import numpy as onp
import pytest
from mxnet import gluon, np

import rpn
from conftest import SMALL, small_model
from rpn.runs.checkpoint import (CorruptCheckpointError, latest_checkpoint,
                            load_parts, write_checkpoint)


def _ready(config=SMALL, seed=1):
    """A model whose parameters exist (a forward pass ends deferred init)."""
    model = small_model(config, seed=seed)
    model(np.zeros((1, 3, 64, 64)), np.array([[64, 64]]))
    return model


def _trainer(model):
    return gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 0.001},
                         update_on_kvstore=False)


def test_each_part_is_a_file_and_loads_back_into_a_fresh_model(tmp_path):
    model = _ready()
    folder = str(tmp_path / "checkpoint")
    path = write_checkpoint(folder, 0, model.parts(), _trainer(model), {"epoch": 0})
    assert latest_checkpoint(folder) == path and path.endswith("epoch-0001")
    files = sorted(os.listdir(path))
    assert files == ["MANIFEST.json", "backbone.params", "optimizer.json",
                     "optimizer.params", "output.params", "state.json"]
    manifest = json.load(open(os.path.join(path, "MANIFEST.json")))
    assert set(manifest["files"]) == set(files) - {"MANIFEST.json"}
    other = _ready(seed=2)
    assert not onp.allclose(other.head.conv.weight.data().asnumpy(),
                            model.head.conv.weight.data().asnumpy())
    assert load_parts(path, other.parts())["epoch"] == 0
    theirs = other._collect_params_with_prefix()          # structural names
    for name, param in model._collect_params_with_prefix().items():
        onp.testing.assert_array_equal(param.data().asnumpy(), theirs[name].data().asnumpy())
    # the chapter's two-block form reads the same files
    assert rpn.load_checkpoint(folder, other.backbone, other.head)["epoch"] == 0
    # a newer epoch replaces the older one, and latest follows
    newer = write_checkpoint(folder, 1, model.parts(), _trainer(model), {"epoch": 1})
    assert sorted(os.listdir(folder)) == ["epoch-0002", "latest"] and latest_checkpoint(
        folder) == newer


def test_a_part_of_another_shape_is_named(tmp_path):
    model = _ready()
    folder = str(tmp_path / "checkpoint")
    path = write_checkpoint(folder, 0, model.parts(), _trainer(model), {"epoch": 0})
    wider = _ready(SMALL.replace(head_channels=32))
    with pytest.raises(ValueError, match="does not fit this model"):
        load_parts(path, wider.parts())
    os.remove(os.path.join(path, "output.params"))
    with pytest.raises(CorruptCheckpointError, match="output.params"):
        load_parts(path, model.parts())


def test_load_gives_the_chapters_error_without_a_checkpoint(tmp_path):
    model = _ready()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        rpn.load_checkpoint(str(tmp_path), model.backbone, model.head)
