"""The chapter's train_detection: on a handful of images, on other and on
several CPU contexts, resumed, repeated under a seed, with its callbacks,
and its refusals."""
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np
from mxnet.gluon import nn

import rpn
from helpers.models import anchor_fn, small_model
from rpn.config import PRESETS
from rpn.data.batch import BatchInfo
from rpn.train import chapter_batch_fn
from rpn.training.step import ProposalStep, anchor_metrics

#: The chapter's settings of these runs: the default model at 64 pixels,
#: batches of 8, a short warm-up.
CHAPTER = PRESETS["default"].replace(size=64, batch_size=8, warmup_steps=5)


def build_model(config, ctx):
    """The chapter's two parts, backbone and head, of ``config``'s model."""
    net = small_model(config, ctx, seed=None)
    return net.backbone, net.head


def synthetic_batches(num, size=64, batch=8, seed=0):
    train_iter, _ = rpn.load_data_synthetic(batch, size, size, num_train=num, num_val=batch,
                                            augment=False, seed=seed)
    return [(X, Y) for X, Y in train_iter]


def tiny_backbone():
    """A BatchNorm-free stride-16 backbone: parameters are then a function of
    the data alone, so one device and two must agree exactly."""
    net = nn.HybridSequential()
    for channels in (8, 16, 16, 16):
        net.add(nn.Conv2D(channels, 3, strides=2, padding=1, activation="relu"))
    return net


def params_of(*nets):
    out = {}
    for k, net in enumerate(nets):
        for name, p in net.collect_params().items():
            out[f"{k}:{name.split('_', 1)[-1]}"] = p.list_data()[0].asnumpy()
    return out


def train(ctx, batches, backbone_fn=None, epochs=1, batch_fn=None, **kwargs):
    mx.random.seed(7)
    if backbone_fn is None:
        backbone, head = build_model(CHAPTER, ctx if isinstance(ctx, list) else [ctx])
    else:
        backbone, head = backbone_fn(), rpn.RPNOutput(CHAPTER.model.num_anchors, channels=16)
        backbone.initialize(init.Xavier(), ctx=ctx)
        head.initialize(init.Xavier(), ctx=ctx)
    history = rpn.train_detection(
        backbone, head, batch_fn or chapter_batch_fn(CHAPTER.model), batches, None,
        rpn.DetectionLoss(CHAPTER.model.lambd), epochs,
        0.05, 0.05, ctx, optimizer_params={"momentum": 0.9}, seed=3, verbose=False, **kwargs)
    return backbone, head, history


def test_training_on_a_handful_of_images_finds_the_objects():
    batches = synthetic_batches(8, size=64)
    mx.random.seed(1)
    backbone, head = build_model(CHAPTER, [mx.cpu()])
    history = rpn.train_detection(
        backbone, head, chapter_batch_fn(CHAPTER.model), batches * 10, None,
        rpn.DetectionLoss(1), 8, 0.003, 0.003, mx.cpu(), optimizer="adam",
        lr_schedule="cosine", warmup_steps=10, seed=0, verbose=False)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    result = rpn.proposal_recall(backbone, head, batches, anchor_fn(CHAPTER),
                                 nms_threshold=0.7, ks=(10,))
    assert result["objects"] >= 8
    assert result["R@10@0.5"] > 0.9


def test_training_on_another_cpu_context_keeps_everything_there():
    batches = synthetic_batches(8)
    backbone, head, history = train(mx.cpu(1), batches)
    assert onp.isfinite(history[0]["loss"])
    for p in list(backbone.collect_params().values()) + list(head.collect_params().values()):
        assert p.list_ctx() == [mx.cpu(1)]


def test_two_devices_match_one_on_the_same_data():
    batches = synthetic_batches(16)
    # every negative candidate labelled: no random draw depends on the split
    batch_fn = chapter_batch_fn(CHAPTER.model.replace(neg_pos_ratio=None))
    one = train(mx.cpu(0), batches, tiny_backbone, batch_fn=batch_fn, hybridize=False)
    two = train([mx.cpu(0), mx.cpu(1)], batches, tiny_backbone, batch_fn=batch_fn,
                hybridize=False)
    a, b = params_of(*one[:2]), params_of(*two[:2])
    assert a.keys() == b.keys()
    for key in a:
        onp.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5)
    # the copies on the two devices are identical ...
    for net in two[:2]:
        for p in net.collect_params().values():
            c0, c1 = (d.asnumpy() for d in p.list_data())
            onp.testing.assert_array_equal(c0, c1)
    # ... and training moved them away from the initial weights
    mx.random.seed(7)
    fresh = tiny_backbone()
    fresh.initialize(init.Xavier())
    fresh(batches[0][0])
    start = params_of(fresh)
    assert sum(not onp.allclose(start[k], a[k]) for k in start) > 0


