"""The embedded synthetic set: deterministic, within its specification, and
the same written as a VOC folder."""
import os

import numpy as onp

import rpn


def test_voc_and_in_memory_synthetic_sets_agree(tmp_path):
    root = rpn.write_voc(str(tmp_path), num_train=3, num_val=1, height=40, width=40)
    images = rpn.SyntheticImages(3, 40, 40)
    paths, labels = rpn.list_voc_split(root, "train", rpn.SYNTHETIC_CLASSES)
    assert len(paths) == 3
    for path, got in zip(paths, labels):
        index = int(os.path.basename(path)[len("train_"):-len(".jpg")])
        onp.testing.assert_array_equal(got, images.labels[index])


def test_synthetic_set_is_deterministic_and_within_its_specification():
    a, b = rpn.SyntheticImages(40, 96, 96, seed=3), rpn.SyntheticImages(40, 96, 96, seed=3)
    onp.testing.assert_array_equal(a[5], b[5])
    assert not onp.array_equal(a[5], rpn.SyntheticImages(40, 96, 96, seed=4)[5])
    counts = [len(label) for label in a.labels]
    assert min(counts) >= 1 and max(counts) <= 6
    boxes = onp.concatenate(a.labels)[:, 1:]
    sides = onp.concatenate([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1]) / 96
    assert sides.min() >= 0.08 - 1 / 96 and sides.max() <= 0.8 + 1 / 96
    aspect = (boxes[:, 2] - boxes[:, 0] + 1) / (boxes[:, 3] - boxes[:, 1] + 1)
    assert aspect.min() >= 1 / 3 - 0.05 and aspect.max() <= 3 + 0.3
