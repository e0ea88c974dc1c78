"""The hooks around the training steps, each on a tiny run of the shared
trainer (the proposal model on two 64-pixel batches of two images): the
divergence check, checkpoints and their resume, the chapter's anchor
metrics of a test set, recall between epochs, the callbacks of
train_detection, and the progress lines."""
import json
import os
import types

import numpy as onp
import pytest
from mxnet import gluon, np

from conftest import SMALL
from helpers.models import make_trainer, small_model, tiny_batches, train_model
from rpn.runs.checkpoint import latest_checkpoint, write_checkpoint
from rpn.runs.trained import TrainedModel
from rpn.training.hooks import (AnchorMetrics, Callback, Checkpointer, DivergenceCheck,
                                EpochEnd, EpochRecall, Hook, Progress)
from rpn.training.step import anchor_metrics


@pytest.fixture(scope="module")
def batches():
    """Two training batches of two synthetic 64-pixel images."""
    return tiny_batches(2)


class Snapshot(Hook):
    """Records a parameter of the trained parts when training begins (after
    the hooks before it, e.g. a resume)."""

    def before_train(self, trainer):
        self.start = trainer.start
        self.weight = trainer.parts["output"].conv.weight.data().asnumpy().copy()


def test_a_diverging_loss_names_the_learning_rates_of_each_part():
    model = small_model(seed=1)
    with pytest.raises(FloatingPointError,
                       match=r"rates \(output 1000000.0, backbone 1000000.0\)"):
        train_model(model, tiny_batches(4) * 3, epochs=1, lr=1e6, log_interval=1,
                    optimizer="sgd")



def test_the_divergence_check_reads_the_sums_and_names_the_last_good_checkpoint(tmp_path):
    trainer = types.SimpleNamespace(lrs={"backbone": 0.25, "output": 0.5})
    event = {"loss": 2.0, "sums": [8.0, 1.0, 1.0, 4.0, 2.0], "epoch": 1, "first_step": 2,
             "step": 3}
    DivergenceCheck().after_log(trainer, event)                        # a finite loss
    DivergenceCheck(max_loss=None).after_log(trainer, dict(event, loss=1e9))
    with pytest.raises(FloatingPointError, match=r"loss became 20000.0 at epoch 2, steps "
                                                 r"3-4: .*\(backbone 0.25, output 0.5\)"):
        DivergenceCheck().after_log(trainer, dict(event, loss=2e4))
    with pytest.raises(FloatingPointError) as caught:
        DivergenceCheck().after_log(trainer, dict(event, sums=[8.0, 1.0, 1.0, float("inf"),
                                                                2.0]))
    assert "last good checkpoint" not in str(caught.value)
    # with a checkpoint of the run: named, and kept
    dense = gluon.nn.Dense(2)
    dense.initialize()
    dense(np.zeros((1, 3)))
    folder = str(tmp_path / "checkpoint")
    kept = write_checkpoint(folder, 0, {"output": dense}, gluon.Trainer(
        dense.collect_params(), "sgd", update_on_kvstore=False), {"epoch": 0})
    with pytest.raises(FloatingPointError, match=f"the last good checkpoint is kept: {kept}$"):
        DivergenceCheck(checkpoint_dir=folder).after_log(trainer, dict(event, loss=float("nan")))
    DivergenceCheck(checkpoint_dir=str(tmp_path / "none")).after_log(trainer, event)


def test_checkpoints_are_written_every_epoch_and_a_resume_continues_them(tmp_path, batches):
    folder = tmp_path / "checkpoint"
    first_model = small_model(seed=1)
    first = make_trainer(first_model, hooks=[Checkpointer(str(folder), config={"size": 64})],
                         seed=5)
    first.train(batches, 1)
    latest = latest_checkpoint(str(folder))
    assert latest == str(folder / "epoch-0001")
    state = json.load(open(os.path.join(latest, "state.json")))
    assert state["epoch"] == 0 and state["seed"] == 5 and state["config"] == {"size": 64}
    assert state["history"] == json.loads(json.dumps(first.history))
    trained = first_model.head.conv.weight.data().asnumpy()
    # a fresh model resumes: the first run's weights, history and seed
    snapshot = Snapshot()
    second = make_trainer(small_model(seed=2), hooks=[Checkpointer(str(folder), resume=True),
                                                      snapshot], seed=None)
    history = second.train(batches, 3)
    assert snapshot.start == 1 and second.seed == 5
    onp.testing.assert_array_equal(snapshot.weight, trained)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0] == state["history"][0]                   # continued, not retrained
    assert sorted(os.listdir(folder)) == ["epoch-0003", "latest"]
    # without a checkpoint a resume starts afresh; a worker of rank 1 writes none
    third = make_trainer(small_model(seed=2), hooks=[
        Checkpointer(str(tmp_path / "other"), resume=True)])
    third.rank = 1
    assert len(third.train(batches[:1], 1)) == 1 and third.start == 0
    assert not os.path.exists(tmp_path / "other")


