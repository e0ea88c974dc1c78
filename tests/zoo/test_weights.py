"""ImageNet weights of the backbones from a file or a model-store folder:
loaded into every network and trained a step on CPU from weights saved in
the test; a missing path, a file of another network and a failed download
each named as such, with what to do."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, init, np
from mxnet.gluon.model_zoo import vision

import rpn
from conftest import SMALL, one_line_error, train_tiny
from helpers.models import tiny_batches, train_model
from rpn.backbone import detection_backbone
from rpn.settings import BACKBONES
from rpn.zoo.networks import _numpy_mode
from rpn.zoo.weights import (WeightsMismatchError, identify_weights, pretrained_file_name,
                             weights_path)


def zoo_weights(name, path, value=None):
    """Save the ImageNet-shaped parameters of zoo network ``name`` (random,
    or ``value`` everywhere) to ``path``, as the model store holds them."""
    net = _numpy_mode(vision.get_model(name))
    net.initialize(init.Constant(value) if value is not None else init.Xavier())
    net(np.zeros((1, 3, 32, 32)))
    net.save_parameters(str(path))
    return net


@pytest.mark.parametrize("name", BACKBONES)
def test_each_backbone_loads_its_weights_and_trains_a_step_on_cpu(name, tmp_path):
    path = tmp_path / f"{name}.params"
    zoo = zoo_weights(name, path)
    config = SMALL.replace(backbone=name, stride=16, size=32, max_size=48)
    mx.random.seed(0)
    model = rpn.RegionProposalNetwork.from_settings(config.model, [mx.cpu()],
                                                    pretrained=str(path))
    # every parameter the cut network shares with the zoo's holds the file's values
    saved = {k: p.data().asnumpy() for k, p in zoo._collect_params_with_prefix().items()}
    mine = model.backbone._collect_params_with_prefix()
    shared = [k for k in mine if "features." + k in saved]
    assert len(shared) >= len(mine) - 4          # all but a closing BatchNorm of ResNet v2
    for k in shared:
        onp.testing.assert_array_equal(mine[k].data().asnumpy(), saved["features." + k])
    first = mine[[k for k in shared if k.endswith("weight")][0]]     # a convolution
    loaded = first.data().asnumpy().copy()
    loader = tiny_batches(2, size=32, config=config, size_divisor=16)
    history = train_model(model, loader[:1], lr=0.01, hybridize=False)
    assert onp.isfinite(history[0]["loss"])
    assert not (first.data().asnumpy() == loaded).all()          # the step moved it
    scores, boxes = model(loader[0][0], np.array(loader[0][2].sizes, dtype="float32"))
    assert boxes.shape[-1] == 4 and scores.shape[0] == 2


def test_weights_of_another_network_are_named(tmp_path):
    zoo_weights("resnet18_v1", tmp_path / "r18v1.params", 0.5)
    assert identify_weights(tmp_path / "r18v1.params") == "resnet18_v1"
    with pytest.raises(WeightsMismatchError) as caught:
        detection_backbone(pretrained=True, root=str(tmp_path / "r18v1.params"))
    message = str(caught.value)
    assert str(tmp_path / "r18v1.params") in message
    assert "ImageNet weights of resnet18_v2" in message
    assert "holds the weights of resnet18_v1" in message and "\n" not in message


def test_weights_of_another_width_are_named(tmp_path):
    zoo_weights("mobilenetv2_0.5", tmp_path / "m.params", 0.5)
    with pytest.raises(WeightsMismatchError, match=r"mobilenetv2_1\.0: it holds the "
                                                   r"weights of mobilenetv2_0\.5"):
        detection_backbone(pretrained=True, root=str(tmp_path / "m.params"),
                           name="mobilenetv2_1.0")


def test_a_file_that_is_no_zoo_network_or_no_parameter_file(tmp_path):
    junk = tmp_path / "junk.params"
    junk.write_bytes(b"not parameters")
    with pytest.raises(WeightsMismatchError, match="junk.params does not hold the ImageNet "
                                                   "weights of resnet50_v1: it is not an "
                                                   "MXNet parameter file"):
        detection_backbone(pretrained=True, root=str(junk), name="resnet50_v1")
    head = rpn.RPNOutput()
    head.initialize()
    head(np.zeros((1, 8, 4, 4)))
    head.save_parameters(str(tmp_path / "head.params"))
    with pytest.raises(WeightsMismatchError, match="none of the zoo networks'"):
        detection_backbone(pretrained=True, root=str(tmp_path / "head.params"))
    assert identify_weights(junk) is None


@pytest.mark.parametrize("name", ["resnet50_v1", "mobilenetv2_0.25"])
def test_a_model_store_folder_is_read_by_the_networks_file_name(name, tmp_path):
    file_name = pretrained_file_name(name)
    assert file_name.startswith(name + "-") and file_name.endswith(".params")
    with pytest.raises(FileNotFoundError, match=f"no ImageNet weights of {name}.*{file_name}"):
        weights_path(str(tmp_path), name)
    assert os.listdir(tmp_path) == []           # nothing downloaded or created
    zoo_weights(name, tmp_path / file_name, 0.25)
    net = detection_backbone(pretrained=True, root=str(tmp_path), name=name, stride=16)
    conv = [p for n, p in net.collect_params().items() if n.endswith("conv0_weight")][0]
    assert (conv.data().asnumpy() == 0.25).all()


def test_downloading_another_network_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")   # refused at once
    with pytest.raises(RuntimeError, match=r"resnet50_v1-[0-9a-f]{8}\.params.*"
                                           + str(tmp_path)):
        rpn.download_pretrained(str(tmp_path), name="resnet50_v1")
    with pytest.raises(ValueError, match="backbone: got 'resnet152_v1'"):
        rpn.download_pretrained(str(tmp_path), name="resnet152_v1")


def test_pretrained_from_a_missing_path_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "weights"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        rpn.detection_backbone(pretrained=True, root=str(missing))
    assert not missing.exists()
    # an existing folder without the file: named, and nothing downloaded into it
    with pytest.raises(FileNotFoundError, match=r"resnet18_v2-[0-9a-f]{8}\.params"):
        rpn.detection_backbone(pretrained=True, root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_downloading_says_what_to_do_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")   # refused at once
    with pytest.raises(RuntimeError, match=r"resnet18_v2-[0-9a-f]{8}\.params.*" + str(tmp_path)):
        rpn.download_pretrained(str(tmp_path))


def test_pretrained_from_a_params_file(tmp_path):
    full = gluon.model_zoo.vision.resnet18_v2()
    full.initialize(init.Constant(0.25))
    full(np.zeros((1, 3, 32, 32)))
    path = str(tmp_path / "weights.params")
    full.save_parameters(path)
    net = rpn.detection_backbone(pretrained=True, root=path)
    conv = [p for n, p in net.collect_params().items() if n.endswith("conv0_weight")][0]
    assert (conv.data().asnumpy() == 0.25).all()


def test_the_faster_rcnn_preset_asks_for_imagenet_weights(tmp_path, capsys, monkeypatch):
    """Without --pretrained the preset loads ImageNet weights; here the model
    store is empty and the download refused: one line naming the file to
    put there, and no run folder."""
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    assert train_tiny(tmp_path / "r", extra=["--preset", "faster-rcnn"]) == 1
    one_line_error(capsys, "resnet50_v1-", ".params", str(tmp_path / "home"))
    assert not (tmp_path / "r").exists()


def test_pretrained_weights_of_the_chosen_backbone_from_a_file(tmp_path, capsys):
    net = _numpy_mode(vision.get_model("resnet18_v1"))
    net.initialize(init.Xavier())
    net(np.zeros((1, 3, 32, 32)))
    net.save_parameters(str(tmp_path / "r18.params"))
    out = tmp_path / "run"
    assert train_tiny(out, extra=["--backbone", "resnet18_v1", "--pretrained",
                                  str(tmp_path / "r18.params")]) == 0
    with open(out / "config.json") as f:
        assert json.load(f)["pretrained"] == str(tmp_path / "r18.params")
    # the same file for another network: one line naming both, exit 1, and
    # nothing made
    capsys.readouterr()
    assert train_tiny(tmp_path / "other", extra=["--pretrained", str(tmp_path / "r18.params")]) == 1
    one_line_error(capsys, str(tmp_path / "r18.params"), "resnet18_v2",
                   "holds the weights of resnet18_v1")
    assert not (tmp_path / "other").exists()
