"""Proposal quality: recall of the objects among the top-K proposals.

Not in the chapter, which judges proposals by eye; this is how proposals
are measured in the literature (Faster R-CNN, :cite:`Ren.He.Girshick.ea.2015`,
fig. 4, recall against IoU; COCO's average recall ``AR@K``).

``R@K@T``: the fraction of objects (over the whole split) whose best IoU
with their image's top-``K`` proposals (after NMS) is at least ``T``.
``AR@K``: ``R@K@T`` averaged over ``T = 0.50, 0.55, ..., 0.95``.

Shape glossary: ``B`` images, ``G`` object rows (padded with class ``-1``),
``M`` proposals an image, ``K`` proposal counts. Boxes are corner form,
normalised.
"""
import numpy as onp
from mxnet import np

from .boxes import _pairwise_iou
from .predict import predict_rpn
from .train import _split, as_context_list

__all__ = ["ProposalRecall", "evaluate_proposals", "AR_THRESHOLDS"]

#: The IoU thresholds that ``AR@K`` averages over.
AR_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


class ProposalRecall:
    """Accumulates, for every object, its best IoU among the top ``K``
    proposals of its image, for each ``K`` in ``ks``.

    ``update(preds, Y)``: ``preds`` as from :func:`rpn.predict_rpn` (a list
    of ``[scores (M,), boxes (4, M)]``, best first), ``Y`` (B, G, 5) ground
    truth. ``result()`` gives the dict of ``R@K@T`` (``thresholds``),
    ``AR@K``, ``images`` and ``objects``; ``best_ious[K]`` holds the
    per-object values for plotting recall against IoU.
    """

    def __init__(self, ks=(10, 100, 300), thresholds=(0.5, 0.7)):
        self.ks, self.thresholds = tuple(ks), tuple(thresholds)
        self._best = {k: [] for k in self.ks}
        self.images = 0

    def update(self, preds, Y):
        if Y.ndim != 3 or Y.shape[-1] != 5 or len(preds) != Y.shape[0]:
            raise ValueError(f"expected one prediction per image of Y (B, G, 5), "
                             f"got {len(preds)} predictions and Y {Y.shape}")
        valid = Y[..., 0].asnumpy() >= 0                                  # (B, G)
        top = max(self.ks)
        for (_, boxes), gt, objects in zip(preds, Y, valid):
            self.images += 1
            if not objects.any():
                continue
            if boxes.shape[1] == 0:
                best = onp.zeros((len(objects), len(self.ks)))
            else:
                gt_boxes = gt[:, 1:].as_in_context(boxes.ctx)             # (G, 4)
                ious = _pairwise_iou(gt_boxes, boxes[:, :top].T)          # (G, M)
                best = np.stack([ious[:, :k].max(axis=1) for k in self.ks],
                                axis=1).asnumpy()                         # (G, len(ks))
            for j, k in enumerate(self.ks):
                self._best[k].append(best[objects, j])

    @property
    def best_ious(self):
        return {k: onp.concatenate(v) if v else onp.zeros(0)
                for k, v in self._best.items()}

    def recall(self, k, threshold):
        best = self.best_ious[k]
        return float((best >= threshold - 1e-6).mean()) if len(best) else 0.0

    def result(self):
        out = {"images": self.images, "objects": int(len(self.best_ious[self.ks[0]]))}
        for k in self.ks:
            out[f"AR@{k}"] = float(onp.mean([self.recall(k, t) for t in AR_THRESHOLDS]))
            for t in self.thresholds:
                out[f"R@{k}@{t}"] = self.recall(k, t)
        return out


def evaluate_proposals(backbone, output_model, data_iter, anchor_fn, *,
                       nms_threshold=0.7, ks=(10, 100, 300), ctx=None,
                       pre_nms_top_n=None, min_size=0.0, recall=None):
    """Recall of the objects of ``data_iter`` among the proposals of the
    model (see the module's definitions). ``ctx`` one context or a list;
    returns :meth:`ProposalRecall.result`, and fills ``recall`` (a
    :class:`ProposalRecall`) when given, for plotting."""
    ctxs = as_context_list(ctx)
    recall = recall if recall is not None else ProposalRecall(ks)
    for X, Y in data_iter:
        for Xd, Yd in zip(_split(X, ctxs, strict=False), _split(Y, ctxs, strict=False)):
            preds = predict_rpn(backbone(Xd), output_model, anchor_fn, nms_threshold,
                                pre_nms_top_n=pre_nms_top_n,
                                post_nms_top_n=max(recall.ks), min_size=min_size)
            recall.update(preds, Yd)
    return recall.result()
