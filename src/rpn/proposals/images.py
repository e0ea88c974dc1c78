"""Proposals for image files: what ``rpn predict`` does.

:func:`predict_images` reads image files (and every image of a folder),
sends them through the one preprocessing path (:mod:`rpn.data.preprocess`) with
the model's own resize rule, and returns each image's best proposals;
:func:`save_predictions` also draws them and writes ``proposals.json``, in
the package's layout or in COCO's results format
(:mod:`rpn.proposals.formats`).

The output folder is the package's, as a run folder is: one writer at a
time (its ``.lock``, :func:`rpn.runs.lock.claim_output`; a second predict
into it is refused naming the holder, and what a killed one left recorded
is removed), never a folder of the input images (its pictures would land
among them), never a run or export folder, and a file in it that the
package did not write (one the previous ``proposals.json`` does not list
as a picture) is never replaced: the picture takes the next free name
(after a predict in COCO's format, whose ``proposals.json`` lists no
pictures, every picture takes a free name).
A picture that cannot be drawn (matplotlib fails on it) costs only the
picture: the image's proposals are written, and one warning names it.

Shape glossary: ``B`` images a batch, ``M`` proposals kept an image. Boxes
leave this module in the original image's pixels, corner form ``[x1, y1,
x2, y2]``.
"""
import os
import warnings

from mxnet import np

from ..data.images import IMAGE_EXTENSIONS, BadImageError, read_image
from ..data.preprocess import pad_batch, preprocess_image
from ..evaluation.evaluate import trained_model
from ..runs.fileio import (DiskFullError, OutputPathError, file_kind, link_problem, read_json,
                           shown, write_json)
from ..runs.folder import RunFolder
from ..runs.lock import claim_output
from .formats import ImageProposals, is_coco_results, write_coco_results
from .inputs import expand_images, warn_if_tiny

__all__ = ["predict_images", "save_predictions", "describe", "IMAGE_EXTENSIONS"]

_JSON = "proposals.json"


