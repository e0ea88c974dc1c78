"""The RPN head: the same predictions hybridized and imperatively."""
import numpy as onp
from mxnet import init, np

import rpn


def test_hybridized_and_imperative_heads_agree():
    head = rpn.RPNOutput(num_anchors=7, channels=16)
    head.initialize(init.Xavier())
    X = np.random.normal(size=(2, 8, 5, 6))
    eager = [a.asnumpy() for a in head(X)]
    head.hybridize()
    compiled = [a.asnumpy() for a in head(X)]
    assert eager[0].shape == (2 * 5 * 6 * 7, 2) and eager[1].shape == (2 * 5 * 6 * 7, 4)
    for a, b in zip(eager, compiled):
        onp.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
