"""The loss of the proposal model.

The chapter's :class:`rpn.DetectionLoss` (Faster R-CNN's multi-task loss,
:cite:`Ren.He.Girshick.ea.2015`, eq. (1), with the chapter's L1 box loss)
over every anchor of a :class:`rpn.model.outputs.TrainingOutput`, plus the
localisation extras of the model's settings.

Shape glossary: ``M`` anchors of a batch (``B * N``), ``P`` positive rows
taken (at most :data:`_POSITIVE_ROWS`), ``R`` RoIs of the refinement stage
(``B * R`` rows). Boxes are corner form, canvas frame.
"""
from mxnet import np, npx
from mxnet.gluon import nn

from ..boxes import OFFSET_WEIGHTS, _decode, generalized_iou, overlap
from ..loss import DetectionLoss, anchor_masks
from .refine import REFINE_WEIGHTS

__all__ = ["ProposalLoss"]


#: The positive anchors of a batch the GIoU and IoU-branch losses take (the
#: positives are far fewer: a few dozen an image).
_POSITIVE_ROWS = 4096


def _spread(value, like):
    """A scalar as a (M,) array like ``like`` whose sum is the scalar."""
    return np.ones_like(like) * (value / like.shape[0])


class ProposalLoss(nn.Block):
    """The loss of the proposal model (:class:`rpn.RegionProposalNetwork`),
    computed from its :class:`rpn.model.outputs.TrainingOutput`: the chapter's
    :class:`DetectionLoss` with weight ``lambd``, plus three extras that
    train localisation (all off by default, which is the chapter's loss):

    * ``giou_weight`` times ``1 - GIoU`` between each positive anchor's
      decoded box and its object (:func:`rpn.boxes.generalized_iou`; a loss
      on the boxes themselves, which the offsets' L1 loss only
      approximates), over the positives;
    * ``iou_weight`` times the binary cross-entropy between the IoU
      branch's prediction (``quality_preds``) and the IoU that the anchor's
      decoded box has with its object (no gradient through the target),
      over the positives: how well a box fits, learnt to rank proposals;
    * ``refine_weight`` times the refinement stage's loss
      (:mod:`rpn.model.refine`), when the output has one;
    * ``centerness_weight`` times OLN's centerness loss
      (:mod:`rpn.model.objectness`), when the output has its targets; and
      ``cls_weight`` weighs the class loss (OLN's trains without it).

    ``forward(output, num_valid=None, num_pos=None)`` returns a (B * N,)
    array whose sum is the loss; ``num_valid`` and ``num_pos`` override the
    counts of labelled and positive anchors (training on several devices
    normalises every part by the whole batch's counts). Build it from the
    model's settings with :meth:`from_settings`.
    """

    def __init__(self, *, lambd=1.0, giou_weight=0.0, iou_weight=0.0, refine_weight=0.0,
                 cls_weight=1.0, centerness_weight=0.0, weights=OFFSET_WEIGHTS, **kwargs):
        super().__init__(**kwargs)
        self.detection = DetectionLoss(lambd, cls_weight=float(cls_weight))
        self.giou_weight, self.iou_weight = float(giou_weight), float(iou_weight)
        self.refine_weight = float(refine_weight)
        self.centerness_weight = float(centerness_weight)
        self.weights = tuple(weights)

    @classmethod
    def from_settings(cls, settings):
        """The loss of a model of :class:`rpn.settings.ModelSettings` ``settings``."""
        centerness = settings.objectness == "centerness"
        return cls(lambd=settings.lambd, giou_weight=settings.giou_weight,
                   iou_weight=settings.iou_weight if settings.iou_branch else 0.0,
                   refine_weight=settings.refine_weight if settings.refine else 0.0,
                   cls_weight=settings.cls_weight,
                   centerness_weight=settings.centerness_weight if centerness else 0.0)

    def forward(self, output, num_valid=None, num_pos=None, refine_counts=None,
                centerness_count=None):
        loss = self.detection(output.cls_preds, output.box_preds, output.cls_labels,
                              output.box_labels, num_valid, num_pos)
        if self.centerness_weight and output.centerness is not None:
            # OLN: the L1 loss of the centerness branch's sigmoid against its
            # targets, over the anchors sampled for it (the same (B * N,) form)
            targets, weights = output.centerness
            count = weights.sum() if centerness_count is None else centerness_count
            loss = loss + self.centerness_weight * weights * np.abs(
                npx.sigmoid(output.quality_preds) - targets) / np.maximum(count, 1)
        if self.refine_weight and output.refine is not None:
            # a scalar spread over the anchor rows keeps the (B * N,) form
            loss = loss + _spread(self.refine_weight * self._refine(output.refine,
                                                                    refine_counts), loss)
        if not (self.giou_weight or (self.iou_weight and output.quality_preds is not None)):
            return loss
        _, positive = anchor_masks(output.cls_labels)                            # (M,)
        num_pos = positive.sum() if num_pos is None else num_pos
        # the positive rows (the losses below count nothing else), as a fixed
        # number of rows so that nothing waits for the host: (M,) -> (P,)
        rows = npx.topk(positive, k=min(_POSITIVE_ROWS, positive.shape[0]),
                        ret_typ="indices").astype("int64")
        weight = np.take(positive, rows) / np.maximum(num_pos, 1)          # (P,)
        # each row's anchor: anchors (4, N) -> (N, 4), row m is anchor m % N
        anchors = np.take(output.anchors.T, rows % output.anchors.shape[1], axis=0)
        boxes = _decode(anchors, np.take(output.box_preds, rows, axis=0), self.weights)
        target = _decode(anchors, np.take(output.box_labels, rows, axis=0), self.weights)
        extra = 0
        if self.giou_weight:
            extra = extra + self.giou_weight * (1 - generalized_iou(boxes, target))   # (P,)
        if self.iou_weight and output.quality_preds is not None:
            fit = overlap(boxes.detach(), target)                          # (P,) IoU target
            extra = extra + self.iou_weight * self._bce(
                np.take(output.quality_preds, rows), fit)
        # the sum over the positive rows, spread as the other terms are
        return loss + _spread((extra * weight).sum(), loss)

    def _refine(self, refine, counts=None):
        """The refinement stage's loss (a scalar) on its ``(B * R, ...)``
        outputs: the L1 loss of its offsets over the positive RoIs (averaged
        over the 4 coordinates) and the binary cross-entropy of its IoU
        prediction against the IoU of its refined box with the RoI's object
        (no gradient through the target) over every real RoI, each divided
        by its count (``counts``: the whole batch's ``(real, positive)``;
        ``None``: this output's)."""
        real, positive = counts or (refine.valid.sum(), refine.positive.sum())
        box = (np.abs(refine.box_preds - refine.box_targets).mean(axis=1)
               * refine.positive).sum() / np.maximum(positive, 1)
        refined = _decode(refine.rois, refine.box_preds.detach(), REFINE_WEIGHTS)
        fit = overlap(refined, refine.objects) * (refine.positive > 0)     # (B * R,)
        quality = (self._bce(refine.quality_preds, fit) * refine.valid).sum() / np.maximum(
            real, 1)
        return box + quality

    @staticmethod
    def _bce(logits, target):
        """Binary cross-entropy of ``sigmoid(logits)`` against soft targets
        in [0, 1], in the stable form ``max(x, 0) - x t + log(1 + e^-|x|)``."""
        return (np.maximum(logits, 0) - logits * target
                + np.log1p(np.exp(-np.abs(logits))))
