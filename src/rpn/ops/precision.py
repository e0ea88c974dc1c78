"""Mixed precision (float16) on GPUs, through ``mxnet.contrib.amp``: the
operators' half.

GluonCV's ``--amp`` recipe: :func:`init` before the model is built or
traced (``amp.init()``); the trainer's half (AMP's loss scaler) is
:mod:`rpn.training.amp`.

One addition. MXNet 1.9.1's ``amp.init()`` casts the operators of its
legacy modules (``mx.nd``, ``mx.sym``), but Gluon's layers in NumPy mode,
which this package runs in, call ``npx.convolution`` and
``npx.fully_connected``, which it leaves alone: without more, ``--amp``
would scale the loss of a float32 model. :func:`init` therefore also casts
the inputs of those operators (convolutions, deconvolutions, fully
connected layers) to float16, with AMP's own ``amp_cast`` (so gradients
flow back to the float32 parameters: the weights stay float32, as AMP
keeps them). BatchNorm then runs on float16 maps with float32 parameters
and statistics (MXNet's rule for float16 data), and the head's outputs are
cast back to float32 (:func:`float32`), so that the loss, the box
decoding, the anchors and the labels stay in float32.

Float16 needs a GPU (:func:`rpn.training.amp.check_contexts`). Tested on
CPU as far as it goes (the wiring, the casts in graphs and arrays, the loss
scaling; ``tests/ops/test_precision.py`` and ``tests/training/test_amp.py``);
not measured on a GPU by the package's tests.
"""
import functools

import mxnet as mx
import numpy as onp

__all__ = ["init", "enabled", "float32", "wrap_numpy_operators", "AMP_OPERATORS"]

#: The NumPy-mode operators whose inputs become float16.
AMP_OPERATORS = ("convolution", "deconvolution", "fully_connected")

_STATE = {"enabled": False}


def enabled():
    """Whether :func:`init` has run in this process (AMP cannot be undone)."""
    return _STATE["enabled"]


def _cast(x, dtype):
    """``x`` as ``dtype`` through AMP's ``amp_cast`` (float16 <-> float32
    only; anything else passes), for NumPy arrays and symbols."""
    if isinstance(x, mx.sym.Symbol):
        return mx.sym.amp_cast(x.as_nd_ndarray(), dtype=dtype).as_np_ndarray()
    if isinstance(x, mx.nd.NDArray) and x.dtype in (onp.float16, onp.float32) \
            and x.dtype != onp.dtype(dtype):
        return mx.nd.amp_cast(x.as_nd_ndarray(), dtype=dtype).as_np_ndarray()
    return x


def _float16_inputs(op, dtype):
    @functools.wraps(op)
    def wrapped(*args, **kwargs):
        args = [_cast(a, dtype) for a in args]
        kwargs = {k: _cast(v, dtype) for k, v in kwargs.items()}
        return op(*args, **kwargs)
    wrapped.rpn_amp = True
    return wrapped


def _numpy_modules():
    """The modules through which Gluon's layers (``F.npx``) and users
    (``mx.npx``) reach the NumPy-mode operators."""
    import mxnet.ndarray.numpy_extension as nd_npx
    import mxnet.numpy_extension as npx
    import mxnet.symbol.numpy_extension as sym_npx
    return nd_npx, sym_npx, npx


def wrap_numpy_operators(dtype="float16"):
    """Cast the inputs of :data:`AMP_OPERATORS` to ``dtype`` in every
    NumPy-mode module (once; :func:`init` calls it)."""
    for module in _numpy_modules():
        for name in AMP_OPERATORS:
            op = getattr(module, name, None)
            if op is not None and not getattr(op, "rpn_amp", False):
                setattr(module, name, _float16_inputs(op, dtype))


def init(amp=None):
    """Turn on mixed precision for this process (before any model is built
    or traced): ``amp.init()`` (``amp``: the ``mxnet.contrib.amp`` module,
    or a stand-in in tests), and float16 inputs for the NumPy-mode
    operators of :data:`AMP_OPERATORS`. Returns the ``amp`` module."""
    if amp is None:
        from mxnet.contrib import amp
    if not _STATE["enabled"]:
        amp.init(target_dtype="float16")
        wrap_numpy_operators("float16")
        _STATE["enabled"] = True
    return amp


def float32(*arrays):
    """``arrays`` as float32 when AMP is on (the head's outputs, for the
    loss and the box arithmetic), unchanged otherwise (no cast in the
    graph)."""
    if not _STATE["enabled"]:
        return arrays
    return tuple(a.astype("float32") for a in arrays)
