"""Where COCO data lies: a split's file and image folder in COCO's own
layout (as it ships), Roboflow's and one file; and the synthetic set
written in COCO's layout."""
import json
import os
import re

import numpy as onp
import pytest
from PIL import Image

import rpn
from conftest import QUIET, last_json, train_tiny
from rpn.cli import main
from rpn.data.coco import find_coco_split, read_coco, write_coco
from rpn.data.synthetic import SYNTHETIC_CLASSES, SyntheticImages


def test_write_coco_round_trip_matches_synthetic_and_voc(tmp_path):
    options = dict(num_train=3, num_val=2, height=40, width=36, seed=5)
    root = write_coco(str(tmp_path / "coco"), **options)
    voc = rpn.write_voc(str(tmp_path / "voc"), **options)
    expected = {"train": SyntheticImages(3, 40, 36, seed=5),
                "val": SyntheticImages(2, 40, 36, seed=5, offset=3)}
    for split, images in expected.items():
        annotations, image_dir = find_coco_split(root, split)
        assert annotations == os.path.join(root, "annotations", f"instances_{split}.json")
        assert image_dir == os.path.join(root, split)
        found = read_coco(annotations, image_dir, classes=SYNTHETIC_CLASSES)
        assert read_coco(annotations, image_dir).classes == SYNTHETIC_CLASSES
        assert found.names == [f"{split}_{i:05d}.jpg" for i in range(len(images))]
        assert found.sizes == [(40, 36)] * len(images)
        assert len(set(found.ids)) == len(images)
        assert len(found.labels) == len(images.labels)
        for got, want in zip(found.labels, images.labels):
            assert got.dtype == onp.float32
            onp.testing.assert_array_equal(got, want)
        with Image.open(found.images[0]) as image:
            assert image.format == "JPEG" and image.size == (36, 40)
        paths, labels = rpn.list_voc_split(voc, split, SYNTHETIC_CLASSES)
        by_name = dict(zip(found.names, found.labels))
        assert sorted(by_name) == sorted(os.path.basename(p) for p in paths)
        for p, label in zip(paths, labels):
            onp.testing.assert_array_equal(by_name[os.path.basename(p)], label)
    train_ids = set(read_coco(*find_coco_split(root, "train")).ids)
    assert not train_ids & set(read_coco(*find_coco_split(root, "val")).ids)


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("{}")
    return path


def test_find_coco_layout(tmp_path):
    root = str(tmp_path)
    val = _touch(os.path.join(root, "annotations", "instances_val2017.json"))
    train = _touch(os.path.join(root, "annotations", "instances_train2017.json"))
    os.makedirs(os.path.join(root, "val2017"))
    os.makedirs(os.path.join(root, "images", "train2017"))
    assert find_coco_split(root, "val") == (val, os.path.join(root, "val2017"))
    assert find_coco_split(root, "train") == (train, os.path.join(root, "images", "train2017"))
    test = _touch(os.path.join(root, "annotations", "instances_test.json"))
    assert find_coco_split(root, "test") == (test, os.path.join(root, "images"))
    other = _touch(os.path.join(root, "annotations", "instances_val2014.json"))
    with pytest.raises(ValueError) as error:
        find_coco_split(root, "val")
    assert other in str(error.value) and val in str(error.value)


def test_find_coco_image_folder_missing(tmp_path):
    _touch(os.path.join(str(tmp_path), "annotations", "instances_val.json"))
    with pytest.raises(FileNotFoundError, match="no image folder"):
        find_coco_split(str(tmp_path), "val")


def test_find_roboflow_layout(tmp_path):
    root = str(tmp_path / "rf")
    train = _touch(os.path.join(root, "train", "_annotations.coco.json"))
    valid = _touch(os.path.join(root, "valid", "_annotations.coco.json"))
    assert find_coco_split(root, "train") == (train, os.path.dirname(train))
    assert find_coco_split(root, "val") == (valid, os.path.dirname(valid))
    assert find_coco_split(root, "valid") == (valid, os.path.dirname(valid))
    other = str(tmp_path / "rf2")
    val = _touch(os.path.join(other, "val", "_annotations.coco.json"))
    assert find_coco_split(other, "valid") == (val, os.path.dirname(val))
    _touch(os.path.join(other, "valid", "_annotations.coco.json"))
    with pytest.raises(ValueError, match="two matches"):
        find_coco_split(other, "val")


def test_find_single_file_layout(tmp_path):
    root = str(tmp_path / "one")
    only = _touch(os.path.join(root, "labels.json"))
    assert find_coco_split(root, "all") == (only, root)
    with pytest.raises(FileNotFoundError):
        find_coco_split(root, "train")
    second = _touch(os.path.join(root, "more.json"))
    with pytest.raises(ValueError) as error:
        find_coco_split(root, "all")
    assert only in str(error.value) and second in str(error.value)
    named = _touch(os.path.join(root, "annotations.json"))
    os.makedirs(os.path.join(root, "images"))
    assert find_coco_split(root, "all") == (named, os.path.join(root, "images"))


def test_find_nothing(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        find_coco_split(str(tmp_path), "train")
    message = str(error.value)
    assert "instances_train*.json" in message and "_annotations.coco.json" in message


def test_coco_as_it_ships_works_as_is(tmp_path, capsys):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=6, num_val=3, height=64, width=96)
    for split in ("train", "val"):
        os.rename(os.path.join(root, "annotations", f"instances_{split}.json"),
                  os.path.join(root, "annotations", f"instances_{split}2017.json"))
        os.rename(os.path.join(root, split), os.path.join(root, f"{split}2017"))
    for other in ("captions_train2017.json", "person_keypoints_val2017.json"):
        with open(os.path.join(root, "annotations", other), "w") as f:
            f.write("{}")                                    # shipped beside, not read
    run = str(tmp_path / "run")
    assert train_tiny(run, data=root, batch_size=2, num_train=None) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 3
    assert re.search(r"rpn train: train: 6 images, \d+ objects\n", captured.err)
    assert main(["evaluate", "--checkpoint", run, "--json"] + QUIET) == 0
    assert last_json(capsys.readouterr().out)["images"] == 3
    out = str(tmp_path / "val.npz")
    assert main(["propose", "--checkpoint", run, "--data", root, "--out", out] + QUIET) == 0
    shipped = json.load(open(os.path.join(root, "annotations", "instances_val2017.json")))
    assert sorted(rpn.load_proposals(out).arrays["image_ids"].tolist()) == \
        sorted(i["id"] for i in shipped["images"])
