import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn


def test_enumerated_anchors_on_a_2x3_grid_by_hand():
    # sizes (0.5, 0.25), ratios (1, 2): A = 3 anchors a pixel; H=2, W=3, so
    # min(w, h) / w = 2/3 and min(w, h) / h = 1.
    anchors = rpn.generate_anchors(2, 3, [0.5, 0.25], [1, 2]).asnumpy()
    assert anchors.shape == (4, 2 * 3 * 3)
    r2 = math.sqrt(2)
    shapes = [(2 / 3 * 0.5, 0.5), (2 / 3 * 0.5 * r2, 0.5 / r2), (2 / 3 * 0.25, 0.25)]
    column = 0
    for y in range(2):
        for x in range(3):
            cx, cy = (x + 0.5) / 3, (y + 0.5) / 2
            for w, h in shapes:
                want = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                onp.testing.assert_allclose(anchors[:, column], want, atol=1e-6)
                column += 1


def test_first_anchor_written_out():
    anchors = rpn.generate_anchors(1, 1, [0.5], [1]).asnumpy()
    onp.testing.assert_allclose(anchors[:, 0], [0.25, 0.25, 0.75, 0.75], atol=1e-7)


def test_rpn_anchors_follow_context_and_chapter_count():
    X = np.zeros((2, 8, 4, 6), ctx=mx.cpu(1))
    anchors = rpn.rpn_anchors(X)
    assert anchors.ctx == mx.cpu(1)
    assert anchors.shape == (4, 4 * 6 * 5)
    assert rpn.num_anchors() == 5


def test_anchor_order_matches_head_flattening():
    """Prediction row ((b*H + y)*W + x)*A + a must meet anchor column
    (y*W + x)*A + a. The head is given weights that copy each pixel's
    (x, y) into every anchor's first two offsets; the rows must then carry
    the centres of the anchors in the same columns."""
    from mxnet import init
    H, W, A = 3, 4, 5
    head = rpn.RPNOutput(num_anchors=A, channels=2)
    head.initialize(init.Zero())
    head(np.zeros((1, 2, H, W)))            # materialise the shapes
    conv = onp.zeros((2, 2, 3, 3), dtype="float32")
    conv[0, 0, 1, 1] = conv[1, 1, 1, 1] = 1   # centre tap: identity
    head.conv.weight.set_data(np.array(conv))
    box = onp.zeros((4 * A, 2, 1, 1), dtype="float32")
    for a in range(A):
        box[4 * a, 0] = box[4 * a + 1, 1] = 1
    head.box_predictor.weight.set_data(np.array(box))
    grid_x = onp.broadcast_to(onp.arange(W)[None, :], (H, W))
    grid_y = onp.broadcast_to(onp.arange(H)[:, None], (H, W))
    X = np.array(onp.stack([onp.stack([grid_x, grid_y])] * 2), dtype="float32")
    cls_preds, box_preds = head(X)
    assert cls_preds.shape == (2 * H * W * A, 2)
    assert box_preds.shape == (2 * H * W * A, 4)
    anchors = rpn.generate_anchors(H, W, rpn.RPN_SIZES, rpn.RPN_RATIOS).asnumpy()
    centres_x = (anchors[0] + anchors[2]) / 2 * W - 0.5
    centres_y = (anchors[1] + anchors[3]) / 2 * H - 0.5
    preds, n = box_preds.asnumpy(), H * W * A
    for b in range(2):
        onp.testing.assert_allclose(preds[b * n:(b + 1) * n, 0], centres_x, atol=1e-5)
        onp.testing.assert_allclose(preds[b * n:(b + 1) * n, 1], centres_y, atol=1e-5)


@pytest.mark.parametrize("args", [(0, 3, [0.5], [1]), (2, 2, [], [1]),
                                  (2, 2, [0.5], [-1])])
def test_generate_anchors_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        rpn.generate_anchors(*args)


def test_rpn_anchors_rejects_non_feature_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        rpn.rpn_anchors(np.zeros((3, 4)))


def test_product_pairs_every_size_with_every_ratio():
    anchors = rpn.generate_anchors(1, 1, [0.5, 0.25], [1, 4], product=True).asnumpy()
    assert anchors.shape == (4, 4) and rpn.num_anchors([0.5, 0.25], [1, 4], product=True) == 4
    widths, heights = anchors[2] - anchors[0], anchors[3] - anchors[1]
    onp.testing.assert_allclose(widths, [0.5, 1.0, 0.25, 0.5], atol=1e-6)
    onp.testing.assert_allclose(heights, [0.5, 0.25, 0.25, 0.125], atol=1e-6)
