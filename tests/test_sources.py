"""Opening data by name, checking every image before training, and a run
that survives its data: bad files found first, listed together, skipped
on request, and files that turn bad mid-run skipped and counted."""
import json
import os
import shutil

import numpy as onp
import pytest

import rpn
from conftest import small_model, train_model
from rpn.cli import main
from rpn.data.sources import DataError, check_split, open_split

TINY = ["--size", "64", "--batch-size", "2", "--epochs", "1", "--quiet", "--workers", "0"]


@pytest.fixture
def voc(tmp_path):
    return rpn.write_voc(str(tmp_path / "voc"), num_train=6, num_val=3, height=64, width=96)


def break_images(root, names, how=b"not an image"):
    for name in names:
        with open(os.path.join(root, "JPEGImages", name + ".jpg"), "wb") as f:
            f.write(how)


def test_open_split_reads_each_kind_of_data(voc):
    found = open_split(voc, "train")
    assert len(found.images) == 6 and set(found.classes) == set(rpn.SYNTHETIC_CLASSES)
    assert found.sizes[0] == (64, 96) and found.ids[0] == "train_00000"
    synthetic = open_split("synthetic", "val", synthetic=dict(size=48, num_train=4,
                                                              num_val=2, seed=0))
    assert len(synthetic.images) == 2 and synthetic.images[0].shape == (48, 48, 3)
    with pytest.raises(DataError, match="no such file or folder"):
        open_split("/nonexistent/data", "train")
    with pytest.raises(DataError, match="'train' and 'val'"):
        open_split("synthetic", "test")


def test_every_bad_image_is_listed_before_training(voc, capsys):
    break_images(voc, ["train_00001", "train_00004"])
    with pytest.raises(DataError, match="2 of 6 images cannot be used") as error:
        check_split(open_split(voc, "train"), progress=False)
    assert "train_00001.jpg" in str(error.value) and "train_00004.jpg" in str(error.value)
    with pytest.warns(UserWarning, match="leaving out 2 of 6"):
        kept = check_split(open_split(voc, "train"), skip_bad=True, progress=False)
    assert sorted(os.path.basename(p) for p in kept.images) == [
        "train_00000.jpg", "train_00002.jpg", "train_00003.jpg", "train_00005.jpg"]
    assert len(kept.labels) == len(kept.sizes) == len(kept.ids) == 4


def test_the_command_line_stops_before_training_or_skips_with_a_list(voc, tmp_path, capsys):
    break_images(voc, ["train_00002", "val_00001"])
    out = tmp_path / "run"
    assert main(["train", "--data", voc, "--out", str(out)] + TINY) == 1
    err = capsys.readouterr().err
    assert "train_00002.jpg" in err and "Traceback" not in err
    assert not (out / "checkpoint").exists()                   # nothing was trained
    assert main(["train", "--data", voc, "--out", str(out), "--skip-bad"] + TINY) == 0
    captured = capsys.readouterr()
    assert "train_00002.jpg" in captured.err and "val_00001.jpg" in captured.err
    final = json.loads(captured.out.strip().splitlines()[-1])
    assert final["images"] == 2


def test_an_image_size_that_disagrees_with_its_annotation_is_bad(voc):
    path = os.path.join(voc, "Annotations", "train_00003.xml")
    text = open(path).read().replace("<width>96</width>", "<width>90</width>")
    open(path, "w").write(text)
    with pytest.raises(DataError, match="train_00003"):
        check_split(open_split(voc, "train"), progress=False)


def test_a_file_that_turns_bad_during_training_is_skipped_and_counted(voc, tmp_path):
    found = check_split(open_split(voc, "train"), progress=False)
    break_images(voc, ["train_00003"])                         # after the check
    config = rpn.config.PRESETS["default"].replace(size=64, max_size=96, batch_size=2)
    loader = rpn.data.sources.make_loader(found, rpn.Resize.of(config.model), 2, train=True)
    history = train_model(small_model(config, seed=0), loader, epochs=2)
    assert [h["skipped_images"] for h in history] == [1, 1]
    assert all(onp.isfinite(h["loss"]) for h in history)


