"""Rows of each image of a batch, picked by index: the one gather.

Batched code keeps one image's rows along axis 1 (anchors, proposals,
objects) and picks some of them per image (the best ``K``, each anchor's
object). MXNet 1.9.1's ``take`` gathers along one axis only, so the batch
is flattened first and row ``n`` of image ``b`` is flat row ``b * N + n``.

Shape glossary: ``B`` images, ``N`` rows an image, ``K`` rows picked an
image, ``...`` the trailing axes of a row (none or more).
"""
__all__ = ["take_rows"]


def take_rows(F, data, index):
    """``data`` (B, N, ...) and ``index`` (B, K) row numbers (any dtype)
    -> (B, K, ...): row ``index[b, k]`` of image ``b``, on ``data``'s
    device. Works on arrays (``F`` the ``mxnet.ndarray`` module) and in a
    graph (a graph knows no shapes: ``N`` is counted in it); no host read."""
    # (B,) image numbers times N, the rows of an image, in int64
    rows = F.np.ones_like(F.npx.arange_like(data, axis=1)).sum().astype("int64")
    offset = F.npx.arange_like(data, axis=0).astype("int64") * rows
    flat = index.astype("int64") + F.np.expand_dims(offset, -1)          # (B, K)
    # (B, N, ...) -> (B * N, ...) (-5 merges two axes, -4 keeps the rest);
    # the picked rows (B * K, ...) -> (B, K, ...)
    picked = F.np.take(F.npx.reshape(data, (-5, -4)), flat.reshape(-1), axis=0)
    return F.npx.reshape_like(picked, index, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
