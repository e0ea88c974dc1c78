"""COCO files: reading, bad entries listed in one error or skipped, classes,
crowds, and the box rule (boxes without area, boxes past the edge)."""
import json
import math
import os
import warnings

import numpy as onp
import pytest
from PIL import Image

import rpn
from conftest import caught
from helpers.files import make_coco
from rpn.data.coco import read_coco
from rpn.data.image_set import CROWD, EMPTY
from rpn.data.reports import describe_split


def _good():
    """Four images (one in a sub-folder, one without annotations or size,
    one with size 0), two categories whose id order differs from the list's."""
    return {
        "images": [
            {"id": 10, "file_name": "a.jpg", "height": 20, "width": 30},
            {"id": 11, "file_name": "sub/b.jpg", "height": 40, "width": 50},
            {"id": 12, "file_name": "c.jpg"},
            {"id": 13, "file_name": "d.jpg", "height": 0, "width": 0},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 2, "bbox": [0.5, 1.5, 10, 20]},
            {"id": 3, "image_id": 11, "category_id": 5, "bbox": [5, 5, 30, 30], "iscrowd": 1},
            {"id": 4, "image_id": 10, "category_id": 2, "bbox": [10, 0, 20, 20]},
            {"id": 5, "image_id": 13, "category_id": 5, "bbox": [100, 100, 10, 10]},
        ],
        "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


# classes None -> ("dog", "cat"): dog = 0, cat = 1
_EXPECTED = {
    10: [[1, 1, 2, 4, 6], [0, 10, 0, 30, 20]],
    11: [[0, 0.5, 1.5, 10.5, 21.5], [CROWD, 5, 5, 35, 35]],
    12: [],
    13: [[1, 100, 100, 110, 110]],
}


def _write(folder, data, name="instances.json"):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _labels(found):
    return {i: lab for i, lab in zip(found.ids, found.labels)}


def _assert_labels(found, expected):
    got = _labels(found)
    assert sorted(got) == sorted(expected)
    for image_id, rows in expected.items():
        assert got[image_id].dtype == onp.float32
        onp.testing.assert_array_equal(
            got[image_id], onp.array(rows, dtype="float32").reshape(-1, 5))


def test_reads_a_good_file(tmp_path):
    path = _write(tmp_path / "coco", _good())
    found = read_coco(path)
    assert found.classes == ("dog", "cat")
    assert found.ids == [10, 11, 12, 13]
    assert found.names == ["a.jpg", "sub/b.jpg", "c.jpg", "d.jpg"]
    assert found.sizes == [(20, 30), (40, 50), None, None]
    assert found.images == [os.path.join(str(tmp_path / "coco"), n) for n in found.names]
    _assert_labels(found, _EXPECTED)
    assert found.labels[2].shape == (0, 5)


def test_image_dir_given(tmp_path):
    path = _write(tmp_path / "ann", _good())
    found = read_coco(path, tmp_path / "pics")
    assert found.images[1] == os.path.join(str(tmp_path / "pics"), "sub/b.jpg")


def test_classes_by_name_and_crowd_of_dropped_class(tmp_path):
    path = _write(tmp_path, _good())
    found = read_coco(path, classes=["cat"])
    assert found.classes == ("cat",)
    _assert_labels(found, {10: [[0, 1, 2, 4, 6]], 11: [[CROWD, 5, 5, 35, 35]],
                           12: [], 13: [[0, 100, 100, 110, 110]]})
    found = read_coco(path, classes=("dog",))    # the cat crowd region goes too
    _assert_labels(found, {10: [[0, 10, 0, 30, 20]], 11: [[0, 0.5, 1.5, 10.5, 21.5]],
                           12: [], 13: []})
    found = read_coco(path, classes=("cat", "dog"))
    _assert_labels(found, {10: [[0, 1, 2, 4, 6], [1, 10, 0, 30, 20]],
                           11: [[1, 0.5, 1.5, 10.5, 21.5], [CROWD, 5, 5, 35, 35]],
                           12: [], 13: [[0, 100, 100, 110, 110]]})


def test_unknown_class_name(tmp_path):
    path = _write(tmp_path, _good())
    with pytest.raises(ValueError) as error:
        read_coco(path, classes=["cat", "horse"])
    message = str(error.value)
    assert path in message and "horse" in message
    assert "['dog', 'cat']" in message


