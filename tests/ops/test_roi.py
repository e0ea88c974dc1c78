"""RoIs for ROIAlign from the proposal model's output (and from no image),
and a tiny second stage trained on them."""
import numpy as onp
from mxnet import autograd, gluon, init, np

import rpn
from conftest import SMALL
from helpers.models import small_model


def test_rois_from_the_model_output_and_from_the_chapter_format_agree():
    model = small_model(seed=2)
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [48, 64]])
    scores, boxes = model(X, sizes)
    rois = rpn.proposals_to_rois((scores, boxes), sizes).asnumpy()
    valid = scores.asnumpy() >= 0
    assert rois.shape == (valid.sum(), 5)
    assert set(rois[:, 0].tolist()) == {0.0, 1.0}
    for b, (h, w) in enumerate([(64, 96), (48, 64)]):
        mine = rois[rois[:, 0] == b][:, 1:]
        assert mine.min() >= 0 and (mine[:, [0, 2]] <= w + 1e-3).all()
        assert (mine[:, [1, 3]] <= h + 1e-3).all()
    padded = rpn.proposals_to_rois((scores, boxes), sizes, keep_padding=True).asnumpy()
    assert padded.shape == (scores.size, 5)
    onp.testing.assert_allclose(padded[valid.reshape(-1)], rois, atol=1e-4)
    chapter = [[s[m], b[m].T] for s, b, m in zip(scores, boxes, np.array(valid))]
    onp.testing.assert_allclose(rpn.proposals_to_rois(chapter, sizes).asnumpy(), rois,
                                atol=1e-4)


def test_rois_of_no_image():
    assert rpn.proposals_to_rois([], np.zeros((0, 2))).shape == (0, 5)


def test_roi_align_on_proposals_trains_a_tiny_second_stage():
    model = small_model(seed=3)
    head = gluon.nn.HybridSequential()
    head.add(gluon.nn.Dense(16, activation="relu"), gluon.nn.Dense(2))
    head.initialize(init.Xavier())
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [48, 64]])
    params = [p for net in (head, model.backbone) for p in net.collect_params().values()
              if p.grad_req != "null"]
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.1})
    losses = []
    for _ in range(5):
        with autograd.record():
            features = model.backbone(X)
            scores, boxes = model(X, sizes)[:2]
            rois = rpn.proposals_to_rois((scores, boxes), sizes)[:32]
            pooled = rpn.roi_align(features, rois, (7, 7), 1 / SMALL.model.stride)
            logits = head(pooled)
            labels = np.zeros(rois.shape[0])
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(logits, labels).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss))
    assert pooled.shape == (rois.shape[0], 128, 7, 7)
    assert losses[-1] < losses[0]
    conv = [p for name, p in model.backbone.collect_params().items()
            if name.endswith("conv0_weight")][0]
    assert abs(conv.grad().asnumpy()).sum() > 0         # gradients reach the backbone
