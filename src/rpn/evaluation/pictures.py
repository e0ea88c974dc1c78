"""The pictures of a run: training curves, recall, and proposals drawn on
images.

Not in the chapter (whose drawings are :mod:`rpn.visualize`): what ``rpn
train`` leaves in a run folder (``curves.png`` from its event log,
``recall_iou.png``, ``recall_proposals.png``, ``predictions.png``), what
``rpn evaluate`` draws and what ``rpn predict`` draws of each photograph.
Boxes here are pixels: an edge of the package. Every box is drawn with a
black outline under its colour and every label on a black ground, so that
both stay visible on any image. Each drawn box carries its role as the
matplotlib ``gid`` of its patch (``object``, ``best``, ``missed``,
``proposal``), so what a picture shows can be read back from the figure.
Files are written atomically (:mod:`rpn.runs.fileio`).

Shape glossary: ``B`` images ``(B, 3, H, W)`` normalised with
``RGB_MEAN``/``RGB_STD``; ``G`` object rows ``(B, G, 5)``; ``K`` proposals.
"""
import numpy as onp

from ..runs.fileio import write_figure
from ..visualize import _host, denormalize_image
from .matches import best_proposals
from .recall import AR_THRESHOLDS

__all__ = ["draw_run", "plot_curves", "plot_recall", "plot_proposal_recall", "draw_proposals",
           "draw_image_proposals", "MAX_PICTURE_SIDE", "COLOURS"]

#: The longest side, in pixels, of a picture of ``rpn predict``: an image
#: larger than this is drawn scaled down to it.
MAX_PICTURE_SIDE = 1600
#: The colours of boxes, by role; each is drawn over a black outline.
COLOURS = {"object": "white", "best": "#ffd400", "missed": "#ff3df5",
           "proposal": ("#ffd400", "#35e0ff", "#7dff4a", "#ff9b3d", "#ff3df5")}
_DPI = 100


def _pyplot():
    """matplotlib's pyplot, drawing to files (no screen needed)."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, **options):
    plt = _pyplot()
    try:
        write_figure(path, fig, **(options or {"bbox_inches": "tight", "dpi": _DPI}))
    finally:
        plt.close(fig)
    return path


def _box(ax, box, colour, gid, *, label=None, dashed=False, width=1.6):
    """One corner box in pixels, outlined in black, with ``label`` on a
    black ground at its top left."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle
    x1, y1, x2, y2 = (float(v) for v in box)
    outline = [patheffects.withStroke(linewidth=width + 2, foreground="black")]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                           linewidth=width, linestyle=(0, (3, 2)) if dashed else "-",
                           path_effects=outline, gid=gid))
    if label is not None:
        ax.text(x1, y1, label, color=colour, fontsize=7, va="bottom", ha="left", gid=gid,
                bbox={"facecolor": "black", "alpha": 0.75, "pad": 1, "linewidth": 0})


def _series(rows, kind, key):
    """``(x, y)`` of ``key`` in the rows of ``kind``, x in epochs (a step
    row at its fraction of its epoch)."""
    xs, ys = [], []
    for row in rows:
        if row.get("kind", "epoch") != kind or row.get(key) is None:
            continue
        x = row["epoch"] if kind == "epoch" else (
            row["epoch"] - 1 + row["step"] / max(row.get("steps") or row["step"], 1))
        xs.append(x)
        ys.append(row[key])
    return xs, ys


