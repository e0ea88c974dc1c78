"""Detection datasets and loaders: lazy reading, resizing, augmentation.

The chapter's companion section "The VOC detection dataset"
(``DetectionDataset``); its exercises ask for lazy reading and random
cropping, which this module does.

This is an edge of the package: labels come in as pixels ``(n, 5)`` rows
``[class, xmin, ymin, xmax, ymax]`` and leave normalised to ``[0, 1]`` by
each image's own width and height. Every image goes through
:mod:`rpn.data.preprocess` (decode, resize, normalise, pad).

Shape glossary: ``B`` images a batch, ``G`` object rows an image (padded
with class ``-1`` to the dataset's largest count), images ``(3, h, w)``
normalised with ``RGB_MEAN``/``RGB_STD``, a batch ``(B, 3, H, W)`` padded
to a common canvas. An item's ``info`` (5,) int64 is ``[height, width,
original_height, original_width, index]``: the image's size in the batch
(its top-left part), its size as read, and its index in the dataset; a
height of 0 marks an image that could not be read (skipped). The loader
gives a batch's as a :class:`rpn.data.batch.BatchInfo` of named fields
(:mod:`rpn.data.loader`).
"""
import math
import os

import numpy as onp
from mxnet import gluon, np
from PIL import Image

from ..processes.children import die_with_parent
from .cache import CACHE_BYTES, DecodedCache
from .image_set import CROWD, rows_outside
from .images import BadImageError, read_image, read_image_at
from .preprocess import MEAN, SIZE_DIVISOR, STD, Resize, preprocess_image
from .windows import choose_window, cut_window

__all__ = ["DetectionDataset", "RGB_MEAN", "RGB_STD",
           "read_image", "check_labels"]

#: Per-channel mean and standard deviation of ImageNet, used to normalise
#: images (chapter section "The VOC detection dataset"); MXNet arrays (3,)
#: on the CPU, so that ``img * RGB_STD + RGB_MEAN`` works as in the chapter.
RGB_MEAN = np.array(MEAN)
RGB_STD = np.array(STD)

_READ_ERRORS = (BadImageError, FileNotFoundError, OSError)


def check_labels(labels, names=None):
    """Raise one ``ValueError`` listing every malformed label array: each
    must be (n, 5) pixel rows ``[class, xmin, ymin, xmax, ymax]`` with finite
    values, a class >= 0 (or ``CROWD``) and ``xmin < xmax``, ``ymin < ymax``.
    Ground truth is checked here once, on the host, so that training never
    waits for the device to check it again."""
    problems = []
    for i, label in enumerate(labels):
        name = names[i] if names is not None else f"image {i}"
        rows = onp.asarray(label, dtype="float64")
        if rows.size == 0:
            continue
        if rows.ndim != 2 or rows.shape[1] != 5:
            problems.append(f"{name}: expected (n, 5) rows, got shape {rows.shape}")
            continue
        bad = ~onp.isfinite(rows).all(axis=1)
        bad |= ~((rows[:, 0] >= 0) | (rows[:, 0] == CROWD))
        bad |= ~((rows[:, 1] < rows[:, 3]) & (rows[:, 2] < rows[:, 4]))
        for row in rows[bad]:
            problems.append(f"{name}: row {row.tolist()}")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(
            f"{len(problems)} malformed label row(s); expected [class >= 0 (or "
            f"{CROWD} for a crowd region), xmin, ymin, xmax, ymax] with finite "
            f"values, xmin < xmax and ymin < ymax:\n  {shown}{more}")


def _random_crop(rng, boxes, width, height, min_scale, tries=30):
    """A crop window (x0, y0, x1, y1) in pixels, covering ``min_scale`` to
    all of the image's area at an aspect ratio within 1:2 to 2:1, that keeps
    the centre of at least one object (any window when there are none).
    Falls back to the whole image."""
    centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    for _ in range(tries):
        scale = rng.uniform(min_scale, 1.0)
        ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        w = min(width, width * math.sqrt(scale * ratio))
        h = min(height, height * math.sqrt(scale / ratio))
        x0 = rng.uniform(0, width - w)
        y0 = rng.uniform(0, height - h)
        inside = ((centres[:, 0] > x0) & (centres[:, 0] < x0 + w)
                  & (centres[:, 1] > y0) & (centres[:, 1] < y0 + h))
        if len(boxes) == 0 or inside.any():
            return (x0, y0, x0 + w, y0 + h), inside
    return (0.0, 0.0, float(width), float(height)), onp.ones(len(boxes), bool)


