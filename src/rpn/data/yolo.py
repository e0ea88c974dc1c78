"""YOLO datasets as labelling services and Ultralytics ship them.

Two layouts (:func:`find_yolo` tells them, :func:`open_yolo` reads what names
the classes and the splits, :func:`read_yolo_split` reads one split):

* ``data.yaml`` (a folder holding ``data.yaml`` or ``data.yml``, or a
  ``.yaml``/``.yml`` file): ``names:`` (a list, or a mapping ``0..n-1 ->
  name``; ``nc:`` alone gives ``class_0`` ...) and ``train:``, ``val:``
  (or ``validation:``, ``valid:``), ``test:``, each a folder or a list of
  folders, resolved as Ultralytics resolves them: against the yaml's
  ``path:`` (a relative one against the yaml's folder; Ultralytics tries
  its ``datasets_dir`` setting, which this package has not), else the
  yaml's folder, and a path that does not exist and starts with ``../``
  is tried without it (Roboflow's ``../train/images`` beside the yaml).
  ``download:`` is never run; a ``.txt`` list of image paths is refused.
* ``classes.txt`` (one name a line, Label Studio's export) beside
  ``images/`` and ``labels/``: one set of images, the split ``all``.

A split's images are the image files below its folders (sub-folders too,
names starting with ``.`` passed over, sorted); an image's labels are in
the file named by :func:`label_path` (``train/images/a.jpg`` ->
``train/labels/a.txt``). This is an edge of the package: rows ``class cx
cy w h`` hold fractions of the image's width and height, and a polygon row
``class x1 y1 ... xn yn`` (a segmentation export's; at least 3 points)
gives its bounding box. With each image's size read from its header
(after its EXIF orientation) the rows become pixel rows ``[class, xmin,
ymin, xmax, ymax]`` under the box rule of :mod:`rpn.data.image_set` (no
area: dropped, its image stays; more than 1 pixel past the edge: bad, or
clipped with ``clip_boxes``). The rules, since label files come from
elsewhere:

* an empty label file is an image without objects; a missing one is the
  same, and one warning a split counts them;
* a class id that is not a whole number below ``len(names)``, a
  coordinate outside [0, 1] by more than :data:`ROUNDING` (Ultralytics'
  tolerance), a row that does not parse (neither 5 numbers nor a polygon,
  ``nan``, ``1e999``), a label file that is not UTF-8, or an image whose
  header cannot be read, makes its image bad: one ``DataError`` lists every
  bad file and line, or (``skip_bad``) the images are left out with one
  warning.

``ids`` and ``names`` are the images' paths relative to the dataset root
(``valid/images/a.jpg``).
"""
import os
import re
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as onp
import yaml

from ..runs.fileio import link_problem
from .coco import choose_classes
from .image_set import (CLIPPED, EMPTY, OUTSIDE, DataError, Edit, ImageSet, LeftOut,
                        place_box, subset)
from .images import IMAGE_EXTENSIONS, BadImageError, image_size
from .reports import warn_edits

__all__ = ["YoloData", "find_yolo", "open_yolo", "read_yolo_split", "label_path",
           "YAML_NAMES", "ROUNDING"]

#: The names a folder's yaml may have.
YAML_NAMES = ("data.yaml", "data.yml")
#: How far a coordinate may lie outside [0, 1] (Ultralytics allows 0.01).
ROUNDING = 0.01
_SPLIT_KEYS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
_MAX_YAML_BYTES = 1 << 20
_MAX_LABEL_BYTES = 16 << 20
_MAX_LISTED = 50
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class YoloData(NamedTuple):
    """A YOLO dataset: ``source`` the yaml or ``classes.txt`` that describes
    it, ``root`` the folder split paths are relative to, ``names`` the class
    names by id, ``splits`` split name (``train``, ``val``, ``test``) ->
    its folders, or ``None`` for the ``classes.txt`` layout (one set,
    ``root/images``)."""
    source: str
    root: str
    names: Tuple[str, ...]
    splits: Optional[dict]


