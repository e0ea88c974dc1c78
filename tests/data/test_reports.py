"""What the readers did to a split, in words: the counts every command
states, and what was left out and why."""
import numpy as onp

import rpn
from rpn.data.image_set import CLIPPED, EMPTY, Edit, ImageSet, LeftOut
from rpn.data.reports import describe_split, say_counts


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
