"""take_rows, the one gather: each image's rows picked by index, against a
per-row loop, on arrays and inside a hybridized block."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import ndarray as nd
from mxnet import np

from rpn.ops.gather import take_rows


def per_row(data, index):
    """Row ``index[b, k]`` of image ``b``, one row at a time."""
    out = onp.zeros(index.shape + data.shape[2:], dtype=data.dtype)
    for b in range(index.shape[0]):
        for k in range(index.shape[1]):
            out[b, k] = data[b, int(index[b, k])]
    return out


class Take(mx.gluon.HybridBlock):
    """take_rows in a graph (``F`` the symbol module once hybridized)."""

    def hybrid_forward(self, F, data, index):
        return take_rows(F, data, index)


@pytest.mark.parametrize("trailing", [(), (4,), (5,)])
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_take_rows_against_a_per_row_loop(rng, trailing, dtype):
    B, N, K = 3, 7, 5
    data = rng.normal(size=(B, N) + trailing).astype("float32")
    index = rng.integers(0, N, size=(B, K))
    index[0] = N - 1                                 # the last row of the first image
    index[-1, 0] = 0                                 # the first row of the last one
    want = per_row(data, index)
    got = take_rows(nd, np.array(data), np.array(index, dtype=dtype))
    assert got.shape == (B, K) + trailing
    onp.testing.assert_array_equal(got.asnumpy(), want)
    block = Take()
    block.hybridize()
    hybrid = block(np.array(data), np.array(index, dtype=dtype))
    assert hybrid.shape == (B, K) + trailing
    onp.testing.assert_array_equal(hybrid.asnumpy(), want)


def test_take_rows_stays_on_the_datas_device_and_repeats_rows(rng):
    data = rng.normal(size=(2, 4, 4)).astype("float32")
    index = onp.array([[3, 3, 0, 3], [1, 1, 1, 2]])
    got = take_rows(nd, np.array(data, ctx=mx.cpu(1)), np.array(index, ctx=mx.cpu(1)))
    assert got.ctx == mx.cpu(1)
    onp.testing.assert_array_equal(got.asnumpy(), per_row(data, index))


def test_a_graph_serves_any_number_of_rows(rng):
    """A graph knows no shapes: the same hybridized block gathers from
    images of other row counts."""
    block = Take()
    block.hybridize()
    for n in (3, 9):
        data = rng.normal(size=(2, n, 5)).astype("float32")
        index = rng.integers(0, n, size=(2, 4))
        onp.testing.assert_array_equal(block(np.array(data), np.array(index)).asnumpy(),
                                       per_row(data, index))