class DetectionDataset(gluon.data.Dataset):
    """Images and their objects, read when a batch needs them.

    ``images``: a sequence of file paths or (h, w, 3) uint8 arrays (any
    object with ``len`` and indexing, so images may also be made on
    demand). ``labels``: a sequence of (n, 5) pixel rows ``[class, xmin,
    ymin, xmax, ymax]`` (class :data:`rpn.CROWD` marks a region to ignore),
    checked once here (:func:`check_labels`). Each item is resized to
    ``height x width`` (the chapter's) or by ``resize`` (a
    :class:`rpn.data.preprocess.Resize`, e.g. keeping the aspect ratio),
    normalised with ``RGB_MEAN``/``RGB_STD``, and returned as ``(image (3,
    h, w) float32, label (G, 5) float32)`` with boxes normalised by the
    image's own size and padded with class ``-1`` rows to the largest object
    count ``G``; with ``with_info`` a third item ``info`` (5,) int64 (see
    the module).

    ``augment=True`` (training) flips horizontally with probability 1/2 and,
    with probability ``crop_prob``, crops a random window first (at least
    ``min_crop_scale`` of the area, aspect 1:2 to 2:1): objects whose centre
    leaves the window are dropped, the others clipped to it, and a window
    always keeps at least one object. A crop is resized to the size the
    whole image gets, so its objects are zoomed (and its aspect jittered). The draws come from a generator seeded
    by ``(seed, epoch, index)``: index the dataset with ``(index, epoch)``
    (as :class:`DetectionLoader` does) for a new draw every epoch.

    ``window`` (pixels; training): instead of the whole image, a window of
    that side cut from it at the resize rule's scale (a native rule: the
    photograph's own resolution), over an object with probability
    ``window_focus``; objects cut by its edge are clipped, and those left
    with less than ``window_visible`` of their area inside become crowd
    regions (:mod:`rpn.data.windows`). Then the flip. Index the dataset with
    ``(index, epoch, repeat)`` for several windows of one image in an
    epoch.

    Images read from files are kept decoded within ``cache_bytes`` of
    pixels (:class:`rpn.data.cache.DecodedCache`): from the second epoch
    on, a set that fits is not decoded again, and the windows of one image
    in a batch decode it once.

    ``sizes``: each image's ``(height, width)`` as its annotation states it
    (or ``None``), checked when the image is read. ``on_error="skip"``
    turns an image that cannot be read into an empty item whose ``info``
    height is 0 (training gives it no label, evaluation leaves it out, and
    both count it) instead of raising the error that names the file.

    Departs from the chapter's draft, which resized every image up front
    and kept the whole set in memory, and only flipped.
    """

    def __init__(self, images, labels, height=None, width=None, *, resize=None,
                 augment=False, crop_prob=0.5, min_crop_scale=0.3, seed=0,
                 max_objects=None, sizes=None, with_info=False, on_error="raise",
                 window=None, window_focus=0.9, window_visible=0.5,
                 cache_bytes=CACHE_BYTES):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label "
                             "arrays; expected one label array an image")
        if (resize is None) == (height is None or width is None):
            raise ValueError("give either height and width or resize=, not both")
        self.resize = resize if resize is not None else Resize.fixed_size(height, width)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if sizes is not None and len(sizes) != len(images):
            raise ValueError(f"{len(sizes)} sizes for {len(images)} images")
        check_labels(labels, [self._name(images, i) for i in range(len(images))]
                     if isinstance(images, (list, tuple)) else None)
        self.images, self.labels, self.sizes = images, labels, sizes
        self.augment, self.crop_prob = augment, crop_prob
        self.min_crop_scale, self.seed = min_crop_scale, seed
        self.window, self.window_focus = window, window_focus
        self.window_visible = window_visible
        self._cache = DecodedCache(cache_bytes)       # index -> (pixels, original size)
        self.with_info = with_info or self.resize.fixed is None
        self.on_error = on_error
        counts = [len(label) for label in labels]
        self.max_objects = max(max(counts, default=0), 1) \
            if max_objects is None else max_objects

    @property
    def height(self):
        return self.resize.fixed[0] if self.resize.fixed else None

    @property
    def width(self):
        return self.resize.fixed[1] if self.resize.fixed else None

    @staticmethod
    def _name(images, index):
        image = images[index]
        return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"image {index}"

    def __len__(self):
        return len(self.images)

    def _wanted(self, height, width):
        """The pixels an image of ``height`` x ``width`` must be decoded at
        least at: what the resize rule makes of it, twice that for a crop
        (which is zoomed), and all of it where a window is cut at scale."""
        out_h, out_w = self.resize.shape(height, width)
        if self.augment and self.window is None and self.crop_prob > 0:
            out_h, out_w = 2 * out_h, 2 * out_w
        return min(out_h, height), min(out_w, width)

    def _load(self, index):
        """``(pixels (h, w, 3), name, (height, width))``: the image, perhaps
        decoded smaller than it is (:func:`rpn.data.images.read_image_at`),
        and its own size, which its boxes are in."""
        image = self.images[index]
        if isinstance(image, (str, os.PathLike)):
            kept = self._cache.get(index)
            if kept is None:
                expected = self.sizes[index] if self.sizes is not None else None
                kept = self._cache.put(index, *read_image_at(
                    os.fspath(image), self._wanted, expected_size=expected))
            return kept + (os.fspath(image),)
        image = onp.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != onp.uint8:
            raise ValueError(f"image {index} must be (h, w, 3) uint8, got shape "
                             f"{image.shape} and dtype {image.dtype}")
        return image, image.shape[:2], f"image {index}"

    def _cut(self, rng, image, boxes, classes, scaled):
        """A window of the image at the resize rule's size ``scaled``
        ``(height, width)``: ``(pixels, boxes, classes)`` of the window."""
        height, width = image.shape[:2]
        if (height, width) != tuple(scaled):
            factor = onp.float32([scaled[1] / width, scaled[0] / height] * 2)
            boxes = boxes * factor
            image = onp.asarray(Image.fromarray(onp.ascontiguousarray(image)).resize(
                (scaled[1], scaled[0]), Image.BILINEAR))
        window = choose_window(rng, boxes[classes >= 0], scaled[1], scaled[0], self.window,
                               self.window_focus)
        boxes, classes = cut_window(boxes, classes, window, self.window_visible)
        x0, y0, x1, y1 = window
        return image[y0:y1, x0:x1], boxes, classes

    def _blank(self, index):
        """The item of an image that could not be read: no pixels, no object."""
        height, width = self.resize.fixed or (SIZE_DIVISOR, SIZE_DIVISOR)
        pixels = onp.zeros((3, height, width), dtype="float32")
        label = onp.full((self.max_objects, 5), -1.0, dtype="float32")
        info = onp.array([0, 0, 0, 0, index], dtype="int64")
        return (pixels, label, info) if self.with_info else (pixels, label)

    def __getitem__(self, key):
        die_with_parent()
        index, epoch, *repeat = key if isinstance(key, tuple) else (key, 0)
        try:
            image, original, name = self._load(index)
        except _READ_ERRORS:
            if self.on_error == "raise":
                raise
            return self._blank(index)
        label = onp.asarray(self.labels[index], dtype="float32").reshape(-1, 5)
        height, width = original
        boxes = label[:, 1:].copy()
        if rows_outside(label, height, width).any():
            raise ValueError(
                f"{name}: a box lies outside its {width}x{height} image: "
                f"{label.tolist()}")
        boxes = onp.clip(boxes, 0, [width, height, width, height])
        if image.shape[:2] != (height, width):          # decoded smaller: its pixels
            height, width = image.shape[:2]
            boxes = boxes * onp.float32([width / original[1], height / original[0]] * 2)
        classes = label[:, 0]
        target = self.resize.shape(*original)
        if self.augment and self.window is not None:
            rng = onp.random.default_rng([self.seed, epoch, index] + repeat)
            image, boxes, classes = self._cut(rng, image, boxes, classes, target)
            height, width = target = image.shape[:2]
            if rng.random() < 0.5:
                image = image[:, ::-1]
                boxes = onp.stack([width - boxes[:, 2], boxes[:, 1],
                                   width - boxes[:, 0], boxes[:, 3]], axis=1)
        elif self.augment:
            rng = onp.random.default_rng([self.seed, epoch, index] + repeat)
            if rng.random() < self.crop_prob:
                (x0, y0, x1, y1), keep = _random_crop(
                    rng, boxes, width, height, self.min_crop_scale)
                ix0, iy0 = int(x0), int(y0)
                ix1, iy1 = max(int(math.ceil(x1)), ix0 + 1), max(int(math.ceil(y1)), iy0 + 1)
                image = image[iy0:iy1, ix0:ix1]
                boxes, classes = boxes[keep], classes[keep]
                boxes = onp.clip(boxes - [ix0, iy0, ix0, iy0], 0,
                                 [ix1 - ix0, iy1 - iy0] * 2)
                height, width = image.shape[:2]
            if rng.random() < 0.5:
                image = image[:, ::-1]
                boxes = onp.stack([width - boxes[:, 2], boxes[:, 1],
                                   width - boxes[:, 0], boxes[:, 3]], axis=1)
            # a crop may leave a sliver of a box: keep only boxes with area
            kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, classes = boxes[kept], classes[kept]
        # every draw of an image comes out at the size the whole image gets:
        # a crop is zoomed (and its aspect jittered, within 1:2 to 2:1), and a
        # batch of images of one orientation keeps a tight canvas
        pixels = preprocess_image(image, Resize.fixed_size(*target))
        out = onp.full((self.max_objects, 5), -1.0, dtype="float32")
        count = min(len(boxes), self.max_objects)
        out[:count, 0] = classes[:count]
        out[:count, 1:] = boxes[:count] / [width, height, width, height]
        if not self.with_info:
            return pixels, out
        info = onp.array([pixels.shape[1], pixels.shape[2], original[0], original[1], index],
                         dtype="int64")
        return pixels, out, info