def _unreadable(path, error):
    """Why ``path`` could not be read, without its name."""
    if isinstance(error, BadImageError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        return link_problem(path) or "file not found"
    return error.strerror or str(error)


def predict_images(model, paths, *, top_k=10, batch_size=8, ctx=None):
    """Proposals for image files (and every image of a folder among
    ``paths``). Returns ``(results, errors)``: ``results`` one dict an
    image read, ``{"path", "index" (its place among the files, folders
    expanded), "width", "height", "scores" (M,), "boxes" (M, 4) original
    pixels}`` with ``M <= top_k``, best first; ``errors`` a list
    of ``(path, reason)`` for the files that could not be read (they do not
    stop the others; ``reason`` does not repeat the path)."""
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
        except (BadImageError, OSError) as error:
            errors.append((path, _unreadable(path, error)))
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


def _refuse_out(out, paths):
    """Refuse (:class:`rpn.runs.fileio.OutputPathError`) an output folder
    that is not a folder, that holds input images, or a run or export; return
    the names of the pictures the last predict into it wrote (which may be
    replaced)."""
    out = os.fspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise OutputPathError(f"{shown(out)} is {file_kind(os.lstat(out).st_mode)}, not a "
                              "folder: give a folder for the pictures and proposals.json")
    if not os.path.isdir(out):
        return set()
    real = os.path.realpath(out)
    for path in paths:
        folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
        if os.path.realpath(folder) == real:
            raise OutputPathError(
                f"{shown(out)} is a folder of the input images ({shown(path)} among them): "
                "the pictures would go among them and replace those of the same name; give "
                "a folder of its own")
    folder = RunFolder(out)
    if folder.has_run() or folder.is_export:
        what = "an export" if folder.is_export else "a run"
        raise OutputPathError(f"{shown(out)} holds {what}; give a folder of its own for "
                              "predictions")
    previous = os.path.join(out, _JSON)
    if not os.path.lexists(previous):
        return set()
    try:
        listed = read_json(previous, what="predictions")
        if is_coco_results(listed):
            return set()
        pictures = {os.path.basename(entry["picture"]) for entry in listed["images"]
                    if entry.get("picture")}
        if not isinstance(listed["errors"], list):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OutputPathError(f"{shown(previous)} is not the proposals.json of rpn predict; "
                              "give another folder, or move that file") from None
    return {name for name in pictures if name.endswith(".png")}


def _picture_name(path, used, out, replaceable):
    """A picture name for the image ``path``: its own name, else ``-2``,
    ``-3``... past the names used by this predict and the files in ``out``
    that the last predict did not write."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name, n = stem, 1
    while name in used or (os.path.lexists(os.path.join(out, name + ".png"))
                           and name + ".png" not in replaceable):
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return os.path.join(out, name + ".png")


def _draw(result, picture):
    """Draw ``result`` into ``picture``; ``None``, or why it could not be
    drawn (a full disk is not a picture's fault: it stops the predict)."""
    from ..evaluation.pictures import draw_image_proposals
    try:
        draw_image_proposals(read_image(result["path"]), result["boxes"], result["scores"],
                             picture)
    except DiskFullError:
        raise
    except Exception as error:      # matplotlib's limits, memory, a file gone since
        return f"{type(error).__name__}: {error}"
    return None


def save_predictions(model, paths, out, *, top_k=10, ctx=None, format="rpn", ids=None):
    """What ``rpn predict`` writes: :func:`predict_images` for ``paths``,
    one picture an image read (its proposals drawn; two inputs of the same
    name get distinct pictures) and ``proposals.json`` (``images``: each
    image's proposals in original pixels and its picture, ``null`` with
    ``picture_error`` when it could not be drawn; ``errors``: the files that
    could not be read) in the folder ``out``, under the rules of the module.
    ``format`` ``"rpn"``: that layout; ``"coco"``: COCO's results format,
    with ``ids`` (the COCO image ids of ``paths``, image files one each) as
    image ids, or without them images numbered in order and an images list
    beside it (:func:`rpn.proposals.formats.write_coco_results`). Returns
    ``(summary, errors)``; the summary's ``files`` are the files of
    proposals written."""
    if format not in ("rpn", "coco"):
        raise ValueError(f"format must be 'rpn' or 'coco', got {format!r}")
    if ids is not None and (len(ids) != len(paths) or any(map(os.path.isdir, paths))):
        raise ValueError(f"ids must name image files one each: {len(ids)} ids for "
                         f"{len(paths)} paths")
    paths = expand_images(paths)
    replaceable = _refuse_out(out, paths)
    lock = claim_output(out, doing="writing predictions into it")
    try:
        results, errors = predict_images(model, paths, top_k=top_k, ctx=ctx)
        used, images, undrawn = set(), [], []
        for result in results:
            picture = _picture_name(result["path"], used, out, replaceable)
            problem = _draw(result, picture)
            entry = dict(describe(result), picture=None if problem else picture)
            if problem:
                entry["picture_error"] = problem
                undrawn.append(f"{shown(result['path'])} ({problem})")
            images.append(entry)
        target = os.path.join(out, _JSON)
        if format == "coco":
            files = write_coco_results(target, [ImageProposals(
                None if ids is None else ids[r["index"]], r["path"], (r["height"], r["width"]),
                r["boxes"], r["scores"]) for r in results], coco_ids=ids is not None)
        else:
            files = [write_json(target, {
                "images": images, "errors": [{"path": p, "error": e} for p, e in errors]})]
    finally:
        lock.release()
    if undrawn:
        warnings.warn(f"{len(undrawn)} picture(s) could not be drawn; their proposals are in "
                      f"{shown(os.path.join(out, _JSON))}: " + "; ".join(undrawn))
    return {"images": len(results), "errors": len(errors), "out": os.fspath(out),
            "files": [os.fspath(f) for f in files]}, errors