def test_resnet_trains_on_two_devices():
    batches = synthetic_batches(8)
    backbone, head, history = train([mx.cpu(0), mx.cpu(1)], batches)
    assert onp.isfinite(history[0]["loss"])
    weight = list(head.collect_params().values())[0]
    onp.testing.assert_array_equal(*(d.asnumpy() for d in weight.list_data()))


def test_a_batch_without_objects_trains_without_nan():
    X = np.random.normal(size=(4, 3, 64, 64))
    Y = np.full((4, 2, 5), -1.0)
    backbone, head, history = train(mx.cpu(), [(X, Y)] * 2)
    assert onp.isfinite(history[0]["loss"])
    assert history[0]["train_box_mae"] is None
    for p in head.collect_params().values():
        assert onp.isfinite(p.data().asnumpy()).all()


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    def loader():
        train_iter, _ = rpn.load_data_synthetic(8, 64, 64, num_train=16, num_val=8, seed=5)
        return train_iter
    full = train(mx.cpu(), loader(), epochs=3, checkpoint_dir=str(tmp_path / "full"))
    train(mx.cpu(), loader(), epochs=1, checkpoint_dir=str(tmp_path / "cut"))
    resumed = train(mx.cpu(), loader(), epochs=3, checkpoint_dir=str(tmp_path / "cut"),
                    resume=True)
    assert [h["epoch"] for h in resumed[2]] == [1, 2, 3]
    a, b = params_of(*full[:2]), params_of(*resumed[:2])
    for key in a:
        onp.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert onp.allclose(full[2][-1]["loss"], resumed[2][-1]["loss"], rtol=1e-5)


def test_a_run_killed_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    batches = synthetic_batches(8)
    folder = str(tmp_path / "ckpt")
    train(mx.cpu(), batches, epochs=1, checkpoint_dir=folder)
    before = rpn.latest_checkpoint(folder)
    assert before.endswith("epoch-0001")

    def killed(trainer, folder):
        with open(os.path.join(folder, "optimizer.params"), "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(rpn.runs.checkpoint, "_save_optimizer", killed)
    with pytest.raises(KeyboardInterrupt):
        train(mx.cpu(), batches, epochs=2, checkpoint_dir=folder, resume=True)
    assert rpn.latest_checkpoint(folder) == before
    assert sorted(os.listdir(folder)) == ["epoch-0001", "latest"]     # no half folder left
    backbone, head = build_model(CHAPTER, [mx.cpu()])
    state = rpn.load_checkpoint(folder, backbone, head)
    assert state["epoch"] == 0


def test_runs_repeat_under_mxnet_seed():
    batches = synthetic_batches(8)
    a = params_of(*train(mx.cpu(), batches)[:2])
    b = params_of(*train(mx.cpu(), batches)[:2])
    for key in a:
        onp.testing.assert_array_equal(a[key], b[key])


def test_callback_and_history():
    batches = synthetic_batches(8)
    events = []
    _, _, history = train(mx.cpu(), batches, epochs=2, callback=events.append,
                          epoch_end=lambda epoch: {"extra": epoch})
    assert [e["kind"] for e in events] == ["step", "epoch", "step", "epoch"]
    assert set(history[0]) >= {"epoch", "loss", "train_class_err", "train_box_mae",
                               "test_class_err", "test_box_mae", "time",
                               "images_per_sec", "extra"}
    assert history[1]["extra"] == 1


def test_batch_too_small_for_the_devices_is_a_clear_error_in_training_only():
    X, Y = np.zeros((1, 3, 64, 64)), np.full((1, 1, 5), -1.0)
    with pytest.raises(ValueError, match="cannot be split over 2 devices"):
        train([mx.cpu(0), mx.cpu(1)], [(X, Y)])
    ctxs = [mx.cpu(0), mx.cpu(1)]
    model = small_model(CHAPTER, ctxs)
    info = BatchInfo.from_rows([[64, 64, 64, 64, 0]])
    result = anchor_metrics(ProposalStep(model, validate=True).forward, [(X, Y, info)], ctxs)
    assert result["images"] == 1 and result["class_err"] is not None


def test_the_chapters_batch_fn_refuses_padded_batches():
    """rpn_batch labels anchors of the whole canvas: images padded into it
    (they keep their aspect ratio) would get labels for anchors outside
    them, so train_detection names the proposal model instead."""
    X, Y = np.zeros((2, 3, 64, 96)), np.full((2, 1, 5), -1.0)
    info = BatchInfo.from_rows([[64, 96, 64, 96, 0], [64, 48, 64, 48, 1]])
    with pytest.raises(ValueError, match="proposal model"):
        train(mx.cpu(), [(X, Y, info)])
    whole = BatchInfo.from_rows([[64, 96, 64, 96, 0], [64, 96, 64, 96, 1]])
    _, _, history = train(mx.cpu(), [(X, Y, whole)])
    assert onp.isfinite(history[0]["loss"])
