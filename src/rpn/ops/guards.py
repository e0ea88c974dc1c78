"""A guard for an MXNet 1.9.1 fault.

With MKL-DNN (the CPU wheel's default), a convolution over a batch of zero
images leaves MXNet's native operators broken for the rest of the process:
the next ``box_nms`` fails with "Check failed: delay_alloc". Blocks with
this mixin answer a batch of zero images with empty outputs of the right
shapes, found by running one blank image in inference mode, so nothing
runs on an empty batch.
"""
from mxnet import autograd, np

__all__ = ["EmptyBatchSafe"]


def _empty_like(out):
    """Outputs for one image -> the same outputs for no image (first axis 0)."""
    if isinstance(out, (list, tuple)):
        return type(out)(_empty_like(o) for o in out)
    return np.zeros((0,) + out.shape[1:], dtype=out.dtype, ctx=out.ctx)


class EmptyBatchSafe:
    """Mixin for a Gluon block whose first input is a batch (B, ...)."""

    def forward(self, x, *args):
        if isinstance(x, np.ndarray) and x.shape[0] == 0:
            with autograd.pause(train_mode=False):
                blank = np.zeros((1,) + x.shape[1:], dtype=x.dtype, ctx=x.ctx)
                return _empty_like(super().forward(blank, *args))
        return super().forward(x, *args)
