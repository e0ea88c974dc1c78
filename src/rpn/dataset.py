"""Detection datasets and loaders: lazy reading, resizing, augmentation.

The chapter's companion section "The VOC detection dataset"
(``DetectionDataset``); its exercises ask for lazy reading and random
cropping, which this module does.

This is an edge of the package: labels come in as pixels ``(n, 5)`` rows
``[class, xmin, ymin, xmax, ymax]`` and leave normalised to ``[0, 1]``.

Shape glossary: ``B`` images a batch, ``G`` object rows an image (padded
with class ``-1`` to the dataset's largest count), images ``(3, h, w)``
normalised with ``RGB_MEAN``/``RGB_STD``.
"""
import math
import os

import numpy as onp
from mxnet import gluon, np
from PIL import Image

__all__ = ["DetectionDataset", "DetectionLoader", "RGB_MEAN", "RGB_STD",
           "read_image"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
#: Per-channel mean and standard deviation of ImageNet, used to normalise
#: images (chapter section "The VOC detection dataset"); MXNet arrays (3,)
#: on the CPU, so that ``img * RGB_STD + RGB_MEAN`` works as in the chapter.
RGB_MEAN = np.array(_MEAN)
RGB_STD = np.array(_STD)

_MAX_PIXELS = 64_000_000     # refuse decompression bombs beyond this


def read_image(path):
    """Decode an image file to an (h, w, 3) uint8 RGB array, or raise a
    ``ValueError``/``FileNotFoundError`` that names the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > _MAX_PIXELS:
                raise ValueError(f"{img.width}x{img.height} pixels is more "
                                 f"than the {_MAX_PIXELS} allowed")
            return onp.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


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
    ymin, xmax, ymax]``. Each item is resized to ``height x width``,
    normalised with ``RGB_MEAN``/``RGB_STD``, and returned as ``(image (3,
    height, width) float32, label (G, 5) float32)`` with boxes normalised to
    ``[0, 1]`` and padded with class ``-1`` rows to the largest object
    count ``G`` of the dataset.

    ``augment=True`` (training) flips horizontally with probability 1/2 and,
    with probability ``crop_prob``, crops a random window first (at least
    ``min_crop_scale`` of the area, aspect 1:2 to 2:1): objects whose centre
    leaves the window are dropped, the others clipped to it, and a window
    always keeps at least one object. The draws come from a generator seeded
    by ``(seed, epoch, index)``: index the dataset with ``(index, epoch)``
    (as :class:`DetectionLoader` does) for a new draw every epoch.

    Departs from the chapter's draft, which resized every image up front
    and kept the whole set in memory, and only flipped.
    """

    def __init__(self, images, labels, height, width, *, augment=False,
                 crop_prob=0.5, min_crop_scale=0.3, seed=0, max_objects=None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label "
                             "arrays; expected one label array an image")
        if height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive, got "
                             f"{height} x {width}")
        self.images, self.labels = images, labels
        self.height, self.width = int(height), int(width)
        self.augment, self.crop_prob = augment, crop_prob
        self.min_crop_scale, self.seed = min_crop_scale, seed
        counts = [len(label) for label in labels]
        self.max_objects = max(max(counts, default=0), 1) \
            if max_objects is None else max_objects

    def __len__(self):
        return len(self.images)

    def _load(self, index):
        image = self.images[index]
        if isinstance(image, (str, os.PathLike)):
            return read_image(os.fspath(image)), os.fspath(image)
        image = onp.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {index} must be (h, w, 3), got shape "
                             f"{image.shape}")
        return image, f"image {index}"

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, name = self._load(index)
        label = onp.asarray(self.labels[index], dtype="float32").reshape(-1, 5)
        height, width = image.shape[:2]
        boxes = label[:, 1:].copy()
        if len(boxes) and (boxes.min() < -1 or (boxes[:, 2] > width).any()
                           or (boxes[:, 3] > height).any()
                           or (boxes[:, 2] <= boxes[:, 0]).any()
                           or (boxes[:, 3] <= boxes[:, 1]).any()):
            raise ValueError(
                f"{name}: a box lies outside its {width}x{height} image or is "
                f"empty: {label.tolist()}")
        classes = label[:, 0]
        if self.augment:
            rng = onp.random.default_rng([self.seed, epoch, index])
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
        resized = Image.fromarray(onp.ascontiguousarray(image)).resize(
            (self.width, self.height), Image.BILINEAR)
        pixels = onp.asarray(resized, dtype="float32") / 255
        pixels = (pixels - _MEAN) / _STD
        out = onp.full((self.max_objects, 5), -1.0, dtype="float32")
        count = min(len(boxes), self.max_objects)
        out[:count, 0] = classes[:count]
        out[:count, 1:] = boxes[:count] / [width, height, width, height]
        # (h, w, 3) -> (3, h, w)
        return pixels.transpose(2, 0, 1).astype("float32"), out


class _EpochSampler(gluon.data.Sampler):
    """Yields ``(index, epoch)``: a permutation drawn from ``(seed, epoch)``
    when shuffling, the plain order otherwise."""

    def __init__(self, length, shuffle, seed):
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0

    def __iter__(self):
        order = (onp.random.default_rng([self.seed, self.epoch]).permutation(self.length)
                 if self.shuffle else range(self.length))
        return ((int(i), self.epoch) for i in order)

    def __len__(self):
        return self.length


class DetectionLoader:
    """A Gluon ``DataLoader`` over a :class:`DetectionDataset` whose order
    and augmentation follow ``seed`` and the epoch set by
    :meth:`set_epoch` (``train_detection`` calls it). Yields ``(X (B, 3, h,
    w), Y (B, G, 5))``. ``num_workers`` processes decode images; at most
    ``2 * num_workers`` batches are prepared ahead (Gluon's default).
    ``shard=(rank, parts)`` keeps every ``parts``-th image from ``rank`` on,
    for distributed training.
    """

    def __init__(self, dataset, batch_size, *, shuffle=False,
                 last_batch="keep", num_workers=0, seed=0, shard=None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if shard is not None:
            rank, parts = shard
            if not 0 <= rank < parts:
                raise ValueError(f"shard must be (rank, parts) with 0 <= rank "
                                 f"< parts, got {shard}")
            dataset = _Subset(dataset, range(rank, len(dataset), parts))
        self.dataset = dataset
        if last_batch == "discard" and len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} images are fewer than one batch of "
                             f"{batch_size}; lower the batch size")
        self.sampler = _EpochSampler(len(dataset), shuffle, seed)
        batches = gluon.data.BatchSampler(self.sampler, batch_size, last_batch)
        self._loader = gluon.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=num_workers,
            thread_pool=False)

    def set_epoch(self, epoch):
        self.sampler.epoch = int(epoch)

    def __iter__(self):
        return iter(self._loader)

    def __len__(self):
        return len(self._loader)


class _Subset(gluon.data.Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        return self.dataset[(self.indices[index], epoch)]
