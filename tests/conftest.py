"""Shared helpers for the tests: plain NumPy references written per box,
small settings and models, tiny runs and the options that make them, small
data folders and image files, and one tiny trained run folder.

The one place where a tiny run's options are written (``TINY``,
:func:`tiny_options`, :func:`tiny_fit`): ``tests/test_layout.py`` fails when
a test module writes its own."""
import functools
import io
import json
import os
import shutil
import signal
import struct
import textwrap
import time
import uuid
import warnings
import zlib

# one operator thread for the suite and the processes it starts, unless the
# developer chose: its images are tiny (two threads cost more than they gain
# there), and many tests run several processes at once on 2 cores.
# tests/ops/test_threads.py clears this to test rpn's own choice.
os.environ.setdefault("MXNET_OMP_MAX_THREADS", "1")

import mxnet as mx  # noqa: E402
import numpy as onp  # noqa: E402
import psutil  # noqa: E402
import pytest
from PIL import Image, ImageFile

import rpn  # noqa: F401  (switches MXNet to NumPy semantics)
from rpn.config import PRESETS
from rpn.model.network import RegionProposalNetwork

#: The default model at 64 pixels (8 x 8 feature maps): what most model
#: tests build.
SMALL = PRESETS["default"].replace(size=64, max_size=96)


# ---- tiny runs ------------------------------------------------------------------------

def tiny_options(size=64, batch_size=4, *, num_train=8, num_val=4, epochs=None):
    """``rpn train`` options of a run that takes seconds: ``size``-pixel
    images, batches of ``batch_size``, no bars, no worker processes; the
    synthetic set's ``num_train`` training and ``num_val`` validation images
    (``num_train=None``: no sizes, for other data); ``--epochs`` when given."""
    options = ["--size", str(size), "--batch-size", str(batch_size), "--quiet",
               "--workers", "0"]
    if num_train is not None:
        options += ["--set", f"num_train={num_train}", "--set", f"num_val={num_val}"]
    if epochs is not None:
        options += ["--epochs", str(epochs)]
    return options


#: ``rpn train`` options of a run that takes seconds: 64-pixel images, 8
#: training and 4 validation synthetic images, batches of 4, no bars.
TINY = tiny_options()

#: The options of ``rpn evaluate`` and ``rpn propose`` in tests: no bars, no
#: worker processes.
QUIET = ["--quiet", "--workers", "0"]


def train_tiny(out, epochs=1, extra=(), data="synthetic", **options):
    """``rpn train`` of a tiny run (:func:`tiny_options` with ``options``) of
    ``data`` into ``out``, then ``extra``; returns the exit code."""
    from rpn.cli import main
    return main(["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs)]
                + tiny_options(**options) + list(extra))


def tiny_fit(**changes):
    """The keywords of :func:`rpn.fit` for the tiny run of :data:`TINY` (a
    fresh dict each call), with ``changes``."""
    return dict(dict(size=64, batch_size=4, epochs=1, settings={"num_train": 8, "num_val": 4},
                     quiet=True), **changes)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny trained run folder shared by the tests that only read it (a
    test that changes a run copies it first, :func:`copy_run`)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert train_tiny(out) == 0
    return str(out)


@pytest.fixture(scope="session")
def mobile_run(tmp_path_factory):
    """A tiny run on MobileNet v2 at width 0.25, stride 16 (read only)."""
    out = tmp_path_factory.mktemp("mobile") / "run"
    assert train_tiny(out, extra=["--backbone", "mobilenetv2_0.25", "--set", "stride=16"]) == 0
    return str(out)


def copy_run(run, tmp_path, name="copy"):
    """A copy of the run folder ``run`` at ``tmp_path / name``."""
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return copy


def listing(folder):
    """Every file and folder below ``folder``, relative, sorted."""
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, dirs, files in os.walk(folder) for f in dirs + files)


def last_json(text):
    """The JSON object on the last line of ``text`` (a command's stdout)."""
    return json.loads(text.strip().splitlines()[-1])


