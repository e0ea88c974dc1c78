"""Mixed precision in training: AMP's dynamic loss scaler on the trainer.

GluonCV's ``--amp`` recipe, the training half (the operators' half is
:mod:`rpn.ops.precision`): ``amp.init_trainer(trainer)`` gives the trainer
AMP's dynamic loss scaler, and each step's backward pass runs on the loss
scaled by it (``with amp.scale_loss(loss, trainer) as scaled:
autograd.backward(scaled)``; :class:`rpn.training.trainer.Trainer` does it
with ``amp=True``): the scale starts at 2 ** 16, halves at a step whose
gradients overflow (the step is skipped) and doubles after 2,000 clean
steps. Float16 needs a GPU: :func:`check_contexts` refuses CPU contexts
with one line.
"""
from ..ops.precision import _STATE
from ..settings import SettingsError

__all__ = ["check_contexts", "attach", "numpy_scaler"]


def check_contexts(ctxs):
    """Raise :class:`rpn.settings.SettingsError` (a ``ValueError``; one line,
    exit 2 on the command line) unless every context is a GPU."""
    cpus = [str(c) for c in ctxs if c.device_type != "gpu"]
    if cpus:
        raise SettingsError(f"--amp (amp=True) trains in float16, which needs GPUs; got "
                         f"{', '.join(cpus)}: give --ctx gpu:0 (a CUDA build of MXNet), "
                         "or leave --amp out")


class _LegacyGrads:
    """A parameter's gradients as legacy arrays (the same memory)."""

    def __init__(self, param):
        self._grad = None if param._grad is None else [g.as_nd_ndarray() for g in param._grad]


def _numpy_loss_scaler():
    """AMP's dynamic loss scaler, whose overflow check (MXNet 1.9.1's legacy
    ``multi_all_finite``) refuses NumPy arrays, made to get the gradients
    as legacy arrays (a class made on first use: importing AMP is left to
    those who train with it). Returns ``(LossScaler, the subclass)``."""
    if "scaler" not in _STATE:
        from mxnet.contrib.amp.loss_scaler import LossScaler

        class NumpyLossScaler(LossScaler):
            def has_overflow(self, params):
                return super().has_overflow([_LegacyGrads(p) for p in params])

        _STATE["scaler"] = (LossScaler, NumpyLossScaler)
    return _STATE["scaler"]


def numpy_scaler(trainer):
    """Make the loss scaler ``amp.init_trainer`` gave ``trainer`` read the
    NumPy-mode gradients of this package's blocks (the same scaler, state
    and all). Returns ``trainer``."""
    scaler = getattr(trainer, "_amp_loss_scaler", None)
    if scaler is not None:
        base, numpy_mode = _numpy_loss_scaler()
        if type(scaler) is base:
            scaler.__class__ = numpy_mode
    return trainer


def attach(amp, trainer):
    """AMP's module with ``trainer`` given its loss scaler (read through
    :func:`numpy_scaler`), or ``None`` without ``amp``. ``amp``: ``False``,
    ``True`` (``mxnet.contrib.amp``) or that module itself (a stand-in in
    tests)."""
    if amp is False or amp is None:
        return None
    if amp is True:
        from mxnet.contrib import amp
    if trainer._kvstore_params["update_on_kvstore"]:
        raise ValueError("amp: AMP's loss scaler needs the update on the workers; "
                         "dist_async updates on the servers (use dist_sync)")
    amp.init_trainer(trainer)
    numpy_scaler(trainer)           # its overflow check, for NumPy-mode gradients
    return amp
