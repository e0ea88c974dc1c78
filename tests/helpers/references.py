"""Plain NumPy references, written per box (float64), for the brute-force
tests: IoU, GIoU, random boxes and labelling cases."""
import numpy as onp


def ref_iou(a, b):
    """IoU of two corner boxes, written out by hand (float64)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def ref_giou(a, b):
    """GIoU of two corner boxes, written out (float64)."""
    hull = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = area(a) + area(b) - iw * ih
    return ref_iou(a, b) - (area(hull) - union) / area(hull)


def random_boxes(rng, n, min_size=0.02):
    """``n`` random non-degenerate boxes (n, 4) inside the unit square."""
    xy = rng.uniform(0, 1 - min_size, size=(n, 2))
    wh = rng.uniform(min_size, 0.6, size=(n, 2))
    return onp.concatenate([xy, onp.minimum(xy + wh, 1.0)], axis=1)


def random_case(rng, batch=3, anchors=60):
    """Ground truth ``(batch, 4, 5)`` (0 to 4 objects an image, padded with
    class -1, some near an anchor so that IoU > 0.7 occurs) and anchors
    ``(anchors, 4)``, float64."""
    anchor_boxes = random_boxes(rng, anchors)
    num = rng.integers(0, 5)
    gt = onp.full((batch, 4, 5), -1.0)
    for b in range(batch):
        k = rng.integers(0, num + 1)
        boxes = random_boxes(rng, k)
        # some objects sit near an anchor so that IoU > 0.7 occurs
        near = rng.random(k) < 0.5
        jitter = rng.uniform(-0.01, 0.01, size=(k, 4))
        picks = anchor_boxes[rng.integers(0, anchors, size=k)]
        boxes[near] = onp.clip(picks[near] + jitter[near], 0, 1)
        gt[b, :k, 0] = rng.integers(0, 3, size=k)
        gt[b, :k, 1:] = boxes
    return gt, anchor_boxes

