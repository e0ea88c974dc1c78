"""Opening a dataset by name, checking it, and making its loaders.

What ``--data`` (and ``data=`` in the Python API) may name:

* ``synthetic``: the embedded synthetic set (:mod:`rpn.data.synthetic`);
* a VOC-layout folder (``Annotations/``, ``JPEGImages/``,
  ``ImageSets/Main/``), splits from its lists (:mod:`rpn.data.voc`);
* a COCO instances JSON file, images beside it or in ``images=``;
* a folder holding COCO data (:func:`rpn.data.coco.find_coco_split`: the COCO
  layout, Roboflow's, or one ``annotations.json``);
* a YOLO dataset (:mod:`rpn.data.yolo`): a ``.yaml`` file, a folder holding
  ``data.yaml``, or ``classes.txt`` beside ``images/``.

A COCO file (or folder) with a single annotation file, and the
``classes.txt`` layout, have no splits of their own: ``all`` is every
image, and ``train``/``val`` are a fixed 80/20 division by a hash of each
file name (so adding images does not move the others), which the run
reports. A command given no split (:func:`resolve_split`) uses ``all`` of
such a file and ``val`` of data with splits.
Validation data of its own (:func:`open_validation`, :func:`train_split`)
makes a single training file wholly ``train``.

Boxes follow the rule of :mod:`rpn.data.image_set`, one warning a split for
each object dropped or box clipped (:func:`rpn.data.reports.warn_edits`);
:func:`say_counts` states what a split holds and what was left out.

Before training, every image of the splits a run uses is decoded once
(:func:`rpn.data.image_check.check_images`, in parallel, with a progress bar): bad
files are listed together in one error, or left out with one warning
(``skip_bad``), and a file that turns bad later is skipped and counted.
"""
import hashlib
import os
import warnings

import numpy as onp

from .cache import CACHE_BYTES
from .coco import coco_classes, find_coco_split, read_coco
from .image_check import check_images
from .image_set import (CLIPPED, EMPTY, OUTSIDE, DataError, Edit, ImageSet, LeftOut,
                        object_count, place_box, subset)
from .loader import make_loader as _make_loader
from .reports import say_counts, warn_edits
from .synthetic import SYNTHETIC_CLASSES, SyntheticImages
from .voc import find_classes as _voc_classes
from .voc import read_voc_split
from .yolo import find_yolo, open_yolo, read_yolo_split

__all__ = ["open_split", "resolve_split", "train_split", "open_validation", "data_classes",
           "check_split", "make_loader", "split_images", "has_coco_ids", "say_counts",
           "DataError", "DataSpecError", "HOLDOUT"]

#: The share of a single-file COCO dataset that ``val`` holds out.
HOLDOUT = 0.2


class DataSpecError(DataError):
    """``data`` names nothing the package can read."""


def _kind(data, images=None):
    if data == "synthetic":
        return "synthetic"
    if os.path.isfile(data) and data.lower().endswith(".json"):
        return "coco-file"
    if os.path.isdir(os.path.join(data, "Annotations")):
        return "voc"
    if find_yolo(data):
        return "yolo"
    if os.path.isdir(data):
        return "coco-folder"
    raise DataSpecError(f"data {data!r}: no such file or folder; expected 'synthetic', a "
                        "VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/), a "
                        "COCO annotations .json file, a folder holding COCO data, or a YOLO "
                        "data.yaml (or a folder holding one, or classes.txt beside images/)")


def has_coco_ids(data, images=None):
    """Whether ``data``'s image ids are COCO image ids (a COCO file or folder)."""
    return _kind(data, images) in ("coco-file", "coco-folder")


