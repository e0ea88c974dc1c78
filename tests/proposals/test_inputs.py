"""The image files ``rpn predict`` is given, and inputs that used to give
nothing without a word (issue 18): links that lead nowhere, a folder
without images, a panorama the resize rule flattens."""
import json
import os

import rpn
from conftest import warnings_of
from helpers.files import write_image
from rpn.cli import main


def test_links_that_lead_nowhere_are_named_in_a_warning(tiny_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "good.png")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    said = warnings_of(captured.err)
    assert len(said) == 1 and "3 image link(s)" in said[0]
    assert "dangling.jpg" in said[0] and "does not exist" in said[0]
    assert "loop-a.jpg" in said[0] and "loop of symbolic links" in said[0]
    assert json.loads(captured.out)["images"] == 1


def test_a_folder_of_broken_links_only_is_an_error(tiny_run, tmp_path, capsys):
    folder = tmp_path / "links"
    folder.mkdir()
    os.symlink(folder / "gone.jpg", folder / "a.jpg")
    assert main(["predict", "--checkpoint", tiny_run, str(folder), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{folder} holds no image file" in err and "a.jpg" in err


def test_a_voc_root_is_an_error_that_points_at_jpegimages(tiny_run, tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=1, height=32, width=32)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", tiny_run, root, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no image file" in err[0]
    assert os.path.join(root, "JPEGImages") in err[0]
    assert not out.exists()


def test_an_image_the_resize_flattens_below_the_stride_is_warned(tiny_run, tmp_path,
                                                                  capsys):
    panorama = write_image(tmp_path / "panorama.png", size=(20, 2000))
    square = write_image(tmp_path / "square.png", size=(64, 64))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, panorama, square, "--out",
                 str(tmp_path / "out")]) == 0
    said = warnings_of(capsys.readouterr().err)
    assert len(said) == 1 and "panorama.png" in said[0]
    assert "2000x20" in said[0] and "stride of 8" in said[0]