def find_yolo(data):
    """The file that makes ``data`` a YOLO dataset, or ``None``: ``data``
    itself when it is a ``.yaml``/``.yml`` file; a folder's ``data.yaml`` or
    ``data.yml``; or its ``classes.txt`` when it has an ``images/`` folder."""
    data = os.fspath(data)
    if os.path.isfile(data):
        return data if data.lower().endswith((".yaml", ".yml")) else None
    if not os.path.isdir(data):
        return None
    for name in YAML_NAMES:
        if os.path.isfile(os.path.join(data, name)):
            return os.path.join(data, name)
    classes = os.path.join(data, "classes.txt")
    if os.path.isfile(classes) and os.path.isdir(os.path.join(data, "images")):
        return classes
    return None


def _read_text(path, limit):
    """The UTF-8 text of ``path`` (a byte-order mark dropped), or a
    ``DataError`` naming it."""
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise DataError(f"{path}: larger than {limit} bytes; refused")
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
                        ) from None


def _distinct(names, source):
    names = tuple(names)
    twice = sorted({n for n in names if names.count(n) > 1})
    if not names or twice or any(not n for n in names):
        raise DataError(f"{source}: the class names must be distinct and not empty, got "
                        f"{list(names)}" + (f" ({twice} twice)" if twice else ""))
    return names


def _names(doc, path):
    """The class names of a data.yaml, by id."""
    names, count = doc.get("names"), doc.get("nc")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                              or count < 1):
        raise DataError(f"{path}: nc: must be a whole number of classes, got {count!r}")
    if names is None:
        if count is None:
            raise DataError(f"{path}: no names: (the class names, a list) and no nc:; "
                            "expected a YOLO data.yaml")
        return tuple(f"class_{i}" for i in range(count))
    if isinstance(names, dict):
        if sorted(names, key=str) != sorted(range(len(names)), key=str):
            raise DataError(f"{path}: names: as a mapping needs the ids 0 to "
                            f"{len(names) - 1}, got {sorted(names, key=str)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(
            isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names):
        raise DataError(f"{path}: names: must be a list of class names (or a mapping of "
                        f"ids to names), got {str(names)[:100]}")
    if count is not None and count != len(names):
        raise DataError(f"{path}: names: has {len(names)} names but nc: says {count}")
    return _distinct((str(n) for n in names), path)


