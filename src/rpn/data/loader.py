"""Loaders: batches of a :class:`rpn.DetectionDataset` in a repeatable
order, padded into one canvas.

The chapter's loaders are Gluon ``DataLoader`` objects of fixed-size images; here
images keep their aspect ratio, so a batch pads them into one canvas (its
sides multiples of the backbone's stride), batches landscape and portrait
images apart, and carries each image's size and index on the host
(:class:`rpn.data.batch.BatchInfo`). The order and the augmentation follow
a seed and the epoch, so a run and its resume see the same batches.

Shape glossary: ``B`` images a batch, ``G`` object rows an image (padded
with class ``-1``), a batch ``X`` (B, 3, H, W), ``Y`` (B, G, 5).
"""
import functools
import warnings

import mxnet as mx
import numpy as onp
from mxnet import gluon, np

from ..processes.children import forks_die_with_parent
from .batch import BatchInfo
from .cache import CACHE_BYTES
from .dataset import DetectionDataset
from .image_set import DataError
from .preprocess import SIZE_DIVISOR, pad_batch

__all__ = ["DetectionLoader", "make_loader"]


def _batchify(items, *, divisor, shared):
    """Items -> ``(X (B, 3, H, W), Y (B, G, 5))`` MXNet arrays, plus ``info``
    (B, 5) as a NumPy array (host metadata) when the items carry it. ``G``
    is the largest object count of the batch's images."""
    ctx = mx.Context("cpu_shared", 0) if shared else None
    X = pad_batch([item[0] for item in items], divisor)
    Y = onp.stack([item[1] for item in items])
    # only as many rows as this batch's most crowded image needs: labeling
    # costs grow with them (padding rows are -1 at the end of each image)
    rows = max(1, int((Y[..., 0] != -1).sum(axis=1).max()))
    Y = onp.ascontiguousarray(Y[:, :rows])
    batch = (np.array(X, ctx=ctx), np.array(Y, ctx=ctx))
    if len(items[0]) == 3:
        batch += (onp.stack([item[2] for item in items]),)
    return batch


class _EpochBatches(gluon.data.Sampler):
    """Batches of ``(index, epoch)`` keys over ``indices``: in a permutation
    drawn from ``(seed, epoch)`` when shuffling, in order otherwise. With
    ``groups`` (0 or 1 an index, e.g. landscape or portrait) batches are
    made within a group first, so that images of one shape share a canvas;
    the leftovers of both groups form the last batches. With ``repeats``
    above 1, each index comes that many times in a row, as ``(index, epoch,
    r)`` keys (several windows of one image, decoded once)."""

    def __init__(self, indices, batch_size, *, shuffle, last_batch, seed, groups=None,
                 repeats=1):
        self.indices, self.batch_size = list(indices), int(batch_size)
        self.shuffle, self.last_batch, self.seed = shuffle, last_batch, seed
        self.groups, self.epoch, self.repeats = groups, 0, int(repeats)

    def _chunks(self, members, keep_partial):
        size = self.batch_size
        whole = len(members) // size * size
        batches = [members[i:i + size] for i in range(0, whole, size)]
        rest = members[whole:]
        if rest and keep_partial:
            batches.append(rest)
        return batches, rest

    def _batches(self):
        rng = onp.random.default_rng([self.seed, self.epoch])
        order = ([self.indices[i] for i in rng.permutation(len(self.indices))]
                 if self.shuffle else list(self.indices))
        if self.repeats > 1:
            order = [(i, r) for i in order for r in range(self.repeats)]
        keep = self.last_batch == "keep"
        if self.groups is None:
            return self._chunks(order, keep)[0]
        members = [[i for i in order if self.groups[i] == group] for group in (0, 1)]
        if not members[0] or not members[1]:
            return self._chunks(order, keep)[0]      # one shape only: plain batches
        batches, rest = [], []
        for group in members:
            full, left = self._chunks(group, False)
            batches += full
            rest += left
        batches += self._chunks(rest, keep)[0]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        if self.repeats > 1:
            return iter([[(int(i), self.epoch, r) for i, r in batch]
                         for batch in self._batches()])
        return iter([[(int(i), self.epoch) for i in batch] for batch in self._batches()])

    def __len__(self):
        return len(self._batches())


