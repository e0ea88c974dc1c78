"""The manifest of a checkpoint or an exported model's folder.

``MANIFEST.json`` lists every file of the folder with its size and SHA-256;
it is written last, so a folder without it is incomplete. Reading opens
the listed files at once, never through a link, and checks each against
its line: a truncated or altered file is reported as corrupt, naming the
file, instead of loading as wrong weights. :mod:`rpn.runs.checkpoint` and
:mod:`rpn.runs.trained` write and read through it.
"""
import os

from .fileio import NOFOLLOW, read_json, sha256_of, write_json

__all__ = ["MANIFEST", "CorruptCheckpointError", "OpenedFolder", "write_manifest",
           "verify_manifest"]

#: The manifest's file name inside the folder.
MANIFEST = "MANIFEST.json"
_FORMAT = 1
_PROC_FD = os.path.isdir("/proc/self/fd")


class CorruptCheckpointError(ValueError):
    """A checkpoint file is missing, truncated or altered."""


def write_manifest(path):
    """Write ``path/MANIFEST.json``: the size and SHA-256 of every file of
    the folder ``path``. Written last, it marks the folder complete."""
    files = {}
    for entry in sorted(os.listdir(path)):
        if entry != MANIFEST and not entry.startswith("."):
            digest, size = sha256_of(os.path.join(path, entry))
            files[entry] = {"bytes": size, "sha256": digest}
    write_json(os.path.join(path, MANIFEST), {"format": _FORMAT, "files": files})


def verify_manifest(path):
    """Check every file of the folder ``path`` (a checkpoint or an export)
    against its manifest: a ``CorruptCheckpointError`` names the first file
    that is missing, truncated or altered."""
    with OpenedFolder(path) as opened:
        opened.verify()


def _open_listed(file):
    """A read-only descriptor of the listed ``file``; a link in its place
    is refused, not followed (``O_NOFOLLOW``'s ``ELOOP``)."""
    try:
        return os.open(file, os.O_RDONLY | NOFOLLOW)
    except OSError as error:
        if os.path.islink(file):
            raise CorruptCheckpointError(
                f"checkpoint file {file} is a symbolic link to {os.readlink(file)}: "
                "expected the file itself (a link is never followed)") from None
        raise CorruptCheckpointError(
            f"checkpoint file missing: {file} ({error.strerror})") from None


class OpenedFolder:
    """The files of the checkpoint folder ``path`` that its manifest lists,
    opened at once (never through a link): a writer that removes the folder
    afterwards does not disturb reading them. ``file(name)`` is a path that
    reads the opened file (``/proc/self/fd/N`` on Linux, else the path)."""

    def __init__(self, path):
        self.path, self.fds = path, {}
        manifest = os.path.join(path, MANIFEST)
        try:
            fd = os.open(manifest, os.O_RDONLY | NOFOLLOW)
        except OSError:
            raise CorruptCheckpointError(
                f"{path} has no {MANIFEST}: it is incomplete, or was written by an "
                "older version of rpn (retrain, or evaluate with that version)") from None
        try:
            self.files = read_json(fd, what="checkpoint manifest")["files"]
            names = sorted(self.files.items())
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptCheckpointError(f"{manifest} is corrupt: {error}") from None
        finally:
            os.close(fd)
        try:
            for entry, _ in names:
                if "/" in entry or entry.startswith("."):
                    raise CorruptCheckpointError(
                        f"{manifest} lists a file outside the checkpoint")
                self.fds[entry] = _open_listed(os.path.join(path, entry))
        except BaseException:
            self.close()
            raise

    def file(self, name):
        if name in self.fds and _PROC_FD:
            return f"/proc/self/fd/{self.fds[name]}"
        return os.path.join(self.path, name)

    def verify(self):
        for entry, expected in sorted(self.files.items()):
            digest, size = sha256_of(self.fds[entry])
            if size != expected.get("bytes") or digest != expected.get("sha256"):
                raise CorruptCheckpointError(
                    f"checkpoint file {os.path.join(self.path, entry)} is corrupt: {size} "
                    f"bytes with SHA-256 {digest[:12]}..., the manifest says "
                    f"{expected.get('bytes')} bytes and "
                    f"{str(expected.get('sha256'))[:12]}... (truncated or altered)")
        return self

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
