"""Proposals of an image too large to run whole: overlapping tiles, merged.

At the photograph's own resolution a 3840 x 2160 frame runs whole
(:mod:`rpn.model.network`); past ``max_pixels`` input pixels it is cut
into tiles of ``tile`` pixels a side that overlap by ``overlap`` (an
object up to that size lies whole in one tile), each tile is proposed on
its own, boxes that touch a tile's inner edge are dropped (the neighbour
that overlaps it sees the object whole), and the image's proposals from
every tile go through one NMS in image coordinates, best first.

Shape glossary: ``B`` images, ``K`` proposals an image; a tile ``(3, t_h,
t_w)``; boxes corner form, normalised by the tile, then by the image.
"""
import numpy as onp
from mxnet import ndarray as _nd
from mxnet import np

from ..ops.nms import box_nms

__all__ = ["tile_starts", "propose_tiled"]

#: A box within this many pixels of a tile's inner edge is the neighbour's.
EDGE = 2.0


def tile_starts(length, tile, overlap):
    """The starts of the tiles along a side of ``length`` pixels: ``tile``
    long, each overlapping the next by at least ``overlap``, the last ending
    at the side's end (one tile when the side fits)."""
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def propose_tiled(propose, X, image_sizes, *, tile, overlap, nms_threshold, keep,
                  divisor=32):
    """Proposals of the batch ``X`` (B, 3, H, W) with ``image_sizes`` (B, 2)
    ``[height, width]`` input pixels, tile by tile (see the module).
    ``propose(X_t, sizes_t)`` gives a tile batch's ``(scores (T, K), boxes
    (T, K, 4))`` normalised by each tile; ``keep`` proposals an image are
    kept after the merging NMS. Returns ``(scores (B, keep), boxes (B,
    keep, 4))``, rows scoring below 0 padding, on ``X``'s context."""
    ctx, sizes = X.ctx, onp.asarray(image_sizes.asnumpy(), dtype="int64")
    scores_out = np.full((X.shape[0], keep), -1.0, ctx=ctx)
    boxes_out = np.zeros((X.shape[0], keep, 4), ctx=ctx)
    for b, (height, width) in enumerate(sizes[:, :2]):
        rows = []
        for y0 in tile_starts(int(height), tile, overlap):
            for x0 in tile_starts(int(width), tile, overlap):
                th, tw = min(tile, int(height)), min(tile, int(width))
                ph, pw = -(-th // divisor) * divisor, -(-tw // divisor) * divisor
                part = np.zeros((1, 3, ph, pw), ctx=ctx)
                part[:, :, :th, :tw] = X[b:b + 1, :, y0:y0 + th, x0:x0 + tw]
                scores, boxes = propose(part, np.array([[th, tw]], dtype="float32", ctx=ctx))
                rows.append(_placed(scores[0], boxes[0], (y0, x0, th, tw),
                                    (int(height), int(width))))
        data = np.concatenate(rows, axis=0)[None]                       # (1, M, 5)
        out = box_nms(_nd, data, nms_threshold, valid_thresh=-0.5)[0]   # (M, 5)
        count = min(keep, out.shape[0])
        scores_out[b, :count] = out[:count, 0]
        boxes_out[b, :count] = out[:count, 1:5]
    return scores_out, boxes_out


def _placed(scores, boxes, where, size):
    """One tile's proposals, ``scores`` (K,) and ``boxes`` (K, 4) normalised
    by the tile, as (K, 5) rows ``[score, x1, y1, x2, y2]`` normalised by the
    image; padding and boxes touching the tile's inner edges score -1."""
    y0, x0, th, tw = where
    height, width = size
    pixels = boxes * np.array([tw, th, tw, th], ctx=boxes.ctx) \
        + np.array([x0, y0, x0, y0], ctx=boxes.ctx)                      # (K, 4) image px
    inner = []
    if x0 > 0:
        inner.append(pixels[:, 0] <= x0 + EDGE)
    if y0 > 0:
        inner.append(pixels[:, 1] <= y0 + EDGE)
    if x0 + tw < width:
        inner.append(pixels[:, 2] >= x0 + tw - EDGE)
    if y0 + th < height:
        inner.append(pixels[:, 3] >= y0 + th - EDGE)
    drop = scores < 0
    for edge in inner:
        drop = drop | edge
    placed = pixels / np.array([width, height, width, height], ctx=boxes.ctx)
    scores = np.where(drop, -1.0, scores)
    return np.concatenate([scores[:, None], placed], axis=1)
