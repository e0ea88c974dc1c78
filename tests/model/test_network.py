"""The proposal model: the chapter's functions put together, in a graph and
out of it, on padded batches of images of several shapes."""

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np

import rpn
from conftest import SMALL
from helpers.models import anchor_fn, export_and_import, small_model
from rpn.model.network import RegionProposalNetwork
from rpn.model.outputs import Proposals, TrainingOutput

M = SMALL.model


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_square_images_give_predict_rpns_proposals(model):
    X = np.random.normal(size=(3, 3, 64, 64))
    scores, boxes = model(X, np.full((3, 2), 64.0))
    chapter = rpn.predict_rpn(model.backbone(X), model.head, anchor_fn(),
                              M.nms_threshold, pre_nms_top_n=M.pre_nms_top_n_test,
                              post_nms_top_n=M.post_nms_top_n_test)
    for b, (want_scores, want_boxes) in enumerate(chapter):
        kept = want_scores.shape[0]
        onp.testing.assert_allclose(scores[b, :kept].asnumpy(), want_scores.asnumpy(),
                                    atol=1e-6)
        onp.testing.assert_allclose(boxes[b, :kept].asnumpy(), want_boxes.T.asnumpy(),
                                    atol=1e-6)
        assert (scores[b, kept:].asnumpy() == -1).all()          # padding rows
    features = model.backbone(X)
    onp.testing.assert_allclose(model.anchors(features).asnumpy(),
                                anchor_fn()(features).asnumpy(), atol=1e-6)


def test_hybridized_and_exported_graphs_give_the_same_proposals(tmp_path):
    net = small_model(seed=4)
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [50, 70]])
    eager = [a.asnumpy() for a in net(X, sizes)]
    net.hybridize()
    compiled = [a.asnumpy() for a in net(X, sizes)]
    loaded = export_and_import(net, str(tmp_path))
    exported = [a.asnumpy() for a in loaded(X, sizes.astype("float32"))]
    for a, b, c in zip(eager, compiled, exported):
        onp.testing.assert_allclose(a, b, atol=1e-5)
        onp.testing.assert_allclose(a, c, atol=1e-5)


def test_each_image_keeps_to_its_own_part_of_the_canvas(model):
    X = np.random.normal(size=(2, 3, 96, 128))
    sizes = onp.array([[96, 128], [40, 60]], dtype="float32")
    scores, boxes = (a.asnumpy() for a in model(X, np.array(sizes)))
    for b in range(2):
        kept = boxes[b][scores[b] >= 0]
        assert len(kept) > 0
        assert kept.min() >= 0 and kept.max() <= 1        # each image's own frame
        assert ((kept[:, 2] > kept[:, 0]) | (kept[:, 3] > kept[:, 1])).all()
    # anchors centred in the padding of the small image are never used
    features = model.backbone(X)
    anchors = model.anchors(features).asnumpy()                       # (4, N)
    valid = model.valid_anchors(model.anchors(features), features,
                                np.array(sizes)).asnumpy()
    cx = (anchors[0] + anchors[2]) / 2 * 128
    cy = (anchors[1] + anchors[3]) / 2 * 96
    onp.testing.assert_array_equal(valid[1] > 0, (cx < 60) & (cy < 40))
    assert valid[0].all()


def test_training_outputs_give_what_the_loss_needs(model):
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.5, 0.5]], [[2, 0.2, 0.3, 0.9, 0.8]]])
    loss_fn = rpn.model.loss.ProposalLoss.from_settings(M)
    with autograd.record():
        out = model.training_outputs(X, sizes, Y, proposals=True)
        loss = loss_fn(out).sum()
    loss.backward()
    assert isinstance(out, TrainingOutput) and isinstance(out.proposals, Proposals)
    N = out.anchors.shape[1]
    assert out.cls_preds.shape == (2 * N, 2) and out.box_preds.shape == (2 * N, 4)
    assert out.cls_labels.shape == (2 * N,) and out.box_labels.shape == (2 * N, 4)
    # the labels are those of targets(), anchor for anchor (the same draws)
    mx.random.seed(11)
    again = model.training_outputs(X, sizes, Y)
    mx.random.seed(11)
    cls_labels, box_labels = model.targets(Y, X, sizes)
    onp.testing.assert_array_equal(again.cls_labels.asnumpy(), cls_labels.asnumpy())
    onp.testing.assert_array_equal(again.box_labels.asnumpy(), box_labels.asnumpy())
    scores, boxes = out.proposals
    assert scores.shape[1] == min(N, M.post_nms_top_n_train) and boxes.shape[2] == 4
    assert onp.isfinite(float(loss))
    grad = model.head.collect_params()
    assert any(abs(p.grad().asnumpy()).sum() > 0 for p in grad.values())


def test_forward_returns_proposals_in_training_and_in_inference(model):
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [64, 64]])
    Y = np.array([[[0, 0.1, 0.1, 0.5, 0.5]], [[2, 0.2, 0.3, 0.9, 0.8]]])
    N = 8 * 12 * M.num_anchors
    inference = model(X, sizes)
    with autograd.record():
        training = model(X, sizes)
        out = model.training_outputs(X, sizes, Y, proposals=True)
    assert isinstance(inference, Proposals) and isinstance(training, Proposals)
    assert inference.scores.shape == (2, min(N, M.post_nms_top_n_test))
    assert training.scores.shape == (2, min(N, M.post_nms_top_n_train))
    # forward in training mode gives the training outputs' proposals
    for a, b in zip(training, out.proposals):
        onp.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-6)


def test_the_model_follows_the_context_of_its_inputs():
    net = small_model(ctx=[mx.cpu(1)], seed=6)
    X = np.random.normal(size=(1, 3, 64, 64), ctx=mx.cpu(1))
    scores, boxes = net(X, np.array([[64, 64]], ctx=mx.cpu(1)))
    assert scores.ctx == mx.cpu(1) and boxes.ctx == mx.cpu(1)


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="at least one image"):
        model(np.zeros((0, 3, 64, 64)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="image_sizes"):
        model(np.zeros((2, 3, 64, 64)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="anchors a pixel"):
        RegionProposalNetwork(model.backbone, rpn.RPNOutput(3), stride=8, size=64)
    with pytest.raises(ValueError, match="post_nms_top_n_test"):
        RegionProposalNetwork(model.backbone, model.head, M, post_nms_top_n_test=0)
    with pytest.raises(ValueError, match="unknown settings"):
        RegionProposalNetwork(model.backbone, model.head, M, base_size=64)


def test_a_head_that_does_not_match_the_settings_is_named():
    net = small_model(seed=1)
    with pytest.raises(ValueError, match="quality branch"):
        rpn.RegionProposalNetwork(net.backbone, net.head, SMALL.model, iou_branch=True)
