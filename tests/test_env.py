"""``rpn env``: what the machine offers, and a check that trains and
proposes on each device, times each chosen backbone (float16 on GPUs only)
and prices a VOC epoch by each preset's resize rule."""
import json
import os

import mxnet as mx
import pytest

import rpn
from conftest import one_line_error
from rpn.cli import main
from rpn.env import check_device, describe


def test_env_describes_the_build_and_devices(capsys):
    info = describe()
    assert info["mxnet"] == mx.__version__
    assert set(info["features"]) >= {"CUDA", "MKLDNN", "DIST_KVSTORE"}
    assert len(info["gpus"]) == mx.context.num_gpus()
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"mxnet {mx.__version__}" in out and "MKLDNN" in out
    threads = info["cpu_threads"]        # the suite's conftest sets one thread
    assert threads["threads"] == os.environ["MXNET_OMP_MAX_THREADS"] and threads["set_by"]
    assert f"cpu operator threads: {threads['threads']} (set by {threads['set_by']}" in out


def test_the_check_trains_and_proposes_on_a_device(capsys):
    result = check_device(mx.cpu(1), steps=2, batch_size=2, size=64)
    assert result["ok"], result
    assert result["train_step_ms"] > 0 and result["images_per_sec"] > 0
    assert result["train_step_cpu_ms"] > 0
    assert result["proposals_ms_per_batch"] > 0 and result["peak_memory_mb"] > 0
    assert main(["env", "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["device"] for c in report["checks"]][0] == "cpu(0)"
    assert all(c["ok"] for c in report["checks"])


def test_a_device_that_fails_is_reported_not_raised():
    if mx.context.num_gpus():
        pytest.skip("a GPU is visible: gpu(0) would work")
    result = check_device(mx.gpu(0), steps=1, batch_size=1, size=64)
    assert result["ok"] is False and result["error"]


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


def test_env_times_float16_on_gpus_only(monkeypatch, capsys):
    from rpn import env
    result = env.check_device(mx.cpu(), steps=1, batch_size=1, size=64, amp=True)
    assert result["ok"] is False and "needs GPUs" in result["error"]
    assert result["precision"] == "float16"
    calls = []
    monkeypatch.setattr(env, "check_device", lambda ctx, **kw: calls.append(kw) or dict(
        ok=True, device=str(ctx), **{k: kw.get(k) for k in ("preset", "backbone")}))
    assert env.main(["--check", "--json", "--amp"]) == 0
    assert all(not kw.get("amp") for kw in calls)             # no GPU: float32 only
    if not mx.context.num_gpus():
        assert "no GPU visible" in capsys.readouterr().err
