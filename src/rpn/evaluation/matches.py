"""Each object's best proposal: what a run's ``predictions.png`` shows.

Recall counts objects that some proposal among the top ``K`` fits. A
picture of the few best proposals of an image shows where the model is
surest, which is mostly one or two large objects, and makes found objects
look missed. What recall measures is shown instead by drawing, for each
object, the proposal among the image's top ``K`` that overlaps it most,
with that IoU, and by marking the objects that no proposal fits at the
threshold (0.5 by default) as missed.

This is each object's own best (two objects may share a proposal), not
COCO's one-to-one matching of :mod:`rpn.evaluation.recall`; at IoU 0.5 the
two rarely differ.

Shape glossary: ``M`` proposals of one image, best first; ``G`` objects.
Boxes are corner form, in any one frame (normalised or pixels) for both.
"""
import numpy as onp

from ..boxes import overlap

__all__ = ["best_proposals", "BestProposals"]


class BestProposals:
    """The best proposal of each of ``G`` objects: ``index`` (G,) int, the
    rank of the proposal among the top ``K`` (from 0, -1 when there is no
    proposal), ``iou`` (G,) its IoU with the object (0 without one),
    ``found`` (G,) bool, ``iou >= threshold``; ``objects`` (G, 4) and
    ``boxes`` (G, 4) the objects and their best proposals (an object's own
    box where there is none)."""

    def __init__(self, objects, boxes, index, iou, threshold):
        self.objects, self.boxes, self.index, self.iou = objects, boxes, index, iou
        self.threshold = threshold
        self.found = iou >= threshold

    def __len__(self):
        return len(self.objects)


def best_proposals(proposals, objects, *, top_k=100, threshold=0.5):
    """For each object (``objects`` (G, 4)), the proposal among the first
    ``top_k`` of ``proposals`` (M, 4), best first, that overlaps it most
    (the first of equal ones): a :class:`BestProposals`."""
    if int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    proposals = onp.asarray(proposals, dtype="float64").reshape(-1, 4)[:int(top_k)]
    objects = onp.asarray(objects, dtype="float64").reshape(-1, 4)
    if not len(proposals):
        return BestProposals(objects, objects.copy(), onp.full(len(objects), -1),
                             onp.zeros(len(objects)), threshold)
    ious = overlap(proposals[:, None, :], objects[None, :, :], xp=onp)      # (M, G)
    index = ious.argmax(axis=0) if len(objects) else onp.zeros(0, dtype="int64")
    iou = ious[index, onp.arange(len(objects))]
    return BestProposals(objects, proposals[index], index, iou, threshold)
