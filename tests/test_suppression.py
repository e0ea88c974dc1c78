"""nms against a brute-force greedy reference."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from helpers.references import random_boxes, ref_iou


def ref_nms(scores, boxes, threshold):
    """Greedy NMS, one box at a time. boxes (N, 4)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(ref_iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_greedy_reference(seed, threshold):
    rng = onp.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    # clustered boxes, so that many overlap
    centres = random_boxes(rng, 5)[rng.integers(0, 5, size=n)]
    boxes = onp.clip(centres + rng.normal(0, 0.03, size=(n, 4)), 0, 1)
    boxes[:, 2:] = onp.maximum(boxes[:, 2:], boxes[:, :2] + 0.01)
    scores = rng.normal(size=n)                 # logits: negative ones too
    keep = rpn.nms(np.array(scores), np.array(boxes.T), threshold)
    assert keep.dtype == onp.int64
    assert keep.asnumpy().tolist() == ref_nms(scores, boxes, threshold)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_pairs_just_above_and_below_the_threshold(threshold):
    def pair_offset(v):   # two 0.5-wide boxes with IoU v: (0.5 - d) / (0.5 + d)
        return 0.5 * (1 - v) / (1 + v)
    boxes, scores = [], []
    for k, v in enumerate([threshold + 1e-3, threshold - 1e-3]):
        d, y = pair_offset(v), 0.5 * k
        boxes += [[0, y, 0.5, y + 0.4], [d, y, 0.5 + d, y + 0.4]]
        scores += [0.9 - 0.1 * k, 0.85 - 0.1 * k]
    boxes = onp.array(boxes)
    keep = rpn.nms(np.array(scores), np.array(boxes.T), threshold).asnumpy().tolist()
    assert keep == [0, 2, 3]          # the pair above is suppressed, not the one below


def test_nms_follows_context_and_handles_empty_input():
    scores = np.array([0.1, 0.9], ctx=mx.cpu(1))
    boxes = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], ctx=mx.cpu(1)).T
    keep = rpn.nms(scores, boxes, 0.5, use_numpy=True)
    assert keep.ctx == mx.cpu(1) and keep.asnumpy().tolist() == [1]
    assert rpn.nms(np.zeros((0,)), np.zeros((4, 0)), 0.5).shape == (0,)


@pytest.mark.parametrize("scores, boxes", [((3,), (3, 4)), ((3,), (4, 2)), ((3, 1), (4, 3))])
def test_nms_rejects_wrong_shapes(scores, boxes):
    with pytest.raises(ValueError, match=r"scores \(N,\) and boxes \(4, N\)"):
        rpn.nms(np.zeros(scores), np.zeros(boxes), 0.5)


def test_nms_rejects_nan_and_bad_threshold():
    boxes = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.4, 0.5]]).T
    with pytest.raises(ValueError, match="NaN"):
        rpn.nms(np.array([0.5, float("nan")]), boxes, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rpn.nms(np.array([0.5, 0.4]), boxes, 1.5)