def plot_curves(rows, path):
    """Training curves from the rows of a run's event log
    (:func:`rpn.training.event_log.read_event_log`; records of a history,
    without ``kind``, count as epoch rows), saved to ``path``: the loss
    and its terms at every read (and each epoch's mean), the learning
    rates, the chapter's class error and box MAE (training as it went,
    validation after each epoch), and the validation recall wherever it
    was measured, against the epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    steps = [r for r in rows if r.get("kind") == "step"]
    terms = [k for k in (steps[-1] if steps else {}) if k.startswith("loss_")]
    panels = [
        ("loss", [("step", "loss", "loss")] + [("step", k, k[5:]) for k in terms]
         + [("epoch", "loss", "epoch mean")]),
        ("learning rate", [("step", k, k[3:]) for k in (steps[-1] if steps else {})
                           if k.startswith("lr_")]),
        ("class error, box MAE", [("step", "class_err", "train class err"),
                                  ("step", "box_mae", "train box MAE"),
                                  ("epoch", "test_class_err", "val class err"),
                                  ("epoch", "test_box_mae", "val box MAE")]),
        ("validation recall", [("epoch", "AR@100", "AR@100"),
                               ("epoch", "R@100@0.5", "R@100@0.5"),
                               ("epoch", "R@100@0.7", "R@100@0.7")]),
    ]
    for ax, (title, series) in zip(axes, panels):
        for kind, key, label in series:
            x, y = _series(rows, kind, key)
            if y:
                ax.plot(x, y, label=label, marker="o" if kind == "epoch" else None,
                        markersize=4, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axes[3].set_ylim(0, 1.02)
    return _save(fig, path)


def plot_recall(recall, path):
    """Recall against the IoU threshold for each ``K`` of a
    :class:`rpn.ProposalRecall`, overall (solid) and, where it has sizes, by
    object size for the largest ``K`` (dashed; sizes without objects
    left out), saved to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in recall.ks:
        ax.plot(AR_THRESHOLDS, recall.curve(k), marker="o", label=f"top {k}")
    result = recall.result()
    for size in ("small", "medium", "large"):
        if result.get(f"objects_{size}", 0) > 0:
            ax.plot(AR_THRESHOLDS, recall.curve(recall.ks[-1], size), linestyle="--",
                    label=f"top {recall.ks[-1]}, {size} ({result[f'objects_{size}']})")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_proposal_recall(recall, path):
    """Recall against the number of proposals an image (1 to the largest
    ``K``, on a log scale) of a :class:`rpn.ProposalRecall`: at IoU 0.5,
    at 0.7, and averaged over 0.5 to 0.95 (AR), with the ``K`` of its
    figures marked; saved to ``path``."""
    plt = _pyplot()
    curve = recall.proposal_curve()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("R@0.5", "IoU 0.5"), ("R@0.7", "IoU 0.7"),
                       ("AR", "average over IoU 0.5:0.95")):
        ax.plot(curve["proposals"], curve[key], label=label)
    for k in recall.ks:
        ax.axvline(k, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlim(1, max(curve["proposals"][-1], 2))
    ax.set_xlabel("proposals an image")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{recall.result()['objects']} objects", fontsize=9)
    return _save(fig, path)


def draw_proposals(X, Y, scores, boxes, info=None, *, top_k=100, threshold=0.5,
                   num_images=10, path=None):
    """Each object of a batch with its best proposal among the image's
    ``top_k`` (:func:`rpn.evaluation.matches.best_proposals`): the object
    dashed white, the proposal yellow with its IoU; an object that no
    proposal fits at ``threshold`` in magenta, labelled ``missed`` with the
    best IoU it got. ``X`` (B, 3, H, W) normalised, ``Y`` (B, G, 5), the
    proposal model's ``scores`` (B, K) and ``boxes`` (B, K, 4), and
    ``info`` (a :class:`rpn.data.batch.BatchInfo`: each image is cut out of
    its canvas). Saved to ``path`` when given; returns the figure."""
    plt = _pyplot()
    count = min(num_images, X.shape[0])
    cols = min(count, 5)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.9 * rows), squeeze=False)
    Y, scores, boxes = _host(Y), _host(scores), _host(boxes)
    found = total = 0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        image = denormalize_image(X[i])
        h, w = (int(v) for v in info.sizes[i]) if info is not None else image.shape[:2]
        ax.imshow(image[:h, :w])
        scale = onp.array([w, h, w, h])
        best = best_proposals(boxes[i][scores[i] >= 0] * scale,
                              Y[i][Y[i][:, 0] >= 0][:, 1:5] * scale, top_k=top_k,
                              threshold=threshold)
        for obj, box, iou, hit in zip(best.objects, best.boxes, best.iou, best.found):
            if hit:
                _box(ax, obj, COLOURS["object"], "object", dashed=True, width=1.0)
                _box(ax, box, COLOURS["best"], "best", label=f"{iou:.2f}")
            else:
                _box(ax, obj, COLOURS["missed"], "missed", label=f"missed {iou:.2f}")
        found, total = found + int(best.found.sum()), total + len(best)
        ax.set_title(f"{int(best.found.sum())} of {len(best)} found", fontsize=8)
    fig.suptitle(f"each object's best of the top {top_k} proposals, with its IoU "
                 f"(yellow); missed: none at IoU {threshold:g} (magenta). "
                 f"{found} of {total} objects found", fontsize=9)
    if path is not None:
        _save(fig, path)
    return fig


def draw_image_proposals(image, boxes, scores, path, *, max_side=MAX_PICTURE_SIDE):
    """One (h, w, 3) image with proposals ``boxes`` (M, 4) in its pixels,
    best first, labelled with their rank and ``scores``, saved to ``path``
    at the image's own size (scaled down to ``max_side`` pixels on its
    longest side when larger). Returns ``path``."""
    plt = _pyplot()
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width, 1))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    # a quarter pixel more: matplotlib truncates the figure's size to pixels
    fig = plt.figure(figsize=((out_w + 0.25) / _DPI, (out_h + 0.25) / _DPI), dpi=_DPI)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image, interpolation="antialiased")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    colours = COLOURS["proposal"]
    for rank, (box, score) in enumerate(zip(onp.asarray(boxes).reshape(-1, 4), scores)):
        _box(ax, box, colours[rank % len(colours)], "proposal",
             label=f"{rank + 1}: {float(score):.2f}")
    return _save(fig, path, dpi=_DPI)


def draw_run(folder, events, recall, model, val_iter):
    """A run's pictures into its :class:`rpn.runs.folder.RunFolder`
    ``folder``: ``curves.png`` from ``events`` (the event log's records, or
    the history), and with a ``recall`` (a :class:`rpn.ProposalRecall`)
    ``recall_iou.png``, ``recall_proposals.png`` and ``predictions.png`` of
    the first 10 images of ``val_iter``'s first batch through ``model`` (a
    proposal model)."""
    import mxnet as mx
    plot_curves(events, folder.file("curves.png"))
    if recall is None:
        return
    plot_recall(recall, folder.file("recall_iou.png"))
    plot_proposal_recall(recall, folder.file("recall_proposals.png"))
    for X, Y, info in val_iter:
        info = info.select(slice(0, 10))
        sizes = mx.np.array(info.sizes, dtype="float32", ctx=model.ctx)      # (B', 2)
        scores, boxes = model(X[:10].as_in_context(model.ctx), sizes)
        draw_proposals(X[:10], Y[:10], scores, boxes, info,
                       path=folder.file("predictions.png"))
        break
