"""Drawing boxes, anchors and proposals on images.

Chapter sections "Anchor Boxes" and "Inference" (``show_boxes``,
``visualize_rpn_preds``). Boxes here are in pixels: this is one of the
package's edges. Plotting goes through d2l's helpers, imported when first
drawn (d2l takes a second to import).

Shape glossary: ``B`` images ``(B, 3, h, w)`` normalised with
``RGB_MEAN``/``RGB_STD``; ``G`` object rows ``(B, G, 5)``; ``M`` proposals.
"""
from mxnet import np

from .data.dataset import RGB_MEAN, RGB_STD
from .runs.fileio import write_figure

__all__ = ["show_boxes", "visualize_rpn_preds", "denormalize_image"]


def _d2l():
    from d2l import mxnet as d2l
    return d2l


def _host(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else array


def show_boxes(axes, boxes, labels=None, colors=None):
    """Draw ``boxes`` (N, 4), corner form in pixels, on matplotlib ``axes``,
    with optional text ``labels`` (one per box) and ``colors`` (cycled;
    default d2l's blue, green, red, magenta, cyan). Accepts MXNet or NumPy
    arrays. Wraps d2l's ``show_bboxes``."""
    boxes = _host(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) pixels, got shape {boxes.shape}")
    if labels is not None and not isinstance(labels, (list, tuple)):
        labels = [labels]
    # d2l's helper reads each box back with .asnumpy(): hand it MXNet rows
    _d2l().show_bboxes(axes, list(np.array(boxes, dtype="float32")), labels=labels,
                       colors=colors)


def denormalize_image(img):
    """One normalised image (3, h, w) -> (h, w, 3) RGB in [0, 1] for display."""
    img = img.transpose(1, 2, 0) * np.array(RGB_STD, ctx=img.ctx) \
        + np.array(RGB_MEAN, ctx=img.ctx)       # (3, h, w) -> (h, w, 3)
    return np.clip(img, 0, 1).asnumpy()


def visualize_rpn_preds(X, Y, rpn_preds, *, top_k=1, num_images=10,
                        path=None):
    """Draw ground truth (red) and the best proposals (white, with scores).

    ``X`` (B, 3, h, w) normalised images; ``Y`` (B, G, 5) normalised ground
    truth; ``rpn_preds`` the output of :func:`rpn.predict_rpn`. Draws the
    first ``num_images`` (2 rows of 5, as the chapter) with ``top_k``
    proposals each (the chapter's 1), and saves the figure to ``path`` when
    given. Returns the matplotlib axes.
    """
    d2l = _d2l()
    count = min(num_images, X.shape[0])
    imgs = [denormalize_image(X[i]) for i in range(count)]
    cols = min(count, 5)
    rows = (count + cols - 1) // cols
    axes = d2l.show_images(imgs, rows, cols, scale=2)
    h, w, _ = imgs[0].shape
    scale = [w, h, w, h]
    for ax, pred, gt in zip(axes, rpn_preds[:count], _host(Y)[:count]):
        objects = gt[gt[:, 0] >= 0][:, 1:5] * scale
        if len(objects):
            show_boxes(ax, objects, colors=["r"], labels=["gt"] * len(objects))
        scores, boxes = _host(pred[0])[:top_k], _host(pred[1])[:, :top_k]
        if len(scores):
            show_boxes(ax, boxes.T * scale, colors=["w"],
                       labels=["%.2f" % s for s in scores])
    if path is not None:
        write_figure(path, axes[0].figure, bbox_inches="tight")
    return axes
