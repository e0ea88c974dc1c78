"""Proposal quality as the field reports it: recall of the objects among
the top-K proposals, overall and by object size.

Not in the chapter, which judges proposals by eye; this is how proposals
are measured in the literature (Faster R-CNN, :cite:`Ren.He.Girshick.ea.2015`,
fig. 4; COCO's proposal evaluation, ``AR@1000``), and it follows COCO's
rules exactly, so that figures are comparable:

* an image's proposals are taken best first, and each is matched greedily
  to the not yet matched object it overlaps most with IoU >= ``T``: one
  proposal recalls at most one object;
* ``R@K@T``: the fraction of objects (over the whole split) matched by one
  of their image's top-``K`` proposals; ``AR@K``: ``R@K@T`` averaged over
  ``T = 0.50, 0.55, ..., 0.95``;
* crowd regions (:data:`rpn.CROWD`) are not objects: a proposal that falls
  on one (intersection over the proposal's area >= ``T``) is not counted
  against anything;
* ``AR_small@K``, ``AR_medium@K``, ``AR_large@K``: the same for objects
  whose box area in *original image pixels* is at most 32², between 32²
  and 96², at least 96² (COCO's ranges; COCO uses segment areas where it
  has them, this package box areas). As in COCO, objects outside a range
  still take part in its matching, as ignored ones, and a range without
  objects reports -1 (COCO's "no ground truth"), not a recall of 0;
* recall against the number of proposals (the plot of every proposal
  paper: Faster R-CNN's fig. 4, Hosang et al.'s "What makes for effective
  detection proposals?"): :meth:`ProposalRecall.proposal_curve` gives it
  at every count from 1 to the largest ``K``.

The matching is done in arrays (:func:`_match`): the overlaps of blocks of
proposals with every object are computed at once and only the pairs that
reach the lowest threshold are kept, so that an image of thousands of
objects (shelves, crowds, drone views) costs memory in proportion to those
pairs, and time in NumPy, not in a Python loop over proposals x objects
(``benchmarks/crowded_recall.py`` measures it).

Shape glossary: ``B`` images, ``G`` object rows (padded with class ``-1``),
``M`` proposals an image. Boxes are corner form, normalised by each
image's size, except in :meth:`ProposalRecall.update_image` (pixels).
"""
import numpy as onp

from ..boxes import overlap
from ..config import DEFAULT_KS
from ..data.batch import unpack_batch
from ..data.image_set import CROWD
from ..ops.devices import as_context_list, split_batch
from ..predict import predict_rpn

__all__ = ["ProposalRecall", "proposal_recall", "AR_THRESHOLDS", "AREA_RANGES",
           "DEFAULT_KS", "BLOCK", "NO_OBJECTS"]

#: The IoU thresholds that ``AR@K`` averages over (COCO's, to the bit).
AR_THRESHOLDS = tuple(onp.linspace(0.5, 0.95, 10))
#: Object sizes by box area in original pixels (COCO's ranges).
AREA_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e5 ** 2)}
_ALL = (0.0, 1e5 ** 2)
_NONE = onp.iinfo(onp.int64).max        # the rank of an object no proposal matched
#: Proposal-object overlaps computed at once by default (8 MB of float64).
BLOCK = 1 << 20
#: The recall of a size range (or a split) without objects, as COCO reports it.
NO_OBJECTS = -1.0


def _ious(proposals, boxes, crowd):
    """(M, 4) x (G, 4) pixel boxes -> (M, G) IoU; against crowd regions the
    intersection over the proposal's area, as COCO (:func:`rpn.boxes.overlap`)."""
    if len(proposals) == 0 or len(boxes) == 0:
        return onp.zeros((len(proposals), len(boxes)))
    p = proposals[:, None, :]                                      # (M, 1, 4)
    ious = overlap(p, boxes[None, :, :], xp=onp)                   # (M, G)
    if crowd.any():
        ious[:, crowd] = overlap(p, boxes[crowd][None, :, :], over="first", xp=onp)
    return ious


