"""label_anchors / rpn_targets against a brute-force reference, one test per
defect of the chapter's draft, images without objects, ties, bad input.
(The host path against the device path: tests/ops/test_host_labels.py.)"""
import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from helpers.references import random_case, ref_iou


def ref_label_image(gt, anchors, pos_iou, neg_iou):
    """The Faster R-CNN rule for one image, per anchor and per object.
    gt (G, 5), anchors (N, 4), float64. Returns class labels with -1 for
    anything not positive, the negative-candidate mask, and offsets."""
    objects = [row for row in gt if row[0] >= 0]
    n = len(anchors)
    best_iou, best_obj = [-1.0] * n, [None] * n
    for i, a in enumerate(anchors):
        for obj in objects:
            v = ref_iou(obj[1:], a)
            if v > best_iou[i]:
                best_iou[i], best_obj[i] = v, obj
    positive = [v > pos_iou for v in best_iou]
    for obj in objects:
        ious = [ref_iou(obj[1:], a) for a in anchors]
        top = max(ious)
        if top > 0:
            for i, v in enumerate(ious):
                if v == top:
                    positive[i] = True
    labels = onp.full(n, -1.0)
    candidates = onp.zeros(n, bool)
    offsets = onp.zeros((n, 4))
    for i, a in enumerate(anchors):
        if positive[i]:
            obj = best_obj[i]
            labels[i] = obj[0] + 1
            aw, ah = a[2] - a[0], a[3] - a[1]
            ax, ay = a[0] + aw / 2, a[1] + ah / 2
            gw, gh = obj[3] - obj[1], obj[4] - obj[2]
            gx, gy = obj[1] + gw / 2, obj[2] + gh / 2
            offsets[i] = [10 * (gx - ax) / aw, 10 * (gy - ay) / ah,
                          5 * math.log(gw / aw), 5 * math.log(gh / ah)]
        elif best_iou[i] < neg_iou:
            candidates[i] = True
    return labels, candidates, offsets


@pytest.mark.parametrize("seed", range(60))
def test_label_anchors_matches_brute_force(seed):
    rng = onp.random.default_rng(seed)
    gt, anchors = random_case(rng)
    labels, offsets = rpn.label_anchors(np.array(gt), np.array(anchors.T),
                                        0.7, 0.3, None)
    labels, offsets = labels.asnumpy(), offsets.asnumpy()
    for b in range(gt.shape[0]):
        want, candidates, want_offsets = ref_label_image(gt[b], anchors, 0.7, 0.3)
        want = onp.where(candidates, 0.0, want)   # ratio None keeps every candidate
        onp.testing.assert_array_equal(labels[b], want)
        onp.testing.assert_allclose(offsets[b], want_offsets, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(20))
def test_negative_sampling_quota(seed):
    rng = onp.random.default_rng(100 + seed)
    gt, anchors = random_case(rng, anchors=120)
    ratio = 2
    labels, _ = rpn.label_anchors(np.array(gt), np.array(anchors.T), 0.7, 0.3, ratio)
    labels = labels.asnumpy()
    for b in range(gt.shape[0]):
        want, candidates, _ = ref_label_image(gt[b], anchors, 0.7, 0.3)
        positives = want > 0
        onp.testing.assert_array_equal(labels[b][positives], want[positives])
        negatives = labels[b] == rpn.NEGATIVE
        assert not (negatives & ~candidates).any()
        quota = ratio * max(positives.sum(), 1)
        assert negatives.sum() == min(candidates.sum(), quota)
        assert ((labels[b] == rpn.IGNORE) == (~positives & ~negatives)).all()


def test_defect1_offsets_come_from_the_most_overlapping_object():
    anchors = np.array([[0.1, 0.1, 0.5, 0.5]]).T
    # both objects have IoU > 0.7 with the anchor; the first one is exact.
    gt = np.array([[[0, 0.1, 0.1, 0.5, 0.5], [1, 0.1, 0.1, 0.5, 0.55]]])
    labels, offsets = rpn.label_anchors(gt, anchors, 0.7, 0.3, 5)
    assert labels.asnumpy().tolist() == [[1.0]]          # class 0 + 1
    onp.testing.assert_allclose(offsets.asnumpy(), 0, atol=1e-6)


