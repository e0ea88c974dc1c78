"""What a loader's batch is: the named metadata of its images, and
unpacking a batch with or without it."""
import numpy as onp
import pytest
from mxnet import np

from rpn.data.batch import BatchInfo, image_sizes, unpack_batch


def test_batch_info_names_the_columns_of_its_rows():
    rows = [[24, 48, 60, 120, 0], [0, 0, 0, 0, 5], [48, 24, 90, 45, 2]]
    info = BatchInfo.from_rows(rows)
    assert len(info) == 3
    assert info.sizes.tolist() == [[24, 48], [0, 0], [48, 24]]
    assert info.original_sizes.tolist() == [[60, 120], [0, 0], [90, 45]]
    assert info.indices.tolist() == [0, 5, 2]
    assert info.readable.tolist() == [True, False, True]
    first = info.select(slice(0, 1))
    assert len(first) == 1 and first.sizes.tolist() == [[24, 48]]
    assert info.select(onp.array([2])).indices.tolist() == [2]


def test_unpack_batch_and_image_sizes():
    X, Y = np.zeros((2, 3, 32, 64)), np.zeros((2, 1, 5))
    assert unpack_batch((X, Y))[2] is None
    onp.testing.assert_array_equal(image_sizes(None, X).asnumpy(), [[32, 64], [32, 64]])
    _, _, info = unpack_batch((X, Y, onp.array([[32, 48, 64, 96, 0], [16, 64, 32, 128, 1]])))
    assert isinstance(info, BatchInfo)
    sizes = image_sizes(info, X)
    assert sizes.dtype == onp.float32 and sizes.asnumpy().tolist() == [[32, 48], [16, 64]]
    assert unpack_batch((X, Y, info))[2] is info
    with pytest.raises(ValueError, match="got 1 items"):
        unpack_batch((X,))
