"""The CPU path of :func:`rpn.label_anchors`: IoU with each image's own
objects only, and the rest of the matching, in NumPy (MXNet 1.9.1's
reductions are several times slower on a CPU), with the device path's
formulas in the same float32 operations and MXNet's random draws and
logarithm, so that labels and offsets are the device path's to the bit
(tested in ``tests/ops/test_host_labels.py``). It reads the CPU arrays it works on;
no device waits for that.

Shapes as :mod:`rpn.targets`: ground truth (B, G, 5) normalised corner rows
``[class, xmin, ymin, xmax, ymax]``, anchors (4, N) normalised corners.
"""
import mxnet as mx
import numpy as onp
from mxnet import np

from ..boxes import overlap
from ..data.image_set import CROWD

__all__ = ["check_values_host", "match_on_host", "encode_host"]

# below this many anchor-object pairs an image's IoU is computed in NumPy
_NUMPY_IOU_PAIRS = 30_000


def check_values_host(gt, corners):
    """:func:`rpn.targets._check_values` on host arrays: ``gt`` (B, G, 5), ``corners``
    (N, 4). Returns the number of crowd rows."""
    cls, boxes = gt[..., 0], gt[..., 1:]
    used = (cls >= 0) | (cls == CROWD)
    with onp.errstate(invalid="ignore"):
        bad_class = onp.isnan(cls) | ((cls < 0) & (cls != -1) & (cls != CROWD))
        not_finite = ~onp.isfinite(boxes).all(axis=-1) & used
        degenerate = ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])) & used
        anchor_bad = ~onp.isfinite(corners).all(axis=-1) | (corners[:, 2] <= corners[:, 0]) \
            | (corners[:, 3] <= corners[:, 1])
    for what, mask in (("a class that is NaN or below -1 (other than the crowd code "
                        f"{CROWD})", bad_class), ("NaN or infinite coordinates", not_finite),
                       ("a degenerate box (xmax <= xmin or ymax <= ymin)", degenerate)):
        if mask.any():
            b, g = onp.argwhere(mask)[0]
            raise ValueError(
                f"ground_truth has {int(mask.sum())} row(s) with {what}; the first is "
                f"image {b}, row {g}: {gt[b, g].tolist()}. Expected rows [class >= 0, "
                f"xmin, ymin, xmax, ymax] with finite xmin < xmax and ymin < ymax, crowd "
                f"regions of class {CROWD}, or padding rows of class -1")
    if anchor_bad.any():
        n = int(onp.flatnonzero(anchor_bad)[0])
        raise ValueError(
            f"anchors has {int(anchor_bad.sum())} anchor(s) that are not finite or have no "
            f"area; the first is anchor {n}: {corners[n].tolist()}")
    return int((cls == CROWD).sum())


def match_on_host(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, valid, crowd_ioa,
                  validate, *, balanced=None):
    """The matching of :func:`rpn.label_anchors` for CPU inputs, and its
    sample (``balanced``: ``(anchors_per_image, positive_fraction)`` of
    Faster R-CNN's, or ``None`` for ``neg_pos_ratio``'s). Returns host
    arrays: ``positive`` and ``negative`` (B, N) bool (the sampled ones),
    ``matched`` (B, N, 5) each anchor's best object row, ``corners`` (N, 4)."""
    ctx = anchors.ctx
    gt = ground_truth.asnumpy()                                  # (B, G, 5)
    corners = anchors.T.asnumpy()                                # (4, N) -> (N, 4)
    batch, num = gt.shape[0], corners.shape[0]
    if validate and not check_values_host(gt, corners):
        crowd_ioa = None
    usable = onp.ones((batch, num), bool) if valid is None \
        else valid.as_in_context(ctx).asnumpy() > 0                # (B, N)
    area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])   # (N,)
    anchors_nd = anchors.T.as_nd_ndarray()
    best_obj = onp.zeros((batch, num), "int64")
    best_iou = onp.zeros((batch, num), "float32")
    forced = onp.zeros((batch, num), bool)
    for b, rows in enumerate(gt):
        crowds = rows[rows[:, 0] == CROWD][:, 1:]
        if crowd_ioa is not None and len(crowds):
            usable[b] &= _cover(corners, crowds) <= crowd_ioa
        objects = onp.flatnonzero(rows[:, 0] >= 0)               # (k,)
        if not len(objects):
            continue
        if num * len(objects) <= _NUMPY_IOU_PAIRS:
            ious = _iou(corners, area, rows[objects, 1:])      # (N, k)
        else:    # MXNet's operator is faster on many pairs (the same values)
            ious = mx.nd.contrib.box_iou(anchors_nd, mx.nd.array(rows[objects, 1:], ctx=ctx),
                                         format="corner").asnumpy()
        ious *= usable[b][:, None]
        which = ious.argmax(axis=1)                               # (N,)
        best_obj[b] = objects[which]
        best_iou[b] = ious[onp.arange(num), which]
        top = ious.max(axis=0)                                    # (k,)
        top[top <= 0] = 2.0
        forced[b] = (ious >= top).any(axis=1)
    positive = (best_iou > pos_iou) | forced                     # (B, N)
    candidates = (best_iou < neg_iou) & ~positive & usable
    if balanced is not None:
        positive, negative = _sample_balanced(positive, candidates, *balanced, ctx)
    elif neg_pos_ratio is None:
        negative = candidates
    elif neg_pos_ratio == 0:
        negative = onp.zeros_like(candidates)
    else:
        negative = _keep_at_random(candidates,
                                   neg_pos_ratio * onp.maximum(positive.sum(axis=1), 1), ctx)
    # each anchor's object: (B, G, 5) rows at best_obj (B, N) -> (B, N, 5)
    matched = onp.take_along_axis(gt, best_obj[..., None], axis=1)
    return positive, negative, matched, corners