def _resolve(root, value, path, key):
    """A split's folders, resolved as Ultralytics resolves them."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise DataError(f"{path}: {key}: must be a folder or a list of folders, got "
                        f"{value!r}")
    folders = []
    for value in values:
        folder = os.path.realpath(os.path.join(root, value))
        if not os.path.exists(folder) and value.startswith("../"):
            folder = os.path.realpath(os.path.join(root, value[3:]))
        folders.append(folder)
    return tuple(folders)


def _from_yaml(path):
    try:
        doc = yaml.safe_load(_read_text(path, _MAX_YAML_BYTES))
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not YAML ({' '.join(str(error).split())})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping with names: and train:/val: (a YOLO "
                        f"data.yaml), got a {type(doc).__name__}")
    names = _names(doc, path)
    folder = os.path.dirname(os.path.abspath(path))
    root = doc.get("path") or folder
    if not isinstance(root, str):
        raise DataError(f"{path}: path: must be a folder, got {root!r}")
    root = os.path.realpath(os.path.join(folder, root))
    if not os.path.isdir(root):
        raise DataError(f"{path}: path: {doc['path']!r} is not a folder ({root}; a "
                        "relative path: is read from the yaml's folder)")
    splits = {}
    for split, keys in _SPLIT_KEYS.items():
        key = next((k for k in keys if doc.get(k)), None)
        if key is not None:
            splits[split] = _resolve(root, doc[key], path, key)
    if not splits:
        raise DataError(f"{path}: names no split; expected train: and val: (folders of "
                        "images, as in a YOLO data.yaml)")
    return YoloData(path, root, names, splits)


def _from_classes(path):
    lines = _read_text(path, _MAX_YAML_BYTES).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise DataError(f"{path}, line {blank[0]}: an empty line among the class names "
                        "(one name a line; the line number is the class id + 1)")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return YoloData(path, folder, _distinct((line.strip() for line in lines), path), None)


def open_yolo(data):
    """``data`` (see :func:`find_yolo`) as a :class:`YoloData`; a yaml or
    ``classes.txt`` that cannot be used raises one ``DataError`` naming it."""
    path = find_yolo(data)
    if path is None:
        raise DataError(f"{data}: not a YOLO dataset: expected a .yaml file, a folder "
                        f"holding {' or '.join(YAML_NAMES)}, or classes.txt beside images/")
    return _from_classes(path) if os.path.basename(path) == "classes.txt" else _from_yaml(path)


def label_path(image):
    """The label file of the image file ``image`` (Ultralytics' rule: its
    last ``images`` folder becomes ``labels``, its extension ``.txt``)."""
    head, found, tail = os.fspath(image).rpartition(f"{os.sep}images{os.sep}")
    return os.path.splitext(f"{head}{os.sep}labels{os.sep}{tail}" if found else tail)[0] \
        + ".txt"


def _split_folders(found, split):
    if found.splits is None:
        if split != "all":
            raise FileNotFoundError(f"{found.source} has one set of images, the split "
                                    f"'all'; not {split!r}")
        return (os.path.join(found.root, "images"),)
    key = "val" if split in _SPLIT_KEYS["val"] else split
    if key not in found.splits:
        raise FileNotFoundError(f"{found.source} names no split {split!r}; it names "
                                f"{', '.join(sorted(found.splits))}")
    for folder in found.splits[key]:
        if os.path.isfile(folder):
            raise DataError(f"{found.source}: split {split!r} is the list file {folder}; "
                            "lists of image paths are not read: name the folder of the "
                            "images")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{found.source}: the folder of split {split!r}, "
                                    f"{folder}, does not exist")
    return found.splits[key]


def _image_files(folders):
    """Image files below ``folders``, sorted, once each; links followed,
    a loop of linked folders walked once."""
    files, seen = set(), set()
    for folder in folders:
        for current, dirs, names in os.walk(folder, followlinks=True):
            info = os.stat(current)
            if (info.st_dev, info.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files.update(os.path.join(current, n) for n in names if not n.startswith(".")
                         and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
    return sorted(files)


def _row(fields, count):
    """``(class id, (x0, y0, x1, y1) fractions)`` of one row, or its problem."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return None, (f"{len(fields)} fields; expected 'class cx cy w h' (5 numbers) or a "
                      "polygon 'class x1 y1 x2 y2 x3 y3 ...' (at least 3 points)")
    bad = [f for f in fields if not _NUMBER.match(f) or abs(float(f)) > 1e30]
    if bad:
        return None, f"not a number: {bad[0][:40]!r}"
    values = [float(f) for f in fields]
    cls, coords = values[0], values[1:]
    if not cls.is_integer() or not 0 <= cls < count:
        return None, (f"class id {fields[0]!r} is not one of the {count} names' ids "
                      f"(0 to {count - 1})")
    outside = [v for v in coords if not -ROUNDING <= v <= 1 + ROUNDING]
    if outside:
        return None, (f"coordinate {outside[0]:g} is outside [0, 1] (rows hold fractions of "
                      "the image's width and height, not pixels)")
    if len(fields) == 5:
        cx, cy, w, h = coords
        return int(cls), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = coords[0::2], coords[1::2]
    return int(cls), (min(xs), min(ys), max(xs), max(ys))


def _rows(text, where, size, keep, count, clip):
    """Pixel rows, problems and ``(kind, text)`` edits of one label file."""
    height, width = size
    rows, problems, edits = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        cls, box = _row(fields, count)
        if cls is None:
            problems.append(f"{where}, line {number}: {box}")
            continue
        if keep[cls] is None:
            continue
        x0, y0, x1, y1 = box
        kind, placed = place_box((x0 * width, y0 * height, x1 * width, y1 * height), size,
                                 clip=clip)
        text_row = f"{where}, line {number}: {' '.join(fields)[:120]!r}"
        if kind == OUTSIDE:
            problems.append(f"{text_row} lies more than 1 pixel outside its {width}x{height} "
                            "image (--set clip_boxes=true clips such boxes)")
        elif kind == EMPTY:
            edits.append((EMPTY, text_row))
        else:
            if kind == CLIPPED:
                edits.append((CLIPPED, f"{text_row} -> [{', '.join(f'{v:g}' for v in placed)}]"
                                       " (pixel corners)"))
            rows.append((keep[cls],) + tuple(placed))
    return rows, problems, edits


