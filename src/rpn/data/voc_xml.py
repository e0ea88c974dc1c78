"""VOC annotation files: one ``Annotations/<name>.xml`` to pixel rows.

Used by :mod:`rpn.data.voc`. Annotation files come from elsewhere: XML is
parsed without entity expansion (defusedxml) and at a bounded size, and a
file that is missing, malformed or incomplete is an error naming it.

This is an edge of the package: rows are pixels ``[class, xmin - 1,
ymin - 1, xmax - 1, ymax - 1]`` (VOC is 1-based; the chapter subtracts 1),
``(n, 5)`` float32. Then the box rule of :mod:`rpn.data.image_set`: an object
whose box has no width or height (``xmax <= xmin`` or ``ymax <= ymin``) is
dropped and its image stays; a box more than 1 pixel past the ``<size>``
the file states is an error, or clipped with ``clip``; within 1 pixel it is
clipped. Objects whose name is not a class are left out (and returned, so
near misses can be named).
"""
import os

import numpy as onp
from defusedxml import ElementTree

from ..runs.fileio import link_problem
from .image_set import CLIPPED, EMPTY, OUTSIDE, place_box

__all__ = ["read_xml", "parse_annotation", "MAX_XML_BYTES"]

#: The largest annotation file read, in bytes.
MAX_XML_BYTES = 1 << 20


def _text(node, tag, path):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{path}: missing <{tag}>")
    return child.text.strip()


def _number(node, tag, path):
    value = _text(node, tag, path)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}: <{tag}> is {value!r}, not a number") from None


def read_xml(path):
    """The root element of an annotation file, parsed safely at a bounded
    size, or an error that names the file (a dangling link as such)."""
    if not os.path.isfile(path):
        why = link_problem(path)
        raise FileNotFoundError(f"annotation not found: {path}" + (f" ({why})" if why else ""))
    if os.path.getsize(path) > MAX_XML_BYTES:
        raise ValueError(f"{path}: larger than {MAX_XML_BYTES} bytes, refused")
    try:
        return ElementTree.parse(path).getroot()
    except Exception as error:  # ParseError and defusedxml's refusals
        raise ValueError(f"{path}: not a well-formed, safe XML file: {error}") from error


def _size(root, path):
    """``(height, width)`` stated by ``<size>``, or ``None`` (absent or 0,
    which some tools write for "unknown")."""
    size = root.find("size")
    if size is None:
        return None
    width, height = _number(size, "width", path), _number(size, "height", path)
    if width <= 0 or height <= 0:
        return None
    return int(round(height)), int(round(width))


def parse_annotation(path, classes, keep_difficult=True, clip=False):
    """One annotation file: ``(rows, size, ignored, edits)``: (n, 5) pixel
    rows of the objects of ``classes`` (see the module), the image size it
    states (``None`` if none), the names of the objects left out for their
    class, and ``(kind, text)`` for each object dropped (:data:`EMPTY`) or
    box clipped (:data:`CLIPPED`), naming the file, the object and the box.
    A bad file raises a ``ValueError`` (or ``FileNotFoundError``) naming it."""
    root = read_xml(path)
    size = _size(root, path)
    rows, ignored, edits = [], [], []
    for number, obj in enumerate(root.iter("object"), 1):
        name = _text(obj, "name", path)
        if name not in classes:
            ignored.append(name)
            continue
        difficult = obj.find("difficult")
        if not keep_difficult and difficult is not None and (difficult.text or "").strip() == "1":
            continue
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: an object {name!r} has no <bndbox>")
        corners = tuple(_number(box, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        where = f"{path}: object {number} {name!r}: box ({', '.join(f'{v:g}' for v in corners)})"
        if not all(map(onp.isfinite, corners)):
            raise ValueError(f"{path}: object {name!r} has a non-finite box {corners}")
        kind, pixels = place_box([v - 1 for v in corners], size, clip=clip)
        if kind == OUTSIDE:
            height, width = size
            raise ValueError(f"{path}: object {name!r} box {corners} lies outside its "
                             f"{width}x{height} image (more than 1 pixel past its edge; "
                             "--set clip_boxes=true clips such boxes)")
        if kind == EMPTY:
            empty = corners[2] <= corners[0] or corners[3] <= corners[1]
            edits.append((EMPTY, where + ("" if empty else
                                          " (nothing left once clipped to its image)")))
            continue
        if kind == CLIPPED:
            edits.append((CLIPPED, where + " -> (" + ", ".join(
                f"{v + 1:g}" for v in pixels) + ")"))
        rows.append([classes.index(name), *pixels])
    return onp.array(rows, dtype="float32").reshape(-1, 5), size, ignored, edits
