"""The command line end to end on a tiny synthetic run, and the recall
function on hand-made cases."""
import json
import os

import numpy as onp
import pytest
from mxnet import np

import rpn
from rpn.cli import main

TINY = ["--size", "64", "--batch-size", "4", "--epochs", "1", "--quiet", "--workers", "0",
        "--set", "min_steps=0", "--set", "num_train=8", "--set", "num_val=4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "run")
    assert main(["train", "--data", "synthetic", "--out", out] + TINY) == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    for name in ("config.json", "metrics.json", "curves.png", "predictions.png",
                 "recall_iou.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert rpn.latest_checkpoint(os.path.join(run_dir, "checkpoint"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert len(metrics["history"]) == 1
    assert metrics["final"]["images"] == 4 and 0 <= metrics["final"]["R@100@0.5"] <= 1


def test_evaluate_json(run_dir, capsys, tmp_path):
    assert main(["evaluate", "--checkpoint", run_dir, "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in (10, 100, 300):
        assert f"AR@{k}" in result
        for t in (0.5, 0.7):
            assert 0 <= result[f"R@{k}@{t}"] <= 1
    assert result["images"] == 4 and result["objects"] > 0
    assert os.path.isfile(tmp_path / "recall_iou.png")


def test_evaluate_on_a_voc_folder(run_dir, tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=3, height=64, width=64)
    assert main(["evaluate", "--checkpoint", run_dir, "--data", root, "--json",
                 "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 3


def test_predict_and_export_give_the_same_proposals(run_dir, tmp_path):
    from PIL import Image
    image = rpn.SyntheticImages(1, 80, 100, seed=9)[0]
    path = str(tmp_path / "shapes.png")
    Image.fromarray(image).save(path)
    assert main(["predict", "--checkpoint", run_dir, path, "--top-k", "5",
                 "--out", str(tmp_path / "p1")]) == 0
    with open(tmp_path / "p1" / "proposals.json") as f:
        first = json.load(f)[path]
    assert 1 <= len(first) <= 5
    for entry in first:
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 <= x1 <= 100 and 0 <= y0 <= y1 <= 80
    assert os.path.isfile(tmp_path / "p1" / "shapes.png")
    assert main(["export", "--checkpoint", run_dir, "--out", str(tmp_path / "exp")]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "exp"), path, "--top-k", "5",
                 "--out", str(tmp_path / "p2")]) == 0
    with open(tmp_path / "p2" / "proposals.json") as f:
        second = json.load(f)[path]
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        onp.testing.assert_allclose(a["box"], b["box"], atol=0.05)


def test_resume_continues_and_refuses_another_model(run_dir, tmp_path):
    out = str(tmp_path / "again")
    args = ["train", "--data", "synthetic", "--out", out] + TINY
    assert main(args) == 0
    assert main(args) == 2                      # the folder holds a run already
    assert main(args[:-1] + ["num_val=4", "--epochs", "2", "--resume"]) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        assert [h["epoch"] for h in json.load(f)["history"]] == [1, 2]
    assert main(args + ["--resume", "--set", "head_channels=8"]) == 2


def test_errors_a_person_can_act_on(run_dir, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]
                + TINY) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["train", "--data", "synthetic", "--ctx", "gpu:0", "--out",
                 str(tmp_path / "y")] + TINY) == 2
    assert "cu112" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def one_image(boxes):
    """A prediction list with one image whose proposals are ``boxes`` (M, 4)."""
    boxes = np.array(onp.asarray(boxes, dtype="float32").reshape(-1, 4))
    return [[np.ones((boxes.shape[0],)), boxes.T]]


def test_recall_of_perfect_and_missing_proposals():
    Y = np.array([[[0, 0.1, 0.1, 0.5, 0.5], [1, 0.5, 0.5, 0.9, 0.8], [-1, 0, 0, 0, 0]]])
    perfect = rpn.ProposalRecall(ks=(1, 10))
    perfect.update(one_image([[0.5, 0.5, 0.9, 0.8], [0.1, 0.1, 0.5, 0.5]]), Y)
    result = perfect.result()
    assert result["objects"] == 2 and result["R@10@0.7"] == 1.0 and result["AR@10"] == 1.0
    assert result["R@1@0.5"] == 0.5                 # only the first proposal counts
    none = rpn.ProposalRecall(ks=(10,))
    none.update(one_image(onp.zeros((0, 4))), Y)
    assert none.result()["R@10@0.5"] == 0.0 and none.result()["objects"] == 2


def test_a_proposal_exactly_at_the_threshold_counts():
    Y = np.array([[[0, 0.0, 0.0, 0.5, 0.5]]])
    recall = rpn.ProposalRecall(ks=(10,))
    recall.update(one_image([[0.0, 0.0, 0.5, 0.25]]), Y)      # IoU exactly 0.5
    assert recall.result()["R@10@0.5"] == 1.0
    assert recall.result()["R@10@0.7"] == 0.0
    # AR averages 0.50 .. 0.95: only 0.5 is reached
    assert recall.result()["AR@10"] == pytest.approx(0.1)


def test_small_datasets_get_the_minimum_number_of_steps():
    from rpn.config import PRESETS
    config = PRESETS["default"].replace(epochs=3, min_steps=100)
    assert config.epochs_for(50) == 3
    assert config.epochs_for(10) == 10
    assert PRESETS["chapter"].epochs_for(1) == 5


def test_sizes_that_do_not_fit_the_stride_are_refused(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path / "z"), "--size", "100",
                 "--set", "stride=8", "--set", "top_down=true", "--quiet"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path / "z"),
                 "--set", "no_such_setting=1", "--quiet"]) == 2
    assert "unknown settings" in capsys.readouterr().err
