"""The embedded default data: a deterministic synthetic detection set.

Coloured rectangles, ellipses and triangles on textured backgrounds, with
exact boxes, made on demand from a seed: the same seed gives the same
images, with no download. It is the default data of the main job, of the
notebook when VOC is absent, and of the tests. :func:`write_voc` writes it as
a VOC-layout folder, so the VOC path can be exercised without external data.

Labels are pixels at this edge, in the chapter's VOC convention: a shape
filling pixel columns ``x0 .. x1`` (inclusive) has ``xmin = x0, xmax = x1``.
Shape glossary: images (h, w, 3) uint8; labels (n, 5) rows ``[class, xmin,
ymin, xmax, ymax]``.
"""
import math
import os

import numpy as onp
from PIL import Image, ImageDraw

from ..boxes import overlap
from .loader import make_loader
from .preprocess import Resize

__all__ = ["SYNTHETIC_CLASSES", "SyntheticImages", "load_data_synthetic",
           "write_voc"]

SYNTHETIC_CLASSES = ("rectangle", "ellipse", "triangle")
_MIN_SIDE, _MAX_SIDE = 0.08, 0.8          # fractions of the image side
_MAX_ASPECT = 3.0                         # width / height within 1:3 .. 3:1
_MAX_COVER = 0.6                          # no shape hides more of another


def _covers(box, rows):
    """The largest share of one box's area that the other covers, for the
    pixel box ``box`` against each of ``rows`` (n, 4) (inclusive pixel
    columns and rows, as this module's labels: one more than the exclusive
    end), both ways: (n,) and (n,)."""
    a = onp.array(box, dtype="float64") + [0, 0, 1, 1]            # (4,) exclusive end
    b = onp.array(rows, dtype="float64").reshape(-1, 4) + [0, 0, 1, 1]   # (n, 4)
    return overlap(b, a[None], over="first", xp=onp), overlap(a[None], b, over="first", xp=onp)


def _layout(rng, height, width, objects=(1, 6), sides=(_MIN_SIDE, _MAX_SIDE)):
    """``objects`` (fewest, most: by default 1 to 6) shapes: (class, xmin,
    ymin, xmax, ymax) pixel rows, colours and triangle apexes, drawn from
    ``rng``. The width is uniform in ``sides`` (fractions of the image side:
    by default 8% to 80%) and the aspect ratio log-uniform in 1:3 to 3:1
    (draws whose height leaves ``sides`` are redrawn); shapes may overlap,
    but none covers more than 60% of another."""
    wanted = int(rng.integers(objects[0], objects[1] + 1))
    low, high = sides
    rows, extras = [], []
    for _ in range(max(200, 10 * wanted)):
        if len(rows) == wanted:
            break
        w = rng.uniform(low, high)
        h = w / math.exp(rng.uniform(-math.log(_MAX_ASPECT), math.log(_MAX_ASPECT)))
        if not low <= h <= high:
            continue
        bw, bh = max(int(round(w * width)), 2), max(int(round(h * height)), 2)
        x0, y0 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
        box = (x0, y0, x0 + bw - 1, y0 + bh - 1)
        if rows and max(map(onp.max, _covers(box, [r[1:] for r in rows]))) > _MAX_COVER:
            continue
        cls = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
        rows.append((cls,) + box)
        extras.append((rng.integers(0, 256, size=3), int(rng.integers(x0, x0 + bw))))
    return onp.array(rows, dtype="float32").reshape(-1, 5), extras


def _background(rng, height, width):
    """A textured background: smooth colour blobs, fine noise, and stripes
    or a checker pattern half of the time. (h, w, 3) float."""
    grid = rng.uniform(0, 255, size=(4, 4, 3)).astype("uint8")
    smooth = onp.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC),
                         dtype="float32")
    texture = rng.normal(0, 12, size=(height, width, 1))
    kind = rng.integers(0, 3)
    if kind > 0:
        period = rng.uniform(4, 24)
        angle = rng.uniform(0, math.pi)
        yy, xx = onp.mgrid[0:height, 0:width]
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        wave = onp.sign(onp.sin(2 * math.pi * phase))
        if kind == 2:
            other = (xx * -math.sin(angle) + yy * math.cos(angle)) / period
            wave = wave * onp.sign(onp.sin(2 * math.pi * other))
        texture = texture + rng.uniform(10, 40) * wave[..., None]
    return onp.clip(smooth + texture, 0, 255)


def _render(rng, height, width, rows, extras):
    image = Image.fromarray(_background(rng, height, width).astype("uint8"))
    draw = ImageDraw.Draw(image)
    for (cls, x0, y0, x1, y1), (colour, apex) in zip(rows.astype(int), extras):
        fill = tuple(int(c) for c in colour)
        if SYNTHETIC_CLASSES[cls] == "rectangle":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif SYNTHETIC_CLASSES[cls] == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(x0, y1), (x1, y1), (apex, y0)], fill=fill)
    pixels = onp.asarray(image, dtype="float32")
    pixels = pixels + rng.normal(0, 6, size=pixels.shape)      # sensor noise
    return onp.clip(pixels, 0, 255).astype("uint8")