def test_anchor_metrics_fill_the_test_metrics_of_every_epoch(batches):
    """Every negative candidate labelled (no random draw): the hook's figures
    are the chapter's anchor metrics of the test set measured again after
    training."""
    model = small_model(SMALL.replace(neg_pos_ratio=None), seed=1)
    trainer = make_trainer(model, hooks=[AnchorMetrics(batches[:1])])
    history = trainer.train(batches, 2)
    for record in history:
        assert 0 <= record["test_class_err"] <= 1 and record["test_box_mae"] >= 0
    again = anchor_metrics(trainer.step.forward, batches[:1], trainer.ctxs)
    assert again["images"] == 2
    assert history[-1]["test_class_err"] == pytest.approx(again["class_err"], abs=1e-6)
    assert history[-1]["test_box_mae"] == pytest.approx(again["box_mae"], rel=1e-5)


def test_epoch_end_and_callback_get_what_train_detection_documents(batches):
    events = []
    history = train_model(small_model(seed=1), batches, epochs=2, log_interval=1, hooks=[
        EpochEnd(lambda epoch: {"extra": 10 * epoch}), Callback(events.append)])
    assert [e["kind"] for e in events] == ["step", "step", "epoch"] * 2
    steps = [e for e in events if e["kind"] == "step"]
    assert [(e["epoch"], e["step"], e["advance"], e["steps"]) for e in steps] == [
        (0, 0, 1, 2), (0, 1, 1, 2), (1, 0, 1, 2), (1, 1, 1, 2)]
    for e in steps:
        # and, since 0.4.0, the loss terms, the learning rates and the global step
        assert set(e) == {"kind", "epoch", "step", "steps", "advance", "loss",
                          "images_per_sec", "class_err", "box_mae", "terms", "lr",
                          "global_step"}
        assert set(e["terms"]) == {"class", "box"} and set(e["lr"]) == {"backbone", "output"}
    # the step events' mean losses make the epoch's
    assert history[0]["loss"] == pytest.approx((steps[0]["loss"] + steps[1]["loss"]) / 2)
    epochs = [e for e in events if e["kind"] == "epoch"]
    for epoch, (event, record) in enumerate(zip(epochs, history)):
        assert record["epoch"] == epoch + 1 and record["extra"] == 10 * epoch
        assert event == dict(record, kind="epoch", epoch=epoch)          # 0-based
        assert record["test_class_err"] is None                   # no test set


def test_recall_is_measured_every_n_epochs_and_after_the_last(batches):
    model = small_model(seed=1)
    recall = EpochRecall(TrainedModel.of(model), batches[:1], every=2)
    trainer = make_trainer(model, hooks=[recall])
    history = trainer.train(batches[:1], 3)
    assert ["AR@100" in h for h in history] == [False, True, True]
    assert history[1]["test_class_err"] is not None and history[0]["test_class_err"] is None
    assert recall.last["epoch"] == 2 and recall.last["result"]["AR@100"] == history[2]["AR@100"]
    assert recall.last["result"]["seconds"] > 0 and recall.last["recall"].ks
    for every, due in ((0, [4]), (2, [1, 3, 4]), (5, [4])):
        hook = EpochRecall(None, None, every=every)
        assert [e for e in range(5) if hook.due(types.SimpleNamespace(num_epochs=5), e)] == due
    # a run resumed after its last epoch measures it when training ends, on rank 0
    for rank, measured in ((0, True), (1, False)):
        late = EpochRecall(TrainedModel.of(model), batches[:1])
        late.after_train(types.SimpleNamespace(num_epochs=3, rank=rank, step=trainer.step,
                                               ctxs=trainer.ctxs))
        assert (late.last.get("epoch") == 2) == measured


def test_progress_says_one_line_an_epoch_when_the_bar_is_off(batches, capsys):
    lines = []
    progress = Progress(4, disable=True, say=lines.append)
    history = train_model(small_model(seed=1), batches, epochs=2, hooks=[progress])
    progress.close()
    # the loss with its terms, and the learning rate of the last read (train_model's 0.001)
    assert lines == [f"epoch {h['epoch']}: loss {h['loss']:.3f} (class {h['loss_class']:.3f}, "
                     f"box {h['loss_box']:.3f}), lr 1.0e-03, "
                     f"{h['images_per_sec']:.1f} images/s" for h in history]
    assert capsys.readouterr().err == ""
    record = dict(history[0], skipped_images=3, **{"AR@100": 0.25})
    progress.after_epoch(None, record)
    assert lines[-1] == (f"epoch 1: loss {record['loss']:.3f} (class {record['loss_class']:.3f}"
                         f", box {record['loss_box']:.3f}), lr 1.0e-03, val AR@100 0.250, "
                         f"{record['images_per_sec']:.1f} images/s, 3 unreadable images "
                         "skipped")
    # with the bar on, the line goes under it on stderr
    shown = Progress(4, say=lines.append)
    shown.after_epoch(None, history[1])
    shown.close()
    assert len(lines) == 3 and lines[1] in capsys.readouterr().err
