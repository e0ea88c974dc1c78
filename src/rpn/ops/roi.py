"""RoI rows for ROIAlign: proposals into a second stage, in process.

:func:`proposals_to_rois` turns the proposal model's output into ``(R, 5)``
rows ``[batch index, x1, y1, x2, y2]`` in input pixels, the RoI format of
MXNet's ``ROIAlign`` (``npx.roi_align`` in later MXNet; 1.9.1 has
``mx.nd.contrib.ROIAlign``, see :func:`roi_align`). The notebook's last
section runs a tiny second stage on them.

Shape glossary: ``B`` images, ``K`` proposals an image, ``R`` RoIs of a
batch, ``C`` feature channels.
"""
import mxnet as mx
import numpy as onp
from mxnet import ndarray as _nd
from mxnet import np

__all__ = ["roi_rows", "proposals_to_rois", "roi_align"]


def roi_rows(F, boxes, image_sizes):
    """(B, R, 4) boxes in the images' frames -> (B * R, 5) ``ROIAlign`` rows
    ``[image, x1, y1, x2, y2]`` in canvas pixels (each image sits at the
    canvas's top-left). Works on arrays and in a graph."""
    # (B, 2) [height, width] -> (B, 1, 4) [w, h, w, h]
    scale = F.np.expand_dims(F.np.concatenate([image_sizes[:, 1:2], image_sizes[:, 0:1]] * 2,
                                              axis=1), 1)
    pixels = boxes * scale                                             # (B, R, 4)
    index = F.np.ones_like(pixels[:, :, 0:1]) * F.np.expand_dims(
        F.np.expand_dims(F.npx.arange_like(pixels, axis=0), -1), -1)  # (B, R, 1)
    # (B, R, 5) -> (B * R, 5)
    return F.np.concatenate([index, pixels], axis=-1).reshape(-1, 5)


def proposals_to_rois(proposals, image_sizes, *, keep_padding=False):
    """RoIs for ROIAlign: ``(R, 5)`` rows ``[batch index, x1, y1, x2, y2]``
    in input pixels (the batch's canvas), float32, on the boxes' context.

    ``proposals``: the proposal model's ``(scores (B, K), boxes (B, K, 4))``
    (normalised by each image's size; rows scoring below 0 are padding), or
    the chapter's list of ``[scores (M,), boxes (4, M)]``. ``image_sizes``
    (B, 2+): each image's ``[height, width]`` in input pixels. Padding rows
    are dropped (one read of the scores from the device); with
    ``keep_padding`` every one of the ``B * K`` rows is kept (no read: what
    a GPU pipeline wants) and padding rows become empty boxes at the
    origin."""
    if isinstance(proposals, (list, tuple)) and not proposals:
        return np.zeros((0, 5), dtype="float32")        # no image (predict_rpn of 0 images)
    if isinstance(proposals, (list, tuple)) and isinstance(proposals[0], list):
        rows, sizes = [], onp.asarray(_host(image_sizes), dtype="float32")
        for b, (_, boxes) in enumerate(proposals):
            ctx = boxes.ctx
            # (4, M) -> (1, M, 4) -> (M, 5) rows of image 0, then numbered b
            image = roi_rows(_nd, boxes.T[None], np.array(sizes[b:b + 1, :2], ctx=ctx))
            rows.append(image + np.array([b, 0, 0, 0, 0], dtype="float32", ctx=ctx))
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, 5))
    scores, boxes = proposals
    ctx = boxes.ctx
    sizes = image_sizes.as_in_context(ctx).astype("float32")[:, :2]       # (B, 2)
    # padding rows become empty boxes at the origin: (B * K, 5)
    rois = roi_rows(_nd, boxes * (scores >= 0)[..., None], sizes)
    if keep_padding:
        return rois
    valid = onp.flatnonzero(scores.asnumpy().reshape(-1) >= 0)
    return rois[np.array(valid, dtype="int64", ctx=ctx)]


def roi_align(features, rois, pooled_size, spatial_scale, *, sample_ratio=2):
    """MXNet's ``ROIAlign`` on ``mxnet.np`` arrays, differentiable:
    ``features`` (B, C, h, w), ``rois`` (R, 5) from :func:`proposals_to_rois`,
    ``spatial_scale`` = 1 / stride. Returns ``(R, C, *pooled_size)``."""
    return mx.nd.contrib.ROIAlign(
        features.as_nd_ndarray(), rois.as_nd_ndarray(), pooled_size=tuple(pooled_size),
        spatial_scale=float(spatial_scale), sample_ratio=sample_ratio).as_np_ndarray()


def _host(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else array
