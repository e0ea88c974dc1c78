"""Proposals in the files other projects read: what ``rpn propose --format``
and ``rpn predict --format coco`` write beside the package's own ``.npz``
(:mod:`rpn.proposals.file`) and ``proposals.json``
(:mod:`rpn.proposals.images`). Boxes leave the package here, in original
image pixels. Nothing written here is read back: the package reads no pickle.

* ``coco``: COCO's results format, what ``pycocotools``' ``COCO.loadRes``,
  detectron2's and mmdetection's COCO evaluators and FiftyOne read: a JSON
  list of ``{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}``,
  best first within an image. ``image_id`` is the dataset's own id where
  it is a COCO image id (``coco_ids``); otherwise images are numbered 1,
  2, ... in order and an images list is written beside the file
  (:func:`images_list_path`): a COCO file whose ``images`` give each
  number's ``file_name``, ``width``, ``height`` and ``dataset_id``, with
  the category ``1`` (``"object"``) and, where they are known, the
  split's objects as annotations of it, so that COCO tools can load and
  score the results against it.
* ``detectron2``: the pickled dict that detectron2's
  ``load_proposals_into_dataset`` (``DATASETS.PROPOSAL_FILES_TRAIN`` /
  ``_TEST``) loads: ``ids`` (the images' ids, matched to the dataset's
  ``image_id`` as strings), ``boxes`` (one (M, 4) float32 array an image,
  ``[x1, y1, x2, y2]``), ``objectness_logits`` (one (M,) float32 array:
  ``log(p / (1 - p))`` of the object probability ``p``, ``p`` kept within
  [1e-7, 1 - 1e-7]) and ``bbox_mode`` ``0`` (``BoxMode.XYXY_ABS``).
* ``mmdet``: the pickled list that mmdetection 2.x's ``proposal_file``
  loads: one (M, 5) float32 array ``[x1, y1, x2, y2, score]`` an image,
  in the dataset's order (matched by position).

Both pickled formats must cover every image of the dataset they are given
to (:func:`check_whole`).
"""
import json
import os
import pickle
from typing import NamedTuple, Optional, Tuple

import numpy as onp

from ..data.image_set import CROWD
from ..runs.fileio import write_bytes

__all__ = ["ImageProposals", "FORMATS", "PICKLE_PROTOCOL", "write_format",
           "write_coco_results", "is_coco_results", "images_list_path", "check_whole"]

#: What ``rpn propose --format`` takes (``npz`` is :mod:`rpn.proposals.file`'s).
FORMATS = ("npz", "coco", "detectron2", "mmdet")
PICKLE_PROTOCOL = 4              # Python 3.4 and later read it
_XYXY_ABS = 0               # detectron2's BoxMode.XYXY_ABS
_LOGIT_EPS = 1e-7


class ImageProposals(NamedTuple):
    """One image's proposals: ``image_id`` the dataset's id, ``file_name``,
    ``size`` ``(height, width)`` original pixels, ``boxes`` (M, 4)
    ``[x1, y1, x2, y2]`` original pixels and ``scores`` (M,) object
    probabilities, best first; ``objects`` (G, 5) pixel rows ``[class,
    xmin, ymin, xmax, ymax]`` of the image's objects (class
    :data:`rpn.CROWD` for a crowd region), or ``None`` where unknown."""
    image_id: object
    file_name: str
    size: Tuple[int, int]
    boxes: onp.ndarray
    scores: onp.ndarray
    objects: Optional[onp.ndarray] = None


def _plain(value):
    """A dataset id as JSON and pickles hold it (NumPy scalars as Python's)."""
    return value.item() if isinstance(value, onp.generic) else value


def images_list_path(path):
    """Where the images list of the COCO results file ``path`` goes:
    ``val.json`` -> ``val.images.json``."""
    stem, ext = os.path.splitext(os.fspath(path))
    return (stem if ext.lower() == ".json" else os.fspath(path)) + ".images.json"


