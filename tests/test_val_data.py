"""--val-data: validation data of its own, in any form --data takes; the
run keeps it, and evaluate on the run uses it."""
import json
import os

import pytest

import rpn
from rpn.cli import main

TINY = ["--size", "32", "--batch-size", "2", "--epochs", "1", "--quiet", "--workers", "0"]


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_a_voc_folder_validated_on_a_coco_file(tmp_path, capsys):
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=32, width=32)
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=5, num_val=1, height=32, width=32,
                          seed=3)
    val_file = os.path.join(coco, "annotations", "instances_train.json")
    val_images = os.path.join(coco, "train")
    out = str(tmp_path / "run")
    assert main(["train", "--data", voc, "--val-data", val_file, "--val-images", val_images,
                 "--out", out] + TINY) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 5        # all of the validation file
    assert "rpn train: all: 5 images" in captured.err
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["val_data"] == os.path.abspath(val_file)
    assert saved["val_images"] == os.path.abspath(val_images)
    assert saved["data"] == os.path.abspath(voc)
    # evaluate on the run defaults to its validation data
    assert main(["evaluate", "--checkpoint", out, "--json", "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 5
    # and a --data given explicitly wins
    assert main(["evaluate", "--checkpoint", out, "--data", voc, "--split", "val", "--json",
                 "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 2


def test_a_single_training_file_is_used_whole_when_validation_data_is_given(tmp_path, capsys):
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=6, num_val=3, height=32, width=32)
    train = os.path.join(coco, "annotations", "instances_train.json")
    val = os.path.join(coco, "annotations", "instances_val.json")
    final = rpn.fit(train, str(tmp_path / "run"), images=os.path.join(coco, "train"),
                    val_data=val, val_images=os.path.join(coco, "val"), size=32,
                    batch_size=2, epochs=1, quiet=True)
    err = capsys.readouterr().err
    assert "rpn train: all: 6 images" in err and "held out" not in err
    assert final["images"] == 3


def test_validation_data_keeps_the_training_classes_and_val_images_needs_val_data(tmp_path, capsys):
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=32, width=32)
    # the synthetic set as validation data keeps the training classes only
    final = rpn.fit(voc, str(tmp_path / "run"), classes=["rectangle"], val_data="synthetic",
                    size=32, batch_size=2, epochs=1, quiet=True,
                    settings={"num_train": 4, "num_val": 6})
    assert final["images"] == 6
    with pytest.raises(rpn.data.image_set.DataError, match="no class \\['unicorn'\\]"):
        rpn.fit("synthetic", str(tmp_path / "run2"), classes=["unicorn"], size=32,
                batch_size=2, epochs=1, quiet=True)
    assert main(["train", "--data", voc, "--val-images", str(tmp_path), "--out",
                 str(tmp_path / "r2")] + TINY) == 2
    assert "--val-images needs --val-data" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r2")


def test_predict_data_takes_all_of_a_single_file_or_a_split(tiny_run, tmp_path, capsys):
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=5, num_val=2, height=32, width=32)
    one = os.path.join(coco, "annotations", "instances_train.json")
    assert main(["predict", "--checkpoint", tiny_run, "--data", one, "--data-images",
                 os.path.join(coco, "train"), "--out", str(tmp_path / "p1")]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 5
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=3, num_val=2, height=32, width=32)
    assert main(["predict", "--checkpoint", tiny_run, "--data", voc, "--split", "train",
                 "--out", str(tmp_path / "p2")]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 3
    assert main(["predict", "--checkpoint", tiny_run, "--out", str(tmp_path / "p3")]) == 2
    assert "give image files" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", tiny_run, "--data", "synthetic", "--out",
                 str(tmp_path / "p4")]) == 2
    assert "drawn in memory" in capsys.readouterr().err
