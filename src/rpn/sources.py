"""Opening a dataset by name, checking it, and making its loaders.

What ``--data`` (and ``data=`` in the Python API) may name:

* ``synthetic``: the embedded synthetic set (:mod:`rpn.synthetic`);
* a VOC-layout folder (``Annotations/``, ``JPEGImages/``,
  ``ImageSets/Main/``), splits from its lists (:mod:`rpn.voc`);
* a COCO instances JSON file, images beside it or in ``images=``;
* a folder holding COCO data (:func:`rpn.coco.find_coco_split`: the COCO
  layout, Roboflow's, or one ``annotations.json``).

A COCO file (or folder) with a single annotation file has no splits of
its own: ``all`` is every image, and ``train``/``val`` are a fixed 80/20
division by a hash of each file name (so adding images does not move the
others), which the run reports.

Before training, every image of the splits a run uses is decoded once
(:func:`rpn.image_check.check_images`, in parallel, with a progress bar): bad
files are listed together in one error, or left out with one warning
(``skip_bad``), and a file that turns bad later is skipped and counted.
"""
import hashlib
import os
import warnings

import numpy as onp

from .coco import find_coco_split, read_coco
from .dataset import DetectionDataset, DetectionLoader
from .image_check import check_images
from .records import ImageSet, rows_outside
from .synthetic import SYNTHETIC_CLASSES, SyntheticImages
from .voc import find_classes as _voc_classes
from .voc import read_voc_split

__all__ = ["open_split", "data_classes", "check_split", "make_loader", "DataError",
           "DataSpecError", "HOLDOUT"]

#: The share of a single-file COCO dataset that ``val`` holds out.
HOLDOUT = 0.2


class DataError(ValueError):
    """A dataset that cannot be used as it is; the message lists every
    problem found."""


class DataSpecError(DataError):
    """``data`` names nothing the package can read."""


def _kind(data, images=None):
    if data == "synthetic":
        return "synthetic"
    if os.path.isfile(data) and data.lower().endswith(".json"):
        return "coco-file"
    if os.path.isdir(data):
        if os.path.isdir(os.path.join(data, "Annotations")):
            return "voc"
        return "coco-folder"
    raise DataSpecError(f"data {data!r}: no such file or folder; expected 'synthetic', a "
                    "VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/), a "
                    "COCO annotations .json file or a folder holding COCO data")


