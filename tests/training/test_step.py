"""What a training step computes: losses normalised by the whole batch
when it is split over devices, with and without the refinement stage."""
import numpy as onp
import pytest
from mxnet import np

from rpn.model.loss import ProposalLoss
from rpn.model.outputs import TrainingOutput
from rpn.model.refine import RefineOutput
from rpn.training.step import normalised_losses


def _output(rng, n, positives):
    labels = onp.full(n, -1.0)
    labels[:positives] = 1
    labels[positives:positives + 3] = 0
    arrays = (rng.normal(size=(n, 2)), rng.normal(size=(n, 4)), labels, rng.normal(size=(n, 4)))
    return TrainingOutput(*(np.array(a, dtype="float32") for a in arrays), None)


def test_two_parts_are_normalised_by_the_counts_of_the_whole_batch(rng):
    parts = [_output(rng, 12, 2), _output(rng, 12, 5)]
    loss = ProposalLoss(lambd=2.0)
    split = sum(float(l.sum()) for l in normalised_losses(loss, parts))
    whole = TrainingOutput(*(np.concatenate([a, b]) for a, b in zip(parts[0][:4], parts[1][:4])),
                           None)
    assert split == pytest.approx(float(normalised_losses(loss, [whole])[0].sum()), rel=1e-5)
    # by hand: cross entropy over the 13 labelled anchors, L1 over the 7 positives
    cls = onp.concatenate([p.cls_preds.asnumpy() for p in parts])
    box = onp.concatenate([p.box_preds.asnumpy() - p.box_labels.asnumpy() for p in parts])
    labels = onp.concatenate([p.cls_labels.asnumpy() for p in parts])
    logp = cls - onp.log(onp.exp(cls).sum(1, keepdims=True))
    labelled = labels >= 0
    ce = -logp[labelled, labels[labelled].astype(int)].sum() / labelled.sum()
    l1 = onp.abs(box[labels > 0]).mean(1).sum() / (labels > 0).sum()
    assert split == pytest.approx(ce + 2.0 * l1, rel=1e-4)


def _refined(rng, rois, positives):
    n = 50
    labels = onp.where(onp.arange(n) < 5, 1.0, 0.0)
    arrays = [rng.normal(size=(n, 2)), rng.normal(size=(n, 4)), labels,
              rng.normal(size=(n, 4)) * labels[:, None]]
    first = [np.array(a, dtype="float32") for a in arrays]
    boxes = onp.sort(rng.uniform(0, 1, (rois, 2, 2)), axis=1).reshape(rois, 4)[:, [0, 2, 1, 3]]
    refine = RefineOutput(np.array(rng.normal(scale=0.1, size=(rois, 4)), dtype="float32"),
                          np.array(rng.normal(size=rois), dtype="float32"),
                          np.array(rng.normal(scale=0.1, size=(rois, 4)), dtype="float32"),
                          np.array(boxes, dtype="float32"), np.array(boxes, dtype="float32"),
                          np.array((onp.arange(rois) < positives).astype("float32")),
                          np.ones(rois))
    anchors = np.array(onp.tile([[0.1], [0.1], [0.5], [0.5]], (1, n)), dtype="float32")
    return TrainingOutput(*first, anchors, None, None, refine)


def test_the_refinement_loss_is_normalised_by_the_whole_batch(rng):
    parts = [_refined(rng, 8, 2), _refined(rng, 8, 6)]
    loss = ProposalLoss(refine_weight=1.0)
    split = sum(float(l.sum()) for l in normalised_losses(loss, parts))
    whole = TrainingOutput(*(np.concatenate([a, b]) for a, b in zip(parts[0][:4], parts[1][:4])),
                           np.concatenate([parts[0].anchors, parts[1].anchors], axis=1), None,
                           None, RefineOutput(*(np.concatenate([a, b]) for a, b in zip(
                               parts[0].refine, parts[1].refine))))
    assert split == pytest.approx(float(normalised_losses(loss, [whole])[0].sum()), rel=1e-5)
