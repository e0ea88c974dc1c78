"""The scale the default preset trains at, chosen from the objects' sizes.

The default preset resizes every photograph to a shorter side of 112
pixels: measured on photographs whose objects fill much of the frame
(raccoons, the synthetic set). Its smallest anchor is 10 pixels and its
stride 8, so an object that the resize leaves under about 16 pixels can
hardly be found; a 17-pixel boat in a 1920 x 1080 webcam frame becomes 2
pixels. Before training the package knows every box, so the default looks
at them (:func:`choose_scale`):

* the median object, at the default's resize, is at least :data:`TARGET`
  pixels: today's choice stays (the raccoon photographs: about 90 pixels);
* below, windows (:data:`WINDOW` pixels a side, the default's four an
  image and sixteen a batch) cut from the photographs resized to a
  shorter side that brings the median to :data:`WINDOW_TARGET` pixels,
  or to at least :data:`SMALLEST` at :data:`LARGEST_SIZE` pixels; the
  whole photograph at that size for evaluation and inference. A step of
  windows costs half a step of whole photographs on frames of 1,600 to
  2,300 pixels (raccoon photographs tiled 3 x 3 and 4 x 4: 1.9 to 2.0
  against 0.9 to 1.05 steps a CPU second; a frame is decoded for each of
  sixteen images, but once for four windows) and three quarters on
  frames of about 1,000 (tiled 2 x 2: 1.29 times the rate), so the rule
  trains twice the default's steps: the default's CPU on large frames,
  about 1.5 times it on frames of 1,000 pixels. Measured at equal CPU on
  raccoon photographs tiled 2 x 2, 3 x 3 and 4 x 4 (docs/tuning.md, "A default
  that looks at the data"); the whole photograph at a larger size with
  fewer steps (the rule before) was behind the windows in every seed;
* otherwise (under :data:`SMALLEST` pixels even at :data:`LARGEST_SIZE`)
  the photographs are too large for any resize: training at
  their own resolution on windows, the ``small-objects`` preset's, with
  that preset's schedule (3 epochs, 600 steps at least). This departs
  from the default's CPU budget on purpose, and the reason says by how
  much (a step's cost taken as its pixels): at the budget of 448 steps at
  112 pixels, a network trained from scratch gets 80 to 160 steps of
  windows and is still climbing steeply (docs/tuning.md, "Small objects
  in large photographs": AR@100 0.157 against 0.133 for 112 pixels on
  the small-object set; at three times the budget, 0.417 against 0.185).

What was chosen and why is said on stderr and recorded in the run.

Sizes are pixels of the original images; an object's size is the square
root of its box's area.
"""
import math
from typing import NamedTuple

import numpy as onp

__all__ = ["choose_scale", "ScaleChoice", "TARGET", "WINDOW_TARGET", "SMALLEST", "LARGEST_SIZE",
           "WINDOW", "WINDOW_STEP_COST"]

#: The median object, in input pixels, below which the default's scale is
#: changed (at the default's resize).
TARGET = 24.0
#: What the windows' scale brings the median object to, in pixels.
WINDOW_TARGET = 35.0
#: The median object, in input pixels, that even the largest size must
#: reach; below, windows at the photographs' own resolution.
SMALLEST = 16.0
#: The largest shorter side the windows are cut at (16x the pixels of 112).
LARGEST_SIZE = 448
#: The windows' side, pixels: sixteen a batch hold about the pixels of the
#: default's sixteen photographs at 112 x 192.
WINDOW = 128
#: A step of :data:`WINDOW` windows against a step of whole photographs at
#: the default's size, in CPU (measured; see the module).
WINDOW_STEP_COST = 0.5


class ScaleChoice(NamedTuple):
    """What :func:`choose_scale` chose: ``changes`` (settings to apply; none
    when today's choice stays), ``reason`` (one line), ``median`` (the
    median object at the default's resize, pixels)."""
    changes: dict
    reason: str
    median: float


