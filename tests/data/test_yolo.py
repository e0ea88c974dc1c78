"""YOLO datasets: an export laid out as labelling services ship it trains,
evaluates and proposes with ``--data FOLDER`` alone; paths resolve as
Ultralytics resolves them; every fault of a label file is named with its
file and line, or left out with ``--skip-bad``."""
import json
import os

import numpy as onp
import pytest
from PIL import Image

import rpn
from conftest import QUIET, caught, last_json, train_tiny
from rpn.cli import main
from rpn.data.image_set import CLIPPED, EMPTY, DataError, LeftOut
from rpn.data.sources import data_classes, open_split, resolve_split
from rpn.data.yolo import find_yolo, label_path, open_yolo, read_yolo_split

NAMES = list(rpn.SYNTHETIC_CLASSES)


def yolo_rows(label, width, height):
    """Pixel rows ``[class, x0, y0, x1, y1]`` as YOLO lines."""
    return "".join(f"{int(c)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                   f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n"
                   for c, x0, y0, x1, y1 in onp.asarray(label).reshape(-1, 5).tolist())


def make_export(root, counts=(6, 3, 2), size=(64, 80), seed=1):
    """A YOLO export as labelling services ship it: ``data.yaml`` naming
    ``../train/images`` and so on beside ``train/``, ``valid/``, ``test/``,
    each with ``images/`` and ``labels/``. Returns the root and the pixel
    labels of each split, by file name."""
    height, width = size
    pictures = rpn.SyntheticImages(sum(counts), height, width, seed=seed)
    truth, start = {}, 0
    for split, count in zip(("train", "valid", "test"), counts):
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(root, split, sub), exist_ok=True)
        truth[split] = {}
        for i in range(start, start + count):
            Image.fromarray(pictures[i]).save(os.path.join(root, split, "images", f"im{i}.jpg"),
                                              quality=95)
            with open(os.path.join(root, split, "labels", f"im{i}.txt"), "w") as f:
                f.write(yolo_rows(pictures.labels[i], width, height))
            truth[split][f"{split}/images/im{i}.jpg"] = pictures.labels[i]
        start += count
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
                f"nc: {len(NAMES)}\nnames: {NAMES}\n\nroboflow:\n  workspace: w\n")
    return str(root), truth


def one_image(root, rows, name="a.jpg", size=(40, 50), folder="images"):
    """``root/<folder>/name`` (a grey image ``size`` (height, width)) and its
    label file of the text ``rows`` (``None``: no label file)."""
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    path = os.path.join(root, folder, name)
    Image.new("RGB", size[::-1], (90, 90, 90)).save(path)
    if rows is not None:
        label = label_path(path)
        os.makedirs(os.path.dirname(label), exist_ok=True)
        with open(label, "w") as f:
            f.write(rows)
    return path


