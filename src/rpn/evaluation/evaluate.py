"""Recall of a trained model on a dataset split: what ``rpn evaluate`` does.

:func:`evaluate` takes a trained model (:func:`rpn.load`), a bare
:class:`rpn.RegionProposalNetwork`, or the path of a run or export folder,
opens the split, checks its images, sends them through the one
preprocessing path (:mod:`rpn.data.preprocess`) with the model's own resize
rule, and measures COCO's proposal recall (:class:`rpn.ProposalRecall`).

Shape glossary: ``B`` images a batch, ``K`` proposals an image; ``X`` (B,
3, H, W), ``Y`` (B, G, 5) corner boxes normalised by each image's size.
"""
import os

from mxnet import np

from ..data.evaluation_split import load_split
from ..runs.trained import TrainedModel, load
from .recall import ProposalRecall

__all__ = ["evaluate", "evaluate_loader", "trained_model"]


def trained_model(model, ctx=None, *, epoch=None):
    """``model`` (a path, a :class:`rpn.runs.trained.TrainedModel` or a
    :class:`rpn.RegionProposalNetwork`) as a :class:`rpn.runs.trained.TrainedModel`
    (of a run folder's path, the checkpoint ``epoch``: see :func:`rpn.load`)."""
    if isinstance(model, (str, os.PathLike)):
        return load(model, ctx, epoch=epoch)
    return TrainedModel.of(model)


def evaluate_loader(model, loader, *, ks=None, thresholds=(0.5, 0.7), progress=None):
    """Recall of ``loader``'s objects (it yields ``(X, Y, info)``) among the
    proposals of ``model`` (a :class:`rpn.runs.trained.TrainedModel`). Returns
    ``(result, recall)``: the dict of :meth:`rpn.ProposalRecall.result` plus
    ``skipped_images`` (images that could not be read), and the
    :class:`rpn.ProposalRecall` for plots."""
    recall = ProposalRecall(ks or model.config.ks, thresholds)
    skipped = 0
    for X, Y, info in loader:
        sizes = np.array(info.sizes, dtype="float32", ctx=model.ctx)
        scores, boxes = model(X.as_in_context(model.ctx), sizes)
        recall.update_batch(scores, boxes, Y, info)
        skipped += int((~info.readable).sum())
        if progress is not None:
            progress(len(info))
    result = recall.result()
    result["skipped_images"] = skipped
    return result, recall


def evaluate(model, data=None, split=None, *, classes=None, images=None, ks=None,
             batch_size=None, num_workers=0, ctx=None, skip_bad=False, progress=False,
             epoch=None, on_batch=None):
    """Proposal recall of ``model`` (a trained model, a
    :class:`rpn.RegionProposalNetwork` or a run/export folder's path, of
    which ``epoch``: see :func:`rpn.load`) on one split of ``data``
    (default: the data the run was trained on), as ``rpn evaluate`` reports
    it. ``split``: default ``val`` of the run's own data, else
    :func:`rpn.data.sources.resolve_split`'s (all of a single annotation
    file). The images and objects used (and left out, and why) are counted
    on stderr, with a progress bar of the image check when ``progress``;
    ``on_batch(n)`` is called after each batch of ``n`` images measured.
    Returns ``(result, recall)`` (see :func:`evaluate_loader`)."""
    model = trained_model(model, ctx, epoch=epoch)
    found, loader = load_split(model, data, split, classes=classes, images=images,
                               batch_size=batch_size, num_workers=num_workers,
                               skip_bad=skip_bad, progress=progress, require_objects=True,
                               command="rpn evaluate")
    return evaluate_loader(model, loader, ks=ks, progress=on_batch)
