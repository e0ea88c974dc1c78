"""A run folder, and the proposal model it holds.

``rpn train`` (and :func:`rpn.fit`) writes a run folder::

    RUN/config.json      the settings, the data and the seed
    RUN/checkpoint/      parameters and optimizer state (rpn.checkpoint)
    RUN/metrics.json     per-epoch history and the final proposal recall
    RUN/curves.png, recall_iou.png, predictions.png

``rpn export`` writes an export folder: the whole proposal pipeline as one
MXNet graph (backbone, head, anchors, decoding, clipping, NMS), so that a
deployed model needs MXNet and nothing of this package::

    EXPORT/rpn-symbol.json, rpn-0000.params   (HybridBlock.export)
    EXPORT/config.json, MANIFEST.json

The graph's inputs are ``data0`` images (B, 3, H, W), normalised with
``RGB_MEAN``/``RGB_STD`` and padded to multiples of the stride, and ``data1`` each
image's ``[height, width]`` (B, 2) in input pixels; its outputs are scores
(B, K) and boxes (B, K, 4), best first, normalised by each image's size
(rows scoring below 0 are padding). ``config.json`` says how images are
resized (``resize``, ``size``, ``max_size``). :func:`load` opens either
folder as a ready proposal model.
"""
import os
import warnings

import mxnet as mx
from mxnet import gluon

from .checkpoint import load_checkpoint, verify_manifest, write_manifest
from .config import RunConfig, build_proposal_model
from .fileio import make_dir, read_json, staging_dir, write_json
from .batching import as_context_list

__all__ = ["RunFolder", "load", "export", "ExportedModel", "RunError"]

_SYMBOL, _PARAMS = "rpn-symbol.json", "rpn-0000.params"


class RunError(ValueError):
    """A run or export folder that cannot be used as asked."""


class RunFolder:
    """The files of one run folder (see the module). ``path`` need not
    exist yet."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def checkpoint_dir(self):
        return self.file("checkpoint")

    @property
    def is_export(self):
        return os.path.isfile(self.file(_SYMBOL))

    def has_run(self):
        return os.path.lexists(self.checkpoint_dir) or os.path.lexists(self.file("config.json"))

    def read(self):
        """``(config, saved)``: the :class:`rpn.config.RunConfig` and the whole
        ``config.json`` (data, images, seed, classes). Errors name the file."""
        path = self.file("config.json")
        if not os.path.isfile(path):
            raise RunError(f"{self.path!r} holds no config.json: give the --out folder "
                           "of 'rpn train' or of 'rpn export'")
        try:
            saved = read_json(path, what="run configuration")
            if not isinstance(saved, dict) or "config" not in saved:
                raise ValueError("expected an object with a 'config' entry")
            config = RunConfig.from_dict(saved["config"])
        except (ValueError, TypeError) as error:
            raise RunError(f"{path}: {error}") from None
        return config, saved

    def write_config(self, config, **meta):
        make_dir(self.path)
        write_json(self.file("config.json"), dict(meta, config=config.to_dict()))

    def write_metrics(self, data):
        write_json(self.file("metrics.json"), data)


class ExportedModel:
    """An export folder as a proposal model: ``model(X, image_sizes) ->
    (scores (B, K), boxes (B, K, 4))`` as
    :class:`rpn.RegionProposalNetwork` in inference; ``config``, ``resize``
    and ``classes`` as saved."""

    def __init__(self, path, ctx):
        folder = RunFolder(path)
        self.config, self.saved = folder.read()
        self.resize = self.config.resize_rule()
        self.classes = tuple(self.saved.get("classes") or self.config.classes)
        verify_manifest(folder.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = gluon.SymbolBlock.imports(folder.file(_SYMBOL), ["data0", "data1"],
                                                 folder.file(_PARAMS), ctx=ctx)
        self.ctx = ctx

    def __call__(self, X, image_sizes):
        return self.net(X, image_sizes.astype("float32"))


def load(path, ctx=None):
    """The proposal model of a run folder (its latest checkpoint, verified)
    or of an export folder, ready for inference on ``ctx`` (a context or a
    list; the first is used for an export): a
    :class:`rpn.RegionProposalNetwork` with ``config`` and ``classes``
    attributes, or an :class:`ExportedModel`."""
    ctxs = as_context_list(ctx if ctx is not None else mx.cpu())
    folder = RunFolder(path)
    if folder.is_export:
        return ExportedModel(folder.path, ctxs[0])
    config, saved = folder.read()
    model = build_proposal_model(config, ctxs)
    try:
        load_checkpoint(folder.checkpoint_dir, model.backbone, model.head, ctxs)
    except FileNotFoundError as error:
        raise RunError(f"{folder.path}: {error}") from None
    except ValueError as error:
        if type(error) is ValueError:
            raise RunError(f"{error}. The run's config.json says: "
                           f"{ {k: saved['config'].get(k) for k in ('stride', 'anchor_sizes')} }"
                           ) from None
        raise
    model.config, model.saved = config, saved
    model.classes = tuple(saved.get("classes") or config.classes)
    return model


def export(model, out, *, ctx=None):
    """Write ``model`` (a run folder's path or a loaded
    :class:`rpn.RegionProposalNetwork` with its ``config``) to the export
    folder ``out`` (see the module). Returns the symbol and parameter
    paths."""
    if isinstance(model, (str, os.PathLike)):
        if RunFolder(model).is_export:
            raise RunError(f"{os.fspath(model)} is already an export")
        model = load(model, ctx)
    if isinstance(model, ExportedModel):
        raise RunError("this model is already an export")
    config = model.config
    ctx = as_context_list(ctx or model.backbone.collect_params().list_ctx()[0])[0]
    make_dir(out)
    with staging_dir(out, ".export-", what=out) as tmp:     # removed if the export fails
        model.hybridize()
        size = config.size if config.resize == "fixed" else 64
        model(mx.np.zeros((1, 3, size, size), ctx=ctx), mx.np.array([[size, size]], ctx=ctx))
        model.export(os.path.join(tmp, "rpn"))
        write_json(os.path.join(tmp, "config.json"),
                   dict(model.saved, config=config.to_dict(), exported=True))
        write_manifest(tmp)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    return {"symbol": os.path.join(out, _SYMBOL), "params": os.path.join(out, _PARAMS)}
