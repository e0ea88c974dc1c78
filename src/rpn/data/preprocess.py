"""One way from an image file to the model's input: decode, resize,
normalise, and pad a batch.

The datasets, evaluation, ``predict`` and ``propose`` all go through this
module, so an image is prepared the same way wherever it comes from.

Two resize rules (:class:`Resize`):

* ``Resize.fixed_size(height, width)``: every image becomes ``height x width``,
  whatever its shape (the chapter's ``DetectionDataset``, 256 x 256);
* ``Resize.keep_ratio(short, max_size)``: Faster R-CNN's rule
  (:cite:`Ren.He.Girshick.ea.2015`, 3.3): the shorter side becomes
  ``short`` pixels unless the longer side would then exceed ``max_size``,
  in which case the longer side becomes ``max_size``. The aspect ratio is
  kept, so a batch has images of several shapes: :func:`pad_batch` pads
  them into one canvas (a multiple of ``divisor``) and each image keeps
  its own size.

Boxes normalised by an image's own width and height (the package's
convention) do not change under either rule.

Shape glossary: images ``(h, w, 3)`` uint8 RGB as decoded; model inputs
``(3, h, w)`` float32 normalised with ``RGB_MEAN``/``RGB_STD``; a batch
``(B, 3, H, W)``.
"""
import math
from typing import NamedTuple, Optional, Tuple

import numpy as onp
from PIL import Image

__all__ = ["Resize", "MEAN", "STD", "preprocess_image", "pad_batch", "SIZE_DIVISOR"]

#: ImageNet's per-channel mean and standard deviation (chapter section "The
#: VOC detection dataset"), as Python tuples; ``rpn.RGB_MEAN``/``RGB_STD``
#: are the same values as MXNet arrays.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Canvas sides are multiples of this: every backbone stride divides it.
SIZE_DIVISOR = 32


class Resize(NamedTuple):
    """A resize rule: ``fixed`` ``(height, width)``; or ``short`` side and
    ``max_size`` longer side with the aspect ratio kept; or ``scale``, each
    image at its own resolution times ``scale`` (1: unchanged). Build it
    with :meth:`Resize.fixed_size`, :meth:`Resize.keep_ratio` or
    :meth:`Resize.native`."""
    fixed: Optional[Tuple[int, int]] = None
    short: Optional[int] = None
    max_size: Optional[int] = None
    scale: Optional[float] = None

    @classmethod
    def fixed_size(cls, height, width):
        if int(height) != height or int(width) != width or height < 1 or width < 1:
            raise ValueError(f"height and width must be positive integers, got "
                             f"{height} x {width}")
        return cls(fixed=(int(height), int(width)))

    @classmethod
    def keep_ratio(cls, short, max_size=None):
        max_size = short if max_size is None else max_size
        if int(short) != short or short < 1 or int(max_size) != max_size or max_size < short:
            raise ValueError(f"short must be a positive integer and max_size an integer "
                             f">= short, got short={short}, max_size={max_size}")
        return cls(short=int(short), max_size=int(max_size))

    @classmethod
    def native(cls, scale=1.0):
        if not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        return cls(scale=float(scale))

    @classmethod
    def of(cls, settings):
        """The rule of :class:`rpn.settings.ModelSettings` ``settings``
        (``resize``, ``size``, ``max_size``, ``scale``)."""
        if settings.resize == "fixed":
            return cls.fixed_size(settings.size, settings.size)
        if settings.resize == "native":
            return cls.native(settings.scale)
        return cls.keep_ratio(settings.size, settings.max_size)

    def shape(self, height, width):
        """Output ``(height, width)`` for an image of ``height x width``."""
        if self.fixed is not None:
            return self.fixed
        if self.scale is not None:
            return (max(1, int(round(height * self.scale))),
                    max(1, int(round(width * self.scale))))
        scale = self.short / min(height, width)
        if max(height, width) * scale > self.max_size:
            scale = self.max_size / max(height, width)
        return (max(1, int(round(height * scale))), max(1, int(round(width * scale))))

    def describe(self):
        if self.fixed is not None:
            return f"{self.fixed[0]}x{self.fixed[1]} (fixed)"
        if self.scale is not None:
            return ("each image at its own resolution" if self.scale == 1 else
                    f"each image at {self.scale:g} times its own resolution")
        return f"shorter side {self.short}, longer side at most {self.max_size}"


def preprocess_image(image, resize):
    """An (h, w, 3) uint8 RGB image -> (3, h', w') float32, resized by
    ``resize`` (bilinear) and normalised with ``MEAN``/``STD``."""
    image = onp.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != onp.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got shape "
                         f"{image.shape} and dtype {image.dtype}")
    height, width = resize.shape(*image.shape[:2])
    if (height, width) != image.shape[:2]:
        image = onp.asarray(Image.fromarray(onp.ascontiguousarray(image)).resize(
            (width, height), Image.BILINEAR))
    pixels = (image.astype("float32") / 255 - MEAN) / STD
    # (h, w, 3) -> (3, h, w)
    return onp.ascontiguousarray(pixels.transpose(2, 0, 1), dtype="float32")


def pad_batch(images, divisor=SIZE_DIVISOR):
    """Images ``[(3, h_i, w_i), ...]`` -> ``(B, 3, H, W)`` float32, each at
    the top left of a zero canvas (zero is the mean colour once
    normalised) whose sides are the largest ``h_i``, ``w_i`` rounded up to
    a multiple of ``divisor``."""
    if not images:
        raise ValueError("pad_batch needs at least one image")
    height = max(im.shape[1] for im in images)
    width = max(im.shape[2] for im in images)
    height = max(divisor, int(math.ceil(height / divisor)) * divisor)
    width = max(divisor, int(math.ceil(width / divisor)) * divisor)
    out = onp.zeros((len(images), 3, height, width), dtype="float32")
    for i, im in enumerate(images):
        out[i, :, :im.shape[1], :im.shape[2]] = im
    return out
