"""The proposal model's loss: the localisation extras (a GIoU loss, an IoU
branch's binary cross entropy) against a plain reference."""
import numpy as onp
import pytest
from mxnet import np

from helpers.references import random_boxes, ref_giou, ref_iou
from rpn.boxes import OFFSET_WEIGHTS, _decode
from rpn.model.loss import ProposalLoss
from rpn.model.outputs import TrainingOutput


def _output(rng, anchors, batch=2, quality=False):
    n = anchors.shape[1] * batch
    labels = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.5, 0.3, 0.2])
    preds = rng.normal(scale=0.5, size=(n, 4))
    targets = rng.normal(scale=0.5, size=(n, 4)) * (labels > 0)[:, None]
    arrays = [rng.normal(size=(n, 2)), preds, labels, targets]
    out = [np.array(a, dtype="float32") for a in arrays] + [anchors, None]
    if quality:
        out.append(np.array(rng.normal(size=n), dtype="float32"))
    return TrainingOutput(*out)


def test_the_giou_and_iou_losses_against_numpy(rng):
    anchors = np.array(random_boxes(rng, 30).T, dtype="float32")           # (4, N)
    output = _output(rng, anchors, quality=True)
    base = float(ProposalLoss(lambd=1.0)(output).sum())
    loss = float(ProposalLoss(lambd=1.0, giou_weight=2.0, iou_weight=0.5)(output).sum())
    rows = onp.tile(anchors.asnumpy().T, (2, 1)).astype("float64")        # (M, 4)

    def decode(offsets):
        return _decode(np.array(rows), np.array(offsets), OFFSET_WEIGHTS).asnumpy()
    boxes, target = decode(output.box_preds.asnumpy()), decode(output.box_labels.asnumpy())
    positive = output.cls_labels.asnumpy() > 0
    giou = sum(1 - ref_giou(b, t) for b, t in zip(boxes[positive], target[positive]))
    q = output.quality_preds.asnumpy()[positive]
    fit = onp.array([ref_iou(b, t) for b, t in zip(boxes[positive], target[positive])])
    p = 1 / (1 + onp.exp(-q))
    bce = -(fit * onp.log(p) + (1 - fit) * onp.log(1 - p)).sum()
    want = base + (2.0 * giou + 0.5 * bce) / positive.sum()
    assert loss == pytest.approx(want, rel=1e-4)
