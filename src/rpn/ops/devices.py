"""Devices: which contexts to use, and how a batch is split over them.

Shape glossary: ``B`` images a batch, split over ``D`` devices.
"""
import mxnet as mx
from mxnet import gluon

__all__ = ["try_gpu", "as_context_list", "parse_context", "split_batch"]


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
