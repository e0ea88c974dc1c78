"""Loaders: a repeatable order under a seed, images padded into one canvas
with their sizes carried, and landscape and portrait images batched apart."""
import numpy as onp

import rpn


def test_loader_order_is_deterministic_under_a_seed():
    def batches(seed, epoch):
        train_iter, _ = rpn.load_data_synthetic(4, 32, 32, num_train=12, num_val=4, seed=seed)
        train_iter.set_epoch(epoch)
        return [Y.asnumpy() for _, Y in train_iter]
    first, again = batches(0, 1), batches(0, 1)
    for a, b in zip(first, again):
        onp.testing.assert_array_equal(a, b)
    other = batches(0, 2)
    assert any(not onp.array_equal(a, b) for a, b in zip(first, other))


def test_keeping_the_aspect_ratio_pads_a_batch_and_carries_each_size():
    images = [onp.zeros((60, 120, 3), "uint8"), onp.zeros((90, 45, 3), "uint8"),
              onp.zeros((50, 50, 3), "uint8")]
    labels = [onp.array([[0, 10, 10, 60, 40]]), onp.array([[1, 5, 5, 40, 80]]),
              onp.zeros((0, 5))]
    dataset = rpn.DetectionDataset(images, labels, resize=rpn.Resize.keep_ratio(32, 48),
                                   sizes=[(60, 120), (90, 45), (50, 50)])
    pixels, label, info = dataset[0]
    assert pixels.shape == (3, 24, 48)                    # longer side capped at 48
    assert info.tolist() == [24, 48, 60, 120, 0]
    onp.testing.assert_allclose(label[0], [0, 10 / 120, 10 / 60, 60 / 120, 40 / 60], rtol=1e-6)
    assert dataset[1][2].tolist() == [48, 24, 90, 45, 1]
    loader = rpn.DetectionLoader(dataset, 3)
    X, Y, info = next(iter(loader))
    assert X.shape == (3, 3, 64, 64)                      # padded to multiples of 32
    # grouped by shape (landscape and square first), each row naming its image
    assert info.indices.tolist() == [0, 2, 1]
    assert info.sizes.tolist() == [[24, 48], [32, 32], [48, 24]]
    assert info.original_sizes.tolist() == [[60, 120], [50, 50], [90, 45]]
    assert len(info) == 3 and info.readable.all()
    onp.testing.assert_array_equal(X.asnumpy()[0, :, 24:], 0)         # padding
    assert onp.abs(X.asnumpy()[0, :, :24, :48]).sum() > 0


def test_landscape_and_portrait_images_are_batched_apart():
    shapes = [(40, 80), (80, 40)] * 6
    images = [onp.zeros(s + (3,), "uint8") for s in shapes]
    labels = [onp.array([[0, 1, 1, 20, 20]])] * 12
    dataset = rpn.DetectionDataset(images, labels, resize=rpn.Resize.keep_ratio(32, 64),
                                   sizes=shapes)
    loader = rpn.DetectionLoader(dataset, 3, shuffle=True, seed=1)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for X, _, info in loader:
            tall = info.sizes[:, 0] > info.sizes[:, 1]
            assert tall.all() or not tall.any()
            assert X.shape[2:] in ((32, 64), (64, 32))
    assert len(loader) == 4
