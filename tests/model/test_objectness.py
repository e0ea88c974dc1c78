"""Objectness from localisation quality (OLN): the centerness target
against a per-anchor reference, the sampling rule, the score, and the
export."""
import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np
from mxnet import ndarray as nd

import rpn
from conftest import SMALL
from helpers.models import assert_exports_the_same, small_model
from helpers.references import random_boxes, ref_iou
from rpn.model.objectness import centerness, centerness_targets
from rpn.model.proposal_layer import ProposalRule, select_proposals

OLN = SMALL.replace(objectness="centerness", cls_weight=0.0)


def _centerness(anchor, box):
    cx, cy = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
    l, r, t, b = cx - box[0], box[2] - cx, cy - box[1], box[3] - cy
    if min(l, r, t, b) <= 0:
        return 0.0
    return math.sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))


def test_centerness_against_a_per_anchor_reference(rng):
    anchors, boxes = random_boxes(rng, 200), random_boxes(rng, 200, min_size=0.1)
    got = centerness(np.array(anchors, dtype="float32"), np.array(boxes, dtype="float32"))
    want = [_centerness(a, b) for a, b in zip(anchors, boxes)]
    onp.testing.assert_allclose(got.asnumpy(), want, atol=1e-5)
    # the centre of a box has centerness 1, a corner 0
    box = np.array([0.2, 0.2, 0.6, 0.8])
    assert float(centerness(np.array([0.3, 0.4, 0.5, 0.6]), box)) == pytest.approx(1.0)
    assert float(centerness(np.array([0.0, 0.0, 0.4, 0.4]), box)) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_centerness_targets_follow_olns_sampling(seed):
    """Anchors of IoU >= 0.3 with an object are positives with their
    centre's centerness in the object they overlap most (at most
    ``samples`` of them); the rest of ``samples`` are anchors of IoU < 0.1
    at target 0; every other anchor has weight 0."""
    rng = onp.random.default_rng(seed)
    anchors = random_boxes(rng, 300, min_size=0.05)
    gt = onp.full((2, 4, 5), -1.0)
    for b in range(2):
        gt[b, :3, 1:] = random_boxes(rng, 3, min_size=0.1)
        gt[b, :3, 0] = 0
    samples = 40
    mx.random.seed(seed)
    targets, weights = centerness_targets(np.array(gt), np.array(anchors.T), samples=samples,
                                          method="host")
    targets, weights = targets.asnumpy().reshape(2, -1), weights.asnumpy().reshape(2, -1)
    for b in range(2):
        objects = gt[b][gt[b, :, 0] >= 0, 1:]
        ious = onp.array([[ref_iou(a, o) for o in objects] for a in anchors])   # (N, G)
        best = ious.max(axis=1)
        forced = set(ious.argmax(axis=0))                      # each object's best anchor
        chosen = onp.flatnonzero(weights[b] > 0)
        assert len(chosen) == min(samples, len(anchors))
        positive = [n for n in chosen if best[n] >= 0.3 - 1e-6 or n in forced]
        negative = [n for n in chosen if n not in positive]
        assert all(best[n] < 0.1 for n in negative)
        assert len(positive) == min(samples, sum(1 for n in range(len(anchors))
                                                 if best[n] >= 0.3 - 1e-6 or n in forced))
        for n in positive:
            box = objects[ious[n].argmax()]
            assert targets[b, n] == pytest.approx(_centerness(anchors[n], box), abs=1e-4)
        assert (targets[b, negative] == 0).all()
        assert (targets[b, weights[b] == 0] == 0).all()


def test_proposals_rank_by_the_centerness_alone(rng):
    anchors = np.array(random_boxes(rng, 12).T, dtype="float32")
    logits = np.array(rng.normal(size=(12, 2)), dtype="float32")
    quality = np.array(rng.normal(size=12), dtype="float32")
    out = select_proposals(nd, anchors, logits, np.zeros((12, 4)), np.ones((1, 12)),
                           ProposalRule(1.0, None, None, objectness="centerness"),
                           quality=quality).asnumpy()[0]
    want = onp.sort(1 / (1 + onp.exp(-quality.asnumpy())))[::-1]
    onp.testing.assert_allclose(out[:, 0], want, rtol=1e-5)


def test_the_open_world_model_trains_exports_and_proposes_the_same(tmp_path):
    model = small_model(OLN.replace(head_norm=True, lambd=0.0, giou_weight=1.0))
    X, sizes = np.random.normal(size=(2, 3, 64, 96)), np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.4, 0.5]], [[1, 0.5, 0.5, 0.9, 0.9]]])
    loss_fn = rpn.model.loss.ProposalLoss.from_settings(model.settings)
    with autograd.record():
        out = model.training_outputs(X, sizes, Y)
        loss = loss_fn(out).sum()
    loss.backward()
    targets, weights = out.centerness
    assert out.quality_preds.shape == targets.shape == out.cls_labels.shape
    assert float(weights.sum()) == 2 * OLN.model.centerness_samples and float(targets.max()) > 0
    grads = sum(abs(p.grad().asnumpy()).sum() for p in model.head.collect_params().values()
                if "conv3" in p.name)                       # the quality branch learns
    assert grads > 0 and math.isfinite(float(loss))
    eager = model(X, sizes)
    assert_exports_the_same(model, X, sizes, eager, str(tmp_path))


@pytest.mark.parametrize("extra", [{}, {"refine": True}], ids=["plain", "refine"])
def test_a_fresh_open_world_model_proposes_before_any_training(extra):
    # ranked by centerness the graph leaves the classifier out, whose shape a
    # first hybridized call could not infer: the model is built shaped
    model = rpn.RegionProposalNetwork.from_settings(OLN.replace(**extra).model,
                                                    [mx.cpu(0), mx.cpu(1)])
    assert not [p.name for p in model.collect_params().values() if p._deferred_init]
    model.hybridize(static_alloc=True)
    X = np.random.normal(size=(2, 3, 64, 96), ctx=mx.cpu(1))
    scores, boxes = model(X, np.array([[64, 96], [64, 64]], ctx=mx.cpu(1)))
    assert scores.shape[0] == boxes.shape[0] == 2 and boxes.ctx == mx.cpu(1)


def test_objectness_settings_are_checked():
    with pytest.raises(rpn.settings.SettingsError, match="objectness"):
        SMALL.replace(objectness="oln")
    with pytest.raises(rpn.settings.SettingsError, match="iou_branch"):
        SMALL.replace(objectness="centerness", iou_branch=True)
    with pytest.raises(rpn.settings.SettingsError, match="centerness_neg_iou"):
        SMALL.replace(centerness_pos_iou=0.2, centerness_neg_iou=0.3)
