"""Checkpoints of a training run: parameters, optimizer state, progress.

One folder an epoch inside the run's ``checkpoint/`` folder, a ``latest``
file naming the newest complete one and, when recall is measured between
epochs, a ``best`` file naming the one of the best validation recall::

    checkpoint/latest                  "epoch-0007"
    checkpoint/best                    "epoch-0006"
    checkpoint/epoch-0007/backbone.params, output.params   (MXNet arrays)
                          optimizer.params                 (MXNet arrays)
                          optimizer.json, state.json       (JSON)
                          MANIFEST.json                    (written last)

Nothing in a checkpoint carries code: parameters and optimizer states are
MXNet's own array files, counters and progress are JSON. (Gluon's
``Trainer.save_states`` pickles, and unpickling a file from a shared run
folder runs whatever code it holds; it is never used.) The manifest lists
every file's size and SHA-256; loading verifies it, so a truncated or
altered file is reported as corrupt, naming the file, instead of loading
as wrong weights. A checkpoint is written under a private name and renamed
into place, then ``latest`` is switched atomically: a run killed while
saving keeps the previous checkpoint. ``latest`` can only name an
``epoch-NNNN`` folder inside ``checkpoint/``; without ``latest`` the newest
whole ``epoch-NNNN`` folder is used, with a warning.

The one writer (:mod:`rpn.runs.lock`) keeps the last ``keep`` checkpoints
and the best (:mod:`rpn.runs.retention`); it moves an older one out of its
name to delete it only once ``latest`` (and ``best``) name the new ones; a
reader that finds a file gone while its pointer has moved on reads the new
one. :func:`load_named` loads the latest, the best or the checkpoint of one
epoch. A full disk while saving is one
:class:`rpn.runs.fileio.DiskFullError` naming the file and the checkpoint
kept.
"""
import os
import shutil
import warnings

import mxnet as mx

from .fileio import (DiskFullError, is_disk_full, make_dir, private_dir, read_json, write_bytes,
                     write_json)
from . import manifest as _manifest
from .manifest import MANIFEST, CorruptCheckpointError, verify_manifest, write_manifest
from .optimizer_state import restore_optimizer_state
from .optimizer_state import save_optimizer_state as _save_optimizer
from .retention import (BEST, LATEST, checkpoint_epoch, is_checkpoint_name, is_real_dir,
                        remove_entry, retire_superseded)
from .retention import retire as _retire  # noqa: F401  (the name readers' tests retire with)

__all__ = ["write_checkpoint", "latest_checkpoint", "best_checkpoint", "load_checkpoint",
           "load_parts", "load_latest", "load_named", "named_checkpoint",
           "load_optimizer_states", "whole_checkpoints", "checkpoint_epoch", "check_which",
           "CheckpointChoiceError"]

_READ_ATTEMPTS = 5      # a reader follows ``latest`` this often while a writer moves it


class CheckpointChoiceError(ValueError):
    """A checkpoint asked for by something that names none: a bad argument."""


def load_optimizer_states(trainer, path):
    """Set ``trainer``'s optimizer state from the checkpoint folder ``path``
    after verifying it (:mod:`rpn.runs.optimizer_state`). Returns ``False`` (with
    a warning) when the checkpoint holds none (a ``dist_async`` run)."""
    verify_manifest(path)
    return restore_optimizer_state(trainer, path)


# ---- writing and finding checkpoints -----------------------------------------

def _kept(checkpoint_dir):
    """What stays when a save fails: for the message."""
    try:
        path = latest_checkpoint(checkpoint_dir, warn=False)
    except (OSError, ValueError):
        path = None
    kept = (f"the checkpoint of epoch {checkpoint_epoch(path)} ({path}) is kept"
            if path else "no checkpoint of this run is kept yet")
    return f"{kept}; free some space, then rerun with --resume (resume=True)"