def _images_list(images):
    """The COCO file that numbers ``images`` 1, 2, ... (see the module)."""
    entries, annotations = [], []
    for number, image in enumerate(images, 1):
        height, width = (int(v) for v in image.size)
        entries.append({"id": number, "file_name": str(image.file_name), "width": width,
                        "height": height})
        if image.image_id is not None:
            entries[-1]["dataset_id"] = _plain(image.image_id)
        rows = onp.zeros((0, 5)) if image.objects is None else image.objects
        for cls, x0, y0, x1, y1 in onp.asarray(rows, dtype="float64").reshape(-1, 5):
            if cls < 0 and cls != CROWD:
                continue
            w, h = x1 - x0, y1 - y0
            annotations.append({"id": len(annotations) + 1, "image_id": number,
                                "category_id": 1, "bbox": [x0, y0, w, h], "area": w * h,
                                "iscrowd": int(cls == CROWD)})
    return {"images": entries, "annotations": annotations,
            "categories": [{"id": 1, "name": "object"}]}


def is_coco_results(value):
    """Whether ``value`` (a JSON document read) is a COCO results list, as
    :func:`write_coco_results` writes: every entry a dict with
    ``image_id``, ``bbox`` and ``score``."""
    return isinstance(value, list) and all(
        isinstance(r, dict) and {"image_id", "bbox", "score"} <= set(r) for r in value)


def write_coco_results(path, images, *, coco_ids):
    """Write the COCO results file ``path`` of ``images`` (a sequence of
    :class:`ImageProposals`), and, unless ``coco_ids`` (their ids are COCO
    image ids), the images list beside it. Returns the paths written."""
    images = list(images)
    written = []
    if not coco_ids:
        written.append(write_bytes(images_list_path(path),
                                   json.dumps(_images_list(images)).encode("utf-8")))
    results = []
    for number, image in enumerate(images, 1):
        image_id = _plain(image.image_id) if coco_ids else number
        boxes = onp.asarray(image.boxes, dtype="float64").reshape(-1, 4)
        for (x0, y0, x1, y1), score in zip(boxes, onp.asarray(image.scores).tolist()):
            results.append({"image_id": image_id, "category_id": 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return [write_bytes(path, json.dumps(results).encode("utf-8"))] + written


def _detectron2(images):
    scores = [onp.clip(onp.asarray(i.scores, "float64"), _LOGIT_EPS, 1 - _LOGIT_EPS)
              for i in images]
    return {"ids": [_plain(i.image_id) for i in images],
            "boxes": [onp.asarray(i.boxes, "float32").reshape(-1, 4) for i in images],
            "objectness_logits": [onp.log(p / (1 - p)).astype("float32") for p in scores],
            "bbox_mode": _XYXY_ABS}


def _mmdet(images):
    return [onp.concatenate([onp.asarray(i.boxes, "float32").reshape(-1, 4),
                             onp.asarray(i.scores, "float32").reshape(-1, 1)], axis=1)
            for i in images]


def check_whole(format, found, split):
    """Refuse a pickled ``format`` for a split that left images out (the
    ``left_out`` of the :class:`rpn.ImageSet` ``found``): mmdetection
    matches proposals to its dataset by position and detectron2 needs an
    entry for every image of its dataset, so such a file would shift or
    lack images. A ``ValueError`` naming what was left out."""
    if format not in ("detectron2", "mmdet") or not found.left_out:
        return
    gone = "; ".join(f"{entry.images} image{'s' if entry.images != 1 else ''} {entry.reason}"
                     for entry in found.left_out)
    how = ("by position" if format == "mmdet" else
           "by image id and needs an entry for every image")
    raise ValueError(f"--format {format}: split {split!r} leaves out {gone}; the file "
                     f"would not match its dataset ({format} matches proposals {how}). "
                     "Give a whole annotation file (--split all of a single file) and fix "
                     "or remove the images concerned")


def write_format(path, format, images, *, coco_ids=False):
    """Write ``images`` (a sequence of :class:`ImageProposals`, in the
    dataset's order) to ``path`` in ``format`` (``coco``, ``detectron2`` or
    ``mmdet``; see the module). Returns the paths written."""
    images = list(images)
    if format == "coco":
        return write_coco_results(path, images, coco_ids=coco_ids)
    if format not in ("detectron2", "mmdet"):
        raise ValueError(f"format must be one of {', '.join(FORMATS[1:])}, got {format!r}")
    content = _detectron2(images) if format == "detectron2" else _mmdet(images)
    return [write_bytes(path, pickle.dumps(content, protocol=PICKLE_PROTOCOL))]
