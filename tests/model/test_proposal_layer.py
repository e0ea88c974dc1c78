"""The proposal layer: proposals ranked by the IoU branch as its formula
says, and box voting against a per-box reference."""
import mxnet as mx
import numpy as onp
from mxnet import np

from helpers.references import random_boxes, ref_iou
from rpn.boxes import OFFSET_WEIGHTS, _decode
from rpn.model.proposal_layer import ProposalRule, select_proposals


def test_quality_scores_rank_proposals_as_the_formula_says(rng):
    anchors = np.array(random_boxes(rng, 12).T, dtype="float32")
    logits = np.array(rng.normal(size=(12, 2)), dtype="float32")
    quality = np.array(rng.normal(size=12), dtype="float32")
    valid = np.ones((1, 12))
    out = select_proposals(mx.nd, anchors, logits, np.zeros((12, 4)), valid,
                           ProposalRule(1.0, None, None, quality_power=0.3),
                           quality=quality).asnumpy()[0]
    e = onp.exp(logits.asnumpy())
    prob = e[:, 1] / e.sum(1)
    fit = 1 / (1 + onp.exp(-quality.asnumpy()))
    want = onp.sort(prob ** 0.7 * fit ** 0.3)[::-1]
    onp.testing.assert_allclose(out[:, 0], want, rtol=1e-5)


def test_box_voting_against_a_per_box_reference(rng):
    anchors = np.array(random_boxes(rng, 40).T, dtype="float32")          # (4, N)
    logits = np.array(rng.normal(size=(80, 2)), dtype="float32")          # 2 images
    offsets = np.array(rng.normal(scale=0.3, size=(80, 4)), dtype="float32")
    valid = np.ones((2, 40))
    rule = ProposalRule(0.5, pre_nms_top_n=30, post_nms_top_n=20)
    plain = select_proposals(mx.nd, anchors, logits, offsets, valid, rule).asnumpy()
    voted = select_proposals(mx.nd, anchors, logits, offsets, valid, rule._replace(
        voting=0.6, voting_top_n=5, voting_candidates=25)).asnumpy()
    onp.testing.assert_array_equal(voted[..., 0], plain[..., 0])          # scores, ranks kept
    onp.testing.assert_array_equal(voted[:, 5:], plain[:, 5:])            # only the best 5
    e = onp.exp(logits.asnumpy())
    prob = (e[:, 1] / e.sum(1)).reshape(2, 40)
    boxes = onp.clip(_decode(np.array(onp.tile(anchors.asnumpy().T, (2, 1))), offsets,
                             OFFSET_WEIGHTS).asnumpy(), 0, 1).reshape(2, 40, 4)
    for b in range(2):
        best = onp.argsort(-prob[b], kind="stable")[:25]
        for k in range(5):
            if plain[b, k, 0] < 0:
                continue
            weights = onp.array([prob[b, j] if ref_iou(plain[b, k, 1:], boxes[b, j]) >= 0.6
                                 else 0.0 for j in best])
            want = (weights[:, None] * boxes[b, best]).sum(0) / weights.sum()
            onp.testing.assert_allclose(voted[b, k, 1:], want, atol=1e-5)
    assert not onp.allclose(voted[:, :5, 1:], plain[:, :5, 1:])          # it moved boxes
