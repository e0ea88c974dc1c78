"""COCO detection annotations: :func:`read_coco` (one instances JSON file
to an :class:`rpn.ImageSet`), :func:`coco_classes`, and from
:mod:`rpn.data.coco_layout` :func:`find_coco_split` (a split's file and image
folder in the usual layouts) and :func:`write_coco` (the synthetic set).
The rules, since annotation files come from elsewhere:

* The file is read at a bounded size (``max_bytes``, checked before
  reading), must be UTF-8 JSON, and must be an object whose ``images``,
  ``annotations`` and ``categories`` are lists; otherwise a ``ValueError``
  names the file (and the position, for bad text), with or without
  ``skip_bad``.
* Boxes are pixels at this edge: ``bbox [x, y, w, h]`` becomes the row
  ``[class, x, y, x + w, y + h]`` (no -1 shift); ``iscrowd: 1`` gives the
  class :data:`rpn.CROWD`. A box that is not 4 finite numbers is bad. The
  box rule of :mod:`rpn.data.image_set` does the rest: a box without width or
  height (``w <= 0`` or ``h <= 0``) is dropped with its object, and its
  image stays (one warning names each); within 1 pixel of the edge a box
  is clipped to the image; further out it is bad, or clipped with
  ``clip_boxes`` (one warning counts them). Boxes of categories not kept
  are not checked.
* ``file_name`` may hold sub-folders and name symbolic links (followed:
  the image folder is the user's), but a name that climbs out of the
  image folder by its letters (absolute, a drive letter, a ``..``
  component, a backslash or a NUL) is bad.
* A ``file_name`` that names no file while a file of the same stem with
  an image extension is there (a converter that wrote ``x.xml`` beside
  ``x.jpeg``) is bad, and such entries are said in one line with their
  count and an example; the other file is never read in their place.
* Every bad entry is listed in one ``ValueError`` naming the file (the
  first 50, then a count); with ``skip_bad`` the images concerned (and
  annotations that name no image) are left out with one warning.
"""
import json
import os
import re
import warnings

import numpy as onp

from .coco_layout import find_coco_split, write_coco
from .image_set import (CLIPPED, CROWD, EMPTY, OUTSIDE, DataError, Edit, ImageSet, LeftOut,
                        place_box, subset)
from .images import IMAGE_EXTENSIONS
from .reports import warn_edits

__all__ = ["read_coco", "coco_classes", "choose_classes", "write_coco", "find_coco_split"]

_MAX_LISTED = 50
_DRIVE = re.compile(r"^[A-Za-z]:")


def _is_int(value, kinds=int):
    return isinstance(value, kinds) and not isinstance(value, bool)


def _is_number(value):
    return _is_int(value, (int, float))


def _is_finite(value):
    """A number that is neither NaN nor infinite, nor an integer too large
    for a float (JSON allows any number of digits): below 1e30 in size."""
    return _is_number(value) and -1e30 < value < 1e30


def _load_json(path, max_bytes):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: {size} bytes, larger than max_bytes={max_bytes}; refused")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:  # grew since
        raise ValueError(f"{path}: larger than max_bytes={max_bytes}; refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
                         ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno}, column "
                         f"{error.colno}, character {error.pos})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None


def _top_level(data, path):
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a COCO file: the top level is a "
                         f"{type(data).__name__}, not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            state = "missing" if key not in data else f"a {type(data[key]).__name__}"
            raise ValueError(f"{path}: not a COCO instances file: '{key}' is {state}, "
                             "not a list")
    return data["images"], data["annotations"], data["categories"]


def _categories(categories, classes, path):
    """The class names, and for each category id its class index (``None``
    for a category not kept)."""
    names = {}
    for k, category in enumerate(categories):
        if (not isinstance(category, dict) or not _is_int(category.get("id"))
                or not isinstance(category.get("name"), str)):
            raise ValueError(f"{path}: categories[{k}] needs an int 'id' and a str "
                             f"'name', got {str(category)[:100]}")
        if category["id"] in names:
            raise ValueError(f"{path}: two categories have the id {category['id']}")
        names[category["id"]] = category["name"]
    chosen, index = choose_classes(list(dict.fromkeys(names[i] for i in sorted(names))),
                                   classes, path)
    return chosen, {cid: index[name] for cid, name in names.items()}


def choose_classes(names, classes, source, what="categories"):
    """``(chosen, index)``: the classes kept, ``classes`` (names, class
    index = position) or, when ``None``, every name of ``names`` in order;
    and for each name of ``names`` its class index (``None`` when not
    kept). Unknown, repeated or no names raise a ``DataError`` naming
    ``source`` and its ``what``."""
    if classes is None:
        chosen = tuple(names)
    else:
        if isinstance(classes, str):
            raise TypeError(f"classes must be a sequence of names, not the str {classes!r}")
        chosen = tuple(classes)
        unknown = [name for name in chosen if name not in names]
        if unknown or not chosen or len(set(chosen)) < len(chosen):
            raise DataError(f"{source}: classes {list(chosen)} must be distinct names of "
                            f"its {what} (unknown: {unknown}); its {what} are {list(names)}")
    index = {name: k for k, name in enumerate(chosen)}
    return chosen, {name: index.get(name) for name in names}


