"""The pictures of a run: training curves, recall, and proposals drawn on
images.

Not in the chapter (whose drawings are :mod:`rpn.visualize`, which these
use): what ``rpn train`` leaves in a run folder (``curves.png``,
``recall_iou.png``, ``predictions.png``), what ``rpn evaluate`` draws and
what ``rpn predict`` draws of each photograph. Boxes here are pixels: an
edge of the package. Files are written atomically (:mod:`rpn.runs.fileio`).

Shape glossary: ``B`` images ``(B, 3, H, W)`` normalised with
``RGB_MEAN``/``RGB_STD``; ``G`` object rows ``(B, G, 5)``; ``K`` proposals.
"""
import numpy as onp

from ..runs.fileio import write_figure
from ..visualize import _host, denormalize_image, show_boxes
from .recall import AR_THRESHOLDS

__all__ = ["plot_curves", "plot_recall", "draw_proposals", "draw_image_proposals"]


def _pyplot():
    """matplotlib's pyplot, drawing to files (no screen needed)."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    plt = _pyplot()
    try:
        write_figure(path, fig, bbox_inches="tight", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_curves(history, path):
    """Training curves of a history (:func:`rpn.train_detection`): loss,
    class error and box MAE per epoch, train and test, saved to ``path``."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    series = [("loss", ["loss"]),
              ("class error", ["train_class_err", "test_class_err"]),
              ("box MAE", ["train_box_mae", "test_box_mae"])]
    for ax, (title, keys) in zip(axes, series):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values],
                        marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_recall(recall, path):
    """Recall against the IoU threshold for each ``K`` of a
    :class:`rpn.ProposalRecall`, overall (solid) and, where it has sizes, by
    object size for the largest ``K`` (dashed), saved to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in recall.ks:
        ax.plot(AR_THRESHOLDS, recall.curve(k), marker="o", label=f"top {k}")
    result = recall.result()
    for size in ("small", "medium", "large"):
        if result.get(f"objects_{size}"):
            ax.plot(AR_THRESHOLDS, recall.curve(recall.ks[-1], size), linestyle="--",
                    label=f"top {recall.ks[-1]}, {size} ({result[f'objects_{size}']})")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def draw_proposals(X, Y, scores, boxes, info=None, *, top_k=5, num_images=10, path=None):
    """Ground truth (red) and the ``top_k`` best proposals (white, with
    scores) of a batch: ``X`` (B, 3, H, W) normalised, ``Y`` (B, G, 5),
    the proposal model's ``scores`` (B, K) and ``boxes`` (B, K, 4), and
    ``info`` (a :class:`rpn.data.batch.BatchInfo`: each image is cut out of
    its canvas). Saved to
    ``path`` when given; returns the figure."""
    plt = _pyplot()
    count = min(num_images, X.shape[0])
    cols = min(count, 5)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    Y, scores, boxes = _host(Y), _host(scores), _host(boxes)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        image = denormalize_image(X[i])
        h, w = (int(v) for v in info.sizes[i]) if info is not None else image.shape[:2]
        ax.imshow(image[:h, :w])
        scale = onp.array([w, h, w, h])
        objects = Y[i][Y[i][:, 0] >= 0][:, 1:5] * scale
        if len(objects):
            show_boxes(ax, objects, colors=["r"])
        keep = scores[i] >= 0
        best = boxes[i][keep][:top_k] * scale
        if len(best):
            show_boxes(ax, best, colors=["w"],
                       labels=["%.2f" % s for s in scores[i][keep][:top_k]])
    if path is not None:
        _save(fig, path)
    return fig


def draw_image_proposals(image, boxes, scores, path):
    """One (h, w, 3) image with proposals ``boxes`` (M, 4) in its pixels and
    their ``scores``, saved to ``path``."""
    plt = _pyplot()
    height, width = image.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * height / max(width, 1)))
    ax.imshow(image)
    ax.axis("off")
    if len(boxes):
        show_boxes(ax, onp.asarray(boxes), labels=["%.2f" % s for s in scores],
                   colors=["w", "y", "c"])
    return _save(fig, path)