def test_defect2_a_forced_positive_is_never_a_negative():
    anchors = rpn.generate_anchors(3, 3, [0.9], [1])        # big anchors
    gt = np.array([[[0, 0.0, 0.0, 0.1, 0.1]]])              # tiny, in a corner
    for ratio in (None, 1000):
        labels, _ = rpn.label_anchors(gt, anchors, 0.7, 0.3, ratio)
        ious = rpn.iou(gt[0, 0, 1:], anchors).asnumpy()
        assert ious.max() < 0.3          # its best anchor is also a candidate
        assert labels.asnumpy()[0, ious.argmax()] == 1
        assert (labels.asnumpy()[0] == 1).sum() == 1


def test_defect3_images_without_objects_get_negatives():
    anchors = rpn.generate_anchors(4, 4, [0.5, 0.25], [1, 2])
    gt = np.full((2, 3, 5), -1.0)
    labels, offsets = rpn.label_anchors(gt, anchors, 0.7, 0.3, 5)
    labels = labels.asnumpy()
    assert ((labels == rpn.NEGATIVE).sum(axis=1) == 5).all()
    assert not (labels == rpn.POSITIVE).any()
    assert (offsets.asnumpy() == 0).all()
    # zero object rows at all
    labels, _ = rpn.label_anchors(np.zeros((2, 0, 5)), anchors, 0.7, 0.3, 5)
    assert ((labels.asnumpy() == rpn.NEGATIVE).sum(axis=1) == 5).all()


def test_defect4_no_host_round_trip_per_image_or_object(monkeypatch):
    """The draft loops over images and objects in Python; the package's
    device path fetches a single validation result, whatever the size."""
    calls = []
    original = np.ndarray.asnumpy
    monkeypatch.setattr(np.ndarray, "asnumpy",
                        lambda self: calls.append(1) or original(self))
    anchors = rpn.generate_anchors(8, 8, rpn.RPN_SIZES, rpn.RPN_RATIOS)
    for batch, objects in [(1, 1), (16, 6)]:
        calls.clear()
        gt = onp.full((batch, objects, 5), -1.0)
        gt[:, :, 0] = 0
        gt[:, :, 1:3], gt[:, :, 3:] = 0.2, 0.6
        rpn.label_anchors(np.array(gt), anchors, 0.7, 0.3, 5, method="device")
        assert len(calls) == 1


def test_ties_make_every_best_anchor_positive():
    # the object straddles two anchors: IoU 1/3 with each
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5],
                        [0.0, 0.5, 0.5, 1.0]]).T
    gt = np.array([[[2, 0.25, 0.0, 0.75, 0.5]]])
    labels, _ = rpn.label_anchors(gt, anchors, 0.7, 0.3, None)
    assert labels.asnumpy().tolist() == [[3.0, 3.0, 0.0]]


def test_tie_between_objects_takes_the_first():
    anchors = np.array([[0.25, 0.0, 0.75, 0.5]]).T
    gt = np.array([[[4, 0.0, 0.0, 0.5, 0.5], [7, 0.5, 0.0, 1.0, 0.5]]])
    labels, _ = rpn.label_anchors(gt, anchors, 0.7, 0.3, None)
    assert labels.asnumpy().tolist() == [[5.0]]


def test_sampling_follows_mxnet_seed():
    anchors = rpn.generate_anchors(8, 8, rpn.RPN_SIZES, rpn.RPN_RATIOS)
    gt = np.array([[[0, 0.2, 0.2, 0.6, 0.7]]])
    draws = []
    for seed in (1, 1, 2):
        mx.random.seed(seed)
        draws.append(rpn.label_anchors(gt, anchors, 0.7, 0.3, 5)[0].asnumpy())
    onp.testing.assert_array_equal(draws[0], draws[1])
    assert (draws[0] != draws[2]).any()


def test_rpn_targets_flattens_and_uses_label_codes():
    anchors = rpn.generate_anchors(2, 2, rpn.RPN_SIZES, rpn.RPN_RATIOS, ctx=mx.cpu(1))
    gt = np.array([[[6, 0.0, 0.0, 0.5, 0.5]], [[-1, 0, 0, 0, 0]]])
    labels, offsets = rpn.rpn_targets(gt, anchors)
    assert labels.shape == (2 * 20,) and offsets.shape == (2 * 20, 4)
    assert labels.ctx == mx.cpu(1) and offsets.ctx == mx.cpu(1)
    values = set(labels.asnumpy().tolist())
    assert values <= {rpn.POSITIVE, rpn.NEGATIVE, rpn.IGNORE}
    assert rpn.POSITIVE in values


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (2, 3, 6)])
def test_ground_truth_of_wrong_shape_is_rejected(shape):
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    with pytest.raises(ValueError, match=r"\(batch, objects, 5\).*" + str(shape[-1])):
        rpn.label_anchors(np.zeros(shape), anchors, 0.7, 0.3, 5)