def test_boxes_within_one_pixel_are_clipped(tmp_path):
    data = _good()
    data["annotations"] = [
        {"id": 1, "image_id": 10, "category_id": 5, "bbox": [-0.5, -1, 10, 5]},
        {"id": 2, "image_id": 10, "category_id": 5, "bbox": [25, 15, 5.8, 5.9]},
    ]
    found = read_coco(_write(tmp_path, data))
    _assert_labels(found, {10: [[1, 0, 0, 9.5, 4], [1, 25, 15, 30, 20]],
                           11: [], 12: [], 13: []})


# (change, text the error must show, indices of the images left out by skip_bad)
def _set(where, key, value):
    def change(data):
        section, index = where
        if value is _DELETE:
            del data[section][index][key]
        else:
            data[section][index][key] = value
    return change


_DELETE = object()


_BAD = {
    "image without id": (_set(("images", 0), "id", _DELETE), "no int id", {0}),
    "image id not int": (_set(("images", 0), "id", "10"), "no int id", {0}),
    "image without file_name": (_set(("images", 1), "file_name", _DELETE),
                                "no file_name", {1}),
    "image not an object": (lambda d: d["images"].__setitem__(1, 7), "not an object", {1}),
    "duplicate image id": (_set(("images", 3), "id", 10), "duplicate image id 10", {0, 3}),
    "annotation without id": (_set(("annotations", 0), "id", _DELETE),
                              "annotations[0]: no int id", {0}),
    "annotation without image_id": (_set(("annotations", 1), "image_id", _DELETE),
                                    "annotation 2: no int image_id", set()),
    "unknown image_id": (_set(("annotations", 1), "image_id", 99),
                         "annotation 2: image_id 99 names no image", set()),
    "annotation without category_id": (_set(("annotations", 0), "category_id", _DELETE),
                                       "annotation 1: unknown category_id None", {0}),
    "unknown category_id": (_set(("annotations", 0), "category_id", 7),
                            "annotation 1: unknown category_id 7", {0}),
    "annotation without bbox": (_set(("annotations", 1), "bbox", _DELETE),
                                "annotation 2: no bbox", {1}),
    "bbox of 3": (_set(("annotations", 0), "bbox", [1, 2, 3]), "not 4 finite", {0}),
    "bbox with text": (_set(("annotations", 0), "bbox", [1, 2, "3", 4]),
                       "not 4 finite", {0}),
    "bbox with NaN": (_set(("annotations", 0), "bbox", [1, 2, math.nan, 4]),
                      "not 4 finite", {0}),
    "bbox of 400 digits": (_set(("annotations", 0), "bbox", [1, 2, 10 ** 400, 4]),
                           "not 4 finite", {0}),
    "width of 400 digits": (_set(("images", 1), "width", 10 ** 400), "bad height/width",
                            {1}),
    "bbox outside": (_set(("annotations", 0), "bbox", [28, 2, 4, 4]),
                     "outside its 30x20 image (more than 1 pixel past its edge; --set "
                     "clip_boxes=true clips such boxes)", {0}),
    "bbox outside left": (_set(("annotations", 0), "bbox", [-1.5, 2, 4, 4]),
                          "outside its 30x20 image", {0}),
    "absolute name": (_set(("images", 1), "file_name", "/etc/passwd"), "refusing", {1}),
    "dotdot name": (_set(("images", 1), "file_name", "sub/../../x.jpg"), "refusing", {1}),
    "drive letter": (_set(("images", 1), "file_name", "C:x.jpg"), "refusing", {1}),
    "drive letter, slash": (_set(("images", 1), "file_name", "d:/x.jpg"), "refusing", {1}),
    "backslash name": (_set(("images", 1), "file_name", "sub\\b.jpg"), "refusing", {1}),
    "NUL name": (_set(("images", 1), "file_name", "b\x00.jpg"), "refusing", {1}),
}


def _with_second_problem(data):
    """A second bad entry, on image 2 (id 12), for every injection."""
    data["images"][2]["file_name"] = "../escape.jpg"


def _bad_file(tmp_path, kind):
    """The COCO file of the injection ``kind`` and the second bad entry:
    ``(path, the words its error names, the bad image ids, its data)``."""
    change, text, bad = _BAD[kind]
    data = _good()
    change(data)
    _with_second_problem(data)
    return _write(tmp_path, data), text, bad, data


