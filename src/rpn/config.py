"""The settings of a training run, and the presets.

A :class:`RunConfig` composes the model's settings
(:class:`rpn.settings.ModelSettings`), the training settings
(:class:`TrainSettings`) and the run's own (the synthetic set's size, the
recall's ``ks``, the classes). On the command line and in ``config.json``
the settings are one flat namespace (``--set stride=8``, ``--set
batch_size=8``): :meth:`RunConfig.replace` sends each name to its group.

Three presets: ``chapter`` (the chapter's settings: 256 x 256, batch 32,
stride 32, its 5 anchors a pixel, SGD at 0.5 for both parts, 5 epochs),
``default`` (the command line's, tuned for proposal recall within minutes
on a CPU; ``docs/tuning.md`` gives the measurements behind each choice) and
``faster-rcnn`` (the paper's settings for a GPU: shorter side 600, ResNet-50
v1 at stride 16 with ImageNet weights, 9 anchors a pixel, 256 anchors an
image, SGD). This module builds nothing: it imports only
:mod:`rpn.settings`.
"""
import dataclasses
import json
from dataclasses import dataclass, field, fields

from .settings import (ModelSettings, Settings, SettingsError, choice, counts, flag, integer,
                       names, number, optional, setting, share, unit, unknown_settings)

__all__ = ["RunConfig", "TrainSettings", "PRESETS", "PRESET_PRETRAINED",
           "DEFAULT_KS", "resolve_config"]

#: The proposal counts ``K`` of recall by default (COCO's AR@100 to AR@1000).
DEFAULT_KS = (100, 300, 1000)