def classes_layout(root, names=("cat", "dog")):
    """Label Studio's layout: classes.txt beside images/ and labels/."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    return str(root)


def assert_rows(found, expected):
    """``found``'s labels equal ``expected`` (name -> pixel rows) within a
    rounding of the 6 decimals a YOLO file holds."""
    assert sorted(found.names) == sorted(expected)
    for name, label in zip(found.names, found.labels):
        onp.testing.assert_allclose(label, onp.asarray(expected[name]).reshape(-1, 5),
                                    atol=1e-3)


def test_an_export_as_services_ship_it_trains_evaluates_and_proposes(tmp_path, capsys):
    root, truth = make_export(tmp_path / "export")
    out = tmp_path / "run"
    assert train_tiny(out, data=root, batch_size=2, num_train=None) == 0
    printed = capsys.readouterr()
    valid_objects = sum(len(label) for label in truth["valid"].values())
    assert last_json(printed.out)["images"] == 3
    assert last_json(printed.out)["objects"] == valid_objects
    assert "rpn train: train: 6 images" in printed.err
    assert main(["evaluate", "--checkpoint", str(out), "--json"] + QUIET) == 0
    result = last_json(capsys.readouterr().out)
    assert (result["images"], result["objects"]) == (3, valid_objects)
    proposals = tmp_path / "test.npz"
    assert main(["propose", "--checkpoint", str(out), "--data", root, "--split", "test",
                 "--top-k", "5", "--out", str(proposals)] + QUIET) == 0
    loaded = rpn.load_proposals(str(proposals))
    assert sorted(loaded.arrays["image_ids"].tolist()) == sorted(truth["test"])
    assert all(loaded[i]["image_size"] == (64, 80) for i in range(len(loaded)))


def test_a_yolo_dataset_is_validation_data_and_predict_data(tmp_path, capsys):
    root, truth = make_export(tmp_path / "export")
    out = tmp_path / "run"
    assert train_tiny(out, extra=["--val-data", os.path.join(root, "data.yaml")]) == 0
    printed = capsys.readouterr()
    assert last_json(printed.out)["images"] == 3
    assert "rpn train: val: 3 images" in printed.err
    assert main(["predict", "--checkpoint", str(out), "--data", root, "--split", "test",
                 "--top-k", "2", "--out", str(tmp_path / "pred")]) == 0
    assert last_json(capsys.readouterr().out)["images"] == 2
    with open(tmp_path / "pred" / "proposals.json") as f:
        paths = [image["path"] for image in json.load(f)["images"]]
    assert [os.path.relpath(p, os.path.realpath(root)) for p in paths] == sorted(truth["test"])


def test_splits_and_classes_come_from_the_yaml(tmp_path):
    root, truth = make_export(tmp_path / "export")
    assert find_yolo(root) == os.path.join(root, "data.yaml")
    assert data_classes(root) == tuple(NAMES) == open_yolo(root).names
    assert resolve_split(root) == "val"
    assert_rows(open_split(root, "train"), truth["train"])
    for split in ("val", "valid"):                  # both name the validation split
        assert_rows(open_split(os.path.join(root, "data.yaml"), split), truth["valid"])
    sizes = open_split(root, "test").sizes
    assert sizes == [(64, 80)] * 2                  # read from each image's header
    with pytest.raises(FileNotFoundError, match="'extra'"):
        open_split(root, "extra")


def test_paths_resolve_as_ultralytics_resolves_them(tmp_path):
    # Ultralytics' own layout, images/train beside labels/train, with a path: key
    data = tmp_path / "elsewhere" / "set"
    first = one_image(str(data), "0 0.5 0.5 0.4 0.5\n", folder="images/train")
    one_image(str(data), "1 0.5 0.5 0.2 0.2\n", name="b.jpg", folder="images/val")
    assert label_path(first) == str(data / "labels" / "train" / "a.txt")
    yaml_dir = tmp_path / "configs"
    yaml_dir.mkdir()
    (yaml_dir / "mine.yaml").write_text("path: ../elsewhere/set\ntrain: images/train\n"
                                        "validation: [images/val]\nnames: {0: a, 1: b}\n")
    found = open_split(str(yaml_dir / "mine.yaml"), "train")
    assert found.names == ["images/train/a.jpg"] and found.classes == ("a", "b")
    assert_rows(found, {"images/train/a.jpg": [[0, 15, 10, 35, 30]]})
    assert open_split(str(yaml_dir / "mine.yaml"), "val").names == ["images/val/b.jpg"]
    # a path that exists is taken as it is; '../' is dropped only when it does not
    (data / "data.yaml").write_text("train: ../set/images/train\nval: ../images/val\nnc: 2\n")
    real = os.path.realpath(data)
    assert open_yolo(str(data)).splits == {"train": (os.path.join(real, "images", "train"),),
                                           "val": (os.path.join(real, "images", "val"),)}
    assert open_yolo(str(data)).names == ("class_0", "class_1")


def test_rows_polygons_empty_and_missing_label_files(tmp_path):
    root = classes_layout(tmp_path / "ls")
    one_image(root, "0 0.5 0.5 0.4 0.5\n\n1 0.1 0.2 0.3 0.2 0.2 0.6\n", name="a.jpg")
    one_image(root, "", name="b.jpg")               # an empty label file: no objects
    one_image(root, None, name="c.jpg")             # no label file: the same, said once
    one_image(root, None, name="d.jpg")
    found, said = caught(read_yolo_split, root, "all")
    assert found.names == ["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"]
    assert_rows(found, {"images/a.jpg": [[0, 15, 10, 35, 30], [1, 5, 8, 15, 24]],
                        "images/b.jpg": [], "images/c.jpg": [], "images/d.jpg": []})
    missing = [m for m in said if "no label file" in m]
    assert len(missing) == 1 and "2 of 4 images" in missing[0], said
    assert found.classes == ("cat", "dog") and not found.left_out


def test_the_classes_txt_layout_has_all_and_a_fixed_holdout(tmp_path):
    root = classes_layout(tmp_path / "ls")
    for i in range(10):
        one_image(root, "0 0.5 0.5 0.4 0.5\n", name=f"{i}.jpg")
    assert resolve_split(root) == "all"
    every = open_split(root, "all")
    train, val = open_split(root, "train"), open_split(root, "val")
    assert len(every.images) == 10 and 1 <= len(val.images) < 10
    assert sorted(train.names + val.names) == sorted(every.names)
    assert open_split(root, "valid").names == val.names
    (tmp_path / "ls" / "classes.txt").write_text("cat\n\ndog\n")
    with pytest.raises(DataError, match="classes.txt, line 2"):
        open_split(root, "all")


BAD_ROWS = [
    ("3 0.5 0.5 0.2 0.2", "class id '3'"),                 # past the 3 names
    ("-1 0.5 0.5 0.2 0.2", "class id '-1'"),
    ("1.5 0.5 0.5 0.2 0.2", "class id '1.5'"),
    ("0 345 250 80 60", "coordinate 345 is outside [0, 1]"),   # pixels, not fractions
    ("0 0.5 0.5 -0.2 0.2", "coordinate -0.2 is outside"),
    ("0 0.5 0.5 0.2 1.02", "coordinate 1.02 is outside"),       # more than a rounding
    ("0 0.5 0.5 0.2", "4 fields"),
    ("0 0.5 0.5 0.2 0.2 0.9", "6 fields"),
    ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.9", "8 fields"),       # half a point
    ("0 nan 0.5 0.2 0.2", "not a number: 'nan'"),
    ("0 0.5 0.5 1e999 0.2", "not a number: '1e999'"),
    ("cat 0.5 0.5 0.2 0.2", "not a number: 'cat'"),
]


@pytest.mark.parametrize("row, words", BAD_ROWS)
def test_a_bad_row_is_named_with_its_file_and_line_or_left_out(tmp_path, row, words):
    root = classes_layout(tmp_path / "ls", names=NAMES)
    one_image(root, "0 0.5 0.5 0.2 0.2\n", name="good.jpg")
    bad = one_image(root, f"1 0.5 0.5 0.2 0.2\n{row}\n", name="bad.jpg")
    with pytest.raises(DataError) as error:
        read_yolo_split(root, "all")
    message = str(error.value)
    assert f"{label_path(bad)}, line 2: " in message and words in message, message
    assert "1 of 2 images" in message and "--skip-bad" in message
    found, said = caught(read_yolo_split, root, "all", skip_bad=True)
    assert found.names == ["images/good.jpg"]
    assert found.left_out == (LeftOut("bad", 1, None, "with bad labels or images (--skip-bad)"),)
    assert any(words in m and "leaving out 1 of 2" in m for m in said), said


def test_every_bad_row_of_every_file_is_in_one_error(tmp_path):
    root = classes_layout(tmp_path / "ls", names=NAMES)
    first = one_image(root, "9 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 x\n", name="a.jpg")
    second = one_image(root, "0 2 0.5 0.2 0.2\n", name="b.jpg")
    with pytest.raises(DataError) as error:
        read_yolo_split(root, "all")
    message = str(error.value)
    for where in (f"{label_path(first)}, line 1", f"{label_path(first)}, line 2",
                  f"{label_path(second)}, line 1"):
        assert where in message
    assert "2 of 2 images cannot be used (3 problems)" in message


def test_coordinates_within_a_rounding_are_read_and_the_box_rule_applies(tmp_path):
    root = classes_layout(tmp_path / "ls", names=NAMES)
    # 50 x 40 pixels: a height of 1.005 is a rounding (0.1 pixel past the
    # edges, clipped), and so is a corner 0.125 pixel past the edge; a box of
    # no width is dropped; a box 5 pixels past the left edge is bad
    one_image(root, "0 0.9 0.5 0.205 0.2\n1 0.5 0.5 0 0.2\n2 0.5 0.5 0.2 1.005\n",
              name="a.jpg")
    one_image(root, "2 0.1 0.5 0.4 0.2\n", name="b.jpg")
    with pytest.raises(DataError, match="line 1: '2 0.1 0.5 0.4 0.2' lies more than 1 pixel "
                                        "outside its 50x40 image .*clip_boxes"):
        read_yolo_split(root, "all")
    found, said = caught(read_yolo_split, root, "all", clip_boxes=True)
    assert_rows(found, {"images/a.jpg": [[0, 39.875, 16, 50, 24], [2, 20, 0, 30, 40]],
                        "images/b.jpg": [[2, 0, 16, 15, 24]]})
    assert [edit.kind for edit in found.edits] == [EMPTY, CLIPPED]
    assert any("whose box has no width or height" in m and "a.txt, line 2" in m
               for m in said), said
    assert any("clipped 1 box" in m and "b.txt, line 1" in m for m in said), said


def test_an_image_that_cannot_be_read_is_listed_with_the_bad_files(tmp_path):
    root = classes_layout(tmp_path / "ls")
    one_image(root, "0 0.5 0.5 0.2 0.2\n", name="good.jpg")
    broken = os.path.join(root, "images", "broken.jpg")
    with open(broken, "wb") as f:
        f.write(b"<html>not an image</html>")
    os.symlink(os.path.join(root, "gone.jpg"), os.path.join(root, "images", "link.jpg"))
    with pytest.raises(DataError) as error:
        open_split(root, "all")
    message = str(error.value)
    assert f"{broken}: text (HTML" in message and "a dangling link" in message
    found, _ = caught(open_split, root, "all", skip_bad=True)
    assert found.names == ["images/good.jpg"]


def test_label_files_that_cannot_be_read_are_named_without_hanging(tmp_path):
    root = classes_layout(tmp_path / "ls")
    one_image(root, "0 0.5 0.5 0.2 0.2\n", name="good.jpg")
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    latin = label_path(one_image(root, None, name="latin.jpg"))
    with open(latin, "wb") as f:
        f.write(b"0 0.5 0.5 0.2 0.2 \xe9t\xe9\n")
    pipe = label_path(one_image(root, None, name="pipe.jpg"))
    os.mkfifo(pipe)                                 # opening it would wait for a writer
    link = label_path(one_image(root, None, name="link.jpg"))
    os.symlink(str(tmp_path / "gone.txt"), link)
    with pytest.raises(DataError) as error:
        read_yolo_split(root, "all")
    message = str(error.value)
    assert f"{latin}: not UTF-8 text" in message and f"{pipe}: not a regular file" in message
    assert f"{link}: a symbolic link to {tmp_path / 'gone.txt'}, which does not exist" \
        in message and "3 of 4 images" in message


def test_classes_chosen_by_name_are_renumbered(tmp_path):
    root = classes_layout(tmp_path / "ls", names=("cat", "dog", "cow"))
    one_image(root, "0 0.5 0.5 0.4 0.5\n2 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.1 0.1\n")
    found = open_split(root, "all", classes=["cow", "cat"])
    assert found.classes == ("cow", "cat")
    assert_rows(found, {"images/a.jpg": [[1, 15, 10, 35, 30], [0, 20, 16, 30, 24]]})
    with pytest.raises(DataError, match="unknown: \\['horse'\\]"):
        open_split(root, "all", classes=["horse"])


@pytest.mark.parametrize("text, words", [
    ("train: images\n", "no names:"),
    ("names: [a, b]\nnc: 3\ntrain: images\n", "has 2 names but nc: says 3"),
    ("names: [a, a]\ntrain: images\n", "['a'] twice"),
    ("names: {0: a, 2: b}\ntrain: images\n", "the ids 0 to 1"),
    ("names: [a]\n", "names no split"),
    ("names: [a]\ntrain: 12\n", "train: must be a folder"),
    ("names: [a]\ntrain: images\npath: nowhere\n", "path: 'nowhere' is not a folder"),
    ("- a\n- b\n", "got a list"),
    ("names: [a\n", "not YAML"),
])
def test_a_yaml_that_cannot_be_used_is_one_error_naming_it(tmp_path, text, words):
    os.makedirs(tmp_path / "images")
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DataError) as error:
        open_split(str(tmp_path), "train")
    assert str(tmp_path / "data.yaml") in str(error.value) and words in str(error.value)


def test_a_split_as_a_list_file_or_a_missing_folder_is_named(tmp_path, capsys):
    os.makedirs(tmp_path / "images")
    (tmp_path / "train.txt").write_text("./images/a.jpg\n")
    (tmp_path / "data.yaml").write_text("names: [a]\ntrain: train.txt\nval: gone/images\n")
    with pytest.raises(DataError, match="lists of image paths are not read"):
        open_split(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="split 'val'.*gone/images, does not exist"):
        open_split(str(tmp_path), "val")
    assert main(["train", "--data", str(tmp_path / "nothing.yaml"), "--out",
                 str(tmp_path / "run")]) == 2
    assert "a YOLO data.yaml" in capsys.readouterr().err
