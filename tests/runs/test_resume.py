"""A resume says what changed (issue 18): the comparison on its own, and
each change injected into a real resume."""
import glob
import json
import os
import shutil

import numpy as onp
import pytest

import rpn
from conftest import copy_run, one_line_error, train_tiny, warnings_of
from rpn.config import PRESETS
from rpn.data.image_set import ImageSet
from rpn.runs.resume import compare_resume, data_record, describe_change


def image_set(names, objects=1):
    labels = [onp.array([[0, 1, 1, 5, 5]] * objects, dtype="float32") for _ in names]
    return ImageSet(list(names), labels, list(names), list(names), [(8, 8)] * len(names),
                    ("a",))


def record(**changes):
    base = {"data": "/data/voc", "images": None, "seed": 0, "classes": ["a", "b"],
            "config": PRESETS["default"].replace(classes=("a", "b")).to_dict(),
            "dataset": data_record(image_set(["x", "y", "z"]), image_set(["v"]))}
    config = changes.pop("config", {})
    base.update(changes)
    base["config"] = dict(base["config"], **config)
    return base


def whats(items):
    return [c["what"] for c in items]


def test_the_same_run_changes_nothing_and_epochs_are_not_compared():
    assert compare_resume(record(), record(config={"epochs": 99, "min_steps": 0})) == ([], [])


@pytest.mark.parametrize("key, value", [("stride", 16), ("top_down", True),
                                        ("anchor_sizes", [0.5]), ("anchor_ratios", [1.0]),
                                        ("head_channels", 8), ("optimizer", "sgd")])
def test_model_shaping_settings_and_the_optimizer_are_refused(key, value):
    refused, changed = compare_resume(record(), record(config={key: value}))
    assert whats(refused) == [key] and changed == []
    assert refused[0]["old"] == record()["config"][key] and refused[0]["new"] == value


def test_classes_are_refused_even_renamed_in_the_same_number():
    refused, _ = compare_resume(record(), record(classes=["a", "c"]))
    assert refused == [{"what": "classes", "old": ["a", "b"], "new": ["a", "c"]}]
    assert describe_change(refused[0]) == 'classes: ["a", "b"] -> ["a", "c"]'


def test_seed_size_data_and_settings_are_changes_with_old_and_new():
    new = record(seed=3, data="/data/other", config={"size": 96, "backbone_lr": 0.5})
    refused, changed = compare_resume(record(), new)
    assert refused == []
    assert sorted(whats(changed)) == ["backbone_lr", "data", "seed", "size"]
    lines = {describe_change(c) for c in changed}
    assert "seed: 0 -> 3" in lines and "data: /data/voc -> /data/other" in lines
    assert f"size: {record()['config']['size']} -> 96" in lines


def test_images_added_removed_or_swapped_are_changes():
    def with_train(names, objects=1):
        return record(dataset=data_record(image_set(names, objects), image_set(["v"])))
    base = with_train(["x", "y", "z"])
    assert compare_resume(base, with_train(["z", "y", "x"])) == ([], [])     # reordered
    _, added = compare_resume(base, with_train(["x", "y", "z", "w"]))
    assert [(c["what"], c["old"], c["new"]) for c in added] == [
        ("train images", 3, 4), ("train objects", 3, 4)]
    _, swapped = compare_resume(base, with_train(["x", "y", "w"]))
    assert whats(swapped) == ["train image list"]
    assert "other images" in describe_change(swapped[0])
    _, boxes = compare_resume(base, with_train(["x", "y", "z"], objects=2))
    assert whats(boxes) == ["train objects"]
    no_val = record(dataset=data_record(image_set(["x", "y", "z"]), None))
    assert [(c["what"], c["old"], c["new"]) for c in compare_resume(base, no_val)[1]] == [
        ("val images", 1, None)]


def test_a_record_without_dataset_compares_what_it_has():
    old = record()
    del old["dataset"]
    refused, changed = compare_resume(old, record(seed=1))
    assert refused == [] and whats(changed) == ["seed"]


def voc(tmp_path, name="voc", num_train=6):
    root = rpn.write_voc(str(tmp_path / name), num_train=num_train, num_val=3, height=64,
                         width=64)
    for path in glob.glob(os.path.join(root, "ImageSets", "Main", "*_*.txt")):
        os.remove(path)             # the plain lists decide which images a split has
    return root


def train(data, out, *extra):
    """``rpn train`` of a tiny run of ``data`` into ``out``, then ``extra``."""
    return train_tiny(out, 1, extra, data, num_train=None)


