"""The run's event log (metrics.jsonl) and TensorBoard events: a row at every
read of the device and after every epoch, with the loss terms the step adds
up on the device and the learning rate; hooks that observe and change
nothing; a log that survives kills, resumes and planted links."""
import json
import os
import struct
import sys

import mxnet as mx
import numpy as onp
import pytest

import rpn
from conftest import SMALL, train_tiny
from helpers.models import small_model, train_model
from rpn.data.sources import make_loader, open_split
from rpn.runs.fileio import UnsafePathError
from rpn.training import event_log
from rpn.training.event_log import (EVENT_LOG, EventLog, TensorBoardEvents, read_event_log,
                                    step_row)
from rpn.training.hooks import Callback, DivergenceCheck, Progress


def loader(batch_size=2, num_train=8):
    """Batches of the synthetic set at 64 pixels that keep their ratio."""
    config = SMALL.replace(resize="keep_ratio", max_size=96, batch_size=batch_size)
    found = open_split("synthetic", "train", synthetic=dict(size=64, num_train=num_train,
                                                            num_val=4, seed=0))
    return list(make_loader(found, rpn.Resize.of(config.model), batch_size, train=True))


def parameters(model):
    return {name: p.data().asnumpy() for name, p in model.collect_params().items()}


def events_of(model, batches, **kwargs):
    """The step events and epoch records of training ``model``."""
    seen = []
    train_model(model, batches, hooks=[DivergenceCheck(), Callback(seen.append)], **kwargs)
    return [e for e in seen if e["kind"] == "step"], [e for e in seen if e["kind"] == "epoch"]


@pytest.mark.parametrize("settings", [{}, {"giou_weight": 1.0}])
def test_the_loss_terms_add_up_to_the_loss_at_every_read_and_every_epoch(settings):
    batches = loader()
    model = small_model(SMALL.replace(resize="keep_ratio", max_size=96, **settings), seed=0)
    steps, epochs = events_of(model, batches, epochs=2, log_interval=3)
    names = ["class", "box"] + (["extra"] if settings else [])
    assert len(steps) == 4 and len(epochs) == 2          # steps 3 and 4 of each epoch
    for event in steps:
        assert sorted(event["terms"]) == sorted(names)
        assert sum(event["terms"].values()) == pytest.approx(event["loss"], rel=1e-5)
        assert all(value > 0 for value in event["terms"].values())
    for record in epochs:
        total = sum(record[f"loss_{name}"] for name in names)
        assert total == pytest.approx(record["loss"], rel=1e-5)


def test_the_terms_add_up_over_two_devices():
    """Each device's terms are normalised by the whole batch's counts, as
    its loss is: summed over the devices they are the batch's loss."""
    batches = loader(batch_size=4)
    model = small_model(SMALL.replace(resize="keep_ratio", max_size=96), seed=0,
                        ctx=[mx.cpu(0), mx.cpu(1)])
    steps, epochs = events_of(model, batches, log_interval=1)
    assert len(steps) == 2
    for event in steps:
        assert sum(event["terms"].values()) == pytest.approx(event["loss"], rel=1e-5)
        assert 0 < event["terms"]["class"] < event["loss"]
    assert epochs[0]["loss_class"] + epochs[0]["loss_box"] == pytest.approx(
        epochs[0]["loss"], rel=1e-5)


def test_the_learning_rate_follows_the_schedule():
    """The default preset warms up linearly from 0 over ``warmup_steps``."""
    batches = loader()
    model = small_model(SMALL.replace(resize="keep_ratio", max_size=96), seed=0)
    step, _ = events_of(model, batches, log_interval=1, lr=0.002, lr_schedule="cosine",
                        warmup_steps=20)
    for event in step:
        expected = 0.002 * event["global_step"] / 20
        assert event["lr"] == {"backbone": pytest.approx(expected),
                               "output": pytest.approx(expected)}


def test_the_hooks_observe_and_change_nothing(tmp_path):
    batches = loader()
    plain = small_model(SMALL.replace(resize="keep_ratio", max_size=96), seed=0)
    train_model(plain, batches, epochs=2, hooks=[DivergenceCheck()], log_interval=2)
    watched = small_model(SMALL.replace(resize="keep_ratio", max_size=96), seed=0)
    hooks = [DivergenceCheck(), EventLog(tmp_path), TensorBoardEvents(tmp_path / "tb"),
             Progress(8, disable=True)]
    train_model(watched, batches, epochs=2, hooks=hooks, log_interval=2)
    for hook in hooks:
        hook.close()
    expected, got = parameters(plain), parameters(watched)
    assert sorted(expected) != [] and len(expected) == len(got)
    for (_, a), (_, b) in zip(sorted(expected.items()), sorted(got.items())):
        onp.testing.assert_array_equal(a, b)
    rows = read_event_log(tmp_path / EVENT_LOG)
    assert [r["kind"] for r in rows] == ["step", "step", "epoch"] * 2