def warnings_of(err):
    """The warning lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("warning:")]


def errors(err):
    """stderr without warnings, progress lines and the counts of each split."""
    import re
    return [line for line in err.strip().splitlines()
            if line.startswith("rpn ") and not line.startswith("rpn train: epoch")
            and " training images (" not in line
            and not re.match(r"rpn \w+: \w+: \d+ images", line)]


def one_line_error(capsys, *words):
    """The one line (warnings aside) a command wrote on stderr, which holds
    every one of ``words``."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def caught(function, *args, **kwargs):
    """``function``'s result and the messages of every warning it gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in seen]


# ---- models and batches ---------------------------------------------------------------

def small_model(config=SMALL, ctx=None, seed=3):
    """A freshly initialised proposal model of ``config``'s model settings
    (MXNet seeded with ``seed`` first, unless ``None``), on ``ctx`` (default
    the CPU; a context or a list)."""
    if seed is not None:
        mx.random.seed(seed)
    return RegionProposalNetwork.from_settings(config.model, ctx or [mx.cpu()])


def anchor_fn(config=SMALL):
    """The chapter's ``anchor_fn`` (:func:`rpn.rpn_anchors`) with ``config``'s
    anchors."""
    model = config.model
    return functools.partial(rpn.rpn_anchors, sizes=model.anchor_sizes,
                             ratios=model.anchor_ratios, product=model.anchor_product)


def tiny_batches(num=2, size=64, config=SMALL, size_divisor=8):
    """``num`` training batches of 2 synthetic ``size``-pixel images, as
    :func:`rpn.fit` loads them for ``config``'s model (a list)."""
    found = rpn.data.sources.open_split("synthetic", "train", synthetic=dict(
        size=size, num_train=num * 2, num_val=2, seed=0))
    return list(rpn.data.sources.make_loader(found, rpn.Resize.of(config.model), 2,
                                             train=True, size_divisor=size_divisor))


def make_trainer(model, lr=0.001, hooks=None, **kwargs):
    """The trainer :func:`rpn.fit` trains the proposal model ``model`` with
    (its step, the shared trainer, Adam, the divergence check unless
    ``hooks`` are given). ``kwargs``: the trainer's."""
    from rpn.training.hooks import DivergenceCheck
    from rpn.training.optimizer import learning_rates
    from rpn.training.step import ProposalStep
    from rpn.training.trainer import Trainer
    step = ProposalStep(model)
    kwargs = dict(dict(optimizer="adam", seed=0), **kwargs)
    return Trainer(step, model.collect_params().list_ctx(),
                   lrs=learning_rates(step.parts, lr, lr),
                   hooks=[DivergenceCheck()] if hooks is None else hooks, **kwargs)


def train_model(model, loader, epochs=1, lr=0.001, hooks=None, **kwargs):
    """Train the proposal model ``model`` on ``loader`` with
    :func:`make_trainer`'s trainer; returns the history."""
    return make_trainer(model, lr, hooks, **kwargs).train(loader, epochs)


class FakeAmp:
    """What the package may use of ``mxnet.contrib.amp``, recording calls;
    the loss is scaled by 8 and the trainer told to divide by 8, as AMP's
    scaler does."""

    def __init__(self):
        self.calls = []

    def init(self, target_dtype):
        self.calls.append(("init", target_dtype))

    def init_trainer(self, trainer):
        self.calls.append(("init_trainer", type(trainer).__name__))
        trainer._amp_original_scale = trainer._scale

    def scale_loss(self, losses, trainer):
        import contextlib
        self.calls.append(("scale_loss", len(losses)))
        trainer._scale = trainer._amp_original_scale / 8

        @contextlib.contextmanager
        def scaled():
            yield [l * 8 for l in losses]
        return scaled()


def assert_same_proposals(first, second, tol=1e-5):
    """Two models' proposals of one batch, ``(scores (B, K), boxes (B, K,
    4))`` each, are the same: scores equal within ``tol``, and every box of
    ``first`` is within ``tol`` of a box of ``second`` whose score is within
    ``tol`` of its own. (An exported graph and the same model run
    imperatively round scores differently in the last bit, so proposals of
    near-equal scores can come out in another order.)"""
    sa, ba, sb, bb = (onp.asarray(a.asnumpy() if hasattr(a, "asnumpy") else a)
                      for a in (*first, *second))
    onp.testing.assert_allclose(sa, sb, atol=tol)
    for i in range(len(sa)):
        for k in range(len(sa[i])):
            near = abs(sb[i] - sa[i, k]) <= tol
            assert (abs(bb[i][near] - ba[i, k]).max(-1) <= tol).any(), (i, k, ba[i, k])


# ---- references -----------------------------------------------------------------------

