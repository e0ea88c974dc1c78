"""The canvas frame: where each image of a padded batch sits, and its anchors.

A batch pads images of several sizes into one canvas ``(H, W)`` pixels,
each image at the top left. The proposal model's anchors and the head's
offsets live in the canvas frame (corner form, normalised by ``W, H``);
ground truth and proposals live in each image's own frame (normalised by
its own width and height). IoU and offsets do not change under the
per-axis scaling between the two, so labels are the same in either.

Every function works on arrays (``F`` the ``mxnet.ndarray`` module) and in
a graph, as the model's ``hybrid_forward`` needs.

Shape glossary: ``B`` images; features ``(B, C, h, w)`` at ``stride``
(``H = h * stride``, ``W = w * stride``); ``A`` anchors a pixel, ``N = h *
w * A``; ``image_sizes`` (B, 2+) ``[height, width]`` in input pixels.
"""
from ..ops.grid import anchor_grid
from ..ops.precision import float32

__all__ = ["feature_size", "grid_anchors", "level_anchors", "canvas_extent", "valid_anchors",
           "border", "image_scale"]


def feature_size(F, features):
    """``(h, w)`` of ``features`` (B, C, h, w) as scalars (float32 also when
    the features are float16, under mixed precision)."""
    ys, xs = float32(F.npx.arange_like(features, axis=2), F.npx.arange_like(features, axis=3))
    return F.np.ones_like(ys).sum(), F.np.ones_like(xs).sum()


def grid_anchors(F, features, shapes, stride):
    """Anchors of every pixel of ``features``, in the canvas frame: centres
    ``((x + 0.5) / w, (y + 0.5) / h)``, sizes ``shapes`` (A, 2) ``[width,
    height]`` pixels divided by the canvas ``(w * stride, h * stride)``.
    Returns (4, N), pixel row-major then anchor, as
    :func:`rpn.generate_anchors`."""
    # (h,) and (w,), float32 also for float16 features (mixed precision)
    ys, xs = float32(F.npx.arange_like(features, axis=2), F.npx.arange_like(features, axis=3))
    h, w = F.np.ones_like(ys).sum(), F.np.ones_like(xs).sum()          # () each
    return anchor_grid(F, (ys + 0.5) / h, (xs + 0.5) / w,
                       shapes[:, 0] / (w * stride), shapes[:, 1] / (h * stride))


def level_anchors(F, maps, shapes, strides):
    """Anchors of every pixel of each level of a feature pyramid, all in the
    one canvas frame (normalised by the canvas of the finest level, ``(w_0
    * strides[0], h_0 * strides[0])`` pixels): centres ``((x + 0.5) *
    s_l, (y + 0.5) * s_l)`` pixels of level ``l`` of stride ``s_l``, sizes
    the level's rows of ``shapes`` (L * A, 2) ``[width, height]`` pixels
    (``A`` a level). Returns one (4, N_l) array a level."""
    h, w = feature_size(F, maps[0])
    canvas_h, canvas_w = h * strides[0], w * strides[0]                  # () each
    count = len(maps)
    out = []
    for number, (level, stride) in enumerate(zip(maps, strides)):
        ys, xs = float32(F.npx.arange_like(level, axis=2), F.npx.arange_like(level, axis=3))
        # the level's A rows of shapes: (L * A, 2) -> (L, A, 2) -> (A, 2)
        mine = F.npx.reshape(shapes, (count, -1, 2))[number]
        out.append(anchor_grid(F, (ys + 0.5) * stride / canvas_h,
                               (xs + 0.5) * stride / canvas_w,
                               mine[:, 0] / canvas_w, mine[:, 1] / canvas_h))
    return out


def canvas_extent(F, features, image_sizes, stride):
    """Each image's extent in the canvas frame: (B, 1) ``width / W`` and
    ``height / H``."""
    h, w = feature_size(F, features)
    return image_sizes[:, 1:2] / (w * stride), image_sizes[:, 0:1] / (h * stride)


def image_scale(F, ex, ey):
    """(B, 1, 4) ``[w / W, h / H, w / W, h / H]`` from :func:`canvas_extent`:
    canvas-frame boxes divided by it are in their image's frame."""
    return F.np.expand_dims(F.np.concatenate([ex, ey, ex, ey], axis=1), 1)


def border(F, features, allowed_border, stride):
    """``allowed_border`` pixels in the canvas frame ``(x, y)``, or ``(None,
    None)`` when every anchor centred in an image may be used."""
    if allowed_border is None:
        return None, None
    h, w = feature_size(F, features)
    return allowed_border / (w * stride), allowed_border / (h * stride)


def valid_anchors(F, anchors, ex, ey, border_x, border_y):
    """(B, N) float mask of the anchors an image may use: centre inside the
    image, and, when ``border_x`` is not ``None``, crossing its edges by at
    most that much (canvas frame; ``anchors`` (4, N), ``ex``, ``ey`` (B, 1))."""
    x0, y0, x1, y1 = (anchors[i:i + 1] for i in range(4))       # (1, N) each
    valid = (((x0 + x1) / 2 < ex).astype("float32")
             * ((y0 + y1) / 2 < ey).astype("float32"))         # (B, N)
    if border_x is not None:
        valid = (valid * (x0 >= -border_x).astype("float32")
                 * (y0 >= -border_y).astype("float32")
                 * (x1 <= ex + border_x).astype("float32")
                 * (y1 <= ey + border_y).astype("float32"))
    return valid