@pytest.fixture(scope="module")
def voc_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    data = voc(base)
    assert train(data, base / "run") == 0
    return data, base / "run"


def resumable(voc_run, tmp_path):
    data, run = voc_run
    data_copy, run_copy = tmp_path / "voc", tmp_path / "run"
    shutil.copytree(data, data_copy)
    shutil.copytree(run, run_copy)
    # the copy of the data is the run's data
    config = json.load(open(run_copy / "config.json"))
    config["data"] = str(data_copy)
    (run_copy / "config.json").write_text(json.dumps(config))
    return data_copy, run_copy


def test_a_resume_with_nothing_changed_says_nothing(voc_run, tmp_path, capsys):
    data, run = resumable(voc_run, tmp_path)
    assert train(data, run, "--resume", "--epochs", "2") == 0
    assert warnings_of(capsys.readouterr().err) == []
    assert json.load(open(run / "metrics.json"))["changes"] == []


def test_images_added_and_removed_are_one_warning_and_recorded(voc_run, tmp_path, capsys):
    data, run = resumable(voc_run, tmp_path)
    listing = os.path.join(data, "ImageSets", "Main", "train.txt")
    names = open(listing).read().split()
    open(listing, "w").write("\n".join(names[:-2]) + "\n")          # two removed
    capsys.readouterr()
    assert train(data, run, "--resume", "--epochs", "2", "--seed", "4") == 0
    said = warnings_of(capsys.readouterr().err)
    assert len(said) == 1 and "continues from epoch 2" in said[0]
    assert "train images: 6 -> 4" in said[0] and "seed: 0 -> 4" in said[0]
    changes = json.load(open(run / "metrics.json"))["changes"]
    assert changes[0]["epoch"] == 2
    assert {"what": "seed", "old": 0, "new": 4} in changes[0]["changes"]
    saved = json.load(open(run / "config.json"))
    assert saved["seed"] == 4 and saved["dataset"]["train"]["images"] == 4
    state = json.load(open(os.path.join(rpn.latest_checkpoint(str(run / "checkpoint")),
                                        "state.json")))
    assert state["seed"] == 4                   # the seed given anew is the one used


def test_another_data_folder_and_size_are_warned(voc_run, tmp_path, capsys):
    data, run = resumable(voc_run, tmp_path)
    other = voc(tmp_path, "other", num_train=8)
    capsys.readouterr()
    assert train(other, run, "--resume", "--epochs", "2", "--size", "80") == 0
    said = warnings_of(capsys.readouterr().err)
    assert len(said) == 1
    assert f"data: {data} -> {other}" in said[0] and "size: 64 -> 80" in said[0]
    assert "train images: 6 -> 8" in said[0]


def test_renamed_classes_and_another_optimizer_are_refused_with_exit_2(voc_run, tmp_path,
                                                                       capsys):
    data, run = resumable(voc_run, tmp_path)
    before = sorted(os.listdir(run / "checkpoint"))
    config_before = (run / "config.json").read_text()
    capsys.readouterr()
    assert train(data, run, "--resume", "--epochs", "2", "--set", "optimizer=sgd") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer: adam -> sgd" in err[0], err
    for path in glob.glob(os.path.join(data, "Annotations", "*.xml")):
        text = open(path).read()
        open(path, "w").write(text.replace("<name>rectangle<", "<name>box<"))
    assert train(data, run, "--resume", "--epochs", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "classes:" in err[-1] and '"box"' in err[-1] and "rectangle" in err[-1]
    assert sorted(os.listdir(run / "checkpoint")) == before
    assert (run / "config.json").read_text() == config_before     # not rewritten


def test_an_old_run_folder_without_a_data_record_resumes_with_a_note(voc_run, tmp_path,
                                                                     capsys):
    data, run = resumable(voc_run, tmp_path)
    config = json.load(open(run / "config.json"))
    del config["dataset"], config["changes"]
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train(data, run, "--resume", "--epochs", "2") == 0
    said = warnings_of(capsys.readouterr().err)
    assert len(said) == 1 and "cannot be compared" in said[0]
    assert "dataset" in json.load(open(run / "config.json"))       # recorded from now on


def test_a_resume_with_another_backbone_is_refused(mobile_run, tmp_path, capsys):
    copy = copy_run(mobile_run, tmp_path, "run")
    assert train_tiny(copy, extra=["--resume", "--backbone", "resnet18_v2", "--set",
                                   "stride=16"]) == 2
    one_line_error(capsys, "backbone", "mobilenetv2_0.25 -> resnet18_v2")
