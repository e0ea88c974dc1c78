"""Settings: typed objects that check themselves, one flat namespace on the
command line and in config.json, and their documentation."""
import ast
import dataclasses
import os
import re

import pytest

import rpn
from rpn.config import PRESETS, RunConfig
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
                                         "pyramid", "pyramid_channels", "pyramid_scales",
                                         "iou_branch", "refine", "objectness")
    other = PRESETS["default"].replace(head_channels=64, lambd=2.0)
    assert PRESETS["default"].model_mismatch(other) == ["head_channels"]


def test_settings_and_config_import_no_model_training_or_loss_code():
    for module in ("settings", "config"):
        tree = ast.parse(open(os.path.join(ROOT, "src", "rpn", f"{module}.py")).read())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level > 0}
        assert imported <= {"settings", "preprocess"}, (module, imported)
