"""Reading image files into RGB arrays (:mod:`rpn.data.image_check` checks a
whole folder first with the same reader).

An edge of the package: files come from users' photo folders and may be
truncated, odd or broken. Nothing passes silently; the rules:

* A missing file raises ``FileNotFoundError``, one that cannot be opened
  (no permission) the ``OSError`` of ``open``; anything else that does not
  decode raises :class:`BadImageError` (a ``ValueError``) naming the file
  and the reason: not a regular file (a FIFO, a socket, a device or a
  folder, found before it is opened: a FIFO would block the read for
  ever), empty, not an image (HEIC, HTML, a Git LFS pointer named as
  such), a zero width or height in the header, more than 64 million pixels
  (a decompression bomb), broken data, an unknown mode. Names are printed
  as :func:`rpn.runs.fileio.shown` prints them (a name that does not print,
  with a newline or an escape, quoted and escaped).
* A JPEG or PNG that lacks its last bytes is decoded as far as it goes, as
  viewers do (the decoder fills the rest: grey for JPEG, black for PNG),
  with one :class:`TruncatedImageWarning` naming the file: that file alone
  is read again with Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` on, which
  is restored at once (other reads by this module wait meanwhile). A file
  cut inside its header is bad. A PNG whose pixel data is whole but that
  lacks its closing ``IEND`` chunk reads without a warning. (A program that
  keeps ``LOAD_TRUNCATED_IMAGES`` on itself reads truncated files silently.)
* Modes: ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV`` take Pillow's conversion (no ICC profile is applied);
  ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa`` and images with a
  ``transparency`` entry (``P``, ``L``, ``RGB``) are composited over white,
  ``(c * a + 255 * (255 - a) + 127) // 255``; ``I;16`` (any byte order) and
  ``I`` (32-bit) are 16-bit scale, ``value / 257`` rounded and clipped to
  [0, 255] (a pixel equal to a ``transparency`` value is white); ``F`` is
  multiplied by 255 when its largest value (NaN aside) is at most 1, then
  rounded and clipped to [0, 255], NaN as 0. Grey becomes three equal
  channels. A file of several frames (GIF, TIFF, APNG, MPO) gives its first.
* EXIF orientation (read from the header; in a PNG only from an ``eXIf``
  chunk before the pixels; other values than 1..8 and an unreadable EXIF
  block count as 1): without ``expected_size`` the transpose is applied, as
  viewers do; with ``expected_size=(height, width)`` (the annotation's) it
  is applied when the transposed size matches, the raw pixels are kept
  when the raw size matches, and otherwise :class:`BadImageError` says
  ``annotation says WxH, image is W'xH'``.
"""
import contextlib
import errno
import os
import struct
import threading
import warnings

import numpy as onp
from PIL import Image, ImageFile

from ..runs.fileio import NotRegularFileError, open_regular, shown

__all__ = ["read_image", "read_image_at", "image_size", "BadImageError",
           "TruncatedImageWarning", "IMAGE_EXTENSIONS", "MAX_PIXELS"]

#: File extensions taken for images when a folder is listed (any case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: The most pixels an image may have: more is refused as a decompression bomb.
MAX_PIXELS = 64_000_000
_ORIENTATION = 0x0112        # the EXIF tag
_CONVERTED = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_INTEGER = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ZERO = "its header says {}x{} pixels; expected a width and height of at least 1"


class BadImageError(ValueError):
    """An image file that cannot be used; ``path`` and ``reason`` (the
    message is ``"<path>: <reason>"``, the path as
    :func:`rpn.runs.fileio.shown` prints it)."""

    def __init__(self, path, reason):
        super().__init__(f"{shown(path)}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class TruncatedImageWarning(UserWarning):
    """An image file ends early; the part that is there was decoded."""


class _Truncated(Exception):
    """Pillow said the file ends early: read it again."""


class _FlagGuard:
    """A readers-writer lock: reads share it; a truncated retry holds it
    alone while Pillow's global flag is on, so no other read by this
    module in this process sees the flag on."""

    def __init__(self):
        self.cond, self.readers, self.waiting, self.saved = threading.Condition(), 0, 0, None

    @contextlib.contextmanager
    def shared(self):
        with self.cond:
            self.cond.wait_for(lambda: self.saved is None and not self.waiting)
            self.readers += 1
        try:
            yield
        finally:
            with self.cond:
                self.readers -= 1
                self.cond.notify_all()

    @contextlib.contextmanager
    def truncated_allowed(self):
        with self.cond:
            self.waiting += 1
            self.cond.wait_for(lambda: self.saved is None and not self.readers)
            self.waiting -= 1
            self.saved = (ImageFile.LOAD_TRUNCATED_IMAGES,)
            ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            with self.cond:
                ImageFile.LOAD_TRUNCATED_IMAGES, self.saved = self.saved[0], None
                self.cond.notify_all()


def _after_fork():
    """A child forked while another thread held the guard starts afresh."""
    global _guard
    if _guard.saved is not None:
        ImageFile.LOAD_TRUNCATED_IMAGES = _guard.saved[0]
    _guard = _FlagGuard()


_guard = _FlagGuard()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


_SIGNATURES = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
               (b"RIFF", "RIFF (WebP?)"))


