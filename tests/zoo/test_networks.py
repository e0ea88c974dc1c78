"""The networks of the model zoo: where each family reaches a stride, and
how many channels its features have there."""
import pytest

from rpn.backbone import detection_backbone
from rpn.zoo.networks import feature_channels


def test_the_channels_of_each_family():
    assert [feature_channels("resnet50_v1", s) for s in (8, 16, 32)] == [512, 1024, 2048]
    assert [feature_channels("resnet34_v2", s) for s in (8, 16, 32)] == [128, 256, 512]
    assert [feature_channels("mobilenetv2_0.5", s) for s in (8, 16, 32)] == [16, 48, 1280]
    with pytest.raises(ValueError, match="backbone: got 'vgg16'; expected one of resnet18_v1"):
        detection_backbone(name="vgg16")
