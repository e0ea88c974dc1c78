"""Proposals for a second stage: a file of every image's proposals, and
RoI rows for ROIAlign.

``rpn propose`` (:func:`propose`) writes one NumPy ``.npz`` file (read
with ``allow_pickle=False``: it holds arrays only) that plays the part of
detectron2's and mmdetection's precomputed proposal files:

=============== ============ ===============================================
``boxes``       (R, 4) f32   ``[x1, y1, x2, y2]`` in original image pixels
``scores``      (R,) f32     object probability, best first within an image
``counts``      (I,) i64     proposals of each image; image ``i``'s rows are
                             ``counts[:i].sum()`` to ``counts[:i + 1].sum()``
``image_ids``   (I,)         the dataset's ids (COCO ids, VOC names)
``file_names``  (I,) str     file names relative to the image folder
``image_sizes`` (I, 2) i64   original ``[height, width]``
``meta``        () str       JSON: format, version, data, split, model,
                             top_k, nms_threshold, resize rule
=============== ============ ===============================================

:func:`load_proposals` reads it back (``proposals[i]`` or
``proposals.by_id(image_id)``). :func:`proposals_to_rois` turns the proposal
model's output into ``(R, 5)`` rows ``[batch index, x1, y1, x2, y2]`` in
input pixels, the RoI format of MXNet's ``ROIAlign`` (``npx.roi_align`` in
later MXNet; 1.9.1 has ``mx.nd.contrib.ROIAlign``, see :func:`roi_align`).
"""
import io
import json
import os

import mxnet as mx
import numpy as onp
from mxnet import np

from .fileio import write_bytes
from .inference import model_context
from .run import load
from .sources import check_split, make_loader, open_split, resolve_split, say_counts

__all__ = ["propose", "load_proposals", "ProposalSet", "proposals_to_rois", "roi_align",
           "PROPOSAL_FORMAT"]

PROPOSAL_FORMAT = "rpn-proposals"
_VERSION = 1
_KEYS = ("boxes", "scores", "counts", "image_ids", "file_names", "image_sizes", "meta")


def proposals_to_rois(proposals, image_sizes, *, keep_padding=False):
    """RoIs for ROIAlign: ``(R, 5)`` rows ``[batch index, x1, y1, x2, y2]``
    in input pixels (the batch's canvas), float32, on the boxes' context.

    ``proposals``: the proposal model's ``(scores (B, K), boxes (B, K, 4))``
    (normalised by each image's size; rows scoring below 0 are padding), or
    the chapter's list of ``[scores (M,), boxes (4, M)]``. ``image_sizes``
    (B, 2+): each image's ``[height, width]`` in input pixels. Padding rows
    are dropped (one read of the scores from the device); with
    ``keep_padding`` every one of the ``B * K`` rows is kept (no read: what
    a GPU pipeline wants) and padding rows become empty boxes at the
    origin."""
    if isinstance(proposals, (list, tuple)) and proposals and isinstance(proposals[0], list):
        rows = []
        for b, (_, boxes) in enumerate(proposals):
            ctx = boxes.ctx
            h, w = (float(v) for v in onp.asarray(_host(image_sizes))[b][:2])
            # (4, M) -> (M, 4) pixels, then the batch index in front: (M, 5)
            pixels = boxes.T * np.array([w, h, w, h], ctx=ctx)
            rows.append(np.concatenate([np.full((pixels.shape[0], 1), b, ctx=ctx), pixels], 1))
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, 5))
    scores, boxes = proposals
    batch, k = scores.shape
    ctx = boxes.ctx
    sizes = image_sizes.as_in_context(ctx).astype("float32")[:, :2]       # (B, 2)
    scale = np.concatenate([sizes[:, 1:2], sizes[:, 0:1]] * 2, axis=1)    # (B, 4) w, h, w, h
    pixels = boxes * scale[:, None, :] * (scores >= 0)[..., None]         # (B, K, 4)
    index = np.broadcast_to(np.arange(batch, ctx=ctx).astype("float32")[:, None], (batch, k))
    rois = np.concatenate([index[..., None], pixels], axis=-1).reshape(-1, 5)   # (B * K, 5)
    if keep_padding:
        return rois
    valid = onp.flatnonzero(scores.asnumpy().reshape(-1) >= 0)
    return rois[np.array(valid, dtype="int64", ctx=ctx)]


def roi_align(features, rois, pooled_size, spatial_scale, *, sample_ratio=2):
    """MXNet's ``ROIAlign`` on ``mxnet.np`` arrays, differentiable:
    ``features`` (B, C, h, w), ``rois`` (R, 5) from :func:`proposals_to_rois`,
    ``spatial_scale`` = 1 / stride. Returns (R, C, *pooled_size)."""
    return mx.nd.contrib.ROIAlign(
        features.as_nd_ndarray(), rois.as_nd_ndarray(), pooled_size=tuple(pooled_size),
        spatial_scale=float(spatial_scale), sample_ratio=sample_ratio).as_np_ndarray()


