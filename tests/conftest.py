"""Shared helpers for the tests: plain NumPy references written per box."""
import numpy as onp
import psutil
import pytest

import rpn  # noqa: F401  (switches MXNet to NumPy semantics)


def ref_iou(a, b):
    """IoU of two corner boxes, written out by hand (float64)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def random_boxes(rng, n, min_size=0.02):
    """``n`` random non-degenerate boxes (n, 4) inside the unit square."""
    xy = rng.uniform(0, 1 - min_size, size=(n, 2))
    wh = rng.uniform(min_size, 0.6, size=(n, 2))
    return onp.concatenate([xy, onp.minimum(xy + wh, 1.0)], axis=1)


def leftovers(mark):
    """Live processes (not zombies) whose environment has ``RPN_TEST_MARK=mark``:
    what a test's processes left behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("RPN_TEST_MARK") == mark):
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def rng():
    return onp.random.default_rng(0)
