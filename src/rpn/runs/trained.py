"""A run folder, and the proposal model it holds.

``rpn train`` (and :func:`rpn.fit`) writes a run folder::

    RUN/config.json      the settings, the data and the seed
    RUN/checkpoint/      parameters and optimizer state (rpn.runs.checkpoint)
    RUN/metrics.json     per-epoch history and the final proposal recall
    RUN/curves.png, recall_iou.png, predictions.png

``rpn export`` writes an export folder: the whole proposal pipeline as one
MXNet graph (backbone, head, anchors, decoding, clipping, NMS), so that a
deployed model needs MXNet and nothing of this package::

    EXPORT/rpn-symbol.json, rpn-0000.params   (HybridBlock.export)
    EXPORT/config.json, MANIFEST.json
    EXPORT/.lock         the exporting process's lock (rpn.runs.lock.claim_output)

The graph's inputs are ``data0`` images (B, 3, H, W), normalised with
``RGB_MEAN``/``RGB_STD`` and padded to multiples of the stride, and ``data1`` each
image's ``[height, width]`` (B, 2) in input pixels; its outputs are scores
(B, K) and boxes (B, K, 4), best first, normalised by each image's size
(rows scoring below 0 are padding). ``config.json`` says how images are
resized (``resize``, ``size``, ``max_size``). :func:`load` opens either
folder as a :class:`TrainedModel`: the proposal model with its settings,
classes and origin (nothing is attached to the Gluon block); of a run
folder, its latest checkpoint, its best (``epoch="best"``) or one epoch's
(``epoch=3``), among those the run kept (``rpn train --keep``).
"""
import os
import warnings

import mxnet as mx
from mxnet import gluon

from ..config import DEFAULT_KS, RunConfig
from ..data.images import MAX_PIXELS
from ..data.preprocess import Resize
from ..model.network import RegionProposalNetwork
from ..model.tiles import propose_tiled
from ..model.outputs import Proposals
from ..ops.devices import as_context_list
from .checkpoint import check_which, load_named
from .fileio import staging_dir, write_json
from .folder import PARAMS_FILE, SYMBOL_FILE, RunError, RunFolder
from .lock import claim_output
from .manifest import verify_manifest, write_manifest

__all__ = ["TrainedModel", "load", "export"]

class TrainedModel:
    """A proposal model with what it was trained for: ``net`` (a
    :class:`rpn.RegionProposalNetwork`, or the ``SymbolBlock`` of an
    export), ``config`` (:class:`rpn.config.RunConfig`), ``classes``,
    ``source`` (the folder it came from, or ``None``) and ``record`` (what
    its ``config.json`` says besides the settings: ``data``, ``images``,
    ``seed``). ``model(X (B, 3, H, W), image_sizes (B, 2))`` gives
    :class:`rpn.model.outputs.Proposals` ``(scores (B, K), boxes (B, K, 4))`` as
    :class:`rpn.RegionProposalNetwork` in inference; ``resize``,
    ``size_divisor`` and ``ctx`` say how to feed it. ``epoch``: the epoch
    (from 1) of the checkpoint it was loaded from, ``None`` for an export
    or a model made in Python."""

    def __init__(self, net, config, *, classes=(), source=None, record=None, ctx=None,
                 epoch=None):
        self.net, self.config = net, config
        self.classes = tuple(classes or config.classes)
        self.source = None if source is None else os.fspath(source)
        self.record = dict(record or {})
        self.ctx = ctx if ctx is not None else net.collect_params().list_ctx()[0]
        self.epoch = epoch

    @classmethod
    def of(cls, model):
        """``model`` as a :class:`TrainedModel`: itself, or a bare
        :class:`rpn.RegionProposalNetwork` with its own settings (and no
        classes, run or data)."""
        if isinstance(model, TrainedModel):
            return model
        if isinstance(model, RegionProposalNetwork):
            # recall at the counts the model keeps (COCO's 100, 300, 1000 at most)
            most = model.settings.post_nms_top_n_test
            ks = tuple(k for k in DEFAULT_KS if k <= most) or (most,)
            return cls(model, RunConfig(model=model.settings, ks=ks))
        raise TypeError(f"expected a trained model (rpn.load), a RegionProposalNetwork or "
                        f"a run folder's path, got {type(model).__name__}")

    @property
    def is_export(self):
        return not isinstance(self.net, RegionProposalNetwork)

    @property
    def resize(self):
        """The :class:`rpn.data.preprocess.Resize` of the model's images."""
        return Resize.of(self.config.model)

    @property
    def size_divisor(self):
        return self.config.model.size_divisor

    @property
    def stride(self):
        return self.config.model.stride

    def with_settings(self, **changes):
        """The same trained model with other inference settings (e.g.
        ``nms_threshold``, ``box_voting``): a new :class:`TrainedModel` whose
        ``config`` says so, sharing the weights. Settings that shape the
        parameters cannot change, and an export's graph cannot either."""
        if self.is_export:
            raise RunError("an export's graph is fixed: change settings on its run folder")
        config = self.config.replace(**changes)
        shaping = self.config.model_mismatch(config)
        if shaping:
            raise RunError(f"{shaping} shape the model's parameters and cannot change")
        net = RegionProposalNetwork(self.net.backbone, self.net.head, config.model)
        net.refiner = self.net.refiner
        return TrainedModel(net, config, classes=self.classes, source=self.source,
                            record=self.record, ctx=self.ctx, epoch=self.epoch)

    def __call__(self, X, image_sizes):
        """Proposals of ``X`` (B, 3, H, W) with ``image_sizes`` (B, 2) input
        pixels, moved to the model's context (an export's graph does not
        follow its inputs). At the images' own resolution (``resize``
        ``native``), a canvas of more than ``max_pixels`` is proposed in
        overlapping tiles of ``tile_size`` (:mod:`rpn.model.tiles`)."""
        X = X.as_in_context(self.ctx)
        image_sizes = image_sizes.as_in_context(self.ctx).astype("float32")
        settings = self.config.model
        if settings.resize == "native" and X.shape[2] * X.shape[3] > settings.max_pixels:
            tile = settings.tile_size
            return Proposals(*propose_tiled(
                self.net, X, image_sizes, tile=tile, overlap=tile // 4,
                nms_threshold=settings.nms_threshold, keep=settings.post_nms_top_n_test,
                divisor=settings.size_divisor))
        return Proposals(*self.net(X, image_sizes))


