"""``rpn env``: what the machine offers, and a check that trains and
proposes on each device."""
import json

import mxnet as mx
import pytest

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


def test_the_check_trains_and_proposes_on_a_device(capsys):
    result = check_device(mx.cpu(1), steps=2, batch_size=2, size=64)
    assert result["ok"], result
    assert result["train_step_ms"] > 0 and result["images_per_sec"] > 0
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