def write_checkpoint(checkpoint_dir, epoch, parts, trainer, state, *, keep=1, best=False):
    """Write the checkpoint of ``epoch`` (0-based) and make it the latest
    (and, with ``best``, the best: ``checkpoint/best`` names it); of the
    older ones, the ``keep`` newest in all and the best stay, the others
    are removed (:func:`rpn.runs.retention.retire_superseded`). ``parts``:
    the trained blocks by name (each saved as ``<name>.params``; the
    chapter's are ``backbone`` and ``output``); ``state``: JSON-able
    progress (epoch, history, seed, config). Returns the checkpoint's
    folder. A full disk raises one :class:`rpn.runs.fileio.DiskFullError`
    naming the file, and the previous checkpoint stays the latest."""
    name = f"epoch-{epoch + 1:04d}"
    final = os.path.join(checkpoint_dir, name)
    writing = [checkpoint_dir]          # the file being written, for a full disk

    def into(tmp, file):
        writing[0] = os.path.join(final, file)
        return os.path.join(tmp, file)

    tmp = None
    try:
        make_dir(checkpoint_dir)
        tmp = private_dir(checkpoint_dir, f".{name}-")
        for part, block in parts.items():
            block.save_parameters(into(tmp, f"{part}.params"))
        writing[0] = os.path.join(final, "optimizer.params")
        _save_optimizer(trainer, tmp)
        write_json(into(tmp, "state.json"), state)
        writing[0] = os.path.join(final, MANIFEST)
        write_manifest(tmp)
        writing[0] = final
        remove_entry(final)
        os.replace(tmp, final)
        tmp = None
        for pointer in (LATEST, BEST) if best else (LATEST,):
            writing[0] = os.path.join(checkpoint_dir, pointer)
            write_bytes(os.path.join(checkpoint_dir, pointer), name.encode())
    except BaseException as error:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, Exception) and is_disk_full(error):
            if isinstance(error, DiskFullError) and error.filename:    # a JSON file
                writing[0] = os.path.join(final, os.path.basename(error.filename))
            raise DiskFullError(writing[0], _kept(checkpoint_dir)) from None
        raise
    retire_superseded(checkpoint_dir, epoch + 1, keep, _pointed(checkpoint_dir, BEST))
    return final


def whole_checkpoints(checkpoint_dir):
    """The ``epoch-NNNN`` folders of ``checkpoint_dir`` whose manifest
    verifies, newest first, and the reasons of those that do not:
    ``(paths, problems)``."""
    if not is_real_dir(checkpoint_dir):
        return [], []
    names = sorted((e for e in os.listdir(checkpoint_dir) if is_checkpoint_name(e)),
                   key=lambda e: int(e.split("-")[1]), reverse=True)
    whole, problems = [], []
    for entry in names:
        path = os.path.join(checkpoint_dir, entry)
        if not is_real_dir(path):
            problems.append(f"{path}: not a folder")
            continue
        try:
            verify_manifest(path)
            whole.append(path)
        except CorruptCheckpointError as error:
            problems.append(str(error))
    return whole, problems


def latest_checkpoint(checkpoint_dir, *, warn=True):
    """The folder of the newest complete checkpoint in ``checkpoint_dir``,
    or ``None``. ``latest`` must name an ``epoch-NNNN`` folder (not a link)
    inside ``checkpoint_dir``; anything else is a ``CorruptCheckpointError``.
    Without ``latest``, the newest ``epoch-NNNN`` folder whose manifest
    verifies is used (with a warning when ``warn``); when there are such
    folders but none is whole, that is a ``CorruptCheckpointError``."""
    return _pointed(checkpoint_dir, LATEST, warn=warn)


def best_checkpoint(checkpoint_dir):
    """The folder that ``checkpoint/best`` names (the checkpoint of the best
    validation recall measured between epochs), or ``None`` without
    ``best``; a ``best`` that names no ``epoch-NNNN`` folder inside
    ``checkpoint_dir`` is a ``CorruptCheckpointError``."""
    return _pointed(checkpoint_dir, BEST)


def _pointed(checkpoint_dir, pointer_name, *, warn=True):
    """The folder the pointer file ``pointer_name`` (``latest`` or ``best``)
    names, followed again while a writer moves it."""
    pointer = os.path.join(checkpoint_dir, pointer_name)
    name = None
    for _ in range(_READ_ATTEMPTS):
        if not os.path.lexists(pointer):
            if pointer_name != LATEST:
                return None
            return _without_latest(checkpoint_dir, pointer, warn)
        if os.path.islink(pointer) or not os.path.isfile(pointer):
            raise CorruptCheckpointError(f"{pointer} must be a plain file naming a checkpoint")
        previous = name
        try:
            with open(pointer, "rb") as f:
                name = f.read(64).decode("ascii", "replace").strip()
        except FileNotFoundError:
            continue
        path = os.path.join(checkpoint_dir, name)
        if is_checkpoint_name(name) and is_real_dir(path):
            return path
        if name == previous:            # not a writer moving it: it is wrong
            break
    raise CorruptCheckpointError(
        f"{pointer} names {name!r}; expected an epoch-NNNN folder inside "
        f"{checkpoint_dir}")


def _without_latest(checkpoint_dir, pointer, warn):
    whole, problems = whole_checkpoints(checkpoint_dir)
    if whole:
        if warn:
            warnings.warn(f"{pointer} is missing: using {whole[0]}, the newest whole "
                          "checkpoint")
        return whole[0]
    if problems:
        raise CorruptCheckpointError(
            f"{pointer} is missing and no checkpoint folder is whole: "
            + "; ".join(problems))
    return None


def load_checkpoint(checkpoint_dir, backbone, output_model, ctx=None):
    """Load the newest checkpoint's parameters into ``backbone`` and
    ``output_model`` (on ``ctx``: a context or a list, default the current
    one) after verifying its manifest, and return its ``state.json`` dict
    (epoch, history, seed, config): :func:`load_latest` of the chapter's
    two parts."""
    return load_latest(checkpoint_dir, {"backbone": backbone, "output": output_model}, ctx)


