"""rpn.data.image_check: every image of a split checked before training, in
worker processes that die with their parent and ignore Ctrl-C; bad files
listed in order, links that lead nowhere named."""
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as onp
import pytest
from PIL import Image

from conftest import caught
from helpers.files import (jpeg_bytes, make_coco, make_voc, oriented_png, png_with_ihdr,
                           rgb_array, save)
from rpn.data import image_check as check_module
from rpn.data.image_check import ImageCheck, check_images
from rpn.data.image_set import LeftOut
from rpn.data.images import BadImageError, TruncatedImageWarning, read_image
from rpn.data.reports import describe_split
from rpn.data.sources import DataError, check_split, open_split

pytestmark = pytest.mark.usefixtures("truncated_switch_untouched")


@pytest.fixture
def folder(tmp_path):
    """Good and bad files, in a known order, with the expected verdicts."""
    good = save(tmp_path / "a_good.jpg", Image.fromarray(rgb_array()), "JPEG")
    empty = tmp_path / "b_empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "c_text.jpg"
    text.write_text("not a picture")
    data = jpeg_bytes(rgb_array(64, 64))
    cut = tmp_path / "d_cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    stub = tmp_path / "e_stub.jpg"
    stub.write_bytes(data[:200])
    turned = oriented_png(tmp_path, 6, rgb_array(6, 10), "f_turned.png")
    wrong = save(tmp_path / "g_wrong_size.png", Image.fromarray(rgb_array(6, 10)))
    flat = tmp_path / "h_flat.png"
    flat.write_bytes(png_with_ihdr(0, 3))
    paths = [good, str(empty), str(text), str(cut), str(stub), turned, wrong, str(flat),
             str(tmp_path / "i_missing.jpg")]
    expected = [(48, 32), None, None, None, None, (6, 10), (20, 20), None, None]
    return paths, expected


@pytest.mark.parametrize("workers", [0, 2])
def test_check_images_lists_every_bad_file_in_order(folder, workers, capsys):
    paths, expected = folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = check_images(paths, expected, num_workers=workers, progress=False)
    assert isinstance(result, ImageCheck)
    assert result.sizes == [(48, 32), None, None, (64, 64), None, (6, 10), None, None, None]
    assert [p for p, _ in result.bad] == [paths[i] for i in (1, 2, 4, 6, 7, 8)]
    reasons = dict(result.bad)
    assert reasons[paths[1]].startswith("empty file")
    assert reasons[paths[2]].startswith("not an image format")
    assert reasons[paths[4]].startswith("the file ends early")
    assert reasons[paths[6]] == "annotation says 20x20, image is 10x6"
    assert reasons[paths[7]].startswith("its header says 0x3 pixels")
    assert reasons[paths[8]] == "file not found"
    assert result.truncated == [paths[3]]
    assert len(caught) == 1 and caught[0].category is TruncatedImageWarning
    assert paths[3] in str(caught[0].message)
    assert capsys.readouterr().err == ""


def test_check_images_without_expected_sizes_applies_orientation(folder):
    paths, _ = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        result = check_images(paths, num_workers=0, progress=False)
    assert result.sizes[5] == (10, 6) and result.sizes[6] == (6, 10)
    assert [p for p, _ in result.bad] == [paths[i] for i in (1, 2, 4, 7, 8)]


def test_check_images_progress_bar_on_stderr(folder, capsys):
    paths, _ = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        check_images(paths[:1], num_workers=0, desc="scanning photos")
    captured = capsys.readouterr()
    assert "scanning photos" in captured.err and "1/1" in captured.err
    assert captured.out == ""


def test_check_images_arguments(folder):
    paths, _ = folder
    with pytest.raises(ValueError, match="2 expected sizes for 9 paths"):
        check_images(paths, [None, None], progress=False)
    with pytest.raises(ValueError, match="num_workers"):
        check_images(paths, num_workers=-1, progress=False)
    with pytest.raises(ValueError, match=r"expected_sizes\[1\]"):
        check_images(paths[:2], [None, (0, 4)], progress=False)
    assert check_images([], progress=False) == ImageCheck([], [], [])


def test_check_matches_read_image(folder):
    """check_images (JPEGs decoded at 1/8) agrees with a full read."""
    paths, expected = folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedImageWarning)
        result = check_images(paths, expected, num_workers=0, progress=False)
        for path, size, stated in zip(paths, result.sizes, expected):
            try:
                got = read_image(path, expected_size=stated).shape[:2]
            except (BadImageError, FileNotFoundError):
                got = None
            assert got == size, path


