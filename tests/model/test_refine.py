"""The refinement stage: RoIs sampled from the proposals, their targets
against a per-RoI reference, and the refined model trained whole and
exported as one graph."""
import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np

import rpn
from conftest import SMALL
from helpers.models import export_and_import, small_model
from helpers.references import random_boxes, ref_iou
from rpn.boxes import _decode
from rpn.model.loss import ProposalLoss
from rpn.model.refine import POSITIVE_IOU, REFINE_WEIGHTS, refine_targets, sample_rois


def test_sample_rois_keeps_the_best_half_and_never_padding():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, -1, -1, -1]])
    boxes = np.array(onp.arange(32, dtype="float32").reshape(1, 8, 4))
    mx.random.seed(0)
    rois, valid = sample_rois((scores, boxes), 4)
    firsts = rois.asnumpy()[0, :, 0].tolist()
    assert firsts[:2] == [0.0, 4.0]                      # the two best, in order
    assert set(firsts[2:]) <= {8.0, 12.0, 16.0}          # then drawn from the rest
    assert valid.asnumpy().tolist() == [[1, 1, 1, 1]]
    rois, valid = sample_rois((scores, boxes), 7)        # more than the real ones
    assert valid.asnumpy().sum() == 5


def test_refine_targets_against_a_per_roi_reference(rng):
    Y = onp.full((2, 3, 5), -1.0)
    Y[0, 0] = [0, 0.1, 0.1, 0.5, 0.5]
    Y[0, 1] = [1, 0.4, 0.4, 0.9, 0.9]
    Y[1, 0] = [2, 0.2, 0.2, 0.6, 0.8]
    Y[1, 1] = [rpn.CROWD, 0, 0, 1, 1]                    # a crowd region matches nothing
    rois = onp.concatenate([random_boxes(rng, 10)[None], random_boxes(rng, 10)[None]])
    rois[0, 0] = [0.12, 0.1, 0.5, 0.52]                  # a good fit to object 0
    valid = onp.ones((2, 10))
    objects, fit, targets, positive = (a.asnumpy() for a in refine_targets(
        np.array(rois, dtype="float32"), np.array(valid), np.array(Y, dtype="float32")))
    for b in range(2):
        for r in range(10):
            ious = [ref_iou(rois[b, r], y[1:]) if y[0] >= 0 else -1 for y in Y[b]]
            best = int(onp.argmax(ious))
            assert fit[b, r] == pytest.approx(max(ious[best], 0), abs=1e-5)
            assert bool(positive[b, r]) == (ious[best] >= POSITIVE_IOU)
            if positive[b, r]:
                onp.testing.assert_allclose(objects[b, r], Y[b, best, 1:], atol=1e-6)
                back = _decode(np.array(rois[b, r]), np.array(targets[b, r]),
                               REFINE_WEIGHTS).asnumpy()
                onp.testing.assert_allclose(back, Y[b, best, 1:], atol=1e-5)
            else:
                assert (targets[b, r] == 0).all()
    assert positive[0, 0] == 1


@pytest.fixture(scope="module")
def refiner_model():
    return small_model(SMALL.replace(refine=True, iou_branch=True, giou_weight=1.0), seed=2)


def test_the_refined_model_exports_whole(refiner_model, tmp_path):
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [48, 64]])
    eager = [a.asnumpy() for a in refiner_model(X, sizes)]
    assert eager[0].shape == (2, SMALL.model.post_nms_top_n_test)
    kept = eager[1][1][eager[0][1] >= 0]
    assert kept.min() >= 0 and kept.max() <= 1 and len(kept) > 0
    refiner_model.hybridize()
    hybrid = [a.asnumpy() for a in refiner_model(X, sizes)]
    loaded = export_and_import(refiner_model, str(tmp_path))
    for a, b, c in zip(eager, hybrid, loaded(X, sizes.astype("float32"))):
        onp.testing.assert_allclose(a, b, atol=1e-5)
        onp.testing.assert_allclose(a, c.asnumpy(), atol=1e-5)


def test_the_refinement_stage_trains_with_the_backbone(refiner_model):
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.6, 0.6]], [[2, 0.2, 0.3, 0.9, 0.8]]])
    loss_fn = ProposalLoss.from_settings(refiner_model.settings)
    with autograd.record():
        out = refiner_model.training_outputs(X, sizes, Y, proposals=True)
        loss = loss_fn(out).sum()
    loss.backward()
    R = SMALL.model.refine_rois
    assert out.refine.box_preds.shape == (2 * R, 4) and out.refine.valid.shape == (2 * R,)
    assert out.quality_preds.shape == out.cls_labels.shape
    N = 8 * 12 * SMALL.model.num_anchors                 # anchors of a 64 x 96 canvas
    assert out.proposals.scores.shape == (2, min(N, SMALL.model.post_nms_top_n_train))
    assert math.isfinite(float(loss))
    for part in ("refine", "backbone"):
        grads = [abs(p.grad().asnumpy()).sum() for p in
                 refiner_model.parts()[part].collect_params().values() if p.grad_req != "null"]
        assert sum(grads) > 0, part
    assert sorted(refiner_model.parts()) == ["backbone", "output", "refine"]
