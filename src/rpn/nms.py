"""Non-maximum suppression on MXNet's native operator.

Chapter section "Inference" (and the companion section on anchors).

Shape glossary: ``B`` images, ``N`` boxes. Boxes are corner form,
normalised; the public :func:`nms` takes the chapter's coordinate-major
``(4, N)``, the batched helper box-major ``(B, N, 4)``.
"""
import mxnet as mx
from mxnet import np

__all__ = ["nms"]

# scores below this (only -inf) are left out of NMS; every finite score,
# however negative, takes part
_LOWEST_FLOAT32 = -3.4028234e38


def _check_threshold(iou_threshold):
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")


def _batched_nms(scores, boxes, iou_threshold, topk=-1):
    """Greedy NMS of every image of a batch in one operator call.

    ``scores``: (B, N); ``boxes``: (B, N, 4). Boxes whose score is ``-inf``
    are left out. Only the ``topk`` best boxes of an image enter NMS (``-1``:
    all). Returns (B, N, 6) rows ``[score, xmin, ymin, xmax, ymax, index]``,
    the kept boxes first, best first, then rows of ``-1``; ``index`` is the
    box's position in the input.
    """
    _check_threshold(iou_threshold)
    batch, num = scores.shape
    if batch == 0 or num == 0:
        # box_nms on an empty input breaks every later call of it in the
        # process ("delay_alloc"): answer without it
        return np.full((batch, num, 6), -1.0, ctx=scores.ctx)
    index = np.broadcast_to(np.arange(num, ctx=scores.ctx)[None], (batch, num))
    # (B, N), (B, N, 4), (B, N) -> (B, N, 6)
    data = np.concatenate([scores[..., None], boxes, index[..., None]], axis=-1)
    out = mx.nd.contrib.box_nms(
        data.as_nd_ndarray(), overlap_thresh=float(iou_threshold),
        valid_thresh=_LOWEST_FLOAT32, topk=int(topk), coord_start=1,
        score_index=0, id_index=-1, force_suppress=True, in_format="corner",
        out_format="corner")
    return out.as_np_ndarray()


def nms(scores, boxes, iou_threshold, use_numpy=False):
    """Greedy non-maximum suppression (chapter section "Inference").

    Keep the box of best score, drop every other box whose IoU with it is
    above ``iou_threshold``, repeat with the best of the rest.

    ``scores``: (N,); ``boxes``: (4, N) corner form. Returns the kept
    indices as an int64 array, best score first, on the scores' context.

    Departs from the chapter's draft, which looped in Python (a host round
    trip, quadratic) and returned float indices: this runs MXNet's native
    ``box_nms`` operator on CPU or GPU. ``use_numpy`` is accepted for the
    chapter's calls and changes nothing.
    """
    del use_numpy
    if scores.ndim != 1 or boxes.ndim != 2 or boxes.shape != (4, scores.shape[0]):
        raise ValueError(
            f"nms expects scores (N,) and boxes (4, N), got scores "
            f"{scores.shape} and boxes {boxes.shape}")
    if scores.shape[0] == 0:
        return np.zeros((0,), dtype="int64", ctx=scores.ctx)
    scores = scores.astype("float32", copy=False)
    boxes = boxes.as_in_context(scores.ctx).astype("float32", copy=False)
    # (4, N) -> (1, N, 4); (N,) -> (1, N)
    out = _batched_nms(scores[None], boxes.T[None], iou_threshold)
    index = out[0, :, 5]
    kept, nans = (np.stack([(index >= 0).sum(), np.isnan(scores).sum()
                            + np.isnan(boxes).sum()]).asnumpy())
    if nans:
        raise ValueError(f"nms received {int(nans)} NaN score(s) or "
                         "coordinate(s); expected finite values")
    return index[:int(kept)].astype("int64")
