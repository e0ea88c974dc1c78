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

The file is the package's output and nothing else is replaced by it: an
``out`` that exists must be a file of the format asked for (a ``.npz``
proposal file, a JSON list of COCO results, a pickle's header for
detectron2 and mmdetection, which is looked at and never unpickled; not a
run's ``config.json``, not a checkpoint's parameters, not a folder), and
``out`` may not lie in a run's ``checkpoint/``. One ``propose`` writes it at a time, holding
``.NAME.lock`` beside it (:class:`rpn.runs.lock.FileLock`), which also
records its temporary file, so that what a killed one left is removed by
the next. Reading is bounded: each array's header must agree with the size
the archive states for it, and a compressed array may not expand more than
:data:`_MAX_RATIO` times (plus 16 MiB), so that a forged header or a zip
bomb is a ``ValueError``, not a ``MemoryError``.
"""
import io
import json
import os
import zipfile

import numpy as onp
from mxnet import np

from ..data.preprocess import Resize
from ..data.evaluation_split import load_split
from ..data.sources import has_coco_ids, resolve_split
from ..evaluation.evaluate import trained_model
from ..runs.fileio import (NotRegularFileError, OutputPathError, file_kind, open_regular,
                           shown, write_bytes)
from ..runs.lock import FileLock
from .formats import (FORMATS, PICKLE_PROTOCOL, ImageProposals, check_whole,
                      is_coco_results, write_format)

__all__ = ["propose", "load_proposals", "ProposalSet", "PROPOSAL_FORMAT"]

PROPOSAL_FORMAT = "rpn-proposals"
_VERSION = 1
_KEYS = ("boxes", "scores", "counts", "image_ids", "file_names", "image_sizes", "meta")
#: How many times its stored size a compressed array may expand to (plus
#: :data:`_SLACK` bytes): proposals compress a few times, a zip bomb a
#: thousand.
_MAX_RATIO = 100
_SLACK = 16 << 20
_HEADERS = {(1, 0): onp.lib.format.read_array_header_1_0,
            (2, 0): onp.lib.format.read_array_header_2_0}


def _is_format(path, format):
    """Whether the regular file ``path`` is a file :func:`propose` writes in
    ``format``: read as arrays or JSON, a pickle only by its first bytes."""
    try:
        if format == "npz":
            meta = json.loads(str(_read_arrays(path, ("meta",))["meta"]))
            return isinstance(meta, dict) and meta.get("format") == PROPOSAL_FORMAT
        with os.fdopen(open_regular(path), "rb") as f:
            if format != "coco":
                return f.read(2) == b"\x80" + bytes([PICKLE_PROTOCOL])
            return is_coco_results(json.load(f))
    except (ValueError, KeyError, OSError):
        return False


def _refuse_out(out, format):
    """Refuse (:class:`rpn.runs.fileio.OutputPathError`) an ``out`` that
    :func:`propose` may not write (see the module)."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise OutputPathError(f"{shown(out)}: its folder {shown(folder)} does not exist")
    parts = os.path.realpath(folder).split(os.sep)
    for at in range(len(parts) - 1, 0, -1):
        run = os.sep.join(parts[:at])
        if parts[at] == "checkpoint" and os.path.isfile(os.path.join(run, "config.json")):
            raise OutputPathError(f"{shown(out)} is inside the checkpoints of the run "
                                  f"{shown(run)}; write proposals elsewhere")
    if not os.path.lexists(out):
        return
    kind = file_kind(os.lstat(out).st_mode)
    if kind != "a regular file":
        raise OutputPathError(f"{shown(out)} is {kind}; expected the path of a file to "
                              "write")
    if not _is_format(out, format):
        raise OutputPathError(f"{shown(out)} exists and is not a proposal file; rpn propose "
                              "replaces only its own files: choose another name, or move it")


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
    out = os.fspath(out)
    _refuse_out(out, format)
    model = trained_model(model, ctx)
    config = model.config
    most = config.model.post_nms_top_n_test
    top_k = most if top_k is None else top_k
    if int(top_k) != top_k or not 1 <= top_k <= most:
        raise ValueError(f"top_k must be an integer from 1 to the model's "
                         f"post_nms_top_n_test ({most}), got {top_k!r}")
    split = resolve_split(data, split, images=images)
    with FileLock(out, doing="writing proposals into it").acquire() as lock:
        lock.clean()            # what a killed propose of this file left
        found, loader = load_split(model, data, split, classes=classes, images=images,
                                   batch_size=batch_size, num_workers=num_workers,
                                   skip_bad=skip_bad, progress=progress is not None,
                                   on_error="raise", command="rpn propose")
        check_whole(format, found, split)
        per_image = _collect(model, loader, top_k, progress)
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
            files = write_format(out, format, proposals, coco_ids=has_coco_ids(data, images))
    return {"images": len(proposals), "proposals": sum(len(p.scores) for p in proposals),
            "out": out, "files": [os.fspath(f) for f in files]}


