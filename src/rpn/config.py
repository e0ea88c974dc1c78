"""The settings of a training run, and the model, anchors and labels they
describe.

Two presets: ``chapter`` (the chapter's settings: 256 x 256, batch 32,
stride 32, its 5 anchors a pixel, SGD at 0.5 for both parts, 5 epochs) and
``default`` (the main job's, tuned for proposal recall within minutes on a
CPU; the README gives the measurements behind each choice).
"""
import dataclasses
import functools
import json
from dataclasses import dataclass, field, fields

from mxnet import init

from .anchors import RPN_RATIOS, RPN_SIZES, num_anchors, rpn_anchors
from .backbone import detection_backbone
from .head import RPNOutput
from .loss import DetectionLoss
from .targets import rpn_targets
from .train import rpn_batch

__all__ = ["RunConfig", "PRESETS", "build_model"]

# settings that change the parameters' shapes: a checkpoint only loads
# into a model built with the same ones
_MODEL_KEYS = ("stride", "top_down", "anchor_sizes", "anchor_ratios", "anchor_product",
               "head_channels")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run, with the chapter's values as defaults."""
    size: int = 256
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
    classes: tuple = field(default_factory=tuple)

    def replace(self, **changes):
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data):
        names = {f.name: f for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in data.items() if k in names}
        return cls(**values)

    def model_mismatch(self, other):
        """The model-shaping settings in which ``other`` differs."""
        return [k for k in _MODEL_KEYS
                if json.dumps(getattr(self, k)) != json.dumps(getattr(other, k))]

    def epochs_for(self, steps_per_epoch):
        """``epochs``, raised so that training takes at least ``min_steps``
        steps: a small dataset gets as many updates as the default one."""
        return max(self.epochs, -(-self.min_steps // max(steps_per_epoch, 1)))

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


PRESETS = {
    "chapter": RunConfig(),
    "default": RunConfig(
        size=128, batch_size=16, epochs=7, min_steps=448, stride=8, top_down=False,
        anchor_sizes=(0.09, 0.18, 0.36, 0.72),
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
