"""Writing files of a run folder safely, and reading only regular files.

Run folders get shared and processes get killed. Every file the package
writes is first written under a fresh, unpredictable name in the same
folder (created exclusively, never through a link) and then renamed over
its final name: a reader sees the old file or the new one, never half of
one, and a link planted at the final name is replaced, not followed.
Folders the package creates inside a run folder must be real folders.
Files get the mode ``0o666`` and folders ``0o777``, less the umask, as
any program's do (temporaries included: they become the final files). An
error while writing names the file asked for, not its temporary.

A path the package reads may be a FIFO, a socket or a device, which would
block or never end: :func:`open_regular` refuses anything that is not a
regular file (:class:`NotRegularFileError`) before opening it for reading.
:func:`shown` is how a path is printed: a name holding a newline, an
escape or another character that does not print is quoted and escaped as
``repr`` does, so that it cannot forge a line or drive the terminal.

A full disk is one :class:`DiskFullError` naming the file (``ENOSPC`` or
``EDQUOT`` from the OS, and MXNet's ``FileStream.Write incomplete``), not a
traceback. The temporaries a writer creates can be recorded
(:func:`record_temporaries`, the run folder's lock does it) so that the
next writer removes exactly those and nothing else of the folder.

Nothing here unpickles anything: run folders hold JSON, PNG and MXNet's own
array files only.
"""
import contextlib
import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import stat

__all__ = ["NOFOLLOW", "write_bytes", "write_json", "write_figure", "make_dir", "private_dir",
           "read_json", "sha256_of", "link_problem", "UnsafePathError", "DiskFullError",
           "is_disk_full", "disk_full_names", "record_temporaries", "staging_dir",
           "open_regular", "NotRegularFileError", "file_kind", "shown", "OutputPathError"]

#: ``os.O_NOFOLLOW`` where the system has it: opening a link fails.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_JSON_BYTES = 64 << 20
_ATTEMPTS = 100             # fresh names tried before giving up (as tempfile does)


def shown(path):
    """``path`` as it is printed: as it is when every character of it
    prints, else quoted and escaped as ``repr`` does (``'a\\nb.jpg'``,
    ``'\\x1b[2J.png'``), as ``ls`` quotes only the names that need it. No
    name can forge a line or send terminal escapes."""
    path = os.fspath(path)
    if isinstance(path, str) and path.isprintable():
        return path
    return repr(path)


class UnsafePathError(OSError):
    """A path the package would write through is a link or not a folder."""


class OutputPathError(ValueError):
    """An output path the user named that cannot be written as asked: a
    file where a folder is expected, a folder of the inputs, a file the
    package did not write. A usage error (exit code 2)."""


