"""COCO detection annotations: :func:`read_coco` (one instances JSON file
to an :class:`rpn.ImageSet`), :func:`find_coco_split` (a split's file and
image folder in the usual layouts), :func:`write_coco` (the synthetic set).
The rules, since annotation files come from elsewhere:

* The file is read at a bounded size (``max_bytes``, checked before
  reading), must be UTF-8 JSON, and must be an object whose ``images``,
  ``annotations`` and ``categories`` are lists; otherwise a ``ValueError``
  names the file (and the position, for bad text), with or without
  ``skip_bad``.
* Boxes are pixels at this edge: ``bbox [x, y, w, h]`` becomes the row
  ``[class, x, y, x + w, y + h]`` (no -1 shift); ``iscrowd: 1`` gives the
  class :data:`rpn.CROWD`. A box that is not 4 finite numbers, is empty, or
  lies outside its image by more than 1 pixel is bad; within 1 pixel it is
  clipped to the image. Boxes of categories not kept are not checked.
* ``file_name`` may hold sub-folders, but a name that is absolute, has a
  ``..`` component, a NUL or a backslash, or resolves (symlinks followed)
  outside the image folder is bad.
* Every bad entry is listed in one ``ValueError`` naming the file (the
  first 50, then a count); with ``skip_bad`` the images concerned (and
  annotations that name no image) are left out with one warning.
"""
import glob
import json
import os
import warnings

import numpy as onp
from PIL import Image

from .records import CROWD, ImageSet
from .synthetic import SYNTHETIC_CLASSES, SyntheticImages

__all__ = ["read_coco", "write_coco", "find_coco_split"]

_MAX_LISTED = 50


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
    in_file = list(dict.fromkeys(names[i] for i in sorted(names)))
    if classes is None:
        chosen = tuple(in_file)
    else:
        if isinstance(classes, str):
            raise TypeError(f"classes must be a sequence of names, not the str {classes!r}")
        chosen = tuple(classes)
        unknown = [name for name in chosen if name not in in_file]
        if unknown or not chosen or len(set(chosen)) < len(chosen):
            raise ValueError(f"{path}: classes {list(chosen)} must be distinct names of "
                             f"its categories (unknown: {unknown}); its categories are "
                             f"{in_file}")
    index = {name: k for k, name in enumerate(chosen)}
    return chosen, {cid: index.get(name) for cid, name in names.items()}


def _name_problem(name, image_dir, root, cache):
    """Why ``file_name`` is refused, or ``None``."""
    if not isinstance(name, str) or not name:
        return "no file_name (a non-empty string)"
    if ("\x00" in name or "\\" in name or os.path.isabs(name) or name.startswith("/")
            or ".." in name.split("/")):
        return (f"refusing file_name {name!r}: names must be relative paths inside "
                "the image folder (no '..', backslash or NUL)")
    path = os.path.join(image_dir, name)
    folder = os.path.dirname(path)
    if folder not in cache:
        cache[folder] = os.path.realpath(folder)
    real = os.path.join(cache[folder], os.path.basename(path))
    if os.path.islink(real):
        real = os.path.realpath(real)
    if os.path.commonpath([real, root]) != root:
        return f"refusing file_name {name!r}: it resolves to {real}, outside {root}"
    return None


def _size(entry):
    """``(height, width)`` stated by an image entry, ``None``, or a problem."""
    height, width = entry.get("height"), entry.get("width")
    if not height or not width:
        return None
    if not (_is_finite(height) and _is_finite(width) and height > 0 and width > 0):
        return f"bad height/width {height!r}/{width!r}"
    return int(round(height)), int(round(width))


