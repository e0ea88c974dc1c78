"""Boxes, their overlap, and the offsets between anchors and objects.

Chapter section "Anchor Boxes" (and its companion section on bounding boxes);
the offset coding is Faster R-CNN's, :cite:`Ren.He.Girshick.ea.2015`, eq. (2).

Box convention, for the whole package: a box is ``(xmin, ymin, xmax, ymax)``
in corner form, normalised to ``[0, 1]`` by the image's width and height.
Pixels appear only at the edges (datasets and drawing).

Shape glossary: ``N``, ``M`` boxes. As in the chapter, public box sets are
coordinate-major, ``(4, N)``; a single box is ``(4,)``. The ``_``-prefixed
helpers work on box-major ``(..., 4)`` arrays, which is what batched code needs.
"""
import math

from mxnet import np

__all__ = [
    "box_corner_to_center", "box_center_to_corner", "iou",
    "anchor_to_gt_offset", "anchor_plus_offset", "project_box",
    "OFFSET_WEIGHTS", "MAX_LOG_SCALE", "overlap", "generalized_iou",
]

#: The chapter's offset scaling ``(10, 10, 5, 5)`` for ``(x, y, w, h)``.
OFFSET_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
#: Upper bound of a decoded log width/height ratio, as detection libraries
#: clamp it: a box grows at most 1000/16 times its anchor, so ``exp`` never
#: overflows.
MAX_LOG_SCALE = math.log(1000.0 / 16)


def _check_coord_major(name, boxes):
    """Raise ``ValueError`` unless ``boxes`` is ``(4,)`` or ``(4, N)``."""
    if boxes.ndim not in (1, 2) or boxes.shape[0] != 4:
        raise ValueError(
            f"{name} must be a box (4,) or a coordinate-major set (4, N), "
            f"got shape {boxes.shape}")


def _planes(boxes, xp):
    """(..., 4) -> four (...) coordinate planes. Moving the coordinate axis
    first makes each plane a contiguous view: far cheaper in MXNet than
    slicing or splitting the last axis. Works on arrays and graph symbols."""
    planes = xp.moveaxis(boxes, -1, 0)                  # (..., 4) -> (4, ...)
    return planes[0], planes[1], planes[2], planes[3]


def _join(planes, xp):
    """Four (...) planes -> (..., 4)."""
    return xp.moveaxis(xp.stack(planes, axis=0), 0, -1)  # (4, ...) -> (..., 4)


def _corner_to_center(boxes, xp=np):
    """(..., 4) corner boxes -> (..., 4) ``(cx, cy, w, h)``. ``xp`` is
    ``mxnet.np`` or a HybridBlock's ``F.np``."""
    x1, y1, x2, y2 = _planes(boxes, xp)
    return _join([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], xp)


def _center_to_corner(boxes, xp=np):
    """(..., 4) ``(cx, cy, w, h)`` boxes -> (..., 4) corner boxes."""
    cx, cy, w, h = _planes(boxes, xp)
    return _join([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], xp)


def box_corner_to_center(boxes):
    """Corner form to centre form ``(cx, cy, w, h)``.

    ``boxes``: ``(4,)`` or ``(4, N)``, coordinate-major as in the chapter.
    Returns the same shape.
    """
    _check_coord_major("boxes", boxes)
    # (4, N) -> (N, 4) -> convert -> (4, N)
    return _corner_to_center(boxes.T).T


def box_center_to_corner(boxes):
    """Centre form ``(cx, cy, w, h)`` to corner form; inverse of
    :func:`box_corner_to_center`. ``(4,)`` or ``(4, N)`` in and out."""
    _check_coord_major("boxes", boxes)
    # (4, N) -> (N, 4) -> convert -> (4, N)
    return _center_to_corner(boxes.T).T


def _clamped_area(boxes, xp):
    x0, y0, x1, y1 = _planes(boxes, xp)
    return xp.maximum(x1 - x0, 0) * xp.maximum(y1 - y0, 0)


