"""What a GPU user asks for, on CPU at tiny sizes: ``--backbone``, the
``faster-rcnn`` preset, ``--pretrained`` files and their errors, ``--amp``'s
refusal on a CPU, and ``rpn env --check`` per backbone."""
import json
import os

import pytest
from mxnet import init, np
from mxnet.gluon.model_zoo import vision

import rpn
from conftest import TINY
from rpn.zoo.networks import _numpy_mode
from rpn.cli import main

ONE = TINY + ["--epochs", "1"]


def train(out, *extra, data="synthetic"):
    return main(["train", "--data", data, "--out", str(out)] + ONE + list(extra))


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def mobile_run(tmp_path_factory):
    """A tiny run on MobileNet v2 at width 0.25, stride 16."""
    out = tmp_path_factory.mktemp("mobile") / "run"
    assert train(out, "--backbone", "mobilenetv2_0.25", "--set", "stride=16") == 0
    return str(out)


def test_the_run_folder_records_the_backbone_and_every_command_rebuilds_it(
        mobile_run, tmp_path, capsys):
    with open(os.path.join(mobile_run, "config.json")) as f:
        saved = json.load(f)
    assert saved["config"]["backbone"] == "mobilenetv2_0.25"
    assert saved["pretrained"] is None and saved["amp"] is False
    model = rpn.load(mobile_run)
    assert model.net.settings.backbone == "mobilenetv2_0.25"
    assert any("mobilenetv2" in k for k in model.net.backbone.collect_params())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", mobile_run, "--json", "--quiet",
                 "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 4
    assert main(["propose", "--checkpoint", mobile_run, "--data", "synthetic", "--quiet",
                 "--out", str(tmp_path / "p.npz")]) == 0
    assert len(rpn.load_proposals(str(tmp_path / "p.npz"))) == 4
    assert main(["export", "--checkpoint", mobile_run, "--out", str(tmp_path / "x")]) == 0
    exported = rpn.load(str(tmp_path / "x"))
    assert exported.config.model.backbone == "mobilenetv2_0.25"
    X = np.zeros((1, 3, 64, 64))
    sizes = np.array([[64, 64]])
    original = model(X, sizes)
    onp_equal = (original.boxes.asnumpy() == exported(X, sizes).boxes.asnumpy())
    assert onp_equal.all()


@pytest.mark.parametrize("name", [n for n in rpn.settings.BACKBONES if n != "mobilenetv2_0.25"])
def test_every_backbone_trains_from_the_command_line(name, tmp_path):
    out = tmp_path / "run"
    assert train(out, "--backbone", name, "--set", "stride=16") == 0
    model = rpn.load(str(out))
    assert model.config.model.backbone == name
    assert model(np.zeros((1, 3, 64, 64)), np.array([[64, 64]])).boxes.shape[-1] == 4


def test_a_resume_with_another_backbone_is_refused(mobile_run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(mobile_run, copy)
    assert train(copy, "--resume", "--backbone", "resnet18_v2", "--set", "stride=16") == 2
    one_line_error(capsys, "backbone", "mobilenetv2_0.25 -> resnet18_v2")


def test_the_faster_rcnn_preset_trains_from_scratch_on_cpu(tmp_path, capsys):
    out = tmp_path / "frcnn"
    assert train(out, "--preset", "faster-rcnn", "--pretrained", "none") == 0
    with open(out / "config.json") as f:
        saved = json.load(f)
    config = saved["config"]
    assert config["backbone"] == "resnet50_v1" and config["stride"] == 16
    assert config["anchors_per_image"] == 256 and config["optimizer"] == "sgd"
    assert config["size"] == 64 and config["max_size"] == round(64 * 1000 / 600)
    assert saved["pretrained"] is None
    assert rpn.load(str(out)).net.settings.head_channels == 512


def test_the_faster_rcnn_preset_asks_for_imagenet_weights(tmp_path, capsys, monkeypatch):
    """Without --pretrained the preset loads ImageNet weights; here the model
    store is empty and the download refused: one line naming the file to
    put there, and no run folder."""
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    assert train(tmp_path / "r", "--preset", "faster-rcnn") == 1
    one_line_error(capsys, "resnet50_v1-", ".params", str(tmp_path / "home"))
    assert not (tmp_path / "r").exists()


def test_pretrained_weights_of_the_chosen_backbone_from_a_file(tmp_path, capsys):
    net = _numpy_mode(vision.get_model("resnet18_v1"))
    net.initialize(init.Xavier())
    net(np.zeros((1, 3, 32, 32)))
    net.save_parameters(str(tmp_path / "r18.params"))
    out = tmp_path / "run"
    assert train(out, "--backbone", "resnet18_v1", "--pretrained",
                 str(tmp_path / "r18.params")) == 0
    with open(out / "config.json") as f:
        assert json.load(f)["pretrained"] == str(tmp_path / "r18.params")
    # the same file for another network: one line naming both, exit 1, and
    # nothing made
    capsys.readouterr()
    assert train(tmp_path / "other", "--pretrained", str(tmp_path / "r18.params")) == 1
    one_line_error(capsys, str(tmp_path / "r18.params"), "resnet18_v2",
                   "holds the weights of resnet18_v1")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("extra, words", [
    (["--amp"], ["--amp", "cpu(0)", "GPUs"]),
    (["--amp", "--ctx", "cpu:0,1"], ["--amp", "cpu(0), cpu(1)"]),
    (["--backbone", "vgg16"], ["setting backbone: got 'vgg16'", "resnet50_v1"]),
    (["--preset", "faster"], ["faster-rcnn"]),
    (["--set", "anchors_per_image=0"], ["setting anchors_per_image"]),
])
def test_bad_gpu_options_are_one_line_and_exit_2(extra, words, tmp_path, capsys):
    assert train(tmp_path / "r", *extra) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "r").exists()


