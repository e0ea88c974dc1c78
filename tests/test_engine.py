"""The shared training loop: losses normalised by the whole batch, one
learning rate a part, the divergence check, and the model trained whole."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL, small_model, train_model
from rpn.training.step import ProposalStep, normalised_losses
from rpn.training.trainer import Trainer
from rpn.model.loss import ProposalLoss
from rpn.model.outputs import TrainingOutput


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


def _batches(num=4, size=64):
    found = rpn.data.sources.open_split("synthetic", "train",
                                   synthetic=dict(size=size, num_train=num * 2, num_val=2,
                                                  seed=0))
    return list(rpn.data.sources.make_loader(found, rpn.Resize.of(SMALL.model), 2, train=True,
                                        size_divisor=8))


def test_each_part_gets_its_learning_rate_through_lr_mult():
    model = small_model(seed=1)
    train_model(model, _batches(1), lr=0.01)
    Trainer(ProposalStep(model, ProposalLoss()), [mx.cpu()],
            lrs={"output": 0.01, "backbone": 0.0025}, optimizer="adam",
            seed=0).train(_batches(1), 1)
    assert {p.lr_mult for p in model.head.collect_params().values()} == {1.0}
    assert {p.lr_mult for p in model.backbone.collect_params().values()} == {0.25}


def test_the_model_is_trained_whole_and_its_proposals_move():
    model = small_model(seed=1)
    X, Y, info = _batches(1)[0]
    sizes = np.array(info.sizes, dtype="float32")
    before = model(X, sizes).boxes.asnumpy()
    weights = [p.data().asnumpy().copy() for p in model.collect_params().values()
               if p.grad_req != "null"]
    history = train_model(model, _batches(4), epochs=2, lr=0.01)
    assert len(history) == 2 and all(onp.isfinite(h["loss"]) for h in history)
    after = [p.data().asnumpy() for p in model.collect_params().values()
             if p.grad_req != "null"]
    changed = sum(not onp.allclose(a, b) for a, b in zip(weights, after))
    assert changed == len(weights)                    # backbone and head, every parameter
    assert not onp.allclose(before, model(X, sizes).boxes.asnumpy())


def test_a_diverging_loss_names_the_learning_rates_of_each_part():
    model = small_model(seed=1)
    with pytest.raises(FloatingPointError,
                       match=r"rates \(output 1000000.0, backbone 1000000.0\)"):
        train_model(model, _batches(4) * 3, epochs=1, lr=1e6, log_interval=1,
                    optimizer="sgd")


def test_padded_batches_of_the_model_train_on_another_context():
    model = small_model(ctx=[mx.cpu(1)], seed=1)
    history = train_model(model, _batches(2), epochs=1)
    assert onp.isfinite(history[0]["loss"])
    for p in model.collect_params().values():
        assert p.list_ctx() == [mx.cpu(1)]
