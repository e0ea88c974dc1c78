"""Boxes: the corner and centre forms, IoU and GIoU against per-box
references, the offsets between anchors and objects, and bad shapes."""
import math

import numpy as onp
import pytest
from mxnet import np

import rpn
from helpers.references import random_boxes, ref_giou, ref_iou
from rpn.boxes import generalized_iou


def test_corner_center_round_trip_by_hand():
    box = np.array([0.1, 0.2, 0.5, 0.8])
    center = rpn.box_corner_to_center(box)
    onp.testing.assert_allclose(center.asnumpy(), [0.3, 0.5, 0.4, 0.6], atol=1e-6)
    onp.testing.assert_allclose(rpn.box_center_to_corner(center).asnumpy(),
                                box.asnumpy(), atol=1e-6)


def test_iou_matches_reference(rng):
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    got = rpn.iou(np.array(a.T), np.array(b.T)).asnumpy()
    want = [[ref_iou(x, y) for y in b] for x in a]
    assert got.shape == (7, 5)
    onp.testing.assert_allclose(got, want, atol=1e-6)


def test_iou_single_boxes_and_disjoint():
    a = np.array([0.0, 0.0, 0.5, 0.5])
    b = np.array([[0.0, 0.5], [0.0, 0.5], [0.5, 1.0], [0.5, 1.0]])
    got = rpn.iou(a, b).asnumpy()
    assert got.shape == (2,)
    onp.testing.assert_allclose(got, [1.0, 0.0], atol=1e-6)
    assert float(rpn.iou(a, np.array([0.25, 0.0, 0.75, 0.5]))) == pytest.approx(1 / 3)


def test_generalized_iou_against_a_per_box_reference(rng):
    a, b = random_boxes(rng, 40), random_boxes(rng, 40)
    got = generalized_iou(np.array(a), np.array(b)).asnumpy()
    want = [ref_giou(x, y) for x, y in zip(a, b)]
    onp.testing.assert_allclose(got, want, atol=1e-5)
    assert float(generalized_iou(np.array(a[:1]), np.array(a[:1]))[0]) == pytest.approx(1.0)
    far = generalized_iou(np.array([[0, 0, 0.1, 0.1]]), np.array([[0.8, 0.8, 0.9, 0.9]]))
    assert -1 < float(far[0]) < -0.9                       # disjoint and apart: near -1


def test_offsets_round_trip(rng):
    anchors, gts = random_boxes(rng, 50), random_boxes(rng, 50)
    offsets = rpn.anchor_to_gt_offset(np.array(anchors.T), np.array(gts.T))
    assert offsets.shape == (4, 50)
    back = rpn.anchor_plus_offset(np.array(anchors.T), offsets).asnumpy().T
    onp.testing.assert_allclose(back, gts, atol=1e-5)


def test_offsets_by_hand():
    anchor = np.array([[0.0], [0.0], [0.2], [0.2]])
    gt = np.array([[0.1], [0.0], [0.3], [0.4]])
    got = rpn.anchor_to_gt_offset(anchor, gt).asnumpy()[:, 0]
    # centres (0.1, 0.1) -> (0.2, 0.2); sizes 0.2 x 0.2 -> 0.2 x 0.4
    onp.testing.assert_allclose(got, [5.0, 5.0, 0.0, 5 * math.log(2)], atol=1e-5)


def test_extreme_offsets_decode_to_finite_boxes():
    anchors = np.array([[0.4, 0.4, 0.6, 0.6]] * 4).T
    offsets = np.array([[1e4, -1e4, 1e4, 1e4], [0, 0, 1e30, -1e30],
                        [-1e30, 1e30, 88.0, 500.0], [0, 0, -1e4, -1e4]]).T
    boxes = rpn.anchor_plus_offset(anchors, offsets).asnumpy()
    assert onp.isfinite(boxes).all()
    widths = boxes[2] - boxes[0]
    # the log-size term is clamped at log(1000 / 16)
    assert widths.max() <= 0.2 * 1000 / 16 * (1 + 1e-5)
    assert (widths >= 0).all()


def test_project_box_clips():
    boxes = np.array([[-0.2, 0.5], [0.1, 1.5], [1.2, 0.7], [0.9, -0.1]])
    out = rpn.project_box(boxes).asnumpy()
    assert out.min() >= 0 and out.max() <= 1
    onp.testing.assert_allclose(out[:, 1], [0.5, 1.0, 0.7, 0.0])


@pytest.mark.parametrize("shape", [(5,), (3, 4), (4, 2, 2)])
def test_box_functions_reject_wrong_shapes(shape):
    bad = np.zeros(shape)
    for call in (lambda: rpn.box_corner_to_center(bad),
                 lambda: rpn.iou(bad, np.zeros((4, 3))),
                 lambda: rpn.anchor_plus_offset(bad, bad)):
        with pytest.raises(ValueError, match=r"\(4, N\)"):
            call()


def test_import_without_mxnet_names_the_extras():
    import subprocess
    import sys
    code = "import sys; sys.modules['mxnet'] = None; import rpn"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "rpn[cpu]" in result.stderr
    assert "cu112" in result.stderr
