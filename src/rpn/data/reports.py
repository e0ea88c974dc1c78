"""What the data readers did to a split, in words.

Two outputs, both from the bookkeeping an :class:`rpn.ImageSet` carries
(:class:`rpn.data.image_set.Edit`, :class:`rpn.data.image_set.LeftOut`):

* :func:`warn_edits`: one warning for the objects dropped because their
  box has no area, and one for the boxes clipped to their image
  (``clip_boxes``), each naming the file, the object and the box;
* :func:`describe_split` / :func:`say_counts`: the line ``rpn train``,
  ``rpn evaluate`` and ``rpn propose`` print on stderr for each split they
  use, e.g. ``train: 30 images, 85 objects; left out: 2 images that cannot
  be read (--skip-bad), 2 objects whose box has no area; 3 boxes clipped to
  their image``.

Objects are rows of a class (not crowd regions); counts are of the split
as read, before any sharding between workers.
"""
import sys
import warnings

import numpy as onp

from .image_set import CLIPPED, EMPTY, object_count

__all__ = ["warn_edits", "describe_split", "say_counts", "HOLDOUT_HINT"]

#: How to give validation data instead of holding out part of one file.
HOLDOUT_HINT = ("to train on all of it, give validation data of its own with --val-data "
                "(and --val-images for a COCO file; val_data= in rpn.fit), or a COCO "
                "folder with annotations/instances_train*.json and instances_val*.json")
_LISTED = 20


def _plural(count, word, plural=None):
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _listing(lines):
    shown = "\n  ".join(lines[:_LISTED])
    more = f"\n  ... and {len(lines) - _LISTED} more" if len(lines) > _LISTED else ""
    return f"\n  {shown}{more}"


def warn_edits(found, source, *, stacklevel=2):
    """One warning for the objects of ``found`` dropped for a box without
    area (their images stay), one for its boxes clipped to their image,
    each listing the file, the object and the box (the first 20, then a
    count). ``source``: the data, as the warning names it."""
    empty = [edit.text for edit in found.edits if edit.kind == EMPTY]
    if empty:
        warnings.warn(f"{source}: dropped {_plural(len(empty), 'object')} whose box has no "
                      "width or height (xmax <= xmin or ymax <= ymin); their images stay:"
                      + _listing(empty), stacklevel=stacklevel + 1)
    clipped = [edit for edit in found.edits if edit.kind == CLIPPED]
    if clipped:
        images = len({edit.image for edit in clipped})
        warnings.warn(f"{source}: clipped {_plural(len(clipped), 'box', 'boxes')} of "
                      f"{_plural(images, 'image')} that passed the image's edge by more "
                      "than 1 pixel (clip_boxes=true):" + _listing([e.text for e in clipped]),
                      stacklevel=stacklevel + 1)


def describe_split(found, split, *, training=False):
    """One line: the images and objects of split ``split`` that are used,
    and what was left out and why. ``training``: images without an object
    of the classes are not used (training leaves them out)."""
    labels = list(found.labels)
    images, objects = len(labels), object_count(labels)
    crowd = sum(int((onp.asarray(l).reshape(-1, 5)[:, 0] < -1).sum()) for l in labels)
    left = []
    if training:
        empty_images = sum(1 for l in labels if not (onp.asarray(l).reshape(-1, 5)[:, 0]
                                                     >= 0).any())
        images -= empty_images
        if empty_images:
            left.append(f"{_plural(empty_images, 'image')} without an object of the classes")
    hint = ""
    for entry in found.left_out:
        count = _plural(entry.images, "image")
        if entry.objects is not None:
            count += f" ({_plural(entry.objects, 'object')})"
        left.append(f"{count} {entry.reason}")
        if entry.kind == "holdout" and training:
            hint = f". {HOLDOUT_HINT[0].upper()}{HOLDOUT_HINT[1:]}"
    dropped = sum(1 for edit in found.edits if edit.kind == EMPTY)
    if dropped:
        left.append(f"{_plural(dropped, 'object')} whose box has no area")
    text = f"{split}: {_plural(images, 'image')}, {_plural(objects, 'object')}"
    if crowd:
        text += f" (and {_plural(crowd, 'crowd region')})"
    if left:
        text += "; left out: " + ", ".join(left)
    clipped = sum(1 for edit in found.edits if edit.kind == CLIPPED)
    if clipped:
        text += f"; {_plural(clipped, 'box', 'boxes')} clipped to their image"
    return text + hint


def say_counts(command, found, split, *, training=False, file=None):
    """Print :func:`describe_split` on stderr (or ``file``) as
    ``<command>: <line>``; nothing for ``found`` ``None``."""
    if found is None:
        return
    print(f"{command}: {describe_split(found, split, training=training)}",
          file=file or sys.stderr, flush=True)
