"""Which checkpoints a run keeps, and how the others are removed.

A run's ``checkpoint/`` folder holds ``epoch-NNNN`` folders (the epoch from
1), ``latest`` naming the newest and, when recall is measured between
epochs, ``best`` naming the one of the best validation recall
(:mod:`rpn.runs.checkpoint` writes them). After each checkpoint the writer
keeps the ``keep`` newest (``rpn train --keep N``; 1 by default: the latest
only) and the best, and removes the older others: each is first renamed
out of its name into a private folder (``.retired-...``, recorded in the
run's lock, :mod:`rpn.runs.lock`) and then deleted, so that no reader ever
sees a checkpoint half deleted under its name, and a writer killed while it
deletes one leaves only that private folder, which the next writer
removes. Only ``epoch-NNNN`` entries older than the newest checkpoint are
ever removed: nothing else in the folder, whatever it is, and no
checkpoint newer than the one just written.
"""
import os
import re
import shutil
import stat

from .fileio import private_dir

__all__ = ["LATEST", "BEST", "is_checkpoint_name", "is_real_dir", "checkpoint_epoch",
           "remove_entry", "retire", "retire_superseded", "superseded"]

#: The files naming the newest checkpoint and the best one.
LATEST, BEST = "latest", "best"
_NAME = re.compile(r"^epoch-[0-9]{4,9}$")


def is_checkpoint_name(name):
    """Whether ``name`` is a checkpoint folder's name, ``epoch-NNNN``."""
    return bool(_NAME.match(name))


def is_real_dir(path):
    """Whether ``path`` is a folder and not a link to one."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)


def checkpoint_epoch(path):
    """The epoch number (from 1) of a checkpoint folder ``.../epoch-NNNN``."""
    return int(os.path.basename(os.path.normpath(path)).split("-")[1])


def remove_entry(path):
    """Remove a checkpoint folder, or just the link if it is one."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif is_real_dir(path):
        shutil.rmtree(path)


def retire(checkpoint_dir, entry):
    """Remove the checkpoint ``entry`` that no pointer names any more:
    first out of its final name (a reader never sees it half deleted),
    then deleted."""
    path = os.path.join(checkpoint_dir, entry)
    if not is_real_dir(path):
        return remove_entry(path)
    holder = private_dir(checkpoint_dir, ".retired-")
    try:
        os.rename(path, os.path.join(holder, entry))
    except OSError:
        pass
    shutil.rmtree(holder, ignore_errors=True)


def superseded(names, newest, keep, best=None):
    """The checkpoint names among ``names`` to remove once the checkpoint of
    epoch ``newest`` is written: those older than it that are neither
    among the ``keep`` newest up to it nor ``best`` (a name, or ``None``),
    oldest first."""
    if int(keep) != keep or keep < 1:
        raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
    ours = sorted((n for n in names if is_checkpoint_name(n)
                   and checkpoint_epoch(n) <= newest), key=checkpoint_epoch, reverse=True)
    kept = set(ours[:int(keep)]) | ({best} if best else set())
    return [n for n in reversed(ours) if n not in kept and checkpoint_epoch(n) < newest]


def retire_superseded(checkpoint_dir, newest, keep, best_path=None):
    """Remove what the checkpoint of epoch ``newest`` supersedes
    (:func:`superseded`; ``best_path`` the best checkpoint's folder or
    ``None``). Returns the names removed."""
    best = os.path.basename(best_path) if best_path else None
    gone = superseded(os.listdir(checkpoint_dir), newest, keep, best)
    for entry in gone:
        retire(checkpoint_dir, entry)
    return gone