def _stated_size(head):
    """``(width, height)`` that a PNG or JPEG header states, or None."""
    if head.startswith(b"\x89PNG") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    at = 2 if head.startswith(b"\xff\xd8") else len(head)
    while at + 9 <= len(head) and head[at] == 0xFF:
        marker = head[at + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):   # a SOF
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return width, height
        at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def _not_an_image(fp):
    """The reason for a file Pillow does not recognise, from its first bytes."""
    fp.seek(0)
    head, size = fp.read(1 << 16), os.fstat(fp.fileno()).st_size
    stated = _stated_size(head)
    if stated and min(stated) <= 0:
        return _ZERO.format(*stated)
    known = [name for magic, name in _SIGNATURES if head.startswith(magic)]
    if known:
        return f"starts like a {known[0]} file but Pillow cannot read its header " \
               f"(damaged, or truncated: the file has {size} bytes)"
    if head[4:8] == b"ftyp":
        kind = "an ISO media file (a HEIC/HEIF/AVIF photo or a video) Pillow cannot read"
    elif head.startswith(b"version https://git-lfs"):
        kind = "a Git LFS pointer, not the image (run 'git lfs pull')"
    elif head.lstrip()[:1] == b"<":
        kind = "text (HTML, XML or SVG), not a raster image"
    else:
        kind = "not an image format Pillow can read"
    return f"{kind}; the file starts with {head[:16]!r}; expected JPEG, PNG or another " \
           "format Pillow opens"


def _orientation(img):
    if img.format == "PNG" and "exif" not in img.info:
        return 1            # getexif() would decode the whole PNG to look further
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:       # a broken EXIF block: viewers ignore it too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented(path, raw, orientation, expected):
    """``(orientation to apply, (height, width) after it)`` by the rule."""
    turned = raw[::-1] if orientation >= 5 else raw
    if expected is None or expected == turned:
        return orientation, turned
    if expected == raw:
        return 1, raw
    note = f" ({turned[1]}x{turned[0]} with its EXIF orientation {orientation} " \
           "applied)" if turned != raw else ""
    raise BadImageError(path, f"annotation says {expected[1]}x{expected[0]}, image is "
                              f"{raw[1]}x{raw[0]}{note}")


def _transpose(rgb, orientation):
    """EXIF orientation 1..8 applied to an (h, w, 3) array, as Pillow's
    ``ImageOps.exif_transpose``."""
    if orientation in (5, 6, 7, 8):
        rgb = {5: rgb, 6: rgb[::-1], 7: rgb[::-1, ::-1], 8: rgb[:, ::-1]}[orientation]
        return onp.ascontiguousarray(rgb.transpose(1, 0, 2))
    return onp.ascontiguousarray({1: rgb, 2: rgb[:, ::-1], 3: rgb[::-1, ::-1],
                                  4: rgb[::-1]}[orientation])


def _grey(values):
    return onp.repeat(values.astype(onp.uint8)[:, :, None], 3, axis=2)


def _to_rgb(img, path):
    """The decoded image as (h, w, 3) uint8 by the module's mode rules."""
    mode, info = img.mode, img.info
    try:
        if mode in _INTEGER:
            values = onp.asarray(img).astype(onp.int64)
            grey = onp.clip(onp.rint(values / 257.0), 0, 255)
            if isinstance(info.get("transparency"), int):
                grey[values == info["transparency"]] = 255
            return _grey(grey)
        if mode == "F":
            values = onp.asarray(img).astype(onp.float64)
            numbers = values[~onp.isnan(values)]
            if numbers.size == 0 or numbers.max() <= 1:
                values = values * 255
            return _grey(onp.clip(onp.rint(onp.nan_to_num(values, nan=0.0)), 0, 255))
        palette_alpha = mode == "P" and getattr(img.palette, "mode", "") == "RGBA"
        if mode in _ALPHA or "transparency" in info or palette_alpha:
            rgba = onp.asarray((img.convert("LA") if mode == "La" else img).convert("RGBA"))
            alpha = rgba[:, :, 3:].astype(onp.uint32)
            rgb = rgba[:, :, :3].astype(onp.uint32)
            return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(onp.uint8)
        if mode in _CONVERTED:
            return onp.array(img if mode == "RGB" else img.convert("RGB"), dtype=onp.uint8)
    except Exception as error:
        raise BadImageError(path, f"cannot convert image mode {mode} to RGB: "
                                  f"{error}") from error
    raise BadImageError(path, f"image mode {mode} is not supported; expected one of "
                              f"{', '.join(sorted(_CONVERTED | _ALPHA | _INTEGER | {'F'}))}")