def _box(bbox, size):
    """``(x0, y0, x1, y1)`` of a COCO bbox, clipped, or the problem."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_finite, bbox)):
        return f"bbox {str(bbox)[:80]} is not 4 finite numbers"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {bbox} is empty (w <= 0 or h <= 0)"
    x0, y0, x1, y1 = x, y, x + w, y + h
    if size is not None:
        height, width = size
        if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
            return f"bbox {bbox} lies outside its {width}x{height} image"
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            return f"bbox {bbox} is empty once clipped to its {width}x{height} image"
    return x0, y0, x1, y1


def _read_images(images, image_dir, problems):
    """Ids, names, sizes of the image entries; ``by_id``: image id -> index."""
    root = os.path.realpath(image_dir)
    ids, names, sizes, by_id, cache = [], [], [], {}, {}
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
        reason = _name_problem(name, image_dir, root, cache)
        if reason:
            problems[k].append(reason)
        ids.append(image_id)
        names.append(name)
        sizes.append(size)
    return ids, names, sizes, by_id


def _read_annotations(annotations, by_id, sizes, keep, problems, orphans):
    """Pixel rows per image index, in one pass over the annotations."""
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
        box = _box(ann["bbox"], sizes[index])
        if isinstance(box, str):
            problems[index].append(f"{label}: {box}")
            continue
        cls = CROWD if ann.get("iscrowd") == 1 else keep[category]
        rows[index].append((cls,) + tuple(box))
    return rows


def _report(path, lines, skip_bad, left_out):
    """One error listing every problem, or (``skip_bad``) one warning."""
    if not lines:
        return
    listing = "\n  ".join(lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        listing += f"\n  ... and {len(lines) - _MAX_LISTED} more"
    if not skip_bad:
        raise ValueError(f"{path}: {len(lines)} bad entr{'y' if len(lines) == 1 else 'ies'}"
                         f":\n  {listing}\nFix them, or leave the images concerned out "
                         "(skip_bad=True, --skip-bad)")
    warnings.warn(f"{path}: leaving out {left_out} image(s) and the annotations that "
                  f"name no image, for {len(lines)} bad entries:\n  {listing}")


def read_coco(annotation_file, image_dir=None, *, classes=None, skip_bad=False,
              max_bytes=1 << 30):
    """One COCO instances JSON file as an :class:`rpn.ImageSet` (see the
    module for the rules), in the order of its ``images`` list.

    ``image_dir``: the folder ``file_name`` is relative to (default: the
    file's folder). ``classes``: the category names to keep, class index =
    position (default: every category, by id). ``ids`` are COCO image ids,
    ``names`` the file names, ``sizes`` the stated ``(height, width)`` or
    ``None``. Images without annotations get an empty (0, 5) label.
    """
    path = os.fspath(annotation_file)
    images, annotations, categories = _top_level(_load_json(path, max_bytes), path)
    chosen, keep = _categories(categories, classes, path)
    if image_dir is None:
        image_dir = os.path.dirname(os.path.abspath(path))
    image_dir = os.fspath(image_dir)
    problems, orphans = [[] for _ in images], []
    ids, names, sizes, by_id = _read_images(images, image_dir, problems)
    rows = _read_annotations(annotations, by_id, sizes, keep, problems, orphans)
    lines = [f"images[{k}] (id {ids[k]!r}, {str(names[k])[:100]!r}): {reason}"
             for k, found in enumerate(problems) for reason in found] + orphans
    bad = [k for k, found in enumerate(problems) if found]
    _report(path, lines, skip_bad, len(bad))
    bad = set(bad)
    kept = [k for k in range(len(images)) if k not in bad]
    return ImageSet([os.path.join(image_dir, names[k]) for k in kept],
                    [onp.array(rows[k], dtype="float32").reshape(-1, 5) for k in kept],
                    [ids[k] for k in kept], [names[k] for k in kept],
                    [sizes[k] for k in kept], chosen)


def write_coco(root, *, num_train=64, num_val=16, height=256, width=256, seed=0):
    """Write the synthetic set in the COCO layout: ``annotations/
    instances_train.json``, ``annotations/instances_val.json``, and the
    JPEG images ``train/<name>.jpg``, ``val/<name>.jpg`` (the images and
    boxes of :func:`rpn.write_voc` for the same arguments). Categories are
    :data:`rpn.SYNTHETIC_CLASSES` with ids 1, 2, 3. Returns ``root``."""
    sets = {"train": SyntheticImages(num_train, height, width, seed=seed),
            "val": SyntheticImages(num_val, height, width, seed=seed, offset=num_train)}
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"}
                  for k, name in enumerate(SYNTHETIC_CLASSES)]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    image_id, ann_id = 0, 0
    for split, images in sets.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        entries, annotations = [], []
        for i in range(len(images)):
            name = f"{split}_{i:05d}.jpg"
            image_id += 1
            Image.fromarray(images[i]).save(os.path.join(root, split, name), quality=95)
            entries.append({"id": image_id, "file_name": name, "height": height,
                            "width": width})
            for cls, x0, y0, x1, y1 in images.labels[i].astype(int).tolist():
                ann_id += 1
                w, h = x1 - x0, y1 - y0
                annotations.append({"id": ann_id, "image_id": image_id,
                                    "category_id": cls + 1, "bbox": [x0, y0, w, h],
                                    "area": w * h, "iscrowd": 0})
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": entries, "annotations": annotations,
                       "categories": categories}, f)
    return root


def _one(matches, what):
    if len(matches) > 1:
        raise ValueError(f"two matches for {what}: {matches[0]} and {matches[1]}; "
                         "keep one, or name the files")
    return matches[0] if matches else None


def find_coco_split(folder, split):
    """``(annotation_file, image_dir)`` of ``split`` in ``folder``, trying:

    a. ``annotations/instances_<split>*.json``, images in the first of
       ``<split>*/``, ``images/<split>*/``, ``images/`` that exists;
    b. Roboflow's ``<split>/_annotations.coco.json``, images beside it
       (``val`` and ``valid`` stand for each other);
    c. for ``split == "all"`` only: ``annotations.json``, or the single
       ``*.json`` in ``folder``, images in ``images/`` if it exists, else
       ``folder``.

    Nothing found: ``FileNotFoundError`` saying what was looked for; two
    matches at one step: ``ValueError`` naming both.
    """
    folder, tried = os.fspath(folder), []
    base, split_glob = glob.escape(folder), glob.escape(split)

    def matches(pattern, test):
        return sorted(p for p in glob.glob(os.path.join(base, pattern)) if test(p))

    pattern = os.path.join("annotations", f"instances_{split_glob}*.json")
    tried.append(os.path.join(folder, pattern))
    annotation = _one(matches(pattern, os.path.isfile), tried[-1])
    if annotation:
        candidates = [f"{split_glob}*", os.path.join("images", f"{split_glob}*")]
        for candidate in candidates:
            image_dir = _one(matches(candidate, os.path.isdir), os.path.join(folder, candidate))
            if image_dir:
                return annotation, image_dir
        if os.path.isdir(os.path.join(folder, "images")):
            return annotation, os.path.join(folder, "images")
        raise FileNotFoundError(
            f"found {annotation} but no image folder: looked for "
            + ", ".join(os.path.join(folder, c) + os.sep for c in candidates + ["images"]))
    aliases = {"val": ["val", "valid"], "valid": ["valid", "val"]}.get(split, [split])
    paths = [os.path.join(folder, name, "_annotations.coco.json") for name in aliases]
    tried.extend(paths)
    annotation = _one([p for p in paths if os.path.isfile(p)], " / ".join(paths))
    if annotation:
        return annotation, os.path.dirname(annotation)
    if split == "all":
        images = os.path.join(folder, "images")
        image_dir = images if os.path.isdir(images) else folder
        single = os.path.join(folder, "annotations.json")
        tried.extend([single, os.path.join(folder, "*.json")])
        if os.path.isfile(single):
            return single, image_dir
        annotation = _one(matches("*.json", os.path.isfile), tried[-1])
        if annotation:
            return annotation, image_dir
    raise FileNotFoundError(f"no COCO annotations for split {split!r} in {folder}: looked "
                            "for " + ", ".join(tried))
