"""Training targets: which anchors are objects, and where the objects are.

Chapter section "Anchor Boxes" (``label_anchors``, ``rpn_targets``); the
rule is Faster R-CNN's, :cite:`Ren.He.Girshick.ea.2015`, section 3.1.2.

Shape glossary: ``B`` images, ``G`` object rows an image (padded), ``N``
anchors. Ground truth is ``(B, G, 5)``: rows ``[class, xmin, ymin, xmax,
ymax]``, normalised corner form, padded with rows whose class is ``-1``.
Anchors are ``(4, N)``, corner form, normalised.
"""
import mxnet as mx
from mxnet import ndarray as _nd
from mxnet import np, npx

from .boxes import OFFSET_WEIGHTS, _encode, overlap
from .data.image_set import CROWD
from .ops.gather import take_rows
from .ops.host_labels import encode_host, match_on_host
from .settings import check, check_iou_order

__all__ = ["POSITIVE", "NEGATIVE", "IGNORE", "label_anchors", "rpn_targets"]

#: Label of an anchor that covers an object (RPN's only object class).
POSITIVE = 1
#: Label of a sampled background anchor.
NEGATIVE = 0
#: Label of an anchor that takes no part in the classification loss.
IGNORE = -1

# where padding rows are moved: no anchor reaches it
_FAR_AWAY = (-10.0, -10.0, -9.0, -9.0)


def _check_settings(pos_iou, neg_iou, neg_pos_ratio, crowd_ioa, anchors_per_image=None,
                    positive_fraction=0.5):
    """Python scalars, by the rules of the model's settings of the same
    names (:func:`rpn.settings.check`): checked on every call (no device
    involved). ``crowd_ioa=None`` skips the crowd pass."""
    for name, value in (("pos_iou", pos_iou), ("neg_iou", neg_iou),
                        ("neg_pos_ratio", neg_pos_ratio), ("crowd_ioa", crowd_ioa),
                        ("anchors_per_image", anchors_per_image),
                        ("positive_fraction", positive_fraction)):
        if value is not None or name != "crowd_ioa":
            check(name, value)
    check_iou_order(pos_iou, neg_iou, where="neg_iou")


def _check_anchors(anchors):
    if anchors.ndim != 2 or anchors.shape[0] != 4 or anchors.shape[1] == 0:
        raise ValueError(
            f"anchors must be a non-empty coordinate-major set (4, N), got "
            f"shape {anchors.shape}")


def _check_shapes(ground_truth, valid, num):
    if ground_truth.ndim != 3 or ground_truth.shape[-1] != 5:
        raise ValueError(
            "ground_truth must be (batch, objects, 5) with rows [class, xmin, "
            f"ymin, xmax, ymax], got shape {ground_truth.shape}")
    if valid is not None and valid.shape != (ground_truth.shape[0], num):
        raise ValueError(f"valid must be (batch, anchors) = "
                         f"({ground_truth.shape[0]}, {num}), got {valid.shape}")