def _read_export(folder, ctx):
    config, record = folder.read()
    side = config.model.size
    if side * side > MAX_PIXELS:
        raise RunError(f"{folder.file('config.json')}: size={side} would resize every image "
                       f"to at least {side}x{side} pixels, more than the {MAX_PIXELS} an image "
                       "may have; the export's settings were altered")
    verify_manifest(folder.path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gluon.SymbolBlock.imports(folder.file(SYMBOL_FILE), ["data0", "data1"],
                                        folder.file(PARAMS_FILE), ctx=ctx)
    return TrainedModel(net, config, classes=record.get("classes") or (), source=folder.path,
                        record=record, ctx=ctx)


def load(path, ctx=None, *, epoch=None):
    """The :class:`TrainedModel` of a run folder (its latest checkpoint,
    verified) or of an export folder, ready for inference on ``ctx`` (a
    context or a list; the first is used for an export). ``epoch``: of a
    run folder, ``"best"`` (the checkpoint of the best validation recall
    measured between epochs) or an epoch number (from 1) among the
    checkpoints the run kept, instead of the latest; a checkpoint not kept
    is a :class:`rpn.runs.folder.RunError` saying which are."""
    which = check_which(epoch or "latest")
    ctxs = as_context_list(ctx if ctx is not None else mx.cpu())
    folder = RunFolder(path)
    if folder.is_export:
        if which != "latest":
            raise RunError(f"{folder.path} is an export folder, which holds one model: "
                           f"epoch {epoch!r} is for a run folder")
        return _read_export(folder, ctxs[0])
    config, record = folder.read()
    net = RegionProposalNetwork.from_settings(config.model, ctxs)
    try:
        # one whole checkpoint, even while the run trains and replaces it
        state = load_named(folder.checkpoint_dir, net.parts(), ctxs, which)
    except FileNotFoundError as error:
        raise RunError(f"{folder.path}: {error}") from None
    except ValueError as error:
        if type(error) is ValueError:
            shown = {k: config.get(k) for k in ("stride", "anchor_sizes")}
            raise RunError(f"{error}. The run's config.json says: {shown}") from None
        raise
    return TrainedModel(net, config, classes=record.get("classes") or (),
                        source=folder.path, record=record, ctx=ctxs[0],
                        epoch=None if state.get("epoch") is None else state["epoch"] + 1)


def export(model, out, *, ctx=None, epoch=None):
    """Write ``model`` (a run folder's path, of which the checkpoint
    ``epoch`` (see :func:`load`; default the latest), or a
    :class:`TrainedModel` of one) to the export folder ``out`` (see the
    module). One export at a time into ``out``
    (:func:`rpn.runs.lock.claim_output`): another is refused naming it, and
    the temporary folder of a killed one is removed; a file at ``out`` is an
    :class:`rpn.runs.fileio.OutputPathError`. Returns the symbol and
    parameter paths."""
    if isinstance(model, (str, os.PathLike)):
        if RunFolder(model).is_export:
            raise RunError(f"{os.fspath(model)} is already an export")
        model = load(model, ctx, epoch=epoch)
    model = TrainedModel.of(model)
    if model.is_export:
        raise RunError("this model is already an export")
    config, net = model.config, model.net
    ctx = as_context_list(ctx or model.ctx)[0]
    target = RunFolder(out)
    if (target.has_run() and not target.is_export) or (
            model.source and os.path.realpath(out) == os.path.realpath(model.source)):
        raise RunError(f"{os.fspath(out)} holds a run: export into another folder (an export "
                       "there would turn the run into an export)")
    # one writer; what a killed export left (its .export-* folder) is removed
    with claim_output(out, doing="exporting into it"), \
            staging_dir(out, ".export-", what=out) as tmp:     # removed if the export fails
        net.hybridize()
        size = config.model.size if config.model.resize == "fixed" else 64
        net(mx.np.zeros((1, 3, size, size), ctx=ctx), mx.np.array([[size, size]], ctx=ctx))
        net.export(os.path.join(tmp, "rpn"))
        write_json(os.path.join(tmp, "config.json"),
                   dict(model.record, classes=list(model.classes), config=config.to_dict(),
                        exported=True))
        write_manifest(tmp)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    return {"symbol": os.path.join(out, SYMBOL_FILE), "params": os.path.join(out, PARAMS_FILE)}
