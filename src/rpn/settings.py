"""Settings as typed objects that check themselves.

Each group of settings is a frozen dataclass whose fields say their
default and the values they accept (torchvision's typed keyword
arguments, detectron2's ``from_config``): :class:`ModelSettings` holds
everything the proposal model needs (its input size, backbone shape,
anchors, proposal and labelling rules, loss weights), and
:mod:`rpn.config` composes it with the training settings into a run's
``RunConfig``. A new model setting is one field here, the code that uses
it, and its line in ``docs/settings.md`` (a test checks that every field
has one).

Every value is checked when an object is made: a wrong one is a
:class:`SettingsError` naming the setting, what it got and what it takes.
Numbers never accept ``true``/``false``; lists become tuples. This module
imports nothing else of the package.
"""
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Callable, NamedTuple

__all__ = ["SettingsError", "ModelSettings", "Settings", "setting", "check", "num_anchors",
           "check_iou_order", "unknown_settings", "RPN_SIZES", "RPN_RATIOS", "BACKBONES",
           "DEFAULT_BACKBONE"]

#: The chapter's anchors (``rpn.rpn_anchors``): sizes as fractions of the
#: shorter side, ratios width / height.
RPN_SIZES = (0.85, 0.43, 0.21)
RPN_RATIOS = (1.0, 2.0, 0.5)

#: The backbones of Gluon's model zoo the model can use, by the zoo's names
#: (``rpn.backbone`` cuts each at a stride of 8, 16 or 32).
BACKBONES = ("resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1",
             "resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2",
             "mobilenetv2_1.0", "mobilenetv2_0.75", "mobilenetv2_0.5", "mobilenetv2_0.25")
#: The chapter's backbone.
DEFAULT_BACKBONE = "resnet18_v2"


class SettingsError(ValueError):
    """A setting with a value it cannot take; the message names it."""


def unknown_settings(unknown, known):
    """The :class:`SettingsError` for the setting names ``unknown`` (not
    among ``known``): each with the nearest known name (``did you mean
    'size'?``), or, when one has none near, every known name."""
    unknown, known = sorted(unknown), sorted(known)
    hints = []
    for name in unknown:
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if near:
            hints.append(f"{name!r}: did you mean {near[0]!r}?")
    if len(hints) == len(unknown):
        return SettingsError(f"unknown settings {unknown}; " + "; ".join(hints)
                             + " (docs/settings.md lists every setting)")
    return SettingsError(f"unknown settings {unknown}; known: {known}")


class _Rule(NamedTuple):
    test: Callable
    expected: str
    integer: bool = False


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum, expected=None):
    return _Rule(lambda v: _number(v) and float(v).is_integer() and v >= minimum,
                 expected or f"an integer >= {minimum}", True)


def number(minimum, expected=None):
    return _Rule(lambda v: _number(v) and v >= minimum, expected or f"a number >= {minimum}")


def unit(expected="a number in [0, 1]"):
    return _Rule(lambda v: _number(v) and 0 <= v <= 1, expected)


def choice(*values):
    shown = ", ".join(repr(v) for v in values[:-1]) + f" or {values[-1]!r}"
    return _Rule(lambda v: not isinstance(v, bool) and v in values, shown)


def flag():
    return _Rule(lambda v: isinstance(v, bool), "true or false")


def optional(rule, expected):
    return _Rule(lambda v: v is None or rule.test(v), expected, rule.integer)


def positive_numbers(example):
    return _Rule(lambda v: isinstance(v, tuple) and len(v) > 0
                 and all(_number(x) and x > 0 for x in v),
                 f"a list of positive numbers, e.g. {example}")


def _levels():
    """At least two consecutive pyramid levels from 2 to 6."""
    return _Rule(lambda v: isinstance(v, tuple) and len(v) >= 2 and all(
        isinstance(k, int) and not isinstance(k, bool) for k in v)
        and 2 <= v[0] and v[-1] <= 6
        and list(v) == list(range(v[0], v[0] + len(v))), "consecutive levels")


def share(expected="a number in (0, 1]"):
    """A fraction that cannot be 0."""
    return _Rule(lambda v: _number(v) and 0 < v <= 1, expected)


def counts(example):
    """A non-empty list of whole numbers >= 1."""
    return _Rule(lambda v: isinstance(v, tuple) and len(v) > 0 and all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v),
        f"a list of proposal counts >= 1, e.g. {example}")


