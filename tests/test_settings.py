"""Settings: typed objects that check themselves, one flat namespace on the
command line and in config.json, and their documentation."""
import ast
import dataclasses
import os
import re

import pytest

import rpn
from rpn.config import PRESETS, RunConfig, TrainSettings, resolve_config
from rpn.settings import ModelSettings, Settings, SettingsError, integer, setting

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_every_setting_has_its_row_in_docs_settings_md():
    text = open(os.path.join(ROOT, "docs", "settings.md")).read()
    documented = set(re.findall(r"^\| `([a-z_0-9]+)`", text, flags=re.M))
    assert set(RunConfig.names()) <= documented, set(RunConfig.names()) - documented
    # and nothing documented that does not exist
    assert documented <= set(RunConfig.names()), documented - set(RunConfig.names())


def test_settings_added_later_are_marked_with_their_version_in_the_docs():
    text = open(os.path.join(ROOT, "docs", "settings.md")).read()
    for f in dataclasses.fields(ModelSettings) + dataclasses.fields(RunConfig):
        since = f.metadata.get("since")
        row = re.search(rf"^\| `{f.name}`[^|]*\|", text, flags=re.M)
        if row is None:
            continue                    # the groups model and train have no row
        assert (f"({since})" in row.group(0)) == bool(since), (f.name, row.group(0))


def test_the_package_version_is_one_and_no_setting_is_from_a_later_one():
    import tomllib
    import rpn
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["version"]
    assert rpn.__version__ == declared

    def key(version):
        return tuple(int(part) for part in version.split("."))
    for f in dataclasses.fields(ModelSettings) + dataclasses.fields(RunConfig):
        since = f.metadata.get("since")
        assert since is None or key(since) <= key(declared), (f.name, since, declared)


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


def test_a_saved_config_must_have_every_setting_but_those_added_later():
    flat = PRESETS["default"].to_dict()
    del flat["stride"]
    with pytest.raises(SettingsError, match="settings missing: \\['stride'\\]"):
        RunConfig.from_dict(flat)

    @dataclasses.dataclass(frozen=True)
    class Later(Settings):
        old: int = setting(1, integer(0))
        new: int = setting(7, integer(0), since="0.3.0")

    assert Later.from_dict({"old": 2}) == Later(old=2, new=7)
    with pytest.raises(SettingsError, match="settings missing: \\['old'\\]"):
        Later.from_dict({"new": 2})
    with pytest.raises(SettingsError, match="expected an object"):
        Later.from_dict([1])


@pytest.mark.parametrize("changes, words", [
    ({"stride": 5}, "setting stride: got 5; expected 8, 16 or 32"),
    ({"stride": True}, "setting stride"),
    ({"size": "abc"}, "setting size: got 'abc'"),
    ({"size": 100}, "expected a multiple of 32 for stride 32"),
    ({"neg_iou": 0.8}, "expected at most pos_iou"),
    ({"top_down": True}, "needs stride 8"),
    ({"anchor_sizes": []}, "setting anchor_sizes"),
    ({"allowed_border": -1}, "setting allowed_border"),
    ({"optimizer": "rmsprop"}, "setting optimizer"),
    ({"epochs": 1.5}, "setting epochs"),
    ({"post_nms_top_n_test": 50}, "largest of ks"),
    ({"lambd": float("nan")}, "setting lambd"),
    ({"backbone": "resnet152_v1"}, "setting backbone: got 'resnet152_v1'; expected one of "
                                   "resnet18_v1, "),
    ({"backbone": ["resnet18_v2"]}, "setting backbone"),
    ({"anchors_per_image": 0}, "setting anchors_per_image: got 0; expected null or an "
                               "integer >= 1"),
    ({"anchors_per_image": 2.5}, "setting anchors_per_image"),
    ({"positive_fraction": 1.5}, "setting positive_fraction"),
    ({"lr_schedule": "poly"}, "expected 'constant', 'cosine' or 'step'"),
])
def test_every_bad_value_is_named(changes, words):
    with pytest.raises(SettingsError, match=re.escape(words)):
        PRESETS["chapter"].replace(**changes)


def test_numbers_are_cast_and_lists_become_tuples():
    config = PRESETS["chapter"].replace(epochs=3.0, anchor_sizes=[0.5, 0.25])
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.model.anchor_sizes == (0.5, 0.25)


def test_model_settings_derive_what_the_model_needs():
    default = PRESETS["default"].model
    assert default.num_anchors == 4 * 5 and default.size_divisor == 8
    assert rpn.Resize.of(default) == rpn.Resize.keep_ratio(112, 192)
    assert ModelSettings().num_anchors == 5 and ModelSettings().top_n(True) == (2000, 2000)
    assert ModelSettings(stride=8, top_down=True).size_divisor == 16
    assert RunConfig.shaping_names() == ("backbone", "stride", "top_down", "anchor_sizes",
                                         "anchor_ratios", "anchor_product", "head_channels",
                                         "pyramid", "pyramid_channels", "iou_branch",
                                         "refine", "objectness")
    other = PRESETS["default"].replace(head_channels=64, lambd=2.0)
    assert PRESETS["default"].model_mismatch(other) == ["head_channels"]


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


def test_settings_and_config_import_no_model_training_or_loss_code():
    for module in ("settings", "config"):
        tree = ast.parse(open(os.path.join(ROOT, "src", "rpn", f"{module}.py")).read())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level > 0}
        assert imported <= {"settings", "preprocess"}, (module, imported)


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


def test_resolve_config_takes_a_backbone_and_the_cli_offers_every_preset():
    from rpn.cli import PRESET_NAMES
    assert resolve_config("default", backbone="mobilenetv2_0.5").model.backbone == \
        "mobilenetv2_0.5"
    assert resolve_config("faster-rcnn").model.backbone == "resnet50_v1"
    assert sorted(PRESET_NAMES) == sorted(PRESETS)
    with pytest.raises(SettingsError, match="setting backbone: got 'vgg16'"):
        resolve_config("default", backbone="vgg16")
    assert PRESETS["default"].replace(anchors_per_image=256.0).model.anchors_per_image == 256