def ref_iou(a, b):
    """IoU of two corner boxes, written out by hand (float64)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def ref_giou(a, b):
    """GIoU of two corner boxes, written out (float64)."""
    hull = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = area(a) + area(b) - iw * ih
    return ref_iou(a, b) - (area(hull) - union) / area(hull)


def random_boxes(rng, n, min_size=0.02):
    """``n`` random non-degenerate boxes (n, 4) inside the unit square."""
    xy = rng.uniform(0, 1 - min_size, size=(n, 2))
    wh = rng.uniform(min_size, 0.6, size=(n, 2))
    return onp.concatenate([xy, onp.minimum(xy + wh, 1.0)], axis=1)


def random_case(rng, batch=3, anchors=60):
    """Ground truth ``(batch, 4, 5)`` (0 to 4 objects an image, padded with
    class -1, some near an anchor so that IoU > 0.7 occurs) and anchors
    ``(anchors, 4)``, float64."""
    anchor_boxes = random_boxes(rng, anchors)
    num = rng.integers(0, 5)
    gt = onp.full((batch, 4, 5), -1.0)
    for b in range(batch):
        k = rng.integers(0, num + 1)
        boxes = random_boxes(rng, k)
        # some objects sit near an anchor so that IoU > 0.7 occurs
        near = rng.random(k) < 0.5
        jitter = rng.uniform(-0.01, 0.01, size=(k, 4))
        picks = anchor_boxes[rng.integers(0, anchors, size=k)]
        boxes[near] = onp.clip(picks[near] + jitter[near], 0, 1)
        gt[b, :k, 0] = rng.integers(0, 3, size=k)
        gt[b, :k, 1:] = boxes
    return gt, anchor_boxes


@pytest.fixture
def rng():
    return onp.random.default_rng(0)


# ---- data folders ---------------------------------------------------------------------

def make_voc(root, objects, *, size=(64, 48), lists=None, extra_xml=""):
    """A VOC folder with one image an entry of ``objects``: name -> list of
    ``(class, xmin, ymin, xmax, ymax[, difficult])``, 1-based pixels as VOC
    writes them (``<difficult>`` only when given)."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    width, height = size
    for name, objs in objects.items():
        Image.new("RGB", size, (90, 120, 30)).save(os.path.join(root, "JPEGImages",
                                                                name + ".jpg"))
        body = "".join(
            f"<object><name>{c}</name>"
            + "".join(f"<difficult>{d}</difficult>" for d in difficult)
            + f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
              f"<ymax>{y1}</ymax></bndbox></object>"
            for c, x0, y0, x1, y1, *difficult in objs)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(f"<annotation>{extra_xml}<size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{body}</annotation>")
    for list_name, names in (lists or {"train": list(objects), "val": list(objects)}).items():
        with open(os.path.join(root, "ImageSets", "Main", list_name + ".txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    return str(root)


def make_coco(folder, entries, *, name="instances.json", sizes=True):
    """A COCO file and its images: ``entries`` file name -> list of bboxes
    ``[x, y, w, h]`` of the class "cell"; images 30 wide, 20 high."""
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for image_id, (file_name, boxes) in enumerate(entries.items(), 1):
        Image.new("RGB", (30, 20), (10, 20, 30)).save(os.path.join(folder, file_name))
        images.append(dict({"id": image_id, "file_name": file_name},
                           **({"height": 20, "width": 30} if sizes else {})))
        for bbox in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": bbox, "iscrowd": 0})
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "cell"}]}, f)
    return path


# ---- image files ----------------------------------------------------------------------

def write_image(path, size=(80, 100), seed=9):
    """A synthetic picture ``size`` (height, width) saved at ``path``."""
    Image.fromarray(rpn.SyntheticImages(1, *size, seed=seed)[0]).save(path)
    return str(path)


def rgb_array(height=48, width=32):
    """A smooth (h, w, 3) uint8 picture whose rows and columns all differ."""
    y, x = onp.mgrid[0:height, 0:width]
    return onp.stack([x * 7 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype("uint8")


def save(path, img, fmt=None, **options):
    img.save(path, fmt, **options)
    return str(path)


def jpeg_bytes(array, quality=95):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_with_ihdr(width, height):
    """A tiny grey PNG whose IHDR is patched to ``width`` x ``height``,
    with a correct CRC (the image data stays 2x2)."""
    buf = io.BytesIO()
    Image.new("L", (2, 2), 7).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    body = bytearray(data[16:29])
    body[0:8] = struct.pack(">II", width, height)
    data[16:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)))
    return bytes(data)


