"""The CNN backbone that turns images into feature maps.

Chapter section "Model" (``detection_backbone``). Faster R-CNN used VGG-16
(:cite:`Ren.He.Girshick.ea.2015`); the chapter uses the more modern ResNet-18
v2 from Gluon's model zoo, and so does the package by default. Beside it,
the ResNets v1 and v2 of 18, 34, 50 and 101 layers and MobileNet v2 at four
widths (:data:`rpn.settings.BACKBONES`, named as the zoo names them), each
cut at a stride of 8, 16 or 32, with ImageNet weights from
:mod:`rpn.zoo.weights` when asked (the networks themselves: :mod:`rpn.zoo.networks`).

Shape glossary: ``B`` images, images ``(B, 3, h, w)``, features
``(B, C, h / stride, w / stride)``; ``C`` depends on the network and the
stride (:func:`feature_channels`).
"""
from mxnet import init
from mxnet.gluon import nn

from .ops.guards import EmptyBatchSafe
from .settings import BACKBONES, DEFAULT_BACKBONE
from .zoo.networks import STAGE_ENDS, family, feature_channels, zoo_network
from .zoo.weights import download_pretrained, pretrained_file_name

__all__ = ["detection_backbone", "download_pretrained", "pretrained_file_name",
           "feature_channels", "zoo_network", "BACKBONES"]


class _Features(EmptyBatchSafe, nn.HybridSequential):
    """A sequence of layers that answers a batch of zero images with empty
    features (see :mod:`rpn.ops.guards`)."""


class _TopDown(EmptyBatchSafe, nn.HybridBlock):
    """A stride-8 map enriched by the stride-16 stage above it, as one level
    of a feature pyramid (Lin et al., 2017): ``lateral(C3) + up2(top(C4))``,
    then a 3x3 convolution. ``bottom``: images -> C3 (B, C3, h/8, w/8)
    (ResNet-18 v2: 128 channels); ``stage``: C3 -> C4 (B, C4, h/16, w/16)
    (256). Returns (B, channels, h/8, w/8)."""

    def __init__(self, bottom, stage, channels=128, **kwargs):
        super().__init__(**kwargs)
        self.bottom, self.stage = bottom, stage
        with self.name_scope():
            self.c3_out = nn.HybridSequential()
            self.c3_out.add(nn.BatchNorm(), nn.Activation("relu"))
            self.c4_out = nn.HybridSequential()
            self.c4_out.add(nn.BatchNorm(), nn.Activation("relu"))
            self.lateral = nn.Conv2D(channels, kernel_size=1)
            self.top = nn.Conv2D(channels, kernel_size=1)
            self.smooth = nn.Conv2D(channels, kernel_size=3, padding=1, activation="relu")

    def hybrid_forward(self, F, X):
        c3 = self.bottom(X)                                   # (B, C3, h/8, w/8)
        c4 = self.stage(c3)                                   # (B, C4, h/16, w/16)
        top = self.top(self.c4_out(c4))                       # (B, C, h/16, w/16)
        # nearest-neighbour x2: (B, C, h/16, w/16) -> (B, C, h/8, w/8), which
        # meets C3 when h and w are multiples of 16
        top = top.repeat(2, axis=2).repeat(2, axis=3)
        return self.smooth(self.lateral(self.c3_out(c3)) + top)


def detection_backbone(pretrained=False, root=None, *, stride=32, top_down=False,
                       name=DEFAULT_BACKBONE):
    """A zoo network ``name`` (default ResNet-18 v2, the chapter's) cut
    where its features reach ``stride``, without its global pooling.

    ResNet-18 v2 with ``stride=32`` (the chapter's) keeps everything but
    the last two layers (global pooling, flatten): 512 channels, a 256 x 256
    image gives an 8 x 8 map. ``stride=16`` stops after stage 3 (256
    channels, 16 x 16 for 256 x 256), Faster R-CNN's VGG-16 stride;
    ``stride=8`` after stage 2 (128 channels). A finer map places anchors
    more densely and is cheaper to compute, at a smaller receptive field; a
    BatchNorm and ReLU of its own close a truncated ResNet v2, as its units
    are pre-activation (v1 units and MobileNet v2's bottlenecks end
    complete). ``name`` (:data:`rpn.settings.BACKBONES`) picks another
    network: ``resnet{18,34,50,101}_v{1,2}`` (stages 2, 3 and 4 end at
    strides 8, 16 and 32; ResNet-50 and 101 have 512, 1024 and 2048
    channels there) or ``mobilenetv2_{1.0,0.75,0.5,0.25}`` (32, 96 and 1280
    channels at width 1.0); :func:`feature_channels` gives them.

    ``pretrained=True`` loads that network's ImageNet weights from ``root``
    (a ``.params`` file, or a folder holding the model store's file; a path
    that does not exist is a ``FileNotFoundError`` naming it; another
    network's weights a :class:`rpn.zoo.weights.WeightsMismatchError` naming
    the file and what it holds), or, with ``root=None``, from MXNet's model
    store (``~/.mxnet/models``), downloading them there when absent (a
    ``RuntimeError`` says where to put the file when that fails). The
    chapter trains from scratch, so ``False`` is the default; the network is
    then initialised (Xavier, current context) so that it runs at once, as
    the chapter's pretrained one does before its ``initialize(...,
    force_reinit=True)``.

    ``top_down=True`` (``stride=8`` only) adds the stride-16 part and a
    top-down path, as one level of a feature pyramid network: the stride-8
    map gets the larger receptive field and the semantics of stride 16
    (128 channels). Image sides must then be multiples of 16.

    Returns a ``HybridBlock``; images ``(B, 3, h, w)`` -> features ``(B, C,
    h / stride, w / stride)``.
    """
    if stride not in (8, 16, 32):
        raise ValueError(f"stride must be 8, 16 or 32, got {stride}")
    if top_down and stride != 8:
        raise ValueError(f"top_down needs stride=8, got stride={stride}")
    kind = family(name)
    ends = STAGE_ENDS[kind]
    net = zoo_network(name, pretrained, root)
    added = []      # blocks of this package's, which ImageNet weights do not cover
    if top_down:
        bottom = _Features(prefix="bottom_")
        bottom.add(*net.features[:ends[8]])
        if kind == "mobilenetv2":      # several bottlenecks from stride 8 to 16
            stage = _Features(prefix="stage_")
            stage.add(*net.features[ends[8]:ends[16]])
        else:                            # one ResNet stage
            stage = net.features[ends[8]]
        features = _TopDown(bottom, stage, prefix="topdown_")
        added = [features.c3_out, features.c4_out, features.lateral, features.top,
                 features.smooth]
    elif kind == "v2" and stride == 32:
        features = _Features(prefix=net.features.prefix)
        with features.name_scope():
            features.add(*list(net.features._children.values())[:ends[32]])
    else:
        features = _Features(prefix=f"stride{stride}_")
        features.add(*net.features[:ends[stride]])
        if kind == "v2":
            with features.name_scope():
                closing = nn.HybridSequential()
                closing.add(nn.BatchNorm(), nn.Activation("relu"))
            features.add(closing)
            added = [closing]
    if pretrained:
        for block in added:
            block.initialize()
    else:
        features.initialize(init.Xavier())
    return features
