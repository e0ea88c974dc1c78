"""Small models, batches and trainers for the tests (of ``conftest.SMALL``'s
settings by default), and checks that two models propose the same."""
import functools
import os

import mxnet as mx
import numpy as onp

import rpn
from conftest import SMALL
from rpn.model.network import RegionProposalNetwork

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


def tiny_batches(num=2, size=64, config=SMALL, size_divisor=8):
    """``num`` training batches of 2 synthetic ``size``-pixel images, as
    :func:`rpn.fit` loads them for ``config``'s model (a list)."""
    found = rpn.data.sources.open_split("synthetic", "train", synthetic=dict(
        size=size, num_train=num * 2, num_val=2, seed=0))
    return list(rpn.data.sources.make_loader(found, rpn.Resize.of(config.model), 2,
                                             train=True, size_divisor=size_divisor))


def make_trainer(model, lr=0.001, hooks=None, **kwargs):
    """The trainer :func:`rpn.fit` trains the proposal model ``model`` with
    (its step, the shared trainer, Adam, the divergence check unless
    ``hooks`` are given). ``kwargs``: the trainer's."""
    from rpn.training.hooks import DivergenceCheck
    from rpn.training.optimizer import learning_rates
    from rpn.training.step import ProposalStep
    from rpn.training.trainer import Trainer
    step = ProposalStep(model)
    kwargs = dict(dict(optimizer="adam", seed=0), **kwargs)
    return Trainer(step, model.collect_params().list_ctx(),
                   lrs=learning_rates(step.parts, lr, lr),
                   hooks=[DivergenceCheck()] if hooks is None else hooks, **kwargs)


def train_model(model, loader, epochs=1, lr=0.001, hooks=None, **kwargs):
    """Train the proposal model ``model`` on ``loader`` with
    :func:`make_trainer`'s trainer; returns the history."""
    return make_trainer(model, lr, hooks, **kwargs).train(loader, epochs)


class FakeAmp:
    """What the package may use of ``mxnet.contrib.amp``, recording calls;
    the loss is scaled by 8 and the trainer told to divide by 8, as AMP's
    scaler does."""

    def __init__(self):
        self.calls = []

    def init(self, target_dtype):
        self.calls.append(("init", target_dtype))

    def init_trainer(self, trainer):
        self.calls.append(("init_trainer", type(trainer).__name__))
        trainer._amp_original_scale = trainer._scale

    def scale_loss(self, losses, trainer):
        import contextlib
        self.calls.append(("scale_loss", len(losses)))
        trainer._scale = trainer._amp_original_scale / 8

        @contextlib.contextmanager
        def scaled():
            yield [l * 8 for l in losses]
        return scaled()


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


def export_and_import(model, folder):
    """``model`` (hybridized) exported to ``folder`` as ``rpn-symbol.json``
    and ``rpn-0000.params`` and loaded back as a ``SymbolBlock`` of two
    inputs, images and sizes (MXNet's warning that it cannot infer the
    sizes' type is silenced: the caller gives them as float32)."""
    import warnings
    from mxnet import gluon
    model.export(os.path.join(folder, "rpn"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gluon.SymbolBlock.imports(os.path.join(folder, "rpn-symbol.json"),
                                         ["data0", "data1"],
                                         os.path.join(folder, "rpn-0000.params"))


def assert_exports_the_same(model, X, sizes, eager, folder):
    """``model`` hybridized, and exported to ``folder`` and imported as a
    ``SymbolBlock`` (:func:`export_and_import`), gives ``eager`` (its
    imperative proposals of ``X`` (B, 3, H, W) with ``sizes`` (B, 2)):
    :func:`assert_same_proposals`."""
    model.hybridize()
    assert_same_proposals(eager, model(X, sizes))
    loaded = export_and_import(model, folder)
    assert_same_proposals(eager, loaded(X, sizes.astype("float32")))

