"""What a data source knows about one split of a detection dataset.

Every reader (VOC folders, COCO files, the synthetic set) returns an
:class:`ImageSet`; :class:`rpn.DetectionDataset` reads the images of one.
This is an edge of the package: boxes are pixels of the original image
here, rows ``[class, xmin, ymin, xmax, ymax]`` in corner form; the dataset
normalises them.

Shape glossary: ``n`` rows an image.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as onp

__all__ = ["ImageSet", "CROWD", "rows_outside", "DataError"]

class DataError(ValueError):
    """A dataset that cannot be used as it is; the message lists every
    problem found."""


#: Class code of a crowd region (COCO's ``iscrowd``): anchors that overlap
#: it are neither positive nor negative, and it is not an object to recall.
CROWD = -2


class ImageSet(NamedTuple):
    """One split of a dataset, one entry an image.

    ``images``: file paths (or in-memory (h, w, 3) uint8 arrays / a lazy
    sequence of them). ``labels``: (n, 5) float32 arrays of pixel rows
    ``[class, xmin, ymin, xmax, ymax]`` in the original image; ``class`` is
    an index into ``classes``, or :data:`CROWD` for a region to ignore.
    ``ids``: the dataset's own image ids (COCO ids, VOC names). ``names``:
    file names relative to the image folder, for reports. ``sizes``:
    ``(height, width)`` as the annotation states it, or ``None`` where it
    states none. ``classes``: the class names.
    """
    images: Sequence
    labels: Sequence
    ids: Sequence
    names: Sequence[str]
    sizes: Sequence[Optional[Tuple[int, int]]]
    classes: Tuple[str, ...]


def rows_outside(label, height, width):
    """(n,) bool: the rows of ``label`` (n, 5) pixel rows whose box reaches
    more than 1 pixel past an image of ``height`` x ``width`` (within 1
    pixel a box is clipped, as the readers allow)."""
    boxes = onp.asarray(label, dtype="float32").reshape(-1, 5)[:, 1:]      # (n, 4)
    return (boxes.min(axis=1) < -1) | (boxes[:, 2] > width + 1) | (boxes[:, 3] > height + 1)