def _host(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else array


def propose(model, data, split=None, *, out, top_k=None, classes=None, images=None,
            batch_size=None, num_workers=0, ctx=None, skip_bad=False, progress=None):
    """Proposals for every image of one split of ``data``, written to
    ``out`` (see the module). ``split``: default
    :func:`rpn.sources.resolve_split`'s (all of a single annotation file,
    ``val`` of data with splits). At most ``top_k`` proposals an image, from 1
    to the model's ``post_nms_top_n_test``; ``None``: all the model keeps
    (``post_nms_top_n_test``). ``model``: a proposal model or a
    run/export folder. Images that cannot be read raise one error listing
    them, or are left out with a warning (``skip_bad``). Returns a summary
    dict. ``progress(n)`` is called after every batch of ``n`` images."""
    model = load(model, ctx) if isinstance(model, (str, os.PathLike)) else model
    config, saved = model.config, getattr(model, "saved", {})
    top_k = config.post_nms_top_n_test if top_k is None else top_k
    if int(top_k) != top_k or not 1 <= top_k <= config.post_nms_top_n_test:
        raise ValueError(f"top_k must be an integer from 1 to the model's "
                         f"post_nms_top_n_test ({config.post_nms_top_n_test}), got {top_k!r}")
    split = resolve_split(data, split, images=images)
    found = open_split(data, split, classes=classes or model.classes or None, images=images,
                       skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                       synthetic=dict(size=config.size, num_train=config.num_train,
                                      num_val=config.num_val, seed=saved.get("seed", 0)))
    found = check_split(found, skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                        num_workers=num_workers or None, progress=progress is not None,
                        what=f"{split} images")
    say_counts("rpn propose", found, split)
    loader = make_loader(found, config.resize_rule(), batch_size or config.batch_size,
                         train=False, num_workers=num_workers, on_error="raise",
                         size_divisor=config.size_divisor)
    ctx = model_context(model)
    per_image = {}
    for X, _, info in loader:
        sizes = np.array(info[:, :2], dtype="float32", ctx=ctx)
        scores, boxes = model(X.as_in_context(ctx), sizes)
        scores, boxes = scores.asnumpy(), boxes.asnumpy()            # one read a batch
        for b, row in enumerate(info):
            keep = scores[b] >= 0
            scale = [row[3], row[2], row[3], row[2]]                   # original w, h
            per_image[int(row[4])] = (scores[b][keep][:top_k],
                                      boxes[b][keep][:top_k] * scale, (row[2], row[3]))
        if progress is not None:
            progress(len(info))
    order = sorted(per_image)
    scores = [per_image[i][0] for i in order]
    ids = [found.ids[i] for i in order]
    meta = {"format": PROPOSAL_FORMAT, "version": _VERSION, "data": os.fspath(data),
            "split": split, "top_k": int(top_k), "nms_threshold": config.nms_threshold,
            "resize": config.resize_rule().describe(),
            "model": os.fspath(getattr(model, "path", "")) or None,
            "box_format": "x1, y1, x2, y2 in original image pixels"}
    arrays = {
        "boxes": onp.concatenate([per_image[i][1] for i in order] or [onp.zeros((0, 4))])
        .astype("float32").reshape(-1, 4),
        "scores": onp.concatenate(scores or [onp.zeros(0)]).astype("float32"),
        "counts": onp.array([len(s) for s in scores], dtype="int64"),
        "image_ids": (onp.array(ids, dtype="int64") if all(isinstance(i, int) for i in ids)
                      else onp.array([str(i) for i in ids])),
        "file_names": onp.array([str(found.names[i]) for i in order]),
        "image_sizes": onp.array([per_image[i][2] for i in order], dtype="int64").reshape(-1, 2),
        "meta": onp.array(json.dumps(meta))}
    buffer = io.BytesIO()
    onp.savez(buffer, **arrays)
    write_bytes(out, buffer.getvalue())
    return {"images": len(order), "proposals": int(arrays["counts"].sum()), "out": out}


class ProposalSet:
    """A proposal file opened by :func:`load_proposals`: ``len()``, and
    ``self[i]`` / ``by_id(image_id)`` give ``{"image_id", "file_name",
    "image_size" (height, width), "boxes" (M, 4) original pixels, "scores"
    (M,)}``. ``meta`` is the file's metadata; ``arrays`` the raw arrays."""

    def __init__(self, arrays, path):
        self.arrays, self.path = arrays, path
        self.meta = json.loads(str(arrays["meta"]))
        self._starts = onp.concatenate([[0], onp.cumsum(arrays["counts"])])
        self._index = {self._key(i): n for n, i in enumerate(arrays["image_ids"].tolist())}

    @staticmethod
    def _key(image_id):
        return str(image_id)

    def __len__(self):
        return len(self.arrays["counts"])

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} of {len(self)} in {self.path}")
        i %= len(self)
        a, b = self._starts[i], self._starts[i + 1]
        return {"image_id": self.arrays["image_ids"][i].item(),
                "file_name": str(self.arrays["file_names"][i]),
                "image_size": tuple(int(v) for v in self.arrays["image_sizes"][i]),
                "boxes": self.arrays["boxes"][a:b], "scores": self.arrays["scores"][a:b]}

    def by_id(self, image_id):
        try:
            return self[self._index[self._key(image_id)]]
        except KeyError:
            raise KeyError(f"no image with id {image_id!r} in {self.path}") from None


def load_proposals(path):
    """Read a proposal file written by :func:`propose` (see the module);
    never unpickles. A file that is not one raises a ``ValueError`` naming
    it and what is wrong."""
    try:
        with onp.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a proposal file (.npz of arrays): {error}") from None
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not a proposal file: missing {missing}")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        meta = {}
    if meta.get("format") != PROPOSAL_FORMAT:
        raise ValueError(f"{path} is not a proposal file: meta format {meta.get('format')!r}")
    images = len(arrays["counts"])
    if (arrays["boxes"].ndim != 2 or arrays["boxes"].shape[1] != 4
            or len(arrays["scores"]) != len(arrays["boxes"])
            or int(arrays["counts"].sum()) != len(arrays["boxes"])
            or (arrays["counts"] < 0).any()
            or len(arrays["image_ids"]) != images or len(arrays["file_names"]) != images
            or arrays["image_sizes"].shape != (images, 2)):
        raise ValueError(f"{path}: the arrays of the proposal file do not agree in size")
    return ProposalSet(arrays, path)
