"""A run's settings and the presets: names sent to their group, to JSON and
back (runs saved before later settings existed included), a preset and
explicit options combined, and the presets' own values."""
import pytest

import rpn
from rpn.config import PRESETS, RunConfig, TrainSettings, resolve_config
from rpn.settings import ModelSettings, SettingsError


def test_names_are_flat_unique_and_sent_to_their_group():
    names = RunConfig.names()
    assert len(names) == len(set(names))
    config = PRESETS["chapter"].replace(stride=8, batch_size=4, ks=(10,), size=64,
                                        post_nms_top_n_test=10)
    assert config.model.stride == 8 and config.model.size == 64
    assert config.train.batch_size == 4 and config.ks == (10,)
    assert config.get("stride") == 8 and config.get("batch_size") == 4
    assert config.model == ModelSettings(stride=8, size=64, post_nms_top_n_test=10)
    with pytest.raises(SettingsError, match="unknown settings \\['sise'\\]"):
        config.replace(sise=3)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_config_goes_to_json_and_back(preset):
    config = PRESETS[preset]
    flat = config.to_dict()
    assert set(flat) == set(RunConfig.names())
    assert RunConfig.from_dict(flat) == config
    assert isinstance(RunConfig.from_dict(flat).model.anchor_sizes, tuple)


def test_resolve_config_combines_a_preset_and_explicit_options():
    config = resolve_config("default", size=128, lr=0.01, epochs=3,
                            settings={"lambd": 2.0})
    assert config.model.max_size == round(128 * 192 / 112)
    assert config.train.backbone_lr == config.train.output_lr == 0.01
    assert config.train.epochs == 3 and config.train.min_steps == 0
    assert config.model.lambd == 2.0
    assert resolve_config("default").train.min_steps == 448
    with pytest.raises(SettingsError, match="preset 'nope'"):
        resolve_config("nope")


def test_train_settings():
    train = TrainSettings(epochs=2, min_steps=100)
    assert train.epochs_for(10) == 10 and train.epochs_for(100) == 2
    assert train.epochs_for(0) == 100
    assert TrainSettings().optimizer_params() == {"wd": 1e-4, "momentum": 0.0}
    assert TrainSettings(optimizer="adam").optimizer_params() == {"wd": 1e-4}


def test_the_faster_rcnn_preset_holds_the_papers_settings():
    config = PRESETS["faster-rcnn"]
    model, train = config.model, config.train
    assert (model.resize, model.size, model.max_size) == ("keep_ratio", 600, 1000)
    assert (model.backbone, model.stride) == ("resnet50_v1", 16)
    assert [round(s * 600) for s in model.anchor_sizes] == [128, 256, 512]
    assert model.anchor_ratios == (0.5, 1.0, 2.0) and model.num_anchors == 9
    assert (model.pos_iou, model.neg_iou) == (0.7, 0.3)
    assert (model.anchors_per_image, model.positive_fraction) == (256, 0.5)
    assert model.top_n(True) == (12000, 2000) and model.top_n(False) == (6000, 1000)
    assert (train.optimizer, train.momentum, train.wd, train.lr_schedule) == (
        "sgd", 0.9, 5e-4, "step")
    assert rpn.config.PRESET_PRETRAINED == {"faster-rcnn": "imagenet"}
    # a size keeps the preset's 600:1000
    assert resolve_config("faster-rcnn", size=300).model.max_size == 500


def test_the_default_preset_and_the_defaults_of_earlier_settings_are_unchanged():
    default = PRESETS["default"]
    assert default.model.backbone == "resnet18_v2" and default.model.anchors_per_image is None
    assert default.train.lr_schedule == "cosine" and default.model.neg_pos_ratio == 3
    assert ModelSettings().backbone == "resnet18_v2"


def test_a_run_saved_before_0_3_0_loads_as_resnet18_v2_with_the_ratio_rule():
    flat = PRESETS["default"].to_dict()
    for name in ("backbone", "anchors_per_image", "positive_fraction"):
        del flat[name]
    config = RunConfig.from_dict(flat)
    assert config.model.backbone == "resnet18_v2"
    assert config.model.anchors_per_image is None and config.model.positive_fraction == 0.5


def test_a_run_saved_before_clip_boxes_existed_loads(tmp_path):
    config = rpn.config.PRESETS["default"].to_dict()
    del config["clip_boxes"]
    assert rpn.config.RunConfig.from_dict(config).clip_boxes is False


def test_resolve_config_takes_a_backbone_and_the_cli_offers_every_preset():
    from rpn.cli import PRESET_NAMES
    assert resolve_config("default", backbone="mobilenetv2_0.5").model.backbone == \
        "mobilenetv2_0.5"
    assert resolve_config("faster-rcnn").model.backbone == "resnet50_v1"
    assert sorted(PRESET_NAMES) == sorted(PRESETS)
    with pytest.raises(SettingsError, match="setting backbone: got 'vgg16'"):
        resolve_config("default", backbone="vgg16")
    assert PRESETS["default"].replace(anchors_per_image=256.0).model.anchors_per_image == 256
