"""The one call of MXNet's native non-maximum suppression.

Every NMS of the package goes through :func:`box_nms`: the chapter's
:func:`rpn.nms`, the proposal layer (:mod:`rpn.model.proposal_layer`) and
the refinement stage's second NMS (:mod:`rpn.model.network`). It works on
arrays (``F`` the ``mxnet.ndarray`` module) and inside a graph (``F`` a
HybridBlock's ``F``).

Shape glossary: ``B`` images, ``N`` rows an image, ``C >= 5`` columns a
row: ``[score, x1, y1, x2, y2, ...]``, corner form (any one unit).
"""
from mxnet import ndarray as _nd

__all__ = ["box_nms", "LOWEST_FLOAT32"]

#: A ``valid_thresh`` below every finite float32 score: only ``-inf`` rows
#: are left out.
LOWEST_FLOAT32 = -3.4028234e38


def box_nms(F, data, iou_threshold, *, valid_thresh, topk=-1, id_index=-1):
    """Greedy NMS of every image of a batch in one operator call.

    ``data`` (B, N, C) rows ``[score, x1, y1, x2, y2, ...]``. Rows whose
    score is at or below ``valid_thresh`` take no part; only the ``topk``
    best rows of an image enter (``-1``: all). ``id_index``: the column of a
    group id (a pyramid level, a class): rows of different ids do not
    suppress each other; ``-1`` lets every row suppress every other. A row
    is dropped when its IoU with a better kept row is above
    ``iou_threshold``. Returns (B, N, C): the kept rows first, best first,
    then rows of ``-1``; no gradient flows through it.

    On arrays, a batch without rows is answered without the operator: MXNet
    1.9.1's ``box_nms`` on an empty input breaks every later call of it in
    the process ("delay_alloc").
    """
    if F is _nd and (data.shape[0] == 0 or data.shape[1] == 0):
        return F.np.full(data.shape, -1.0, ctx=data.ctx)
    out = F.contrib.box_nms(
        data.as_nd_ndarray(), overlap_thresh=float(iou_threshold),
        valid_thresh=float(valid_thresh), topk=int(topk), coord_start=1, score_index=0,
        id_index=int(id_index), force_suppress=id_index < 0, in_format="corner",
        out_format="corner")
    return F.BlockGrad(out).as_np_ndarray()