def names(expected="a list of class names"):
    """A list of strings."""
    return _Rule(lambda v: isinstance(v, tuple) and all(isinstance(c, str) for c in v),
                 expected)


def num_anchors(sizes=RPN_SIZES, ratios=RPN_RATIOS, *, product=False):
    """Anchors a pixel: ``len(sizes) + len(ratios) - 1`` (the chapter's
    combinations), or ``len(sizes) * len(ratios)`` with ``product`` (the
    one rule; :func:`rpn.num_anchors` and ``ModelSettings.num_anchors`` are
    it)."""
    return len(sizes) * len(ratios) if product else len(sizes) + len(ratios) - 1


def check_iou_order(pos_iou, neg_iou, where="setting neg_iou"):
    """The rule between the two labelling thresholds: ``neg_iou <=
    pos_iou``."""
    if neg_iou > pos_iou:
        raise SettingsError(f"{where}: got {neg_iou}; expected at most pos_iou ({pos_iou})")


def setting(default, rule, *, shaping=False, since=None):
    """A dataclass field with its rule. ``shaping``: the value changes the
    shapes of the model's parameters (a checkpoint only loads into a model
    built with the same one). ``since``: the package version that added
    the setting; settings saved by earlier versions lack it and load with
    its default, which must keep their meaning (settings without ``since``
    are in every saved run, and one missing is an error)."""
    return field(default=default, metadata={"rule": rule, "shaping": shaping,
                                            "since": since})


class Settings:
    """What every settings group can do: check itself on creation,
    ``replace``, and go to and from a JSON-able dict."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
            rule = f.metadata.get("rule")
            if rule is not None:
                if not rule.test(value):
                    raise SettingsError(f"setting {f.name}: got {value!r}; expected "
                                        f"{rule.expected}")
                if rule.integer and value is not None:
                    value = int(value)
            object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self):
        """Rules that involve several settings (none by default)."""

    @classmethod
    def names(cls):
        return tuple(f.name for f in fields(cls))

    @classmethod
    def shaping_names(cls):
        return tuple(f.name for f in fields(cls) if f.metadata.get("shaping"))

    @classmethod
    def required_names(cls):
        """The settings every saved run has (those without ``since``)."""
        return tuple(f.name for f in fields(cls)
                     if f.metadata.get("rule") is not None and not f.metadata.get("since"))

    def replace(self, **changes):
        unknown = set(changes) - set(self.names())
        if unknown:
            raise unknown_settings(unknown, self.names())
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`to_dict`. A setting added by a later
        version (``since``) that ``data`` lacks takes its default, so
        settings saved before it existed load with the meaning they had; any
        other missing setting, or an unknown one, is an error naming it."""
        if not isinstance(data, dict):
            raise SettingsError(f"expected an object of settings, got {type(data).__name__}")
        missing = [n for n in cls.required_names() if n not in data]
        if missing:
            raise SettingsError(f"settings missing: {missing}")
        return cls().replace(**data)


