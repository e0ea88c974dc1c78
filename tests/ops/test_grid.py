"""anchor_grid, the one anchor generator: against a per-pixel loop (pixel
row-major, then anchor), on arrays and in a graph, and the chapter's
generate_anchors as it."""
import math

import mxnet as mx
import numpy as onp
import pytest
from mxnet import ndarray as nd
from mxnet import np

import rpn
from rpn.ops.grid import anchor_grid


def per_pixel(centres_y, centres_x, widths, heights):
    """(4, N) corner boxes, one pixel and one anchor at a time."""
    columns = []
    for cy in centres_y:
        for cx in centres_x:
            for w, h in zip(widths, heights):
                columns.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return onp.array(columns).T


class Grid(mx.gluon.HybridBlock):
    def hybrid_forward(self, F, cy, cx, widths, heights):
        return anchor_grid(F, cy, cx, widths, heights)


@pytest.mark.parametrize("h, w, a", [(1, 1, 1), (2, 3, 4), (5, 2, 3)])
def test_anchor_grid_against_a_per_pixel_loop(rng, h, w, a):
    cy, cx = onp.sort(rng.uniform(0, 1, h)), onp.sort(rng.uniform(0, 1, w))
    widths, heights = rng.uniform(0.05, 0.5, a), rng.uniform(0.05, 0.5, a)
    want = per_pixel(cy, cx, widths, heights)
    args = [np.array(v, dtype="float32") for v in (cy, cx, widths, heights)]
    got = anchor_grid(nd, *args)
    assert got.shape == (4, h * w * a)
    onp.testing.assert_allclose(got.asnumpy(), want, atol=1e-6)
    block = Grid()
    block.hybridize()
    onp.testing.assert_allclose(block(*args).asnumpy(), want, atol=1e-6)


@pytest.mark.parametrize("h, w, sizes, ratios, product", [
    (2, 3, [0.5, 0.25], [1, 2], False),
    (4, 4, [0.75, 0.5, 0.25], [1, 2, 0.5], False),
    (3, 5, [0.4, 0.2], [0.5, 1, 2], True),
])
def test_generate_anchors_is_anchor_grid_of_the_chapters_centres_and_shapes(h, w, sizes,
                                                                          ratios, product):
    """The chapter's centres ``((x + 0.5) / w, (y + 0.5) / h)`` and shapes
    (a ratio-1 anchor square in pixels), written out here, through
    anchor_grid are generate_anchors' anchors."""
    short = min(h, w)
    pairs = ([(s, r) for s in sizes for r in ratios] if product else
             [(sizes[0], r) for r in ratios] + [(s, ratios[0]) for s in sizes[1:]])
    widths = [short / w * s * math.sqrt(r) for s, r in pairs]
    heights = [short / h * s / math.sqrt(r) for s, r in pairs]
    cy = [(y + 0.5) / h for y in range(h)]
    cx = [(x + 0.5) / w for x in range(w)]
    grid = anchor_grid(nd, *(np.array(v, dtype="float32") for v in (cy, cx, widths, heights)))
    chapter = rpn.generate_anchors(h, w, sizes, ratios, product=product)
    assert chapter.shape == grid.shape == (4, h * w * len(pairs))
    onp.testing.assert_allclose(chapter.asnumpy(), grid.asnumpy(), atol=1e-6)
    onp.testing.assert_allclose(chapter.asnumpy(), per_pixel(cy, cx, widths, heights),
                                atol=1e-6)