class SyntheticImages:
    """``num`` synthetic images of ``height x width``, image ``i`` made from
    the seed ``(seed, i)`` when it is indexed. ``labels[i]`` are its (n, 5)
    pixel rows, computed up front (cheap); ``self[i]`` renders the (h, w, 3)
    uint8 image. ``objects`` (fewest, most) shapes an image, of ``sides``
    (smallest, largest fraction of the image side): by default the embedded
    set's 1 to 6 of 8% to 80%; many small ones (``objects=(20, 60)``,
    ``sides=(6 / 1024, 48 / 1024)`` at 1024 pixels) make a set of small
    objects in large images."""

    def __init__(self, num, height, width, *, seed=0, offset=0, objects=(1, 6),
                 sides=(_MIN_SIDE, _MAX_SIDE)):
        if num <= 0 or height < 16 or width < 16:
            raise ValueError(f"need num > 0 images of at least 16x16 pixels, got "
                             f"{num} of {height}x{width}")
        if not (1 <= objects[0] <= objects[1] and 0 < sides[0] <= sides[1] <= 1):
            raise ValueError(f"objects must be (fewest >= 1, most >= fewest) and sides "
                             f"(smallest > 0, largest <= 1), got {objects} and {sides}")
        self.num, self.height, self.width = num, height, width
        self.seed, self.offset = seed, offset
        self.objects, self.sides = tuple(objects), tuple(sides)
        self.labels = [self._layout(i)[0] for i in range(num)]

    def _rng(self, index, stream):
        return onp.random.default_rng([self.seed, self.offset + index, stream])

    def _layout(self, index):
        return _layout(self._rng(index, 0), self.height, self.width, self.objects, self.sides)

    def __len__(self):
        return self.num

    def __getitem__(self, index):
        if not 0 <= index < self.num:
            raise IndexError(f"synthetic image {index} of {self.num}")
        rows, extras = self._layout(index)
        return _render(self._rng(index, 1), self.height, self.width, rows, extras)


def load_data_synthetic(batch_size, height, width, *, num_train=1024,
                        num_val=256, image_size=None, seed=0, augment=True,
                        num_workers=0, shard=None):
    """Train and validation loaders over the synthetic set, with the
    interface of :func:`rpn.load_data_voc_detection`: each yields ``(X (B, 3,
    height, width), Y (B, G, 5))``, ``Y`` normalised and padded with class
    ``-1``. ``image_size=(h, w)`` is the size the images are drawn at
    (default: ``height x width``); validation images use seeds the training
    images do not. ``shard=(rank, parts)`` splits the training set for
    distributed training.
    """
    ih, iw = image_size or (height, width)
    train_images = SyntheticImages(num_train, ih, iw, seed=seed)
    val_images = SyntheticImages(num_val, ih, iw, seed=seed, offset=num_train)
    options = dict(num_workers=num_workers, max_objects=6, with_info=False)
    resize = Resize.fixed_size(height, width)
    return (make_loader(train_images, train_images.labels, resize, batch_size, train=True,
                        augment=augment, seed=seed, shard=shard, **options),
            make_loader(val_images, val_images.labels, resize, batch_size, train=False,
                        **options))


def _voc_xml(name, height, width, rows):
    objects = "".join(
        "<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated>"
        "<difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>"
        "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>".format(
            SYNTHETIC_CLASSES[int(c)], int(x0) + 1, int(y0) + 1, int(x1) + 1, int(y1) + 1)
        for c, x0, y0, x1, y1 in rows)
    return ("<annotation><folder>synthetic</folder><filename>{}.jpg</filename>"
            "<size><width>{}</width><height>{}</height><depth>3</depth></size>"
            "{}</annotation>").format(name, width, height, objects)


def write_voc(root, *, num_train=64, num_val=16, height=256, width=256, seed=0,
              objects=(1, 6), sides=(_MIN_SIDE, _MAX_SIDE)):
    """Write the synthetic set as a VOC-layout folder: ``JPEGImages/``,
    ``Annotations/`` (1-based pixel boxes, as VOC), ``ImageSets/Main/``
    with ``train.txt``, ``val.txt`` and the per-class lists
    ``<class>_<split>.txt`` (``1`` / ``-1``). Images are the same as
    :func:`load_data_synthetic`'s for the same seed and counts
    (``objects`` and ``sides``: see :class:`SyntheticImages`). Returns
    ``root``."""
    shapes = dict(objects=objects, sides=sides)
    sets = {"train": SyntheticImages(num_train, height, width, seed=seed, **shapes),
            "val": SyntheticImages(num_val, height, width, seed=seed, offset=num_train,
                                   **shapes)}
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for split, images in sets.items():
        names = []
        for i in range(len(images)):
            name = f"{split}_{i:05d}"
            names.append(name)
            Image.fromarray(images[i]).save(
                os.path.join(root, "JPEGImages", name + ".jpg"), quality=95)
            with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
                f.write(_voc_xml(name, height, width, images.labels[i]))
        main = os.path.join(root, "ImageSets", "Main")
        with open(os.path.join(main, f"{split}.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        for k, cls in enumerate(SYNTHETIC_CLASSES):
            with open(os.path.join(main, f"{cls}_{split}.txt"), "w") as f:
                for name, label in zip(names, images.labels):
                    flag = 1 if (label[:, 0] == k).any() else -1
                    f.write(f"{name} {flag:2d}\n")
    return root
