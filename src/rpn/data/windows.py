"""Training windows cut from large photographs at their own scale.

A 17-pixel boat in a 1920 x 1080 webcam frame is under 2 pixels once the
frame is resized to a shorter side of 112: nothing can learn it. Training
at the photograph's own resolution on whole frames costs what the frame
costs; training on fixed windows (``window`` pixels a side) cut from it
costs what the window costs, whatever the frame. Windows are chosen so
that most hold objects: with probability ``focus`` a window is placed so
that a random object's centre falls in it (anywhere in the window), else
anywhere in the frame. An object cut by the window's edge is clipped to
it; one left with less than ``visible`` of its area inside becomes a crowd
region (:data:`rpn.CROWD`: the anchors it covers are ignored, neither
taught as background nor as an object), as half a boat is still not
background.

Boxes are pixels of the frame here, rows ``(xmin, ymin, xmax, ymax)``;
windows ``(x0, y0, x1, y1)`` integer pixels.
"""
import math

import numpy as onp

from .image_set import CROWD

__all__ = ["choose_window", "cut_window"]


def choose_window(rng, boxes, width, height, size, focus=0.9):
    """A window of ``size`` x ``size`` pixels (the frame's side where it is
    smaller) inside a frame of ``width`` x ``height``: over a random
    object of ``boxes`` (n, 4) with probability ``focus``, else anywhere.
    Returns integer ``(x0, y0, x1, y1)``."""
    win_w, win_h = min(size, width), min(size, height)
    if len(boxes) and rng.random() < focus:
        x0b, y0b, x1b, y1b = boxes[rng.integers(len(boxes))]
        cx, cy = (x0b + x1b) / 2, (y0b + y1b) / 2
        # the object's centre anywhere in the window, the window in the frame
        x0 = _between(rng, math.ceil(cx - win_w), math.floor(cx), width - win_w)
        y0 = _between(rng, math.ceil(cy - win_h), math.floor(cy), height - win_h)
    else:
        x0 = int(rng.integers(0, width - win_w + 1))
        y0 = int(rng.integers(0, height - win_h + 1))
    return x0, y0, x0 + win_w, y0 + win_h


def _between(rng, low, high, last):
    """A whole number in ``[low, high]`` within ``[0, last]``, uniformly."""
    low, high = max(0, low), min(last, high)
    return int(rng.integers(low, max(low, high) + 1))


def cut_window(boxes, classes, window, visible=0.5):
    """The objects of a window: ``boxes`` (n, 4) and ``classes`` (n,) of the
    frame -> boxes clipped to ``window`` and moved to its top-left, and
    their classes, where an object with less than ``visible`` of its area
    inside becomes :data:`rpn.CROWD`; objects wholly outside (or left
    without area) are dropped. Returns ``(boxes (m, 4), classes (m,))``."""
    x0, y0, x1, y1 = window
    boxes = onp.asarray(boxes, dtype="float32").reshape(-1, 4)
    classes = onp.asarray(classes, dtype="float32").reshape(-1)
    clipped = onp.stack([onp.clip(boxes[:, 0], x0, x1), onp.clip(boxes[:, 1], y0, y1),
                         onp.clip(boxes[:, 2], x0, x1), onp.clip(boxes[:, 3], y0, y1)], 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    share = onp.where(area > 0, inside / onp.maximum(area, 1e-12), 0)
    classes = onp.where((share < visible) & (classes >= 0), float(CROWD), classes)
    return (clipped[keep] - onp.float32([x0, y0, x0, y0])), classes[keep]