def _keep_at_random(mask, quota, ctx):
    """:func:`rpn.targets._keep_at_random` on host arrays: the device path's
    draw (MXNet's generator on ``ctx``) and cutoff (its sort, as a
    partition). ``mask`` (B, N) bool, ``quota`` (B,); returns (B, N) bool."""
    num = mask.shape[1]
    keys = np.random.uniform(size=mask.shape, ctx=ctx).asnumpy()
    keys = keys + onp.float32(2.0) * (1 - mask.astype("float32"))
    last = onp.clip(quota - 1, 0, num - 1).astype("int64")
    cutoff = onp.array([onp.partition(k, i)[i] for k, i in zip(keys, last)])
    cutoff = onp.where(quota > 0, cutoff, onp.float32(-1.0))       # a quota of 0: none
    return mask & (keys <= cutoff[:, None])


def _sample_balanced(positive, candidates, anchors_per_image, positive_fraction, ctx):
    """:func:`rpn.targets._sample_balanced` on host arrays, with the same
    draws in the same order (positives, then negatives)."""
    most = int(anchors_per_image * positive_fraction)
    if most == 0:
        positive = onp.zeros_like(positive)
    else:
        positive = _keep_at_random(positive, onp.full(len(positive), most), ctx)
    return positive, _keep_at_random(candidates, anchors_per_image - positive.sum(axis=1),
                                      ctx)


def encode_host(corners, objects, positive, weights, ctx):
    """:func:`rpn.boxes._encode` of ``corners`` (N, 4) to each anchor's
    object ``objects`` (B, N, 4) where ``positive`` (B, N), 0 elsewhere: the
    same float32 operations in the same order, with only the logarithm left
    to MXNet (NumPy's may round its last bit differently), so the offsets
    are the device path's to the bit (which encodes every anchor, a
    non-positive one to itself: exactly 0). Only the positive rows (a few
    dozen an image) are computed. Returns (B, N, 4) on ``ctx``."""
    rows = onp.nonzero(positive)                                    # (P,) twice
    anchors = corners[rows[1]]                                      # (P, 4)
    # the device path's target, anchor + (object - anchor): not always the
    # object to the bit
    boxes = anchors + (objects[rows] - anchors)                     # (P, 4)
    ax1, ay1, ax2, ay2 = (anchors[:, i] for i in range(4))          # (P,) each
    gx1, gy1, gx2, gy2 = (boxes[:, i] for i in range(4))
    aw, ah = ax2 - ax1, ay2 - ay1
    wx, wy, ww, wh = (onp.float32(w) for w in weights)
    two = onp.float32(2)
    out = onp.zeros(positive.shape + (4,), dtype="float32")        # (B, N, 4)
    out[rows + (slice(0, 2),)] = onp.stack([wx * ((gx1 + gx2) - (ax1 + ax2)) / two / aw,
                                            wy * ((gy1 + gy2) - (ay1 + ay2)) / two / ah], -1)
    ratio = onp.stack([(gx2 - gx1) / aw, (gy2 - gy1) / ah], axis=-1)   # (P, 2)
    if len(ratio):
        scale = np.array([ww, wh])
        out[rows + (slice(2, 4),)] = (scale * np.log(np.array(ratio, dtype="float32"))
                                      ).asnumpy()
    return np.array(out, ctx=ctx)


def _iou(corners, area, boxes):
    """(N, 4) anchors (with their areas (N,)) x (k, 4) boxes -> (N, k) IoU:
    :func:`rpn.boxes.overlap` in NumPy, MXNet's ``box_iou`` values to the
    bit for boxes with area (the device path's)."""
    # (N, 4) -> (N, 1, 4) against (k, 4) -> (1, k, 4)
    return overlap(corners[:, None, :], boxes[None, :, :].astype("float32"),
                   area_a=area[:, None], xp=onp)


def _cover(corners, crowds):
    """(N,) largest share of each anchor's area that one of ``crowds``
    (C, 4) covers: :func:`rpn.boxes.overlap` over the anchor's area, as the
    device path computes it."""
    # (N, 1, 4) against (1, C, 4) -> (N, C) -> (N,)
    return overlap(corners[:, None, :], crowds[None, :, :].astype("float32"), over="first",
                   xp=onp).max(axis=1)