def _worker_state(_):
    """In a pool worker: its parent-death signal (Linux) and SIGINT handler."""
    import ctypes
    sig = ctypes.c_int(-1)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)   # PR_GET_PDEATHSIG
    return sig.value, signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_pool_initializer_sets_up_workers():
    import multiprocessing
    with multiprocessing.get_context().Pool(1, initializer=check_module._init_worker) as pool:
        pdeathsig, ignores_sigint = pool.map(_worker_state, [0])[0]
    assert ignores_sigint
    if sys.platform.startswith("linux"):
        assert pdeathsig == signal.SIGKILL


# Each child starts with Python's own Ctrl-C handler, as at a terminal: a
# shell's background job (``make test &``) inherits SIGINT ignored, and
# Python then leaves it ignored.
_DEFAULT_CTRL_C = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

_CHILD = _DEFAULT_CTRL_C + """
import sys
from rpn.data.image_check import check_images
paths = [l.strip() for l in open(sys.argv[1])]
check_images(paths, num_workers=2, progress=False)
"""


def _busy_child(tmp_path):
    """A process checking many images with 2 workers, and its workers."""
    psutil = pytest.importorskip("psutil")
    big = save(tmp_path / "big.jpg", Image.fromarray(onp.random.default_rng(0).integers(
        0, 256, (1200, 1600, 3), dtype=onp.uint8)), "JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([big] * 5000))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(listing)],
                             start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
        workers = psutil.Process(child.pid).children()
    assert len(workers) == 2, child.stderr.read().decode()
    time.sleep(0.5)     # well into the checks
    return psutil, child, workers


def _gone(psutil, process):
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_ctrl_c_stops_the_check_and_its_workers(tmp_path):
    psutil, child, workers = _busy_child(tmp_path)
    os.killpg(child.pid, signal.SIGINT)      # what a terminal's Ctrl-C does
    try:
        child.wait(timeout=20)
    finally:
        child.kill()
    stderr = child.stderr.read()
    # the parent's traceback only: the workers ignore the signal
    assert b"KeyboardInterrupt" in stderr and b"PoolWorker" not in stderr, stderr
    deadline = time.monotonic() + 10
    while not all(_gone(psutil, w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(psutil, w) for w in workers)


# Ctrl-C where Python would swallow it: in the parent's at-fork callback while
# the pool forks its workers, or in a finalizer while results come in. Either
# way Python prints "Exception ignored" and, unless the check raises it again,
# checks every image (the 20 s hang of a check of thousands of images).
_SWALLOWED = _DEFAULT_CTRL_C + """
import gc, os, signal, sys, time
import psutil
from rpn.data import image_check
where, listing = sys.argv[1], sys.argv[2]
paths = [l.strip() for l in open(listing)]

def interrupt_here():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)                 # Python runs the handler here

if where == "fork":
    fired = []
    def after_fork():
        if not fired:
            fired.append(1)
            interrupt_here()
    os.register_at_fork(after_in_parent=after_fork)
else:
    class Interrupts:
        def __del__(self):
            interrupt_here()
    class Bar(image_check.tqdm):
        seen = 0
        def update(self, n=1):
            super().update(n)
            Bar.seen += n
            if Bar.seen == 3:
                Interrupts()            # freed at once: its __del__ runs here
    image_check.tqdm = Bar
try:
    image_check.check_images(paths, num_workers=2, progress=False)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
children = psutil.Process().children()
psutil.wait_procs(children, timeout=10)
print("workers left", sum(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                          for c in children), flush=True)
"""


@pytest.mark.parametrize("where", ["fork", "finalizer"])
def test_a_ctrl_c_python_would_swallow_still_stops_the_check(tmp_path, where):
    pytest.importorskip("psutil")
    image = save(tmp_path / "a.jpg", Image.fromarray(rgb_array()), "JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([image] * 400))
    done = subprocess.run([sys.executable, "-c", _SWALLOWED, where, str(listing)],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == ["interrupted", "workers left 0"], \
        done.stdout + done.stderr
    assert "PoolWorker" not in done.stderr, done.stderr     # no worker got it


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent(tmp_path):
    psutil, child, workers = _busy_child(tmp_path)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(psutil, w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if not _gone(psutil, w)]
    for w in alive:
        w.kill()
    assert alive == []


def test_a_voc_folder_of_links_is_read_and_bad_links_are_named(tmp_path):
    raw = tmp_path / "raw"
    root = make_voc(tmp_path / "voc", {n: [("cat", 2, 2, 30, 30)] for n in "abcd"})
    folder = os.path.join(root, "JPEGImages")
    raw.mkdir()
    for name in "ab":            # ln -s /data/raw/x.jpg JPEGImages/
        os.rename(os.path.join(folder, name + ".jpg"), raw / (name + ".jpg"))
        os.symlink(raw / (name + ".jpg"), os.path.join(folder, name + ".jpg"))
    found = check_split(open_split(root, "train"), num_workers=0, progress=False)
    assert found.ids == list("abcd") and found.sizes == [(48, 64)] * 4
    os.remove(raw / "a.jpg")                                          # dangling
    os.remove(os.path.join(folder, "c.jpg"))
    os.symlink(os.path.join(folder, "c.jpg"), os.path.join(folder, "c.jpg"))   # a loop
    with pytest.raises(DataError) as error:
        check_split(open_split(root, "train"), num_workers=0, progress=False)
    message = str(error.value)
    assert "2 of 4 images cannot be used" in message
    assert f"a.jpg: a symbolic link to {raw / 'a.jpg'}, which does not exist (a dangling " \
           "link)" in message
    assert "c.jpg: a loop of symbolic links" in message
    kept, seen = caught(check_split, open_split(root, "train"), skip_bad=True,
                        num_workers=0, progress=False)
    assert kept.ids == ["b", "d"]
    assert kept.left_out == (LeftOut("unreadable", 2, 2, "that cannot be used (--skip-bad)"),)
    assert describe_split(kept, "train") == (
        "train: 2 images, 2 objects; left out: 2 images (2 objects) that cannot be used "
        "(--skip-bad)")
    for entry in ("../a", "C:a"):
        with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
            f.write(entry + "\n")
        with pytest.raises(ValueError, match="refusing image name"):
            open_split(root, "train")


def test_a_coco_image_folder_of_links_is_read_and_a_dangling_link_named(tmp_path):
    raw, images = tmp_path / "raw", tmp_path / "images"
    path = make_coco(str(raw), {"x.jpg": [[1, 1, 5, 5]], "y.jpg": [[1, 1, 5, 5]]})
    images.mkdir()
    for name in ("x.jpg", "y.jpg"):
        os.symlink(raw / name, images / name)
    found = check_split(open_split(path, images=str(images)), num_workers=0, progress=False)
    assert found.names == ["x.jpg", "y.jpg"]
    os.remove(raw / "y.jpg")
    with pytest.raises(DataError, match=r"y\.jpg: a symbolic link to .*raw/y\.jpg, which "
                       r"does not exist \(a dangling link\)"):
        check_split(open_split(path, images=str(images)), num_workers=0, progress=False)


# ---- what is not a regular file: named, never opened for reading (issue 29) ----------

@pytest.mark.parametrize("workers", [0, 2])
def test_a_fifo_a_device_and_a_folder_are_bad_images_not_a_hang(tmp_path, workers):
    good = save(tmp_path / "good.png", Image.fromarray(rgb_array()))
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)                     # opened for reading, it would wait for ever
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    check = check_images([good, str(fifo), "/dev/zero", str(folder)], num_workers=workers,
                         progress=False)
    assert check.sizes == [(48, 32), None, None, None]
    assert [reason.split(",")[0] for _, reason in check.bad] == [
        "a FIFO (named pipe)", "a character device", "a folder"]
    with pytest.raises(BadImageError, match=r"pipe\.jpg: a FIFO \(named pipe\), not a regular"):
        read_image(str(fifo))


def test_training_on_a_voc_folder_with_a_fifo_names_it(tmp_path, capsys):
    from conftest import train_tiny
    root = make_voc(tmp_path / "voc", {n: [("cat", 2, 2, 30, 30)] for n in "abcde"})
    fifo = os.path.join(root, "JPEGImages", "c.jpg")
    os.remove(fifo)
    os.mkfifo(fifo)
    out = tmp_path / "run"
    capsys.readouterr()
    assert train_tiny(out, data=root, num_train=None) == 1
    said = capsys.readouterr().err
    assert "1 of 5 train images cannot be used" in said
    assert "c.jpg: a FIFO (named pipe), not a regular file" in said
    assert train_tiny(out, data=root, num_train=None, extra=["--skip-bad"]) == 0
    said = capsys.readouterr().err
    assert "warning: leaving out 1 of 5 train images" in said and "c.jpg: a FIFO" in said
