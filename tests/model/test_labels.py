"""The labeler: the anchors of a padded batch labelled against each
image's objects as rpn_targets labels them in the canvas frame, the same
on the host and on the device, and independent of the padding."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL
from helpers.models import small_model
from helpers.references import random_boxes
from rpn.model.labels import AnchorLabeler

M = SMALL.model


@pytest.fixture(scope="module")
def model():
    return small_model()


def padded_case(rng):
    """Two images, 64 x 96 and 40 x 56 pixels, in a 64 x 96 canvas (an 8 x
    12 map at stride 8), with objects in each image's own frame (a crowd
    region in the second) and a row of padding."""
    Y = onp.full((2, 4, 5), -1.0, dtype="float32")
    Y[0, :3, 1:] = random_boxes(rng, 3)
    Y[0, :3, 0] = [0, 1, 2]
    Y[1, :2, 1:] = random_boxes(rng, 2)
    Y[1, :2, 0] = [1, rpn.CROWD]
    sizes = onp.array([[64, 96], [40, 56]], dtype="float32")
    return Y, sizes, np.zeros((2, 2, 8, 12))


@pytest.mark.parametrize("allowed_border", [None, 0.0])
def test_labels_are_rpn_targets_of_the_canvas_frame_ground_truth(rng, allowed_border):
    settings = M.replace(allowed_border=allowed_border)
    Y, sizes, features = padded_case(rng)
    labeler = AnchorLabeler(settings)
    anchors = labeler.anchors(features)
    # by hand: x by width / W, y by height / H, in float32 as the labeler does
    scale = onp.ones((2, 1, 5), dtype="float32")
    scale[:, 0, [1, 3]] = (sizes[:, 1] / onp.float32(96))[:, None]
    scale[:, 0, [2, 4]] = (sizes[:, 0] / onp.float32(64))[:, None]
    canvas = Y * scale
    corners = anchors.asnumpy()
    cx, cy = (corners[0] + corners[2]) / 2, (corners[1] + corners[3]) / 2
    valid = onp.stack([(cx < w / 96) & (cy < h / 64) for h, w in sizes]).astype("float32")
    if allowed_border is not None:
        for b, (h, w) in enumerate(sizes):
            valid[b] *= ((corners[0] >= 0) & (corners[1] >= 0) & (corners[2] <= w / 96)
                         & (corners[3] <= h / 64))
    rule = dict(pos_iou=settings.pos_iou, neg_iou=settings.neg_iou,
                neg_pos_ratio=settings.neg_pos_ratio, crowd_ioa=settings.crowd_ioa,
                anchors_per_image=settings.anchors_per_image,
                positive_fraction=settings.positive_fraction)
    mx.random.seed(4)
    want = rpn.rpn_targets(np.array(canvas), anchors, valid=np.array(valid), **rule)
    mx.random.seed(4)
    got = labeler(np.array(Y), features, np.array(sizes))
    assert got[0].shape == (2 * anchors.shape[1],) and got[1].shape == (2 * anchors.shape[1], 4)
    onp.testing.assert_array_equal(got[0].asnumpy(), want[0].asnumpy())
    onp.testing.assert_allclose(got[1].asnumpy(), want[1].asnumpy(), rtol=1e-6, atol=1e-6)
    labels = got[0].asnumpy().reshape(2, -1)
    assert (labels > 0).any() and (labels[valid == 0] == rpn.IGNORE).all()
    onp.testing.assert_array_equal(labeler.valid(anchors, features, np.array(sizes)).asnumpy(),
                                   valid)


@pytest.mark.parametrize("seed", range(3))
def test_the_device_path_gives_the_host_paths_labels(rng, seed):
    Y, sizes, features = padded_case(onp.random.default_rng(seed))
    results = []
    for method in ("host", "device"):
        mx.random.seed(seed)
        labels, offsets = AnchorLabeler(M, method=method)(np.array(Y), features,
                                                          np.array(sizes))
        results.append((labels.asnumpy(), offsets.asnumpy()))
    (host_labels, host_offsets), (device_labels, device_offsets) = results
    assert (host_labels > 0).any()
    onp.testing.assert_array_equal(host_labels, device_labels)
    onp.testing.assert_array_equal(host_offsets, device_offsets)


def test_crowd_false_skips_the_crowd_pass():
    """An anchor covered by a crowd region is ignored; without the crowd
    pass the region is background and the anchor a negative candidate."""
    features = np.zeros((1, 2, 8, 8))
    labeler = AnchorLabeler(M.replace(neg_pos_ratio=None))
    Y = np.array([[[0, 0.6, 0.6, 0.95, 0.95], [rpn.CROWD, 0.0, 0.0, 0.5, 0.5]]])
    sizes = np.array([[64, 64]])
    with_crowd = labeler(Y, features, sizes)[0].asnumpy()
    without = labeler(Y, features, sizes, crowd=False)[0].asnumpy()
    covered = with_crowd != without
    assert covered.any()
    assert (with_crowd[covered] == rpn.IGNORE).all() and (without[covered] == rpn.NEGATIVE).all()


def test_labels_do_not_depend_on_padding(model):
    """An image alone and the same image padded into a larger canvas get
    the same labels for the anchors they share (IoU and offsets do not
    change from the image's frame to the canvas's)."""
    Y = np.array([[[0, 0.1, 0.2, 0.6, 0.9], [1, 0.5, 0.1, 0.95, 0.5]]])
    alone = model.targets(Y, np.zeros((1, 3, 64, 64)), np.array([[64, 64]]),
                          validate=True)
    padded = model.targets(Y, np.zeros((1, 3, 96, 128)), np.array([[64, 64]]))
    A = M.num_anchors
    # (64 / 8)^2 cells alone; in the padded canvas the same cells sit in the
    # first 8 rows and columns of a 12 x 16 grid
    a_cls = alone[0].asnumpy().reshape(8, 8, A)
    p_cls = padded[0].asnumpy().reshape(12, 16, A)[:8, :8]
    a_box = alone[1].asnumpy().reshape(8, 8, A, 4)
    p_box = padded[1].asnumpy().reshape(12, 16, A, 4)[:8, :8]
    positive = a_cls > 0
    assert positive.any()
    onp.testing.assert_array_equal(positive, p_cls > 0)
    onp.testing.assert_allclose(a_box[positive], p_box[positive], rtol=1e-4, atol=1e-4)
    # padding anchors are ignored
    assert (padded[0].asnumpy().reshape(12, 16, A)[8:] == rpn.IGNORE).all()