def oriented_png(tmp_path, orientation, array, name="phone.png"):
    """``array`` saved as a PNG whose EXIF says ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(tmp_path / name, Image.fromarray(array), "PNG", exif=exif.tobytes())


@pytest.fixture
def truncated_switch_untouched():
    """No test may leave Pillow's global truncated-images switch changed."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    yield
    assert ImageFile.LOAD_TRUNCATED_IMAGES == before


# ---- processes ------------------------------------------------------------------------

def leftovers(mark):
    """Live processes (not zombies) whose environment has ``RPN_TEST_MARK=mark``:
    what a test's processes left behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("RPN_TEST_MARK") == mark):
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def mark():
    """A marker for the processes of one test; what is left of them at its
    end (when it failed) gets SIGKILL."""
    mark = uuid.uuid4().hex
    yield mark
    for pid in leftovers(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def marked_env(mark, **extra):
    """This environment with ``RPN_TEST_MARK=mark`` and ``extra``."""
    return dict(os.environ, RPN_TEST_MARK=mark, **extra)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


#: A worker that starts a grandchild which ignores SIGTERM (so only the
#: supervisor's SIGKILL can end it), says it is ready, and sleeps.
FAMILY = textwrap.dedent("""
    import os, subprocess, sys, time
    out = sys.argv[1]
    grand = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "open(os.path.join(sys.argv[1], 'grand-%d' % os.getpid()), 'w').close(); "
             "time.sleep(300)")
    subprocess.Popen([sys.executable, "-c", grand, out])
    open(os.path.join(out, "child-%d" % os.getpid()), "w").close()
    time.sleep(300)
""")


def family_ready(out, n):
    """Whether ``n`` :data:`FAMILY` workers and their grandchildren started."""
    names = os.listdir(out)
    return (sum(n.startswith("child-") for n in names) >= n
            and sum(n.startswith("grand-") for n in names) >= n)


def run_launcher(args, cwd, timeout=420):
    """``python -m rpn.launch args`` in ``cwd``, its processes marked:
    ``(the finished process, the mark)``."""
    import subprocess
    import sys
    mark = uuid.uuid4().hex
    result = subprocess.run([sys.executable, "-m", "rpn.launch"] + args, env=marked_env(mark),
                            cwd=cwd, timeout=timeout, capture_output=True, text=True)
    return result, mark


def read_proposals(folder):
    """The ``proposals.json`` ``rpn predict`` wrote into ``folder``."""
    with open(os.path.join(folder, "proposals.json")) as f:
        return json.load(f)


def race_a_reader(monkeypatch, when, writer_moves_on, openings=None):
    """Make every checkpoint reader (``rpn.runs.manifest.OpenedFolder``,
    through which the checkpoint module and the manifest's check read) meet a writer
    that moves on once, calling ``writer_moves_on()``: ``when`` "before its
    files are open" or "while they are read". ``openings`` collects the
    paths opened. Returns the list that records the move (``[when]`` once
    it happened)."""
    import rpn.runs.manifest as manifest
    moved, opened = [], manifest.OpenedFolder

    def move():
        writer_moves_on()
        moved.append(when)

    class Racing(opened):
        def __init__(self, path):
            if openings is not None:
                openings.append(path)
            if not moved and when.startswith("before"):
                move()
            super().__init__(path)

        def verify(self):
            if not moved:
                move()
            return super().verify()
    monkeypatch.setattr(manifest, "OpenedFolder", Racing)
    return moved


def export_and_import(model, folder):
    """``model`` (hybridized) exported to ``folder`` as ``rpn-symbol.json``
    and ``rpn-0000.params`` and loaded back as a ``SymbolBlock`` of two
    inputs, images and sizes (MXNet's warning that it cannot infer the
    sizes' type is silenced: the caller gives them as float32)."""
    import warnings
    from mxnet import gluon
    model.export(os.path.join(folder, "rpn"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gluon.SymbolBlock.imports(os.path.join(folder, "rpn-symbol.json"),
                                         ["data0", "data1"],
                                         os.path.join(folder, "rpn-0000.params"))


def assert_exports_the_same(model, X, sizes, eager, folder):
    """``model`` hybridized, and exported to ``folder`` and imported as a
    ``SymbolBlock`` (:func:`export_and_import`), gives ``eager`` (its
    imperative proposals of ``X`` (B, 3, H, W) with ``sizes`` (B, 2)):
    :func:`assert_same_proposals`."""
    model.hybridize()
    assert_same_proposals(eager, model(X, sizes))
    loaded = export_and_import(model, folder)
    assert_same_proposals(eager, loaded(X, sizes.astype("float32")))