def _intersection(a, b, xp):
    ax0, ay0, ax1, ay1 = _planes(a, xp)
    bx0, by0, bx1, by1 = _planes(b, xp)
    iw = xp.maximum(xp.minimum(ax1, bx1) - xp.maximum(ax0, bx0), 0)
    ih = xp.maximum(xp.minimum(ay1, by1) - xp.maximum(ay0, by0), 0)
    return iw * ih


def overlap(a, b, *, over="union", area_a=None, xp=np):
    """The one overlap formula of the package: corner boxes ``a`` (..., 4)
    and ``b`` (..., 4), broadcast against each other (e.g. ``a[:, None]``
    and ``b[None]`` for every pair) -> (...).

    ``over="union"``: intersection over union (IoU; 0 where the union is
    empty); ``over="first"``: intersection over ``a``'s area (COCO's rule
    for crowd regions; 0 for an empty ``a``). Widths and heights are
    clamped at 0 (the chapter's ``max(w, 0) * max(h, 0)``). ``area_a``: the
    areas of ``a`` when already known. ``xp``: the array module, MXNet's
    ``np`` or NumPy; the operations and their order are the same in both,
    so the float32 results agree to the bit (the labeler's host path
    relies on it)."""
    inter = _intersection(a, b, xp)
    if area_a is None:
        area_a = _clamped_area(a, xp)
    if over == "first":
        denom = area_a
    elif over == "union":
        denom = area_a + _clamped_area(b, xp) - inter
    else:
        raise ValueError(f"over must be 'union' or 'first', got {over!r}")
    return xp.where(denom > 0, inter / xp.where(denom > 0, denom, 1), 0)


def generalized_iou(a, b, xp=np):
    """GIoU (Rezatofighi et al., 2019) of corner boxes ``a`` and ``b``
    (..., 4), broadcast against each other -> (...): the IoU of
    :func:`overlap` less the share of the smallest enclosing box that the
    union leaves empty. In [-1, 1]; 1 for equal boxes, and it still falls
    as disjoint boxes move apart, so ``1 - GIoU`` is a box loss with a
    gradient everywhere."""
    inter = _intersection(a, b, xp)
    union = _clamped_area(a, xp) + _clamped_area(b, xp) - inter
    ax0, ay0, ax1, ay1 = _planes(a, xp)
    bx0, by0, bx1, by1 = _planes(b, xp)
    enclosing = (xp.maximum(ax1, bx1) - xp.minimum(ax0, bx0)) * (
        xp.maximum(ay1, by1) - xp.minimum(ay0, by0))
    tiny = 1e-9
    return inter / xp.maximum(union, tiny) - (enclosing - union) / xp.maximum(enclosing, tiny)


def _pairwise_iou(boxes1, boxes2):
    """IoU of every box of ``boxes1`` (..., G, 4) with every box of
    ``boxes2`` (N, 4); returns (..., G, N) (see :func:`overlap`)."""
    # (..., G, 4) -> (..., G, 1, 4) against (N, 4) -> (1, N, 4)
    return overlap(boxes1[..., :, None, :], boxes2[None, :, :])


def iou(boxes1, boxes2):
    """Intersection over union between two box sets.

    ``boxes1``: ``(4, N)`` or ``(4,)``; ``boxes2``: ``(4, M)`` or ``(4,)``;
    corner form. Returns the pairwise ``(N, M)`` matrix, with the axis of a
    single ``(4,)`` box dropped: ``(4,)`` and ``(4, M)`` give ``(M,)``, two
    single boxes give a scalar. Areas use ``max(w, 0) * max(h, 0)``.
    """
    _check_coord_major("boxes1", boxes1)
    _check_coord_major("boxes2", boxes2)
    # (4, N) -> (N, 4); a single (4,) box becomes (1, 4)
    a = boxes1.reshape(4, -1).T
    b = boxes2.reshape(4, -1).T
    out = _pairwise_iou(a, b)                                   # (N, M)
    if boxes1.ndim == 1:
        out = out[0]
    if boxes2.ndim == 1:
        out = out[..., 0]
    return out


