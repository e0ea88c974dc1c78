"""Anchor boxes at every pixel of a grid: the one anchor generator.

Every anchor of the package comes from :func:`anchor_grid`: the chapter's
:func:`rpn.generate_anchors` (sizes as fractions of the map) and the
proposal model's graph (:mod:`rpn.model.network`, sizes in pixels of the
canvas) only compute the centres and sizes they pass to it.

Shape glossary: ``h, w`` the grid, ``A`` anchors a pixel, ``N = h * w *
A``. Corner form ``(xmin, ymin, xmax, ymax)`` in the unit of the centres
and sizes (normalised, in the package).
"""
__all__ = ["anchor_grid"]


def anchor_grid(F, centres_y, centres_x, widths, heights):
    """Anchors centred at every pixel: ``centres_y`` (h,) and ``centres_x``
    (w,) give the pixels' centres, ``widths`` and ``heights`` (A,) the
    anchors of a pixel. Returns (4, N) corner boxes, pixel row-major then
    anchor: anchor ``a`` of pixel ``(y, x)`` is column ``(y * w + x) * A +
    a``, the order in which :class:`rpn.RPNOutput` flattens its
    predictions. Works on arrays (``F`` the ``mxnet.ndarray`` module) and in
    a graph."""
    cy = centres_y.reshape(-1, 1, 1)                                # (h, 1, 1)
    cx = centres_x.reshape(1, -1, 1)                                # (1, w, 1)
    aw = widths.reshape(1, 1, -1)                                   # (1, 1, A)
    ah = heights.reshape(1, 1, -1)                                  # (1, 1, A)
    zero = cy * 0 + cx * 0                                          # (h, w, 1)
    corners = [zero + cx - aw / 2, zero + cy - ah / 2,
               zero + cx + aw / 2, zero + cy + ah / 2]              # 4 x (h, w, A)
    # (4, h, w, A) -> (4, N)
    return F.np.stack(corners, axis=0).reshape(4, -1)
