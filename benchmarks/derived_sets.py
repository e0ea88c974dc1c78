"""Data sets derived for ``benchmarks/quality.py``, written as VOC folders.

* :func:`write_mosaic`: 2 x 2 mosaics of the photographs of a VOC folder
  (four photographs of the same split a mosaic, each fitted into a cell of
  about a quarter of the mosaic), so that every image holds about four
  smaller objects;
* :func:`write_aspect`: the photographs cropped to 2:1 (even positions) and
  1:2 (odd) around the union of their objects (the idea of
  ``resize_rule.write_wide``);
* :func:`write_tiled`: the photographs tiled 2 x 2 to 4 x 4 into one canvas
  at their own scale (small objects in large pictures);
* :func:`write_small_objects`: the synthetic set with 20 to 60 shapes of 6
  to 48 pixels in 1024-pixel images;
* :func:`write_heldout`: the synthetic set as a VOC folder (``rpn.write_voc``),
  whose per-class lists let ``classes=`` pick the classes to train on;
* :func:`write_subset`: a folder that lists only some images of another
  (symbolic links to its images and annotations), for calibrating speed.

Everything is deterministic from its arguments. A folder is written under a
temporary name and renamed when complete; ``quality-set.json`` inside it
records the arguments, and a folder whose record differs is written anew.
These folders hold data derived from the source photographs: they belong
in the git-ignored ``benchmarks/.cache/``, never in a commit.

VOC coordinates are 1-based inclusive pixels; here boxes are handled as
0-based continuous corners ``x0 = xmin - 1, x1 = xmax`` and written back as
``xmin = round(x0) + 1, xmax = round(x1)``.
"""
import json
import os
import shutil
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image

#: Bump when a builder changes what it writes: folders are then rebuilt.
VERSION = 1
STAMP = "quality-set.json"


# -- reading and writing VOC folders ------------------------------------------

def read_split(voc_dir, split):
    """The images of one split of a VOC folder (its plain
    ``ImageSets/Main/<split>.txt``): a list of dicts ``name``, ``path``,
    ``objects`` (list of ``(class, difficult, x0, y0, x1, y1)``, 0-based
    continuous corners)."""
    with open(os.path.join(voc_dir, "ImageSets", "Main", f"{split}.txt")) as f:
        names = [line.split()[0] for line in f if line.strip()]
    out = []
    for name in names:
        root = ElementTree.parse(os.path.join(voc_dir, "Annotations", name + ".xml")).getroot()
        objects = []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            difficult = obj.find("difficult")
            objects.append((obj.find("name").text.strip(),
                            int(difficult.text) if difficult is not None else 0,
                            x0 - 1, y0 - 1, x1, y1))
        out.append(dict(name=name, path=_image_path(voc_dir, name), objects=objects))
    return out


def _image_path(voc_dir, name):
    folder = os.path.join(voc_dir, "JPEGImages")
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"):
        if os.path.isfile(os.path.join(folder, name + ext)):
            return os.path.join(folder, name + ext)
    raise FileNotFoundError(f"no image {name} in {folder}")


def _annotation(name, width, height, objects):
    rows = "".join(
        f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{round(x0) + 1}</xmin>"
        f"<ymin>{round(y0) + 1}</ymin><xmax>{round(x1)}</xmax><ymax>{round(y1)}</ymax>"
        f"</bndbox></object>"
        for cls, difficult, x0, y0, x1, y1 in objects)
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{rows}</annotation>")