def _name_problem(name):
    """Why ``file_name`` is refused, or ``None``: only its letters count
    (links inside the image folder are the user's, and followed)."""
    if not isinstance(name, str) or not name:
        return "no file_name (a non-empty string)"
    if ("\x00" in name or "\\" in name or os.path.isabs(name) or name.startswith("/")
            or _DRIVE.match(name) or ".." in name.split("/")):
        return (f"refusing file_name {name!r}: names must be relative paths inside "
                "the image folder (no '..', absolute path, drive letter, backslash or NUL)")
    return None


def _size(entry):
    """``(height, width)`` stated by an image entry, ``None``, or a problem."""
    height, width = entry.get("height"), entry.get("width")
    if not height or not width:
        return None
    if not (_is_finite(height) and _is_finite(width) and height > 0 and width > 0):
        return f"bad height/width {height!r}/{width!r}"
    return int(round(height)), int(round(width))


def _box(bbox, size, clip):
    """``(kind, (x0, y0, x1, y1))`` of a COCO bbox by the box rule of
    :mod:`rpn.data.image_set`, or ``("bad", problem)``."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_finite, bbox)):
        return "bad", f"bbox {str(bbox)[:80]} is not 4 finite numbers"
    x, y, w, h = bbox
    kind, box = place_box((x, y, x + w, y + h), size, clip=clip)
    if kind == OUTSIDE:
        height, width = size
        return "bad", (f"bbox {bbox} lies outside its {width}x{height} image (more than 1 "
                       "pixel past its edge; --set clip_boxes=true clips such boxes)")
    return kind, box


def _read_images(images, problems):
    """Ids, names, sizes of the image entries; ``by_id``: image id -> index."""
    ids, names, sizes, by_id = [], [], [], {}
    for k, entry in enumerate(images):
        if not isinstance(entry, dict):
            entry = {}
            problems[k].append("not an object")
        image_id, name = entry.get("id"), entry.get("file_name")
        size = _size(entry)
        if isinstance(size, str):
            problems[k].append(size)
            size = None
        if not _is_int(image_id):
            problems[k].append(f"no int id (got {image_id!r})")
        elif image_id in by_id:
            first = by_id[image_id]
            problems[k].append(f"duplicate image id {image_id} (also images[{first}])")
            problems[first].append(f"duplicate image id {image_id} (also images[{k}])")
        else:
            by_id[image_id] = k
        reason = _name_problem(name)
        if reason:
            problems[k].append(reason)
        ids.append(image_id)
        names.append(name)
        sizes.append(size)
    return ids, names, sizes, by_id


def _read_annotations(annotations, by_id, images, keep, clip, problems, orphans, edits):
    """Pixel rows per image index, in one pass over the annotations;
    objects dropped and boxes clipped go to ``edits``."""
    ids, names, sizes = images
    rows = [[] for _ in sizes]
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            orphans.append(f"annotations[{k}]: not an object")
            continue
        label = f"annotation {ann['id']}" if _is_int(ann.get("id")) else f"annotations[{k}]"
        image_id = ann.get("image_id")
        if not _is_int(image_id):
            orphans.append(f"{label}: no int image_id (got {image_id!r})")
            continue
        index = by_id.get(image_id)
        if index is None:
            orphans.append(f"{label}: image_id {image_id} names no image")
            continue
        if not _is_int(ann.get("id")):
            problems[index].append(f"{label}: no int id (got {ann.get('id')!r})")
        category = ann.get("category_id")
        if not _is_int(category) or category not in keep:
            problems[index].append(f"{label}: unknown category_id {category!r}")
            continue
        if keep[category] is None:
            continue
        if "bbox" not in ann:
            problems[index].append(f"{label}: no bbox")
            continue
        kind, box = _box(ann["bbox"], sizes[index], clip)
        if kind == "bad":
            problems[index].append(f"{label}: {box}")
            continue
        crowd = ann.get("iscrowd") == 1
        where = (f"{str(names[index])[:100]!r} (image {ids[index]}), {label}"
                 + (" (a crowd region)" if crowd else ""))
        if kind == EMPTY:
            x, y, w, h = ann["bbox"]
            edits.append(Edit(index, EMPTY, f"{where}: bbox {ann['bbox']}" + (
                "" if w <= 0 or h <= 0 else " (nothing left once clipped to its image)")))
            continue
        if kind == CLIPPED:
            edits.append(Edit(index, CLIPPED, f"{where}: bbox {ann['bbox']} -> "
                              f"[{', '.join(f'{v:g}' for v in box)}] (corners)"))
        rows[index].append(((CROWD if crowd else keep[category]),) + tuple(box))
    return rows


def _misnamed(image_dir, names, problems):
    """``(indices, line)``: the entries whose ``file_name`` names no file
    while a file of its stem with an image extension is there, and the one
    line that says so (``None`` when there is none)."""
    listings, found = {}, []
    for k, name in enumerate(names):
        if problems[k] or os.path.lexists(os.path.join(image_dir, name)):
            continue
        folder, base = os.path.split(os.path.join(image_dir, name))
        if folder not in listings:
            listings[folder] = {}
            for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                stem, ext = os.path.splitext(entry)
                if ext.lower() in IMAGE_EXTENSIONS:
                    listings[folder].setdefault(stem, entry)
        other = listings[folder].get(os.path.splitext(base)[0])
        if other is not None:
            found.append((k, name, other))
    if not found:
        return [], None
    k, name, other = found[0]
    return [k for k, _, _ in found], (
        f"{len(found)} of {len(names)} images name a file that does not exist while a file "
        f"of the same name with an image extension does, such as images[{k}] {name!r} "
        f"beside {other!r}; the file names are not guessed: correct their file_name")


def _report(path, lines, skip_bad, left_out, entries=None):
    """One error listing every problem, or (``skip_bad``) one warning;
    ``entries``: how many bad entries the lines say (default one a line)."""
    if not lines:
        return
    entries = len(lines) if entries is None else entries
    listing = "\n  ".join(lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        listing += f"\n  ... and {len(lines) - _MAX_LISTED} more"
    if not skip_bad:
        raise ValueError(f"{path}: {entries} bad entr{'y' if entries == 1 else 'ies'}"
                         f":\n  {listing}\nFix them, or leave the images concerned out "
                         "(skip_bad=True, --skip-bad)")
    warnings.warn(f"{path}: leaving out {left_out} image(s) and the annotations that "
                  f"name no image, for {entries} bad entries:\n  {listing}")


def read_coco(annotation_file, image_dir=None, *, classes=None, skip_bad=False,
              clip_boxes=False, max_bytes=1 << 30, warn=True):
    """One COCO instances JSON file as an :class:`rpn.ImageSet` (see the
    module for the rules), in the order of its ``images`` list.

    ``image_dir``: the folder ``file_name`` is relative to (default: the
    file's folder). ``classes``: the category names to keep, class index =
    position (default: every category, by id). ``clip_boxes``: clip boxes
    more than 1 pixel past their image's edge instead of refusing them.
    ``ids`` are COCO image ids, ``names`` the file names, ``sizes`` the
    stated ``(height, width)`` or ``None``. Images without annotations get
    an empty (0, 5) label. ``warn``: warn about the objects dropped and
    boxes clipped (:func:`rpn.data.reports.warn_edits`; they are in ``edits``).
    """
    path = os.fspath(annotation_file)
    images, annotations, categories = _top_level(_load_json(path, max_bytes), path)
    chosen, keep = _categories(categories, classes, path)
    if image_dir is None:
        image_dir = os.path.dirname(os.path.abspath(path))
    image_dir = os.fspath(image_dir)
    problems, orphans, edits = [[] for _ in images], [], []
    ids, names, sizes, by_id = _read_images(images, problems)
    rows = _read_annotations(annotations, by_id, (ids, names, sizes), keep, clip_boxes,
                             problems, orphans, edits)
    misnamed, line = _misnamed(image_dir, names, problems)
    lines = [f"images[{k}] (id {ids[k]!r}, {str(names[k])[:100]!r}): {reason}"
             for k, found in enumerate(problems) for reason in found] + orphans
    bad = sorted(set(k for k, found in enumerate(problems) if found) | set(misnamed))
    _report(path, ([line] if line else []) + lines, skip_bad, len(bad),
            len(lines) + len(misnamed))
    every = ImageSet([os.path.join(image_dir, n) if isinstance(n, str) else None
                      for n in names],
                     [onp.array(r, dtype="float32").reshape(-1, 5) for r in rows],
                     ids, names, sizes, chosen, tuple(edits))
    bad = set(bad)
    left_out = (LeftOut("bad", len(bad), None, "with bad annotations (--skip-bad)"),) \
        if bad else ()
    found = subset(every, [k for k in range(len(images)) if k not in bad], left_out=left_out)
    if warn:
        warn_edits(found, path)
    return found


def coco_classes(annotation_file, *, max_bytes=1 << 30):
    """The category names of a COCO instances file, by id: the classes a
    run on it has when none are given. Its images and annotations are not
    checked here (:func:`read_coco` does that)."""
    path = os.fspath(annotation_file)
    _, _, categories = _top_level(_load_json(path, max_bytes), path)
    return _categories(categories, None, path)[0]
