"""The canvas frame of a padded batch: the anchors an image may use."""
import numpy as onp
import pytest
from mxnet import np

from conftest import SMALL, small_model


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