def _median_side(found, resize):
    """The median object size (sqrt of box area) of ``found`` after
    ``resize``, and how many objects it is over."""
    sides = []
    for label, size in zip(found.labels, found.sizes):
        rows = onp.asarray(label).reshape(-1, 5)
        rows = rows[rows[:, 0] >= 0]
        if not len(rows) or not size:
            continue
        height, width = size
        new_h, new_w = resize.shape(height, width)
        factor = math.sqrt((new_h / height) * (new_w / width))
        area = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
        sides += list(onp.sqrt(onp.maximum(area, 0)) * factor)
    return (float(onp.median(sides)) if sides else None), len(sides)


def _median_pixels(found, resize):
    """The median image's pixels after ``resize``."""
    pixels = sorted(h * w for h, w in (resize.shape(*s) for s in found.sizes if s))
    return pixels[len(pixels) // 2] if pixels else 1


def choose_scale(found, config, *, small_objects):
    """The scale the default trains the training set ``found`` (an
    :class:`rpn.ImageSet` with its images' sizes) at (see the module).
    ``config``: the run's :class:`rpn.RunConfig` (the default preset's);
    ``small_objects``: the ``small-objects`` preset's config, whose model and
    window settings are taken when no resize is enough."""
    from .preprocess import Resize
    model = config.model
    median, count = _median_side(found, Resize.of(model))
    if median is None:
        return ScaleChoice({}, "no object with a known image size to measure", 0.0)
    shown = f"the median object of {count} is {median:.1f} px at {Resize.of(model).describe()}"
    if median >= TARGET:
        return ScaleChoice({}, f"{shown}: kept", median)
    wanted = model.size * WINDOW_TARGET / median
    size = min(int(math.ceil(wanted / model.size_divisor) * model.size_divisor), LARGEST_SIZE)
    factor = size / model.size
    if median * factor >= SMALLEST:
        steps = _steps(config.train.min_steps / WINDOW_STEP_COST)
        changes = dict(size=size, max_size=int(round(model.max_size * factor)),
                       window=WINDOW, windows_per_image=config.train.windows_per_image,
                       min_steps=steps)
        return ScaleChoice(changes, f"{shown}, under {TARGET:g} px: trained on windows of "
                                    f"{WINDOW} px cut at a shorter side of {size} "
                                    f"({median * factor:.1f} px){_budget(steps)}", median)
    settings = {name: small_objects.get(name) for name in _SMALL_OBJECTS}
    # the CPU of the preset's least schedule against the default's budget:
    # each one's steps times its step's pixels
    step = config.train.batch_size * _median_pixels(found, Resize.of(model))
    windows = settings["batch_size"] * settings["window"] ** 2
    times = settings["min_steps"] * windows / max(config.train.min_steps * step, 1)
    return ScaleChoice(settings, f"{shown}, under {SMALLEST:g} px even at a shorter side of "
                                 f"{LARGEST_SIZE}: trained at the photographs' own "
                                 f"resolution on windows of {settings['window']} px with "
                                 f"the small-objects preset's schedule ({settings['epochs']} "
                                 f"epochs, {settings['min_steps']} steps at least: about "
                                 f"{times:.0f} times the default's CPU: at the default's "
                                 f"budget windows train too few steps)", median)


def _steps(steps):
    """``min_steps`` rounded; at least one unless there was none (epochs given)."""
    return max(1, int(round(steps))) if steps > 0 else 0


def _budget(steps):
    """The reason's tail for ``steps`` (nothing when the epochs were given)."""
    return (f", {steps} steps at least (a step of windows costs half to three quarters "
            f"of a step of whole photographs: about the default's CPU)" if steps else "")


#: What the default takes of the small-objects preset when no resize is enough:
#: its windows and its schedule.
_SMALL_OBJECTS = ("resize", "scale", "window", "windows_per_image", "window_focus",
                  "window_visible", "batch_size", "epochs", "min_steps")
