"""The optimizer's state in a checkpoint: MXNet arrays and JSON, never a
pickle, and a resume from it that continues exactly."""
import json
import os
import pickle

import mxnet as mx
import numpy as onp

import rpn
from conftest import copy_run, train_tiny
from helpers.models import small_model
from rpn.config import PRESETS
from rpn.train import chapter_batch_fn


class _Payload:
    """Unpickling this creates a file: the attack a pickled checkpoint allows."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_what_a_run_folder_holds(tiny_run, tmp_path):
    copy = copy_run(tiny_run, tmp_path)
    latest = rpn.latest_checkpoint(str(copy / "checkpoint"))
    marker = tmp_path / "pwned"
    with open(os.path.join(latest, "trainer.states"), "wb") as f:       # Gluon's file name
        pickle.dump(_Payload(str(marker)), f)
    assert train_tiny(copy, epochs=2, extra=["--resume"]) == 0
    assert not marker.exists()
    # a pickle in place of the optimizer state is refused as corrupt, unread
    latest = rpn.latest_checkpoint(str(copy / "checkpoint"))
    with open(os.path.join(latest, "optimizer.params"), "wb") as f:
        pickle.dump(_Payload(str(marker)), f)
    assert train_tiny(copy, epochs=3, extra=["--resume"]) == 1
    assert not marker.exists()


def test_the_optimizer_state_is_saved_as_arrays_and_resumes_exactly(tmp_path):
    def run(epochs, folder, resume=False):
        loader, _ = rpn.load_data_synthetic(4, 64, 64, num_train=8, num_val=4, seed=2)
        config = PRESETS["default"].replace(size=64, batch_size=4)
        net = small_model(config, seed=1)
        backbone, head = net.backbone, net.head
        rpn.train_detection(backbone, head, chapter_batch_fn(config.model), loader, None,
                            rpn.DetectionLoss(1),
                            epochs, 0.01, 0.01, mx.cpu(), optimizer="adam", seed=5,
                            checkpoint_dir=str(folder), resume=resume, verbose=False)
        return {k: p.data().asnumpy() for net in (backbone, head)
                for k, p in net._collect_params_with_prefix().items()}
    whole = run(3, tmp_path / "whole")
    run(1, tmp_path / "cut")
    meta = json.load(open(tmp_path / "cut" / "epoch-0001" / "optimizer.json"))
    assert meta["optimizer"] == "Adam" and meta["saved"] and meta["num_update"] == 2
    first = meta["states"][min(meta["states"], key=int)]
    assert len(first["tuple"]) == 2 and first["tuple"][0]["array"]   # Adam's mean, variance
    resumed = run(3, tmp_path / "cut", resume=True)
    for key in whole:
        onp.testing.assert_allclose(whole[key], resumed[key], rtol=1e-5, atol=1e-6)
