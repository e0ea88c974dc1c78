"""Detection data: VOC parsing, augmentation geometry, loaders, bad input."""
import codecs
import os
import warnings

import numpy as onp
import pytest
from PIL import Image

import rpn


def make_voc(root, objects, *, size=(64, 48), lists=None, extra_xml=""):
    """A VOC tree with one image an entry of ``objects``: name -> list of
    (class, xmin, ymin, xmax, ymax, difficult), 1-based pixels."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    width, height = size
    for name, objs in objects.items():
        Image.new("RGB", size, (90, 120, 30)).save(os.path.join(root, "JPEGImages", name + ".jpg"))
        body = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for c, x0, y0, x1, y1, d in objs)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(f"<annotation>{extra_xml}<size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{body}</annotation>")
    for list_name, lines in (lists or {"train": list(objects), "val": list(objects)}).items():
        with open(os.path.join(root, "ImageSets", "Main", list_name + ".txt"), "w") as f:
            f.write("".join(line + "\n" for line in lines))
    return str(root)


def test_voc_labels_are_zero_based_pixels_and_difficult_is_a_keyword(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 2, 30, 40, 0), ("dog", 5, 5, 20, 20, 1),
                                     ("cow", 3, 3, 9, 9, 0)]})
    labels = rpn.read_voc_detection_labels(root, ["a"], ["cat", "dog"])
    onp.testing.assert_array_equal(labels[0], [[0, 0, 1, 29, 39], [1, 4, 4, 19, 19]])
    labels = rpn.read_voc_detection_labels(root, ["a"], ["cat", "dog"], keep_difficult=False)
    onp.testing.assert_array_equal(labels[0], [[0, 0, 1, 29, 39]])


def test_image_files_of_other_extensions_and_cases_are_found(tmp_path):
    root = make_voc(tmp_path, {n: [("cat", 1, 1, 9, 9, 0)] for n in ("a", "b", "c", "d")})
    folder = os.path.join(root, "JPEGImages")
    os.rename(os.path.join(folder, "b.jpg"), os.path.join(folder, "b.JPG"))
    os.rename(os.path.join(folder, "c.jpg"), os.path.join(folder, "c.jpeg"))
    os.remove(os.path.join(folder, "d.jpg"))
    Image.new("RGB", (64, 48), (1, 2, 3)).save(os.path.join(folder, "d.png"))
    Image.new("RGB", (64, 48), (1, 2, 3)).save(os.path.join(folder, "a.png"))   # .jpg wins
    found = rpn.data.sources.open_split(root, "train", classes=["cat"])
    assert [os.path.basename(p) for p in found.images] == ["a.jpg", "b.JPG", "c.jpeg", "d.png"]
    assert [os.path.basename(p) for p in rpn.read_voc_images(root, "Main/train.txt",
                                                             lazy=True)[0]] == \
        ["a.jpg", "b.JPG", "c.jpeg", "d.png"]


def test_a_list_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)], "b": [("cat", 1, 1, 9, 9, 0)]})
    listing = os.path.join(root, "ImageSets", "Main", "train.txt")
    with open(listing, "wb") as f:
        f.write(codecs.BOM_UTF8 + b"a\r\nb\r\n\r\n")
    found = rpn.data.sources.open_split(root, "train", classes=["cat"])
    assert list(found.ids) == ["a", "b"]


def test_class_names_that_differ_only_in_case_or_spaces_are_named(tmp_path):
    root = make_voc(tmp_path, {"a": [("Cat", 1, 1, 9, 9, 0), ("cat", 2, 2, 9, 9, 0)],
                               "b": [("c at", 1, 1, 9, 9, 0), ("dog", 1, 1, 9, 9, 0)]})
    with pytest.warns(UserWarning, match=r"'Cat' \(1, not 'cat'\), 'c at' \(1, not 'cat'\)"):
        found = rpn.data.sources.open_split(root, "train", classes=["cat"])
    assert [len(label) for label in found.labels] == [1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # another class, asked for or not, is no near miss
        rpn.data.sources.open_split(root, "train", classes=["cat", "Cat", "c at"])
        rpn.data.sources.open_split(root, "train", classes=["dog"])


def test_per_class_lists_are_preferred_and_negatives_skipped(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)], "b": [("dog", 1, 1, 9, 9, 0)],
                               "c": [("cow", 1, 1, 9, 9, 0)]},
                    lists={"train": ["a", "b", "c"], "val": ["a"],
                           "cat_train": ["a  1", "b -1", "c  0"],
                           "dog_train": ["a -1", "b  1", "c -1"]})
    paths, labels = rpn.list_voc_split(root, "train", ["cat", "dog"])
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "b.jpg"]
    images, names = rpn.read_voc_images(root, ["Main/cat_train.txt"])
    assert names == ["a"] and images[0].shape == (48, 64, 3)
    # without per-class lists, the plain list is used, images without objects
    # included: the training loader leaves them out (one rule, one warning)
    paths, labels = rpn.list_voc_split(root, "train", ["cat", "cow"])
    assert len(paths) == 3 and [len(lab) for lab in labels] == [1, 0, 1]
    resize = rpn.Resize.fixed_size(32, 32)
    with pytest.warns(UserWarning, match="training on 2 of 3 images: 1 have no object"):
        loader = rpn.data.loader.make_loader(paths, labels, resize, 2, train=True)
    assert len(loader.dataset) == 2
    assert len(rpn.data.loader.make_loader(paths, labels, resize, 2, train=False).dataset) == 3
    with pytest.raises(rpn.data.image_set.DataError, match="no training image"):
        rpn.data.loader.make_loader(paths[1:2], labels[1:2], resize, 1, train=True)


def test_loaders_give_the_chapters_shapes_on_a_written_synthetic_tree(tmp_path):
    root = rpn.write_voc(str(tmp_path), num_train=6, num_val=3, height=64, width=64)
    train_iter, val_iter = rpn.load_data_voc_detection(
        2, 32, 48, classes=rpn.SYNTHETIC_CLASSES, voc_dir=root)
    X, Y = next(iter(train_iter))
    assert X.shape == (2, 3, 32, 48) and Y.shape[0] == 2 and Y.shape[2] == 5
    assert len(train_iter) == 3 and len(val_iter) == 2
    Y = Y.asnumpy()
    valid = Y[..., 0] >= 0
    assert valid.any(axis=1).all()
    assert (Y[valid][:, 1:] >= 0).all() and (Y[valid][:, 1:] <= 1).all()
    assert (Y[~valid] == -1).all()


def test_voc_and_in_memory_synthetic_sets_agree(tmp_path):
    root = rpn.write_voc(str(tmp_path), num_train=3, num_val=1, height=40, width=40)
    images = rpn.SyntheticImages(3, 40, 40)
    paths, labels = rpn.list_voc_split(root, "train", rpn.SYNTHETIC_CLASSES)
    assert len(paths) == 3
    for path, got in zip(paths, labels):
        index = int(os.path.basename(path)[len("train_"):-len(".jpg")])
        onp.testing.assert_array_equal(got, images.labels[index])


def test_synthetic_set_is_deterministic_and_within_its_specification():
    a, b = rpn.SyntheticImages(40, 96, 96, seed=3), rpn.SyntheticImages(40, 96, 96, seed=3)
    onp.testing.assert_array_equal(a[5], b[5])
    assert not onp.array_equal(a[5], rpn.SyntheticImages(40, 96, 96, seed=4)[5])
    counts = [len(label) for label in a.labels]
    assert min(counts) >= 1 and max(counts) <= 6
    boxes = onp.concatenate(a.labels)[:, 1:]
    sides = onp.concatenate([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1]) / 96
    assert sides.min() >= 0.08 - 1 / 96 and sides.max() <= 0.8 + 1 / 96
    aspect = (boxes[:, 2] - boxes[:, 0] + 1) / (boxes[:, 3] - boxes[:, 1] + 1)
    assert aspect.min() >= 1 / 3 - 0.05 and aspect.max() <= 3 + 0.3


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


def test_missing_folder_split_and_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        rpn.load_data_voc_detection(2, 32, 32, voc_dir=str(tmp_path / "nowhere"))
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)]}, lists={"train": ["a", "ghost"]})
    with pytest.raises(ValueError, match="(?s)1 bad image.*ghost: annotation not found.*no "
                       "image ghost.jpg"):
        rpn.list_voc_split(root, "train", ["cat"])
    with pytest.warns(UserWarning, match="(?s)skipping 1 bad.*ghost"):
        paths, _ = rpn.list_voc_split(root, "train", ["cat"], skip_bad=True)
    assert [os.path.basename(p) for p in paths] == ["a.jpg"]
    with pytest.raises(FileNotFoundError, match=r"1 listed image\(s\) absent.*'ghost'"):
        rpn.read_voc_images(root, "Main/train.txt", lazy=True)
    with pytest.raises(FileNotFoundError, match="val"):
        rpn.list_voc_split(root, "val", ["cat"])
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(FileNotFoundError, match="Annotations"):
        rpn.load_data_voc_detection(2, 32, 32, voc_dir=str(bare))


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


@pytest.mark.parametrize("xml, match", [
    ("<annotation><object><name>cat</name>", "well-formed"),
    ("<annotation><object><name>cat</name></object></annotation>", "bndbox"),
    ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
     "<xmax>x</xmax><ymax>5</ymax></bndbox></object></annotation>", "not a number"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat"
     "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>5</ymax></bndbox>"
     "</object></annotation>", "outside"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "boom">]><annotation>&e;</annotation>',
     "safe"),
])
def test_bad_annotations_name_their_file(tmp_path, xml, match):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)], "b": [("cat", 1, 1, 9, 9, 0)]})
    with open(os.path.join(root, "Annotations", "b.xml"), "w") as f:
        f.write(xml)
    with pytest.raises(ValueError, match="1 bad annotation") as error:
        rpn.read_voc_detection_labels(root, ["a", "b"], ["cat"])
    assert "b.xml" in str(error.value) and match in str(error.value)
    with pytest.warns(UserWarning, match="skipping 1 bad annotation"):
        labels = rpn.read_voc_detection_labels(root, ["a", "b"], ["cat"], skip_bad=True)
    assert labels[1] is None and len(labels[0]) == 1


def test_one_error_lists_every_bad_annotation(tmp_path):
    root = make_voc(tmp_path, {n: [("cat", 1, 1, 9, 9, 0)] for n in "abcd"})
    for name in "bd":
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("<annotation><object><name>cat</name>")
    with pytest.raises(ValueError, match="2 bad annotation") as error:
        rpn.list_voc_split(root, "train", ["cat"])
    assert "b.xml" in str(error.value) and "d.xml" in str(error.value)


def test_an_image_list_that_is_not_utf8_names_file_and_line(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)]})
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "wb") as f:
        f.write(b"a\n\xff\xfe\xe9t\xe9\n")
    with pytest.raises(ValueError, match=r"train.txt, line 2: not UTF-8"):
        rpn.list_voc_split(root, "train", ["cat"])


def test_unknown_class_and_escaping_names_are_refused(tmp_path):
    root = make_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9, 0)]})
    with pytest.raises(ValueError, match="unicorn"):
        rpn.load_data_voc_detection(1, 16, 16, classes=["unicorn"], voc_dir=root)
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("../../etc/passwd\n")
    with pytest.raises(ValueError, match="refusing"):
        rpn.list_voc_split(root, "train", ["cat"])


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
