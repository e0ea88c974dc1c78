"""Proposals for image files: what ``rpn predict`` does.

:func:`predict_images` reads image files (and every image of a folder),
sends them through the one preprocessing path (:mod:`rpn.data.preprocess`) with
the model's own resize rule, and returns each image's best proposals;
:func:`save_predictions` also draws them and writes ``proposals.json``, in
the package's layout or in COCO's results format
(:mod:`rpn.proposals.formats`).

Shape glossary: ``B`` images a batch, ``M`` proposals kept an image. Boxes
leave this module in the original image's pixels, corner form ``[x1, y1,
x2, y2]``.
"""
import os

from mxnet import np

from ..data.images import IMAGE_EXTENSIONS, BadImageError, read_image
from ..data.preprocess import pad_batch, preprocess_image
from ..evaluation.evaluate import trained_model
from ..runs.fileio import make_dir, write_json
from .formats import ImageProposals, write_coco_results
from .inputs import expand_images, warn_if_tiny

__all__ = ["predict_images", "save_predictions", "describe", "IMAGE_EXTENSIONS"]


def predict_images(model, paths, *, top_k=10, batch_size=8, ctx=None):
    """Proposals for image files (and every image of a folder among
    ``paths``). Returns ``(results, errors)``: ``results`` one dict an
    image read, ``{"path", "index" (its place among the files, folders
    expanded), "width", "height", "scores" (M,), "boxes" (M, 4) original
    pixels}`` with ``M <= top_k``, best first; ``errors`` a list
    of ``(path, reason)`` for the files that could not be read (they do not
    stop the others)."""
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
    model = trained_model(model, ctx)
    ctx = model.ctx
    results, errors, pending = [], [], []

    def flush():
        pixels = [p for _, _, _, p in pending]
        X = np.array(pad_batch(pixels, model.size_divisor), ctx=ctx)
        sizes = np.array([p.shape[1:] for p in pixels], dtype="float32", ctx=ctx)
        scores, boxes = model(X, sizes)
        scores, boxes = scores.asnumpy(), boxes.asnumpy()          # one read a batch
        for b, (index, path, image, _) in enumerate(pending):
            height, width = image.shape[:2]
            keep = scores[b] >= 0
            results.append({"path": path, "index": index, "width": width, "height": height,
                            "scores": scores[b][keep][:top_k],
                            "boxes": boxes[b][keep][:top_k] * [width, height, width, height]})
        pending.clear()

    # files, and every image file of each folder (sorted; links that lead
    # nowhere warned about; a folder without images is an error)
    for index, path in enumerate(expand_images(paths)):
        try:
            image = read_image(path)
        except (BadImageError, FileNotFoundError, OSError) as error:
            errors.append((path, str(error)))
            continue
        pending.append((index, path, image, preprocess_image(image, model.resize)))
        warn_if_tiny(path, image.shape[:2], pending[-1][3].shape[1:], model.stride)
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


def save_predictions(model, paths, out, *, top_k=10, ctx=None, format="rpn", ids=None):
    """What ``rpn predict`` writes: :func:`predict_images` for ``paths``,
    one picture an image read (its proposals drawn; two inputs of the same
    name get distinct pictures) and ``proposals.json`` in the folder
    ``out``. ``format`` ``"rpn"``: the package's layout (``images``: each
    image's proposals in original pixels; ``errors``: the files that could
    not be read); ``"coco"``: COCO's results format, with ``ids`` (the COCO
    image ids of ``paths``, image files one each) as image ids, or without
    them images numbered in order and an images list beside it
    (:func:`rpn.proposals.formats.write_coco_results`). Returns
    ``(summary, errors)``."""
    from ..evaluation.pictures import draw_image_proposals
    if format not in ("rpn", "coco"):
        raise ValueError(f"format must be 'rpn' or 'coco', got {format!r}")
    if ids is not None and (len(ids) != len(paths) or any(map(os.path.isdir, paths))):
        raise ValueError(f"ids must name image files one each: {len(ids)} ids for "
                         f"{len(paths)} paths")
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
    target = os.path.join(out, "proposals.json")
    if format == "coco":
        files = write_coco_results(target, [ImageProposals(
            None if ids is None else ids[r["index"]], r["path"], (r["height"], r["width"]),
            r["boxes"], r["scores"]) for r in results], coco_ids=ids is not None)
    else:
        files = [write_json(target, {
            "images": images, "errors": [{"path": p, "error": e} for p, e in errors]})]
    return {"images": len(results), "errors": len(errors), "out": os.fspath(out),
            "files": [os.fspath(f) for f in files]}, errors