class NotRegularFileError(OSError):
    """A path to read is not a regular file (a FIFO, a socket, a device, a
    folder); ``kind`` says which. It was not opened for reading."""

    def __init__(self, path, kind):
        self.kind = kind
        super().__init__(errno.EINVAL, f"{kind}, not a regular file", os.fspath(path))

    def __str__(self):
        return f"{shown(self.filename)}: {self.strerror}"


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode):
    """What a file of ``st_mode`` ``mode`` is, in words (``"a regular
    file"``, ``"a FIFO (named pipe)"``, ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def open_regular(path, *, follow=True):
    """A read-only file descriptor of the regular file ``path`` (a link is
    followed unless ``follow=False``, which makes a link an ``ELOOP``
    error). Anything else raises :class:`NotRegularFileError` before it is
    opened for reading: a FIFO would block until a writer came, a device
    might never end. ``FileNotFoundError`` and the other errors of
    ``os.open`` pass unchanged."""
    info = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise NotRegularFileError(path, file_kind(info.st_mode))
    # non-blocking: what turned into a FIFO since the stat cannot block this open
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow else NOFOLLOW))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFileError(path, file_kind(mode))
    os.set_blocking(fd, True)
    return fd


class DiskFullError(OSError):
    """The disk (or the user's quota) filled up while the package wrote
    ``path``; ``str()`` is one line naming the file, plus ``note`` (what
    was kept, what to do)."""

    def __init__(self, path, note=None):
        path = os.fspath(path)
        message = f"the disk is full: could not write {path} (no space left on the device)"
        super().__init__(errno.ENOSPC, message + (f"; {note}" if note else ""), path)

    def __str__(self):
        return self.strerror


_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_WORDS = ("Write incomplete", "No space left on device", "Disk quota exceeded")


def is_disk_full(error):
    """Whether ``error`` says that the disk is full: an ``OSError`` with
    ``ENOSPC``/``EDQUOT``, or MXNet's error for a write cut short."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    return type(error).__name__ == "MXNetError" and any(w in str(error) for w in _FULL_WORDS)


@contextlib.contextmanager
def disk_full_names(path, note=None):
    """Within the block, a full disk becomes one :class:`DiskFullError`
    naming ``path`` (with ``note``); other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if is_disk_full(error):
            raise DiskFullError(path, note) from None
        raise


# ---- temporaries a writer records, so that only they are ever cleaned up ------

_RECORDERS = {}     # absolute folder -> callables(absolute path of a new temporary)


def record_temporaries(root, record, *, stop=False):
    """From now on, every temporary file or folder this process creates
    under the folder ``root`` (:func:`write_bytes`, :func:`private_dir`) is
    passed to ``record(path)`` right after it is created (several records
    may watch one folder: each keeps what it owns). ``stop=True`` ends
    ``record``'s watch; ``record=None`` ends every watch of ``root``."""
    root = os.path.abspath(root)
    if record is None:
        _RECORDERS.pop(root, None)
    elif stop:
        kept = [r for r in _RECORDERS.get(root, ()) if r != record]
        if kept:
            _RECORDERS[root] = kept
        else:
            _RECORDERS.pop(root, None)
    else:
        _RECORDERS.setdefault(root, []).append(record)


def _recorded(path):
    path = os.path.abspath(path)
    for root, records in list(_RECORDERS.items()):
        if path.startswith(root + os.sep):
            for record in list(records):
                try:
                    record(path)
                except OSError:
                    pass    # best effort: an unrecorded temporary is only left behind


def make_dir(path):
    """Create ``path`` (and its parents) unless it exists; an existing
    ``path`` must be a real folder, not a link to one."""
    try:
        os.makedirs(path)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(errno.EEXIST, "expected a real folder, found a link or a "
                              "file; refusing to write through it", path)
    return path


def _fresh(create, folder, prefix, suffix=""):
    """``create(path)`` for a new, unpredictable ``path`` in ``folder``
    until one does not exist yet; returns ``(its result, path)``."""
    for _ in range(_ATTEMPTS):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            return create(path), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no fresh temporary name", os.path.join(folder, prefix))


def private_dir(parent, prefix):
    """A new folder with an unpredictable name inside ``parent`` (mode 0777
    less the umask, as ``mkdir`` makes it), to fill and then rename into
    place (recorded, see :func:`record_temporaries`)."""
    _, path = _fresh(lambda p: os.mkdir(p, 0o777), os.path.abspath(parent), prefix)
    _recorded(path)
    return path


@contextlib.contextmanager
def staging_dir(parent, prefix, *, what=None):
    """A :func:`private_dir` in ``parent`` to fill and move into place; it
    is removed with whatever it holds when the block fails or leaves
    anything in it. A full disk becomes a :class:`DiskFullError` naming
    ``what`` (default ``parent``)."""
    tmp = private_dir(parent, prefix)
    try:
        yield tmp
    except Exception as error:
        if is_disk_full(error):
            raise DiskFullError(what or parent, "nothing of it was written") from None
        raise
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _naming(path):
    """Within the block, an ``OSError`` names ``path`` (the file asked
    for) instead of its temporary; a full disk is a :class:`DiskFullError`."""
    try:
        with disk_full_names(path):
            yield
    except (DiskFullError, UnsafePathError):
        raise
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), os.fspath(path)) from None


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically, never through a link; the file
    gets mode 0666 less the umask. A full disk is a :class:`DiskFullError`
    naming ``path``, any other error an ``OSError`` naming ``path``; the old
    file stays."""
    folder, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | _CLOEXEC
    with _naming(path):
        fd, tmp = _fresh(lambda p: os.open(p, flags, 0o666), folder, f".{name}.", ".tmp")
    _recorded(tmp)
    try:
        with _naming(path):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically (see :func:`write_bytes`)."""
    return write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


def write_figure(path, figure, **savefig_kwargs):
    """Save a matplotlib ``figure`` as PNG to ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_kwargs)
    return write_bytes(path, buffer.getvalue())


def read_json(path, *, what="file", max_bytes=_MAX_JSON_BYTES):
    """A JSON file of a run folder, or a ``ValueError`` naming it (not JSON,
    not UTF-8, too large) / ``FileNotFoundError``. ``path`` may be an open
    file descriptor (read from its start, left open)."""
    if isinstance(path, int):
        os.lseek(path, 0, os.SEEK_SET)
        raw = os.read(path, max_bytes + 1)
        path = f"(file descriptor {path})"
    else:
        try:
            fd = open_regular(path, follow=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} not found: {path}") from None
        except OSError as error:
            raise ValueError(f"cannot read {what} {path}: {error.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{what} {path} is larger than {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON: {error.msg} at line "
                         f"{error.lineno}, column {error.colno}") from None


def sha256_of(path):
    """Hex SHA-256 and size in bytes of a file (not followed if a link), or
    of an open file descriptor ``path`` (read from its start; left open)."""
    digest, size = hashlib.sha256(), 0
    if isinstance(path, int):
        os.lseek(path, 0, os.SEEK_SET)
        for block in iter(lambda: os.read(path, 1 << 20), b""):
            digest.update(block)
            size += len(block)
        return digest.hexdigest(), size
    fd = open_regular(path, follow=False)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def link_problem(path):
    """Why ``path`` cannot be opened because of a symbolic link, in words,
    or ``None``: a dangling link (it or its folder names a target that does
    not exist) or a loop of links. Links themselves are fine to read: data
    folders are often made of them."""
    try:
        os.stat(path)
        return None
    except FileNotFoundError:
        for link in (path, os.path.dirname(path)):
            if link and os.path.islink(link):
                return (f"{'its folder is ' if link != path else ''}a symbolic link to "
                        f"{os.readlink(link)}, which does not exist (a dangling link)")
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a loop of symbolic links (following them never reaches a file)"
        return None
