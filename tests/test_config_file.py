"""rpn train --config FILE: a run trained again from its own config.json,
a file of settings, the command line on top of either (recorded), and
misspelt settings answered with the nearest name."""
import json
import os

import pytest

import rpn
from conftest import train_tiny
from rpn.cli import main
from rpn.config_file import read_config_file
from rpn.settings import SettingsError


def read(path):
    with open(path) as f:
        return json.load(f)


def manifest(run):
    latest = rpn.latest_checkpoint(os.path.join(run, "checkpoint"))
    files = read(os.path.join(latest, "MANIFEST.json"))["files"]
    return {name: entry["sha256"] for name, entry in files.items() if name.endswith(".params")}


def test_a_run_trains_again_from_its_own_config_json(tiny_run, tmp_path):
    again = str(tmp_path / "again")
    source = os.path.join(tiny_run, "config.json")
    assert main(["train", "--config", source, "--out", again, "--quiet", "--workers",
                 "0"]) == 0
    first, second = read(source), read(os.path.join(again, "config.json"))
    for key in ("config", "data", "images", "seed", "classes", "pretrained", "amp",
                "dataset"):
        assert second[key] == first[key], key
    assert second["config_file"] == {"path": os.path.abspath(source), "overrides": {}}
    # the same settings, data and seed: the same training, to the bit
    assert manifest(again) == manifest(tiny_run)
    assert read(os.path.join(again, "metrics.json"))["history"][0]["loss"] == read(
        os.path.join(tiny_run, "metrics.json"))["history"][0]["loss"]


def test_the_command_line_goes_on_top_of_the_file_and_is_recorded(tiny_run, tmp_path,
                                                                  capsys):
    out = str(tmp_path / "other")
    source = os.path.join(tiny_run, "config.json")
    assert main(["train", "--config", source, "--out", out, "--quiet", "--workers", "0",
                 "--set", "lambd=2.5", "--lr", "0.004", "--seed", "5",
                 "--classes", "ellipse"]) == 0
    first, second = read(source), read(os.path.join(out, "config.json"))
    changed = {"lambd": 2.5, "backbone_lr": 0.004, "output_lr": 0.004}
    assert second["config"] == dict(first["config"], classes=["ellipse"], **changed)
    assert second["seed"] == 5 and second["classes"] == ["ellipse"]
    assert second["data"] == first["data"]
    assert second["config_file"]["overrides"] == {"lambd": 2.5, "lr": 0.004, "seed": 5,
                                                  "classes": ["ellipse"]}


def test_a_file_of_settings_with_the_data_from_the_command_line(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"lambd": 1.5, "nms_threshold": 0.6,
                                    "classes": ["triangle"]}))
    out = str(tmp_path / "run")
    assert train_tiny(out, extra=["--config", str(settings)]) == 0
    record = read(os.path.join(out, "config.json"))
    assert record["config"]["lambd"] == 1.5 and record["config"]["nms_threshold"] == 0.6
    assert record["classes"] == ["triangle"] and record["data"] == "synthetic"
    assert record["config_file"]["path"] == str(settings)
    assert "size" in record["config_file"]["overrides"]       # conftest's --size on top


@pytest.mark.parametrize("content, words", [
    ({"sise": 3}, "'sise': did you mean 'size'?"),
    ({"config": {"strides": 16}}, "'strides': did you mean 'stride'?"),
    ([1, 2], "expected a JSON object of settings"),
    ({"config": [1]}, "its 'config' must be an object"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, capsys, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("rpn train: error: --config") and str(path) in err and words in err
    assert not out.exists()


def test_missing_data_and_a_missing_file(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "rpn train: error: the following arguments are required: --data" in \
        capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.json"), "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "none.json" in err
    settings = tmp_path / "settings.json"
    settings.write_text("{}")
    with pytest.raises(rpn.data.sources.DataSpecError, match="no data to train on"):
        rpn.fit(None, str(tmp_path / "run"), config_file=str(settings))


def test_a_misspelt_setting_gets_the_nearest_name(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path / "run"), "--set",
                 "sise=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("rpn train: error: unknown settings ['sise']; 'sise': did you mean "
                   "'size'? (docs/settings.md lists every setting)")
    # nothing near: every name, as before
    with pytest.raises(SettingsError, match=r"unknown settings \['qqqqq'\]; known: \["):
        rpn.config.PRESETS["default"].replace(qqqqq=1)


def test_reading_a_run_config_takes_its_run_and_settings(tiny_run):
    source = os.path.join(tiny_run, "config.json")
    file = read_config_file(source)
    saved = read(source)
    assert file.path == os.path.abspath(source)
    assert file.settings == {k: v for k, v in saved["config"].items() if k != "classes"}
    assert file.run == {"data": "synthetic", "seed": saved["seed"],
                        "classes": saved["classes"], "pretrained": "none", "amp": False}
