"""From head outputs to proposals: decode, clip, filter, NMS. The one
place where the package makes proposals.

Faster R-CNN's proposal step (:cite:`Ren.He.Girshick.ea.2015`, 3.1-3.3;
detectron2's ``find_top_rpn_proposals``, torchvision's
``filter_proposals``): every anchor is moved by its predicted offsets,
clipped to its image, anchors that may not propose and boxes smaller than
``min_size`` pixels are dropped, the ``pre_nms_top_n`` best of an image
enter greedy NMS, and the ``post_nms_top_n`` best survivors are kept.
:class:`rpn.RegionProposalNetwork` calls it inside its graph and the
chapter's :func:`rpn.predict_rpn` on arrays; ``F`` is MXNet's symbol or
ndarray module, so the same code serves both.

Shape glossary: ``B`` images, ``N`` anchors an image, ``K`` proposals kept
an image. Anchors are corner form, normalised by the *canvas* (the padded
batch); ``scale`` (B, 1, 4) gives each image's extent in the canvas
``[w / W, h / H, w / W, h / H]``; proposals leave corner form, normalised
by each *image's* own width and height.
"""
from typing import NamedTuple, Optional

from ..boxes import OFFSET_WEIGHTS, _decode, overlap
from ..ops.gather import take_rows
from ..ops.nms import box_nms

__all__ = ["select_proposals", "select_level_proposals", "scored_boxes", "ProposalRule",
           "PADDING"]

#: The score of rows that hold no proposal (fewer than ``K`` survived).
PADDING = -1.0


class ProposalRule(NamedTuple):
    """How proposals are chosen (Faster R-CNN's proposal settings):
    ``nms_threshold``; ``pre_nms_top_n`` boxes of best score enter NMS
    (``None``: every box); ``post_nms_top_n`` survivors are kept (``None``:
    all); boxes narrower or lower than ``min_size`` pixels are dropped
    first; ``quality_power`` ``a`` weighs an IoU branch into the score;
    ``preselect`` takes the ``pre_nms_top_n`` best rows before NMS (cheap
    when it is far below the anchors' count); ``voting`` (an IoU, or
    ``None``) box voting over the ``voting_candidates`` best rows for the
    ``voting_top_n`` best proposals; ``weights`` the offsets' scaling;
    ``objectness`` ``"class"`` (the object probability) or ``"centerness"``
    (OLN's: the quality branch's sigmoid alone). :meth:`of` reads it from a
    model's settings."""
    nms_threshold: float
    pre_nms_top_n: Optional[int] = None
    post_nms_top_n: Optional[int] = None
    min_size: float = 0.0
    quality_power: float = 0.5
    preselect: bool = False
    voting: Optional[float] = None
    voting_top_n: int = 300
    voting_candidates: int = 1000
    weights: tuple = OFFSET_WEIGHTS
    objectness: str = "class"

    @classmethod
    def of(cls, settings, training, top_n=None):
        """The rule of :class:`rpn.settings.ModelSettings` ``settings`` in
        training or inference; ``top_n`` ``(pre, post)`` replaces the
        settings' counts with a preselection and no voting (what the
        refinement stage samples its RoIs from)."""
        pre, post = top_n or settings.top_n(training)
        return cls(settings.nms_threshold, pre, post, settings.min_size,
                   settings.iou_score_power, preselect=top_n is not None,
                   voting=None if top_n is not None else settings.box_voting,
                   objectness=settings.objectness)


