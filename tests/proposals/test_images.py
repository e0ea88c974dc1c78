"""``rpn predict`` on image files: every good image of a folder and of the
files named, each drawn (images of one name in two folders apart), and the
unreadable ones listed, not fatal."""
import os

from conftest import read_proposals
from helpers.files import write_image
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


# ---- the output folder: nothing of the user's overwritten (issue 29) -----------------

def checksums(folder):
    import hashlib
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(folder))}


def test_predict_into_a_folder_of_its_inputs_is_refused(tiny_run, tmp_path, capsys):
    from conftest import one_line_error
    photos = tmp_path / "imgs"
    photos.mkdir()
    for i in range(3):
        write_image(photos / f"photo{i}.png", size=(41, 65), seed=i)
    before = checksums(photos)
    single = str(photos / "photo1.png")
    for argv in ([str(photos)], [single], [str(tmp_path / "other.png"), single]):
        if not os.path.exists(tmp_path / "other.png"):
            write_image(tmp_path / "other.png")
        capsys.readouterr()
        assert main(["predict", "--checkpoint", tiny_run, *argv, "--out", str(photos)]) == 2
        one_line_error(capsys, str(photos), "input images")
    assert checksums(photos) == before                   # every photograph untouched
    # a run folder (the checkpoint's own) is refused too
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, single, "--out", tiny_run]) == 2
    one_line_error(capsys, "holds a run")


def test_a_users_files_in_the_output_folder_are_never_replaced(tiny_run, tmp_path, capsys):
    from conftest import one_line_error
    photo = write_image(tmp_path / "mine.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.png").write_bytes(b"the user's own picture")
    assert main(["predict", "--checkpoint", tiny_run, photo, "--out", str(out)]) == 0
    first = read_proposals(out)["images"][0]["picture"]
    assert first == str(out / "mine-2.png")
    assert (out / "mine.png").read_bytes() == b"the user's own picture"
    # a second predict replaces its own picture, and still not the user's
    assert main(["predict", "--checkpoint", tiny_run, photo, "--out", str(out)]) == 0
    assert read_proposals(out)["images"][0]["picture"] == first
    assert sorted(os.listdir(out)) == [".lock", "mine-2.png", "mine.png", "proposals.json"]
    # a proposals.json that predict did not write is not replaced
    (out / "proposals.json").write_text('{"mine": true}')
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, photo, "--out", str(out)]) == 2
    one_line_error(capsys, "proposals.json", "not the proposals.json of rpn predict")
    assert (out / "proposals.json").read_text() == '{"mine": true}'


def test_a_picture_that_cannot_be_drawn_costs_only_the_picture(tiny_run, tmp_path, capsys,
                                                               monkeypatch):
    """Drawing fails for one image (injected: matplotlib's error for a
    picture too large, as a renderer past its limits raises it); its
    proposals and every other image's are written. A 1 x 20,000 strip
    itself is drawn, scaled to 1,600 pixels on its longer side."""
    from PIL import Image
    import rpn.evaluation.pictures as pictures
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 20000), (90, 120, 30)).save(strip)
    square = write_image(tmp_path / "square.png", size=(64, 64))
    broken = write_image(tmp_path / "broken.png", size=(48, 40))
    draw = pictures.draw_image_proposals

    def failing(image, boxes, scores, path, **kwargs):
        if os.path.basename(path) == "broken.png":
            raise ValueError("Image size of 48x40 pixels is too large")
        return draw(image, boxes, scores, path, **kwargs)
    monkeypatch.setattr(pictures, "draw_image_proposals", failing)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, str(strip), square, broken, "--out",
                 str(out)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "drawn" in line]
    assert len(said) == 1 and "broken.png" in said[0] and "too large" in said[0]
    found = read_proposals(out)
    strip_entry, square_entry, broken_entry = found["images"]
    assert broken_entry["picture"] is None and "too large" in broken_entry["picture_error"]
    assert broken_entry["width"] * broken_entry["height"] == 48 * 40
    assert "proposals" in broken_entry
    for entry in (strip_entry, square_entry):
        assert os.path.isfile(entry["picture"]) and "picture_error" not in entry
    assert max(Image.open(strip_entry["picture"]).size) <= 1600
    assert sorted(os.listdir(out)) == [".lock", "proposals.json", "square.png", "strip.png"]


def test_a_fifo_among_the_images_is_a_bad_image_not_a_hang(tiny_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "good.png")
    os.mkfifo(folder / "pipe.jpg")
    fifo = tmp_path / "given.png"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, str(folder), str(fifo), "--out",
                 str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    cannot = [line for line in err if "cannot read" in line]
    assert len(cannot) == 2 and all("a FIFO (named pipe)" in line for line in cannot)
    found = read_proposals(out)
    assert [e["path"] for e in found["errors"]] == [str(folder / "pipe.jpg"), str(fifo)]
    assert [e["path"] for e in found["images"]] == [str(folder / "good.png")]


def test_names_are_printed_quoted_and_escaped(tiny_run, tmp_path, capsys):
    """A name holding a newline and an escape cannot forge a line or send
    the terminal a sequence."""
    folder = tmp_path / "photos"
    folder.mkdir()
    forged = "x\nrpn predict: error: forged\x1b[2J.png"
    (folder / forged).write_bytes(b"not an image")
    write_image(folder / "tiny\x1b[31m.png", size=(20, 2000))    # warned: a panorama
    capsys.readouterr()
    assert main(["predict", "--checkpoint", tiny_run, str(folder), "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning:") and "tiny\\x1b[31m" in lines[0]
    assert lines[1].startswith("rpn predict: cannot read ") and repr(str(folder / forged)) \
        in lines[1]
