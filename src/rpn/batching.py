"""Devices and batches: which contexts to use, and how a batch is split
over them.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``info``
a :class:`BatchInfo`, the host metadata :class:`rpn.DetectionLoader` gives
with each batch.
"""
from dataclasses import dataclass

import mxnet as mx
import numpy as onp
from mxnet import gluon, np

__all__ = ["try_gpu", "as_context_list", "parse_context", "unpack_batch", "split_batch",
           "BatchInfo"]


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


def try_gpu(i=0):
    """``mx.gpu(i)`` when MXNet sees that GPU, else ``mx.cpu()`` (as d2l)."""
    return mx.gpu(i) if mx.context.num_gpus() > i else mx.cpu()


def as_context_list(ctx):
    """One context, a list of them, or ``None`` (:func:`try_gpu`) -> list."""
    if ctx is None:
        return [try_gpu()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctxs or not all(isinstance(c, mx.Context) for c in ctxs):
        raise ValueError(f"ctx must be an mx.Context or a non-empty list of "
                         f"them, got {ctx!r}")
    return ctxs


def parse_context(text):
    """``cpu``, ``cpu:0,1``, ``gpu:0`` or ``gpu:0,1`` -> a list of contexts;
    a ``ValueError`` that says what was wrong otherwise (including a GPU
    that MXNet does not see)."""
    kind, _, ids = text.partition(":")
    try:
        numbers = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        numbers = None
    if kind not in ("cpu", "gpu") or numbers is None or min(numbers) < 0:
        raise ValueError(f"{text!r}: expected cpu, cpu:0,1, gpu:0 or gpu:0,1 "
                         "(device numbers >= 0)")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{text!r}: a device is listed twice")
    if kind == "gpu" and max(numbers) >= mx.context.num_gpus():
        raise ValueError(
            f"{text}: MXNet sees {mx.context.num_gpus()} GPU(s), so gpu:{max(numbers)} "
            "does not exist. Install a CUDA build (pip install -e '.[cu112]' or "
            "'.[cu117]' in place of '.[cpu]'), check nvidia-smi and 'rpn env', or use cpu")
    return [(mx.gpu if kind == "gpu" else mx.cpu)(i) for i in numbers]


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


def split_batch(batch, ctxs, *, strict=True):
    """Split a batch over the devices along its first axis. A batch smaller
    than the device count is an error in training (every device must take
    part in a step) and uses the first devices otherwise."""
    if batch.shape[0] < len(ctxs) and not strict:
        ctxs = ctxs[:batch.shape[0]]
    if batch.shape[0] < len(ctxs):
        raise ValueError(
            f"a batch of {batch.shape[0]} images cannot be split over "
            f"{len(ctxs)} devices; use a batch size of at least {len(ctxs)} "
            "and drop the last incomplete batch")
    return gluon.utils.split_and_load(batch, ctxs, even_split=False)
