"""The labeler: labels independent of the padding."""
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL, small_model

M = SMALL.model


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_labels_do_not_depend_on_padding(model):
    """An image alone and the same image padded into a larger canvas get
    the same labels for the anchors they share (IoU and offsets do not
    change from the image's frame to the canvas's)."""
    Y = np.array([[[0, 0.1, 0.2, 0.6, 0.9], [1, 0.5, 0.1, 0.95, 0.5]]])
    alone = model.targets(Y, np.zeros((1, 3, 64, 64)), np.array([[64, 64]]),
                          validate=True)
    padded = model.targets(Y, np.zeros((1, 3, 96, 128)), np.array([[64, 64]]))
    A = M.num_anchors
    # (64 / 8)^2 cells alone; in the padded canvas the same cells sit in the
    # first 8 rows and columns of a 12 x 16 grid
    a_cls = alone[0].asnumpy().reshape(8, 8, A)
    p_cls = padded[0].asnumpy().reshape(12, 16, A)[:8, :8]
    a_box = alone[1].asnumpy().reshape(8, 8, A, 4)
    p_box = padded[1].asnumpy().reshape(12, 16, A, 4)[:8, :8]
    positive = a_cls > 0
    assert positive.any()
    onp.testing.assert_array_equal(positive, p_cls > 0)
    onp.testing.assert_allclose(a_box[positive], p_box[positive], rtol=1e-4, atol=1e-4)
    # padding anchors are ignored
    assert (padded[0].asnumpy().reshape(12, 16, A)[8:] == rpn.IGNORE).all()
