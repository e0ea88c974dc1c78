"""The CNN backbone that turns images into feature maps.

Chapter section "Model" (``detection_backbone``). Faster R-CNN used VGG-16
(:cite:`Ren.He.Girshick.ea.2015`); the chapter uses the more modern ResNet-18
v2 from Gluon's model zoo.

Shape glossary: ``B`` images, images ``(B, 3, h, w)``, features
``(B, C, h / stride, w / stride)``.
"""
import os

from mxnet import base, init
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

from ._guards import EmptyBatchSafe

__all__ = ["detection_backbone", "download_pretrained", "pretrained_file_name"]

_MODEL = "resnet18_v2"
# resnet18_v2's features: 0 BatchNorm, 1 Conv, 2 BatchNorm, 3 ReLU, 4 MaxPool,
# 5-8 stages 1-4 (strides 4, 8, 16, 32), 9 BatchNorm, 10 ReLU, 11 global
# average pooling, 12 Flatten. A stride's last layer (exclusive end):
_STAGE_END = {8: 7, 16: 8}


def _default_root():
    return os.path.join(base.data_dir(), "models")


def pretrained_file_name():
    """The file name of ResNet-18 v2's ImageNet weights in MXNet's model store."""
    return f"{_MODEL}-{model_store.short_hash(_MODEL)}.params"


def download_pretrained(root=None):
    """Download ResNet-18 v2's ImageNet weights into MXNet's model store
    (``root``, default ``~/.mxnet/models``, or ``$MXNET_HOME/models``) unless
    they are there, and return the file's path."""
    root = os.path.expanduser(root or _default_root())
    try:
        return model_store.get_model_file(_MODEL, root=root)
    except Exception as error:  # the model store raises many kinds
        file_name = pretrained_file_name()
        raise RuntimeError(
            f"could not download the ImageNet weights of {_MODEL} into {root}: {error}. "
            f"Put the file {file_name} (from MXNet's model store, e.g. "
            f"{model_store.apache_repo_url}gluon/models/{file_name[:-7]}.zip, unzipped) "
            f"into {root}, or pass its path") from error


def _pretrained_resnet(root):
    """ResNet-18 v2 with ImageNet weights from ``root``: a ``.params`` file,
    or a folder holding the model store's file. ``None``: MXNet's model
    store, downloading the file when it is absent (an explicit request).
    A path that does not exist is an error naming it: nothing is created
    or downloaded there."""
    net = vision.resnet18_v2()
    if root is None:
        path = download_pretrained()
    else:
        root = os.path.expanduser(os.fspath(root))
        path = root if os.path.isfile(root) else os.path.join(root, pretrained_file_name())
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no ImageNet weights at {root}: expected a .params file, or a folder "
                f"holding {pretrained_file_name()} (download them with --pretrained "
                "imagenet, or rpn.download_pretrained())")
    try:
        net.load_parameters(path)
    except Exception as error:  # MXNet raises several kinds for a wrong file
        raise ValueError(f"{path} does not hold the weights of {_MODEL}: {error}") from None
    return net


class _Features(EmptyBatchSafe, nn.HybridSequential):
    """A sequence of layers that answers a batch of zero images with empty
    features (see :mod:`rpn._guards`)."""


class _TopDown(EmptyBatchSafe, nn.HybridBlock):
    """A stride-8 map enriched by the stride-16 stage above it, as one level
    of a feature pyramid (Lin et al., 2017): ``lateral(C3) + up2(top(C4))``,
    then a 3x3 convolution. ``bottom``: images -> C3 (B, 128, h/8, w/8);
    ``stage``: C3 -> C4 (B, 256, h/16, w/16)."""

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
        c3 = self.bottom(X)                                   # (B, 128, h/8, w/8)
        c4 = self.stage(c3)                                   # (B, 256, h/16, w/16)
        top = self.top(self.c4_out(c4))                       # (B, C, h/16, w/16)
        # nearest-neighbour x2: (B, C, h/16, w/16) -> (B, C, h/8, w/8), which
        # meets C3 when h and w are multiples of 16
        top = top.repeat(2, axis=2).repeat(2, axis=3)
        return self.smooth(self.lateral(self.c3_out(c3)) + top)


def detection_backbone(pretrained=False, root=None, *, stride=32, top_down=False):
    """ResNet-18 v2 without its last two layers (global pooling, flatten).

    ``stride=32`` (the chapter's): 512 channels, a 256 x 256 image gives an
    8 x 8 map. ``stride=16`` stops after stage 3 (256 channels, 16 x 16 for
    256 x 256), Faster R-CNN's VGG-16 stride; ``stride=8`` after stage 2
    (128 channels). A finer map places anchors more densely and is cheaper
    to compute, at a smaller receptive field; a BatchNorm and ReLU of its
    own close a truncated network, as ResNet v2 units are pre-activation.

    ``pretrained=True`` loads ImageNet weights from ``root`` (a ``.params``
    file, or a folder holding the model store's file; a path that does not
    exist is a ``FileNotFoundError`` naming it), or, with ``root=None``,
    from MXNet's model store (``~/.mxnet/models``), downloading them there
    when absent (a ``RuntimeError`` says where to put the file when that
    fails). The chapter trains from scratch, so ``False``
    is the default; the network is then initialised (Xavier, current
    context) so that it runs at once, as the chapter's pretrained one does
    before its ``initialize(..., force_reinit=True)``.

    ``top_down=True`` (``stride=8`` only) adds stage 3 and a top-down path,
    as one level of a feature pyramid network: the stride-8 map gets the
    larger receptive field and the semantics of stride 16 (128 channels).
    Image sides must then be multiples of 16.

    Returns a ``HybridBlock``; images ``(B, 3, h, w)`` -> features ``(B, C,
    h / stride, w / stride)``.
    """
    if stride not in (8, 16, 32):
        raise ValueError(f"stride must be 8, 16 or 32, got {stride}")
    if top_down and stride != 8:
        raise ValueError(f"top_down needs stride=8, got stride={stride}")
    net = _pretrained_resnet(root) if pretrained else vision.resnet18_v2()
    added = []      # blocks of this package's, which ImageNet weights do not cover
    if top_down:
        bottom = _Features(prefix="bottom_")
        bottom.add(*net.features[:_STAGE_END[8]])
        features = _TopDown(bottom, net.features[_STAGE_END[8]], prefix="topdown_")
        added = [features.c3_out, features.c4_out, features.lateral, features.top,
                 features.smooth]
    elif stride == 32:
        features = _Features(prefix=net.features.prefix)
        with features.name_scope():
            features.add(*list(net.features._children.values())[:-2])
    else:
        features = _Features(prefix=f"stride{stride}_")
        features.add(*net.features[:_STAGE_END[stride]])
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
