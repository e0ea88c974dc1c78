"""What a loader's batch is: the arrays, and on the host what each image was.

Shape glossary: ``B`` images a batch; ``X`` (B, 3, H, W), ``Y`` (B, G, 5);
``info`` a :class:`BatchInfo`, the host metadata
:class:`rpn.DetectionLoader` gives with each batch.
"""
from dataclasses import dataclass

import mxnet as mx
import numpy as onp
from mxnet import np

__all__ = ["BatchInfo", "unpack_batch", "image_sizes"]


@dataclass(frozen=True)
class BatchInfo:
    """What a batch's images were, on the host (NumPy int64 arrays):
    ``sizes`` (B, 2) ``[height, width]`` in input pixels (each image is the
    top-left part of the padded canvas; ``[0, 0]`` for an image that could
    not be read and was skipped), ``original_sizes`` (B, 2) ``[height,
    width]`` as read from its file, ``indices`` (B,) its index in the
    dataset. ``len(info)`` is ``B``."""
    sizes: onp.ndarray
    original_sizes: onp.ndarray
    indices: onp.ndarray

    @classmethod
    def from_rows(cls, rows):
        """(B, 5) rows ``[height, width, original_height, original_width,
        index]`` (what a dataset item carries) -> a :class:`BatchInfo`."""
        rows = onp.asarray(rows, dtype="int64").reshape(-1, 5)
        return cls(rows[:, 0:2], rows[:, 2:4], rows[:, 4])

    def __len__(self):
        return len(self.indices)

    @property
    def readable(self):
        """(B,) bool: the images that were read (the others were skipped)."""
        return self.sizes[:, 0] > 0

    def select(self, items):
        """The info of some of the images (a slice or an index array)."""
        return BatchInfo(self.sizes[items], self.original_sizes[items], self.indices[items])


def unpack_batch(batch):
    """A loader's batch -> ``(X, Y, info)``: ``(X, Y)`` as the chapter's
    loaders yield (``info`` is ``None``), or ``(X, Y, info)`` with a
    :class:`BatchInfo` (or its (B, 5) rows)."""
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        X, Y, info = batch
        return X, Y, info if isinstance(info, BatchInfo) else BatchInfo.from_rows(info)
    raise ValueError(f"a batch must be (X, Y) or (X, Y, info), got {len(batch)} items")


def image_sizes(info, X):
    """(B, 2) float32 ``[height, width]`` input pixels of a batch ``X`` (B,
    3, H, W), on the host: from ``info`` (a :class:`BatchInfo`), or the
    whole canvas for every image when ``info`` is ``None``."""
    if info is None:
        return np.array([X.shape[2:]] * X.shape[0], dtype="float32", ctx=mx.cpu())
    return np.array(info.sizes, dtype="float32", ctx=mx.cpu())