def test_amp_refuses_the_refinement_stage(tmp_path):
    from rpn.settings import SettingsError
    from rpn.training.fit import Fit

    class OnGpus(Fit):          # the GPU check passes, as on GPUs
        def check_devices(self):
            pass
    with pytest.raises(SettingsError, match="refinement stage"):
        OnGpus("synthetic", str(tmp_path / "r"), amp=True, size=64,
               settings={"refine": True}).run()
    assert not (tmp_path / "r").exists()


def test_python_fit_takes_the_backbone_and_the_preset(tmp_path):
    final = rpn.fit("synthetic", str(tmp_path / "py"), preset="faster-rcnn",
                    backbone="mobilenetv2_0.25", pretrained="none", size=64, batch_size=4,
                    epochs=1, settings={"num_train": 8, "num_val": 4}, quiet=True)
    assert 0 <= final["AR@100"] <= 1
    assert rpn.load(str(tmp_path / "py")).config.model.backbone == "mobilenetv2_0.25"


def test_env_check_times_each_chosen_backbone_and_prices_a_voc_epoch(capsys):
    assert main(["env", "--check", "--json", "--backbone", "resnet18_v1,mobilenetv2_0.25"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    cpu = [c for c in checks if c["device"] == "cpu(0)"]
    assert [(c["preset"], c["backbone"]) for c in cpu] == [
        ("default", "resnet18_v1"), ("default", "mobilenetv2_0.25"),
        ("faster-rcnn", "resnet50_v1")]
    for c in cpu:
        assert c["ok"] and c["train_step_ms"] > 0 and c["precision"] == "float32"
        small, large = (c["voc_epoch_s"][name] for name, _ in rpn.env.VOC_SETS)
        assert large == pytest.approx(small * 16551 / 5717, rel=0.01)
    # the preset's 608 x 800 canvases cost (608 * 800) / (128 * 128) times the timed ones
    frcnn = cpu[-1]
    per_image = frcnn["train_step_ms"] / frcnn["batch_size"] / 1000
    assert frcnn["voc_epoch_s"]["VOC 2012 train"] == pytest.approx(
        per_image * 608 * 800 / 128 ** 2 * 5717, rel=0.01)


def test_env_check_options_are_checked(capsys):
    assert main(["env", "--check", "--backbone", "vgg16"]) == 2
    one_line_error(capsys, "--backbone 'vgg16'", "resnet18_v1")
    assert main(["env", "--check", "--preset", "nope"]) == 2
    one_line_error(capsys, "faster-rcnn")


def test_voc_pixels_follow_each_presets_resize_rule():
    from rpn.config import PRESETS
    from rpn.env import voc_pixels
    assert voc_pixels(PRESETS["faster-rcnn"].model) == 608 * 800     # 600 padded to 16
    assert voc_pixels(PRESETS["default"].model) == 112 * 152          # 149 padded to 8
    assert voc_pixels(PRESETS["chapter"].model) == 256 * 256
    wide = PRESETS["faster-rcnn"].model.replace(max_size=700)
    assert voc_pixels(wide) == 528 * 704          # the longer side capped: 525 x 700
