"""The shared training loop: the model trained whole on any context, the
one host read every ``log_interval`` steps, and two workers of a real
parameter-server cluster that train to identical parameters."""
import json
import sys
import textwrap

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL
from helpers.models import small_model, tiny_batches, train_model
from helpers.processes import leftovers, run_launcher
from rpn.model.labels import AnchorLabeler
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer


def test_the_model_is_trained_whole_and_its_proposals_move():
    model = small_model(seed=1)
    X, Y, info = tiny_batches(1)[0]
    sizes = np.array(info.sizes, dtype="float32")
    before = model(X, sizes).boxes.asnumpy()
    weights = [p.data().asnumpy().copy() for p in model.collect_params().values()
               if p.grad_req != "null"]
    history = train_model(model, tiny_batches(4), epochs=2, lr=0.01)
    assert len(history) == 2 and all(onp.isfinite(h["loss"]) for h in history)
    after = [p.data().asnumpy() for p in model.collect_params().values()
             if p.grad_req != "null"]
    changed = sum(not onp.allclose(a, b) for a, b in zip(weights, after))
    assert changed == len(weights)                    # backbone and head, every parameter
    assert not onp.allclose(before, model(X, sizes).boxes.asnumpy())


def test_padded_batches_of_the_model_train_on_another_context():
    model = small_model(ctx=[mx.cpu(1)], seed=1)
    history = train_model(model, tiny_batches(2), epochs=1)
    assert onp.isfinite(history[0]["loss"])
    for p in model.collect_params().values():
        assert p.list_ctx() == [mx.cpu(1)]


def test_training_steps_read_the_device_only_every_log_interval(monkeypatch):
    """Every host read makes Python wait for the device (a GPU then idles):
    the training loop of the proposal model, with the labeler's device path
    (what a GPU runs; on a CPU the labeler reads CPU arrays on purpose, and
    no device waits), reads the running sums every ``log_interval`` steps
    and nothing else."""
    from rpn.data.sources import make_loader, open_split
    config = SMALL.replace(resize="keep_ratio", max_size=96, batch_size=2)
    found = open_split("synthetic", "train", synthetic=dict(size=64, num_train=16,
                                                              num_val=4, seed=0))
    loader = make_loader(found, rpn.Resize.of(config.model), 2, train=True)
    model = small_model(config, seed=0)
    model.labeler = AnchorLabeler(model.settings, method="device")
    batches = list(loader)                                  # decoding reads nothing
    assert len(batches) == 8
    reads = []
    for cls in (np.ndarray, mx.nd.NDArray):
        original = cls.asnumpy
        monkeypatch.setattr(cls, "asnumpy",
                            lambda self, _o=original: reads.append(1) or _o(self))
    Trainer(ProposalStep(model), [mx.cpu()], optimizer="adam", seed=1,
            log_interval=4).train(batches, 1)
    assert len(reads) == 2


WORKER = textwrap.dedent("""
    import json, sys
    import mxnet as mx, numpy as onp, rpn
    from rpn.config import PRESETS
    from rpn.model.network import RegionProposalNetwork
    from rpn.train import chapter_batch_fn
    out = sys.argv[1]
    kv = mx.kv.create("dist_sync")
    config = PRESETS["default"].replace(size=64, batch_size=4)
    train_iter, _ = rpn.load_data_synthetic(4, 64, 64, num_train=16, num_val=4,
                                            augment=False, shard=(kv.rank, kv.num_workers))
    mx.random.seed(0)                      # the same initial weights on both workers
    net = RegionProposalNetwork.from_settings(config.model, [mx.cpu()])
    backbone, head = net.backbone, net.head
    steps = []                             # logged every log_interval steps: (loss, steps done)
    rpn.train_detection(backbone, head, chapter_batch_fn(config.model), train_iter, None,
                        rpn.DetectionLoss(1), 4,
                        0.002, 0.002, mx.cpu(), optimizer="adam", kvstore=kv, seed=1,
                        callback=lambda e: e["kind"] == "step"
                        and steps.append((e["loss"], e["advance"])),
                        verbose=False)
    params = {name: p.data().asnumpy() for net in (backbone, head)
              for name, p in net.collect_params().items() if p.grad_req != "null"}
    onp.savez(f"{out}/rank{kv.rank}.npz", **params)
    with open(f"{out}/rank{kv.rank}.json", "w") as f:
        json.dump({"losses": [loss for loss, _ in steps], "steps": sum(n for _, n in steps),
                   "workers": kv.num_workers}, f)
""")


@pytest.mark.slow
def test_two_workers_train_to_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result, mark = run_launcher(["-n", "2", "-s", "1", "--timeout", "360", "--",
                                 sys.executable, str(script), str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [onp.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert set(ranks[0].files) == set(ranks[1].files) and ranks[0].files
    for name in ranks[0].files:
        onp.testing.assert_allclose(ranks[0][name], ranks[1][name], rtol=1e-6, atol=1e-7)
    for r in (0, 1):
        with open(tmp_path / f"rank{r}.json") as f:
            info = json.load(f)
        assert info["workers"] == 2
        # each worker trains on its half: 16 images / 2 workers / batch 4 = 2 steps an epoch
        assert info["steps"] == 8
        losses = info["losses"]
        assert len(losses) >= 2
        assert onp.mean(losses[-2:]) < onp.mean(losses[:2])
    assert leftovers(mark) == []