@pytest.mark.parametrize("kind", sorted(_BAD))
def test_bad_entries_listed_in_one_error(tmp_path, kind):
    path, text, _, _ = _bad_file(tmp_path, kind)
    with pytest.raises(ValueError) as error:
        read_coco(path)
    message = str(error.value)
    assert message.startswith(path)
    assert text in message
    assert "'../escape.jpg'" in message
    assert "skip_bad" in message


@pytest.mark.parametrize("kind", sorted(_BAD))
def test_skip_bad_leaves_out_exactly_the_bad_images(tmp_path, kind):
    path, text, bad, data = _bad_file(tmp_path, kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = read_coco(path, skip_bad=True)
    ours = [w for w in caught if path in str(w.message)]
    assert len(ours) == 1 and text in str(ours[0].message)
    kept = [k for k in range(4) if k not in bad | {2}]
    assert found.names == [_good()["images"][k]["file_name"] for k in kept]
    good_ids = {_good()["images"][k]["id"] for k in kept}
    assert set(found.ids) == good_ids
    # the images kept keep their labels (less the annotations made bad)
    changed = {b["id"] for a, b in zip(data["annotations"], _good()["annotations"]) if a != b}
    for image_id in good_ids:
        rows = [r for r, a in zip(_EXPECTED_ROWS, _good()["annotations"])
                if a["image_id"] == image_id and a["id"] not in changed]
        label = _labels(found)[image_id]
        assert sorted(map(tuple, label.tolist())) == sorted(rows)


_EXPECTED_ROWS = [(1, 1, 2, 4, 6), (0, 0.5, 1.5, 10.5, 21.5), (CROWD, 5, 5, 35, 35),
                  (0, 10, 0, 30, 20), (1, 100, 100, 110, 110)]


def test_more_than_50_problems_are_counted(tmp_path):
    data = {"images": [{"id": i, "file_name": f"../{i}.jpg"} for i in range(60)],
            "annotations": [], "categories": []}
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as error:
        read_coco(path)
    message = str(error.value)
    assert "60 bad entries" in message and "... and 10 more" in message
    assert "'../49.jpg'" in message and "'../50.jpg'" not in message


def test_links_inside_the_image_folder_are_followed_names_that_climb_out_refused(tmp_path):
    pics, raw = tmp_path / "pics", tmp_path / "raw"
    (pics / "inner").mkdir(parents=True)
    raw.mkdir()
    (raw / "x.jpg").write_bytes(b"x")
    (pics / "real.jpg").write_bytes(b"x")
    os.symlink(raw / "x.jpg", pics / "link.jpg")             # ln -s /data/raw/x.jpg images/
    os.symlink(raw, pics / "linkdir")
    os.symlink(pics / "real.jpg", pics / "inner" / "ok.jpg")
    names = ["link.jpg", "linkdir/x.jpg", "inner/ok.jpg", "real.jpg"]
    data = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
            "annotations": [], "categories": []}
    path = _write(tmp_path, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = read_coco(path, pics)
    assert found.names == names
    assert found.images[0] == os.path.join(str(pics), "link.jpg")
    for name in ("../raw/x.jpg", str(raw / "x.jpg"), "inner/../../raw/x.jpg"):
        data["images"][0]["file_name"] = name
        with pytest.raises(ValueError, match="refusing file_name") as error:
            read_coco(_write(tmp_path, data), pics)
        assert repr(name) in str(error.value)


def test_file_over_max_bytes_refused_without_parsing(tmp_path, monkeypatch):
    path = _write(tmp_path, _good())
    size = os.path.getsize(path)
    assert read_coco(path, max_bytes=size).ids == [10, 11, 12, 13]

    def no_parsing(*args, **kwargs):
        raise AssertionError("json.loads called")
    monkeypatch.setattr(json, "loads", no_parsing)
    with pytest.raises(ValueError) as error:
        read_coco(path, max_bytes=size - 1)
    assert path in str(error.value) and "max_bytes" in str(error.value)


def test_not_json_and_not_utf8_named(tmp_path):
    path = str(tmp_path / "broken.json")
    with open(path, "w") as f:
        f.write('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(ValueError, match="not JSON") as error:
        read_coco(path)
    assert path in str(error.value) and "line 2" in str(error.value)
    raw = b'{"images": [], "annotations": [], "categories": ["\xff"]}'
    with open(path, "wb") as f:
        f.write(raw)
    with pytest.raises(ValueError, match="not UTF-8") as error:
        read_coco(path)
    assert path in str(error.value) and f"byte {raw.find(0xFF)}" in str(error.value)


def test_missing_file_named(tmp_path):
    path = str(tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_coco(path)


@pytest.mark.parametrize("data, text", [
    ([], "top level is a list"),
    ({"images": [], "categories": []}, "'annotations' is missing"),
    ({"images": {}, "annotations": [], "categories": []}, "'images' is a dict"),
    ({"images": [], "annotations": [], "categories": [{"id": 1}]}, "categories[0]"),
])
def test_bad_top_level_is_an_error_even_with_skip_bad(tmp_path, data, text):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as error:
        read_coco(path, skip_bad=True)
    assert path in str(error.value) and text in str(error.value)


def _photos(folder, names, size=(30, 20)):
    for name in names:
        os.makedirs(os.path.dirname(os.path.join(folder, name)) or folder, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(os.path.join(folder, name))


def test_classes_from_the_data_come_from_the_categories_and_skip_bad_applies_to_reading(
        tmp_path):
    data = _good()
    data["annotations"][0]["bbox"] = [1, 2, "3", 4]        # image 10: a bad box
    path = _write(tmp_path, data)
    assert rpn.data.sources.data_classes(path) == ("dog", "cat")     # only the categories
    with pytest.raises(ValueError, match="not 4 finite"):
        rpn.data.sources.open_split(path, "all")
    with pytest.warns(UserWarning, match="not 4 finite"):
        found = rpn.data.sources.open_split(path, "all", skip_bad=True)
    assert found.ids == [11, 12, 13]
    assert found.left_out == (rpn.data.image_set.LeftOut("bad", 1, None,
                                                  "with bad annotations (--skip-bad)"),)


def test_boxes_of_an_image_without_a_stated_size_are_checked_before_training(tmp_path):
    data = _good()
    data["images"] = [{"id": 10, "file_name": "a.jpg"}, {"id": 12, "file_name": "c.jpg"}]
    data["annotations"] = [
        {"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 2, 3, 4]},
        {"id": 2, "image_id": 12, "category_id": 5, "bbox": [1, 2, 2000, 4]}]
    path = _write(tmp_path, data)
    _photos(str(tmp_path), ["a.jpg", "c.jpg"])
    found = read_coco(path)
    assert found.sizes == [None, None]
    with pytest.raises(rpn.data.sources.DataError, match="(?s)1 of 2 .*c.jpg: a box .*outside "
                       "the image's 30x20 pixels"):
        rpn.data.sources.check_split(found, num_workers=0, progress=False)
    with pytest.warns(UserWarning, match="c.jpg"):
        kept = rpn.data.sources.check_split(found, skip_bad=True, num_workers=0, progress=False)
    assert kept.ids == [10] and kept.sizes == [(20, 30)]


def test_a_missing_split_is_named_as_asked(tmp_path):
    for split in ("train", "valid"):
        _write(tmp_path / split, _good(), name="_annotations.coco.json")
    with pytest.raises(FileNotFoundError, match="'test'"):
        rpn.data.sources.open_split(str(tmp_path), "test")


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


def test_file_names_whose_stem_is_an_image_of_another_extension_are_said_once(tmp_path):
    # a public harbour-webcam set names its images 'x.xml' beside 'x.jpeg'
    path = make_coco(str(tmp_path), {f"cam{i}.jpeg": [[1, 1, 5, 5]] for i in range(6)})
    data = json.load(open(path))
    for entry in data["images"][:4]:
        entry["file_name"] = entry["file_name"].replace(".jpeg", ".xml")
    data["images"][5]["file_name"] = "gone.jpg"        # absent, and no file of its stem
    _write(str(tmp_path), data)
    with pytest.raises(ValueError) as error:
        read_coco(path)
    message = str(error.value)
    assert "4 bad entries" in message and "4 of 6 images name a file that does not exist" \
        in message and "images[0] 'cam0.xml' beside 'cam0.jpeg'" in message
    assert sum("does not exist" in line for line in message.splitlines()) == 1
    assert "gone.jpg" not in message            # found when the images are checked, as before
    found, said = caught(read_coco, path, skip_bad=True)
    assert found.names == ["cam4.jpeg", "gone.jpg"]          # nothing guessed
    assert found.left_out[0].images == 4 and "4 of 6 images name a file" in said[0]
    with pytest.raises(rpn.data.sources.DataError, match="gone.jpg: file not found"):
        rpn.data.sources.check_split(found, num_workers=0, progress=False)
