"""The run's event log: ``metrics.jsonl``, and the same rows as TensorBoard
events.

Two hooks of :class:`rpn.training.trainer.Trainer` (detectron2's
``JSONWriter`` and ``TensorboardXWriter``, mmdetection's ``scalars.json``
and TensorBoard backend), written by rank 0 only:

* :class:`EventLog` writes ``RUN/metrics.jsonl``: one JSON object a line,
  a ``step`` row at every read of the device (every ``log_interval``
  steps, and at the end of an epoch) and an ``epoch`` row after every
  epoch. A step row has ``epoch`` (from 1), ``step`` (steps done in the
  epoch), ``steps`` (steps an epoch), ``global_step``, ``loss`` (the mean
  since the last row), ``loss_<term>`` for each term of the step's loss
  (``loss_class``, ``loss_box``, and ``loss_extra`` with the localisation
  settings), ``lr_<part>`` (each part's learning rate, ``lr_backbone``,
  ``lr_output``), ``images_per_sec``, the running ``class_err`` and
  ``box_mae``, and ``time`` (seconds since the run started here). An epoch
  row is the epoch's record of ``metrics.json``'s history (``loss``, the
  ``loss_<term>`` means, the chapter's metrics, ``images_per_sec``, and the
  validation recall ``AR@100`` ... when it was measured after the epoch)
  with ``global_step``.

  The file is created atomically (:mod:`rpn.runs.fileio`) and then
  appended to, one line a ``write`` through a descriptor that was opened
  without following links. A process killed mid-line leaves at most a cut
  last line, which :func:`read_event_log` skips; a resumed run first keeps
  only the whole rows of the epochs its checkpoint holds.

* :class:`TensorBoardEvents` writes the numbers of the same rows as
  TensorBoard scalars (``train/<key>`` at each step row, ``epoch/<key>`` at
  each epoch row, against ``global_step``) into ``RUN/tensorboard/``
  (``tensorboard --logdir RUN``) through ``tensorboardX``'s
  ``SummaryWriter``: a maintained writer that needs neither TensorFlow nor
  PyTorch (protobuf and NumPy only). It is optional (``pip install
  tensorboardX``, or the package's ``tensorboard`` extra); without it the
  hook says so in one line and writes nothing. A resumed run purges the
  events of the epochs it trains again (TensorBoard's ``purge_step``).
"""
import errno
import json
import os
import stat
import time
import warnings

from ..evaluation.recall import NO_OBJECTS
from ..runs.fileio import NOFOLLOW, UnsafePathError, disk_full_names, make_dir, write_bytes
from .hooks import Hook

__all__ = ["EventLog", "TensorBoardEvents", "read_event_log", "step_row", "epoch_row",
           "EVENT_LOG", "TENSORBOARD_DIR"]

#: The event log's name in a run folder.
EVENT_LOG = "metrics.jsonl"
#: The folder of TensorBoard events in a run folder.
TENSORBOARD_DIR = "tensorboard"
_SKIPPED = ("kind", "epoch", "step", "steps", "global_step")


def step_row(event, started):
    """The row of a step ``event`` of the trainer (see
    :mod:`rpn.training.trainer`); ``started``: the time the run started."""
    row = {"kind": "step", "epoch": event["epoch"] + 1, "step": event["step"] + 1,
           "steps": event["steps"], "global_step": event["global_step"],
           "loss": event["loss"]}
    row.update({f"loss_{name}": value for name, value in event["terms"].items()})
    row.update({f"lr_{name}": rate for name, rate in event["lr"].items()})
    row.update(images_per_sec=event["images_per_sec"], class_err=event["class_err"],
               box_mae=event["box_mae"], time=time.time() - started)
    return row


def epoch_row(trainer, record):
    """The row of an epoch's ``record`` (its entry of the history)."""
    return dict(record, kind="epoch",
                global_step=(trainer.epoch + 1) * trainer.steps_per_epoch)


def read_event_log(path):
    """The rows of the event log ``path`` (a list of dicts), skipping a cut
    last line (what a killed writer leaves) and, with one warning naming
    the file and the lines, any line that is not a JSON object."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if not data.endswith(b"\n"):
        lines = lines[:-1]              # cut short (or empty): not a row
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif line.strip():
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: lines {bad[:10]} are not rows of an event log; skipped")
    return rows


class EventLog(Hook):
    """``metrics.jsonl`` of the run folder ``folder`` (see the module);
    written by rank 0. :attr:`path` is the file."""

    def __init__(self, folder):
        self.path = os.path.join(os.fspath(folder), EVENT_LOG)
        self.fd, self.started = None, time.time()

    def before_train(self, trainer):
        if trainer.rank != 0:
            return
        kept = []
        if trainer.start and os.path.isfile(self.path) and not os.path.islink(self.path):
            kept = [row for row in read_event_log(self.path)
                    if row.get("epoch", 0) <= trainer.start]
        text = "".join(json.dumps(row) + "\n" for row in kept)
        write_bytes(self.path, text.encode("utf-8"))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            fd = None
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            raise UnsafePathError(errno.EEXIST, "expected the event log, found a link or "
                                  "another kind of file; refusing to write through it",
                                  self.path)
        self.fd, self.started = fd, time.time()

    def _write(self, row):
        if self.fd is None:
            return
        line = (json.dumps(row) + "\n").encode("utf-8")
        with disk_full_names(self.path):
            os.write(self.fd, line)

    def after_log(self, trainer, event):
        self._write(step_row(event, self.started))

    def after_epoch(self, trainer, record):
        self._write(epoch_row(trainer, record))

    def after_train(self, trainer):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _numbers(row):
    """The numeric entries of a row, by name, for TensorBoard (not the
    recall of a size without objects, which is -1)."""
    return {key: float(value) for key, value in row.items() if key not in _SKIPPED
            and isinstance(value, (int, float)) and not isinstance(value, bool)
            and not (key.startswith("AR_") and value == NO_OBJECTS)}


class TensorBoardEvents(Hook):
    """TensorBoard scalars of the event log's rows in ``folder`` (see the
    module), through ``tensorboardX``; written by rank 0. Without
    ``tensorboardX``, ``say(line)`` gets one line saying so (when given)
    and nothing is written."""

    def __init__(self, folder, *, say=None):
        self.folder, self.say = os.fspath(folder), say
        self.writer, self.started = None, time.time()

    def before_train(self, trainer):
        if trainer.rank != 0:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            if self.say is not None:
                self.say("no TensorBoard events: tensorboardX is not installed (pip "
                         "install tensorboardX); metrics.jsonl has the same figures")
            return
        make_dir(self.folder)
        purge = trainer.start * trainer.steps_per_epoch if trainer.start else None
        self.writer = SummaryWriter(logdir=self.folder, purge_step=purge, flush_secs=30)
        self.started = time.time()

    def _scalars(self, prefix, row):
        if self.writer is None:
            return
        for key, value in _numbers(row).items():
            self.writer.add_scalar(f"{prefix}/{key}", value, row["global_step"])

    def after_log(self, trainer, event):
        self._scalars("train", step_row(event, self.started))

    def after_epoch(self, trainer, record):
        self._scalars("epoch", epoch_row(trainer, record))

    def after_train(self, trainer):
        self.close()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