def select_proposals(F, anchors, cls_preds, box_preds, valid, rule, *, scale=None,
                     image_sizes=None, quality=None):
    """Proposals of a batch, best first: (B, K, 5) rows ``[score, x1, y1,
    x2, y2]``, chosen by ``rule`` (a :class:`ProposalRule`).

    ``anchors`` (4, N) canvas frame; ``cls_preds`` (B * N, 2) logits (column
    1 the object); ``box_preds`` (B * N, 4) offsets (``rule.weights`` as
    :func:`rpn.anchor_to_gt_offset`); ``valid`` (B, N) float, 1 for the
    anchors an image may use. ``scale`` (B, 1, 4): each image's extent in
    the canvas (``None``: every image fills it). ``image_sizes`` (B, 2+)
    ``[height, width]`` input pixels, needed when ``rule.min_size``
    (pixels) is above 0. Scores are object probabilities, or with
    ``quality`` (B * N,) (the IoU branch's logits) ``p ** (1 - a) *
    sigmoid(q) ** a`` with ``a = rule.quality_power``: a proposal ranks by
    how surely it is an object and how well it fits it, so NMS keeps the
    better-fitting of two overlapping boxes; with ``rule.objectness``
    ``"centerness"``, ``sigmoid(q)`` (OLN). Rows of score :data:`PADDING`
    are padding. ``K = rule.post_nms_top_n`` (at most ``N``; ``None``:
    ``N``).
    """
    data = scored_boxes(F, anchors, cls_preds, box_preds, valid, rule, scale=scale,
                        image_sizes=image_sizes, quality=quality)        # (B, N, 5)
    pre = rule.pre_nms_top_n
    if rule.preselect and pre is not None and pre < data.shape[1]:
        # the `pre` best rows of each image, best first: (B, N, 5) -> (B, pre, 5)
        data = take_rows(F, data, F.npx.topk(data[:, :, 0], k=int(pre), axis=1,
                                             ret_typ="indices"))
    out = box_nms(F, data, rule.nms_threshold, valid_thresh=-0.5,
                  topk=-1 if pre is None else int(pre))                # (B, N, 5)
    return _keep(F, out, data, rule)


def select_level_proposals(F, levels, rule, *, scale=None, image_sizes=None):
    """Proposals of a feature pyramid, best first: (B, K, 5) as
    :func:`select_proposals`, from ``levels``, one ``(anchors (4, N_l),
    cls_preds (B * N_l, 2), box_preds (B * N_l, 4), valid (B, N_l),
    quality (B * N_l,) or None)`` a level. As torchvision and detectron2
    do: the ``rule.pre_nms_top_n`` best boxes of each level (all of a level
    that has fewer), then one NMS in which boxes of different levels do not
    suppress each other, then the ``rule.post_nms_top_n`` best. Works in a
    graph: a level's rows are padded so that its top-k exists whatever its
    size."""
    rows = []
    for number, (anchors, cls_preds, box_preds, valid, quality) in enumerate(levels):
        data = scored_boxes(F, anchors, cls_preds, box_preds, valid, rule, scale=scale,
                            image_sizes=image_sizes, quality=quality)    # (B, N_l, 5)
        data = _best(F, data, int(rule.pre_nms_top_n))                  # (B, k, 5)
        level = F.np.ones_like(data[:, :, 0:1]) * number                # (B, k, 1)
        rows.append(F.np.concatenate([data, level], axis=-1))           # (B, k, 6)
    data = F.np.concatenate(rows, axis=1)                               # (B, L * k, 6)
    out = box_nms(F, data, rule.nms_threshold, valid_thresh=-0.5, id_index=5)
    return _keep(F, out[:, :, :5], data[:, :, :5], rule)


