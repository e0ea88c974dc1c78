"""The one box rule every reader shares: boxes without area, and boxes past
their image's edge (refused, or clipped)."""
from rpn.data.image_set import CLIPPED, EMPTY, place_box


def test_the_box_rule():
    assert place_box((1, 2, 5, 6), (20, 30)) == (None, (1, 2, 5, 6))
    assert place_box((-0.5, 2, 30.8, 6), (20, 30)) == (None, (0, 2, 30, 6))
    assert place_box((3, 2, 3, 6), (20, 30)) == (EMPTY, None)
    assert place_box((3, 6, 5, 2), None) == (EMPTY, None)
    assert place_box((1e8, 2, 1e8 + 1, 6), None) == (EMPTY, None)      # equal in float32
    assert place_box((1, 2, 35, 6), (20, 30)) == ("outside", None)
    assert place_box((1, 2, 35, 6), (20, 30), clip=True) == (CLIPPED, (1, 2, 30, 6))
    assert place_box((40, 2, 45, 6), (20, 30), clip=True) == (EMPTY, None)
