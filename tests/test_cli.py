"""The command line end to end on tiny synthetic runs: what each command
writes and prints, and every bad value as one line and exit code 2."""
import json
import os
import shutil
import subprocess
import sys

import numpy as onp
import pytest

import rpn
from conftest import (last_json, one_line_error, read_proposals, tiny_fit, tiny_options,
                      train_tiny)
from helpers.files import write_image
from rpn.cli import main


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run


def test_train_writes_the_run_folder_and_honours_epochs(run_dir):
    for name in ("config.json", "metrics.json", "curves.png", "predictions.png",
                 "recall_iou.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    latest = rpn.latest_checkpoint(os.path.join(run_dir, "checkpoint"))
    assert os.path.isfile(os.path.join(latest, "MANIFEST.json"))
    assert not os.path.exists(os.path.join(latest, "trainer.states"))     # no pickle
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    # --epochs 1 is honoured although the default preset has min_steps=448
    assert len(metrics["history"]) == 1 and metrics["config"]["epochs"] == 1
    final = metrics["final"]
    assert final["images"] == 4 and final["objects"] > 0
    for key in ("AR@100", "AR@300", "AR@1000", "R@1000@0.5", "AR_small@1000",
                "AR_medium@1000", "AR_large@1000"):
        size = key[3:].split("@")[0] if key.startswith("AR_") else None
        if size and final[f"objects_{size}"] == 0:
            assert final[key] == -1, key        # no object of that size: -1, as COCO
        else:
            assert 0 <= final[key] <= 1, key
    assert final["objects_large"] == 0          # 64-pixel images have no large object


def test_stdout_carries_only_results_and_progress_goes_to_stderr(tmp_path):
    out = str(tmp_path / "run")
    args = [a for a in tiny_options(epochs=1) if a != "--quiet"]
    result = subprocess.run([sys.executable, "-m", "rpn", "train", "--data", "synthetic",
                             "--out", out] + args, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and set(json.loads(lines[0])) >= {"AR@100", "AR@1000"}
    assert "epoch 1: loss" in result.stderr and "step" in result.stderr


def test_evaluate_json_and_ks(run_dir, capsys, tmp_path):
    assert main(["evaluate", "--checkpoint", run_dir, "--json", "--out", str(tmp_path),
                 "--quiet"]) == 0
    result = last_json(capsys.readouterr().out)
    for k in (100, 300, 1000):
        assert 0 <= result[f"AR@{k}"] <= 1
        for t in (0.5, 0.7):
            assert 0 <= result[f"R@{k}@{t}"] <= 1
    assert result["images"] == 4 and result["objects"] > 0
    assert os.path.isfile(tmp_path / "recall_iou.png")
    assert main(["evaluate", "--checkpoint", run_dir, "--json", "--ks", "5,50",
                 "--out", str(tmp_path), "--quiet"]) == 0
    result = last_json(capsys.readouterr().out)
    assert "AR@5" in result and "AR@50" in result and "AR@100" not in result
    with open(os.path.join(run_dir, "metrics.json")) as f:
        final = json.load(f)["final"]
    assert main(["evaluate", "--checkpoint", run_dir, "--json", "--quiet",
                 "--out", str(tmp_path)]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["AR@1000"] == pytest.approx(final["AR@1000"], abs=1e-6)


def test_evaluate_on_a_voc_folder(run_dir, tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=3, height=64, width=80)
    assert main(["evaluate", "--checkpoint", run_dir, "--data", root, "--json",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 3


def test_a_run_on_a_relative_folder_evaluates_from_anywhere(tmp_path, monkeypatch, capsys):
    rpn.write_voc(str(tmp_path / "voc"), num_train=8, num_val=3, height=64, width=64)
    monkeypatch.chdir(tmp_path)
    assert train_tiny("run", data="voc", num_train=None) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--json", "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 3
    # a split without an object of the classes has nothing to recall: said, exit 1
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--classes", "circle",
                 "--json", "--quiet", "--data", str(tmp_path / "voc")]) == 1
    assert "no object of the classes ['circle']" in capsys.readouterr().err


def test_evaluate_on_a_read_only_folder_prints_then_warns(run_dir, tmp_path, capsys):
    # the plot cannot be written (a folder stands where the file goes)
    os.makedirs(tmp_path / "recall_iou.png" / "x")
    assert main(["evaluate", "--checkpoint", run_dir, "--json", "--out", str(tmp_path),
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 4
    assert "warning: could not write" in captured.err


def test_export_gives_the_proposals_of_its_run(run_dir, tmp_path):
    path = write_image(tmp_path / "shapes.png")
    assert main(["predict", "--checkpoint", run_dir, path, "--top-k", "50",
                 "--out", str(tmp_path / "p1")]) == 0
    first = read_proposals(tmp_path / "p1")["images"][0]
    assert first["width"] == 100 and first["height"] == 80 and len(first["proposals"]) == 50
    for entry in first["proposals"]:
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 <= x1 <= 100 and 0 <= y0 <= y1 <= 80
    assert os.path.isfile(first["picture"])
    assert main(["export", "--checkpoint", run_dir, "--out", str(tmp_path / "exp")]) == 0
    symbol = json.load(open(tmp_path / "exp" / "rpn-symbol.json"))
    assert any(node["op"] == "_contrib_box_nms" for node in symbol["nodes"])
    assert main(["predict", "--checkpoint", str(tmp_path / "exp"), path, "--top-k", "50",
                 "--out", str(tmp_path / "p2")]) == 0
    second = read_proposals(tmp_path / "p2")["images"][0]
    # the same graph on the same pixels: equal to float32 rounding
    for a, b in zip(first["proposals"], second["proposals"]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        onp.testing.assert_allclose(a["box"], b["box"], atol=0.02)


def test_resume_continues_and_refuses_another_model(tmp_path):
    out = str(tmp_path / "again")
    args = ["train", "--data", "synthetic", "--out", out] + tiny_options(epochs=1)
    assert main(args) == 0
    assert main(args) == 2                      # the folder holds a run already
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        assert [h["epoch"] for h in json.load(f)["history"]] == [1, 2]
    assert main(args + ["--resume", "--set", "head_channels=8"]) == 2


@pytest.mark.parametrize("args, words", [
    (["--ctx", "gpu:-1"], "--ctx"),
    (["--ctx", "cpu:0,0"], "twice"),
    (["--ctx", "tpu"], "--ctx"),
    (["--set", "size=abc"], "size"),
    (["--set", "epochs=1.5"], "epochs"),
    (["--set", "anchor_sizes=0.1"], "anchor_sizes"),
    (["--set", "stride=5"], "stride"),
    (["--set", "no_such_setting=1"], "unknown settings"),
    (["--set", "justakey"], "KEY=VALUE"),
    (["--epochs", "0"], "epochs"),
    (["--epochs", "-3"], "epochs"),
    (["--batch-size", "x"], "batch-size"),
    (["--preset", "chapter", "--size", "100"], "multiple of 32"),
])
def test_every_bad_value_is_one_line_and_exit_code_2(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code = main(["train", "--data", "synthetic", "--out", str(out), "--quiet"] + args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra, words", [
    (["--amp"], ["--amp", "cpu(0)", "GPUs"]),
    (["--amp", "--ctx", "cpu:0,1"], ["--amp", "cpu(0), cpu(1)"]),
    (["--backbone", "vgg16"], ["setting backbone: got 'vgg16'", "resnet50_v1"]),
    (["--preset", "faster"], ["faster-rcnn"]),
    (["--set", "anchors_per_image=0"], ["setting anchors_per_image"]),
])
def test_bad_gpu_options_are_one_line_and_exit_2(extra, words, tmp_path, capsys):
    assert train_tiny(tmp_path / "r", extra=extra) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "r").exists()


def test_bad_values_of_other_commands(run_dir, tmp_path, capsys):
    image = write_image(tmp_path / "x.png")
    for argv, words in [
            (["predict", "--checkpoint", run_dir, image, "--top-k", "-1", "--out",
              str(tmp_path / "p")], "top-k"),
            (["evaluate", "--checkpoint", run_dir, "--ks", "0,10"], "--ks"),
            (["evaluate", "--checkpoint", str(tmp_path)], "config.json"),
            (["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "y")],
             "no such file"),
            (["train", "--data", "synthetic", "--ctx", "gpu:0", "--out", str(tmp_path / "z")],
             "cu112")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("change, words", [
    (lambda saved: "{ not json", "not valid JSON"),
    (lambda saved: json.dumps({"config": {k: v for k, v in saved["config"].items()
                                          if k != "stride"}}), "stride"),
    (lambda saved: json.dumps(dict(saved, config=dict(saved["config"], stride=5))), "stride"),
])
def test_a_broken_config_json_is_named(run_dir, tmp_path, capsys, change, words):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    path = copy / "config.json"
    path.write_text(change(json.loads(path.read_text())))
    assert main(["evaluate", "--checkpoint", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and words in err and len(err.strip().splitlines()) == 1


def test_a_diverging_loss_stops_with_exit_1_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train_tiny(out) == 0
    before = rpn.latest_checkpoint(os.path.join(out, "checkpoint"))
    code = train_tiny(out, extra=["--resume", "--lr", "1e6", "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "diverged" in err and before in err
    assert rpn.latest_checkpoint(os.path.join(out, "checkpoint")) == before
    assert main(["evaluate", "--checkpoint", out, "--quiet", "--json"]) == 0


def test_pretrained_path_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "weights.params"
    assert train_tiny(tmp_path / "r", extra=["--pretrained", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    assert not missing.exists()


def test_python_fit_gives_what_the_command_line_gives(run_dir, tmp_path):
    final = rpn.fit("synthetic", str(tmp_path / "py"), **tiny_fit())
    with open(os.path.join(run_dir, "metrics.json")) as f:
        cli = json.load(f)
    for key, value in cli["final"].items():
        if key != "seconds":
            assert final[key] == pytest.approx(value, abs=1e-6), key
    for name in ("curves.png", "recall_iou.png", "predictions.png", "config.json"):
        assert os.path.isfile(tmp_path / "py" / name)


def test_predict_data_takes_all_of_a_single_file_or_a_split(tiny_run, tmp_path, capsys):
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=5, num_val=2, height=32, width=32)
    one = os.path.join(coco, "annotations", "instances_train.json")
    assert main(["predict", "--checkpoint", tiny_run, "--data", one, "--data-images",
                 os.path.join(coco, "train"), "--out", str(tmp_path / "p1")]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 5
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=3, num_val=2, height=32, width=32)
    assert main(["predict", "--checkpoint", tiny_run, "--data", voc, "--split", "train",
                 "--out", str(tmp_path / "p2")]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 3
    assert main(["predict", "--checkpoint", tiny_run, "--out", str(tmp_path / "p3")]) == 2
    assert "give image files" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", tiny_run, "--data", "synthetic", "--out",
                 str(tmp_path / "p4")]) == 2
    assert "drawn in memory" in capsys.readouterr().err


# ---- issue 29: usage errors before anything is made, one line for every fault ---------

@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], ["--seed", "from 0 to 2**32 - 1", "-1"]),
    (["--seed", "4294967296"], ["--seed", "4294967296"]),
    (["--kvstore", "dist_sync"], ["--kvstore dist_sync", "python -m rpn.launch"]),
    (["--kvstore", "nccl"], ["--kvstore", "'nccl'"]),
])
def test_seed_and_kvstore_are_usage_errors_before_the_run_folder(tmp_path, capsys, args,
                                                                  words, monkeypatch):
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    out = tmp_path / "never"
    assert main(["train", "--data", "synthetic", "--out", str(out), "--quiet"] + args) == 2
    one_line_error(capsys, *words)
    assert not out.exists()                     # no folder, no .lock left behind


def test_running_out_of_memory_is_one_line(run_dir, tmp_path, capsys, monkeypatch):
    def allocate(*args, **kwargs):
        raise MemoryError("Unable to allocate 16.1 GiB for an array with shape "
                          "(3, 30000, 48000) and data type float32")
    monkeypatch.setattr(rpn.runs.trained, "export", allocate)
    assert main(["export", "--checkpoint", run_dir, "--out", str(tmp_path / "e")]) == 1
    one_line_error(capsys, "rpn export: error: out of memory", "16.1 GiB")


def test_what_reaches_stderr_sends_no_terminal_escapes(tmp_path, capsys):
    """Messages and warnings of every module pass through one printer that
    escapes what does not print (here the name of a --data folder)."""
    data = tmp_path / "data\x1b]0;owned\x07"
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b]0;owned\\x07" in err
