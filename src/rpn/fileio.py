"""Writing files of a run folder safely.

Run folders get shared and processes get killed. Every file the package
writes is first written under a fresh, unpredictable name in the same
folder (created exclusively, never through a link) and then renamed over
its final name: a reader sees the old file or the new one, never half of
one, and a link planted at the final name is replaced, not followed.
Folders the package creates inside a run folder must be real folders.

Nothing here unpickles anything: run folders hold JSON, PNG and MXNet's own
array files only.
"""
import errno
import hashlib
import io
import json
import os
import stat
import tempfile

__all__ = ["write_bytes", "write_json", "write_figure", "make_dir", "private_dir",
           "read_json", "sha256_of", "link_problem", "UnsafePathError"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_MAX_JSON_BYTES = 64 << 20


class UnsafePathError(OSError):
    """A path the package would write through is a link or not a folder."""


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
    0700), to fill and then rename into place."""
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically, never through a link."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
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
    not UTF-8, too large) / ``FileNotFoundError``."""
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
    """Hex SHA-256 and size in bytes of a file (not followed if a link)."""
    digest, size = hashlib.sha256(), 0
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
