"""Shared helpers for the tests: plain NumPy references written per box,
small settings and models, and one tiny trained run folder."""
import functools

import mxnet as mx
import numpy as onp
import psutil
import pytest

import rpn  # noqa: F401  (switches MXNet to NumPy semantics)
from rpn.config import PRESETS
from rpn.model.network import RegionProposalNetwork

#: The default model at 64 pixels (8 x 8 feature maps): what most model
#: tests build.
SMALL = PRESETS["default"].replace(size=64, max_size=96)

#: ``rpn train`` options of a run that takes seconds: 64-pixel images, 8
#: training and 4 validation synthetic images, batches of 4, no bars.
TINY = ["--size", "64", "--batch-size", "4", "--quiet", "--workers", "0",
        "--set", "num_train=8", "--set", "num_val=4"]


def train_tiny(out, epochs=1, extra=(), data="synthetic"):
    """``rpn train`` of a tiny run into ``out``; returns the exit code."""
    from rpn.cli import main
    return main(["train", "--data", data, "--out", str(out), "--epochs", str(epochs)]
                + TINY + list(extra))


def small_model(config=SMALL, ctx=None, seed=3):
    """A freshly initialised proposal model of ``config``'s model settings
    (MXNet seeded with ``seed`` first, unless ``None``), on ``ctx`` (default
    the CPU; a context or a list)."""
    if seed is not None:
        mx.random.seed(seed)
    return RegionProposalNetwork.from_settings(config.model, ctx or [mx.cpu()])


def anchor_fn(config=SMALL):
    """The chapter's ``anchor_fn`` (:func:`rpn.rpn_anchors`) with ``config``'s
    anchors."""
    model = config.model
    return functools.partial(rpn.rpn_anchors, sizes=model.anchor_sizes,
                             ratios=model.anchor_ratios, product=model.anchor_product)


def train_model(model, loader, epochs=1, lr=0.001, hooks=None, **kwargs):
    """Train the proposal model ``model`` on ``loader`` as :func:`rpn.fit`
    does (its step, the shared trainer, Adam, the divergence check unless
    ``hooks`` are given); returns the history. ``kwargs``: the trainer's."""
    from rpn.training.hooks import DivergenceCheck
    from rpn.training.optimizer import learning_rates
    from rpn.training.step import ProposalStep
    from rpn.training.trainer import Trainer
    step = ProposalStep(model)
    kwargs = dict(dict(optimizer="adam", seed=0), **kwargs)
    return Trainer(step, model.collect_params().list_ctx(),
                   lrs=learning_rates(step.parts, lr, lr),
                   hooks=[DivergenceCheck()] if hooks is None else hooks,
                   **kwargs).train(loader, epochs)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny trained run folder shared by the tests that only read it (a
    test that changes a run copies it first)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert train_tiny(out) == 0
    return str(out)


def assert_same_proposals(first, second, tol=1e-5):
    """Two models' proposals of one batch, ``(scores (B, K), boxes (B, K,
    4))`` each, are the same: scores equal within ``tol``, and every box of
    ``first`` is within ``tol`` of a box of ``second`` whose score is within
    ``tol`` of its own. (An exported graph and the same model run
    imperatively round scores differently in the last bit, so proposals of
    near-equal scores can come out in another order.)"""
    sa, ba, sb, bb = (onp.asarray(a.asnumpy() if hasattr(a, "asnumpy") else a)
                      for a in (*first, *second))
    onp.testing.assert_allclose(sa, sb, atol=tol)
    for i in range(len(sa)):
        for k in range(len(sa[i])):
            near = abs(sb[i] - sa[i, k]) <= tol
            assert (abs(bb[i][near] - ba[i, k]).max(-1) <= tol).any(), (i, k, ba[i, k])


def ref_iou(a, b):
    """IoU of two corner boxes, written out by hand (float64)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def random_boxes(rng, n, min_size=0.02):
    """``n`` random non-degenerate boxes (n, 4) inside the unit square."""
    xy = rng.uniform(0, 1 - min_size, size=(n, 2))
    wh = rng.uniform(min_size, 0.6, size=(n, 2))
    return onp.concatenate([xy, onp.minimum(xy + wh, 1.0)], axis=1)


def leftovers(mark):
    """Live processes (not zombies) whose environment has ``RPN_TEST_MARK=mark``:
    what a test's processes left behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("RPN_TEST_MARK") == mark):
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def rng():
    return onp.random.default_rng(0)
