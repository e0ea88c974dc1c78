"""Proposals for a second stage: a file of every image's proposals, what
``rpn propose`` writes.

``rpn propose`` (:func:`propose`) writes one NumPy ``.npz`` file (read
with ``allow_pickle=False``: it holds arrays only), or with ``format`` the
files of COCO's results, detectron2 and mmdetection
(:mod:`rpn.proposals.formats`). The ``.npz`` file holds:

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
``proposals.by_id(image_id)``). In process, :mod:`rpn.ops.roi` feeds a second
stage without a file.
"""
import io
import json
import os

import numpy as onp
from mxnet import np

from ..data.preprocess import Resize
from ..data.sources import has_coco_ids, load_split, resolve_split
from ..evaluation.evaluate import trained_model
from ..runs.fileio import write_bytes
from .formats import FORMATS, ImageProposals, check_whole, write_format

__all__ = ["propose", "load_proposals", "ProposalSet", "PROPOSAL_FORMAT"]

PROPOSAL_FORMAT = "rpn-proposals"
_VERSION = 1
_KEYS = ("boxes", "scores", "counts", "image_ids", "file_names", "image_sizes", "meta")


def propose(model, data, split=None, *, out, top_k=None, classes=None, images=None,
            batch_size=None, num_workers=0, ctx=None, skip_bad=False, progress=None,
            format="npz"):
    """Proposals for every image of one split of ``data``, written to
    ``out`` (see the module). ``split``: default
    :func:`rpn.data.sources.resolve_split`'s (all of a single annotation file,
    ``val`` of data with splits). At most ``top_k`` proposals an image, from 1
    to the model's ``post_nms_top_n_test``; ``None``: all the model keeps
    (``post_nms_top_n_test``). ``model``: a proposal model or a
    run/export folder. Images that cannot be read raise one error listing
    them, or are left out with a warning (``skip_bad``; not with the
    ``detectron2`` and ``mmdet`` formats, :func:`rpn.proposals.formats.check_whole`).
    ``format``: one of :data:`rpn.proposals.formats.FORMATS`. Returns a
    summary dict (``files``: every file written). ``progress(n)`` is called
    after every batch of ``n`` images."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    model = trained_model(model, ctx)
    config = model.config
    most = config.model.post_nms_top_n_test
    top_k = most if top_k is None else top_k
    if int(top_k) != top_k or not 1 <= top_k <= most:
        raise ValueError(f"top_k must be an integer from 1 to the model's "
                         f"post_nms_top_n_test ({most}), got {top_k!r}")
    split = resolve_split(data, split, images=images)
    found, loader = load_split(model, data, split, classes=classes, images=images,
                               batch_size=batch_size, num_workers=num_workers,
                               skip_bad=skip_bad, progress=progress is not None,
                               on_error="raise", command="rpn propose")
    check_whole(format, found, split)
    per_image = {}
    for X, _, info in loader:
        sizes = np.array(info.sizes, dtype="float32", ctx=model.ctx)
        scores, boxes = model(X.as_in_context(model.ctx), sizes)
        scores, boxes = scores.asnumpy(), boxes.asnumpy()            # one read a batch
        for b, ((height, width), index) in enumerate(zip(info.original_sizes,
                                                         info.indices)):
            keep = scores[b] >= 0
            scale = [width, height, width, height]                     # original pixels
            per_image[int(index)] = (scores[b][keep][:top_k],
                                     boxes[b][keep][:top_k] * scale, (height, width))
        if progress is not None:
            progress(len(info))
    proposals = [ImageProposals(found.ids[i], str(found.names[i]), per_image[i][2],
                                per_image[i][1], per_image[i][0], found.labels[i])
                 for i in sorted(per_image)]
    if format == "npz":
        meta = {"format": PROPOSAL_FORMAT, "version": _VERSION, "data": os.fspath(data),
                "split": split, "top_k": int(top_k),
                "nms_threshold": config.model.nms_threshold,
                "resize": Resize.of(config.model).describe(), "model": model.source,
                "box_format": "x1, y1, x2, y2 in original image pixels"}
        files = [_write_npz(out, proposals, meta)]
    else:
        files = write_format(out, format, proposals,
                             coco_ids=has_coco_ids(data, images))
    return {"images": len(proposals), "proposals": sum(len(p.scores) for p in proposals),
            "out": out, "files": [os.fspath(f) for f in files]}


def _write_npz(out, proposals, meta):
    """The ``.npz`` file of the module for ``proposals`` (a list of
    :class:`rpn.proposals.formats.ImageProposals`) and ``meta``."""
    ids = [p.image_id for p in proposals]
    arrays = {
        "boxes": onp.concatenate([p.boxes for p in proposals] or [onp.zeros((0, 4))])
        .astype("float32").reshape(-1, 4),
        "scores": onp.concatenate([p.scores for p in proposals] or [onp.zeros(0)])
        .astype("float32"),
        "counts": onp.array([len(p.scores) for p in proposals], dtype="int64"),
        "image_ids": (onp.array(ids, dtype="int64") if all(isinstance(i, int) for i in ids)
                      else onp.array([str(i) for i in ids])),
        "file_names": onp.array([p.file_name for p in proposals]),
        "image_sizes": onp.array([p.size for p in proposals], dtype="int64").reshape(-1, 2),
        "meta": onp.array(json.dumps(meta))}
    buffer = io.BytesIO()
    onp.savez(buffer, **arrays)
    return write_bytes(out, buffer.getvalue())


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
