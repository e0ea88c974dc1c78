"""What a data source knows about one split of a detection dataset, and
the one rule for boxes that lack an area or pass their image's edge.

Every reader (VOC folders, COCO files, the synthetic set) returns an
:class:`ImageSet`; :class:`rpn.DetectionDataset` reads the images of one.
This is an edge of the package: boxes are pixels of the original image
here, rows ``[class, xmin, ymin, xmax, ymax]`` in corner form (continuous
coordinates, ``(0, 0)`` the top-left corner); the dataset normalises them.

The box rule (:func:`place_box`, :func:`rows_outside`), shared by the
readers, the check before training and the dataset:

* a box without width or height (``xmax <= xmin`` or ``ymax <= ymin``, in
  float32) is *empty*: its object is dropped and its image stays;
* a box that passes the image's edge by at most 1 pixel is clipped to it;
* a box that passes it by more is *outside*: its annotation is bad, unless
  ``clip`` (the setting ``clip_boxes``), which clips it (and drops it as
  empty if nothing is left).

An :class:`ImageSet` also keeps what was done to it on the way
(:class:`Edit`: an object dropped or a box clipped, by image;
:class:`LeftOut`: images no longer in the set, and why), which
:mod:`rpn.data.reports` states in words.

Shape glossary: ``n`` rows an image.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as onp

__all__ = ["ImageSet", "Edit", "LeftOut", "CROWD", "EMPTY", "CLIPPED", "OUTSIDE",
           "rows_outside", "place_box", "subset", "object_count", "DataError"]


class DataError(ValueError):
    """A dataset that cannot be used as it is; the message lists every
    problem found."""


#: Class code of a crowd region (COCO's ``iscrowd``): anchors that overlap
#: it are neither positive nor negative, and it is not an object to recall.
CROWD = -2

#: Kinds of :func:`place_box` (and of :class:`Edit`).
EMPTY, CLIPPED, OUTSIDE = "empty", "clipped", "outside"


class Edit(NamedTuple):
    """What a reader did to one object: ``image`` the index of its image in
    the set, ``kind`` :data:`EMPTY` (the object was dropped: its box has no
    area) or :data:`CLIPPED` (its box was clipped to the image), ``text``
    the file, the object and the box, as a warning names them."""
    image: int
    kind: str
    text: str


class LeftOut(NamedTuple):
    """Images no longer in a set: ``kind`` (``"bad"``: bad annotations left
    out by ``skip_bad``; ``"unreadable"``: images that cannot be read, left
    out by ``skip_bad``; ``"holdout"``: the other part of a single
    annotation file), how many ``images`` and ``objects`` (``None`` where
    unknown), and ``reason`` in words."""
    kind: str
    images: int
    objects: Optional[int]
    reason: str


class ImageSet(NamedTuple):
    """One split of a dataset, one entry an image.

    ``images``: file paths (or in-memory (h, w, 3) uint8 arrays / a lazy
    sequence of them). ``labels``: (n, 5) float32 arrays of pixel rows
    ``[class, xmin, ymin, xmax, ymax]`` in the original image; ``class`` is
    an index into ``classes``, or :data:`CROWD` for a region to ignore.
    ``ids``: the dataset's own image ids (COCO ids, VOC names). ``names``:
    file names relative to the image folder, for reports. ``sizes``:
    ``(height, width)`` as the annotation states it, or ``None`` where it
    states none. ``classes``: the class names. ``edits``: :class:`Edit`
    entries; ``left_out``: :class:`LeftOut` entries.
    """
    images: Sequence
    labels: Sequence
    ids: Sequence
    names: Sequence[str]
    sizes: Sequence[Optional[Tuple[int, int]]]
    classes: Tuple[str, ...]
    edits: Tuple[Edit, ...] = ()
    left_out: Tuple[LeftOut, ...] = ()


def rows_outside(label, height, width):
    """(n,) bool: the rows of ``label`` (n, 5) pixel rows whose box reaches
    more than 1 pixel past an image of ``height`` x ``width`` (within 1
    pixel a box is clipped, as the readers allow)."""
    boxes = onp.asarray(label, dtype="float32").reshape(-1, 5)[:, 1:]      # (n, 4)
    return (boxes.min(axis=1) < -1) | (boxes[:, 2] > width + 1) | (boxes[:, 3] > height + 1)


def _has_area(x0, y0, x1, y1):
    return x0 < x1 and y0 < y1


def place_box(box, size=None, *, clip=False):
    """The rule of the module for one pixel box ``(xmin, ymin, xmax, ymax)``
    (finite numbers) in an image of ``size`` ``(height, width)`` (``None``:
    not known yet). Returns ``(kind, box)``: ``kind`` ``None`` (the box,
    clipped within 1 pixel of the edge), :data:`CLIPPED` (``clip``: the
    box clipped to the image), :data:`EMPTY` (no width or height, or none
    left once clipped; ``box`` is ``None``) or :data:`OUTSIDE` (more than 1
    pixel past the edge without ``clip``; ``box`` is ``None``). Values are
    rounded to float32 first, as the labels store them."""
    x0, y0, x1, y1 = (float(v) for v in onp.asarray(box, dtype="float32"))
    if not _has_area(x0, y0, x1, y1):
        return EMPTY, None
    if size is None:
        return None, (x0, y0, x1, y1)
    height, width = size
    past = min(x0, y0, x1, y1) < -1 or x1 > width + 1 or y1 > height + 1
    if past and not clip:
        return OUTSIDE, None
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if not _has_area(*clipped):
        return EMPTY, None
    return (CLIPPED if past else None), clipped


def subset(found, keep, *, left_out=()):
    """The images ``keep`` (indices, in that order) of the set ``found``,
    their :class:`Edit` entries renumbered, with ``left_out`` added to
    ``found.left_out``."""
    keep = list(keep)
    where = {old: new for new, old in enumerate(keep)}
    fields = [[field[i] for i in keep] for field in found[:5]]
    edits = tuple(edit._replace(image=where[edit.image]) for edit in found.edits
                  if edit.image in where)
    return ImageSet(*fields, found.classes, edits, tuple(found.left_out) + tuple(left_out))


def object_count(labels):
    """Objects (rows of a class >= 0: no crowd region, no padding) in the
    (n, 5) label arrays ``labels``."""
    return sum(int((onp.asarray(label).reshape(-1, 5)[:, 0] >= 0).sum()) for label in labels)
