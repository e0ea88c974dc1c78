"""The backbone: the chapter's ResNet-18 v2 by default, and every network of
the zoo cut at each stride (and trained from the command line)."""
import pytest
from mxnet import np

import rpn
from conftest import train_tiny
from rpn.backbone import detection_backbone
from rpn.settings import BACKBONES
from rpn.zoo.networks import feature_channels


def test_backbone_shapes_and_strides():
    X = np.zeros((2, 3, 64, 96))
    for stride, channels in ((32, 512), (16, 256), (8, 128)):
        net = rpn.detection_backbone(stride=stride)      # initialised, as the chapter's
        assert net(X).shape == (2, channels, 64 // stride, 96 // stride)
    with pytest.raises(ValueError, match="8, 16 or 32"):
        rpn.detection_backbone(stride=4)
    fused = rpn.detection_backbone(stride=8, top_down=True)
    fused.hybridize()
    assert fused(X).shape == (2, 128, 8, 12)
    with pytest.raises(ValueError, match="top_down needs stride=8"):
        rpn.detection_backbone(stride=16, top_down=True)


@pytest.mark.parametrize("name", BACKBONES)
def test_each_backbone_is_cut_at_each_stride(name):
    X = np.zeros((2, 3, 64, 96))
    for stride in (8, 16, 32):
        net = detection_backbone(stride=stride, name=name)
        assert net(X).shape == (2, feature_channels(name, stride), 64 // stride, 96 // stride)
    fused = detection_backbone(stride=8, top_down=True, name=name)
    fused.hybridize()
    assert fused(X).shape == (2, 128, 8, 12)


def test_the_chapters_backbone_is_the_default():
    net = detection_backbone()
    assert net(np.zeros((1, 3, 64, 64))).shape == (1, 512, 2, 2)
    assert any(k.startswith("resnetv2") for k in net.collect_params())


@pytest.mark.parametrize("name", [n for n in rpn.settings.BACKBONES if n != "mobilenetv2_0.25"])
def test_every_backbone_trains_from_the_command_line(name, tmp_path):
    out = tmp_path / "run"
    assert train_tiny(out, extra=["--backbone", name, "--set", "stride=16"]) == 0
    model = rpn.load(str(out))
    assert model.config.model.backbone == name
    assert model(np.zeros((1, 3, 64, 64)), np.array([[64, 64]])).boxes.shape[-1] == 4
