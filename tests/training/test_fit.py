"""rpn.fit: the run folder it writes, the model it trains (whole, on any
context, on a backbone and preset of its choice, with AMP's switch), what
it records (the settings, validation data of its own), and the README's
distributed command on a real loopback cluster."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
import rpn.runs.manifest
from conftest import QUIET, last_json, tiny_fit, tiny_options, train_tiny
from helpers.files import make_voc
from helpers.models import FakeAmp
from rpn.cli import main
from rpn.settings import SettingsError
from rpn.training.fit import FINAL_KEYS, Fit


def test_fit_writes_a_run_folder_that_loads_as_the_trained_model(tmp_path):
    out = str(tmp_path / "run")
    final = rpn.fit("synthetic", out, **tiny_fit())
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
    final = rpn.fit("synthetic", out, **tiny_fit(ctx=ctx))
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
    rpn.fit("synthetic", out, **tiny_fit())
    with pytest.raises(rpn.runs.folder.RunError, match="already holds a run"):
        rpn.fit("synthetic", out, **tiny_fit())


def test_the_faster_rcnn_preset_trains_from_scratch_on_cpu(tmp_path, capsys):
    out = tmp_path / "frcnn"
    assert train_tiny(out, extra=["--preset", "faster-rcnn", "--pretrained", "none"]) == 0
    with open(out / "config.json") as f:
        saved = json.load(f)
    config = saved["config"]
    assert config["backbone"] == "resnet50_v1" and config["stride"] == 16
    assert config["anchors_per_image"] == 256 and config["optimizer"] == "sgd"
    assert config["size"] == 64 and config["max_size"] == round(64 * 1000 / 600)
    assert saved["pretrained"] is None
    assert rpn.load(str(out)).net.settings.head_channels == 512


def test_amp_refuses_the_refinement_stage(tmp_path):
    class OnGpus(Fit):          # the GPU check passes, as on GPUs
        def check_devices(self):
            pass
    with pytest.raises(SettingsError, match="refinement stage"):
        OnGpus("synthetic", str(tmp_path / "r"), amp=True, size=64,
               settings={"refine": True}).run()
    assert not (tmp_path / "r").exists()


def test_python_fit_takes_the_backbone_and_the_preset(tmp_path):
    final = rpn.fit("synthetic", str(tmp_path / "py"), **tiny_fit(
        preset="faster-rcnn", backbone="mobilenetv2_0.25", pretrained="none"))
    assert 0 <= final["AR@100"] <= 1
    assert rpn.load(str(tmp_path / "py")).config.model.backbone == "mobilenetv2_0.25"


def test_fit_turns_amp_on_before_the_model_and_hands_it_to_the_loop(tmp_path):
    """``rpn.fit(amp=True)`` with the GPU check and AMP's global switch
    stood in for (a :class:`Fit` whose parts record what they do): AMP goes
    on before the model is built, and the loop gets AMP's loss scaler; the
    run records it."""
    events = []

    class StandIn(Fit):
        def check_devices(self):
            events.append("check")

        def switch_amp(self):
            events.append(("init", hasattr(self, "net")))

        def build_model(self):
            super().build_model()
            events.append("model")

        def train(self):
            events.append(("loop", self.amp))
            self.amp = FakeAmp()            # MXNet's scaler needs a GPU
            history = super().train()
            events.append(self.amp.calls[0])
            return history

    StandIn("synthetic", str(tmp_path / "run"), **tiny_fit(amp=True)).run()
    assert events == ["check", ("init", False), "model", ("loop", True),
                      ("init_trainer", "Trainer")]
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["amp"] is True


def test_clip_boxes_is_a_setting_the_run_keeps(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", {f"i{k}": [("cat", 2, 2, 30, 30), ("cat", 5, 5, 70, 20)]
                                       for k in range(4)})
    out = str(tmp_path / "run")
    assert train_tiny(out, data=root, batch_size=2, num_train=None) == 1
    err = capsys.readouterr().err
    assert "lies outside its 64x48 image" in err and "clip_boxes=true" in err
    assert train_tiny(out, 1, ["--set", "clip_boxes=1"], root, batch_size=2, num_train=None) == 2
    assert "setting clip_boxes: got 1; expected true or false" in capsys.readouterr().err
    assert train_tiny(out, 1, ["--set", "clip_boxes=true"], root, batch_size=2,
                      num_train=None) == 0
    err = capsys.readouterr().err
    assert "clipped 4 boxes of 4 images" in err
    assert "train: 4 images, 8 objects; 4 boxes clipped to their image" in err
    assert json.load(open(os.path.join(out, "config.json")))["config"]["clip_boxes"] is True
    assert main(["evaluate", "--checkpoint", out, "--json"] + QUIET) == 0     # as trained
    assert last_json(capsys.readouterr().out)["objects"] == 8


def test_a_voc_folder_validated_on_a_coco_file(tmp_path, capsys):
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=32, width=32)
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=5, num_val=1, height=32, width=32,
                          seed=3)
    val_file = os.path.join(coco, "annotations", "instances_train.json")
    val_images = os.path.join(coco, "train")
    out = str(tmp_path / "run")
    assert train_tiny(out, 1, ["--val-data", val_file, "--val-images", val_images], voc,
                      size=32, batch_size=2, num_train=None) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 5        # all of the validation file
    assert "rpn train: all: 5 images" in captured.err
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["val_data"] == os.path.abspath(val_file)
    assert saved["val_images"] == os.path.abspath(val_images)
    assert saved["data"] == os.path.abspath(voc)
    # evaluate on the run defaults to its validation data
    assert main(["evaluate", "--checkpoint", out, "--json", "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 5
    # and a --data given explicitly wins
    assert main(["evaluate", "--checkpoint", out, "--data", voc, "--split", "val", "--json",
                 "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 2


def test_validation_data_keeps_the_training_classes_and_val_images_needs_val_data(tmp_path, capsys):
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=32, width=32)
    # the synthetic set as validation data keeps the training classes only
    final = rpn.fit(voc, str(tmp_path / "run"), classes=["rectangle"], val_data="synthetic",
                    size=32, batch_size=2, epochs=1, quiet=True,
                    settings={"num_train": 4, "num_val": 6})
    assert final["images"] == 6
    with pytest.raises(rpn.data.image_set.DataError, match="no class \\['unicorn'\\]"):
        rpn.fit("synthetic", str(tmp_path / "run2"), classes=["unicorn"], size=32,
                batch_size=2, epochs=1, quiet=True)
    assert train_tiny(tmp_path / "r2", 1, ["--val-images", str(tmp_path)], voc, size=32,
                      batch_size=2, num_train=None) == 2
    assert "--val-images needs --val-data" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r2")


def launch(tmp_path, out, epochs, extra=()):
    """The README's distributed command: ``rpn train`` of a tiny run with
    ``dist_sync`` on a loopback cluster of two workers and one server."""
    rpn_script = os.path.join(os.path.dirname(sys.executable), "rpn")
    command = [rpn_script, "train", "--data", "synthetic", "--kvstore", "dist_sync"] \
        + tiny_options(num_train=16) + ["--out", str(out), "--epochs", str(epochs)]
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
    rpn.runs.manifest.verify_manifest(latest)
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