def _attempt(path, expected, what, retrying, want=None):
    """One read of ``path``: ``(pixels or None, (height, width))``. ``what``
    is ``"size"`` (header only), ``"check"`` (JPEGs at 1/8 scale, not
    turned) or ``"pixels"`` (JPEGs reduced by 2, 4 or 8 while still at
    least ``want(height, width)`` pixels, when ``want`` is given: Pillow's
    draft mode, which decodes fewer coefficients). ``(height, width)`` is
    the size the header states, after the orientation rule. Raises
    :class:`_Truncated` when Pillow says the file ends early and this is
    not yet the retry."""
    try:
        fp = os.fdopen(open_regular(path), "rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "image file not found", path) from None
    except NotRegularFileError as error:
        raise BadImageError(path, f"{error.kind}, not a regular file; expected an image "
                                  "file") from None
    with fp:
        if not fp.read(1):
            raise BadImageError(path, "empty file (0 bytes); expected an image")
        fp.seek(0)

        def failed(error, doing):
            truncated = "truncated" in str(error).lower()
            if truncated and not retrying:
                return _Truncated()
            if truncated:
                return BadImageError(path, f"the file ends early (truncated, "
                                           f"{os.fstat(fp.fileno()).st_size} bytes) and "
                                           f"even its start cannot be decoded: {error}")
            return BadImageError(path, f"cannot {doing}: {type(error).__name__}: {error}")

        try:
            img = Image.open(fp)
        except Image.UnidentifiedImageError:
            raise BadImageError(path, _not_an_image(fp)) from None
        except Image.DecompressionBombError as error:
            raise BadImageError(path, f"refused as a decompression bomb: {error}") from None
        except Exception as error:
            raise failed(error, "read its header") from error
        with img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise BadImageError(path, _ZERO.format(width, height))
            if width * height > MAX_PIXELS:
                raise BadImageError(path, f"{width}x{height} = {width * height} pixels, "
                                          f"more than the {MAX_PIXELS} allowed "
                                          "(refused as a possible decompression bomb)")
            orientation, size = _oriented(path, (height, width), _orientation(img),
                                          expected)
            if what == "size":
                return None, size
            try:
                if what == "check" and img.format in ("JPEG", "MPO"):
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                elif want is not None and img.format in ("JPEG", "MPO"):
                    # the size wanted, in the file's own orientation
                    need_h, need_w = want(*size)
                    if orientation in (5, 6, 7, 8):
                        need_h, need_w = need_w, need_h
                    img.draft("RGB", (max(1, int(need_w)), max(1, int(need_h))))
                img.load()
            except Exception as error:
                raise failed(error, "decode its pixels") from error
            rgb = _to_rgb(img, path)
    return (rgb if what == "check" else _transpose(rgb, orientation)), size


def _read(path, expected, what, want=None):
    """``(pixels or None, (height, width), truncated)``, retrying a file
    that ends early with Pillow's truncated-images flag on."""
    path = os.fspath(path)
    try:
        with _guard.shared():
            return _attempt(path, expected, what, False, want) + (False,)
    except _Truncated:
        pass
    with _guard.truncated_allowed():
        return _attempt(path, expected, what, True, want) + (True,)


def _expected(size, where="expected_size"):
    if size is None:
        return None
    try:
        height, width = size
        if int(height) == height > 0 and int(width) == width > 0:
            return int(height), int(width)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{where} must be None or (height, width) positive integers, "
                     f"got {size!r}")


def _warn_truncated(paths, stacklevel):
    named = ", ".join(shown(p) for p in paths[:10]) + (
        f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    what = f"{named}: the file ends" if len(paths) == 1 else f"{len(paths)} files end"
    warnings.warn(TruncatedImageWarning(
        f"{what} early (truncated){': ' + named if len(paths) > 1 else ''}; decoded as "
        "far as the data goes, the rest filled by the decoder (as image viewers show it)"),
        stacklevel=stacklevel + 1)


def read_image(path, *, expected_size=None):
    """Decode an image file to an (h, w, 3) uint8 RGB array by the module's
    rules (modes, truncation, EXIF orientation against ``expected_size``
    ``(height, width)``). Raises ``FileNotFoundError``, the ``OSError`` of
    opening the file, or :class:`BadImageError`, each naming the file."""
    rgb, _, truncated = _read(path, _expected(expected_size), "pixels")
    if truncated:
        _warn_truncated([os.fspath(path)], 2)
    return rgb


def read_image_at(path, want, *, expected_size=None):
    """:func:`read_image` for a use that needs only ``want(height, width)``
    pixels (the size it will resize the image to): a JPEG is decoded
    reduced by 2, 4 or 8 while it stays at least that large (Pillow's draft
    mode: on a 1920 x 1080 photograph trained at a shorter side of 112, an
    eighth of the decoding). Returns ``(pixels (h', w', 3), (height,
    width))``: the pixels, perhaps smaller, and the image's own size, which
    its annotation's boxes are in."""
    rgb, size, truncated = _read(path, _expected(expected_size), "pixels", want)
    if truncated:
        _warn_truncated([os.fspath(path)], 2)
    return rgb, size


def image_size(path, *, expected_size=None):
    """``(height, width)`` of an image from its header, after the EXIF
    orientation rule of :func:`read_image`. Nothing is decoded, so data
    broken after the header is found only by decoding it (:func:`read_image`,
    :func:`rpn.data.image_check.check_images`)."""
    _, size, truncated = _read(path, _expected(expected_size), "size")
    if truncated:
        _warn_truncated([os.fspath(path)], 2)
    return size
