"""The optimizer of a run: one trainer for every part at each part's
learning rate."""
import mxnet as mx

from conftest import small_model, tiny_batches, train_model
from rpn.model.loss import ProposalLoss
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer


def test_each_part_gets_its_learning_rate_through_lr_mult():
    model = small_model(seed=1)
    train_model(model, tiny_batches(1), lr=0.01)
    Trainer(ProposalStep(model, ProposalLoss()), [mx.cpu()],
            lrs={"output": 0.01, "backbone": 0.0025}, optimizer="adam",
            seed=0).train(tiny_batches(1), 1)
    assert {p.lr_mult for p in model.head.collect_params().values()} == {1.0}
    assert {p.lr_mult for p in model.backbone.collect_params().values()} == {0.25}
