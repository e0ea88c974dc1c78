"""The image files ``rpn predict`` is given, and images it can do little with.

:func:`expand_images` turns files and folders into the list of files to
read. A folder stands for its image files (by extension, any case, sorted,
not its subfolders). Its links that lead nowhere (dangling, or a loop of
links) are named in one warning instead of being dropped silently; an
entry that is not a regular file (a FIFO, a device) is kept, so that
reading it names it as a bad image (it is never opened for reading); and
a folder with no image file at all is an error that names it, with a hint
when its images are one level down (a VOC root's ``JPEGImages/``). Names
are printed by :func:`rpn.runs.fileio.shown`.

:func:`warn_if_tiny` warns about an image the resize rule leaves with a
side shorter than the model's stride (a 10000 x 50 panorama under
``keep_ratio`` becomes 192 x 1): its feature map is a row or a column of
cells, and its proposals are few or none.
"""
import errno
import os
import warnings

from ..data.images import IMAGE_EXTENSIONS
from ..data.sources import DataSpecError
from ..runs.fileio import shown

__all__ = ["expand_images", "warn_if_tiny", "NoImagesError"]


class NoImagesError(DataSpecError):
    """A folder given to ``rpn predict`` holds no image file."""


def _broken(path):
    """Why the link ``path`` leads to no file, or ``None``."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if error.errno == errno.ENOENT:
            return f"a link to {os.readlink(path)!r}, which does not exist"
        return error.strerror
    return None


def _hint(folder):
    below = [name for name in sorted(os.listdir(folder))
             if os.path.isdir(os.path.join(folder, name))
             and any(entry.lower().endswith(IMAGE_EXTENSIONS)
                     for entry in os.listdir(os.path.join(folder, name)))]
    if "JPEGImages" in below:
        return ("; it looks like a VOC folder: give "
                f"{shown(os.path.join(folder, 'JPEGImages'))}")
    if below:
        return (f"; subfolders are not searched, and {', '.join(map(shown, below[:3]))} hold "
                "images: give them")
    return ""


def _folder(path):
    files, broken = [], []
    for name in sorted(os.listdir(path)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        full = os.path.join(path, name)
        why = _broken(full) if os.path.islink(full) else None
        if why:
            broken.append(f"{shown(full)} ({why})")
        elif not os.path.isdir(full):   # a FIFO or a device too: read_image names it
            files.append(full)
    if broken:
        warnings.warn(f"{shown(path)}: {len(broken)} image link(s) lead to no file and are "
                      "left out: " + "; ".join(broken))
    if not files:
        raise NoImagesError(
            f"{shown(path)} holds no image file ({', '.join(IMAGE_EXTENSIONS)}, any case)"
            + _hint(path))
    return files


def expand_images(paths):
    """Files, and every image file of each folder among ``paths`` (see the
    module). A folder without an image file raises :class:`NoImagesError`
    (exit code 2 on the command line)."""
    out = []
    for path in paths:
        path = os.fspath(path)
        out += _folder(path) if os.path.isdir(path) else [path]
    return out


def warn_if_tiny(path, original, resized, stride):
    """Warn when ``resized`` ``(height, width)`` (input pixels, from
    ``original``) has a side under ``stride``."""
    height, width = (int(v) for v in resized)
    if min(height, width) < stride:
        warnings.warn(f"{shown(path)}: its {original[1]}x{original[0]} pixels are resized to "
                      f"{width}x{height}, a side under the model's stride of {stride} "
                      "pixels: expect few proposals or none (docs/formats.md, the resize "
                      "rule)")
