"""Training windows at the photograph's own scale: where a window falls,
how objects cut by its edge are clipped and when they are ignored, and a
loader that cuts several windows of one image an epoch."""
import numpy as onp
import pytest

import rpn
from rpn.data.windows import choose_window, cut_window


def _area(b):
    return max(b[2] - b[0], 0) * max(b[3] - b[1], 0)


@pytest.mark.parametrize("seed", range(20))
def test_cut_window_against_a_per_object_reference(seed):
    rng = onp.random.default_rng(seed)
    xy = rng.uniform(0, 900, (12, 2))
    boxes = onp.concatenate([xy, xy + rng.uniform(4, 120, (12, 2))], axis=1).astype("float32")
    classes = rng.integers(0, 3, 12).astype("float32")
    classes[0] = rpn.CROWD
    window = (200, 100, 456, 356)
    got_boxes, got_classes = cut_window(boxes, classes, window, visible=0.5)
    want = []
    for box, cls in zip(boxes, classes):
        clipped = [min(max(box[0], 200), 456), min(max(box[1], 100), 356),
                   min(max(box[2], 200), 456), min(max(box[3], 100), 356)]
        if _area(clipped) <= 0:
            continue                                   # wholly outside: dropped
        share = _area(clipped) / _area(box)
        want.append(([clipped[0] - 200, clipped[1] - 100, clipped[2] - 200, clipped[3] - 100],
                     rpn.CROWD if cls >= 0 and share < 0.5 else cls))
    assert len(got_boxes) == len(want)
    onp.testing.assert_allclose(got_boxes, onp.reshape([w[0] for w in want], (-1, 4)),
                                atol=1e-4)
    onp.testing.assert_array_equal(got_classes, [w[1] for w in want])


@pytest.mark.parametrize("seed", range(10))
def test_a_focused_window_holds_an_object_and_stays_in_the_frame(seed):
    rng = onp.random.default_rng(seed)
    boxes = onp.array([[1500, 900, 1520, 915], [40, 30, 60, 52]], dtype="float32")
    for _ in range(20):
        x0, y0, x1, y1 = choose_window(rng, boxes, 1920, 1080, 512, focus=1.0)
        assert (x1 - x0, y1 - y0) == (512, 512)
        assert 0 <= x0 and x1 <= 1920 and 0 <= y0 and y1 <= 1080
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert ((centres[:, 0] >= x0) & (centres[:, 0] <= x1)
                & (centres[:, 1] >= y0) & (centres[:, 1] <= y1)).any()
    # a frame smaller than the window is the window
    assert choose_window(rng, boxes[:0], 300, 200, 512) == (0, 0, 300, 200)


def test_the_loader_cuts_several_windows_of_an_image_at_its_own_scale(tmp_path):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=1, height=300,
                         width=400, objects=(5, 10), sides=(0.05, 0.2))
    found = rpn.data.sources.open_split(root, "train")
    loader = rpn.data.sources.make_loader(
        found, rpn.Resize.native(), 3, train=True, window=128, windows_per_image=3,
        window_focus=1.0, size_divisor=32)
    assert len(loader) == 4                               # 4 images x 3 windows / 3
    indices, windows = [], 0
    for X, Y, info in loader:
        assert X.shape[2:] == (128, 128)
        assert (info.sizes == 128).all()
        assert (info.original_sizes == [300, 400]).all()   # recall sizes stay the image's
        indices += info.indices.tolist()
        windows += X.shape[0]
        rows = Y.asnumpy()
        assert ((rows[..., 0] >= 0).sum(axis=1) > 0).all()  # every focused window holds one
    assert windows == 12 and sorted(indices) == sorted([0, 1, 2, 3] * 3)
    # the windows of one image come one after the other (decoded once)
    assert all(indices[i] == indices[i + 1] for i in range(0, 12, 3))