@pytest.mark.parametrize("shape", [(3, 10), (4,), (4, 0), (2, 4, 3)])
def test_anchors_of_wrong_shape_are_rejected(shape):
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        rpn.label_anchors(np.zeros((1, 1, 5)), np.zeros(shape), 0.7, 0.3, 5)


@pytest.mark.parametrize("row, what", [
    ([0, 0.5, 0.1, 0.5, 0.4], "degenerate"),
    ([0, 0.1, 0.6, 0.5, 0.4], "degenerate"),
    ([0, 0.1, float("nan"), 0.5, 0.4], "NaN or infinite coordinates"),
    ([0, 0.1, 0.1, float("inf"), 0.4], "NaN or infinite coordinates"),
    ([float("nan"), 0.1, 0.1, 0.5, 0.4], "class that is NaN"),
    ([-5, 0.1, 0.1, 0.5, 0.4], "class that is NaN or below -1"),
])
def test_bad_object_rows_are_rejected(row, what):
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    gt = onp.full((2, 2, 5), -1.0)
    gt[0, 0] = [1, 0.1, 0.1, 0.3, 0.3]
    gt[1, 1] = row
    with pytest.raises(ValueError, match=what + r".*image 1, row 1"):
        rpn.label_anchors(np.array(gt), anchors, 0.7, 0.3, 5)


def test_padding_rows_are_ignored_whatever_their_coordinates():
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    gt = np.array([[[0, 0.1, 0.1, 0.6, 0.6], [-1, float("nan"), 5, -3, 0]]])
    labels, offsets = rpn.label_anchors(gt, anchors, 0.7, 0.3, None)
    assert onp.isfinite(offsets.asnumpy()).all()
    assert (labels.asnumpy() == 1).sum() >= 1


def test_a_zero_ratio_samples_no_negatives():
    anchors = rpn.generate_anchors(4, 4, [0.5], [1])
    labels, _ = rpn.label_anchors(np.array([[[0, 0.1, 0.1, 0.5, 0.5]]]), anchors, 0.7, 0.3, 0)
    assert (labels.asnumpy() == rpn.NEGATIVE).sum() == 0
    assert (labels.asnumpy() > 0).sum() >= 1


def ref_label_with_masks(gt, anchors, pos_iou, neg_iou, valid, crowd_ioa):
    """The rule with anchors an image may not use: those ``valid`` marks 0
    and those a crowd region (class CROWD) covers by more than ``crowd_ioa``
    of their own area count as overlapping nothing and are never labelled."""
    crowds = [row[1:] for row in gt if row[0] == rpn.CROWD]
    usable = onp.array(valid, bool).copy()
    for i, a in enumerate(anchors):
        area = (a[2] - a[0]) * (a[3] - a[1])
        for c in crowds:
            iw = max(min(a[2], c[2]) - max(a[0], c[0]), 0.0)
            ih = max(min(a[3], c[3]) - max(a[1], c[1]), 0.0)
            if iw * ih / area > crowd_ioa:
                usable[i] = False
    objects = onp.array([row for row in gt if row[0] >= 0]).reshape(-1, 5)
    far = onp.array([[-10, -10, -9, -9]] * len(anchors), dtype=float)
    shifted = onp.where(usable[:, None], anchors, far)      # unusable: overlaps nothing
    labels, candidates, offsets = ref_label_image(
        onp.concatenate([objects, onp.full((1, 5), -1.0)]), shifted, pos_iou, neg_iou)
    # offsets are relative to the real anchors
    for i in range(len(anchors)):
        if labels[i] > 0:
            obj = max(objects, key=lambda o: ref_iou(o[1:], anchors[i]))
            aw, ah = anchors[i][2] - anchors[i][0], anchors[i][3] - anchors[i][1]
            gw, gh = obj[3] - obj[1], obj[4] - obj[2]
            offsets[i] = [10 * (obj[1] + gw / 2 - anchors[i][0] - aw / 2) / aw,
                          10 * (obj[2] + gh / 2 - anchors[i][1] - ah / 2) / ah,
                          5 * math.log(gw / aw), 5 * math.log(gh / ah)]
    return labels, candidates & usable, offsets, usable