def _pairs(proposals, boxes, crowd, least, block):
    """The proposal-object pairs that overlap by at least ``least``:
    ``(d, g, iou)`` arrays ordered by proposal then object, the overlaps
    computed for blocks of proposals (at most ``block`` values at once,
    or one proposal's), so that memory follows the pairs kept, not
    ``M x G``."""
    rows = max(1, block // max(len(boxes), 1))
    found = [(onp.zeros(0, "int64"), onp.zeros(0, "int64"), onp.zeros(0))]
    for start in range(0, len(proposals), rows):
        ious = _ious(proposals[start:start + rows], boxes, crowd)
        d, g = onp.nonzero(ious >= least)
        found.append((d + start, g, ious[d, g]))
    return tuple(onp.concatenate(column) for column in zip(*found))


def _match(pairs, ignore, crowd, limit):
    """COCO's greedy matching of one image at one threshold (``limit``:
    ``min(T, 1 - 1e-10)``), in arrays. ``pairs``: :func:`_pairs`' ``(d, g,
    iou)`` ordered by proposal, then by preference: an object not ignored
    before an ignored one, then by IoU, then by index (so a proposal's
    choice is its last pair still open). Returns, per object, the rank of
    the proposal that matched it (``_NONE`` when none).

    COCO takes proposals best first; each takes the open object (not yet
    matched, or a crowd region, which stays open) it prefers. Taken in
    rounds here: every proposal still open names its choice; a choice is
    final when no earlier open proposal can reach that object (objects only
    close, so an earlier proposal could otherwise take it first) or when it
    is a crowd region. The earliest open proposal is always final, so the
    rounds end, and each gives the result of taking proposals one by one.
    """
    d, g, iou = pairs
    matched = onp.full(len(ignore), _NONE)
    reach = iou >= limit
    d, g = d[reach], g[reach]
    open_ = onp.ones(len(d), bool)
    first = onp.empty(len(ignore), "int64")
    while len(d):
        # the pairs of open proposals to open objects, by proposal then preference
        d, g = d[open_], g[open_]
        if not len(d):
            break
        last = onp.append(d[1:] != d[:-1], True)                   # each proposal's choice
        chosen_d, chosen_g = d[last], g[last]
        reached, at = onp.unique(g, return_index=True)
        first[reached] = d[at]                    # the earliest open proposal reaching each
        final = crowd[chosen_g] | (first[chosen_g] == chosen_d)
        taken = final & ~crowd[chosen_g]
        matched[chosen_g[taken]] = chosen_d[taken]
        done = onp.zeros(int(d[-1]) + 1, bool)
        done[chosen_d[final]] = True
        open_ = ~done[d] & ((matched[g] == _NONE) | crowd[g])
    return matched


class ProposalRecall:
    """Accumulates COCO-style proposal recall over images (see the module).

    ``ks``: the proposal counts ``K``; ``thresholds``: the ``T`` of the
    ``R@K@T`` entries (any of them; ``AR`` always uses COCO's ten).
    ``block``: the proposal-object overlaps computed at once (memory: 8
    bytes each, a few times over), whatever the number of objects.
    ``update(preds, Y, image_sizes=None)`` takes the chapter's format
    (:func:`rpn.predict_rpn`'s list of ``[scores (M,), boxes (4, M)]``, best
    first) with ``Y`` (B, G, 5); ``update_batch(scores, boxes, Y, info)``
    the proposal model's padded output; ``update_image`` one image in
    pixels. Sizes need each image's original ``(height, width)``: without
    them only the overall figures are reported. ``result()`` gives the dict
    of figures; ``curve(k)`` recall at each of ``AR_THRESHOLDS``;
    ``proposal_curve()`` recall against the number of proposals.
    """

    def __init__(self, ks=DEFAULT_KS, thresholds=(0.5, 0.7), *, block=BLOCK):
        self.block = int(block)
        if self.block < 1:
            raise ValueError(f"block must be a positive count of overlaps, got {block!r}")
        self.ks = tuple(sorted(int(k) for k in ks))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be positive proposal counts, got {ks!r}")
        self.thresholds = tuple(float(t) for t in thresholds)
        if not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1], got {thresholds!r}")
        extra = [t for t in self.thresholds
                 if not onp.isclose(t, AR_THRESHOLDS, atol=1e-9).any()]
        self._levels = onp.array(sorted(AR_THRESHOLDS + tuple(extra)))
        ranges = {"all": _ALL, **AREA_RANGES}
        # objects matched by the proposal of each rank: (levels, largest K)
        self._by_rank = {r: onp.zeros((len(self._levels), self.ks[-1]), dtype="int64")
                         for r in ranges}
        self._objects = dict.fromkeys(ranges, 0)
        self._ranges = ranges
        self.images, self.sized = 0, True

    def update_image(self, proposals, objects, crowd=None, *, sized=True):
        """One image: ``proposals`` (M, 4) best first, ``objects`` (G, 4),
        ``crowd`` (C, 4) regions, all corner boxes in original pixels (or
        normalised with ``sized=False``, which leaves sizes out)."""
        proposals = onp.asarray(proposals, dtype="float64").reshape(-1, 4)[:self.ks[-1]]
        objects = onp.asarray(objects, dtype="float64").reshape(-1, 4)
        crowd = onp.zeros((0, 4)) if crowd is None else onp.asarray(crowd, "float64").reshape(-1, 4)
        self.images += 1
        self.sized = self.sized and sized
        if not len(objects):
            return
        boxes = onp.concatenate([objects, crowd])
        is_crowd = onp.arange(len(boxes)) >= len(objects)
        limits = onp.minimum(self._levels, 1 - 1e-10)
        d, g, iou = _pairs(proposals, boxes, is_crowd, limits.min(), self.block)
        areas = (objects[:, 2] - objects[:, 0]) * (objects[:, 3] - objects[:, 1])
        largest = self.ks[-1]
        for name, (low, high) in self._ranges.items():
            if name != "all" and not sized:
                continue
            outside = (areas < low) | (areas > high)
            counted = int((~outside).sum())
            if not counted:
                continue
            ignore = onp.concatenate([outside, onp.ones(len(crowd), bool)])
            order = onp.lexsort((g, iou, ~ignore[g], d))      # by proposal, then preference
            pairs = (d[order], g[order], iou[order])
            for j, limit in enumerate(limits):
                ranks = _match(pairs, ignore, is_crowd, limit)[:len(objects)][~outside]
                ranks = ranks[ranks < largest]                        # (matched,) ranks
                self._by_rank[name][j] += onp.bincount(ranks, minlength=largest)
            self._objects[name] += counted

    def update(self, preds, Y, image_sizes=None):
        """The chapter's format: ``preds`` one ``[scores (M,), boxes (4, M)]``
        an image of ``Y`` (B, G, 5), boxes normalised; ``image_sizes``
        (B, 2) original ``(height, width)`` for object sizes."""
        if Y.ndim != 3 or Y.shape[-1] != 5 or len(preds) != Y.shape[0]:
            raise ValueError(f"expected one prediction per image of Y (B, G, 5), "
                             f"got {len(preds)} predictions and Y {Y.shape}")
        Y = _host(Y)
        sizes = None if image_sizes is None else onp.asarray(_host(image_sizes))
        for b, (_, boxes) in enumerate(preds):
            boxes = _host(boxes).reshape(4, -1).T                     # (4, M) -> (M, 4)
            self._add(boxes, Y[b], None if sizes is None else sizes[b])

    def update_batch(self, scores, boxes, Y, info):
        """The proposal model's output: ``scores`` (B, K) (rows below 0 are
        padding) and ``boxes`` (B, K, 4); ``Y`` (B, G, 5); ``info`` the
        batch's :class:`rpn.data.batch.BatchInfo` (images that could not be
        read are left out; sizes come from each image's original size)."""
        scores, boxes, Y = _host(scores), _host(boxes), _host(Y)      # one read each
        for b in range(len(scores)):
            if not info.readable[b]:
                continue
            keep = scores[b] >= 0
            self._add(boxes[b][keep], Y[b], tuple(info.original_sizes[b]))

    def _add(self, boxes, rows, size):
        """Normalised boxes (M, 4) and ground truth rows (G, 5) of one image
        -> pixels of its original ``size`` ``(height, width)``."""
        scale = onp.ones(4) if size is None else onp.array([size[1], size[0]] * 2, "float64")
        objects = rows[rows[:, 0] >= 0][:, 1:5] * scale
        crowd = rows[rows[:, 0] == CROWD][:, 1:5] * scale
        self.update_image(boxes * scale, objects, crowd, sized=size is not None)

    def _recall(self, name, level, k):
        total = self._objects[name]
        hits = self._by_rank[name][level, :k].sum()
        return float(hits / total) if total else NO_OBJECTS

    def _level(self, threshold):
        return int(onp.argmin(abs(self._levels - threshold)))

    def curve(self, k, name="all"):
        """Recall of the top ``k`` at each of ``AR_THRESHOLDS`` (``-1`` each
        when ``name``'s range has no object)."""
        return [self._recall(name, self._level(t), k) for t in AR_THRESHOLDS]

    def proposal_curve(self, name="all"):
        """Recall against the number of proposals an image, from 1 to the
        largest ``K``: ``{"proposals": (K,) counts 1..K, "R@0.5": (K,),
        "R@0.7": (K,), "AR": (K,)}`` (host arrays; ``AR`` the mean over
        ``AR_THRESHOLDS``; every value -1 when the range has no object)."""
        total = self._objects[name]
        counts = onp.arange(1, self.ks[-1] + 1)
        if not total:
            flat = onp.full(len(counts), NO_OBJECTS)
            return {"proposals": counts, "R@0.5": flat, "R@0.7": flat, "AR": flat}
        recall = onp.cumsum(self._by_rank[name], axis=1) / total        # (levels, K)
        average = recall[[self._level(t) for t in AR_THRESHOLDS]].mean(axis=0)
        return {"proposals": counts, "R@0.5": recall[self._level(0.5)],
                "R@0.7": recall[self._level(0.7)], "AR": average}

    def result(self):
        """``images``, ``objects``, ``AR@K``, ``R@K@T`` and, with sizes,
        ``objects_<size>`` and ``AR_<size>@K`` (-1, as COCO, where a range
        has no object)."""
        out = {"images": self.images, "objects": self._objects["all"]}
        names = ["all"] + (list(AREA_RANGES) if self.sized else [])
        for name in names[1:]:
            out[f"objects_{name}"] = self._objects[name]
        for k in self.ks:
            for name in names:
                key = f"AR@{k}" if name == "all" else f"AR_{name}@{k}"
                out[key] = float(onp.mean(self.curve(k, name)))
            for t in self.thresholds:
                out[f"R@{k}@{t:g}"] = self._recall("all", self._level(t), k)
        return out


