"""The canvas frame of a padded batch: each image's extent, the anchors of
every pixel (the graph's, against the labeler's), and the anchors an image
may use, against per-anchor references written here."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import ndarray as nd
from mxnet import np

import rpn
from conftest import SMALL
from helpers.models import small_model
from rpn.anchors import anchor_shapes
from rpn.model.canvas import (border, canvas_extent, feature_size, grid_anchors, image_scale,
                              valid_anchors)
from rpn.model.labels import AnchorLabeler

M = SMALL.model


def features(batch, h, w):
    """Features of ``batch`` images on an ``h x w`` map (their shape is what
    counts)."""
    return np.zeros((batch, 2, h, w))


def test_the_canvas_extent_and_scale_of_each_image_by_hand():
    sizes = np.array([[64, 96], [40, 60], [64, 33]], dtype="float32")   # (height, width)
    maps = features(3, 8, 12)                                  # a 64 x 96 canvas at stride 8
    h, w = feature_size(nd, maps)
    assert (float(h), float(w)) == (8.0, 12.0)
    ex, ey = (a.asnumpy() for a in canvas_extent(nd, maps, sizes, 8))
    assert ex.shape == ey.shape == (3, 1)
    onp.testing.assert_allclose(ex[:, 0], [96 / 96, 60 / 96, 33 / 96], rtol=1e-6)
    onp.testing.assert_allclose(ey[:, 0], [64 / 64, 40 / 64, 64 / 64], rtol=1e-6)
    scale = image_scale(nd, np.array(ex), np.array(ey)).asnumpy()
    assert scale.shape == (3, 1, 4)
    for b in range(3):
        onp.testing.assert_allclose(scale[b, 0], [ex[b, 0], ey[b, 0], ex[b, 0], ey[b, 0]])
    bx, by = border(nd, maps, 4.0, 8)
    assert (float(bx), float(by)) == pytest.approx((4 / 96, 4 / 64))
    assert border(nd, maps, None, 8) == (None, None)


@pytest.mark.parametrize("allowed", [None, 0.0, 0.05])
def test_valid_anchors_against_a_per_anchor_reference(rng, allowed):
    corners = onp.sort(rng.uniform(-0.2, 1.2, size=(2, 60, 2)), axis=0)    # x0 < x1, y0 < y1
    anchors = onp.stack([corners[0, :, 0], corners[0, :, 1], corners[1, :, 0],
                         corners[1, :, 1]])                                  # (4, N)
    ex, ey = onp.array([[1.0], [0.6], [0.3]]), onp.array([[1.0], [0.5], [0.9]])
    bx, by = (None, None) if allowed is None else (allowed, 2 * allowed)
    got = valid_anchors(nd, np.array(anchors), np.array(ex), np.array(ey), bx, by).asnumpy()
    assert got.shape == (3, 60)
    for b in range(3):
        for n, (x0, y0, x1, y1) in enumerate(anchors.T):
            inside = (x0 + x1) / 2 < ex[b, 0] and (y0 + y1) / 2 < ey[b, 0]
            if allowed is not None:
                inside = inside and x0 >= -bx and y0 >= -by and x1 <= ex[b, 0] + bx \
                    and y1 <= ey[b, 0] + by
            assert got[b, n] == float(inside), (b, n)
    assert 0 < got.sum() < got.size                  # some anchors of each kind


@pytest.mark.parametrize("h, w", [(8, 8), (8, 12), (10, 6)])
def test_the_graphs_anchors_are_the_labelers(h, w):
    """The graph's anchors (sizes in pixels of the canvas) and the labeler's
    (the chapter's generate_anchors with sizes rescaled to the canvas) are
    the same boxes, to float rounding; in the square ``size`` canvas the
    labeler's are the chapter's bit for bit."""
    shapes = anchor_shapes(M.anchor_sizes, M.anchor_ratios, M.size, product=M.anchor_product)
    maps = features(1, h, w)
    graph = grid_anchors(nd, maps, np.array(shapes, dtype="float32"), M.stride).asnumpy()
    labeler = AnchorLabeler(M).anchors(maps).asnumpy()
    assert graph.shape == labeler.shape == (4, h * w * M.num_anchors)
    onp.testing.assert_allclose(graph, labeler, atol=1e-6)
    if h * M.stride == w * M.stride == M.size:
        chapter = rpn.generate_anchors(h, w, M.anchor_sizes, M.anchor_ratios,
                                       product=M.anchor_product).asnumpy()
        onp.testing.assert_array_equal(labeler, chapter)
    # an anchor keeps its size in pixels whatever the canvas
    pixels = graph.T * ([w * M.stride, h * M.stride] * 2)
    widths, heights = pixels[:, 2] - pixels[:, 0], pixels[:, 3] - pixels[:, 1]
    onp.testing.assert_allclose(widths[:M.num_anchors], [s[0] for s in shapes], rtol=1e-5)
    onp.testing.assert_allclose(heights[:M.num_anchors], [s[1] for s in shapes], rtol=1e-5)


def test_the_graphs_anchors_in_a_hybridized_block():
    class Anchors(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, maps, shapes):
            return grid_anchors(F, maps, shapes, M.stride)
    shapes = np.array(anchor_shapes(M.anchor_sizes, M.anchor_ratios, M.size,
                                    product=M.anchor_product), dtype="float32")
    block = Anchors()
    block.hybridize()
    maps = features(2, 8, 12)
    onp.testing.assert_allclose(block(maps, shapes).asnumpy(),
                                grid_anchors(nd, maps, shapes, M.stride).asnumpy(), atol=1e-7)


@pytest.mark.parametrize("border", [0.0, 8.0])
def test_allowed_border_against_a_per_anchor_reference(border):
    net = small_model(SMALL.replace(allowed_border=border), seed=5)
    X = np.zeros((2, 3, 64, 96))
    sizes = onp.array([[64, 96], [64, 48]], dtype="float32")
    features = net.backbone(X)
    anchors = net.anchors(features).asnumpy().T * [96, 64, 96, 64]    # canvas pixels
    valid = net.valid_anchors(net.anchors(features), features, np.array(sizes)).asnumpy()
    for b, (h, w) in enumerate(sizes):
        for n, (x0, y0, x1, y1) in enumerate(anchors):
            inside = ((x0 + x1) / 2 < w and (y0 + y1) / 2 < h and x0 >= -border - 1e-3
                      and y0 >= -border - 1e-3 and x1 <= w + border + 1e-3
                      and y1 <= h + border + 1e-3)
            assert bool(valid[b, n]) == inside, (b, n)
