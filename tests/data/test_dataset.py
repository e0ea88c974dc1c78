"""The chapter's DetectionDataset: augmentation that keeps boxes on their
pixels and follows the seed and the epoch, and bad images and labels
named (or skipped) when the dataset is built or read."""
import os

import numpy as onp
import pytest

import rpn
from helpers.files import make_voc


COLOURS = [(255, 0, 0), (0, 0, 255), (255, 255, 0)]


def coloured_boxes(image, colour):
    """Pixel bounding box (x0, y0, x1, y1), inclusive, of one colour."""
    mask = (onp.abs(image.astype(int) - colour).sum(axis=-1) < 60)
    ys, xs = onp.nonzero(mask)
    return None if len(xs) == 0 else (xs.min(), ys.min(), xs.max(), ys.max())


@pytest.mark.parametrize("epoch", range(12))
def test_flip_and_crop_keep_boxes_on_their_pixels(epoch):
    image = onp.full((80, 120, 3), 128, dtype="uint8")
    rows = [(0, 10, 5, 40, 30), (1, 60, 40, 110, 70), (2, 45, 10, 55, 60)]
    for (c, x0, y0, x1, y1), colour in zip(rows, COLOURS):
        image[y0:y1 + 1, x0:x1 + 1] = colour
    label = onp.array(rows, dtype="float32")
    dataset = rpn.DetectionDataset([image], [label], 96, 96, augment=True,
                                   crop_prob=0.8, seed=epoch)
    X, Y = dataset[(0, epoch)]
    pixels = (X.transpose(1, 2, 0) * rpn.RGB_STD.asnumpy() + rpn.RGB_MEAN.asnumpy()) * 255
    kept = Y[Y[:, 0] >= 0]
    assert len(kept) >= 1                   # never every object dropped
    for row in kept:
        found = coloured_boxes(pixels, COLOURS[int(row[0])])
        assert found is not None
        want = row[1:] * 96
        # the label's corners are pixel positions; resizing blurs by ~1 pixel
        onp.testing.assert_allclose(found, want, atol=2.5)


def test_augmentation_follows_seed_and_epoch():
    images = rpn.SyntheticImages(4, 64, 64)
    dataset = rpn.DetectionDataset(images, images.labels, 48, 48, augment=True)
    onp.testing.assert_array_equal(dataset[(1, 3)][0], dataset[(1, 3)][0])
    draws = [dataset[(1, e)][1] for e in range(6)]
    assert any(not onp.array_equal(draws[0], d) for d in draws[1:])
    plain = rpn.DetectionDataset(images, images.labels, 48, 48)
    onp.testing.assert_array_equal(plain[(1, 0)][0], plain[(1, 5)][0])


def test_unreadable_image_names_its_file_or_is_skipped(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)]})
    with open(os.path.join(root, "JPEGImages", "a.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    paths, labels = rpn.list_voc_split(root, "train", ["cat"])
    dataset = rpn.DetectionDataset(paths, labels, 16, 16)
    with pytest.raises(ValueError, match="a.jpg"):
        dataset[0]
    skipping = rpn.DetectionDataset(paths, labels, 16, 16, on_error="skip", with_info=True)
    pixels, label, info = skipping[0]
    assert info.tolist() == [0, 0, 0, 0, 0] and (label == -1).all() and pixels.shape == (3, 16, 16)


def test_box_outside_an_in_memory_image_is_refused():
    image = onp.zeros((20, 20, 3), dtype="uint8")
    dataset = rpn.DetectionDataset([image], [onp.array([[0, 5, 5, 40, 10]])], 16, 16)
    with pytest.raises(ValueError, match="outside its 20x20 image"):
        dataset[0]


def test_images_without_objects_are_padded_rows():
    image = onp.zeros((20, 20, 3), dtype="uint8")
    dataset = rpn.DetectionDataset([image, image], [onp.zeros((0, 5)), onp.array([[1, 2, 2, 9, 9]])],
                                   16, 16)
    _, Y = dataset[0]
    assert Y.shape == (1, 5) and (Y == -1).all()


def test_malformed_labels_are_found_when_the_dataset_is_built():
    image = onp.zeros((20, 20, 3), dtype="uint8")
    labels = [onp.array([[0, 1, 1, 5, 5]]), onp.array([[0, 5, 5, 2, 9], [onp.nan, 1, 1, 2, 2]]),
              onp.array([[-3, 1, 1, 4, 4]])]
    with pytest.raises(ValueError, match="3 malformed label row") as error:
        rpn.DetectionDataset([image] * 3, labels, 16, 16)
    assert "image 1" in str(error.value) and "image 2" in str(error.value)


def test_a_dataset_decodes_large_jpegs_reduced_and_keeps_their_boxes(tmp_path):
    """A photograph far larger than the resize rule's size is decoded
    reduced (read_image_at); its boxes follow the pixels, the item's
    normalised boxes are those of a whole decode, and info keeps the
    photograph's own size."""
    from PIL import Image
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=1, height=960,
                         width=1280, objects=(3, 6), sides=(0.1, 0.3))
    found = rpn.data.sources.open_split(root, "train")
    resize = rpn.Resize.keep_ratio(112, 192)
    reduced = rpn.DetectionDataset(found.images, found.labels, resize=resize, with_info=True)
    for i in range(2):
        pixels, label, info = reduced[i]
        whole = rpn.data.preprocess.preprocess_image(
            onp.asarray(Image.open(found.images[i]).convert("RGB")), resize)
        assert pixels.shape == whole.shape == (3, 112, 149)
        assert abs(pixels - whole).mean() < 0.1             # the same picture
        rows = found.labels[i]
        onp.testing.assert_allclose(label[:len(rows), 1:],
                                    rows[:, 1:] / [1280, 960, 1280, 960], atol=1e-6)
        assert info.tolist()[:4] == [112, 149, 960, 1280]