def _check_values(ground_truth, anchors):
    """Raise ``ValueError`` for malformed values, with ONE read from the
    device (the counts of each kind of problem); the detail of a failure is
    looked up only when there is one. Padding rows (class -1) are ignored
    whatever their coordinates. Returns the number of crowd rows."""
    cls = ground_truth[..., 0]
    boxes = ground_truth[..., 1:]                                  # (B, G, 4)
    used = (cls >= 0) | (cls == CROWD)                            # (B, G)
    bad_class = np.isnan(cls) | ((cls < 0) & (cls != -1) & (cls != CROWD))
    not_finite = (~np.isfinite(boxes)).sum(axis=-1) > 0
    degenerate = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    corners = anchors.T                                            # (N, 4)
    anchor_bad = ((~np.isfinite(corners)).sum(axis=-1) > 0) | \
        (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
    problems = [("a class that is NaN or below -1 (other than the crowd code "
                 f"{CROWD})", bad_class),
                ("NaN or infinite coordinates", not_finite & used),
                ("a degenerate box (xmax <= xmin or ymax <= ymin)", degenerate & used)]
    checks = [p.sum() for _, p in problems] + [anchor_bad.sum(), (cls == CROWD).sum()]
    counts = np.stack(checks).asnumpy()                             # the one read
    for (what, mask), count in zip(problems, counts):
        if count:
            b, g = (int(i) for i in np.argwhere(mask)[0].asnumpy())
            row = ground_truth[b, g].asnumpy().tolist()
            raise ValueError(
                f"ground_truth has {int(count)} row(s) with {what}; the first is "
                f"image {b}, row {g}: {row}. Expected rows [class >= 0, xmin, ymin, "
                f"xmax, ymax] with finite xmin < xmax and ymin < ymax, crowd regions "
                f"of class {CROWD}, or padding rows of class -1")
    if counts[-2]:
        n = int(np.argwhere(anchor_bad)[0].asnumpy()[0])
        raise ValueError(
            f"anchors has {int(counts[-2])} anchor(s) that are not finite or have no "
            f"area; the first is anchor {n}: {corners[n].asnumpy().tolist()}")
    return int(counts[-1])


def _keep_at_random(mask, quota):
    """Keep, for each image, ``quota`` (B,) of the anchors of ``mask`` (B, N)
    bool, chosen uniformly at random (all of them when it has fewer, none
    for a quota of 0; one draw of MXNet's generator). Returns a (B, N) bool
    mask."""
    # a random key per anchor of the mask, 2 (above any key) for the rest; an
    # image keeps the anchors whose key is at most its quota-th smallest key
    keys = np.random.uniform(size=mask.shape, ctx=mask.ctx)
    keys = keys + 2.0 * (1 - mask.astype("float32"))
    last = np.clip(quota - 1, 0, keys.shape[1] - 1).astype("float32")
    cutoff = npx.pick(np.sort(keys, axis=1), last, axis=1)    # (B,)
    cutoff = np.where(quota > 0, cutoff, -1.0)                 # a quota of 0: none
    return mask & (keys <= cutoff[:, None])


def _sample_negatives(candidates, num_pos, neg_pos_ratio):
    """Keep, for each image, ``neg_pos_ratio * max(num_pos, 1)`` of its
    negative ``candidates`` (B, N), chosen uniformly at random; all of them
    when ``neg_pos_ratio`` is ``None``. Returns a (B, N) bool mask."""
    if neg_pos_ratio is None:
        return candidates
    if neg_pos_ratio == 0:
        return candidates & False
    return _keep_at_random(candidates, neg_pos_ratio * np.maximum(num_pos, 1))


def _sample_balanced(positive, candidates, anchors_per_image, positive_fraction):
    """Faster R-CNN's sample (torchvision's ``BalancedPositiveNegativeSampler``,
    detectron2's ``subsample_labels``): each image keeps at most
    ``int(anchors_per_image * positive_fraction)`` of its ``positive``
    anchors (B, N), at random, and fills the rest of ``anchors_per_image``
    with its negative ``candidates``, at random (fewer when it has fewer).
    Positives are drawn first, then negatives. Returns the kept
    ``(positive, negative)``, (B, N) bool each."""
    most = int(anchors_per_image * positive_fraction)
    if most == 0:
        positive = positive & False
    else:
        positive = _keep_at_random(positive, np.full(positive.shape[:1], most,
                                                     ctx=positive.ctx))
    quota = anchors_per_image - positive.sum(axis=1)                # (B,)
    return positive, _keep_at_random(candidates, quota)


def _crowd_cover(anchors_nd, crowd_boxes, is_crowd, num, batch, num_obj):
    """(N, B) largest share of each anchor's area that a crowd region of
    its image covers (intersection over the anchor's area)."""
    # (N, 4) anchors and (B * G, 4) rows -> (N, B * G) intersections
    a = anchors_nd.as_np_ndarray()[:, None, :]                     # (N, 1, 4)
    c = crowd_boxes.reshape(-1, 4)[None, :, :]                     # (1, B * G, 4)
    cover = overlap(a, c, over="first") * is_crowd.reshape(1, -1)  # (N, B * G)
    # the largest over each image's rows: (N, B * G) -> (N, B, G) -> (N, B)
    return cover.reshape(num, batch, num_obj).max(axis=2)


def _match_on_device(ground_truth, anchor_boxes, valid, crowd_ioa, pos_iou, neg_iou):
    """Each anchor's best object (B, N) int, positives and negative
    candidates (B, N) bool, with MXNet operators on the anchors' context."""
    ctx = anchor_boxes.ctx
    num = anchor_boxes.shape[0]
    batch, num_obj = ground_truth.shape[:2]
    cls = ground_truth[..., 0:1]                               # (B, G, 1)
    is_object = (cls >= 0).astype("float32")
    # rows that are not objects (padding, crowds) become a box far outside
    # the image, so their IoU with every anchor is 0
    far = np.array(_FAR_AWAY, ctx=ctx)
    boxes = np.where(is_object > 0, ground_truth[..., 1:], far)       # (B, G, 4)
    # anchors on the rows, objects of every image on the columns (MXNet's
    # reductions are fast over the last axis only):
    # (N, 4) x (B * G, 4) -> (N, B * G), MXNet's native IoU
    anchors_nd = anchor_boxes.as_nd_ndarray()
    ious = mx.nd.contrib.box_iou(anchors_nd, boxes.reshape(-1, 4).as_nd_ndarray(),
                                 format="corner")
    usable = None
    if valid is not None:
        usable = valid.as_in_context(ctx).astype("float32").T     # (B, N) -> (N, B)
    if crowd_ioa is not None:
        is_crowd = (cls == CROWD).astype("float32")               # (B, G, 1)
        crowd_boxes = np.where(is_crowd > 0, ground_truth[..., 1:], far)
        clear = (_crowd_cover(anchors_nd, crowd_boxes, is_crowd, num, batch, num_obj)
                 <= crowd_ioa).astype("float32")                  # (N, B)
        usable = clear if usable is None else usable * clear
    if usable is not None:
        # (N, B * G) -> (N, B, G), anchors an image may not use get IoU 0
        ious = (ious.reshape((num, batch, num_obj))
                * usable.as_nd_ndarray().reshape((num, batch, 1))).reshape((num, -1))
    ious3 = ious.reshape((num, batch, num_obj))                   # (N, B, G)
    best_obj = mx.nd.argmax(ious3, axis=2)                        # (N, B)
    best_iou = mx.nd.pick(ious3, best_obj, axis=2)                # (N, B)
    # an object's best anchors (all on a tie), unless its best IoU is 0:
    # compare with each column's maximum, then "any" over an image's
    # objects as a matrix product (faster than a reduction here)
    obj_best = mx.nd.max(ious, axis=0, keepdims=True)             # (1, B * G)
    # an object no anchor overlaps gets a bar no IoU reaches (no forced anchor)
    obj_best = mx.nd.where(obj_best > 0, obj_best, mx.nd.full(obj_best.shape, 2.0, ctx=ctx))
    is_best = mx.nd.broadcast_greater_equal(ious, obj_best)        # (N, B * G)
    forced = mx.nd.dot(is_best.reshape((-1, num_obj)),
                       mx.nd.ones((num_obj, 1), ctx=ctx)).reshape((num, batch))
    # (N, B) -> (B, N) for the rest, which is per anchor
    best_obj = best_obj.as_np_ndarray().T
    best_iou = best_iou.as_np_ndarray().T
    forced = forced.as_np_ndarray().T > 0
    positive = (best_iou > pos_iou) | forced                   # (B, N)
    candidates = (best_iou < neg_iou) & ~positive
    if usable is not None:
        candidates = candidates & (usable.T > 0)
    return best_obj, positive, candidates


def _label_on_host(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, weights,
                   valid, crowd_ioa, validate, balanced):
    """:func:`label_anchors` for CPU inputs (see :mod:`rpn.ops.host_labels`):
    the device path's labels and offsets to the bit."""
    positive, negative, matched, corners = match_on_host(
        ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, valid, crowd_ioa, validate,
        balanced=balanced)
    positive_f, negative_f = positive.astype("float32"), negative.astype("float32")
    cls_labels = (IGNORE + (NEGATIVE - IGNORE) * negative_f
                  + (matched[..., 0] + 1 - IGNORE) * positive_f).astype("float32")
    return (np.array(cls_labels, ctx=anchors.ctx),
            encode_host(corners, matched[..., 1:], positive, weights, anchors.ctx))


def label_anchors(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, *,
                  weights=OFFSET_WEIGHTS, valid=None, crowd_ioa=0.5, validate=True,
                  method="auto", anchors_per_image=None, positive_fraction=0.5):
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

    With ``anchors_per_image`` (an integer; ``None``, the default, keeps the
    rule above) the sample is Faster R-CNN's own (3.1.3): each image keeps
    ``int(anchors_per_image * positive_fraction)`` of its positives at
    most, chosen at random (the others are ignored), and fills the rest of
    ``anchors_per_image`` with negative candidates, at random (an image with
    too few keeps them all); ``neg_pos_ratio`` is then unused. The paper's
    values are 256 and 0.5 (torchvision's ``BalancedPositiveNegativeSampler``,
    detectron2's ``subsample_labels``).

    Extras: ``valid`` (B, N) marks the anchors an image may use (0: ignored,
    never positive, never an object's best anchor; e.g. anchors outside an
    image in a padded batch). Rows of class :data:`rpn.CROWD` are crowd
    regions (COCO's ``iscrowd``): not objects, and an anchor whose area they
    cover by more than ``crowd_ioa`` is ignored (that pass is skipped when
    validation finds no crowd row; ``crowd_ioa=None`` skips it always). ``validate`` checks the input
    with one read from the device; ``validate=False`` reads nothing, for
    callers whose ground truth was checked already (the training loop's:
    datasets check their labels when they are built). ``method``:
    ``"device"`` matches anchors and objects with MXNet operators on the
    anchors' context (no host read: what a GPU needs), ``"host"`` with
    NumPy (CPU inputs; MXNet 1.9.1's reductions are several times slower
    on a CPU), ``"auto"`` (default) the host on a CPU, the device otherwise.
    Both give the same labels (a test checks it).

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
    pos_iou, neg_iou : thresholds in [0, 1], ``neg_iou <= pos_iou``.
    neg_pos_ratio : number of negatives per positive, or ``None``.
    anchors_per_image, positive_fraction : Faster R-CNN's sample (above), or
        ``None`` (and unused).

    Returns
    -------
    cls_labels : (B, N) float32: ``class + 1`` for positives, ``NEGATIVE``
        (0) for sampled negatives, ``IGNORE`` (-1) for the rest.
    box_offsets : (B, N, 4) float32 offsets to the matched object; 0 for
        anchors that are not positive.
    """
    _check_settings(pos_iou, neg_iou, neg_pos_ratio, crowd_ioa, anchors_per_image,
                    positive_fraction)
    balanced = None if anchors_per_image is None else (anchors_per_image, positive_fraction)
    if method not in ("auto", "device", "host"):
        raise ValueError(f"method must be 'auto', 'device' or 'host', got {method!r}")
    _check_anchors(anchors)
    ctx, num = anchors.ctx, anchors.shape[1]
    anchors = anchors.astype("float32", copy=False)
    ground_truth = ground_truth.as_in_context(ctx).astype("float32", copy=False)
    _check_shapes(ground_truth, valid, num)
    batch, num_obj = ground_truth.shape[:2]
    if batch == 0:
        return np.zeros((0, num), ctx=ctx), np.zeros((0, num, 4), ctx=ctx)
    if num_obj == 0:
        # (B, 0, 5) -> (B, 1, 5): one padding row keeps the reductions defined
        ground_truth = np.full((batch, 1, 5), -1.0, ctx=ctx)
        num_obj = 1
    if method == "host" or (method == "auto" and ctx.device_type == "cpu"):
        return _label_on_host(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio,
                              weights, valid, crowd_ioa, validate, balanced)
    if validate and not _check_values(ground_truth, anchors):
        crowd_ioa = None                            # no crowd row: nothing to cover
    anchor_boxes = anchors.T                                   # (4, N) -> (N, 4)
    best_obj, positive, candidates = _match_on_device(
        ground_truth, anchor_boxes, valid, crowd_ioa, pos_iou, neg_iou)
    if balanced is None:
        negative = _sample_negatives(candidates, positive.sum(axis=1), neg_pos_ratio)
    else:
        positive, negative = _sample_balanced(positive, candidates, *balanced)

    # each anchor's matched object: (B, G, 5) rows at best_obj (B, N) -> (B, N, 5)
    matched = take_rows(_nd, ground_truth, best_obj)
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
                neg_pos_ratio=5, weights=OFFSET_WEIGHTS, valid=None, crowd_ioa=0.5,
                validate=True, method="auto", anchors_per_image=None,
                positive_fraction=0.5):
    """Assign labels to anchors for RPN (chapter section "Anchor Boxes").

    :func:`label_anchors` with the chapter's thresholds (0.7, 0.3) and ratio
    (5 negatives per positive), every object class turned into ``POSITIVE``.
    The chapter's prose speaks of 100 negatives an image while its code uses
    the ratio 5; the code's rule is the default, and ``neg_pos_ratio`` changes
    it. ``valid``, ``crowd_ioa``, ``validate``, ``method`` and Faster R-CNN's
    sample of ``anchors_per_image`` with at most ``positive_fraction``
    positives: see :func:`label_anchors`.

    ``ground_truth``: (B, G, 5); ``anchors``: (4, N). Returns ``cls_labels``
    (B * N,) with ``POSITIVE``/``NEGATIVE``/``IGNORE``, and ``box_offsets``
    (B * N, 4), image-major like :class:`rpn.RPNOutput`'s predictions, on
    the anchors' context.
    """
    cls_labels, box_offsets = label_anchors(
        ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio, weights=weights,
        valid=valid, crowd_ioa=crowd_ioa, validate=validate, method=method,
        anchors_per_image=anchors_per_image, positive_fraction=positive_fraction)
    cls_labels = np.where(cls_labels > 0, float(POSITIVE), cls_labels)
    # (B, N) -> (B * N,) and (B, N, 4) -> (B * N, 4)
    return cls_labels.reshape(-1), box_offsets.reshape(-1, 4)