class _Writer:
    """Writes a VOC folder under a temporary name; :meth:`done` renames it."""

    def __init__(self, out, record):
        self.out, self.record = out, record
        self.tmp = out + ".partial"
        shutil.rmtree(self.tmp, ignore_errors=True)
        for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(self.tmp, sub))
        self.lists = {}

    def image(self, split, name, image, objects):
        image.save(os.path.join(self.tmp, "JPEGImages", name + ".jpg"), quality=95)
        with open(os.path.join(self.tmp, "Annotations", name + ".xml"), "w") as f:
            f.write(_annotation(name, image.size[0], image.size[1], objects))
        self.lists.setdefault(split, []).append(name)

    def done(self):
        for split, names in self.lists.items():
            with open(os.path.join(self.tmp, "ImageSets", "Main", f"{split}.txt"), "w") as f:
                f.write("".join(n + "\n" for n in names))
        _finish(self.tmp, self.out, self.record)
        return self.out


def _finish(tmp, out, record):
    with open(os.path.join(tmp, STAMP), "w") as f:
        json.dump(record, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def is_current(out, record):
    """Whether ``out`` is a complete folder written with ``record``."""
    try:
        with open(os.path.join(out, STAMP)) as f:
            return json.load(f) == json.loads(json.dumps(record))
    except (OSError, ValueError):
        return False


def count_objects(voc_dir, split, classes=None):
    """``(images, images with an object of classes, objects)`` of a split
    (from its plain list)."""
    found = read_split(voc_dir, split)
    per_image = [sum(1 for o in item["objects"] if classes is None or o[0] in classes)
                 for item in found]
    return len(found), sum(1 for n in per_image if n), sum(per_image)


# -- mosaics -------------------------------------------------------------------

def _groups(rng, count, size):
    """``count`` groups of 4 distinct indices of ``range(size)``, every index
    used about equally often (successive random permutations)."""
    pool, groups = [], []
    for _ in range(count):
        group = []
        while len(group) < 4:
            if not pool:
                pool = [int(i) for i in rng.permutation(size)]
            for j, index in enumerate(pool):
                if index not in group:
                    group.append(pool.pop(j))
                    break
            else:                                  # only repeats left: start anew
                pool = []
        groups.append(group)
    return groups


def _fit_into(rng, photo, objects, cell):
    """``photo`` resized (aspect kept) to fit ``cell = (left, top, width,
    height)``, placed at a random position inside it; returns the resized
    image, its top-left corner and the moved objects."""
    left, top, cw, ch = cell
    w, h = photo.size
    scale = min(cw / w, ch / h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    x = left + int(rng.integers(0, cw - nw + 1))
    y = top + int(rng.integers(0, ch - nh + 1))
    sx, sy = nw / w, nh / h
    moved = [(c, d, x + x0 * sx, y + y0 * sy, x + x1 * sx, y + y1 * sy)
             for c, d, x0, y0, x1, y1 in objects]
    return photo.resize((nw, nh), Image.BILINEAR), (x, y), moved


def write_mosaic(voc_dir, out, *, counts=(("train", 160), ("val", 64)), seed=0):
    """2 x 2 mosaics of ``voc_dir``'s photographs into the VOC folder ``out``:
    ``counts`` mosaics a split, each of four photographs of that split. A
    mosaic is 480 to 640 pixels wide, 0.6 to 0.9 of that high; its dividing
    lines fall at 40% to 60% of each side, so cells are a little unequal.
    Each photograph keeps its aspect ratio, fitted into its cell at a random
    place; the rest of the cell is the photograph's mean colour. Returns
    ``out`` (kept when already written with the same arguments)."""
    record = dict(kind="mosaic", version=VERSION, source=os.path.abspath(voc_dir),
                  counts=[list(c) for c in counts], seed=seed)
    if is_current(out, record):
        return out
    writer = _Writer(out, record)
    for number, (split, count) in enumerate(counts):
        photos = read_split(voc_dir, split)
        rng = np.random.default_rng([seed, number])
        for m, group in enumerate(_groups(rng, count, len(photos))):
            width = int(rng.integers(480, 641))
            height = int(round(width * rng.uniform(0.6, 0.9)))
            fx, fy = rng.uniform(0.4, 0.6, size=2)
            xs, ys = [0, int(width * fx), width], [0, int(height * fy), height]
            cells = [(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j])
                     for j in range(2) for i in range(2)]
            canvas = Image.new("RGB", (width, height))
            objects = []
            for cell, index in zip(cells, group):
                photo = Image.open(photos[index]["path"]).convert("RGB")
                mean = tuple(int(v) for v in np.asarray(photo).reshape(-1, 3).mean(axis=0))
                canvas.paste(Image.new("RGB", cell[2:], mean), cell[:2])
                tile, corner, moved = _fit_into(rng, photo, photos[index]["objects"], cell)
                canvas.paste(tile, corner)
                objects += moved
            writer.image(split, f"{split}-mosaic-{m:04d}", canvas, objects)
    return writer.done()


# -- photographs tiled at their own scale --------------------------------------

def write_tiled(voc_dir, out, *, grid, counts=(("train", 80), ("val", 20)), seed=0):
    """``grid`` x ``grid`` photographs of ``voc_dir`` (of the same split, at
    their own scale, unresized) tiled into one canvas a picture, into the
    VOC folder ``out``: ``counts`` canvases a split. Each row of the grid is
    as high as its highest photograph, the canvas as wide as its widest row;
    a photograph sits at the top-left of its cell, the rest is grey. With
    raccoon photographs of about 500 x 375, 2 x 2 makes canvases of about
    1,000 x 750 with four raccoons, 4 x 4 about 2,000 x 1,500 with sixteen:
    the objects keep their pixels while the picture grows, as in a camera
    of more pixels. Photographs are drawn without repeats within a canvas
    and about equally often overall. Returns ``out``."""
    record = dict(kind="tiled", version=VERSION, source=os.path.abspath(voc_dir), grid=grid,
                  counts=[list(c) for c in counts], seed=seed)
    if is_current(out, record):
        return out
    writer = _Writer(out, record)
    for number, (split, count) in enumerate(counts):
        photos = read_split(voc_dir, split)
        rng = np.random.default_rng([seed, number, grid])
        pool = []
        for m in range(count):
            group = []
            while len(group) < grid * grid:
                if not pool:
                    pool = [int(i) for i in rng.permutation(len(photos))]
                index = pool.pop()
                if index not in group or len(photos) < grid * grid:
                    group.append(index)
            images = [Image.open(photos[i]["path"]).convert("RGB") for i in group]
            rows = [images[r * grid:(r + 1) * grid] for r in range(grid)]
            heights = [max(im.size[1] for im in row) for row in rows]
            width = max(sum(im.size[0] for im in row) for row in rows)
            canvas = Image.new("RGB", (width, sum(heights)), (117, 117, 117))
            objects, y = [], 0
            for r, row in enumerate(rows):
                x = 0
                for k, im in enumerate(row):
                    canvas.paste(im, (x, y))
                    objects += [(c, d, x + x0, y + y0, x + x1, y + y1)
                                for c, d, x0, y0, x1, y1 in photos[group[r * grid + k]]["objects"]]
                    x += im.size[0]
                y += heights[r]
            writer.image(split, f"{split}-tiled{grid}-{m:04d}", canvas, objects)
    return writer.done()


def write_small_objects(out, *, num_train=160, num_val=40, size=1024, seed=0):
    """The synthetic set with many small objects in large images
    (``rpn.write_voc``: ``size`` pixels a side, 20 to 60 shapes of 6 to 48
    pixels an image), as a VOC folder: the harbour-webcam case of issue 25
    in a form anyone can make. Returns ``out``."""
    return _synthetic_voc(out, "small-objects", num_train=num_train, num_val=num_val,
                          size=size, seed=seed, objects=(20, 60), sides=(6 / size, 48 / size))


# -- 2:1 and 1:2 crops ---------------------------------------------------------

def write_aspect(voc_dir, out):
    """The photographs of ``voc_dir`` cropped to 2:1 (even positions of each
    split) or 1:2 (odd) around the union of their objects, as large as the
    photograph allows, into the VOC folder ``out``. Objects are clipped to
    the crop; those left under 5 pixels wide or high are dropped. Returns
    ``out``."""
    record = dict(kind="aspect", version=VERSION, source=os.path.abspath(voc_dir))
    if is_current(out, record):
        return out
    writer = _Writer(out, record)
    for split in ("train", "val"):
        for i, item in enumerate(read_split(voc_dir, split)):
            photo = Image.open(item["path"]).convert("RGB")
            w, h = photo.size
            boxes = np.array([o[2:] for o in item["objects"]], dtype="float64").reshape(-1, 4)
            if len(boxes):
                x0, y0, x1, y1 = boxes[:, :2].min(axis=0).tolist() + boxes[:, 2:].max(axis=0).tolist()
            else:
                x0, y0, x1, y1 = 0, 0, w, h
            ratio = 2.0 if i % 2 == 0 else 0.5                  # width / height
            cw, ch = (w, min(h, w / ratio)) if w / h < ratio else (min(w, h * ratio), h)
            cw, ch = int(cw), int(ch)
            left = int(min(max((x0 + x1) / 2 - cw / 2, 0), w - cw))
            top = int(min(max((y0 + y1) / 2 - ch / 2, 0), h - ch))
            objects = []
            for cls, difficult, a, b, c, d in item["objects"]:
                a, c = np.clip([a - left, c - left], 0, cw)
                b, d = np.clip([b - top, d - top], 0, ch)
                if c - a >= 5 and d - b >= 5:
                    objects.append((cls, difficult, a, b, c, d))
            crop = photo.crop((left, top, left + cw, top + ch))
            writer.image(split, item["name"], crop, objects)
    return writer.done()


# -- the synthetic set as a VOC folder -----------------------------------------

def write_heldout(out, *, num_train=1024, num_val=256, size=112, seed=0):
    """The synthetic set (``rpn.write_voc``: the images ``data="synthetic"``
    draws for this seed and these counts, at ``size`` pixels) as a VOC folder
    with per-class lists, where ``classes=`` filters. Returns ``out``."""
    return _synthetic_voc(out, "synthetic-voc", num_train=num_train, num_val=num_val,
                          size=size, seed=seed)


def _synthetic_voc(out, kind, *, num_train, num_val, size, seed, **drawing):
    """``rpn.write_voc`` into ``out`` (square images of ``size`` pixels;
    ``drawing``: its ``objects`` and ``sides``), unless ``out`` is current
    for these arguments. Returns ``out``."""
    import rpn
    record = dict(kind=kind, version=VERSION, num_train=num_train, num_val=num_val,
                  size=size, seed=seed)
    if is_current(out, record):
        return out
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    rpn.write_voc(tmp, num_train=num_train, num_val=num_val, height=size, width=size,
                  seed=seed, **drawing)
    _finish(tmp, out, record)
    return out


# -- subsets for calibration ---------------------------------------------------

def write_subset(voc_dir, out, counts, classes=None):
    """A VOC folder listing the first ``counts[split]`` images of each split
    of ``voc_dir`` that hold an object of ``classes`` (all classes when
    ``None``); its ``Annotations`` and ``JPEGImages`` are symbolic links to
    ``voc_dir``'s. Returns ``out``."""
    voc_dir = os.path.abspath(voc_dir)
    record = dict(kind="subset", version=VERSION, source=voc_dir,
                  counts=dict(counts), classes=classes and sorted(classes))
    if is_current(out, record):
        return out
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "ImageSets", "Main"))
    for sub in ("Annotations", "JPEGImages"):
        os.symlink(os.path.join(voc_dir, sub), os.path.join(tmp, sub))
    for split, count in counts.items():
        names = [item["name"] for item in read_split(voc_dir, split)
                 if any(classes is None or o[0] in classes for o in item["objects"])]
        with open(os.path.join(tmp, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names[:count]))
    _finish(tmp, out, record)
    return out
