"""``rpn predict`` on image files: every good image of a folder and of the
files named, each drawn (images of one name in two folders apart), and the
unreadable ones listed, not fatal."""
import os

from conftest import read_proposals, write_image
from rpn.cli import main


def test_predict_keeps_the_good_images_of_a_folder(tiny_run, tmp_path):
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    write_image(folder / "a" / "same.png", seed=1)
    write_image(folder / "b" / "same.png", seed=2)
    write_image(folder / "c.jpg", seed=3)
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image either, and not an image name")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", tiny_run, str(folder), str(folder / "a" / "same.png"),
                 str(folder / "b" / "same.png"), "--top-k", "3", "--out", str(out)])
    assert code == 1                                    # one input was unreadable
    found = read_proposals(out)
    paths = [entry["path"] for entry in found["images"]]
    assert paths == [str(folder / "c.jpg"), str(folder / "a" / "same.png"),
                     str(folder / "b" / "same.png")]
    assert [e["path"] for e in found["errors"]] == [str(folder / "broken.jpg")]
    pictures = {entry["picture"] for entry in found["images"]}
    assert len(pictures) == 3 and all(os.path.isfile(p) for p in pictures)