class DetectionLoader:
    """A Gluon ``DataLoader`` over a :class:`DetectionDataset` whose order
    and augmentation follow ``seed`` and the epoch set by
    :meth:`set_epoch` (the training loop calls it). Yields ``(X (B, 3, h,
    w), Y (B, G, 5))``, plus ``info`` (a :class:`rpn.data.batch.BatchInfo`:
    each image's size in the canvas, original size and index) when the
    dataset gives it. Images that keep their aspect ratio are padded into
    one canvas a batch, and with ``group_by_aspect`` (default: when they
    keep it and their sizes are known) landscape and portrait images are
    batched apart so the canvas wastes little; a canvas's sides are
    multiples of ``size_divisor`` (the backbone's stride is enough; 32
    suits every backbone). ``num_workers`` processes
    decode images; at most ``2 * num_workers`` batches are prepared ahead
    (Gluon's default). ``shard=(rank, parts)`` keeps every ``parts``-th
    image from ``rank`` on, for distributed training.
    """

    def __init__(self, dataset, batch_size, *, shuffle=False, last_batch="keep",
                 num_workers=0, seed=0, shard=None, group_by_aspect=None,
                 size_divisor=SIZE_DIVISOR, repeats=1):
        if int(batch_size) != batch_size or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        indices = range(len(dataset))
        if shard is not None:
            rank, parts = shard
            if not 0 <= rank < parts:
                raise ValueError(f"shard must be (rank, parts) with 0 <= rank "
                                 f"< parts, got {shard}")
            indices = range(rank, len(dataset), parts)
        if last_batch == "discard" and len(indices) * repeats < batch_size:
            raise ValueError(f"{len(indices) * repeats} images are fewer than one batch of "
                             f"{batch_size}; lower the batch size")
        self.dataset, self.indices = dataset, list(indices)
        resize = getattr(dataset, "resize", None)
        keeps_ratio = resize is not None and resize.fixed is None
        sizes = getattr(dataset, "sizes", None)
        if group_by_aspect is None:
            windowed = getattr(dataset, "window", None) is not None
            group_by_aspect = keeps_ratio and sizes is not None and not windowed
        groups = None
        if group_by_aspect and sizes is not None:
            groups = {i: int(sizes[i] is not None and sizes[i][0] > sizes[i][1])
                      for i in self.indices}
        self.batch_sampler = _EpochBatches(self.indices, batch_size, shuffle=shuffle,
                                           last_batch=last_batch, seed=seed, groups=groups,
                                           repeats=repeats)
        if num_workers > 0:
            # workers the pool starts later (after a signal killed some)
            # must end with this process too, not only those that read
            forks_die_with_parent()
        divisor = size_divisor if keeps_ratio else 1
        batchify = functools.partial(_batchify, divisor=divisor, shared=num_workers > 0)
        self._loader = gluon.data.DataLoader(
            dataset, batch_sampler=self.batch_sampler, num_workers=num_workers,
            batchify_fn=batchify, thread_pool=False)

    def set_epoch(self, epoch):
        self.batch_sampler.epoch = int(epoch)

    def __iter__(self):
        for batch in self._loader:
            if len(batch) == 3:
                # (B, 5) rows from the workers -> named fields
                batch = (batch[0], batch[1], BatchInfo.from_rows(batch[2]))
            yield batch

    def __len__(self):
        return len(self.batch_sampler)


def make_loader(images, labels, resize, batch_size, *, train, sizes=None, augment=True,
                crop_prob=0.5, min_crop_scale=0.3, seed=0, num_workers=0, shard=None,
                max_objects=None, on_error="raise", size_divisor=SIZE_DIVISOR,
                with_info=True, window=None, windows_per_image=1, window_focus=0.9,
                window_visible=0.5, cache_bytes=CACHE_BYTES):
    """The one way the package builds a loader: a :class:`DetectionLoader`
    over a :class:`DetectionDataset` of ``images`` and pixel ``labels``
    (``sizes``: each image's stated ``(height, width)`` or ``None``),
    resized by ``resize``. For training (``train``): images without an
    object are left out (one warning counts them; none left is an error),
    batches are shuffled, augmented (``augment``: flips, and crops with
    ``crop_prob`` and ``min_crop_scale``, see :class:`DetectionDataset`) and
    the last incomplete one dropped; with ``window`` (pixels), each image
    gives ``windows_per_image`` windows an epoch instead (in one batch where
    it fits, so that it is decoded once; ``window_focus``,
    ``window_visible``: see :class:`DetectionDataset`). For evaluation every
    image is kept whole, in order. Decoded images are kept within
    ``cache_bytes`` (shared among the ``num_workers`` processes, each of
    which keeps its own; :mod:`rpn.data.cache`). Yields ``(X, Y, info)``
    (``(X, Y)`` without ``with_info`` and a fixed size, as the chapter's
    loaders)."""
    if train:
        keep = [i for i, label in enumerate(labels) if (onp.asarray(label)[:, 0] >= 0).any()]
        if not keep:
            raise DataError(f"no training image has an object of the classes (of "
                            f"{len(labels)} images)")
        if len(keep) < len(labels):
            warnings.warn(f"training on {len(keep)} of {len(labels)} images: "
                          f"{len(labels) - len(keep)} have no object of the classes")
        if len(keep) < len(labels):
            images = [images[i] for i in keep]
            labels = [labels[i] for i in keep]
            sizes = None if sizes is None else [sizes[i] for i in keep]
    window = window if train else None
    dataset = DetectionDataset(images, labels, resize=resize, augment=train and augment,
                               crop_prob=crop_prob, min_crop_scale=min_crop_scale,
                               seed=seed, max_objects=max_objects, sizes=sizes,
                               with_info=with_info, on_error=on_error, window=window,
                               window_focus=window_focus, window_visible=window_visible,
                               cache_bytes=int(cache_bytes) // max(1, num_workers))
    return DetectionLoader(dataset, batch_size, shuffle=train,
                           last_batch="discard" if train else "keep",
                           num_workers=num_workers, seed=seed, shard=shard,
                           size_divisor=size_divisor,
                           repeats=windows_per_image if window is not None else 1)
