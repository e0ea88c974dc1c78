"""The optimizer of a run: one trainer for every part at each part's
learning rate, its schedules against their formulas, and the KVStore chosen
or passed through."""
import math
import types

import mxnet as mx
import pytest
from mxnet import gluon, np

from helpers.models import small_model, tiny_batches, train_model
from rpn.model.loss import ProposalLoss
from rpn.training.optimizer import kvstore_rank, learning_rates, make_kvstore, make_optimizer
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer


def parts(*names):
    """Initialised blocks, one a name."""
    blocks = {}
    for name in names:
        blocks[name] = gluon.nn.Dense(2)
        blocks[name].initialize()
        blocks[name](np.zeros((1, 3)))
    return blocks


def test_kvstore_none_is_local_on_cpus_and_device_on_several_gpus():
    assert make_kvstore(None, [mx.cpu()]) == "local"
    assert make_kvstore(None, [mx.cpu(0), mx.cpu(1)]) == "local"
    assert make_kvstore(None, [mx.gpu(0)]) == "local"                   # one GPU
    assert make_kvstore(None, [mx.gpu(0), mx.gpu(1)]) == "device"       # no GPU needed
    assert make_kvstore("device", [mx.cpu()]) == "device"               # a name as it is
    store = mx.kv.create("local")
    assert make_kvstore(store, [mx.gpu(0), mx.gpu(1)]) is store


def test_the_rank_and_workers_of_a_kvstore():
    assert kvstore_rank("local") == (0, 1, 1)
    assert kvstore_rank(mx.kv.create("local")) == (0, 1, 1)
    for kind in ("dist_sync", "dist_device_sync"):         # their gradients are averaged
        store = types.SimpleNamespace(rank=2, num_workers=3, type=kind)
        assert kvstore_rank(store) == (2, 3, 3)


def test_an_asynchronous_kvstore_has_no_synchronous_workers():
    """kvstore_rank's docstring: ``dist_sync`` averages the gradients of its
    workers, ``dist_async`` does not (the trainer divides by the third)."""
    store = types.SimpleNamespace(rank=2, num_workers=3, type="dist_async")
    assert kvstore_rank(store) == (2, 3, 1)


def test_the_backbone_and_every_other_part_get_the_chapters_two_rates():
    assert learning_rates(parts("backbone", "output", "refine"), 0.1, 0.5) == {
        "backbone": 0.1, "output": 0.5, "refine": 0.5}
    assert learning_rates(parts("output"), 0.1, 0.5) == {"output": 0.5}


def test_one_trainer_serves_every_part_at_its_rate():
    blocks = parts("backbone", "output")
    trainer = make_optimizer(blocks, {"backbone": 0.1, "output": 0.4}, "adam", {"wd": 0.01},
                             "local", "constant", 10, 0)
    assert type(trainer.optimizer).__name__ == "Adam" and trainer.optimizer.wd == 0.01
    assert trainer.learning_rate == pytest.approx(0.4)
    assert trainer.optimizer.lr_scheduler is None
    assert {p.lr_mult for p in blocks["backbone"].collect_params().values()} == {0.25}
    assert {p.lr_mult for p in blocks["output"].collect_params().values()} == {1.0}
    frozen = make_optimizer(blocks, {"backbone": 0.0, "output": 0.0}, "sgd", None, "local",
                            "constant", 10, 0)
    assert frozen.learning_rate == 0.0
    assert {p.lr_mult for p in blocks["backbone"].collect_params().values()} == {1.0}
    with pytest.raises(ValueError, match="'constant', 'cosine' or 'step', got 'poly'"):
        make_optimizer(blocks, {"output": 0.1, "backbone": 0.1}, "sgd", None, "local", "poly",
                       10, 0)


def cosine(t, base, total, warmup):
    """Linear warm-up from 0, then half a cosine down to 0 at ``total``."""
    if t < warmup:
        return base * t / warmup
    end = max(total, warmup + 1)
    return base * (1 + math.cos(math.pi * min(t - warmup, end - warmup) / (end - warmup))) / 2


def step(t, base, total, warmup):
    """Linear warm-up from 0, then a tenth of the rate for the last quarter."""
    if t < warmup:
        return base * t / warmup
    return base if t <= max(int(0.75 * total), warmup + 1, 1) else base / 10


@pytest.mark.parametrize("schedule, formula", [("cosine", cosine), ("step", step)])
@pytest.mark.parametrize("total, warmup", [(8, 2), (20, 0), (3, 5)])
def test_the_lr_schedules_follow_their_formulas(schedule, formula, total, warmup):
    trainer = make_optimizer(parts("backbone", "output"), {"backbone": 0.05, "output": 0.2},
                             "sgd", None, "local", schedule, total, warmup)
    scheduler = trainer.optimizer.lr_scheduler
    for t in range(total + 4):                  # in order: MXNet's schedulers keep state
        assert scheduler(t) == pytest.approx(formula(t, 0.2, total, warmup), abs=1e-7), t


def test_each_part_gets_its_learning_rate_through_lr_mult():
    model = small_model(seed=1)
    train_model(model, tiny_batches(1), lr=0.01)
    Trainer(ProposalStep(model, ProposalLoss()), [mx.cpu()],
            lrs={"output": 0.01, "backbone": 0.0025}, optimizer="adam",
            seed=0).train(tiny_batches(1), 1)
    assert {p.lr_mult for p in model.head.collect_params().values()} == {1.0}
    assert {p.lr_mult for p in model.backbone.collect_params().values()} == {0.25}