@dataclass(frozen=True)
class TrainSettings(Settings):
    """How the model is trained, with the chapter's values as defaults."""
    batch_size: int = setting(32, integer(1))
    epochs: int = setting(5, integer(1))
    min_steps: int = setting(0, integer(0))
    optimizer: str = setting("sgd", choice("sgd", "nag", "adam"))
    backbone_lr: float = setting(0.5, number(0))
    output_lr: float = setting(0.5, number(0))
    momentum: float = setting(0.0, unit())
    wd: float = setting(1e-4, number(0))
    lr_schedule: str = setting("constant", choice("constant", "cosine", "step"))
    warmup_steps: int = setting(0, integer(0))
    augment: bool = setting(True, flag())
    crop_prob: float = setting(0.5, unit(), since="0.3.0")
    min_crop_scale: float = setting(0.3, share(), since="0.3.0")
    log_interval: int = setting(10, integer(1))
    eval_every: int = setting(0, integer(0), since="0.4.0")
    keep: int = setting(1, integer(1), since="0.4.0")
    # training at the photographs' own resolution (issue 25): windows of this
    # side cut at the resize rule's scale instead of whole images
    window: object = setting(None, optional(integer(32), "null or an integer >= 32 (pixels)"),
                             since="0.4.0")
    windows_per_image: int = setting(4, integer(1), since="0.4.0")
    window_focus: float = setting(0.9, unit(), since="0.4.0")
    window_visible: float = setting(0.5, unit(), since="0.4.0")

    def epochs_for(self, steps_per_epoch):
        """``epochs``, raised so that training takes at least ``min_steps``
        steps: a small dataset gets as many updates as the default one."""
        return max(self.epochs, -(-self.min_steps // max(steps_per_epoch, 1)))

    def optimizer_params(self):
        """The optimizer's keyword arguments besides the learning rate."""
        params = {"wd": self.wd}
        if self.optimizer in ("sgd", "nag"):
            params["momentum"] = self.momentum
        return params


_GROUPS = ("model", "train")


@dataclass(frozen=True)
class RunConfig(Settings):
    """Every setting of a run (``docs/settings.md`` lists them): ``model``
    and ``train`` groups, and the run's own. The defaults are the
    chapter's. Read a setting from its group (``config.model.stride``,
    ``config.train.batch_size``) or by name (:meth:`get`)."""
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    num_train: int = setting(1024, integer(1))
    num_val: int = setting(256, integer(1))
    ks: tuple = setting(DEFAULT_KS, counts("[100,300,1000]"))
    clip_boxes: bool = setting(False, flag(), since="0.3.0")
    classes: tuple = setting((), names())

    def _check_together(self):
        if self.model.post_nms_top_n_test < max(self.ks):
            raise SettingsError(f"setting post_nms_top_n_test: got "
                                f"{self.model.post_nms_top_n_test}; expected at least the "
                                f"largest of ks ({max(self.ks)})")

    @classmethod
    def _own(cls):
        return tuple(f.name for f in fields(cls) if f.name not in _GROUPS)

    @classmethod
    def names(cls):
        """Every setting's name, flat."""
        return ModelSettings.names() + TrainSettings.names() + cls._own()

    @classmethod
    def shaping_names(cls):
        return ModelSettings.shaping_names()

    @classmethod
    def required_names(cls):
        own = tuple(n for n in super().required_names() if n not in _GROUPS)
        return ModelSettings.required_names() + TrainSettings.required_names() + own

    def get(self, name):
        for group in _GROUPS:
            if name in getattr(self, group).names():
                return getattr(getattr(self, group), name)
        if name in self._own():
            return getattr(self, name)
        raise unknown_settings([name], self.names())

    def replace(self, **changes):
        """A copy with ``changes`` (flat names, each sent to its group)."""
        unknown = set(changes) - set(self.names())
        if unknown:
            raise unknown_settings(unknown, self.names())
        parts = {}
        for group in _GROUPS:
            settings = getattr(self, group)
            mine = {k: v for k, v in changes.items() if k in settings.names()}
            if mine:
                parts[group] = settings.replace(**mine)
        own = {k: v for k, v in changes.items() if k in self._own()}
        return dataclasses.replace(self, **parts, **own)

    def to_dict(self):
        """One flat JSON-able dict (the ``config`` of ``config.json``)."""
        flat = {}
        for group in _GROUPS:
            flat.update(getattr(self, group).to_dict())
        flat.update({name: getattr(self, name) for name in self._own()})
        return json.loads(json.dumps(flat))

    def model_mismatch(self, other):
        """The model-shaping settings in which ``other`` differs."""
        return [k for k in self.shaping_names()
                if json.dumps(self.get(k)) != json.dumps(other.get(k))]


PRESETS = {
    "chapter": RunConfig(),
    "default": RunConfig().replace(
        resize="keep_ratio", size=112, max_size=192, batch_size=16, epochs=7,
        min_steps=448, stride=8, top_down=False, anchor_sizes=(0.09, 0.18, 0.36, 0.72),
        anchor_ratios=(1 / 3, 0.5, 1.0, 2.0, 3.0), anchor_product=True,
        head_channels=128, pos_iou=0.5, neg_iou=0.3, neg_pos_ratio=3, lambd=1.0,
        optimizer="adam", backbone_lr=0.002, output_lr=0.002, wd=1e-4,
        lr_schedule="cosine", warmup_steps=20),
    # proposals for objects of classes never trained on (issue 26;
    # docs/settings.md says why): the default's model and schedule, its
    # objectness OLN's centerness instead of a classifier
    "open-world": RunConfig().replace(
        resize="keep_ratio", size=112, max_size=192, batch_size=16, epochs=7,
        min_steps=448, stride=8, top_down=False, anchor_sizes=(0.09, 0.18, 0.36, 0.72),
        anchor_ratios=(1 / 3, 0.5, 1.0, 2.0, 3.0), anchor_product=True,
        head_channels=128, pos_iou=0.5, neg_iou=0.3, neg_pos_ratio=3, lambd=1.0,
        objectness="centerness", cls_weight=0.0, centerness_weight=1.0, head_norm=True,
        optimizer="adam", backbone_lr=0.002, output_lr=0.002, wd=1e-4,
        lr_schedule="cosine", warmup_steps=20),
    # small objects in large photographs (issue 25; docs/tuning.md has the
    # measurements): each photograph at its own resolution, trained on
    # windows of 512 pixels cut from it (two an image an epoch, over
    # objects), with the default's network (stride 8, 20 anchors of 10 to
    # 80 pixels: size stays 112, the anchors' base); at inference whole
    # images, tiled past 16 megapixels. A feature pyramid was behind at
    # equal CPU time and is not part of it
    "small-objects": RunConfig().replace(
        resize="native", scale=1.0, size=112, max_size=192, batch_size=4, epochs=3,
        min_steps=600, window=512, windows_per_image=2, window_focus=0.9,
        window_visible=0.5, stride=8, top_down=False, anchor_sizes=(0.09, 0.18, 0.36, 0.72),
        anchor_ratios=(1 / 3, 0.5, 1.0, 2.0, 3.0), anchor_product=True,
        head_channels=128, pos_iou=0.5, neg_iou=0.3, neg_pos_ratio=3, lambd=1.0,
        optimizer="adam", backbone_lr=0.002, output_lr=0.002, wd=1e-4,
        lr_schedule="cosine", warmup_steps=20),
    # Ren et al. 2015 (3.1.3, 3.3, 4.1): shorter side 600, anchors of 128,
    # 256 and 512 pixels at ratios 1:2, 1:1, 2:1, 256 anchors an image with
    # at most half positive, IoU 0.7/0.3, 12,000/2,000 proposals before and
    # after NMS in training and 6,000/1,000 in testing, SGD (momentum 0.9,
    # weight decay 0.0005) at 0.001 an image, a tenth of it for the last
    # quarter (their 60k + 20k steps), 80,000 images (their 80k one-image
    # steps: 5 epochs of VOC 07+12). ResNet-50 v1 at stride 16, its stage 3
    # (C4), as the ResNet Faster R-CNN of He et al. 2016; its ImageNet
    # weights come with the preset (PRESET_PRETRAINED).
    "faster-rcnn": RunConfig().replace(
        resize="keep_ratio", size=600, max_size=1000, batch_size=4, epochs=5,
        min_steps=20000, backbone="resnet50_v1", stride=16, top_down=False,
        anchor_sizes=(128 / 600, 256 / 600, 512 / 600), anchor_ratios=(0.5, 1.0, 2.0),
        anchor_product=True, head_channels=512, pos_iou=0.7, neg_iou=0.3,
        anchors_per_image=256, positive_fraction=0.5, pre_nms_top_n_train=12000,
        post_nms_top_n_train=2000, pre_nms_top_n_test=6000, post_nms_top_n_test=1000,
        nms_threshold=0.7, lambd=1.0, optimizer="sgd", backbone_lr=0.004,
        output_lr=0.004, momentum=0.9, wd=5e-4, lr_schedule="step", warmup_steps=0),
}

#: The ImageNet weights a preset trains from unless told otherwise
#: (``pretrained``: ``"imagenet"``, MXNet's model store; absent: none).
PRESET_PRETRAINED = {"faster-rcnn": "imagenet"}


def resolve_config(preset="default", *, epochs=None, batch_size=None, size=None,
                   max_size=None, lr=None, backbone=None, settings=None):
    """A preset with explicit changes: ``epochs`` (then exactly that many:
    ``min_steps`` applies only when ``epochs`` is not given), ``batch_size``,
    ``size``, ``max_size``, ``lr`` (both parts), ``backbone`` (a name of
    :data:`rpn.settings.BACKBONES`), and ``settings`` (a dict of any other
    setting, flat names). A ``size`` without ``max_size`` keeps the preset's
    aspect limit."""
    if preset not in PRESETS:
        raise SettingsError(f"preset {preset!r}: expected one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    changes = dict(settings or {})
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("size", size),
                        ("max_size", max_size), ("backbone", backbone)):
        if value is not None:
            changes[name] = value
    if lr is not None:
        changes["backbone_lr"] = changes["output_lr"] = lr
    if epochs is not None:
        changes["min_steps"] = 0
    if (isinstance(changes.get("size"), int) and "max_size" not in changes
            and changes.get("resize", base.model.resize) == "keep_ratio"):
        model = base.model
        aspect = model.max_size / model.size if model.resize == "keep_ratio" else 5 / 3
        changes["max_size"] = int(round(changes["size"] * aspect))
    return base.replace(**changes)
