"""predict_rpn: the chapter's proposals, sorted, clipped, and at least
``min_size`` pixels."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL
from helpers.models import anchor_fn, small_model


def test_predict_rpn_returns_sorted_probabilities_and_clipped_boxes():
    net = small_model(SMALL, mx.cpu(), seed=0)
    backbone, head = net.backbone, net.head
    X = np.random.normal(size=(3, 3, 64, 64))
    preds = rpn.predict_rpn(backbone(X), head, anchor_fn(SMALL), 0.7)
    assert len(preds) == 3
    for scores, boxes in preds:
        s = scores.asnumpy()
        assert boxes.shape == (4, len(s)) and len(s) > 0
        assert (s >= 0).all() and (s <= 1).all() and (onp.diff(s) <= 0).all()
        b = boxes.asnumpy()
        assert b.min() >= 0 and b.max() <= 1
    # min_size is in pixels, as the proposal model's: 16 of 64 pixels wide
    few = rpn.predict_rpn(backbone(X), head, anchor_fn(SMALL), 0.7, post_nms_top_n=4,
                          min_size=16, image_sizes=[[64, 64]] * 3)
    for scores, boxes in few:
        b = boxes.asnumpy()
        assert 0 < len(scores) <= 4
        assert ((b[2] - b[0]) >= 0.25 - 1e-6).all() and ((b[3] - b[1]) >= 0.25 - 1e-6).all()
    with pytest.raises(ValueError, match="image_sizes"):
        rpn.predict_rpn(backbone(X), head, anchor_fn(SMALL), 0.7, min_size=16)