def _in_holdout(name):
    digest = hashlib.sha1(os.fspath(name).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < HOLDOUT


def _holdout(found, split, source):
    """``train``/``val``/``all`` of a dataset that has no splits."""
    if split == "all":
        return found
    if split not in ("train", "val"):
        raise DataError(f"{source} has no split {split!r}: it is one annotation file, "
                        "so its splits are 'train' and 'val' (a fixed 80/20 division by "
                        "file name) and 'all'")
    held = [_in_holdout(name) for name in found.names]
    if len(held) >= 2 and not any(held):
        # a tiny set: hold out its last file name, train on the others
        held[max(range(len(held)), key=lambda i: found.names[i])] = True
    chosen = [i for i, h in enumerate(held) if h == (split == "val")]
    return ImageSet(*[[field[i] for i in chosen] for field in found[:5]], found.classes)


def _synthetic(split, size, num_train, num_val, seed):
    if split not in ("train", "val"):
        raise DataError(f"the synthetic set has the splits 'train' and 'val', not {split!r}")
    offset, num = (0, num_train) if split == "train" else (num_train, num_val)
    images = SyntheticImages(num, size, size, seed=seed, offset=offset)
    return ImageSet(images, images.labels, list(range(offset, offset + num)),
                    [f"synthetic-{offset + i:05d}.png" for i in range(num)],
                    [(size, size)] * num, tuple(SYNTHETIC_CLASSES))


def open_split(data, split, *, classes=None, images=None, keep_difficult=True,
               skip_bad=False, synthetic=None):
    """One split of ``data`` (see the module) as an :class:`rpn.ImageSet`.

    ``classes``: the class names to keep (``None``: every class of the
    data). ``images``: the image folder of a COCO file. ``skip_bad``: leave
    out images whose annotations are bad, with one warning, instead of one
    error listing them all. ``synthetic``: ``dict(size=, num_train=,
    num_val=, seed=)`` for the synthetic set.
    """
    kind = _kind(data, images)
    if kind == "synthetic":
        options = dict(size=128, num_train=1024, num_val=256, seed=0)
        options.update(synthetic or {})
        return _synthetic(split, **options)
    if kind == "voc":
        names = tuple(classes) if classes else tuple(_voc_classes(data, skip_bad=skip_bad))
        return read_voc_split(data, split, names, keep_difficult=keep_difficult,
                              skip_bad=skip_bad)
    if kind == "coco-file":
        found = read_coco(data, images, classes=classes, skip_bad=skip_bad)
        return _holdout(found, split, data)
    try:
        annotations, image_dir = find_coco_split(data, split)
    except FileNotFoundError as missing:
        try:
            annotations, image_dir = find_coco_split(data, "all")
        except FileNotFoundError:
            raise missing from None     # name the split that was asked for
        found = read_coco(annotations, images or image_dir, classes=classes,
                          skip_bad=skip_bad)
        return _holdout(found, split, data)
    return read_coco(annotations, images or image_dir, classes=classes, skip_bad=skip_bad)


def data_classes(data, *, images=None, classes=None, skip_bad=False):
    """The class names a run on ``data`` uses: ``classes`` when given (their
    existence is checked when the splits are read), else every class."""
    if classes:
        return tuple(classes)
    kind = _kind(data, images)
    if kind == "synthetic":
        return tuple(SYNTHETIC_CLASSES)
    if kind == "voc":
        return tuple(_voc_classes(data, skip_bad=skip_bad))
    return open_split(data, "all" if kind == "coco-file" else "train",
                      images=images, skip_bad=skip_bad).classes


def check_split(found, *, skip_bad=False, num_workers=None, progress=True, what="images"):
    """Decode every image of ``found`` once (in parallel, with a progress
    bar on stderr) and compare it with the size its annotation states.
    Returns ``found`` with the images' real sizes; bad images raise one
    :class:`DataError` listing them all, or (``skip_bad``) are left out with
    one warning that lists them. In-memory images are not checked."""
    if not found.images or not isinstance(found.images[0], (str, os.PathLike)):
        return found
    result = check_images(list(found.images), list(found.sizes), num_workers=num_workers,
                          progress=progress, desc=f"checking {what}")
    sizes, bad = list(result.sizes), dict(result.bad)
    for i, (path, stated, size) in enumerate(zip(found.images, found.sizes, sizes)):
        reason = None if stated is not None or size is None \
            else _outside(found.labels[i], size)
        if reason:              # the annotation stated no size: its boxes meet the real one
            sizes[i], bad[path] = None, reason
    if bad:
        listing = "\n  ".join(f"{path}: {reason}" for path, reason in bad.items())
        if not skip_bad:
            raise DataError(f"{len(bad)} of {len(found.images)} {what} cannot be "
                            f"used:\n  {listing}\nFix or remove them, or leave them out "
                            "with --skip-bad (skip_bad=True)")
        warnings.warn(f"leaving out {len(bad)} of {len(found.images)} {what} that "
                      f"cannot be used:\n  {listing}")
    keep = [i for i, size in enumerate(sizes) if size is not None]
    fields = [[field[i] for i in keep] for field in found[:4]]
    return ImageSet(*fields, [tuple(sizes[i]) for i in keep], found.classes)


def _outside(label, size):
    """Why the pixel rows ``label`` (n, 5) do not fit an image of ``size``
    ``(height, width)`` (:func:`rpn.records.rows_outside`), or ``None``."""
    height, width = size
    out = rows_outside(label, height, width)
    if not out.any():
        return None
    return (f"a box {onp.asarray(label)[out][0, 1:].tolist()} lies outside the image's "
            f"{width}x{height} pixels (its annotation states no image size)")


def make_loader(found, resize, batch_size, *, train, num_workers=0, seed=0, shard=None,
                augment=True, max_objects=None, on_error="skip", size_divisor=32):
    """A :class:`rpn.DetectionLoader` over ``found``, images resized by
    ``resize``: for training (``train``: images without objects left out,
    shuffled, augmented, last incomplete batch dropped) or for evaluation
    (in order, unaugmented). Yields ``(X, Y, info)``."""
    images, labels, sizes = found.images, found.labels, found.sizes
    if train:
        keep = [i for i, label in enumerate(labels) if (label[:, 0] >= 0).any()]
        if len(keep) < len(labels):
            warnings.warn(f"training on {len(keep)} of {len(labels)} images: "
                          f"{len(labels) - len(keep)} have no object of the classes")
        if not keep:
            raise DataError("no training image has an object of the classes")
        images = images if len(keep) == len(labels) else [images[i] for i in keep]
        labels = [labels[i] for i in keep]
        sizes = [sizes[i] for i in keep]
    dataset = DetectionDataset(images, labels, resize=resize, augment=train and augment,
                               seed=seed, max_objects=max_objects, sizes=sizes,
                               with_info=True, on_error=on_error)
    return DetectionLoader(dataset, batch_size, shuffle=train,
                           last_batch="discard" if train else "keep",
                           num_workers=num_workers, seed=seed, shard=shard,
                           size_divisor=size_divisor)