@pytest.mark.parametrize("seed", range(25))
def test_valid_masks_and_crowd_regions_match_brute_force(seed):
    rng = onp.random.default_rng(500 + seed)
    gt, anchors = random_case(rng, anchors=50)
    for b in range(gt.shape[0]):                  # some object rows become crowds
        rows = onp.flatnonzero(gt[b, :, 0] >= 0)
        if len(rows) and rng.random() < 0.6:
            gt[b, rows[0], 0] = rpn.CROWD
    valid = rng.random((gt.shape[0], len(anchors))) < 0.8
    labels, offsets = rpn.label_anchors(np.array(gt), np.array(anchors.T), 0.7, 0.3, None,
                                        valid=np.array(valid), crowd_ioa=0.4)
    labels, offsets = labels.asnumpy(), offsets.asnumpy()
    for b in range(gt.shape[0]):
        want, candidates, want_offsets, usable = ref_label_with_masks(
            gt[b], anchors, 0.7, 0.3, valid[b], 0.4)
        want = onp.where(candidates, 0.0, want)
        onp.testing.assert_array_equal(labels[b], want)
        assert (labels[b][~usable] == rpn.IGNORE).all()
        positive = want > 0
        onp.testing.assert_allclose(offsets[b][positive], want_offsets[positive],
                                    rtol=1e-4, atol=1e-4)


def test_an_anchor_on_a_crowd_is_neither_positive_nor_negative():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.5, 0.0, 1.0, 0.5]]).T
    gt = np.array([[[rpn.CROWD, 0.0, 0.0, 0.6, 0.6], [0, 0.5, 0.5, 1.0, 1.0]]])
    labels, _ = rpn.label_anchors(gt, anchors, 0.7, 0.3, None)
    assert labels.asnumpy().tolist() == [[rpn.IGNORE, 1.0, rpn.NEGATIVE]]
    # crowd_ioa=None skips the pass: the crowd is then plain background
    labels, _ = rpn.label_anchors(gt, anchors, 0.7, 0.3, None, crowd_ioa=None)
    assert labels.asnumpy().tolist() == [[rpn.NEGATIVE, 1.0, rpn.NEGATIVE]]


@pytest.mark.parametrize("anchor, what", [
    ([0.1, 0.1, float("nan"), 0.5], "not finite"),
    ([0.1, 0.1, float("inf"), 0.5], "not finite"),
    ([0.1, 0.1, 0.1, 0.5], "no area"),
])
def test_bad_anchors_are_rejected(anchor, what):
    anchors = np.array([[0, 0, 0.5, 0.5], anchor]).T
    with pytest.raises(ValueError, match=what + r".*anchor 1"):
        rpn.label_anchors(np.array([[[0, 0.1, 0.1, 0.4, 0.4]]]), anchors, 0.7, 0.3, 5)


@pytest.mark.parametrize("kwargs, words", [
    (dict(pos_iou=float("nan")), "pos_iou"), (dict(pos_iou=1.5), "pos_iou"),
    (dict(neg_iou=-0.1), "neg_iou"), (dict(pos_iou=0.3, neg_iou=0.5), "neg_iou.*at most pos_iou"),
    (dict(neg_pos_ratio=float("nan")), "neg_pos_ratio"), (dict(neg_pos_ratio=-1), "neg_pos_ratio"),
    (dict(crowd_ioa=2.0), "crowd_ioa"),
])
def test_bad_thresholds_are_rejected(kwargs, words):
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    with pytest.raises(ValueError, match=words):
        rpn.rpn_targets(np.array([[[0, 0.1, 0.1, 0.4, 0.4]]]), anchors, **kwargs)


def test_a_batch_of_no_image_gives_empty_targets():
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    labels, offsets = rpn.label_anchors(np.zeros((0, 3, 5)), anchors, 0.7, 0.3, 5)
    assert labels.shape == (0, 4) and offsets.shape == (0, 4, 4)
    labels, offsets = rpn.rpn_targets(np.zeros((0, 3, 5)), anchors)
    assert labels.shape == (0,) and offsets.shape == (0, 4)


