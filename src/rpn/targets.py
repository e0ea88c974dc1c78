"""Training targets: which anchors are objects, and where the objects are.

Chapter section "Anchor Boxes" (``label_anchors``, ``rpn_targets``); the
rule is Faster R-CNN's, :cite:`Ren.He.Girshick.ea.2015`, section 3.1.2.

Shape glossary: ``B`` images, ``G`` object rows an image (padded), ``N``
anchors. Ground truth is ``(B, G, 5)``: rows ``[class, xmin, ymin, xmax,
ymax]``, normalised corner form, padded with rows whose class is ``-1``.
Anchors are ``(4, N)``, corner form, normalised.
"""
import mxnet as mx
from mxnet import np, npx

from .boxes import OFFSET_WEIGHTS, _encode

__all__ = ["POSITIVE", "NEGATIVE", "IGNORE", "label_anchors", "rpn_targets"]

#: Label of an anchor that covers an object (RPN's only object class).
POSITIVE = 1
#: Label of a sampled background anchor.
NEGATIVE = 0
#: Label of an anchor that takes no part in the classification loss.
IGNORE = -1

# where padding rows are moved: no anchor reaches it
_FAR_AWAY = (-10.0, -10.0, -9.0, -9.0)


def _check_ground_truth(ground_truth):
    """Raise ``ValueError`` for a malformed ``(B, G, 5)`` ground truth.

    Padding rows (class ``-1``) are ignored whatever their coordinates. One
    scalar triple is fetched from the device; the detail of a failure is
    looked up only when there is one.
    """
    if ground_truth.ndim != 3 or ground_truth.shape[-1] != 5:
        raise ValueError(
            "ground_truth must be (batch, objects, 5) with rows [class, xmin, "
            f"ymin, xmax, ymax], got shape {ground_truth.shape}")
    if ground_truth.shape[1] == 0:
        return
    cls = ground_truth[..., 0]
    valid = cls >= 0                                           # (B, G)
    boxes = ground_truth[..., 1:]                              # (B, G, 4)
    nan_coord = np.isnan(boxes).sum(axis=-1) > 0
    degenerate = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    problems = [("a NaN class", np.isnan(cls)),
                ("NaN coordinates", nan_coord & valid),
                ("a degenerate box (xmax <= xmin or ymax <= ymin)",
                 degenerate & valid)]
    counts = np.stack([p.sum() for _, p in problems]).asnumpy()
    for (what, mask), count in zip(problems, counts):
        if count:
            b, g = (int(i) for i in np.argwhere(mask)[0].asnumpy())
            row = ground_truth[b, g].asnumpy().tolist()
            raise ValueError(
                f"ground_truth has {int(count)} object row(s) with {what}; "
                f"the first is image {b}, row {g}: {row}. Expected rows "
                "[class >= 0, xmin, ymin, xmax, ymax] with xmin < xmax and "
                "ymin < ymax, or padding rows of class -1")


def _check_anchors(anchors):
    if anchors.ndim != 2 or anchors.shape[0] != 4 or anchors.shape[1] == 0:
        raise ValueError(
            f"anchors must be a non-empty coordinate-major set (4, N), got "
            f"shape {anchors.shape}")


def _sample_negatives(candidates, num_pos, neg_pos_ratio):
    """Keep, for each image, ``neg_pos_ratio * max(num_pos, 1)`` of its
    negative ``candidates`` (B, N), chosen uniformly at random; all of them
    when ``neg_pos_ratio`` is ``None``. Returns a (B, N) bool mask."""
    if neg_pos_ratio is None:
        return candidates
    if neg_pos_ratio == 0:
        return candidates & False
    quota = neg_pos_ratio * np.maximum(num_pos, 1)             # (B,)
    # a random key per candidate, 2 (above any key) for the rest; an image
    # keeps the candidates whose key is at most its quota-th smallest key
    keys = np.random.uniform(size=candidates.shape, ctx=candidates.ctx)
    keys = keys + 2.0 * (1 - candidates.astype("float32"))
    last = np.clip(quota - 1, 0, keys.shape[1] - 1).astype("float32")
    cutoff = npx.pick(np.sort(keys, axis=1), last, axis=1)    # (B,)
    return candidates & (keys <= cutoff[:, None])