def _in_holdout(name):
    digest = hashlib.sha1(os.fspath(name).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < HOLDOUT


def _holdout(found, split, source):
    """``train``/``val``/``all`` of a dataset that has no splits; each part
    records what the other holds (:class:`rpn.data.image_set.LeftOut`)."""
    if split == "all":
        return found
    if split not in ("train", "val"):
        raise DataError(f"{source} has no split {split!r}: it is one annotation file, "
                        "so its splits are 'all' (every image, what a command uses when "
                        "given no --split), and 'train' and 'val' (a fixed 80/20 division "
                        "by file name)")
    held = [_in_holdout(name) for name in found.names]
    if len(held) >= 2 and not any(held):
        # a tiny set: hold out its last file name, train on the others
        held[max(range(len(held)), key=lambda i: found.names[i])] = True
    chosen = [i for i, h in enumerate(held) if h == (split == "val")]
    other = [i for i, h in enumerate(held) if h != (split == "val")]
    objects = object_count(found.labels[i] for i in other)
    reason = (f"held out as 'val' (a fixed {HOLDOUT:.0%} of {source}, by file name)"
              if split == "train" else
              f"of {source} used as 'train' (the other {1 - HOLDOUT:.0%}, by file name)")
    return subset(found, chosen, left_out=(LeftOut("holdout", len(other), objects, reason),))


def _single_file(data, images=None):
    """Whether ``data`` is one COCO annotation file, or a folder holding
    one and no split of its own."""
    kind = _kind(data, images)
    if kind == "yolo":
        return open_yolo(data).splits is None
    if kind != "coco-folder":
        return kind == "coco-file"
    for split in ("val", "train"):
        try:
            find_coco_split(data, split)
            return False
        except FileNotFoundError:
            pass
        except ValueError:          # two matches: it has splits (and says so when read)
            return False
    try:
        find_coco_split(data, "all")
        return True
    except (FileNotFoundError, ValueError):
        return False


def resolve_split(data, split=None, *, images=None):
    """The split a command uses: ``split`` when given; otherwise ``"all"``
    of a single annotation file (or a folder with only one), ``"val"`` of
    data with splits (a VOC folder, a COCO folder, the synthetic set)."""
    if split is not None:
        return split
    return "all" if _single_file(data, images) else "val"


def train_split(data, *, images=None, val_data=None):
    """The split training uses: ``"train"``, or ``"all"`` of a single
    annotation file when validation data of its own (``val_data``) is given."""
    return "all" if val_data is not None and _single_file(data, images) else "train"


def open_validation(val_data, *, classes, val_images=None, split=None, **options):
    """Validation data given apart from the training data (any source of
    the module: a VOC folder, a COCO file with ``val_images``, a COCO
    folder, ``synthetic``) as ``(ImageSet, split)``: the split is
    :func:`resolve_split`'s (all of a single file, ``val`` otherwise).
    ``classes``: the training classes, which the validation data must
    have (a :class:`DataError` otherwise). ``options``: those of
    :func:`open_split` (``skip_bad``, ``clip_boxes``, ``synthetic``, ...)."""
    split = resolve_split(val_data, split, images=val_images)
    found = open_split(val_data, split, classes=classes, images=val_images, **options)
    if tuple(found.classes) != tuple(classes):
        raise DataError(f"validation data {val_data!r} has the classes {list(found.classes)}"
                        f"; the training data has {list(classes)}: give validation data "
                        "of the same classes")
    return found, split


def _synthetic(split, size, num_train, num_val, seed, classes=None):
    """A split of the synthetic set; with ``classes`` (a subset of
    :data:`rpn.SYNTHETIC_CLASSES`) only their shapes are objects, numbered
    in that order (the others stay in the pictures, unlabelled)."""
    if split not in ("train", "val"):
        raise DataError(f"the synthetic set has the splits 'train' and 'val', not {split!r}")
    names = tuple(classes) if classes else tuple(SYNTHETIC_CLASSES)
    unknown = [c for c in names if c not in SYNTHETIC_CLASSES]
    if unknown:
        raise DataError(f"the synthetic set has no class {unknown}; its classes are "
                        f"{list(SYNTHETIC_CLASSES)}")
    offset, num = (0, num_train) if split == "train" else (num_train, num_val)
    images = SyntheticImages(num, size, size, seed=seed, offset=offset)
    labels = images.labels
    if names != tuple(SYNTHETIC_CLASSES):
        # (n, 5) rows of every shape -> the rows of the chosen classes, renumbered
        number = {SYNTHETIC_CLASSES.index(c): k for k, c in enumerate(names)}
        labels = [onp.array([[number[int(r[0])], *r[1:]] for r in label
                             if int(r[0]) in number], dtype="float32").reshape(-1, 5)
                  for label in labels]
    return ImageSet(images, labels, list(range(offset, offset + num)),
                    [f"synthetic-{offset + i:05d}.png" for i in range(num)],
                    [(size, size)] * num, names)


def _coco_split(data, split):
    """``((annotations, image_dir), whole)``: ``split`` of a COCO folder, or its one file."""
    try:
        return find_coco_split(data, split), False
    except FileNotFoundError as missing:
        try:
            return find_coco_split(data, "all"), True
        except FileNotFoundError:
            raise missing from None     # name the split that was asked for


def open_split(data, split=None, *, classes=None, images=None, keep_difficult=True,
               skip_bad=False, clip_boxes=False, synthetic=None):
    """One split of ``data`` (see the module) as an :class:`rpn.ImageSet`.

    ``split``: a split name, or ``None`` for :func:`resolve_split`'s.
    ``classes``: the class names to keep (``None``: every class of the
    data). ``images``: the image folder of a COCO file. ``skip_bad``: leave
    out images whose annotations are bad, with one warning, instead of one
    error listing them all. ``clip_boxes``: clip boxes more than 1 pixel
    past their image's edge instead of refusing them. Objects whose box has
    no area are dropped, and their images kept, with one warning.
    ``synthetic``: ``dict(size=, num_train=, num_val=, seed=)`` for the
    synthetic set.
    """
    kind = _kind(data, images)
    split = resolve_split(data, split, images=images)
    if kind == "synthetic":
        options = dict(size=128, num_train=1024, num_val=256, seed=0)
        options.update(synthetic or {})
        return _synthetic(split, **options, classes=classes)
    options = dict(skip_bad=skip_bad, clip_boxes=clip_boxes, warn=False)
    if kind == "voc":
        names = tuple(classes) if classes else tuple(_voc_classes(data, skip_bad=skip_bad))
        found = read_voc_split(data, split, names, keep_difficult=keep_difficult, **options)
        source = data
    elif kind == "coco-file":
        found = _holdout(read_coco(data, images, classes=classes, **options), split, data)
        source = data if split == "all" else f"{data} (split {split!r})"
    elif kind == "yolo":
        layout = open_yolo(data)
        whole, source = layout.splits is None, layout.source
        found = read_yolo_split(layout, "all" if whole else split, classes=classes, **options)
        if whole:
            found = _holdout(found, "val" if split == "valid" else split, source)
    else:
        (annotations, image_dir), whole = _coco_split(data, split)
        found = read_coco(annotations, images or image_dir, classes=classes, **options)
        source = annotations
        if whole:
            found = _holdout(found, split, annotations)
            source = annotations if split == "all" else f"{annotations} (split {split!r})"
    warn_edits(found, source)
    return found


def data_classes(data, *, images=None, classes=None, skip_bad=False):
    """The class names a run on ``data`` uses: ``classes`` when given (their
    existence is checked when the splits are read), else every class (the
    categories of a COCO file; its entries are checked when read)."""
    if classes:
        return tuple(classes)
    kind = _kind(data, images)
    if kind == "synthetic":
        return tuple(SYNTHETIC_CLASSES)
    if kind == "voc":
        return tuple(_voc_classes(data, skip_bad=skip_bad))
    if kind == "coco-file":
        return tuple(coco_classes(data))
    if kind == "yolo":
        return open_yolo(data).names
    return tuple(coco_classes(_coco_split(data, "train")[0][0]))


def check_split(found, *, skip_bad=False, clip_boxes=False, num_workers=None,
                progress=True, what="images"):
    """Decode every image of ``found`` once (in parallel, with a progress
    bar on stderr) and compare it with the size its annotation states.
    Returns ``found`` with the images' real sizes; bad images (a dangling
    link or a loop of links among them) raise one :class:`DataError`
    listing them all, or (``skip_bad``) are left out with one warning that
    lists them. Where the annotation stated no size, the boxes now meet the
    rule of :mod:`rpn.data.image_set` (``clip_boxes`` as in :func:`open_split`).
    In-memory images are not checked."""
    if not found.images or not isinstance(found.images[0], (str, os.PathLike)):
        return found
    result = check_images(list(found.images), list(found.sizes), num_workers=num_workers,
                          progress=progress, desc=f"checking {what}")
    sizes, bad = list(result.sizes), dict(result.bad)
    labels, edits = list(found.labels), []
    for i, (path, stated, size) in enumerate(zip(found.images, found.sizes, sizes)):
        if stated is None and size is not None:     # the boxes meet the real size now
            labels[i], reason = _fit(labels[i], size, clip_boxes, i, found.names[i], edits)
            if reason:
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
    checked = found._replace(labels=labels, sizes=[s and tuple(s) for s in sizes],
                             edits=tuple(found.edits) + tuple(edits))
    warn_edits(checked._replace(edits=tuple(e for e in edits if sizes[e.image])), what)
    gone = [i for i, size in enumerate(sizes) if size is None]
    return subset(checked, keep, left_out=(LeftOut(
        "unreadable", len(gone), object_count(labels[i] for i in gone),
        "that cannot be used (--skip-bad)"),) if gone else ())


def _fit(label, size, clip, index, name, edits):
    """``(label, reason)``: the pixel rows ``label`` (n, 5) by the box rule
    of :mod:`rpn.data.image_set` in an image of ``size`` ``(height, width)``
    (objects without area dropped, boxes clipped, noted in ``edits``), or
    why they cannot be (a box more than 1 pixel past the edge)."""
    height, width = size
    rows = []
    for row in onp.asarray(label, dtype="float32").reshape(-1, 5).tolist():
        kind, box = place_box(row[1:], size, clip=clip)
        where = f"{name}: box [{', '.join(f'{v:g}' for v in row[1:])}]"
        if kind == OUTSIDE:
            return label, (f"a box {row[1:]} lies outside the image's {width}x{height} "
                           "pixels (its annotation states no image size; --set "
                           "clip_boxes=true clips such boxes)")
        if kind == EMPTY:
            edits.append(Edit(index, EMPTY, f"{where} (nothing left once clipped to its "
                                            f"{width}x{height} image)"))
            continue
        if kind == CLIPPED:
            edits.append(Edit(index, CLIPPED, f"{where} -> [{', '.join(f'{v:g}' for v in box)}]"))
        rows.append([row[0], *box])
    return onp.array(rows, dtype="float32").reshape(-1, 5), None


def make_loader(found, resize, batch_size, *, train, num_workers=0, seed=0, shard=None,
                augment=True, crop_prob=0.5, min_crop_scale=0.3, max_objects=None,
                on_error="skip", size_divisor=32, window=None, windows_per_image=1,
                window_focus=0.9, window_visible=0.5, cache_bytes=CACHE_BYTES):
    """The loader of ``found`` (an :class:`rpn.ImageSet`), images resized by
    ``resize``: :func:`rpn.data.loader.make_loader` for training (images without
    objects left out, shuffled, augmented, last incomplete batch dropped;
    ``window``: windows cut at scale instead of whole images) or for
    evaluation (in order, unaugmented); decoded images kept within
    ``cache_bytes`` (:mod:`rpn.data.cache`). Yields ``(X, Y, info)``; an
    image that turns unreadable is skipped and counted (``on_error``)."""
    return _make_loader(found.images, found.labels, resize, batch_size, train=train,
                        sizes=found.sizes, augment=augment, crop_prob=crop_prob,
                        min_crop_scale=min_crop_scale, seed=seed,
                        num_workers=num_workers, shard=shard, max_objects=max_objects,
                        on_error=on_error, size_divisor=size_divisor, window=window,
                        windows_per_image=windows_per_image, window_focus=window_focus,
                        window_visible=window_visible, cache_bytes=cache_bytes)


def split_images(data, split=None, *, images=None, skip_bad=False):
    """One split of ``data`` (:func:`resolve_split`: all of a single
    annotation file, ``val`` of data with splits) as an :class:`rpn.ImageSet`
    of image files, for ``rpn predict --data``; every object class counts."""
    if _kind(data, images) == "synthetic":
        raise DataSpecError("predict --data takes data of image files; the synthetic set "
                            "is drawn in memory (use rpn evaluate or rpn propose on it)")
    return open_split(data, resolve_split(data, split, images=images), images=images,
                      skip_bad=skip_bad)