def test_without_validation_nothing_is_read_from_the_device(monkeypatch):
    calls = []
    for cls in (np.ndarray, mx.nd.NDArray):
        original = cls.asnumpy
        monkeypatch.setattr(cls, "asnumpy",
                            lambda self, _o=original: calls.append(1) or _o(self))
    anchors = rpn.generate_anchors(8, 8, rpn.RPN_SIZES, rpn.RPN_RATIOS)
    gt = np.array([[[0, 0.2, 0.2, 0.6, 0.6], [rpn.CROWD, 0, 0, 0.3, 0.3]]] * 4)
    valid = np.ones((4, anchors.shape[1]))
    rpn.rpn_targets(gt, anchors, valid=valid, validate=False, method="device")
    assert calls == []
    rpn.rpn_targets(gt, anchors, valid=valid, method="device")
    assert len(calls) == 1


@pytest.mark.parametrize("total, fraction", [(8, 0.5), (20, 0.25), (12, 1.0), (6, 0.0),
                                             (400, 0.5)])
@pytest.mark.parametrize("seed", range(8))
def test_faster_rcnn_sampling_matches_brute_force(seed, total, fraction):
    """Faster R-CNN's sample against the rule written per image: at most
    int(total * fraction) positives, each a true positive with its class
    and offsets; the rest of ``total`` negatives, each a true candidate;
    everything else ignored."""
    rng = onp.random.default_rng(1300 + seed)
    gt, anchors = random_case(rng, batch=3, anchors=150)
    labels, offsets = rpn.label_anchors(np.array(gt), np.array(anchors.T), 0.4, 0.3, 3,
                                        anchors_per_image=total, positive_fraction=fraction)
    labels, offsets = labels.asnumpy(), offsets.asnumpy()
    for b in range(gt.shape[0]):
        want, candidates, want_offsets = ref_label_image(gt[b], anchors, 0.4, 0.3)
        positives = want > 0
        kept = labels[b] > 0
        negatives = labels[b] == rpn.NEGATIVE
        assert not (kept & ~positives).any() and not (negatives & ~candidates).any()
        onp.testing.assert_array_equal(labels[b][kept], want[kept])
        onp.testing.assert_allclose(offsets[b][kept], want_offsets[kept], rtol=1e-4,
                                    atol=1e-4)
        assert (offsets[b][~kept] == 0).all()
        assert kept.sum() == min(positives.sum(), int(total * fraction))
        assert negatives.sum() == min(candidates.sum(), total - kept.sum())
        assert ((labels[b] == rpn.IGNORE) == (~kept & ~negatives)).all()


def test_faster_rcnn_sampling_is_random_and_follows_the_seed():
    """Every positive and every candidate is drawn sometimes (not the first
    ones always), and a seed repeats the draw."""
    anchors = rpn.generate_anchors(4, 4, [0.4, 0.6], [0.5, 1, 2], product=True)
    gt = np.array([[[0, 0.1, 0.1, 0.8, 0.9]]])
    counts, draws = 0, []
    for seed in range(200):
        mx.random.seed(seed)
        labels = rpn.label_anchors(gt, anchors, 0.4, 0.3, None, anchors_per_image=6,
                                   positive_fraction=0.5)[0].asnumpy()[0]
        counts = counts + (labels >= 0)
        draws.append(labels)
    every = rpn.label_anchors(gt, anchors, 0.4, 0.3, None)[0].asnumpy()[0]
    assert (every > 0).sum() > 3 and (every == 0).sum() > 3     # both quotas bind
    assert (counts[every >= 0] > 0).all()           # each positive and candidate drawn
    assert (counts[every < 0] == 0).all()
    mx.random.seed(7)
    again = rpn.label_anchors(gt, anchors, 0.4, 0.3, None, anchors_per_image=6,
                              positive_fraction=0.5)[0].asnumpy()[0]
    onp.testing.assert_array_equal(again, draws[7])
    assert any((d != draws[0]).any() for d in draws[1:])


@pytest.mark.parametrize("kwargs, words", [
    (dict(anchors_per_image=0), "anchors_per_image"),
    (dict(anchors_per_image=2.5), "anchors_per_image"),
    (dict(anchors_per_image=True), "anchors_per_image"),
    (dict(anchors_per_image=8, positive_fraction=1.5), "positive_fraction"),
    (dict(anchors_per_image=8, positive_fraction=float("nan")), "positive_fraction"),
])
def test_bad_sampling_settings_are_rejected(kwargs, words):
    anchors = rpn.generate_anchors(2, 2, [0.5], [1])
    with pytest.raises(ValueError, match=words + ".*got"):
        rpn.rpn_targets(np.array([[[0, 0.1, 0.1, 0.4, 0.4]]]), anchors, **kwargs)
