"""The guard for MXNet 1.9.1's fault: a batch of zero images through the
backbone and the head leaves the native operators working."""
from mxnet import np

import rpn
from helpers.models import anchor_fn, small_model


def test_an_empty_batch_leaves_native_operators_working():
    """MKL-DNN's convolution over zero images broke every later box_nms in
    the process; the backbone and head answer it without running."""
    net = small_model(seed=7)
    features = net.backbone(np.zeros((0, 3, 64, 64)))
    assert features.shape == (0, 128, 8, 8)
    assert rpn.predict_rpn(features, net.head, anchor_fn(), 0.7) == []
    kept = rpn.nms(np.array([0.9, 0.8, 0.1]),
                   np.array([[0, 0, 1, 1], [0, 0, 1, 0.95], [0.5, 0.5, 0.6, 0.6]]).T, 0.5)
    assert kept.asnumpy().tolist() == [0, 2]
