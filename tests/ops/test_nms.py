"""box_nms, the one call of MXNet's native NMS: against a brute-force greedy
NMS written here (score-sorted, a row dropped when its IoU with a kept row
of its group is above the threshold), with groups, a validity threshold
and ``topk``, in a graph, and on empty batches."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import ndarray as nd
from mxnet import np

from helpers.references import random_boxes, ref_iou
from rpn.ops.nms import LOWEST_FLOAT32, box_nms


def greedy(rows, threshold, valid_thresh, topk=-1, id_index=-1):
    """The rows ``rows`` (N, C) ``[score, x1, y1, x2, y2, ...]`` kept, best
    first: rows scoring above ``valid_thresh``, the ``topk`` best of them,
    each kept unless its IoU with a kept row (of its id, with ``id_index``)
    is above ``threshold``."""
    order = sorted((i for i in range(len(rows)) if rows[i, 0] > valid_thresh),
                   key=lambda i: -rows[i, 0])
    if topk > 0:
        order = order[:topk]
    keep = []
    for i in order:
        rivals = [k for k in keep if id_index < 0 or rows[k, id_index] == rows[i, id_index]]
        if all(ref_iou(rows[i, 1:5], rows[k, 1:5]) <= threshold for k in rivals):
            keep.append(i)
    return keep


def batch_of(rng, batch, n, groups=1):
    """(batch, n, 7) rows ``[score, x1, y1, x2, y2, group, row number]`` of
    clustered boxes (many overlap), distinct scores of either sign."""
    data = onp.zeros((batch, n, 7), dtype="float32")
    for b in range(batch):
        centres = random_boxes(rng, 4)[rng.integers(0, 4, size=n)]
        boxes = onp.clip(centres + rng.normal(0, 0.03, size=(n, 4)), 0, 1)
        boxes[:, 2:] = onp.maximum(boxes[:, 2:], boxes[:, :2] + 0.01)
        data[b, :, 0] = rng.permutation(n) / n - 0.3
        data[b, :, 1:5] = boxes
        data[b, :, 5] = rng.integers(0, groups, size=n)
        data[b, :, 6] = onp.arange(n)
    return data


def assert_kept(out, data, keep_of):
    """``out`` (B, N, C) holds, for each image, its rows ``keep_of(rows)``
    first and rows of -1 after them."""
    for b, rows in enumerate(data):
        keep = keep_of(rows)
        onp.testing.assert_allclose(out[b, :len(keep)], rows[keep], atol=1e-6)
        assert (out[b, len(keep):] == -1).all(), b


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_box_nms_against_greedy_nms(seed, threshold):
    rng = onp.random.default_rng(seed)
    data = batch_of(rng, 3, int(rng.integers(5, 60)))
    out = box_nms(nd, np.array(data), threshold, valid_thresh=LOWEST_FLOAT32).asnumpy()
    assert out.shape == data.shape
    assert_kept(out, data, lambda rows: greedy(rows, threshold, LOWEST_FLOAT32))


@pytest.mark.parametrize("seed", range(4))
def test_rows_of_different_ids_never_suppress_each_other(seed):
    rng = onp.random.default_rng(10 + seed)
    data = batch_of(rng, 2, 40, groups=3)
    out = box_nms(nd, np.array(data), 0.4, valid_thresh=LOWEST_FLOAT32, id_index=5).asnumpy()
    assert_kept(out, data, lambda rows: greedy(rows, 0.4, LOWEST_FLOAT32, id_index=5))
    # without groups every row competes: fewer rows are kept
    together = box_nms(nd, np.array(data), 0.4, valid_thresh=LOWEST_FLOAT32).asnumpy()
    assert (together[..., 0] >= -0.3).sum() < (out[..., 0] >= -0.3).sum()


@pytest.mark.parametrize("valid_thresh, topk", [(0.0, -1), (-0.1, 5), (LOWEST_FLOAT32, 3),
                                                (0.5, 1)])
def test_valid_thresh_and_topk(rng, valid_thresh, topk):
    data = batch_of(rng, 2, 30)
    data[0, 4, 0] = valid_thresh if valid_thresh > LOWEST_FLOAT32 else data[0, 4, 0]
    out = box_nms(nd, np.array(data), 0.5, valid_thresh=valid_thresh, topk=topk).asnumpy()
    assert_kept(out, data, lambda rows: greedy(rows, 0.5, valid_thresh, topk))
    kept = out[..., 0][out[..., 0] != -1]
    assert (kept > valid_thresh).all()
    if topk > 0:
        assert ((out[..., 0] != -1).sum(axis=1) <= topk).all()


def test_box_nms_in_a_graph_gives_what_it_gives_on_arrays(rng):
    class Suppress(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, data):
            return box_nms(F, data, 0.5, valid_thresh=0.0, topk=20, id_index=5)
    data = np.array(batch_of(rng, 2, 30, groups=2))
    block = Suppress()
    block.hybridize()
    onp.testing.assert_array_equal(
        block(data).asnumpy(),
        box_nms(nd, data, 0.5, valid_thresh=0.0, topk=20, id_index=5).asnumpy())


@pytest.mark.parametrize("shape", [(0, 5, 7), (2, 0, 7), (0, 0, 5)])
def test_an_empty_batch_is_answered_and_later_calls_still_work(rng, shape):
    """MXNet 1.9.1's box_nms on an empty input breaks every later call of it
    in the process ("delay_alloc"): box_nms answers it without the operator."""
    out = box_nms(nd, np.zeros(shape, ctx=mx.cpu(1)), 0.5, valid_thresh=0.0)
    assert out.shape == shape and out.ctx == mx.cpu(1)
    data = batch_of(rng, 2, 20)
    later = box_nms(nd, np.array(data), 0.5, valid_thresh=LOWEST_FLOAT32).asnumpy()
    assert_kept(later, data, lambda rows: greedy(rows, 0.5, LOWEST_FLOAT32))