def _encode(anchors, boxes, weights=OFFSET_WEIGHTS):
    """Offsets from ``anchors`` to ``boxes``, both (..., 4) corner form;
    returns (..., 4) ``(dx, dy, dw, dh)``."""
    ax1, ay1, ax2, ay2 = _planes(anchors, np)
    gx1, gy1, gx2, gy2 = _planes(boxes, np)
    aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
    wx, wy, ww, wh = weights
    return _join([wx * ((gx1 + gx2) - (ax1 + ax2)) / 2 / aw,
                  wy * ((gy1 + gy2) - (ay1 + ay2)) / 2 / ah,
                  ww * np.log(gw / aw), wh * np.log(gh / ah)], np)


def _decode(anchors, offsets, weights=OFFSET_WEIGHTS,
            max_log_scale=MAX_LOG_SCALE, xp=np):
    """Apply (..., 4) ``offsets`` to (..., 4) corner ``anchors``; returns
    (..., 4) corner boxes. The log-size terms are clamped to
    ``max_log_scale`` (and the centre shift to the same bound) so the result
    is always finite. ``xp``: ``mxnet.np``, or ``F.np`` inside a graph."""
    ax1, ay1, ax2, ay2 = _planes(anchors, xp)
    dx, dy, dw, dh = _planes(offsets, xp)
    aw, ah = ax2 - ax1, ay2 - ay1
    wx, wy, ww, wh = weights
    bound = math.exp(max_log_scale)
    cx = (ax1 + ax2) / 2 + xp.clip(dx / wx, -bound, bound) * aw
    cy = (ay1 + ay2) / 2 + xp.clip(dy / wy, -bound, bound) * ah
    half_w = aw * xp.exp(xp.clip(dw / ww, -max_log_scale, max_log_scale)) / 2
    half_h = ah * xp.exp(xp.clip(dh / wh, -max_log_scale, max_log_scale)) / 2
    return _join([cx - half_w, cy - half_h, cx + half_w, cy + half_h], xp)


def anchor_to_gt_offset(anchors, ground_truths, *, weights=OFFSET_WEIGHTS):
    """Offsets that move each anchor onto its ground-truth box.

    With ``a`` and ``g`` in centre form, the offsets are
    ``(10 (gx - ax) / aw, 10 (gy - ay) / ah, 5 log(gw / aw), 5 log(gh / ah))``
    (chapter section "Anchor Boxes"; Faster R-CNN eq. (2) scaled by
    ``weights``). ``anchors`` and ``ground_truths``: ``(4, N)`` corner form.
    Returns ``(4, N)``.
    """
    _check_coord_major("anchors", anchors)
    _check_coord_major("ground_truths", ground_truths)
    if anchors.shape != ground_truths.shape:
        raise ValueError(
            f"anchors {anchors.shape} and ground_truths "
            f"{ground_truths.shape} must have the same shape (4, N)")
    # (4, N) -> (N, 4) -> encode -> (4, N)
    return _encode(anchors.T, ground_truths.T, weights).T


def anchor_plus_offset(anchors, offsets, *, weights=OFFSET_WEIGHTS,
                       max_log_scale=MAX_LOG_SCALE):
    """Inverse of :func:`anchor_to_gt_offset`: move anchors by offsets.

    ``anchors``, ``offsets``: ``(4, N)``; returns ``(4, N)`` corner boxes.
    Departs from the chapter's draft, which has no guard: the width and
    height terms are clamped at ``log(1000 / 16)`` (as detection libraries
    do), so a wild prediction decodes to a large but finite box, never inf
    or NaN.
    """
    _check_coord_major("anchors", anchors)
    _check_coord_major("offsets", offsets)
    if anchors.shape != offsets.shape:
        raise ValueError(f"anchors {anchors.shape} and offsets "
                         f"{offsets.shape} must have the same shape (4, N)")
    # (4, N) -> (N, 4) -> decode -> (4, N)
    return _decode(anchors.T, offsets.T, weights, max_log_scale).T


def project_box(boxes):
    """Clip ``(4, N)`` (or any shape of) normalised boxes into ``[0, 1]``."""
    return np.clip(boxes, 0.0, 1.0)
