"""Writing files of a run folder safely.

Run folders get shared and processes get killed. Every file the package
writes is first written under a fresh, unpredictable name in the same
folder (created exclusively, never through a link) and then renamed over
its final name: a reader sees the old file or the new one, never half of
one, and a link planted at the final name is replaced, not followed.
Folders the package creates inside a run folder must be real folders.

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
import shutil
import stat
import tempfile

__all__ = ["write_bytes", "write_json", "write_figure", "make_dir", "private_dir",
           "read_json", "sha256_of", "link_problem", "UnsafePathError", "DiskFullError",
           "is_disk_full", "disk_full_names", "record_temporaries", "staging_dir"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_MAX_JSON_BYTES = 64 << 20


class UnsafePathError(OSError):
    """A path the package would write through is a link or not a folder."""


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

_RECORDERS = {}     # absolute folder -> callable(absolute path of a new temporary)


def record_temporaries(root, record):
    """From now on, every temporary file or folder this process creates
    under the folder ``root`` (:func:`write_bytes`, :func:`private_dir`) is
    passed to ``record(path)`` right after it is created. ``record=None``
    stops it."""
    root = os.path.abspath(root)
    if record is None:
        _RECORDERS.pop(root, None)
    else:
        _RECORDERS[root] = record


def _recorded(path):
    path = os.path.abspath(path)
    for root, record in list(_RECORDERS.items()):
        if path.startswith(root + os.sep):
            try:
                record(path)
            except OSError:
                pass        # best effort: an unrecorded temporary is only left behind


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


def private_dir(parent, prefix):
    """A new folder with an unpredictable name inside ``parent`` (mode
    0700), to fill and then rename into place (recorded, see
    :func:`record_temporaries`)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
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


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically, never through a link. A full
    disk is a :class:`DiskFullError` naming ``path``; the old file stays."""
    folder, name = os.path.split(os.path.abspath(path))
    with disk_full_names(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    _recorded(tmp)
    try:
        with disk_full_names(path), os.fdopen(fd, "wb") as f:
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
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
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
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
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
