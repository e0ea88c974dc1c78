"""Opening data by name, checking it, and making its loaders: every kind of
data, bad files found first (listed together, skipped on request, and
files that turn bad mid-run skipped and counted), a single annotation file
that means all of it unless a split is given, validation data of its own,
the synthetic set's classes."""
import json
import os
import re
import shutil

import numpy as onp
import pytest

import rpn
from conftest import QUIET, caught, last_json, train_tiny
from helpers.files import make_coco
from helpers.models import small_model, train_model
from rpn.cli import main
from rpn.data.image_set import CLIPPED
from rpn.data.sources import (DataError, check_split, open_split, open_validation,
                              resolve_split, train_split)


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
    assert train_tiny(out, data=voc, batch_size=2, num_train=None) == 1
    err = capsys.readouterr().err
    assert "train_00002.jpg" in err and "Traceback" not in err
    assert not (out / "checkpoint").exists()                   # nothing was trained
    assert train_tiny(out, 1, ["--skip-bad"], voc, batch_size=2, num_train=None) == 0
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
    assert train_tiny(out, data=voc, batch_size=2, num_train=None) == 0
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
    assert train_tiny(tmp_path / "r", data=voc, batch_size=2, num_train=None) == 0
    err = capsys.readouterr().err
    assert "training on 4 of 6 images" in err and "rpn train: 4 training images" in err


def test_a_missing_validation_list_is_named(voc, tmp_path, capsys):
    shutil.rmtree(os.path.join(voc, "ImageSets"))
    os.makedirs(os.path.join(voc, "ImageSets", "Main"))
    open(os.path.join(voc, "ImageSets", "Main", "train.txt"), "w").write(
        "".join(f"train_{i:05d}\n" for i in range(6)))
    assert train_tiny(tmp_path / "r", data=voc, batch_size=2, num_train=None) == 0
    assert "training without validation" in capsys.readouterr().err


def test_a_coco_folder_trains_evaluates_and_proposes(tmp_path, capsys):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=6, num_val=3, height=64, width=96)
    out = tmp_path / "run"
    assert train_tiny(out, data=root, batch_size=2, num_train=None) == 0
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
    assert train_tiny(out, data=root, batch_size=2, num_train=None) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    val = open_split(root, "val")
    objects = sum(int((label[:, 0] >= 0).sum()) for label in val.labels)
    assert final["objects"] == objects                        # crowds are not counted


def test_the_synthetic_set_keeps_only_the_classes_asked_for():
    every = open_split("synthetic", "val", synthetic=dict(size=64, num_train=4, num_val=8,
                                                          seed=0))
    some = open_split("synthetic", "val", classes=["ellipse"],
                      synthetic=dict(size=64, num_train=4, num_val=8, seed=0))
    assert some.classes == ("ellipse",)
    for all_rows, rows in zip(every.labels, some.labels):
        ellipses = all_rows[all_rows[:, 0] == rpn.SYNTHETIC_CLASSES.index("ellipse")]
        assert len(rows) == len(ellipses) and (rows[:, 0] == 0).all()
        onp.testing.assert_array_equal(rows[:, 1:], ellipses[:, 1:])
    with pytest.raises(DataError, match="no class \\['cat'\\]"):
        open_split("synthetic", "val", classes=["cat"])


def test_a_single_coco_file_means_all_of_it_unless_a_split_is_given(tmp_path):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=40, num_val=2, height=32, width=32)
    file, images = os.path.join(root, "annotations", "instances_train.json"), \
        os.path.join(root, "train")
    assert resolve_split(file) == "all"
    assert len(open_split(file, images=images).images) == 40
    val = open_split(file, "val", images=images)
    train = open_split(file, "train", images=images)
    assert len(val.images) + len(train.images) == 40 and 0 < len(val.images) < 40
    assert train.left_out[0].kind == "holdout" and train.left_out[0].images == len(val.images)
    # a folder holding only that file is the same
    one = tmp_path / "one"
    shutil.copytree(images, one / "images")
    shutil.copy(file, one / "annotations.json")
    assert resolve_split(str(one)) == "all" and len(open_split(str(one)).images) == 40
    # data with splits of its own: val
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=1, height=32, width=32)
    assert [resolve_split(d) for d in (voc, root, "synthetic")] == ["val"] * 3
    assert resolve_split(file, "train") == "train"


