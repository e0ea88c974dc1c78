"""Shared fixtures and helpers of the tests: the options of tiny runs and
tiny trained run folders, the small model settings (``SMALL``), what
commands print, and the fixtures; the rest is in ``tests/helpers/`` by kind
(``models``: small models,
batches and trainers; ``references``: plain NumPy references written per
box; ``files``: small data folders and image files; ``processes``: the
processes a test starts, and what they leave).

The one place where a tiny run's options are written (``TINY``,
:func:`tiny_options`, :func:`tiny_fit`): ``tests/test_layout.py`` fails when
a test module writes its own."""
import json
import os
import shutil
import signal
import uuid
import warnings

# one operator thread for the suite and the processes it starts, unless the
# developer chose: its images are tiny (two threads cost more than they gain
# there), and many tests run several processes at once on 2 cores.
# tests/ops/test_threads.py clears this to test rpn's own choice.
os.environ.setdefault("MXNET_OMP_MAX_THREADS", "1")

import numpy as onp  # noqa: E402
import pytest  # noqa: E402
from PIL import ImageFile  # noqa: E402

import rpn  # noqa: E402, F401  (switches MXNet to NumPy semantics)
from helpers.processes import leftovers  # noqa: E402
from rpn.config import PRESETS  # noqa: E402

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


# ---- run folders read while written ------------------------------------------------

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


# ---- fixtures -------------------------------------------------------------------------

@pytest.fixture
def rng():
    return onp.random.default_rng(0)


@pytest.fixture
def truncated_switch_untouched():
    """No test may leave Pillow's global truncated-images switch changed."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    yield
    assert ImageFile.LOAD_TRUNCATED_IMAGES == before


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