def _collect(model, loader, top_k, progress):
    """``{image index: (scores (M,), boxes (M, 4) original pixels, (height,
    width))}`` of every image of ``loader``, ``M <= top_k``."""
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
    return per_image


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


class _Refused(ValueError):
    """A proposal file refused, the message naming it."""


def _read_member(archive, info, path, disk_size):
    """One ``.npy`` member of a ``.npz`` archive, its size checked before
    anything is allocated (see the module)."""
    key = info.filename[:-4]
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size > disk_size:
            raise _Refused(f"{shown(path)}: array {key!r} claims {info.file_size} bytes, "
                             f"more than the file's {disk_size}")
    elif info.file_size > _MAX_RATIO * info.compress_size + _SLACK:
        raise _Refused(f"{shown(path)}: array {key!r} would expand from "
                         f"{info.compress_size} to {info.file_size} bytes; refused as a "
                         "possible zip bomb")
    with archive.open(info) as member:
        version = onp.lib.format.read_magic(member)
        if version not in _HEADERS:
            raise _Refused(f"{shown(path)}: array {key!r} has .npy version {version}; "
                             "expected 1.0 or 2.0")
        shape, fortran, dtype = _HEADERS[version](member)
        if dtype.hasobject:
            raise _Refused(f"{shown(path)}: array {key!r} holds Python objects (a pickle), "
                             "which are never read")
        claimed = int(onp.prod(shape, dtype=object)) * dtype.itemsize
        if claimed != info.file_size - member.tell():
            raise _Refused(f"{shown(path)}: array {key!r}'s header claims {shape} "
                             f"{dtype} ({claimed} bytes), but it holds "
                             f"{info.file_size - member.tell()} bytes")
    with archive.open(info) as member:
        return key, onp.lib.format.read_array(member, allow_pickle=False)


def _read_arrays(path, keys):
    """The arrays ``keys`` (those present) of the ``.npz`` file ``path``,
    never unpickled, each checked before it is read (:func:`_read_member`).
    Raises ``ValueError`` naming the file, or ``FileNotFoundError``."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            disk_size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f) as archive:
                return dict(_read_member(archive, info, path, disk_size)
                            for info in archive.infolist()
                            if info.filename.endswith(".npy") and info.filename[:-4] in keys)
    except (FileNotFoundError, _Refused):
        raise
    except NotRegularFileError as error:
        raise _Refused(f"{shown(path)} is {error.kind}, not a proposal file") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError) as error:
        raise ValueError(f"{shown(path)} is not a proposal file (.npz of arrays): "
                         f"{error}") from None


def load_proposals(path):
    """Read a proposal file written by :func:`propose` (see the module);
    never unpickles, and refuses forged sizes and zip bombs. A file that is
    not one raises a ``ValueError`` naming it and what is wrong."""
    arrays = _read_arrays(path, _KEYS)
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not a proposal file: missing {missing}")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != PROPOSAL_FORMAT:
        raise ValueError(f"{path} is not a proposal file: meta format "
                         f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    images = len(arrays["counts"])
    if (arrays["boxes"].ndim != 2 or arrays["boxes"].shape[1] != 4
            or len(arrays["scores"]) != len(arrays["boxes"])
            or int(arrays["counts"].sum()) != len(arrays["boxes"])
            or (arrays["counts"] < 0).any()
            or len(arrays["image_ids"]) != images or len(arrays["file_names"]) != images
            or arrays["image_sizes"].shape != (images, 2)):
        raise ValueError(f"{path}: the arrays of the proposal file do not agree in size")
    return ProposalSet(arrays, path)
