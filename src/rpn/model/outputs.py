"""What the proposal model returns, as named fields.

Shape glossary: ``B`` images, ``K`` proposals an image, ``N`` anchors an
image. Proposals are corner form, normalised by each image's own width and
height; anchors corner form in the canvas frame.
"""
from typing import Any, NamedTuple, Optional

__all__ = ["Proposals", "TrainingOutput"]


class Proposals(NamedTuple):
    """The proposals of a batch, best first (what
    :class:`rpn.RegionProposalNetwork` returns in training and in
    inference): ``scores`` (B, K) object probabilities, rows scoring below 0
    are padding; ``boxes`` (B, K, 4). Unpacks as ``scores, boxes = ...``."""
    scores: Any
    boxes: Any


class TrainingOutput(NamedTuple):
    """One batch through the model for training
    (:meth:`rpn.RegionProposalNetwork.training_outputs`): the head's
    predictions and the anchors' labels, aligned anchor by anchor, which
    is what a loss and the chapter's metrics take.

    ``cls_preds`` (B * N, 2) logits; ``box_preds`` (B * N, 4) offsets;
    ``cls_labels`` (B * N,) and ``box_labels`` (B * N, 4) as
    :func:`rpn.rpn_targets`; ``anchors`` (4, N); ``proposals`` the
    batch's :class:`Proposals` when asked for (``None`` otherwise);
    ``quality_preds`` (B * N,) the IoU branch's logits (``None`` without
    one); ``refine`` the refinement stage's :class:`rpn.model.refine.RefineOutput`
    (``None`` without one); ``centerness`` ``(targets (B * N,), weights (B *
    N,))`` of OLN's objectness (:mod:`rpn.model.objectness`; ``None`` without
    it)."""
    cls_preds: Any
    box_preds: Any
    cls_labels: Any
    box_labels: Any
    anchors: Any
    proposals: Optional[Proposals] = None
    quality_preds: Any = None
    refine: Any = None
    centerness: Any = None

    @property
    def preds(self):
        """``(cls_preds, box_preds)``, as the chapter's ``batch_fn`` returns them."""
        return self.cls_preds, self.box_preds

    @property
    def labels(self):
        """``(cls_labels, box_labels)``, as the chapter's ``batch_fn`` returns them."""
        return self.cls_labels, self.box_labels
