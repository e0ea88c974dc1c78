"""The feature pyramid and the proposal model on it: shapes and levels,
per-level top-k where a coarse level has fewer anchors than k, the NMS
that keeps levels apart against a brute-force reference, labels over the
levels on both labeler paths, and the export."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np
from mxnet import ndarray as nd

import rpn
from conftest import SMALL
from helpers.models import assert_exports_the_same, small_model
from helpers.references import ref_iou
from rpn.model.labels import AnchorLabeler
from rpn.model.proposal_layer import ProposalRule, select_level_proposals
from rpn.model.pyramid import pyramid_backbone

PYRAMID = SMALL.replace(pyramid=[2, 3, 4, 5, 6], pyramid_channels=16, head_channels=16)
#: two levels, two sizes a level (``pyramid_scales``)
SCALED = SMALL.replace(pyramid=[2, 3], pyramid_sizes=[10, 40], pyramid_scales=[1, 2],
                       anchor_ratios=[0.5, 1, 2], pyramid_channels=8, head_channels=8)


@pytest.mark.parametrize("name", ["resnet18_v1", "resnet18_v2", "mobilenetv2_0.25"])
@pytest.mark.parametrize("levels", [(2, 3, 4, 5, 6), (3, 4, 5), (4, 5, 6), (2, 3)])
def test_the_pyramid_gives_one_map_a_level_at_its_stride(name, levels):
    pyramid = pyramid_backbone(levels, 8, name=name)
    maps = pyramid(np.zeros((2, 3, 64, 96)))
    assert [tuple(m.shape) for m in maps] == [
        (2, 8, -(-64 // 2 ** level), -(-96 // 2 ** level)) for level in levels]


@pytest.mark.parametrize("config", [PYRAMID, SCALED], ids=["levels2-6", "levels2-3x2"])
def test_the_model_on_a_pyramid_proposes_hybridizes_and_exports_the_same(tmp_path, config):
    model = small_model(config)
    X, sizes = np.random.normal(size=(2, 3, 64, 96)), np.array([[64, 96], [48, 64]])
    eager = model(X, sizes)
    kept = eager.scores.asnumpy() >= 0
    assert kept[0].sum() > 0 and eager.boxes.asnumpy()[kept].max() <= 1
    assert_exports_the_same(model, X, sizes, eager, str(tmp_path))


def test_training_outputs_join_the_levels_image_by_image():
    model = small_model(PYRAMID)
    X, sizes = np.random.normal(size=(2, 3, 64, 96)), np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.3, 0.4]], [[1, 0.5, 0.5, 0.9, 0.9]]])
    with autograd.record():
        out = model.training_outputs(X, sizes, Y, proposals=True)
        loss = rpn.model.loss.ProposalLoss.from_settings(model.settings)(out).sum()
    loss.backward()
    per_image = sum(-(-64 // s) * -(-96 // s) * len(PYRAMID.model.anchor_ratios)
                    for s in (4, 8, 16, 32, 64))
    assert out.anchors.shape == (4, per_image)
    assert out.cls_preds.shape == (2 * per_image, 2) and out.cls_labels.shape == (2 * per_image,)
    assert (out.cls_labels.asnumpy() > 0).sum() >= 2          # each object has an anchor
    assert onp.isfinite(float(loss))
    # the head's prediction for anchor n of image 1 is row per_image + n
    with autograd.train_mode():                    # BatchNorm as in training_outputs
        level0 = model.head(model.backbone(X)[0])[0]           # (B, N_0, 2)
    onp.testing.assert_allclose(out.cls_preds[per_image:per_image + 5].asnumpy(),
                                level0[1, :5].asnumpy(), rtol=1e-5)


@pytest.mark.parametrize("config", [PYRAMID, SCALED], ids=["levels2-6", "levels2-3x2"])
def test_labels_over_the_levels_are_the_same_on_both_labeler_paths(config):
    model = small_model(config)
    X, sizes = np.random.normal(size=(2, 3, 64, 96)), np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.3, 0.4], [1, 0.6, 0.1, 0.7, 0.2]],
                  [[1, 0.5, 0.5, 0.9, 0.9], [-1, 0, 0, 0, 0]]])
    features = model.backbone(X)
    results = []
    for method in ("host", "device"):
        mx.random.seed(7)
        results.append([a.asnumpy() for a in AnchorLabeler(model.settings, method=method)(
            Y, features, sizes)])
    onp.testing.assert_array_equal(results[0][0], results[1][0])
    onp.testing.assert_array_equal(results[0][1], results[1][1])


def _brute_force(levels, k, threshold, post):
    """Per level the k best valid rows, then greedy NMS over every kept row
    where only rows of one level suppress each other; the best ``post``."""
    rows = []
    for number, (scores, boxes) in enumerate(levels):
        order = [i for i in onp.argsort(-scores, kind="stable") if scores[i] >= 0][:k]
        rows += [(scores[i], boxes[i], number) for i in order]
    rows.sort(key=lambda r: -r[0])
    kept = []
    for score, box, level in rows:
        if all(l != level or ref_iou(box, b) <= threshold for _, b, l in kept):
            kept.append((score, box, level))
    return kept[:post]


def test_per_level_top_k_and_the_nms_of_levels_against_a_brute_force_reference(rng):
    """Three levels, the coarsest with fewer anchors than k (a graph cannot
    ask its size: its rows are padded); boxes of one level suppress each
    other, boxes of two levels never do."""
    sizes, k = (40, 12, 3), 8
    levels, inputs = [], []
    for n in sizes:
        xy = rng.uniform(0, 0.6, (n, 2))
        anchors = onp.concatenate([xy, xy + rng.uniform(0.1, 0.4, (n, 2))], axis=1)
        logits = rng.normal(size=(n, 2))
        valid = (rng.random((1, n)) < 0.9).astype("float32")
        inputs.append((np.array(anchors.T, dtype="float32"), np.array(logits, dtype="float32"),
                       np.zeros((n, 4)), np.array(valid), None))
        prob = onp.exp(logits[:, 1]) / onp.exp(logits).sum(1)
        levels.append((onp.where(valid[0] > 0, prob, -1.0), onp.clip(anchors, 0, 1)))
    rule = ProposalRule(0.5, pre_nms_top_n=k, post_nms_top_n=12)
    out = select_level_proposals(nd, inputs, rule).asnumpy()[0]          # (12, 5)
    want = _brute_force(levels, k, 0.5, 12)
    got = out[out[:, 0] >= 0]
    assert len(got) == len(want)
    onp.testing.assert_allclose(got[:, 0], [w[0] for w in want], rtol=1e-5)
    onp.testing.assert_allclose(got[:, 1:], [w[1] for w in want], atol=1e-5)


def test_pyramid_settings_are_checked():
    with pytest.raises(rpn.settings.SettingsError, match="pyramid"):
        SMALL.replace(pyramid=[2, 4])
    with pytest.raises(rpn.settings.SettingsError, match="one size a level"):
        SMALL.replace(pyramid=[3, 4, 5], pyramid_sizes=[16, 32])
    with pytest.raises(rpn.settings.SettingsError, match="refine"):
        SMALL.replace(pyramid=[3, 4, 5], refine=True)
    with pytest.raises(rpn.settings.SettingsError, match="pyramid_scales"):
        SMALL.replace(pyramid=[2, 3], pyramid_scales=[1, 0])
    with pytest.raises(rpn.settings.SettingsError, match="multiple of 8 for pyramid"):
        SMALL.replace(pyramid=[2, 3], resize="fixed", size=60)
    settings = PYRAMID.model
    assert settings.strides == (4, 8, 16, 32, 64)
    assert settings.num_anchors == len(settings.anchor_ratios) == 5     # one size a level
    assert settings.level_sizes == (32.0, 64.0, 128.0, 256.0, 512.0)
    # the canvas meets the coarsest computed level (P6 is pooled: 32)
    assert [SMALL.replace(pyramid=levels).model.size_divisor for levels in
            ([2, 3], [2, 3, 4], [3, 4, 5], [2, 3, 4, 5, 6])] == [8, 16, 32, 32]


def test_several_sizes_a_level_are_the_level_size_times_each_scale():
    """``pyramid_scales`` (RetinaNet's octave scales): a level's anchors are
    its size times each scale at every ratio, in pixels, in the head's
    order; a canvas of multiples of 8 is enough for levels 2 and 3."""
    config = SCALED
    settings = config.model
    assert settings.num_anchors == 6
    shapes = onp.array(AnchorLabeler(settings).shapes)                  # (L * A, 2) pixels
    areas = onp.sqrt(shapes[:, 0] * shapes[:, 1]).round(6)
    assert list(areas) == [10] * 3 + [20] * 3 + [40] * 3 + [80] * 3
    onp.testing.assert_allclose(shapes[:, 0] / shapes[:, 1], [0.5, 1, 2] * 4, rtol=1e-6)
    model = small_model(config)
    X, sizes = np.random.normal(size=(1, 3, 56, 88)), np.array([[56, 88]])  # not 16s
    Y = np.array([[[0, 0.1, 0.1, 0.3, 0.4]]])
    out = model.training_outputs(X, sizes, Y)
    per_image = 6 * (14 * 22 + 7 * 11)
    assert out.anchors.shape == (4, per_image) and out.cls_preds.shape == (per_image, 2)
    # the first anchors: P2's pixel (0, 0), 10 px at ratio 0.5 in the 56 x 88 canvas
    first = out.anchors.asnumpy()[:, 0] * onp.array([88, 56, 88, 56])
    onp.testing.assert_allclose(first, [2 - 10 * 0.5 ** 0.5 / 2, 2 - 10 / 0.5 ** 0.5 / 2,
                                        2 + 10 * 0.5 ** 0.5 / 2, 2 + 10 / 0.5 ** 0.5 / 2],
                                rtol=1e-5)
    assert model(X, sizes).boxes.shape[0] == 1
