"""The settings of a training run, and the model, anchors and labels they
describe.

Two presets: ``chapter`` (the chapter's settings: 256 x 256, batch 32,
stride 32, its 5 anchors a pixel, SGD at 0.5 for both parts, 5 epochs) and
``default`` (the command line's, tuned for proposal recall within minutes
on a CPU; ``docs/tuning.md`` gives the measurements behind each choice).
Every setting is checked when a configuration is made: a wrong value is a
``ValueError`` naming the setting, what it got and what it takes.
"""
import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field, fields

from mxnet import init

from .anchors import RPN_RATIOS, RPN_SIZES, num_anchors, rpn_anchors
from .backbone import detection_backbone
from .evaluation import DEFAULT_KS
from .head import RPNOutput
from .loss import DetectionLoss
from .model import RegionProposalNetwork
from .preprocess import Resize
from .targets import rpn_targets
from .train import rpn_batch

__all__ = ["RunConfig", "PRESETS", "ConfigError", "build_model", "build_proposal_model"]


class ConfigError(ValueError):
    """A setting with a value it cannot take; the message names it."""

# settings that change the parameters' shapes: a checkpoint only loads
# into a model built with the same ones
_MODEL_KEYS = ("stride", "top_down", "anchor_sizes", "anchor_ratios", "anchor_product",
               "head_channels")


def _positive_numbers(value):
    return (isinstance(value, tuple) and len(value) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and v > 0 for v in value))


# name -> (check, what it takes): "int"/"float" with a minimum, "unit" for
# [0, 1], or a predicate; numbers never accept true/false
_RULES = {
    "resize": (lambda v: v in ("fixed", "keep_ratio"), "'fixed' or 'keep_ratio'"),
    "size": ("int", 16, "an integer >= 16 (pixels)"),
    "max_size": ("int", 16, "an integer >= 16 and >= size (pixels)"),
    "batch_size": ("int", 1, "an integer >= 1"),
    "epochs": ("int", 1, "an integer >= 1"),
    "min_steps": ("int", 0, "an integer >= 0"),
    "stride": (lambda v: v in (8, 16, 32) and not isinstance(v, bool), "8, 16 or 32"),
    "top_down": (lambda v: isinstance(v, bool), "true or false"),
    "anchor_sizes": (_positive_numbers, "a list of positive numbers, e.g. [0.1,0.3]"),
    "anchor_ratios": (_positive_numbers, "a list of positive numbers, e.g. [0.5,1,2]"),
    "anchor_product": (lambda v: isinstance(v, bool), "true or false"),
    "head_channels": ("int", 1, "an integer >= 1"),
    "pos_iou": ("unit", None, "a number in [0, 1]"),
    "neg_iou": ("unit", None, "a number in [0, 1], at most pos_iou"),
    "neg_pos_ratio": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(
        v, bool) and math.isfinite(v) and v >= 0), "null (every candidate) or a number >= 0"),
    "crowd_ioa": ("unit", None, "a number in [0, 1]"),
    "allowed_border": (lambda v: v is None or (isinstance(v, (int, float)) and not
                                               isinstance(v, bool) and math.isfinite(v)
                                               and v >= 0), "null or a number >= 0 (pixels)"),
    "lambd": ("float", 0, "a number >= 0"),
    "optimizer": (lambda v: v in ("sgd", "nag", "adam"), "'sgd', 'nag' or 'adam'"),
    "backbone_lr": ("float", 0, "a number >= 0"),
    "output_lr": ("float", 0, "a number >= 0"),
    "momentum": ("unit", None, "a number in [0, 1]"),
    "wd": ("float", 0, "a number >= 0"),
    "lr_schedule": (lambda v: v in ("constant", "cosine"), "'constant' or 'cosine'"),
    "warmup_steps": ("int", 0, "an integer >= 0"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "num_train": ("int", 1, "an integer >= 1"),
    "num_val": ("int", 1, "an integer >= 1"),
    "nms_threshold": ("unit", None, "a number in [0, 1]"),
    "pre_nms_top_n_train": ("int", 1, "an integer >= 1"),
    "post_nms_top_n_train": ("int", 1, "an integer >= 1"),
    "pre_nms_top_n_test": ("int", 1, "an integer >= 1"),
    "post_nms_top_n_test": ("int", 1, "an integer >= 1, at least the largest of ks"),
    "min_size": ("float", 0, "a number >= 0 (pixels)"),
    "ks": (lambda v: isinstance(v, tuple) and len(v) > 0 and all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v),
        "a list of proposal counts >= 1, e.g. [100,300,1000]"),
    "log_interval": ("int", 1, "an integer >= 1"),
    "clip_boxes": (lambda v: isinstance(v, bool), "true or false"),
    "classes": (lambda v: isinstance(v, tuple) and all(isinstance(c, str) for c in v),
                "a list of class names"),
}


