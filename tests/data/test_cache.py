"""Decoded images kept between reads: within the byte budget, read-only,
the same items as decoding again, and nothing decoded twice when the set
fits."""
import pickle

import numpy as onp
import pytest

import rpn
from rpn.data import dataset as dataset_module
from rpn.data.cache import DecodedCache


def _pixels(side, value=0):
    return onp.full((side, side, 3), value, dtype=onp.uint8)


def test_images_are_kept_until_the_budget_is_spent_then_only_the_recent():
    cache = DecodedCache(budget=2 * 10 * 10 * 3)           # two 10 x 10 images
    for index in range(6):
        cache.put(index, _pixels(10, index), (20, 20))
    assert cache.used == 600
    assert [i for i in range(6) if cache.get(i) is not None] == [0, 1, 3, 4, 5]
    pixels, size = cache.get(0)
    assert size == (20, 20) and int(pixels[0, 0, 0]) == 0
    with pytest.raises(ValueError):                      # read-only: nobody changes it
        pixels[0, 0, 0] = 7
    nothing = DecodedCache(budget=0)
    nothing.put(0, _pixels(4), (4, 4))
    assert nothing.used == 0 and nothing.get(0) is not None   # the recent still


def test_a_worker_copy_starts_empty_and_bad_budgets_are_named():
    cache = DecodedCache(budget=1000)
    cache.put(0, _pixels(5), (5, 5))
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.used == 0 and copy.budget == 1000 and len(cache) == 1
    for bad in (-1, 1.5, "a lot"):
        with pytest.raises((ValueError, TypeError)):
            DecodedCache(budget=bad)


def _count_reads(monkeypatch):
    reads = []
    real = dataset_module.read_image_at

    def counting(path, *args, **kwargs):
        reads.append(path)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(dataset_module, "read_image_at", counting)
    return reads


@pytest.mark.parametrize("window", [None, 64], ids=["resized", "windows"])
def test_a_second_epoch_decodes_nothing_and_gives_what_decoding_gives(
        tmp_path, monkeypatch, window):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=6, num_val=1, height=96, width=128)
    found = rpn.data.sources.open_split(root, "train")
    rule = rpn.Resize.keep_ratio(64, 96) if window is None else rpn.Resize.native()
    reads = _count_reads(monkeypatch)

    def dataset(cache_bytes):
        return rpn.DetectionDataset(found.images, found.labels, resize=rule, augment=True,
                                    with_info=True, window=window, cache_bytes=cache_bytes)
    kept, fresh = dataset(2 ** 20), dataset(0)
    first = [kept[(i, 0)] for i in range(6)]
    assert len(reads) == 6
    second = [kept[(i, 1)] for i in range(6)]
    assert len(reads) == 6                               # nothing decoded again
    for cached, item in zip(first + second,
                            [fresh[(i, 0)] for i in range(6)] + [fresh[(i, 1)] for i in range(6)]):
        for a, b in zip(cached, item):
            onp.testing.assert_array_equal(a, b)
    assert len(reads) == 18                              # the uncached one decoded each time
