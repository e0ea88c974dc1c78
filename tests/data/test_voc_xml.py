"""VOC annotation files: zero-based pixel rows, ``difficult`` as a keyword,
bad files named (and skipped on request), and the box rule: a box without
area drops its object, a box past the edge is refused or clipped."""
import os

import numpy as onp
import pytest

import rpn
from conftest import caught, train_tiny
from helpers.files import make_voc
from rpn.data.sources import open_split


def test_voc_labels_are_zero_based_pixels_and_difficult_is_a_keyword(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 2, 30, 40, 0), ("dog", 5, 5, 20, 20, 1),
                                     ("cow", 3, 3, 9, 9, 0)]})
    labels = rpn.read_voc_detection_labels(root, ["a"], ["cat", "dog"])
    onp.testing.assert_array_equal(labels[0], [[0, 0, 1, 29, 39], [1, 4, 4, 19, 19]])
    labels = rpn.read_voc_detection_labels(root, ["a"], ["cat", "dog"], keep_difficult=False)
    onp.testing.assert_array_equal(labels[0], [[0, 0, 1, 29, 39]])


@pytest.mark.parametrize("xml, match", [
    ("<annotation><object><name>cat</name>", "well-formed"),
    ("<annotation><object><name>cat</name></object></annotation>", "bndbox"),
    ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
     "<xmax>x</xmax><ymax>5</ymax></bndbox></object></annotation>", "not a number"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat"
     "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>5</ymax></bndbox>"
     "</object></annotation>", "outside"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "boom">]><annotation>&e;</annotation>',
     "safe"),
])
def test_bad_annotations_name_their_file(tmp_path, xml, match):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)], "b": [("cat", 1, 1, 9, 9, 0)]})
    with open(os.path.join(root, "Annotations", "b.xml"), "w") as f:
        f.write(xml)
    with pytest.raises(ValueError, match="1 bad annotation") as error:
        rpn.read_voc_detection_labels(root, ["a", "b"], ["cat"])
    assert "b.xml" in str(error.value) and match in str(error.value)
    with pytest.warns(UserWarning, match="skipping 1 bad annotation"):
        labels = rpn.read_voc_detection_labels(root, ["a", "b"], ["cat"], skip_bad=True)
    assert labels[1] is None and len(labels[0]) == 1


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
    assert train_tiny(out, 1, ["--skip-bad"], root, batch_size=2, num_train=None) == 0
    err = capsys.readouterr().err
    assert "train: 3 images, 18 objects; left out: 1 object whose box has no area" in err
    assert "whose box has no width or height" in err and "Traceback" not in err


def test_voc_boxes_past_the_edge_are_refused_or_clipped(tmp_path):
    root = make_voc(tmp_path / "voc", {"a": [("cat", 1, 1, 80, 20), ("cat", 2, 2, 9, 9)]})
    with pytest.raises(ValueError, match=r"(?s)a\.xml: object 'cat' box .* lies outside its "
                       r"64x48 image .*clip_boxes=true"):
        open_split(root, "train")
    found, seen = caught(open_split, root, "train", clip_boxes=True)
    onp.testing.assert_array_equal(found.labels[0], [[0, 0, 0, 64, 19], [0, 1, 1, 8, 8]])
    assert len(seen) == 1 and "clipped 1 box of 1 image" in seen[0]
    assert "object 1 'cat': box (1, 1, 80, 20) -> (1, 1, 65, 20)" in seen[0]
