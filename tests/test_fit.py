"""rpn.fit: the run folder it writes, the model it trains (whole, on any
context), and what it records."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from rpn.training.fit import FINAL_KEYS

TINY = dict(size=64, batch_size=4, epochs=1, settings={"num_train": 8, "num_val": 4},
            quiet=True)


def test_fit_writes_a_run_folder_that_loads_as_the_trained_model(tmp_path):
    out = str(tmp_path / "run")
    final = rpn.fit("synthetic", out, **TINY)
    assert set(FINAL_KEYS) <= set(final) and final["images"] == 4
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["data"] == "synthetic" and saved["seed"] == 0
    assert saved["classes"] == list(rpn.SYNTHETIC_CLASSES)
    assert rpn.RunConfig.from_dict(saved["config"]).model.size == 64
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["final"]["AR@100"] == final["AR@100"] and len(metrics["history"]) == 1
    model = rpn.load(out)
    assert model.config.to_dict() == saved["config"]
    # the recall fit reports is the loaded model's on the same split
    result, _ = rpn.evaluate(model, "synthetic", "val")
    assert result["AR@100"] == pytest.approx(final["AR@100"], abs=1e-9)


@pytest.mark.parametrize("ctx", [mx.cpu(1), [mx.cpu(0), mx.cpu(1)]])
def test_fit_follows_its_contexts(tmp_path, ctx):
    out = str(tmp_path / "run")
    final = rpn.fit("synthetic", out, ctx=ctx, **TINY)
    assert onp.isfinite(final["AR@100"])
    model = rpn.load(out, ctx=ctx)
    first = ctx[0] if isinstance(ctx, list) else ctx
    assert model.ctx == first
    X = np.zeros((1, 3, 64, 64), ctx=first)
    scores, boxes = model(X, np.array([[64, 64]], ctx=first))
    assert scores.ctx == first and boxes.ctx == first


def test_fit_without_validation_returns_none_and_records_no_recall(tmp_path):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=1, height=64, width=64)
    lists = os.path.join(root, "ImageSets", "Main")
    for name in os.listdir(lists):
        if name.endswith("val.txt"):
            open(os.path.join(lists, name), "w").close()              # an empty val split
    out = str(tmp_path / "run")
    with pytest.warns(UserWarning, match="no validation object"):
        assert rpn.fit(root, out, size=64, batch_size=2, epochs=1, quiet=True) is None
    assert json.load(open(os.path.join(out, "metrics.json")))["final"] is None


def test_fit_refuses_a_folder_that_holds_a_run(tmp_path):
    out = str(tmp_path / "run")
    rpn.fit("synthetic", out, **TINY)
    with pytest.raises(rpn.runs.folder.RunError, match="already holds a run"):
        rpn.fit("synthetic", out, **TINY)
