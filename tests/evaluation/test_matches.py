"""Each object's best proposal among the top K, and the run's picture of
them (predictions.png), checked through the boxes and labels it draws."""
import numpy as onp
import pytest
from mxnet import np

from helpers.references import ref_iou
from rpn.evaluation.matches import best_proposals
from rpn.evaluation.pictures import COLOURS, draw_proposals


def test_each_object_gets_the_proposal_that_overlaps_it_most_among_the_top_k():
    objects = onp.array([[10, 10, 50, 50], [60, 60, 90, 90], [0, 70, 20, 90]], float)
    proposals = onp.zeros((150, 4))
    proposals[:] = [200, 200, 210, 210]                     # overlap nothing
    proposals[3] = [12, 10, 50, 52]                         # fits object 0
    proposals[7] = [60, 60, 75, 75]                         # a quarter of object 1
    proposals[120] = [60, 60, 90, 90]                       # object 1 exactly, too late
    best = best_proposals(proposals, objects, top_k=100)
    assert list(best.index) == [3, 7, 0] and len(best) == 3
    expected = [ref_iou(objects[0], proposals[3]), ref_iou(objects[1], proposals[7]), 0.0]
    onp.testing.assert_allclose(best.iou, expected)
    assert list(best.found) == [True, False, False]
    onp.testing.assert_array_equal(best.boxes[:2], proposals[[3, 7]])
    # with every proposal counted, object 1 is found exactly
    wider = best_proposals(proposals, objects, top_k=150)
    assert wider.index[1] == 120 and wider.iou[1] == 1.0 and wider.found[1]


def test_without_proposals_every_object_is_missed():
    best = best_proposals(onp.zeros((0, 4)), [[0, 0, 1, 1], [2, 2, 3, 3]])
    assert list(best.index) == [-1, -1] and list(best.iou) == [0, 0]
    assert not best.found.any()
    assert len(best_proposals([[0, 0, 1, 1]], onp.zeros((0, 4)))) == 0


@pytest.mark.parametrize("top_k, threshold", [(0, 0.5), (2.5, 0.5), (10, 0.0), (10, 1.5)])
def test_bad_arguments_are_named(top_k, threshold):
    with pytest.raises(ValueError, match="top_k" if top_k in (0, 2.5) else "threshold"):
        best_proposals([[0, 0, 1, 1]], [[0, 0, 1, 1]], top_k=top_k, threshold=threshold)


def drawn(ax, gid):
    """The boxes (x1, y1, x2, y2) and labels of role ``gid`` on ``ax``."""
    boxes = [(p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height())
             for p in ax.patches if p.get_gid() == gid]
    labels = [t.get_text() for t in ax.texts if t.get_gid() == gid]
    return onp.array(boxes).reshape(-1, 4), labels


def test_predictions_show_each_object_with_its_best_proposal_and_the_missed_ones():
    # two 100 x 80 images on a canvas of 100 x 100: objects, normalised
    X = np.zeros((2, 3, 100, 100))
    Y = np.array([[[0, 0.1, 0.1, 0.5, 0.5], [0, 0.6, 0.6, 0.9, 0.9], [-1, 0, 0, 0, 0]],
                  [[1, 0.0, 0.0, 0.3, 0.3], [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]])
    boxes = onp.zeros((2, 4, 4))
    boxes[0, 0] = [0.1, 0.1, 0.5, 0.55]                     # fits object 0
    boxes[0, 1] = [0.6, 0.6, 0.7, 0.7]                      # a ninth of object 1
    boxes[1, 0] = [0.0, 0.0, 0.3, 0.3]                      # object 2 exactly
    boxes[1, 1] = [0.0, 0.0, 0.3, 0.3]                      # padding (score -1)
    scores = onp.array([[0.9, 0.8, -1, -1], [0.7, -1, -1, -1]])

    class Info:
        sizes = onp.array([[80, 100], [80, 100]])           # (height, width)
    fig = draw_proposals(X, Y, np.array(scores), np.array(boxes), Info)
    first, second = fig.axes[:2]
    scale = onp.array([100, 80, 100, 80])
    best, labels = drawn(first, "best")
    onp.testing.assert_allclose(best, [boxes[0, 0] * scale])
    assert labels == ["%.2f" % ref_iou(Y[0, 0, 1:].asnumpy() * scale, boxes[0, 0] * scale)]
    missed, labels = drawn(first, "missed")
    onp.testing.assert_allclose(missed, [Y[0, 1, 1:].asnumpy() * scale])
    assert labels == ["missed %.2f" % ref_iou(Y[0, 1, 1:].asnumpy() * scale,
                                              boxes[0, 1] * scale)]
    objects, _ = drawn(first, "object")
    onp.testing.assert_allclose(objects, [Y[0, 0, 1:].asnumpy() * scale])
    assert [t.get_text() for t in fig.axes[1].texts] == ["1.00"]
    assert drawn(second, "missed")[0].shape == (0, 4)
    assert first.get_title() == "1 of 2 found" and second.get_title() == "1 of 1 found"
    assert "2 of 3 objects found" in fig._suptitle.get_text()
    # every box is drawn over a black outline, in the colour of its role
    for ax in (first, second):
        for patch in ax.patches:
            assert patch.get_path_effects(), patch.get_gid()
    colours = {p.get_gid(): p.get_edgecolor() for p in first.patches}
    from matplotlib.colors import to_rgba
    assert colours == {role: to_rgba(COLOURS[role]) for role in ("best", "missed", "object")}