def proposal_recall(backbone, output_model, data_iter, anchor_fn, *,
                    nms_threshold=0.7, ks=DEFAULT_KS, ctx=None,
                    pre_nms_top_n=None, recall=None):
    """Recall of the objects of ``data_iter`` among the proposals of
    :func:`rpn.predict_rpn` (the chapter's functions; see the module for the
    definitions). ``ctx`` one context or a list; returns
    :meth:`ProposalRecall.result`, and fills ``recall`` (a
    :class:`ProposalRecall`) when given, for plotting. The chapter's loaders
    give fixed-size batches ``(X, Y)`` without original sizes, so only the
    overall figures are reported (:func:`rpn.evaluate` reports sizes)."""
    ctxs = as_context_list(ctx)
    recall = recall if recall is not None else ProposalRecall(ks)
    for batch in data_iter:
        X, Y, info = unpack_batch(batch)
        if info is not None:
            raise ValueError("proposal_recall takes fixed-size batches (X, Y); for "
                             "images that keep their aspect ratio use rpn.evaluate")
        for Xd, Yd in zip(split_batch(X, ctxs, strict=False), split_batch(Y, ctxs, strict=False)):
            preds = predict_rpn(backbone(Xd), output_model, anchor_fn, nms_threshold,
                                pre_nms_top_n=pre_nms_top_n,
                                post_nms_top_n=max(recall.ks))
            recall.update(preds, Yd)
    return recall.result()


def _host(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else onp.asarray(array)