def _check(name, value):
    rule, *rest = _RULES[name]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rule == "int":
        ok = number and float(value).is_integer() and value >= rest[0]
    elif rule == "float":
        ok = number and math.isfinite(value) and value >= rest[0]
    elif rule == "unit":
        ok = number and 0 <= value <= 1
    else:
        ok = rule(value)
    if not ok:
        raise ConfigError(f"setting {name}: got {value!r}; expected {rest[-1]}")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run, with the chapter's values as defaults (see
    ``docs/settings.md`` for each one)."""
    resize: str = "fixed"
    size: int = 256
    max_size: int = 256
    batch_size: int = 32
    epochs: int = 5
    min_steps: int = 0
    stride: int = 32
    top_down: bool = False
    anchor_sizes: tuple = RPN_SIZES
    anchor_ratios: tuple = RPN_RATIOS
    anchor_product: bool = False
    head_channels: int = 128
    pos_iou: float = 0.7
    neg_iou: float = 0.3
    neg_pos_ratio: float = 5
    crowd_ioa: float = 0.5
    allowed_border: object = None
    lambd: float = 1.0
    optimizer: str = "sgd"
    backbone_lr: float = 0.5
    output_lr: float = 0.5
    momentum: float = 0.0
    wd: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    augment: bool = True
    num_train: int = 1024
    num_val: int = 256
    nms_threshold: float = 0.7
    pre_nms_top_n_train: int = 2000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 2000
    post_nms_top_n_test: int = 1000
    min_size: float = 0.0
    ks: tuple = DEFAULT_KS
    log_interval: int = 10
    clip_boxes: bool = False
    classes: tuple = field(default_factory=tuple)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            _check(f.name, getattr(self, f.name))
            if _RULES[f.name][0] == "int":
                object.__setattr__(self, f.name, int(getattr(self, f.name)))
        if self.neg_iou > self.pos_iou:
            raise ConfigError(f"setting neg_iou: got {self.neg_iou}; expected at most "
                             f"pos_iou ({self.pos_iou})")
        if self.max_size < self.size and self.resize == "keep_ratio":
            raise ConfigError(f"setting max_size: got {self.max_size}; expected at least "
                             f"size ({self.size})")
        if self.post_nms_top_n_test < max(self.ks):
            raise ConfigError(f"setting post_nms_top_n_test: got {self.post_nms_top_n_test}"
                             f"; expected at least the largest of ks ({max(self.ks)})")
        multiple = 16 if self.top_down else self.stride
        if self.resize == "fixed" and self.size % multiple:
            raise ConfigError(f"setting size: got {self.size}; expected a multiple of "
                             f"{multiple} for stride {self.stride}"
                             + (" with top_down" if self.top_down else ""))
        if self.top_down and self.stride != 8:
            raise ConfigError(f"setting top_down: needs stride 8, got stride {self.stride}")

    def replace(self, **changes):
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`to_dict`: every setting must be present and
        valid (``ValueError`` naming it otherwise)."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected an object of settings, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        data = {"clip_boxes": False, **data}         # runs saved before it existed
        missing = [n for n in names if n not in data]
        if missing:
            raise ConfigError(f"settings missing: {missing}")
        return cls(**{n: tuple(data[n]) if isinstance(data[n], list) else data[n]
                      for n in names})

    def model_mismatch(self, other):
        """The model-shaping settings in which ``other`` differs."""
        return [k for k in _MODEL_KEYS
                if json.dumps(getattr(self, k)) != json.dumps(getattr(other, k))]

    def epochs_for(self, steps_per_epoch):
        """``epochs``, raised so that training takes at least ``min_steps``
        steps: a small dataset gets as many updates as the default one."""
        return max(self.epochs, -(-self.min_steps // max(steps_per_epoch, 1)))

    @property
    def size_divisor(self):
        """Canvas sides must be multiples of this for the backbone."""
        return 16 if self.top_down else self.stride

    def resize_rule(self):
        """The :class:`rpn.preprocess.Resize` images go through."""
        if self.resize == "fixed":
            return Resize.fixed_size(self.size, self.size)
        return Resize.keep_ratio(self.size, self.max_size)

    @property
    def num_anchors(self):
        return num_anchors(self.anchor_sizes, self.anchor_ratios,
                           product=self.anchor_product)

    @property
    def anchor_fn(self):
        return functools.partial(rpn_anchors, sizes=self.anchor_sizes,
                                 ratios=self.anchor_ratios,
                                 product=self.anchor_product)

    @property
    def batch_fn(self):
        """The chapter's :func:`rpn.rpn_batch` with these anchors and labels
        (for fixed-size batches; the proposal model has its own)."""
        targets = functools.partial(rpn_targets, pos_iou=self.pos_iou,
                                    neg_iou=self.neg_iou,
                                    neg_pos_ratio=self.neg_pos_ratio)
        return functools.partial(rpn_batch, anchor_fn=self.anchor_fn,
                                 target_fn=targets)

    def loss(self):
        return DetectionLoss(self.lambd)

    def optimizer_params(self):
        params = {"wd": self.wd}
        if self.optimizer in ("sgd", "nag"):
            params["momentum"] = self.momentum
        return params

    def model_kwargs(self):
        """The :class:`rpn.RegionProposalNetwork` keyword arguments."""
        return dict(stride=self.stride, base_size=self.size, anchor_sizes=self.anchor_sizes,
                    anchor_ratios=self.anchor_ratios, anchor_product=self.anchor_product,
                    nms_threshold=self.nms_threshold,
                    pre_nms_top_n_train=self.pre_nms_top_n_train,
                    post_nms_top_n_train=self.post_nms_top_n_train,
                    pre_nms_top_n_test=self.pre_nms_top_n_test,
                    post_nms_top_n_test=self.post_nms_top_n_test, min_size=self.min_size,
                    allowed_border=self.allowed_border, pos_iou=self.pos_iou,
                    neg_iou=self.neg_iou, neg_pos_ratio=self.neg_pos_ratio,
                    crowd_ioa=self.crowd_ioa)


PRESETS = {
    "chapter": RunConfig(),
    "default": RunConfig(
        resize="keep_ratio", size=112, max_size=192, batch_size=16, epochs=7,
        min_steps=448, stride=8, top_down=False, anchor_sizes=(0.09, 0.18, 0.36, 0.72),
        anchor_ratios=(1 / 3, 0.5, 1.0, 2.0, 3.0), anchor_product=True,
        head_channels=128, pos_iou=0.5, neg_iou=0.3, neg_pos_ratio=3, lambd=1.0,
        optimizer="adam", backbone_lr=0.002, output_lr=0.002, wd=1e-4,
        lr_schedule="cosine", warmup_steps=20),
}


def build_model(config, ctx, *, pretrained=None):
    """Backbone and head for ``config``, initialised on ``ctx`` (Xavier, as
    the chapter), or with ImageNet weights from ``pretrained`` (a folder or
    ``.params`` file) for the backbone."""
    backbone = detection_backbone(pretrained=pretrained is not None,
                                  root=pretrained, stride=config.stride,
                                  top_down=config.top_down)
    if pretrained is None:
        backbone.initialize(init=init.Xavier(), ctx=ctx, force_reinit=True)
    else:
        backbone.collect_params().reset_ctx(ctx)
    head = RPNOutput(config.num_anchors, channels=config.head_channels)
    head.initialize(init=init.Xavier(), ctx=ctx)
    return backbone, head


def build_proposal_model(config, ctx, *, pretrained=None):
    """The :class:`rpn.RegionProposalNetwork` of ``config`` on ``ctx`` (a
    context or a list), freshly initialised (see :func:`build_model`)."""
    backbone, head = build_model(config, ctx, pretrained=pretrained)
    model = RegionProposalNetwork(backbone, head, resize=config.resize_rule(),
                                  **config.model_kwargs())
    model.collect_params().reset_ctx(ctx)
    return model
