"""Anchor boxes centred at every pixel of a feature map.

Chapter section "Anchor Boxes" (and the companion section on anchors);
anchors are Faster R-CNN's "reference boxes", :cite:`Ren.He.Girshick.ea.2015`.

Shape glossary: ``H, W`` feature-map height and width, ``A`` anchors a pixel
(``len(sizes) + len(ratios) - 1``), ``N = H * W * A`` anchors. Boxes are
corner form, normalised to ``[0, 1]``, coordinate-major ``(4, N)``.

Anchor order is pixel row-major, then anchor: anchor ``a`` of pixel ``(y, x)``
is column ``(y * W + x) * A + a``. This is the order in which
:class:`rpn.RPNOutput` flattens its predictions, so labels and predictions
line up.
"""
import math

import mxnet as mx
from mxnet import ndarray as _nd
from mxnet import np

from .ops.grid import anchor_grid
from .settings import RPN_RATIOS, RPN_SIZES, num_anchors

__all__ = ["generate_anchors", "rpn_anchors", "num_anchors", "anchor_shapes",
           "RPN_SIZES", "RPN_RATIOS"]


def _pairs(sizes, ratios, product):
    """The ``A`` (size, ratio) pairs: SSD order ``(s1, r1) ... (s1, rm),
    (s2, r1) ... (sn, r1)``, or every size with every ratio (size-major)."""
    if product:
        return [(s, r) for s in sizes for r in ratios]
    return [(sizes[0], r) for r in ratios] + [(s, ratios[0]) for s in sizes[1:]]


def _check_shapes(sizes, ratios):
    if not sizes or not ratios or min(sizes) <= 0 or min(ratios) <= 0:
        raise ValueError(f"sizes and ratios must be non-empty and positive, "
                         f"got sizes={sizes}, ratios={ratios}")


def _anchor_shapes(height, width, sizes, ratios, product):
    """The ``A`` (width, height) pairs, normalised by a ``height x width``
    map: a ratio-1 anchor is square in pixels."""
    short = min(height, width)
    return [(short / width * s * math.sqrt(r), short / height * s / math.sqrt(r))
            for s, r in _pairs(sizes, ratios, product)]


def anchor_shapes(sizes, ratios, base_size, *, product=False):
    """The ``A`` anchor shapes of a pixel, ``[(width, height), ...]`` in
    pixels: size ``s`` and ratio ``r`` give ``s * base_size * sqrt(r)`` by
    ``s * base_size / sqrt(r)``. With ``base_size`` the side of a square
    image these are :func:`generate_anchors`' anchors in pixels; the
    proposal model uses them so that an anchor keeps its size in pixels
    whatever the shape of the padded batch."""
    _check_shapes(sizes, ratios)
    return [(s * base_size * math.sqrt(r), s * base_size / math.sqrt(r))
            for s, r in _pairs(sizes, ratios, product)]


def generate_anchors(height, width, sizes, ratios, *, product=False, ctx=None):
    """Anchors for every pixel of a ``height x width`` map.

    Each pixel ``(y, x)`` is the centre ``((x + 0.5) / width, (y + 0.5) /
    height)`` of ``A = len(sizes) + len(ratios) - 1`` anchors; an anchor of
    size ``s`` and ratio ``r`` is ``min(w, h) / w * s * sqrt(r)`` wide and
    ``min(w, h) / h * s / sqrt(r)`` high, so a ratio-1 anchor is square in
    pixels. Returns ``(4, height * width * A)`` corner boxes, normalised,
    in pixel row-major then anchor order, on ``ctx`` (default: the current
    context). The same arguments give the same (cached) array: do not
    modify it in place.

    ``product=True`` pairs every size with every ratio, as Faster R-CNN's
    3 scales x 3 ratios do, instead of the chapter's ``n + m - 1``
    combinations (which give only the first size other shapes).
    """
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got "
                         f"{height} x {width}")
    _check_shapes(sizes, ratios)
    ctx = ctx or mx.current_context()
    key = (int(height), int(width), tuple(sizes), tuple(ratios), bool(product), ctx)
    if key not in _CACHE:
        if len(_CACHE) >= 64:
            _CACHE.clear()
        _CACHE[key] = _generate(int(height), int(width), sizes, ratios, product, ctx)
    return _CACHE[key]


# anchors depend only on the grid and the settings: made once, as the
# chapter makes them once per data shape (callers must not modify them)
_CACHE = {}


def _generate(height, width, sizes, ratios, product, ctx):
    shapes = _anchor_shapes(height, width, sizes, ratios, product)
    aw = np.array([w for w, _ in shapes], ctx=ctx)                  # (A,)
    ah = np.array([h for _, h in shapes], ctx=ctx)                  # (A,)
    cx = (np.arange(width, ctx=ctx) + 0.5) / width                  # (W,)
    cy = (np.arange(height, ctx=ctx) + 0.5) / height                # (H,)
    return anchor_grid(_nd, cy, cx, aw, ah)                         # (4, H * W * A)


def rpn_anchors(X, *, sizes=RPN_SIZES, ratios=RPN_RATIOS, product=False):
    """Generate anchors for RPN (chapter section "Anchor Boxes").

    ``X``: backbone features ``(B, C, H, W)``. Returns ``(4, H * W * A)``
    anchors on ``X``'s context; with the chapter's three sizes and three
    ratios, ``A = 5``. ``sizes``, ``ratios`` and ``product`` are extras, see
    :func:`generate_anchors`.
    """
    if X.ndim != 4:
        raise ValueError(f"X must be features (B, C, H, W), got shape {X.shape}")
    _, _, height, width = X.shape
    return generate_anchors(height, width, sizes, ratios, product=product,
                            ctx=X.ctx)
