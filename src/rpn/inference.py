"""Using a proposal model: recall on a dataset split, and proposals for
image files.

What ``rpn evaluate`` and ``rpn predict`` do, for Python users. Both take
a loaded proposal model (:func:`rpn.load`) or the path of a run or export
folder, and send images through the one preprocessing path
(:mod:`rpn.preprocess`) with the model's own resize rule.

Shape glossary: ``B`` images a batch, ``K`` proposals an image. Boxes leave
this module in the original image's pixels, corner form ``[x1, y1, x2,
y2]``.
"""
import os

from mxnet import np

from .evaluation import ProposalRecall
from .fileio import make_dir, write_json
from .images import IMAGE_EXTENSIONS, BadImageError, read_image
from .predict_inputs import expand_images, warn_if_tiny
from .preprocess import pad_batch, preprocess_image
from .run import load
from .sources import check_split, make_loader, open_split

__all__ = ["evaluate", "evaluate_loader", "predict_images", "save_predictions", "describe",
           "model_context", "IMAGE_EXTENSIONS"]

#: File endings :func:`predict_images` takes from a folder.


def model_context(model):
    """The context a proposal model runs on."""
    if hasattr(model, "ctx"):
        return model.ctx
    return model.backbone.collect_params().list_ctx()[0]


def _as_model(model, ctx):
    return load(model, ctx) if isinstance(model, (str, os.PathLike)) else model


def evaluate_loader(model, loader, *, ks=None, thresholds=(0.5, 0.7), progress=None):
    """Recall of ``loader``'s objects (it yields ``(X, Y, info)``) among
    ``model``'s proposals. Returns ``(result, recall)``: the dict of
    :meth:`rpn.ProposalRecall.result` plus ``skipped_images`` (images that
    could not be read), and the :class:`rpn.ProposalRecall` for plots."""
    ctx = model_context(model)
    recall = ProposalRecall(ks or model.config.ks, thresholds)
    skipped = 0
    for X, Y, info in loader:
        sizes = np.array(info[:, :2], dtype="float32", ctx=ctx)
        scores, boxes = model(X.as_in_context(ctx), sizes)
        recall.update_batch(scores, boxes, Y, info)
        skipped += int((info[:, 0] == 0).sum())
        if progress is not None:
            progress(len(info))
    result = recall.result()
    result["skipped_images"] = skipped
    return result, recall


def evaluate(model, data=None, split="val", *, classes=None, images=None, ks=None,
             batch_size=None, num_workers=0, ctx=None, skip_bad=False, progress=False):
    """Proposal recall of ``model`` (a proposal model or a run/export folder)
    on one split of ``data`` (default: the data the run was trained on),
    as ``rpn evaluate`` reports it. Returns ``(result, recall)`` (see
    :func:`evaluate_loader`)."""
    model = _as_model(model, ctx)
    config, saved = model.config, getattr(model, "saved", {})
    data = data if data is not None else saved.get("data")
    if data is None:
        raise ValueError("give data=: the model's config.json does not name its data")
    if images is None and saved.get("data") in (data, os.path.abspath(data)):
        images = saved.get("images")
    found = open_split(data, split, classes=classes or model.classes or None,
                       images=images, skip_bad=skip_bad,
                       synthetic=dict(size=config.size, num_train=config.num_train,
                                      num_val=config.num_val, seed=saved.get("seed", 0)))
    if not found.images:
        raise ValueError(f"split {split!r} of {data} has no image")
    if not any((label[:, 0] >= 0).any() for label in found.labels):
        raise ValueError(f"split {split!r} of {data} has no object of the classes "
                         f"{list(found.classes)}: there is nothing to recall")
    found = check_split(found, skip_bad=skip_bad, num_workers=num_workers or None,
                        progress=progress, what=f"{split} images")
    loader = make_loader(found, config.resize_rule(), batch_size or config.batch_size,
                         train=False, num_workers=num_workers,
                         size_divisor=config.size_divisor)
    return evaluate_loader(model, loader, ks=ks)


def _expand(paths):
    """Files, and every image file of each folder (sorted; links that lead
    nowhere warned about; a folder without images is an error)."""
    return expand_images(paths)


def predict_images(model, paths, *, top_k=10, batch_size=8, ctx=None):
    """Proposals for image files (and every image of a folder among
    ``paths``). Returns ``(results, errors)``: ``results`` one dict an
    image read, ``{"path", "width", "height", "scores" (M,), "boxes" (M, 4)
    original pixels}`` with ``M <= top_k``, best first; ``errors`` a list
    of ``(path, reason)`` for the files that could not be read (they do not
    stop the others)."""
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
    model = _as_model(model, ctx)
    ctx = model_context(model)
    results, errors, pending = [], [], []

    def flush():
        pixels = [p for _, _, p in pending]
        X = np.array(pad_batch(pixels, model.config.size_divisor), ctx=ctx)
        sizes = np.array([p.shape[1:] for p in pixels], dtype="float32", ctx=ctx)
        scores, boxes = model(X, sizes)
        scores, boxes = scores.asnumpy(), boxes.asnumpy()          # one read a batch
        for b, (path, image, _) in enumerate(pending):
            height, width = image.shape[:2]
            keep = scores[b] >= 0
            results.append({"path": path, "width": width, "height": height,
                            "scores": scores[b][keep][:top_k],
                            "boxes": boxes[b][keep][:top_k] * [width, height, width, height]})
        pending.clear()

    for path in _expand(paths):
        try:
            image = read_image(path)
        except (BadImageError, FileNotFoundError, OSError) as error:
            errors.append((path, str(error)))
            continue
        pending.append((path, image, preprocess_image(image, model.resize)))
        warn_if_tiny(path, image.shape[:2], pending[-1][2].shape[1:], model.config.stride)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return results, errors


def describe(result):
    """The JSON-able form of one :func:`predict_images` result."""
    return {"path": result["path"], "width": int(result["width"]),
            "height": int(result["height"]),
            "proposals": [{"score": round(float(s), 6),
                           "box": [round(float(v), 2) for v in box]}
                          for s, box in zip(result["scores"], result["boxes"])]}



def save_predictions(model, paths, out, *, top_k=10, ctx=None):
    """What ``rpn predict`` writes: :func:`predict_images` for ``paths``,
    one picture an image read (its proposals drawn; two inputs of the same
    name get distinct pictures) and ``proposals.json`` (``images``: each
    image's proposals in original pixels; ``errors``: the files that could
    not be read) in the folder ``out``. Returns ``(summary, errors)``."""
    from .visualize import draw_image_proposals
    results, errors = predict_images(model, paths, top_k=top_k, ctx=ctx)
    make_dir(out)
    used, images = set(), []
    for result in results:
        stem = os.path.splitext(os.path.basename(result["path"]))[0]
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        picture = os.path.join(out, name + ".png")
        draw_image_proposals(read_image(result["path"]), result["boxes"], result["scores"],
                             picture)
        images.append(dict(describe(result), picture=picture))
    write_json(os.path.join(out, "proposals.json"), {
        "images": images, "errors": [{"path": p, "error": e} for p, e in errors]})
    return {"images": len(results), "errors": len(errors), "out": os.fspath(out)}, errors
