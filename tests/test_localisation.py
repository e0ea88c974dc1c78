"""The localisation options of the proposal model: a GIoU loss, an IoU
branch that ranks proposals by how well they fit, and a refinement stage,
each against a plain reference."""
import math
import warnings

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

import rpn
from conftest import SMALL, random_boxes, ref_iou, small_model
from rpn.boxes import OFFSET_WEIGHTS, _decode, generalized_iou
from rpn.model.loss import ProposalLoss
from rpn.model.outputs import TrainingOutput
from rpn.model.proposal_layer import ProposalRule, select_proposals
from rpn.model.refine import POSITIVE_IOU, REFINE_WEIGHTS, refine_targets, sample_rois


def ref_giou(a, b):
    """GIoU of two corner boxes, written out (float64)."""
    hull = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = area(a) + area(b) - iw * ih
    return ref_iou(a, b) - (area(hull) - union) / area(hull)


def test_generalized_iou_against_a_per_box_reference(rng):
    a, b = random_boxes(rng, 40), random_boxes(rng, 40)
    got = generalized_iou(np.array(a), np.array(b)).asnumpy()
    want = [ref_giou(x, y) for x, y in zip(a, b)]
    onp.testing.assert_allclose(got, want, atol=1e-5)
    assert float(generalized_iou(np.array(a[:1]), np.array(a[:1]))[0]) == pytest.approx(1.0)
    far = generalized_iou(np.array([[0, 0, 0.1, 0.1]]), np.array([[0.8, 0.8, 0.9, 0.9]]))
    assert -1 < float(far[0]) < -0.9                       # disjoint and apart: near -1


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
    refiner_model.export(str(tmp_path / "rpn"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = gluon.SymbolBlock.imports(str(tmp_path / "rpn-symbol.json"),
                                           ["data0", "data1"], str(tmp_path / "rpn-0000.params"))
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


def test_a_head_that_does_not_match_the_settings_is_named():
    net = small_model(seed=1)
    with pytest.raises(ValueError, match="IoU branch"):
        rpn.RegionProposalNetwork(net.backbone, net.head, SMALL.model, iou_branch=True)


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
