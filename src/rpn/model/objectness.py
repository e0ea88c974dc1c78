"""Objectness from localisation quality: the Object Localization Network.

The chapter's objectness is a classifier: it learns "looks like a trained
class" and scores everything else as background, so objects of classes
never trained on get low scores. OLN (Kim, Lin, Angelova, Kweon and Kuo,
"Learning Open-World Object Proposals without Learning to Classify",
2022) scores an anchor instead by how well it is placed on *some* object:
the head's quality branch predicts the centerness of the anchor's centre
in its object's box,

    sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)),

``l, r, t, b`` the distances from the centre to the box's four sides (0
when the centre is outside), learnt with an L1 loss on its sigmoid over
the anchors that overlap an object with IoU >= ``pos_iou`` (0.3), a
shortfall of ``samples`` an image filled with anchors of IoU < ``neg_iou``
(0.1) at target 0, as OLN's code samples them. Proposals then rank by the
predicted centerness (with the refinement stage, by ``sqrt(centerness *
IoU)``, OLN-Box's score).

Shape glossary: ``B`` images, ``N`` anchors an image (canvas frame, corner
form), ``G`` object rows an image.
"""
from mxnet import np

from ..boxes import OFFSET_WEIGHTS, _decode, _planes
from ..targets import label_anchors

__all__ = ["centerness", "centerness_targets"]


def centerness(anchors, boxes):
    """The centerness of each anchor's centre in its box: ``anchors`` and
    ``boxes`` (..., 4) corner form, broadcast -> (...), in [0, 1]; 0 where
    the centre is outside the box."""
    ax0, ay0, ax1, ay1 = _planes(anchors, np)
    bx0, by0, bx1, by1 = _planes(boxes, np)
    cx, cy = (ax0 + ax1) / 2, (ay0 + ay1) / 2
    left, right, top, bottom = cx - bx0, bx1 - cx, cy - by0, by1 - cy
    inside = (np.minimum(np.minimum(left, right), np.minimum(top, bottom)) > 0)
    left, right = np.maximum(left, 0), np.maximum(right, 0)
    top, bottom = np.maximum(top, 0), np.maximum(bottom, 0)
    ratio = (np.minimum(left, right) / np.maximum(np.maximum(left, right), 1e-12)
             * np.minimum(top, bottom) / np.maximum(np.maximum(top, bottom), 1e-12))
    return np.where(inside, np.sqrt(ratio), 0.0)


def centerness_targets(ground_truth, anchors, *, valid=None, pos_iou=0.3, neg_iou=0.1,
                       samples=256, crowd_ioa=0.5, method="auto", validate=False):
    """What the centerness branch learns, for every anchor of a batch:
    ``(targets (B * N,), weights (B * N,))``: anchors of IoU >= ``pos_iou``
    with an object (at most ``samples`` an image, drawn at random) get
    their centre's centerness in that object's box and weight 1; the rest of
    ``samples`` is filled with anchors of IoU < ``neg_iou`` at target 0 and
    weight 1; every other anchor weight 0. ``ground_truth`` (B, G, 5) and
    ``anchors`` (4, N) in one frame; ``valid`` (B, N), ``crowd_ioa`` and
    ``method`` as :func:`rpn.label_anchors`, whose sampling (Faster
    R-CNN's, all positives allowed) it is."""
    # IoU >= pos_iou: label_anchors's positives are above its pos_iou
    cls_labels, offsets = label_anchors(
        ground_truth, anchors, max(pos_iou - 1e-6, 0.0), neg_iou, None, valid=valid,
        crowd_ioa=crowd_ioa, validate=validate, method=method, anchors_per_image=samples,
        positive_fraction=1.0)                                     # (B, N), (B, N, 4)
    positive = cls_labels > 0
    corners = anchors.T                                             # (4, N) -> (N, 4)
    # each positive's object, decoded from its offsets: (B, N, 4)
    objects = _decode(np.broadcast_to(corners[None], offsets.shape), offsets, OFFSET_WEIGHTS)
    targets = np.where(positive, centerness(corners[None], objects), 0.0)
    weights = (cls_labels >= 0).astype("float32")
    # (B, N) -> (B * N,)
    return targets.reshape(-1).astype("float32"), weights.reshape(-1)
