"""One writer a run folder, and a clean-up that touches only its own files.

The process that trains into a run folder holds an exclusive POSIX
lock (``fcntl.lockf``) on ``RUN/.lock`` for as long as it trains. The
kernel releases the lock when the process ends, however it ends (SIGKILL
too), so a lock is never stale; and unlike ``flock`` it belongs to the
process alone, so a loader process forked from it (which may outlive a
killed parent for a moment) holds nothing. Locks of one process do not
exclude each other, so the process keeps a table of its own. A second writer is refused with
:class:`RunBusyError`, naming the holder's pid (exit code 2). The workers
of a cluster (rank > 0 under ``python -m rpn.launch``) share rank 0's lock
and take none.

``RUN/.lock`` also holds the record of the temporaries its holder created
(:func:`rpn.runs.fileio.record_temporaries`), one a line::

    pid 12345
    temporary checkpoint/.epoch-0004-k2j3h4l5
    temporary .metrics.json.a8d7f6e5.tmp

The next writer removes those of them that are left (what a killed writer
was writing) and nothing else: a file in the folder that the package did
not write and record is never deleted, whatever its name.

Other outputs get the same rule. :func:`claim_output` locks the folder of
``rpn predict`` or ``rpn export`` (its ``.lock``) for one writer;
:class:`FileLock` locks one output file (``rpn propose``'s ``FILE.npz``,
through ``.FILE.npz.lock`` beside it, removed when the file is written) and
records its temporaries only, so that two files of one folder can be
written at once. The lock files are created with mode 0666 less the umask.

:func:`claim_run` is what :func:`rpn.fit` does first: it refuses a folder
that holds another run, takes the lock, removes the recorded leftovers and,
for a resume whose ``checkpoint/latest`` is gone, points it at the newest
whole checkpoint again.
"""
import errno
import fcntl
import functools
import os
import shutil
import stat
import threading
import time
import warnings

from .checkpoint import whole_checkpoints
from .fileio import (NOFOLLOW, OutputPathError, UnsafePathError, file_kind, make_dir,
                     record_temporaries, write_bytes)
from .folder import RunError
from .manifest import CorruptCheckpointError
from .resume import refuse_unfit

__all__ = ["RunLock", "FileLock", "RunBusyError", "claim_run", "claim_output",
           "releases_run_locks", "LOCK_NAME"]

LOCK_NAME = ".lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
_COMPACT_AT = 64            # recorded lines before the record drops what is gone
_HELD = {}                  # lock file -> (RunLock, thread): this process's locks
_SCOPES = threading.local()  # locks to release when a releases_run_locks call ends


class RunBusyError(RunError):
    """Another process (or thread) is training into the run folder (or
    writing into the output ``target``: ``doing`` says what, ``lock`` the
    lock file it holds)."""

    def __init__(self, target, pid, doing="training into it", lock=None, noun="folder"):
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        lock = lock or os.path.join(target, LOCK_NAME)
        super().__init__(f"{target} is in use: {holder} is {doing} (it holds {lock}); wait "
                         f"for it to end, stop it, or choose another {noun}")