def scored_boxes(F, anchors, cls_preds, box_preds, valid, rule, *, scale=None,
                 image_sizes=None, quality=None):
    """Every anchor decoded and scored (see :func:`select_proposals`):
    (B, N, 5) rows ``[score, x1, y1, x2, y2]`` in each image's frame,
    clipped to it; anchors that may not propose score -1."""
    # (B * N, 2) logits -> object probability (B * N,) -> (B, N)
    if rule.objectness == "centerness":
        prob = F.npx.sigmoid(quality)                                   # (B * N,)
    else:
        prob = F.npx.softmax(cls_preds, axis=-1)[:, 1]
    if quality is not None and rule.quality_power > 0 and rule.objectness == "class":
        fit = F.npx.sigmoid(quality)                                    # (B * N,)
        prob = prob ** (1 - rule.quality_power) * fit ** rule.quality_power
    prob = F.npx.reshape_like(prob, valid, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
    # (B * N, 4) -> (B, N, 4); anchors (4, N) -> (1, N, 4)
    offsets = F.npx.reshape_like(box_preds, valid, lhs_begin=0, lhs_end=1,
                                 rhs_begin=0, rhs_end=2)
    boxes = _decode(F.np.expand_dims(anchors.T, 0), offsets, rule.weights, xp=F.np)
    # canvas frame -> each image's own frame, clipped to the image
    if scale is not None:
        boxes = boxes / scale
    boxes = F.np.clip(boxes, 0.0, 1.0)
    if rule.min_size > 0:
        if image_sizes is None:
            raise ValueError(f"min_size {rule.min_size} (pixels) needs each image's size: "
                             "give image_sizes (B, 2) [height, width] in input pixels")
        x0, y0, x1, y1 = F.np.split(boxes, 4, axis=-1)                  # (B, N, 1) each
        wide = (x1 - x0)[:, :, 0] * image_sizes[:, 1:2] >= rule.min_size  # (B, N)
        high = (y1 - y0)[:, :, 0] * image_sizes[:, 0:1] >= rule.min_size
        valid = valid * wide.astype("float32") * high.astype("float32")
    # unusable anchors score -1, below box_nms's valid_thresh
    scores = prob * valid + (valid - 1)                                 # (B, N)
    return F.np.concatenate([F.np.expand_dims(scores, -1), boxes], axis=-1)  # (B, N, 5)


def _keep(F, out, data, rule):
    """The first ``post_nms_top_n`` rows of NMS's ``out`` (B, N, 5), voted
    with ``data`` (every row before NMS) when the rule says so."""
    post = rule.post_nms_top_n
    out = out if post is None else out[:, :int(post)]
    if rule.voting is not None:
        out = _vote(F, out, data, float(rule.voting), int(rule.voting_top_n),
                    int(rule.voting_candidates))
    return out


def _padded(F, data, count):
    """``data`` (B, N, 5) with ``count`` rows of no score (-1) after its N
    rows: (B, N + count, 5), so that the ``count`` best rows exist whatever
    N is (a graph cannot ask)."""
    zero = data[:, 0:1, :] * 0                                          # (B, 1, 5)
    blank = F.np.concatenate([zero[:, :, 0:1] - 1, zero[:, :, 1:5]], axis=-1)
    return F.np.concatenate([data, F.np.tile(blank, (1, count, 1))], axis=1)


def _best(F, data, count):
    """The ``count`` best rows (by score) of each image of ``data`` (B, N,
    5), best first, rows of no score after the N real ones: (B, count, 5)."""
    data = _padded(F, data, count)
    # (B, N + count) -> (B, count) -> (B, count, 5)
    return take_rows(F, data, F.npx.topk(data[:, :, 0], k=count, axis=1, ret_typ="indices"))


def _vote(F, out, data, threshold, top, count):
    """Box voting (see :func:`select_proposals`): ``out`` (B, K, 5) kept
    rows, best first; ``data`` (B, N, 5) every row before NMS (scores below
    0 take no part). Returns ``out`` with its first ``top`` boxes voted."""
    candidates = _best(F, data, count)                                  # (B, count, 5)
    kept = out[:, :top, 1:5]                                            # (B, V, 4)
    # (B, V, 1, 4) against (B, 1, count, 4) -> (B, V, count)
    fit = overlap(F.np.expand_dims(kept, 2), F.np.expand_dims(candidates[:, :, 1:5], 1),
                  xp=F.np)
    weight = (fit >= threshold) * F.np.expand_dims(F.np.maximum(candidates[:, :, 0], 0), 1)
    total = weight.sum(axis=2, keepdims=True)                           # (B, V, 1)
    # (B, V, count) @ (B, count, 4) -> (B, V, 4)
    voted = F.np.matmul(weight, candidates[:, :, 1:5]) / F.np.maximum(total, 1e-12)
    voted = F.np.where(total > 0, voted, kept)
    boxes = F.np.concatenate([voted, out[:, top:, 1:5]], axis=1)        # (B, K, 4)
    return F.np.concatenate([out[:, :, 0:1], boxes], axis=-1)
