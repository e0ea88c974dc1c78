"""VOC folders: image files of any extension and case, lists with a byte
order mark, per-class lists, near-miss class names, the chapter's loaders,
and every missing or refused part named."""
import codecs
import glob
import json
import os
import warnings

import pytest
from PIL import Image

import rpn
from conftest import train_tiny, warnings_of
from helpers.files import make_voc


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


def test_skip_bad_applies_to_class_discovery(tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=8, num_val=3, height=64, width=64)
    bad = sorted(glob.glob(os.path.join(root, "Annotations", "train_*.xml")))[:3]
    for path in bad:
        open(path, "w").write("<annotation><object><name>x</name>")     # cut short
    out = tmp_path / "run"
    assert train_tiny(out, data=root, num_train=None) == 1
    err = capsys.readouterr().err
    assert "3 bad annotation file(s)" in err
    assert all(os.path.basename(p)[:-4] in err for p in bad)
    assert not out.exists()
    assert train_tiny(out, 1, ["--skip-bad"], root, num_train=None) == 0
    said = warnings_of(capsys.readouterr().err)
    assert any("skipping 3 bad" in line for line in said)
    assert json.load(open(out / "config.json"))["classes"] == sorted(
        rpn.data.synthetic.SYNTHETIC_CLASSES)


def test_every_bad_line_of_a_list_is_named_and_skip_bad_leaves_them_out(tmp_path, capsys):
    """Three bad lines: all named in one error; with --skip-bad left out
    with one warning, and the run trains on the good lines (issue 29)."""
    root = make_voc(tmp_path / "voc", {n: [("cat", 1, 1, 9, 9, 0)] for n in "abcde"})
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "wb") as f:
        f.write(b"a\nb 1 2\n\xff\xfe\nc\n../../etc/passwd\nd\ne\n")
    with pytest.raises(ValueError) as error:
        rpn.list_voc_split(root, "train", ["cat"])
    message = str(error.value)
    assert "3 bad line(s) of image lists" in message
    for number, words in ((2, "expected 'name'"), (3, "not UTF-8"), (5, "refusing")):
        assert f"train.txt, line {number}: {words}" in message
    with pytest.warns(UserWarning, match="(?s)skipping 3 bad line.*line 2.*line 3.*line 5"):
        paths, _ = rpn.list_voc_split(root, "train", ["cat"], skip_bad=True)
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "c.jpg", "d.jpg", "e.jpg"]
    out = tmp_path / "run"
    assert train_tiny(out, data=root, num_train=None) == 1
    assert "3 bad line(s)" in capsys.readouterr().err
    assert train_tiny(out, data=root, num_train=None, extra=["--skip-bad"]) == 0
    said = warnings_of(capsys.readouterr().err)
    assert len([line for line in said if "skipping 3 bad line(s)" in line]) == 1
