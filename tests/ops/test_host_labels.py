"""The host path of the labeler (NumPy on CPU arrays): the same labels,
offsets and random draws as the device path, under either sampling rule."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from helpers.references import random_case


#: The sampling rules the two paths must agree on: neg_pos_ratio's, and
#: Faster R-CNN's (anchors_per_image, positive_fraction) at quotas that bind
#: and that do not.
RULES = [dict(), dict(anchors_per_image=16, positive_fraction=0.5),
         dict(anchors_per_image=6, positive_fraction=0.25),
         dict(anchors_per_image=40, positive_fraction=1.0),
         dict(anchors_per_image=5, positive_fraction=0.0)]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r.get("anchors_per_image")))
@pytest.mark.parametrize("seed", range(12))
def test_the_host_and_device_paths_give_identical_labels(seed, rule):
    """CPU inputs are matched with NumPy by default; the device path (what
    a GPU runs) must give the same labels, offsets and random draws, under
    either sampling rule."""
    rng = onp.random.default_rng(900 + seed)
    gt, anchors = random_case(rng, batch=4, anchors=80)
    if seed % 2 and gt[0, 0, 0] >= 0:
        gt[0, 0, 0] = rpn.CROWD
    valid = np.array(rng.random((4, 80)) < 0.9)
    results = []
    for method in ("host", "device"):
        mx.random.seed(seed)
        results.append([a.asnumpy() for a in rpn.label_anchors(
            np.array(gt), np.array(anchors.T), 0.3 if rule else 0.7, 0.2 if rule else 0.3, 3,
            valid=valid, method=method, **rule)])
    onp.testing.assert_array_equal(results[0][0], results[1][0])
    onp.testing.assert_array_equal(results[0][1], results[1][1])
    with pytest.raises(ValueError, match="method"):
        rpn.label_anchors(np.array(gt), np.array(anchors.T), 0.7, 0.3, 3, method="gpu")


def test_host_and_device_agree_on_many_positives_and_ties_of_the_quota():
    """Images with more positives than the quota (low thresholds), where
    the random choice decides, give the same labels on both paths."""
    anchors = rpn.generate_anchors(8, 8, [0.3, 0.5, 0.7], [0.5, 1, 2], product=True)
    gt = np.array([[[0, 0.1, 0.1, 0.7, 0.8], [1, 0.3, 0.2, 0.9, 0.9]],
                   [[0, 0.0, 0.0, 1.0, 1.0], [-1, 0, 0, 0, 0]]])
    for seed in range(5):
        results = []
        for method in ("host", "device"):
            mx.random.seed(seed)
            results.append(rpn.label_anchors(gt, anchors, 0.3, 0.1, None, method=method,
                                             anchors_per_image=32,
                                             positive_fraction=0.25)[0].asnumpy())
        onp.testing.assert_array_equal(results[0], results[1])
        assert ((results[0] > 0).sum(axis=1) == 8).all()       # the quota binds