def _labels_of(path, keep, count, clip):
    """``(size, rows, problems, edits, missing)`` of one image. Only regular
    files are opened (a pipe would never end)."""
    labels = label_path(path)
    for file in (path, labels):
        if os.path.exists(file) and not os.path.isfile(file):
            return None, [], [f"{file}: not a regular file"], [], False
    try:
        size = image_size(path)
    except BadImageError as error:
        return None, [], [f"{path}: {error.reason}"], [], False
    except OSError as error:
        reason = link_problem(path) or f"cannot read it: {error.strerror or error}"
        return None, [], [f"{path}: {reason}"], [], False
    if not os.path.lexists(labels):
        return size, [], [], [], True
    try:
        text = _read_text(labels, _MAX_LABEL_BYTES)
    except DataError as error:
        return size, [], [str(error)], [], False
    except OSError as error:
        reason = link_problem(labels) or f"cannot read it: {error.strerror or error}"
        return size, [], [f"{labels}: {reason}"], [], False
    return (size,) + _rows(text, labels, size, keep, count, clip) + (False,)


def _report(source, split, problems, images, skip_bad):
    lines = [line for found in problems for line in found]
    if not lines:
        return
    listing = "\n  ".join(lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        listing += f"\n  ... and {len(lines) - _MAX_LISTED} more"
    bad = sum(1 for found in problems if found)
    if not skip_bad:
        raise DataError(f"{source}: split {split!r}: {bad} of {images} images cannot be used "
                        f"({len(lines)} problem{'s' if len(lines) > 1 else ''}):\n  {listing}"
                        "\nFix them, or leave the images concerned out (skip_bad=True, "
                        "--skip-bad)")
    warnings.warn(f"{source}: split {split!r}: leaving out {bad} of {images} images that "
                  f"cannot be used:\n  {listing}")


def read_yolo_split(data, split, *, classes=None, skip_bad=False, clip_boxes=False,
                    warn=True):
    """One split of a YOLO dataset (a :class:`YoloData`, or what
    :func:`open_yolo` takes) as an :class:`rpn.ImageSet` (see the module
    for the rules). ``split``: ``train``, ``val`` (or ``valid``), ``test``,
    or ``all`` for the ``classes.txt`` layout; a split the yaml does not
    name, or whose folder does not exist, raises ``FileNotFoundError``.
    ``classes``: the names to keep, class index = position (default: every
    name, by id). ``clip_boxes``: clip boxes more than 1 pixel past their
    image's edge instead of refusing them. ``warn``: warn about the objects
    dropped and boxes clipped (they are in ``edits``). Sizes are stated
    ``(height, width)``."""
    found = data if isinstance(data, YoloData) else open_yolo(data)
    chosen, index = choose_classes(found.names, classes, found.source, "classes")
    keep = [index[name] for name in found.names]
    paths = _image_files(_split_folders(found, split))
    sizes, labels, problems, edits, missing = [], [], [], [], []
    for index, path in enumerate(paths):
        size, rows, bad, changed, absent = _labels_of(path, keep, len(found.names), clip_boxes)
        sizes.append(size)
        labels.append(onp.array(rows, dtype="float32").reshape(-1, 5))
        problems.append(bad)
        edits.extend(Edit(index, kind, text) for kind, text in changed)
        if absent:
            missing.append(label_path(path))
    _report(found.source, split, problems, len(paths), skip_bad)
    if missing:
        warnings.warn(f"{found.source}: split {split!r}: {len(missing)} of {len(paths)} images "
                      f"have no label file (such as {missing[0]}); they are read as images "
                      "without objects")
    names = [os.path.relpath(p, found.root).replace(os.sep, "/") for p in paths]
    every = ImageSet(paths, labels, names, names, sizes, chosen, tuple(edits))
    bad = [i for i, found_ in enumerate(problems) if found_]
    result = subset(every, [i for i in range(len(paths)) if not problems[i]], left_out=(
        LeftOut("bad", len(bad), None, "with bad labels or images (--skip-bad)"),) if bad else ())
    if warn:
        warn_edits(result, found.source)
    return result