def label_anchors(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, *,
                  weights=OFFSET_WEIGHTS):
    """Label anchors for training, all images at once.

    Faster R-CNN's rule (:cite:`Ren.He.Girshick.ea.2015`, 3.1.2):

    * an anchor is positive if its IoU with some object is above ``pos_iou``;
      besides, for every object the anchor(s) of highest IoU with it are
      positive (all of them on a tie; none if that IoU is 0);
    * a positive anchor takes its class and offsets from the object it
      overlaps most (the first such object on a tie);
    * an anchor that is not positive and whose IoU with every object is
      below ``neg_iou`` is a negative candidate; each image keeps
      ``neg_pos_ratio`` of them per positive, at random, counting at least
      one positive so that an image without objects still has negatives
      (``neg_pos_ratio=None`` keeps every candidate);
    * every other anchor is ignored.

    Departs from the chapter's draft, which took a positive's offsets from
    the last object that marked it, could sample a forced positive as a
    negative, gave images without objects no negatives, and looped in
    Python over images and objects. Here everything is vectorised with
    MXNet operators on the anchors' context; the sampling uses MXNet's
    random generator, so ``mx.random.seed`` makes it repeatable.

    Parameters
    ----------
    ground_truth : (B, G, 5) rows ``[class, xmin, ymin, xmax, ymax]``,
        normalised, padded with class ``-1``. Moved to ``anchors``' context.
    anchors : (4, N) corner form, normalised.
    pos_iou, neg_iou : float thresholds.
    neg_pos_ratio : number of negatives per positive, or ``None``.
    weights : offset scaling, see :func:`rpn.anchor_to_gt_offset`.

    Returns
    -------
    cls_labels : (B, N) float32: ``class + 1`` for positives, ``NEGATIVE``
        (0) for sampled negatives, ``IGNORE`` (-1) for the rest.
    box_offsets : (B, N, 4) float32 offsets to the matched object; 0 for
        anchors that are not positive.
    """
    _check_anchors(anchors)
    ctx = anchors.ctx
    anchors = anchors.astype("float32", copy=False)
    ground_truth = ground_truth.as_in_context(ctx).astype("float32", copy=False)
    _check_ground_truth(ground_truth)
    if neg_pos_ratio is not None and neg_pos_ratio < 0:
        raise ValueError(f"neg_pos_ratio must be >= 0 or None, got {neg_pos_ratio}")
    batch, num_obj = ground_truth.shape[:2]
    if num_obj == 0:
        # (B, 0, 5) -> (B, 1, 5): one padding row keeps the reductions defined
        ground_truth = np.full((batch, 1, 5), -1.0, ctx=ctx)
        num_obj = 1
    anchor_boxes = anchors.T                                   # (4, N) -> (N, 4)
    valid = (ground_truth[..., 0:1] >= 0).astype("float32")    # (B, G, 1)
    # padding rows become a box far outside the image, so their IoU with
    # every anchor is 0: they can neither match nor be matched
    far = np.array(_FAR_AWAY, ctx=ctx)
    boxes = valid * ground_truth[..., 1:] + (1 - valid) * far   # (B, G, 4)
    # (B * G, 4) x (N, 4) -> (B * G, N) -> (B, G, N), MXNet's native IoU
    ious = mx.nd.contrib.box_iou(boxes.reshape(-1, 4).as_nd_ndarray(),
                                 anchor_boxes.as_nd_ndarray(), format="corner")
    ious = ious.as_np_ndarray().reshape(batch, num_obj, -1)

    # (reductions over the short object axis are slow in MXNet: argmax and
    # pick, and a batched product for "any", are several times faster)
    best_obj = ious.argmax(axis=1)                             # (B, N)
    best_iou = npx.pick(ious, best_obj, axis=1)                # (B, N)
    obj_best = ious.max(axis=2, keepdims=True)                 # (B, G, 1)
    # an object's best anchors (all on a tie), unless its best IoU is 0
    is_best = (ious == obj_best).astype("float32") * (obj_best > 0)   # (B, G, N)
    ones = np.ones((batch, 1, num_obj), ctx=ctx)
    forced = npx.batch_dot(ones, is_best)[:, 0] > 0            # (B, 1, N) -> (B, N)
    positive = (best_iou > pos_iou) | forced                   # (B, N)

    candidates = (best_iou < neg_iou) & ~positive
    num_pos = positive.sum(axis=1)                             # (B,)
    negative = _sample_negatives(candidates, num_pos, neg_pos_ratio)

    # gather each anchor's matched object: (B * G, 5) rows taken at the
    # flat index b * G + best_obj[b, n] -> (B, N, 5)
    flat_index = best_obj + (np.arange(batch, ctx=ctx) * num_obj)[:, None]
    matched = np.take(ground_truth.reshape(-1, 5), flat_index.astype("int64"),
                      axis=0)
    # positives and negatives are disjoint: IGNORE unless one of them
    positive_f, negative_f = positive.astype("float32"), negative.astype("float32")
    cls_labels = (IGNORE + (NEGATIVE - IGNORE) * negative_f
                  + (matched[..., 0] + 1 - IGNORE) * positive_f)
    # non-positive anchors are matched to themselves, so their offsets are 0
    anchors_b = np.broadcast_to(anchor_boxes[None], matched[..., 1:].shape)
    targets = anchors_b + positive_f[..., None] * (matched[..., 1:] - anchors_b)
    box_offsets = _encode(anchors_b, targets, weights)         # (B, N, 4)
    return cls_labels.astype("float32"), box_offsets.astype("float32")


def rpn_targets(ground_truth, anchors, *, pos_iou=0.7, neg_iou=0.3,
                neg_pos_ratio=5, weights=OFFSET_WEIGHTS):
    """Assign labels to anchors for RPN (chapter section "Anchor Boxes").

    :func:`label_anchors` with the chapter's thresholds (0.7, 0.3) and ratio
    (5 negatives per positive), every object class turned into ``POSITIVE``.
    The chapter's prose speaks of 100 negatives an image while its code uses
    the ratio 5; the code's rule is the default, and ``neg_pos_ratio`` changes
    it.

    ``ground_truth``: (B, G, 5); ``anchors``: (4, N). Returns ``cls_labels``
    (B * N,) with ``POSITIVE``/``NEGATIVE``/``IGNORE``, and ``box_offsets``
    (B * N, 4), image-major like :class:`rpn.RPNOutput`'s predictions, on
    the anchors' context.
    """
    cls_labels, box_offsets = label_anchors(
        ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, weights=weights)
    cls_labels = np.where(cls_labels > 0, float(POSITIVE), cls_labels)
    # (B, N) -> (B * N,) and (B, N, 4) -> (B * N, 4)
    return cls_labels.reshape(-1), box_offsets.reshape(-1, 4)