@dataclass(frozen=True)
class ModelSettings(Settings):
    """Everything the proposal model (:class:`rpn.RegionProposalNetwork`)
    needs, with the chapter's values as defaults. ``docs/settings.md`` says
    what each one does; units: pixels are input pixels (after resizing),
    anchor sizes fractions of ``size``."""
    # the input: how images are resized
    resize: str = setting("fixed", choice("fixed", "keep_ratio", "native"))
    size: int = setting(256, integer(16, "an integer >= 16 (pixels)"))
    max_size: int = setting(256, integer(16, "an integer >= 16 and >= size (pixels)"))
    # native: each image at its own resolution times scale; past max_pixels,
    # proposed in overlapping tiles of tile_size (issue 25)
    scale: float = setting(1.0, _Rule(lambda v: _number(v) and 0 < v <= 4,
                                      "a number in (0, 4]"), since="0.4.0")
    max_pixels: int = setting(16_777_216, integer(65_536, "an integer >= 65536 (pixels)"),
                              since="0.4.0")
    tile_size: int = setting(2048, integer(256, "an integer >= 256 (pixels)"), since="0.4.0")
    # the backbone and the head
    backbone: str = setting(DEFAULT_BACKBONE, _Rule(lambda v: v in BACKBONES,
                                                 "one of " + ", ".join(BACKBONES)),
                            shaping=True, since="0.3.0")
    stride: int = setting(32, _Rule(lambda v: _number(v) and v in (8, 16, 32), "8, 16 or 32",
                                    True), shaping=True)
    top_down: bool = setting(False, flag(), shaping=True)
    anchor_sizes: tuple = setting(RPN_SIZES, positive_numbers("[0.1,0.3]"), shaping=True)
    anchor_ratios: tuple = setting(RPN_RATIOS, positive_numbers("[0.5,1,2]"), shaping=True)
    anchor_product: bool = setting(False, flag(), shaping=True)
    head_channels: int = setting(128, integer(1), shaping=True)
    # a feature pyramid (issue 25): its levels (2: stride 4 ... 6: stride 64),
    # its channels, one anchor size a level (pixels; null: 8 x its stride)
    pyramid: object = setting(None, optional(_levels(), "null or at least two consecutive "
                                                        "levels from 2 to 6, e.g. [2,3,4,5,6]"),
                              shaping=True, since="0.4.0")
    pyramid_channels: int = setting(128, integer(8), shaping=True, since="0.4.0")
    pyramid_sizes: object = setting(None, optional(positive_numbers("[16,32,64,128,256]"),
                                                   "null or a list of sizes in pixels, one "
                                                   "a level"), since="0.4.0")
    # several sizes a level (RetinaNet's octave scales): a level's sizes are
    # its size times each of these
    pyramid_scales: tuple = setting((1.0,), positive_numbers("[1,2]"), shaping=True,
                                    since="0.4.0")
    # proposals
    nms_threshold: float = setting(0.7, unit())
    pre_nms_top_n_train: int = setting(2000, integer(1))
    post_nms_top_n_train: int = setting(2000, integer(1))
    pre_nms_top_n_test: int = setting(2000, integer(1))
    post_nms_top_n_test: int = setting(1000, integer(1))
    min_size: float = setting(0.0, number(0, "a number >= 0 (pixels)"))
    allowed_border: object = setting(None, optional(number(0), "null or a number >= 0 "
                                                               "(pixels)"))
    box_voting: object = setting(None, optional(unit(), "null or a number in [0, 1]"),
                                 since="0.3.0")
    # labels and loss
    pos_iou: float = setting(0.7, unit())
    neg_iou: float = setting(0.3, unit("a number in [0, 1], at most pos_iou"))
    neg_pos_ratio: float = setting(5, optional(number(0), "null (every candidate) or a "
                                                          "number >= 0"))
    crowd_ioa: float = setting(0.5, unit())
    # Faster R-CNN's sampling (issue 20): a fixed number of anchors an image,
    # at most a fraction of them positive; null keeps neg_pos_ratio's rule
    anchors_per_image: object = setting(None, optional(integer(1), "null or an integer "
                                                                   ">= 1"), since="0.3.0")
    positive_fraction: float = setting(0.5, unit(), since="0.3.0")
    lambd: float = setting(1.0, number(0))
    # localisation (issue 17): off by default, which is the chapter's model
    giou_weight: float = setting(0.0, number(0), since="0.3.0")
    iou_branch: bool = setting(False, flag(), shaping=True, since="0.3.0")
    iou_weight: float = setting(1.0, number(0), since="0.3.0")
    iou_score_power: float = setting(0.5, unit(), since="0.3.0")
    refine: bool = setting(False, flag(), shaping=True, since="0.3.0")
    refine_rois: int = setting(64, integer(2), since="0.3.0")
    refine_weight: float = setting(1.0, number(0), since="0.3.0")
    # objectness from localisation quality (issue 26; rpn.model.objectness):
    # "class" is the chapter's classifier, "centerness" OLN's
    objectness: str = setting("class", choice("class", "centerness"), shaping=True,
                              since="0.4.0")
    cls_weight: float = setting(1.0, number(0), since="0.4.0")
    centerness_weight: float = setting(1.0, number(0), since="0.4.0")
    centerness_pos_iou: float = setting(0.3, unit(), since="0.4.0")
    centerness_neg_iou: float = setting(0.1, unit("a number in [0, 1], at most "
                                                  "centerness_pos_iou"), since="0.4.0")
    centerness_samples: int = setting(256, integer(1), since="0.4.0")
    head_norm: bool = setting(False, flag(), since="0.4.0")

    def _check_together(self):
        check_iou_order(self.pos_iou, self.neg_iou)
        check_iou_order(self.centerness_pos_iou, self.centerness_neg_iou,
                        where="setting centerness_neg_iou")
        if self.objectness == "centerness" and self.iou_branch:
            raise SettingsError("setting iou_branch: the centerness objectness uses the "
                                "head's quality branch; give objectness=centerness or "
                                "iou_branch, not both")
        if self.max_size < self.size and self.resize == "keep_ratio":
            raise SettingsError(f"setting max_size: got {self.max_size}; expected at "
                                f"least size ({self.size})")
        if self.top_down and self.stride != 8:
            raise SettingsError(f"setting top_down: needs stride 8, got stride "
                                f"{self.stride}")
        if self.pyramid is not None and self.top_down:
            raise SettingsError("setting top_down: a pyramid has its own top-down path; "
                                "give pyramid or top_down, not both")
        if self.pyramid is not None and self.refine:
            raise SettingsError("setting refine: the refinement stage pools one map; it "
                                "does not run on a pyramid (give pyramid or refine)")
        if self.pyramid_sizes is not None and (
                self.pyramid is None or len(self.pyramid_sizes) != len(self.pyramid)):
            raise SettingsError(f"setting pyramid_sizes: got {list(self.pyramid_sizes)}; "
                                f"expected one size a level of pyramid "
                                f"({None if self.pyramid is None else list(self.pyramid)})")
        if self.resize == "fixed" and self.size % self.size_divisor:
            model = (f"pyramid {list(self.pyramid)}" if self.pyramid is not None else
                     f"stride {self.stride}" + (" with top_down" if self.top_down else ""))
            raise SettingsError(f"setting size: got {self.size}; expected a multiple of "
                                f"{self.size_divisor} for {model}")

    @property
    def size_divisor(self):
        """Canvas sides must be multiples of this for the backbone (a
        pyramid's levels, up to its coarsest computed one, stride 32 at most,
        meet exactly: 8 for levels 2 and 3, 32 for 2 to 6)."""
        if self.pyramid is not None:
            return 2 ** min(self.pyramid[-1], 5)
        return 16 if self.top_down else self.stride

    @property
    def strides(self):
        """The stride of each map the head runs on: the pyramid's levels, or
        the one map's ``stride``."""
        if self.pyramid is None:
            return (self.stride,)
        return tuple(2 ** level for level in self.pyramid)

    @property
    def level_sizes(self):
        """A pyramid's anchor size a level, in input pixels (each level's
        anchors: this size times each of ``pyramid_scales``)."""
        if self.pyramid_sizes is not None:
            return tuple(float(s) for s in self.pyramid_sizes)
        return tuple(8.0 * stride for stride in self.strides)

    @property
    def quality_branch(self):
        """Whether the head has its third branch: the IoU branch, or OLN's
        centerness."""
        return self.iou_branch or self.objectness == "centerness"

    @property
    def num_anchors(self):
        """Anchors a pixel: every size with every ratio (``anchor_product``)
        or the chapter's ``len(sizes) + len(ratios) - 1``; with a pyramid,
        a level's sizes (:attr:`level_sizes` times ``pyramid_scales``) at
        every ratio."""
        if self.pyramid is not None:
            return num_anchors(self.pyramid_scales, self.anchor_ratios, product=True)
        return num_anchors(self.anchor_sizes, self.anchor_ratios, product=self.anchor_product)

    def top_n(self, training):
        """``(pre_nms_top_n, post_nms_top_n)`` of training or inference."""
        if training:
            return self.pre_nms_top_n_train, self.post_nms_top_n_train
        return self.pre_nms_top_n_test, self.post_nms_top_n_test


def check(name, value, *, like=None):
    """``value`` checked by the rule of the model setting ``like`` (default
    ``name``), for functions that take a setting's value as an argument
    (:func:`rpn.label_anchors`' thresholds, a backbone's name): the one
    place the rule is written. Returns the value as the setting keeps it
    (whole numbers as ``int``); a wrong one is a :class:`SettingsError`
    naming ``name``, what it got and what it takes."""
    rule = ModelSettings.__dataclass_fields__[like or name].metadata["rule"]
    if not rule.test(value):
        raise SettingsError(f"{name}: got {value!r}; expected {rule.expected}")
    return int(value) if rule.integer and value is not None else value
