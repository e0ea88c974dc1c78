"""Every backbone of the model zoo: cut at each stride, trained a step on
CPU from weights saved in the test, and a weights file of another network
named as such."""
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np
from mxnet.gluon.model_zoo import vision

import rpn
from conftest import SMALL, train_model
from rpn.backbone import detection_backbone, feature_channels
from rpn.zoo.networks import _numpy_mode
from rpn.zoo.weights import (WeightsMismatchError, identify_weights, pretrained_file_name,
                            weights_path)
from rpn.settings import BACKBONES


def zoo_weights(name, path, value=None):
    """Save the ImageNet-shaped parameters of zoo network ``name`` (random,
    or ``value`` everywhere) to ``path``, as the model store holds them."""
    net = _numpy_mode(vision.get_model(name))
    net.initialize(init.Constant(value) if value is not None else init.Xavier())
    net(np.zeros((1, 3, 32, 32)))
    net.save_parameters(str(path))
    return net


@pytest.mark.parametrize("name", BACKBONES)
def test_each_backbone_is_cut_at_each_stride(name):
    X = np.zeros((2, 3, 64, 96))
    for stride in (8, 16, 32):
        net = detection_backbone(stride=stride, name=name)
        assert net(X).shape == (2, feature_channels(name, stride), 64 // stride, 96 // stride)
    fused = detection_backbone(stride=8, top_down=True, name=name)
    fused.hybridize()
    assert fused(X).shape == (2, 128, 8, 12)


def test_the_channels_of_each_family():
    assert [feature_channels("resnet50_v1", s) for s in (8, 16, 32)] == [512, 1024, 2048]
    assert [feature_channels("resnet34_v2", s) for s in (8, 16, 32)] == [128, 256, 512]
    assert [feature_channels("mobilenetv2_0.5", s) for s in (8, 16, 32)] == [16, 48, 1280]
    with pytest.raises(ValueError, match="backbone: got 'vgg16'; expected one of resnet18_v1"):
        detection_backbone(name="vgg16")


def test_the_chapters_backbone_is_the_default():
    net = detection_backbone()
    assert net(np.zeros((1, 3, 64, 64))).shape == (1, 512, 2, 2)
    assert any(k.startswith("resnetv2") for k in net.collect_params())


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
    found = rpn.data.sources.open_split("synthetic", "train", synthetic=dict(
        size=32, num_train=4, num_val=2, seed=0))
    loader = list(rpn.data.sources.make_loader(found, rpn.Resize.of(config.model), 2, train=True,
                                          size_divisor=16))
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
