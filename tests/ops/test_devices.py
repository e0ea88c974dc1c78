"""Devices: parsing contexts, and splitting a batch over devices."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from rpn.ops.devices import as_context_list, parse_context, split_batch, try_gpu


def test_contexts_are_parsed_or_named():
    assert parse_context("cpu") == [mx.cpu(0)]
    assert parse_context("cpu:0,1") == [mx.cpu(0), mx.cpu(1)]
    for text, words in (("tpu", "expected cpu"), ("cpu:a", "expected cpu"),
                        ("cpu:-1", "expected cpu"), ("cpu:0,0", "listed twice"),
                        (f"gpu:{mx.context.num_gpus()}", "does not exist")):
        with pytest.raises(ValueError, match=words):
            parse_context(text)
    assert as_context_list(mx.cpu(1)) == [mx.cpu(1)]
    assert as_context_list(None) == [try_gpu()]
    with pytest.raises(ValueError, match="ctx must be"):
        as_context_list(["cpu"])
    with pytest.raises(ValueError, match="ctx must be"):
        as_context_list([])


def test_a_batch_is_split_over_devices_in_order():
    X = np.arange(10).reshape(5, 2)
    parts = split_batch(X, [mx.cpu(0), mx.cpu(1)])
    assert [p.ctx for p in parts] == [mx.cpu(0), mx.cpu(1)]
    onp.testing.assert_array_equal(onp.concatenate([p.asnumpy() for p in parts]),
                                   X.asnumpy())
    with pytest.raises(ValueError, match="cannot be split over 2 devices"):
        split_batch(X[:1], [mx.cpu(0), mx.cpu(1)])
    assert len(split_batch(X[:1], [mx.cpu(0), mx.cpu(1)], strict=False)) == 1