def test_evaluate_and_propose_on_a_40_image_coco_file_give_40_images(tmp_path, capsys):
    root = rpn.write_coco(str(tmp_path / "coco"), num_train=40, num_val=1, height=48, width=48)
    file, images = os.path.join(root, "annotations", "instances_train.json"), \
        os.path.join(root, "train")
    held = len(open_split(file, "val", images=images).images)
    run = str(tmp_path / "run")
    assert train_tiny(run, 1, ["--images", images], file, batch_size=2, num_train=None) == 0
    err = capsys.readouterr().err
    # training holds out a part of the one file and says so, with counts and what to do
    assert re.search(rf"rpn train: train: {40 - held} images, \d+ objects; left out: {held} "
                     r"images \(\d+ objects\) held out as 'val' \(a fixed 20% of .*"
                     r"instances_train.json, by file name\)\. To train on all of it, give "
                     "validation data of its own", err), err
    assert f"rpn train: val: {held} images" in err
    # the run's own data: its validation part
    assert main(["evaluate", "--checkpoint", run, "--json"] + QUIET) == 0
    assert last_json(capsys.readouterr().out)["images"] == held
    # a file named for evaluation: all of it
    assert main(["evaluate", "--checkpoint", run, "--data", file, "--images", images,
                 "--json"] + QUIET) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 40
    assert re.search(r"rpn evaluate: all: 40 images, \d+ objects\n", captured.err)
    out = str(tmp_path / "all.npz")
    assert main(["propose", "--checkpoint", run, "--data", file, "--images", images,
                 "--out", out, "--top-k", "5"] + QUIET) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["images"] == 40
    assert "rpn propose: all: 40 images" in captured.err
    proposals = rpn.load_proposals(out)
    assert len(proposals) == 40 and proposals.meta["split"] == "all"
    # --split says otherwise
    assert main(["propose", "--checkpoint", run, "--data", file, "--images", images,
                 "--split", "val", "--out", out, "--top-k", "5"] + QUIET) == 0
    assert last_json(capsys.readouterr().out)["images"] == held


def test_boxes_of_images_without_a_stated_size_meet_the_rule_when_checked(tmp_path):
    path = make_coco(str(tmp_path), {"a.jpg": [[1, 1, 5, 5]], "b.jpg": [[25, 2, 10, 5],
                                                                        [2, 2, 3, 3]]},
                     sizes=False)
    found = open_split(path)
    assert found.sizes == [None, None]
    with pytest.raises(DataError, match=r"b\.jpg: a box .* lies outside the image's 30x20 "
                       r"pixels .*clip_boxes=true"):
        check_split(found, num_workers=0, progress=False)
    checked, seen = caught(check_split, found, clip_boxes=True, num_workers=0,
                           progress=False)
    assert checked.sizes == [(20, 30), (20, 30)]
    onp.testing.assert_array_equal(checked.labels[1], [[0, 25, 2, 30, 7], [0, 2, 2, 5, 5]])
    assert len(seen) == 1 and "clipped 1 box of 1 image" in seen[0] and "b.jpg" in seen[0]
    assert [e.kind for e in checked.edits] == [CLIPPED]


def test_validation_data_of_its_own(tmp_path):
    coco = rpn.write_coco(str(tmp_path / "coco"), num_train=6, num_val=3, height=32, width=32)
    file = os.path.join(coco, "annotations", "instances_val.json")
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=32, width=32)
    classes = rpn.SYNTHETIC_CLASSES
    found, split = open_validation(voc, classes=classes)
    assert split == "val" and found.ids == ["val_00000", "val_00001"]
    found, split = open_validation(file, classes=classes,
                                   val_images=os.path.join(coco, "val"))
    assert split == "all" and len(found.images) == 3 and found.left_out == ()
    found, split = open_validation(coco, classes=classes)
    assert split == "val" and len(found.images) == 3
    with pytest.raises(DataError, match=r"synthetic set has no class \['cat'\]"):
        open_validation("synthetic", classes=("cat",))
    with pytest.raises(ValueError, match="unknown"):
        open_validation(file, classes=("cat",), val_images=os.path.join(coco, "val"))
    train = os.path.join(coco, "annotations", "instances_train.json")
    assert train_split(train) == "train" and train_split(train, val_data=voc) == "all"
    assert train_split(voc, val_data=file) == "train"


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
