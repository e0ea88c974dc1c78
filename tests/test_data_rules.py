"""Data as users hold it (issue 19): a COCO file named for evaluation or
proposals means all of it, COCO as it ships, boxes without area and boxes
past the edge, image folders made of links, validation data of its own,
and the counts every command states. Tiny VOC and COCO folders are made in
each test."""
import json
import os
import re
import shutil
import warnings

import numpy as onp
import pytest
from PIL import Image

import rpn
from rpn.cli import main
from rpn.data.reports import describe_split, say_counts
from rpn.data.image_set import CLIPPED, EMPTY, Edit, ImageSet, LeftOut, place_box
from rpn.data.sources import (DataError, check_split, open_split, open_validation, resolve_split,
                         train_split)

TINY = ["--size", "64", "--batch-size", "2", "--epochs", "1", "--quiet", "--workers", "0"]
QUIET = ["--quiet", "--workers", "0"]


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def make_voc(root, objects, *, size=(64, 48), lists=None):
    """A VOC folder, one image an entry of ``objects``: name -> list of
    (class, xmin, ymin, xmax, ymax), 1-based pixels, as VOC writes them."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    width, height = size
    for name, objs in objects.items():
        Image.new("RGB", size, (90, 120, 30)).save(os.path.join(root, "JPEGImages",
                                                                name + ".jpg"))
        body = "".join(f"<object><name>{c}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                       f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                       for c, x0, y0, x1, y1 in objs)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(f"<annotation><size><width>{width}</width><height>{height}</height>"
                    f"</size>{body}</annotation>")
    for list_name, names in (lists or {"train": list(objects), "val": list(objects)}).items():
        with open(os.path.join(root, "ImageSets", "Main", list_name + ".txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    return str(root)


def make_coco(folder, entries, *, name="instances.json", sizes=True):
    """A COCO file and its images: ``entries`` file name -> list of bboxes
    ``[x, y, w, h]`` of the class "cell"; images 30 wide, 20 high."""
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for image_id, (file_name, boxes) in enumerate(entries.items(), 1):
        Image.new("RGB", (30, 20), (10, 20, 30)).save(os.path.join(folder, file_name))
        images.append(dict({"id": image_id, "file_name": file_name},
                           **({"height": 20, "width": 30} if sizes else {})))
        for bbox in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": bbox, "iscrowd": 0})
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "cell"}]}, f)
    return path


def caught(function, *args, **kwargs):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in seen]


# -- one file means all of it ------------------------------------------------------------

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
    assert main(["train", "--data", file, "--images", images, "--out", run] + TINY) == 0
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
    assert main(["train", "--data", root, "--out", run] + TINY) == 0
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


# -- boxes without area and boxes past the edge -----------------------------------------

def test_the_box_rule():
    assert place_box((1, 2, 5, 6), (20, 30)) == (None, (1, 2, 5, 6))
    assert place_box((-0.5, 2, 30.8, 6), (20, 30)) == (None, (0, 2, 30, 6))
    assert place_box((3, 2, 3, 6), (20, 30)) == (EMPTY, None)
    assert place_box((3, 6, 5, 2), None) == (EMPTY, None)
    assert place_box((1e8, 2, 1e8 + 1, 6), None) == (EMPTY, None)      # equal in float32
    assert place_box((1, 2, 35, 6), (20, 30)) == ("outside", None)
    assert place_box((1, 2, 35, 6), (20, 30), clip=True) == (CLIPPED, (1, 2, 30, 6))
    assert place_box((40, 2, 45, 6), (20, 30), clip=True) == (EMPTY, None)


def test_coco_boxes_without_area_drop_their_object_and_keep_the_image(tmp_path):
    path = make_coco(str(tmp_path), {"a.jpg": [[1, 2, 5, 5], [1, 2, 0, 4], [3, 3, 4, -1]],
                                     "b.jpg": [[2, 2, 5, 5]]})
    found, seen = caught(rpn.read_coco, path)
    assert found.names == ["a.jpg", "b.jpg"]
    onp.testing.assert_array_equal(found.labels[0], [[0, 1, 2, 6, 7]])
    assert len(seen) == 1
    assert seen[0].startswith(f"{path}: dropped 2 objects whose box has no width or height")
    assert "'a.jpg' (image 1), annotation 2: bbox [1, 2, 0, 4]" in seen[0]
    assert "'a.jpg' (image 1), annotation 3: bbox [3, 3, 4, -1]" in seen[0]
    assert [e.kind for e in found.edits] == [EMPTY, EMPTY]
    # skip_bad does not change it: it is about images that cannot be read
    again, _ = caught(rpn.read_coco, path, skip_bad=True)
    assert again.names == found.names and again.left_out == ()


def test_voc_boxes_without_area_drop_their_object_and_keep_the_photograph(tmp_path, capsys):
    # the blood-cell set: a photograph of 14 cells, one box of zero area
    cells = [("cell", 1 + 3 * k, 2, 4 + 3 * k, 9) for k in range(13)]
    root = make_voc(tmp_path / "voc", {"p1": cells + [("cell", 7, 5, 7, 20)],
                                       "p2": cells[:3], "p3": cells[:2], "p4": cells[:4]},
                    lists={"train": ["p1", "p2", "p3"], "val": ["p4"]})
    found, seen = caught(open_split, root, "train")
    assert found.ids == ["p1", "p2", "p3"] and len(found.labels[0]) == 13
    assert len(seen) == 1 and "dropped 1 object whose box has no width or height" in seen[0]
    xml = os.path.join(root, "Annotations", "p1.xml")
    assert f"{xml}: object 14 'cell': box (7, 5, 7, 20)" in seen[0]
    labels, seen = caught(rpn.read_voc_detection_labels, root, ["p1"], ["cell"])  # the chapter's
    assert len(labels[0]) == 13 and len(seen) == 1 and "object 14 'cell'" in seen[0]
    out = str(tmp_path / "run")
    assert main(["train", "--data", root, "--out", out, "--skip-bad"] + TINY) == 0
    err = capsys.readouterr().err
    assert "train: 3 images, 18 objects; left out: 1 object whose box has no area" in err
    assert "whose box has no width or height" in err and "Traceback" not in err


def test_coco_boxes_past_the_edge_are_refused_or_clipped(tmp_path):
    path = make_coco(str(tmp_path), {"a.jpg": [[25, 2, 10, 5], [-4, -3, 10, 10], [40, 2, 5, 5],
                                               [1, 1, 5, 5]]})
    with pytest.raises(ValueError, match=r"annotation 1: bbox \[25, 2, 10, 5\] lies outside "
                       r"its 30x20 image .*clip_boxes=true"):
        rpn.read_coco(path)
    found, seen = caught(rpn.read_coco, path, clip_boxes=True)
    onp.testing.assert_array_equal(found.labels[0], [[0, 25, 2, 30, 7], [0, 0, 0, 6, 7],
                                                     [0, 1, 1, 6, 6]])
    assert len(seen) == 2
    clipped = next(m for m in seen if ": clipped" in m)
    assert "clipped 2 boxes of 1 image that passed the image's edge by more than 1 pixel" \
        in clipped and "annotation 1: bbox [25, 2, 10, 5] -> [25, 2, 30, 7]" in clipped
    dropped = next(m for m in seen if ": dropped" in m)
    assert "annotation 3: bbox [40, 2, 5, 5] (nothing left once clipped" in dropped
    assert describe_split(found, "all") == (
        "all: 1 image, 3 objects; left out: 1 object whose box has no area; 2 boxes clipped "
        "to their image")


def test_voc_boxes_past_the_edge_are_refused_or_clipped(tmp_path):
    root = make_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 80, 20), ("cat", 2, 2, 9, 9)]})
    with pytest.raises(ValueError, match=r"(?s)a\.xml: object 'cat' box .* lies outside its "
                       r"64x48 image .*clip_boxes=true"):
        open_split(root, "train")
    found, seen = caught(open_split, root, "train", clip_boxes=True)
    onp.testing.assert_array_equal(found.labels[0], [[0, 0, 0, 64, 19], [0, 1, 1, 8, 8]])
    assert len(seen) == 1 and "clipped 1 box of 1 image" in seen[0]
    assert "object 1 'cat': box (1, 1, 80, 20) -> (1, 1, 65, 20)" in seen[0]


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


def test_clip_boxes_is_a_setting_the_run_keeps(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", {f"i{k}": [("cat", 2, 2, 30, 30), ("cat", 5, 5, 70, 20)]
                                       for k in range(4)})
    out = str(tmp_path / "run")
    assert main(["train", "--data", root, "--out", out] + TINY) == 1
    err = capsys.readouterr().err
    assert "lies outside its 64x48 image" in err and "clip_boxes=true" in err
    assert main(["train", "--data", root, "--out", out, "--set", "clip_boxes=1"] + TINY) == 2
    assert "setting clip_boxes: got 1; expected true or false" in capsys.readouterr().err
    assert main(["train", "--data", root, "--out", out, "--set", "clip_boxes=true"] + TINY) == 0
    err = capsys.readouterr().err
    assert "clipped 4 boxes of 4 images" in err
    assert "train: 4 images, 8 objects; 4 boxes clipped to their image" in err
    assert json.load(open(os.path.join(out, "config.json")))["config"]["clip_boxes"] is True
    assert main(["evaluate", "--checkpoint", out, "--json"] + QUIET) == 0     # as trained
    assert last_json(capsys.readouterr().out)["objects"] == 8


def test_a_run_saved_before_clip_boxes_existed_loads(tmp_path):
    config = rpn.config.PRESETS["default"].to_dict()
    del config["clip_boxes"]
    assert rpn.config.RunConfig.from_dict(config).clip_boxes is False


# -- links -------------------------------------------------------------------------------

def test_a_voc_folder_of_links_is_read_and_bad_links_are_named(tmp_path):
    raw = tmp_path / "raw"
    root = make_voc(tmp_path / "voc", {n: [("cat", 2, 2, 30, 30)] for n in "abcd"})
    folder = os.path.join(root, "JPEGImages")
    raw.mkdir()
    for name in "ab":            # ln -s /data/raw/x.jpg JPEGImages/
        os.rename(os.path.join(folder, name + ".jpg"), raw / (name + ".jpg"))
        os.symlink(raw / (name + ".jpg"), os.path.join(folder, name + ".jpg"))
    found = check_split(open_split(root, "train"), num_workers=0, progress=False)
    assert found.ids == list("abcd") and found.sizes == [(48, 64)] * 4
    os.remove(raw / "a.jpg")                                          # dangling
    os.remove(os.path.join(folder, "c.jpg"))
    os.symlink(os.path.join(folder, "c.jpg"), os.path.join(folder, "c.jpg"))   # a loop
    with pytest.raises(DataError) as error:
        check_split(open_split(root, "train"), num_workers=0, progress=False)
    message = str(error.value)
    assert "2 of 4 images cannot be used" in message
    assert f"a.jpg: a symbolic link to {raw / 'a.jpg'}, which does not exist (a dangling " \
           "link)" in message
    assert "c.jpg: a loop of symbolic links" in message
    kept, seen = caught(check_split, open_split(root, "train"), skip_bad=True,
                        num_workers=0, progress=False)
    assert kept.ids == ["b", "d"]
    assert kept.left_out == (LeftOut("unreadable", 2, 2, "that cannot be used (--skip-bad)"),)
    assert describe_split(kept, "train") == (
        "train: 2 images, 2 objects; left out: 2 images (2 objects) that cannot be used "
        "(--skip-bad)")
    for entry in ("../a", "C:a"):
        with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
            f.write(entry + "\n")
        with pytest.raises(ValueError, match="refusing image name"):
            open_split(root, "train")


def test_a_coco_image_folder_of_links_is_read_and_a_dangling_link_named(tmp_path):
    raw, images = tmp_path / "raw", tmp_path / "images"
    path = make_coco(str(raw), {"x.jpg": [[1, 1, 5, 5]], "y.jpg": [[1, 1, 5, 5]]})
    images.mkdir()
    for name in ("x.jpg", "y.jpg"):
        os.symlink(raw / name, images / name)
    found = check_split(open_split(path, images=str(images)), num_workers=0, progress=False)
    assert found.names == ["x.jpg", "y.jpg"]
    os.remove(raw / "y.jpg")
    with pytest.raises(DataError, match=r"y\.jpg: a symbolic link to .*raw/y\.jpg, which "
                       r"does not exist \(a dangling link\)"):
        check_split(open_split(path, images=str(images)), num_workers=0, progress=False)


# -- validation data of its own, and stated counts ----------------------------------------

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


def test_counts_say_what_is_used_and_what_was_left_out_and_why(tmp_path):
    labels = [onp.array([[0, 1, 1, 5, 5], [1, 2, 2, 6, 6], [rpn.CROWD, 0, 0, 9, 9]], "float32"),
              onp.zeros((0, 5), "float32"), onp.array([[0, 1, 1, 5, 5]], "float32")]
    found = ImageSet(["a", "b", "c"], labels, [1, 2, 3], ["a", "b", "c"], [None] * 3, ("x", "y"),
                     (Edit(0, EMPTY, "a: box"), Edit(2, EMPTY, "c: box"),
                      Edit(2, CLIPPED, "c: box")),
                     (LeftOut("unreadable", 2, 3, "that cannot be used (--skip-bad)"),
                      LeftOut("bad", 1, None, "with bad annotations (--skip-bad)")))
    assert describe_split(found, "val") == (
        "val: 3 images, 3 objects (and 1 crowd region); left out: 2 images (3 objects) that "
        "cannot be used (--skip-bad), 1 image with bad annotations (--skip-bad), 2 objects "
        "whose box has no area; 1 box clipped to their image")
    assert describe_split(found, "train", training=True).startswith(
        "train: 2 images, 3 objects (and 1 crowd region); left out: 1 image without an "
        "object of the classes, 2 images")
    path = tmp_path / "err.txt"
    with open(path, "w") as f:
        say_counts("rpn evaluate", found, "val", file=f)
        say_counts("rpn evaluate", None, "val", file=f)
    assert open(path).read() == f"rpn evaluate: {describe_split(found, 'val')}\n"
