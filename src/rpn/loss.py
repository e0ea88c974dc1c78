"""Loss and evaluation of anchor predictions.

Chapter section "Loss and Evaluation Functions"; Faster R-CNN's multi-task
loss, :cite:`Ren.He.Girshick.ea.2015`, eq. (1), with the chapter's L1 box loss.

Shape glossary: ``M`` anchors of a batch (``B * N``), ``K`` classes (2 for
RPN). Labels use :data:`rpn.POSITIVE` (or ``class + 1``),
:data:`rpn.NEGATIVE` and :data:`rpn.IGNORE`.
"""
from mxnet import gluon, np
from mxnet.gluon import nn

from .targets import IGNORE, NEGATIVE

__all__ = ["DetectionLoss", "DetectionEvaluation", "anchor_masks"]


def anchor_masks(cls_labels):
    """(M,) labels -> float (M,) masks of labelled and of positive anchors."""
    labelled = (cls_labels > IGNORE).astype("float32")
    positive = (cls_labels > NEGATIVE).astype("float32")
    return labelled, positive


class DetectionLoss(nn.Block):
    """Object class loss + lambda * bounding box loss.

    Softmax cross-entropy over labelled (not ``IGNORE``) anchors, divided by
    their count, plus ``lambd`` times the L1 loss of the offsets of positive
    anchors (averaged over the 4 coordinates), divided by their count.

    ``forward(cls_preds (M, K), box_preds (M, 4), cls_labels (M,),
    box_labels (M, 4))`` returns an (M,) array whose sum is the loss, as in
    the chapter (``backward`` sums it).

    Departs from the chapter in two ways: a batch without labelled or
    positive anchors divides by 1 instead of 0 (the chapter gives NaN), and
    the counts stay on the device (the chapter's ``float(...)`` waits for
    the host). ``num_valid`` and ``num_pos`` override the counts, which is
    how training on several devices normalises every part by the whole
    batch. ``cls_weight`` (an extra; 1 is the chapter's) weighs the class
    loss: OLN's objectness trains without it (0).
    """

    def __init__(self, lambd, *, cls_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.box_loss = gluon.loss.L1Loss()
        self.lambd, self.cls_weight = lambd, cls_weight

    def forward(self, cls_preds, box_preds, cls_labels, box_labels,
                num_valid=None, num_pos=None):
        labelled, positive = anchor_masks(cls_labels)
        # IGNORE (-1) is not a class index: any index will do, it is masked
        cls = self.cls_loss(cls_preds, np.maximum(cls_labels, 0),
                            labelled[:, None])                 # (M,)
        box = self.box_loss(box_preds, box_labels, positive[:, None])  # (M,)
        num_valid = labelled.sum() if num_valid is None else num_valid
        num_pos = positive.sum() if num_pos is None else num_pos
        if self.cls_weight != 1:
            cls = self.cls_weight * cls
        return (cls / np.maximum(num_valid, 1)
                + self.lambd * box / np.maximum(num_pos, 1))


class DetectionEvaluation:
    """Sums for class error and box MAE (chapter section "Loss and
    Evaluation Functions").

    ``__call__(cls_preds (M, K), box_preds (M, 4), cls_labels (M,),
    box_labels (M, 4))`` returns four scalars on the predictions' device:
    correctly classified labelled anchors, the summed absolute offset error
    of positive anchors divided by 4, the number of labelled anchors and
    the number of positive anchors. Departs from the chapter, whose int64
    ``argmax`` against float32 labels MXNet 1.9.1 refuses ("Type
    inconsistent"), and whose boolean indexing waits for the host.
    """

    def __call__(self, cls_preds, box_preds, cls_labels, box_labels):
        labelled, positive = anchor_masks(cls_labels)
        hits = cls_preds.argmax(axis=-1).astype("float32") == cls_labels
        correct = (hits.astype("float32") * labelled).sum()
        abs_err = (np.abs(box_labels - box_preds).sum(axis=-1) * positive).sum() / 4
        return correct, abs_err, labelled.sum(), positive.sum()
