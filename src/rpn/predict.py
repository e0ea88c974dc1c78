"""Proposals from a trained RPN: decode, clip, filter, NMS.

Chapter section "Inference" (``predict_rpn``); Faster R-CNN's proposal
step, :cite:`Ren.He.Girshick.ea.2015`, 3.1.2-3.3.

Shape glossary: ``B`` images, ``N = H * W * A`` anchors an image, ``M``
proposals kept for an image. Boxes are corner form, normalised.
"""
import numpy as onp
from mxnet import ndarray as _nd
from mxnet import np

from .boxes import OFFSET_WEIGHTS
from .model.proposal_layer import ProposalRule, select_proposals
from .suppression import check_iou_threshold

__all__ = ["predict_rpn", "proposals_from_predictions"]


def proposals_from_predictions(anchors, cls_preds, box_preds, nms_threshold, *,
                               pre_nms_top_n=None, post_nms_top_n=None,
                               min_size=0.0, image_sizes=None, weights=OFFSET_WEIGHTS):
    """Turn head outputs into proposals, all images in one NMS call
    (:func:`rpn.model.proposal_layer.select_proposals`, as the proposal model).

    ``anchors`` (4, N); ``cls_preds`` (B * N, 2) logits; ``box_preds``
    (B * N, 4) offsets. Returns a list of B pairs ``[scores (M,), boxes
    (4, M)]``, best first, on the anchors' context: see :func:`predict_rpn`.
    """
    if anchors.ndim != 2 or anchors.shape[0] != 4:
        raise ValueError(f"anchors must be (4, N), got {anchors.shape}")
    num = anchors.shape[1]
    if (cls_preds.ndim != 2 or cls_preds.shape[1] != 2
            or cls_preds.shape[0] % num or box_preds.shape != (cls_preds.shape[0], 4)):
        raise ValueError(
            f"expected cls_preds (B * {num}, 2) and box_preds (B * {num}, 4) "
            f"for {num} anchors, got {cls_preds.shape} and {box_preds.shape}")
    check_iou_threshold(nms_threshold)
    ctx = anchors.ctx
    batch = cls_preds.shape[0] // num
    if batch == 0:
        return []                          # no image: no image's proposals
    if image_sizes is not None:
        image_sizes = np.array(image_sizes, dtype="float32", ctx=ctx).reshape(batch, -1)
    valid = np.ones((batch, num), ctx=ctx)                        # every anchor proposes
    rule = ProposalRule(nms_threshold, pre_nms_top_n, post_nms_top_n, min_size,
                        weights=tuple(weights))
    out = select_proposals(_nd, anchors, cls_preds.as_in_context(ctx),
                           box_preds.as_in_context(ctx), valid, rule,
                           image_sizes=image_sizes)                  # (B, K, 5)
    counts = (out[..., 0] >= 0).sum(axis=1).asnumpy()               # one host read
    return _cut(out, counts.astype("int64"))


def _cut(out, counts):
    """Proposals (B, K, 5), kept rows first, and each image's count (B,)
    on the host -> the chapter's list of ``[scores (M,), boxes (4, M)]``.
    A handful of operator calls whatever ``B``: every kept row is gathered
    at once, then split by image."""
    batch, num = out.shape[:2]
    flat = onp.concatenate([b * num + onp.arange(k) for b, k in enumerate(counts)])
    # (B, K, 5) -> (B * K, 5) -> the kept rows (M_total, 5)
    rows = np.take(out.reshape(-1, 5), np.array(flat, dtype="int64", ctx=out.ctx), axis=0)
    bounds = onp.cumsum(counts)[:-1].tolist()
    scores = np.split(rows[:, 0], bounds, axis=0) if bounds else [rows[:, 0]]
    # (M_total, 4) -> (4, M_total), the chapter's coordinate-major box set
    boxes = np.split(rows[:, 1:5].T, bounds, axis=1) if bounds else [rows[:, 1:5].T]
    return [[s, b] for s, b in zip(scores, boxes)]


def predict_rpn(backbone_features, output_model, anchor_fn, nms_threshold, *,
                pre_nms_top_n=None, post_nms_top_n=None, min_size=0.0,
                image_sizes=None, weights=OFFSET_WEIGHTS):
    """Predict region proposals (chapter section "Inference").

    ``backbone_features`` (B, C, H, W); ``output_model`` an
    :class:`rpn.RPNOutput`; ``anchor_fn(features) -> (4, N)`` (e.g.
    :func:`rpn.rpn_anchors`). Each anchor is moved by its predicted offsets,
    clipped to the image, and greedy NMS at ``nms_threshold`` removes
    duplicates. Returns, for each image, ``[scores (M,), boxes (4, M)]``,
    best first: scores are object probabilities (softmax), boxes corner
    form, normalised, on the features' context.

    Extras: ``pre_nms_top_n`` boxes of best score enter NMS (``None``: all),
    ``post_nms_top_n`` are returned at most (``None``: all kept), boxes
    narrower or lower than ``min_size`` pixels are dropped first (which
    needs ``image_sizes`` (B, 2) ``[height, width]`` in pixels: the unit of
    the proposal model's ``min_size``). Faster R-CNN used 6000 / 300 at test
    time; the defaults keep the chapter's behaviour.

    Departs from the chapter, which ranked by the raw logit, clipped after
    NMS, and ran a Python NMS per image: here the scores are
    probabilities, boxes are clipped before NMS (as Faster R-CNN does, so
    overlaps are measured inside the image), and every image goes through
    one native NMS call, in :func:`rpn.model.proposal_layer.select_proposals`, the
    code the proposal model runs.
    """
    anchors = anchor_fn(backbone_features)
    cls_preds, box_preds = output_model(backbone_features)
    return proposals_from_predictions(
        anchors, cls_preds, box_preds, nms_threshold,
        pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n,
        min_size=min_size, image_sizes=image_sizes, weights=weights)