class RunLock:
    """The lock of the run folder ``folder`` (see the module).
    :meth:`acquire` takes it or raises :class:`RunBusyError`; ``left``
    then lists the temporaries the previous holder recorded. ``doing``:
    what a holder does, for the message of the writers it refuses."""

    name = LOCK_NAME
    noun = "folder"

    def __init__(self, folder, *, doing="training into it"):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, self.name)
        self.target, self.doing = self.folder, doing
        self.fd = None
        self.left = []
        self._lines = 0

    def _busy(self, pid):
        return RunBusyError(self.target, pid, self.doing, self.path, self.noun)

    def _owns(self, relative):
        """Whether the temporary at ``relative`` (to the folder) is this
        lock's to record and clean: one in the folder or in ``checkpoint/``
        (what is inside a temporary folder goes with that folder)."""
        parts = relative.split(os.sep)
        return (not os.path.isabs(relative) and ".." not in parts
                and parts[-1].startswith(".") and parts[:-1] in ([], ["checkpoint"]))

    def acquire(self):
        key = os.path.realpath(self.path)
        held = _HELD.get(key)
        if held is not None:
            other, thread = held
            if thread is not threading.current_thread() and thread.is_alive():
                raise self._busy(os.getpid())
            other.release()     # a call of this thread that ended by an error
        for _ in range(3):
            fd = self._open()
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in _NO_LOCKS:        # a file system without locks
                    warnings.warn(f"cannot lock {self.path} ({error.strerror}): make sure "
                                  "that no other process trains into this folder")
                    break
                pid = _holder(fd) if error.errno in (errno.EAGAIN, errno.EACCES) else None
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise self._busy(pid) from None
                raise
            try:                # the file is still the one at the lock's name
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise self._busy(None)
        self.fd = fd
        self.left = self.left_recorded()
        self._rewrite([])
        record_temporaries(self.folder, self._record)
        _HELD[key] = (self, threading.current_thread())
        scopes = getattr(_SCOPES, "stack", None)
        if scopes:
            scopes[-1].append(self)
        return self

    def _open(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(errno.EEXIST, "the lock file is a link; refusing to "
                                      "use it", self.path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePathError(errno.EEXIST, "the lock file is not a plain file",
                                  self.path)
        return fd

    def left_recorded(self):
        """The temporaries the lock file records."""
        return [line.split(" ", 1)[1] for line in _read(self.fd).splitlines()
                if line.startswith("temporary ")]

    def _rewrite(self, temporaries):
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = f"pid {os.getpid()}\n" + "".join(f"temporary {t}\n" for t in temporaries)
        os.write(self.fd, text.encode("utf-8", "surrogateescape"))
        self._lines = len(temporaries)

    def _record(self, path):
        relative = os.path.relpath(path, self.folder)
        if self.fd is None or not self._owns(relative):
            return
        if self._lines >= _COMPACT_AT:       # keep only what still exists
            self._rewrite([t for t in self.left_recorded()
                           if os.path.lexists(os.path.join(self.folder, t))])
        os.lseek(self.fd, 0, os.SEEK_END)
        os.write(self.fd, f"temporary {relative}\n".encode("utf-8", "surrogateescape"))
        self._lines += 1

    def clean(self):
        """Remove what the previous holder recorded and left: its
        temporaries in the run folder and in ``checkpoint/``. Returns their
        paths."""
        removed = []
        for relative in self.left:
            if not self._owns(relative):
                continue        # not a temporary this package makes where it makes them
            path = os.path.join(self.folder, relative)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            removed.append(path)
        self.left = []
        return removed

    def release(self):
        """Give the lock up (the lock file stays: removing it would let two
        writers lock two files of one name)."""
        if self.fd is None:
            return
        record_temporaries(self.folder, self._record, stop=True)
        try:                    # what is left recorded is what still exists
            self._rewrite([t for t in self.left_recorded()
                           if os.path.lexists(os.path.join(self.folder, t))])
        except OSError:
            pass
        key = os.path.realpath(self.path)
        if _HELD.get(key, (None,))[0] is self:
            del _HELD[key]
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc):
        self.release()


class FileLock(RunLock):
    """The lock of one output file ``path`` (``rpn propose --out``):
    ``.NAME.lock`` beside it, recording only the temporaries of ``NAME``
    (``.NAME.*.tmp``), so that other files of the folder are written at
    the same time. :meth:`release` removes the lock file once nothing it
    recorded is left (a writer that finds it gone locks a new one)."""

    noun = "file"

    def __init__(self, path, *, doing="writing it"):
        folder, self._base = os.path.split(os.path.abspath(os.fspath(path)))
        self.name = f".{self._base}.lock"
        super().__init__(folder, doing=doing)
        self.target = os.path.join(folder, self._base)

    def _owns(self, relative):
        return (os.sep not in relative and relative.startswith(f".{self._base}.")
                and relative.endswith(".tmp"))

    def _open(self):
        try:
            return super()._open()
        except UnsafePathError:
            raise
        except OSError as error:            # named by the file asked for
            raise OSError(error.errno, error.strerror, self.target) from None

    def release(self):
        if self.fd is not None and not [t for t in self.left_recorded() if
                                        os.path.lexists(os.path.join(self.folder, t))]:
            try:                # still holding it: a writer waiting locks a new file
                os.unlink(self.path)
            except OSError:
                pass
        super().release()


def claim_output(folder, *, doing="writing into it"):
    """Make the output folder ``folder`` of ``rpn predict`` or ``rpn
    export`` (created when absent; a file there is an
    :class:`rpn.runs.fileio.OutputPathError`) ready for this process: take
    its lock (:class:`RunBusyError` while another writer holds it) and
    remove what a killed writer recorded. Returns the held :class:`RunLock`."""
    _folder_or_absent(folder)
    make_dir(folder)
    lock = RunLock(folder, doing=doing).acquire()
    try:
        lock.clean()
    except BaseException:
        lock.release()
        raise
    return lock


def _folder_or_absent(path):
    """Refuse (:class:`rpn.runs.fileio.OutputPathError`) an output folder
    that exists as something else than a folder."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{path} is {file_kind(os.lstat(path).st_mode)}, not a folder: "
                              "give a folder to write into (it is created when absent)")


def _read(fd, limit=1 << 20):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, limit).decode("utf-8", "surrogateescape")


def _holder(fd):
    """The pid the holder wrote into the lock file (it writes it right
    after locking, so wait a moment for it)."""
    for _ in range(20):
        first = _read(fd, 64).split("\n", 1)[0]
        if first.startswith("pid ") and first[4:].strip().isdigit():
            return int(first[4:])
        time.sleep(0.05)
    return None


def releases_run_locks(func):
    """Decorator: the run locks that ``func`` takes (:func:`claim_run`) are
    released when it returns or raises, so that a failed call in a
    long-lived process (a notebook) leaves no folder locked."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        stack = _SCOPES.__dict__.setdefault("stack", [])
        stack.append([])
        try:
            return func(*args, **kwargs)
        finally:
            for lock in stack.pop():
                lock.release()
    return wrapper


# ---- what rpn.fit does before training -----------------------------------------

def _refuse(folder, config, resume, say):
    """Raise a :class:`rpn.runs.folder.RunError` if ``folder`` may not be trained
    into as asked."""
    if folder.is_export:
        raise RunError(f"{folder.path} is an export folder (rpn export); choose another "
                       "folder for a run")
    config_file = folder.file("config.json")
    if resume:
        if os.path.isfile(config_file) and folder.has_checkpoint():
            refuse_unfit(folder, config)
        return
    metrics = folder.file("metrics.json")
    if folder.has_checkpoint() or (os.path.isfile(metrics) and not os.path.islink(metrics)):
        raise RunError(f"{folder.path} already holds a run; resume it (--resume, "
                       "resume=True) or choose another folder")
    if os.path.lexists(config_file):
        try:
            folder.read()
        except RunError:
            raise RunError(f"{config_file} exists and is not the configuration of a run; "
                           "choose another folder") from None
        if say:
            warnings.warn(f"{folder.path} holds a run that saved no checkpoint (it ended "
                          "before the end of its first epoch): starting it afresh")


def _repair_latest(folder):
    """For a resume: a ``checkpoint/latest`` that is gone names the newest
    whole checkpoint again; nothing is deleted."""
    pointer = os.path.join(folder.checkpoint_dir, "latest")
    if os.path.lexists(pointer) or not os.path.isdir(folder.checkpoint_dir) \
            or os.path.islink(folder.checkpoint_dir):
        return
    whole, problems = whole_checkpoints(folder.checkpoint_dir)
    if whole:
        warnings.warn(f"{pointer} is missing: resuming from {whole[0]}, the newest whole "
                      "checkpoint")
        write_bytes(pointer, os.path.basename(whole[0]).encode())
    elif problems:
        raise CorruptCheckpointError(f"--resume: {pointer} is missing and no checkpoint "
                                     "is whole: " + "; ".join(problems))


def claim_run(folder, config, resume):
    """Make the run folder ``folder`` (a :class:`rpn.runs.folder.RunFolder`) ready
    for this process to train into, and return its held :class:`RunLock`:

    * refuse (:class:`rpn.runs.folder.RunError`) an export folder, a folder that
      holds a run (a checkpoint or ``metrics.json``) unless ``resume``, a
      ``config.json`` that is not a run's, and a resume whose checkpoint
      cannot take ``config`` (:func:`rpn.runs.resume.refuse_unfit`); a run
      that saved no checkpoint is started afresh;
    * take the lock (:class:`RunBusyError` while another writer holds it);
    * remove what the last writer recorded and left behind;
    * on ``resume`` without ``checkpoint/latest``, point it at the newest
      whole checkpoint (or refuse when none is whole).
    """
    _folder_or_absent(folder.path)
    _refuse(folder, config, resume, say=False)         # before anything is created
    try:
        os.makedirs(folder.path, exist_ok=True)
    except OSError as error:
        raise UnsafePathError(error.errno, f"cannot create the run folder: {error.strerror}",
                              folder.path) from None
    lock = RunLock(folder.path).acquire()
    try:
        _refuse(folder, config, resume, say=True)      # now that nobody else writes
        lock.clean()
        if resume:
            _repair_latest(folder)
    except BaseException:
        lock.release()
        raise
    return lock