def load_latest(checkpoint_dir, parts, ctx=None):
    """Load the newest checkpoint of ``checkpoint_dir`` into ``parts`` (name
    -> block, as :func:`write_checkpoint` saved them; on ``ctx``, a context
    or a list, default the current one) and return its ``state.json``
    dict: :func:`load_named` of the latest."""
    return load_named(checkpoint_dir, parts, ctx)


def named_checkpoint(checkpoint_dir, which="latest"):
    """The checkpoint folder ``which`` names: ``"latest"``, ``"best"`` or an
    epoch number (from 1). A ``FileNotFoundError`` says what is kept when
    there is no such checkpoint."""
    if check_which(which) in (LATEST, BEST):
        path = _pointed(checkpoint_dir, which)
        if path is None:
            raise FileNotFoundError(
                f"no checkpoint in {checkpoint_dir!r}: expected a 'latest' file naming an "
                "epoch-NNNN folder, as train_detection writes" if which == LATEST else
                f"no best checkpoint in {checkpoint_dir!r}: the best is kept when recall "
                f"is measured between epochs (--eval-every N); {_kept_epochs(checkpoint_dir)}")
        return path
    path = os.path.join(checkpoint_dir, f"epoch-{which:04d}")
    if not is_real_dir(path):
        raise FileNotFoundError(f"no checkpoint of epoch {which} in {checkpoint_dir!r}; "
                                f"{_kept_epochs(checkpoint_dir)}")
    return path


def check_which(which):
    """``which`` checkpoint to load: ``"latest"``, ``"best"`` or an epoch
    number >= 1 (returned as it is); anything else is a ``RunError``-like
    ``ValueError`` naming it."""
    if which in (LATEST, BEST) or (isinstance(which, int) and not isinstance(which, bool)
                                   and which >= 1):
        return which
    raise CheckpointChoiceError(f"epoch: expected 'latest', 'best' or an epoch number >= 1, "
                                f"got {which!r}")


def _kept_epochs(checkpoint_dir):
    """What ``checkpoint_dir`` keeps, in words, for the messages above."""
    try:
        whole, _ = whole_checkpoints(checkpoint_dir)
        best = _pointed(checkpoint_dir, BEST)
    except (OSError, ValueError):
        whole, best = [], None
    if not whole:
        return "it keeps no whole checkpoint"
    epochs = ", ".join(str(checkpoint_epoch(p)) for p in reversed(whole))
    return (f"it keeps epoch{'s' if len(whole) > 1 else ''} {epochs}"
            + (f" (best: {checkpoint_epoch(best)})" if best else "")
            + " (rpn train --keep N keeps the last N)")


def load_named(checkpoint_dir, parts, ctx=None, which="latest"):
    """Load the checkpoint ``which`` (see :func:`named_checkpoint`) of
    ``checkpoint_dir`` into ``parts`` (name -> block) on ``ctx`` and return
    its ``state.json`` dict. While a run trains, ``latest`` and ``best`` may
    move on and the old checkpoint go as it is read: then the new one is
    read, so a reader always gets one whole checkpoint."""
    for attempt in range(_READ_ATTEMPTS):
        path = named_checkpoint(checkpoint_dir, which)
        try:
            return load_parts(path, parts, ctx)
        except (ValueError, OSError):
            if attempt + 1 < _READ_ATTEMPTS and which in (LATEST, BEST) and _moved_on(
                    checkpoint_dir, path, which):
                continue
            raise


def _moved_on(checkpoint_dir, path, which=LATEST):
    """Whether the pointer ``which`` now names another checkpoint than
    ``path``."""
    try:
        return _pointed(checkpoint_dir, which, warn=False) not in (None, path)
    except (OSError, ValueError):
        return False


def load_parts(path, parts, ctx=None):
    """Load the checkpoint folder ``path`` (verified against its manifest;
    its files opened at once, so a writer that removes it meanwhile does
    not disturb the reading) into ``parts`` (name -> block) on ``ctx`` (a
    context or a list, default the current one), and return its
    ``state.json`` dict."""
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.current_context()]
    with _manifest.OpenedFolder(path) as opened:      # from here on, nothing can vanish
        opened.verify()
        names = [f"{part}.params" for part in parts] + ["state.json"]
        missing = [n for n in names if n not in opened.fds]
        if missing:
            raise CorruptCheckpointError(f"{path}: its manifest lists no {missing[0]}")
        try:
            for part, block in parts.items():
                block.load_parameters(opened.file(f"{part}.params"), ctx=ctxs)
        except (AssertionError, mx.MXNetError, ValueError) as error:
            raise ValueError(
                f"the checkpoint in {path} does not fit this model (another "
                f"backbone, anchors or head width?): {error}") from error
        return read_json(opened.fds["state.json"], what="checkpoint state")