def test_a_run_logs_every_read_and_every_epoch(tmp_path):
    out = tmp_path / "run"
    assert train_tiny(out, epochs=2, extra=["--set", "log_interval=1"]) == 0
    rows = read_event_log(out / EVENT_LOG)
    assert [(r["kind"], r["epoch"]) for r in rows] == [
        ("step", 1), ("step", 1), ("epoch", 1), ("step", 2), ("step", 2), ("epoch", 2)]
    assert [r["global_step"] for r in rows] == [1, 2, 2, 3, 4, 4]
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    for row, record in zip(epochs, metrics["history"]):
        assert {k: v for k, v in row.items() if k not in ("kind", "global_step")} == record
    assert epochs[-1]["AR@100"] == metrics["final"]["AR@100"]       # recall after the last
    assert "AR@100" not in epochs[0]
    for row in rows[:2]:
        assert row["loss_class"] + row["loss_box"] == pytest.approx(row["loss"], rel=1e-5)
        assert row["lr_backbone"] > 0 and row["images_per_sec"] > 0
    assert os.path.getsize(out / "curves.png") > 0


def test_a_resume_keeps_the_rows_of_the_epochs_its_checkpoint_holds(tmp_path):
    out = tmp_path / "run"
    assert train_tiny(out, epochs=1) == 0
    before = read_event_log(out / EVENT_LOG)
    # killed in epoch 2: a row of it, and a line cut short
    with open(out / EVENT_LOG, "a") as f:
        f.write(json.dumps(dict(before[0], epoch=2, global_step=3)) + "\n" + '{"kind": "st')
    assert train_tiny(out, epochs=2, extra=["--resume"]) == 0
    rows = read_event_log(out / EVENT_LOG)
    assert rows[:len(before)] == before
    assert [(r["kind"], r["epoch"]) for r in rows[len(before):]] == [("step", 2),
                                                                      ("epoch", 2)]
    with open(out / EVENT_LOG, "rb") as f:
        assert f.read().endswith(b"}\n")


def test_a_link_planted_at_the_log_is_replaced_not_followed(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    os.symlink(target, out / EVENT_LOG)
    assert train_tiny(out, epochs=1) == 0
    assert target.read_text() == "precious"
    assert not os.path.islink(out / EVENT_LOG) and read_event_log(out / EVENT_LOG)


def test_a_link_planted_after_the_log_is_made_is_refused(tmp_path, monkeypatch):
    """Between the atomic creation and the opening for appends: the opening
    follows no link."""
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    made = event_log.write_bytes

    def then_plant(path, data):
        made(path, data)
        os.replace(path, str(path) + ".gone")
        os.symlink(target, path)
    monkeypatch.setattr(event_log, "write_bytes", then_plant)
    log = EventLog(tmp_path)
    trainer = type("Trainer", (), {"rank": 0, "start": 0})()
    with pytest.raises(UnsafePathError, match="refusing to write through it"):
        log.before_train(trainer)
    assert target.read_text() == "precious" and log.fd is None


def test_reading_skips_a_cut_line_and_names_bad_ones(tmp_path):
    path = tmp_path / EVENT_LOG
    path.write_text('{"kind": "step", "epoch": 1}\nnot json\n[1, 2]\n{"kind": "epoch", '
                    '"epoch": 1}\n{"kind": "st')
    with pytest.warns(UserWarning, match=r"lines \[2, 3\]"):
        rows = read_event_log(path)
    assert rows == [{"kind": "step", "epoch": 1}, {"kind": "epoch", "epoch": 1}]


def tensorboard_scalars(folder):
    """``{(tag, step): value}`` of the TensorBoard event files in ``folder``
    (records: length, its CRC, an Event protocol buffer, its CRC)."""
    from tensorboardX.proto import event_pb2
    found = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):
            size = struct.unpack("<Q", data[at:at + 8])[0]
            event = event_pb2.Event()
            event.ParseFromString(data[at + 12:at + 12 + size])
            at += 16 + size
            for value in event.summary.value:
                found[(value.tag, event.step)] = value.simple_value
    return found


def test_tensorboard_events_hold_the_rows_of_the_log(tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "run"
    assert train_tiny(out, epochs=2, extra=["--set", "log_interval=1"]) == 0
    scalars = tensorboard_scalars(out / "tensorboard")
    rows = read_event_log(out / EVENT_LOG)
    for row in rows:
        prefix = "train" if row["kind"] == "step" else "epoch"
        for key in ("loss", "loss_class", "loss_box", "images_per_sec"):
            assert scalars[(f"{prefix}/{key}", row["global_step"])] == pytest.approx(
                row[key], rel=1e-6)
    last = rows[-1]
    assert scalars[("epoch/AR_100", last["global_step"])] == pytest.approx(last["AR@100"])
    assert not any(value < 0 for (tag, _), value in scalars.items() if "AR" in tag)


def test_without_tensorboardx_one_line_and_no_events(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)        # import fails
    out = tmp_path / "run"
    assert train_tiny(out, epochs=1) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "TensorBoard" in line]
    assert said == ["rpn train: no TensorBoard events: tensorboardX is not installed (pip "
                    "install tensorboardX); metrics.jsonl has the same figures"]
    assert not os.path.exists(out / "tensorboard") and read_event_log(out / EVENT_LOG)


def test_a_step_row_holds_each_term_and_rate():
    event = {"epoch": 0, "step": 4, "steps": 10, "global_step": 5, "loss": 1.5,
             "terms": {"class": 0.5, "box": 1.0}, "lr": {"backbone": 0.1, "output": 0.2},
             "images_per_sec": 9.0, "class_err": 0.25, "box_mae": None}
    row = step_row(event, started=0.0)
    assert row["kind"] == "step" and row["epoch"] == 1 and row["step"] == 5
    assert row["loss_class"] == 0.5 and row["loss_box"] == 1.0
    assert row["lr_backbone"] == 0.1 and row["lr_output"] == 0.2 and row["box_mae"] is None
