"""The chapter's loss and evaluation of anchor predictions, by hand."""
import numpy as onp
import pytest
from mxnet import np

import rpn


def test_loss_is_finite_without_positives_or_labels():
    loss = rpn.DetectionLoss(1)
    cls_preds, box_preds = np.random.normal(size=(6, 2)), np.random.normal(size=(6, 4))
    for labels in ([0, 0, -1, -1, 0, -1], [-1] * 6):
        value = loss(cls_preds, box_preds, np.array(labels), np.zeros((6, 4))).sum()
        assert onp.isfinite(float(value))
    ignored = loss(cls_preds, box_preds, np.array([-1] * 6), np.zeros((6, 4))).sum()
    assert float(ignored) == 0


def test_loss_by_hand():
    loss = rpn.DetectionLoss(2)
    cls_preds = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 1.0]])
    box_preds = np.array([[1.0, 1.0, 1.0, 1.0], [0.0] * 4, [9.0] * 4])
    labels, boxes = np.array([1, 0, -1]), np.zeros((3, 4))
    # cross entropy log(2) on the 2 labelled anchors / 2; L1 1 on the positive / 1
    assert float(loss(cls_preds, box_preds, labels, boxes).sum()) == pytest.approx(
        onp.log(2) + 2 * 1.0, rel=1e-5)
    correct, abs_err, labelled, positive = rpn.DetectionEvaluation()(
        cls_preds, box_preds, labels, boxes)
    assert (float(labelled), float(positive), float(abs_err)) == (2, 1, 1)