def test_an_empty_validation_split_trains_without_validation(voc, tmp_path, capsys):
    open(os.path.join(voc, "ImageSets", "Main", "val.txt"), "w").close()
    for name in os.listdir(os.path.join(voc, "ImageSets", "Main")):
        if name.endswith("_val.txt"):
            os.remove(os.path.join(voc, "ImageSets", "Main", name))
    out = tmp_path / "run"
    assert main(["train", "--data", voc, "--out", str(out)] + TINY) == 0
    captured = capsys.readouterr()
    assert "training without validation" in captured.err and captured.out == ""
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["final"] is None and len(metrics["history"]) == 1
    assert not (out / "recall_iou.png").exists()


def test_the_count_of_training_images_leaves_out_images_without_objects(voc, tmp_path, capsys):
    import re
    for name in ("train_00000", "train_00001"):
        path = os.path.join(voc, "Annotations", name + ".xml")
        text = open(path).read()
        open(path, "w").write(re.sub(r"(?s)<object>.*</object>", "", text))
    assert main(["train", "--data", voc, "--out", str(tmp_path / "r")] + TINY) == 0
    err = capsys.readouterr().err
    assert "training on 4 of 6 images" in err and "rpn train: 4 training images" in err


def test_a_missing_validation_list_is_named(voc, tmp_path, capsys):
    shutil.rmtree(os.path.join(voc, "ImageSets"))
    os.makedirs(os.path.join(voc, "ImageSets", "Main"))
    open(os.path.join(voc, "ImageSets", "Main", "train.txt"), "w").write(
        "".join(f"train_{i:05d}\n" for i in range(6)))
    assert main(["train", "--data", voc, "--out", str(tmp_path / "r")] + TINY) == 0
    assert "training without validation" in capsys.readouterr().err


def test_a_coco_folder_trains_evaluates_and_proposes(tmp_path, capsys):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=6, num_val=3, height=64, width=96)
    out = tmp_path / "run"
    assert main(["train", "--data", root, "--out", str(out)] + TINY) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["images"] == 3 and final["objects"] > 0
    proposals = tmp_path / "val.npz"
    assert main(["propose", "--checkpoint", str(out), "--data", root, "--split", "val",
                 "--out", str(proposals), "--top-k", "10", "--quiet", "--workers", "0"]) == 0
    loaded = rpn.load_proposals(str(proposals))
    ids = json.load(open(os.path.join(root, "annotations", "instances_val.json")))["images"]
    assert sorted(loaded.arrays["image_ids"].tolist()) == sorted(i["id"] for i in ids)


def test_a_single_coco_file_is_split_80_20_by_file_name(tmp_path):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=30, num_val=2, height=48, width=48)
    annotations = os.path.join(root, "annotations", "instances_train.json")
    images = os.path.join(root, "train")
    train = open_split(annotations, "train", images=images)
    val = open_split(annotations, "val", images=images)
    every = open_split(annotations, "all", images=images)
    assert len(every.images) == 30 and len(val.images) >= 1
    assert set(train.names) | set(val.names) == set(every.names)
    assert not set(train.names) & set(val.names)
    assert open_split(annotations, "val", images=images).names == val.names   # fixed
    tiny = rpn.write_coco(str(tmp_path / "tiny"), num_train=2, num_val=1, height=48, width=48)
    file = os.path.join(tiny, "annotations", "instances_train.json")
    small = [open_split(file, s, images=os.path.join(tiny, "train")).names
             for s in ("train", "val")]
    assert len(small[0]) == len(small[1]) == 1 and set(small[0]) != set(small[1])


def test_crowd_regions_reach_the_labels_and_are_not_recalled(tmp_path, capsys):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=4, num_val=2, height=64, width=64)
    for split in ("train", "val"):
        path = os.path.join(root, "annotations", f"instances_{split}.json")
        data = json.load(open(path))
        data["annotations"][0]["iscrowd"] = 1                   # one region to ignore
        json.dump(data, open(path, "w"))
    found = open_split(root, "train")
    assert any((label[:, 0] == rpn.CROWD).any() for label in found.labels)
    out = tmp_path / "run"
    assert main(["train", "--data", root, "--out", str(out)] + TINY) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    val = open_split(root, "val")
    objects = sum(int((label[:, 0] >= 0).sum()) for label in val.labels)
    assert final["objects"] == objects                        # crowds are not counted
