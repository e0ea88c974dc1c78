"""Non-maximum suppression (chapter section "Inference").

The chapter's :func:`nms` (one image, the chapter's coordinate-major boxes)
on MXNet's native operator, through :func:`rpn.ops.nms.box_nms`: the call
that every NMS of the package makes.

Shape glossary: ``N`` boxes, corner form, normalised, coordinate-major
``(4, N)``.
"""
from mxnet import ndarray as _nd
from mxnet import np

from .ops.nms import LOWEST_FLOAT32, box_nms
from .settings import check

__all__ = ["nms", "check_iou_threshold"]


def check_iou_threshold(iou_threshold):
    """``iou_threshold`` by the rule of the setting ``nms_threshold``."""
    return check("iou_threshold", iou_threshold, like="nms_threshold")


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
    check_iou_threshold(iou_threshold)
    if scores.shape[0] == 0:
        return np.zeros((0,), dtype="int64", ctx=scores.ctx)
    scores = scores.astype("float32", copy=False)
    boxes = boxes.as_in_context(scores.ctx).astype("float32", copy=False)
    index = np.arange(scores.shape[0], ctx=scores.ctx)
    # (N,), (4, N) -> (N, 4), (N,) -> (1, N, 6) rows [score, x1, y1, x2, y2, index]
    data = np.concatenate([scores[:, None], boxes.T, index[:, None]], axis=-1)[None]
    index = box_nms(_nd, data, iou_threshold, valid_thresh=LOWEST_FLOAT32)[0, :, 5]
    kept, nans = (np.stack([(index >= 0).sum(), np.isnan(scores).sum()
                            + np.isnan(boxes).sum()]).asnumpy())
    if nans:
        raise ValueError(f"nms received {int(nans)} NaN score(s) or "
                         "coordinate(s); expected finite values")
    return index[:int(kept)].astype("int64")
