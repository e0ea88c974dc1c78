"""The networks of Gluon's model zoo that the backbones are cut from.

:data:`rpn.settings.BACKBONES` names them as the zoo does: ResNet v1 and
v2 of 18, 34, 50 and 101 layers, and MobileNet v2 at four widths.
:func:`zoo_network` builds one in NumPy mode (MXNet 1.9.1's MobileNet v2
calls legacy operators that refuse NumPy arrays; two of its blocks are
given NumPy-mode ``hybrid_forward``s with the same layers and parameters),
with ImageNet weights from :mod:`rpn.zoo.weights` when asked.
:data:`STAGE_ENDS` says where each family's ``features`` reach a stride
and :func:`feature_channels` how many channels they have there.

Shape glossary: images ``(B, 3, h, w)``; the features at stride ``s``
``(B, C, h / s, w / s)``.
"""
import os

from mxnet.gluon.model_zoo import vision
from mxnet.gluon.model_zoo.vision.mobilenet import RELU6, LinearBottleneck

from ..settings import DEFAULT_BACKBONE, check
from .weights import download_pretrained, load_weights, weights_path

__all__ = ["zoo_network", "family", "feature_channels", "check_weights", "starting_weights",
           "STAGE_ENDS"]

# Where each family's ``features`` reach a stride (exclusive ends; stride 4
# for a feature pyramid's C2).
# resnet*_v1: 0 Conv, 1 BatchNorm, 2 ReLU, 3 MaxPool, 4-7 stages 1-4 (strides
#   4, 8, 16, 32), 8 global pooling.
# resnet*_v2: 0 BatchNorm, 1 Conv, 2 BatchNorm, 3 ReLU, 4 MaxPool, 5-8 stages
#   1-4, 9 BatchNorm, 10 ReLU, 11 global pooling, 12 Flatten.
# mobilenetv2_*: 0 Conv (stride 2), 1 BatchNorm, 2 ReLU6, 3-19 the 17 linear
#   bottlenecks (those at 4, 6, 9 and 16 halve the map: strides 4, 8, 16,
#   32), 20 Conv 1x1, 21 BatchNorm, 22 ReLU6, 23 global pooling.
# Stride 32 keeps everything but the pooling (the chapter's cut).
STAGE_ENDS = {"v1": {4: 5, 8: 6, 16: 7, 32: 8}, "v2": {4: 6, 8: 7, 16: 8, 32: 11},
              "mobilenetv2": {4: 6, 8: 9, 16: 16, 32: 23}}


# the channels of each network's features at each stride
_CHANNELS = {
    **{f"resnet{d}_{v}": {8: 128, 16: 256, 32: 512} for d in (18, 34) for v in ("v1", "v2")},
    **{f"resnet{d}_{v}": {8: 512, 16: 1024, 32: 2048} for d in (50, 101)
       for v in ("v1", "v2")},
    **{f"mobilenetv2_{w}": {8: int(32 * float(w)), 16: int(96 * float(w)),
                            32: 1280} for w in ("1.0", "0.75", "0.5", "0.25")}}


def family(name):
    """``"v1"``, ``"v2"`` or ``"mobilenetv2"``: the family of the zoo
    network ``name`` (checked by the rule of the setting ``backbone``)."""
    check("backbone", name)
    return "mobilenetv2" if name.startswith("mobilenetv2") else name.rsplit("_", 1)[1]


def feature_channels(name=DEFAULT_BACKBONE, stride=32):
    """The channels ``C`` of the features of backbone ``name`` at ``stride``
    (without ``top_down``, whose features have 128)."""
    family(name)
    return _CHANNELS[name][stride]


class _ReLU6(RELU6):
    """The zoo's ReLU6 in NumPy mode too (MXNet 1.9.1's calls a legacy
    operator, which refuses NumPy arrays)."""

    def hybrid_forward(self, F, x):
        return F.np.clip(x, 0, 6)


class _Bottleneck(LinearBottleneck):
    """The zoo's linear bottleneck in NumPy mode too (its shortcut is a
    legacy ``elemwise_add``). The same layers and parameters."""

    def hybrid_forward(self, F, x):
        out = self.out(x)
        return out + x if self.use_shortcut else out


def _numpy_mode(net):
    """Make a zoo MobileNet v2 run on NumPy arrays: its ReLU6 and bottleneck
    blocks become the subclasses above (no parameter changes)."""
    stack = [net]
    while stack:
        block = stack.pop()
        if type(block) is RELU6:
            block.__class__ = _ReLU6
        elif type(block) is LinearBottleneck:
            block.__class__ = _Bottleneck
        stack.extend(block._children.values())
    return net


def zoo_network(name, pretrained=False, root=None):
    """The whole zoo network ``name`` (NumPy mode), with ImageNet weights
    from ``root`` (see :func:`rpn.zoo.weights.weights_path`) when
    ``pretrained``."""
    net = _numpy_mode(vision.get_model(name))
    if pretrained:
        load_weights(net, weights_path(root, name), name)
    return net


def check_weights(path, name):
    """Raise what :func:`load_weights` raises when the file ``path`` does
    not hold the weights of ``name`` (it loads them into a zoo network of
    its own: for a check before anything else is done)."""
    zoo_network(name, True, path)


def starting_weights(choice, name):
    """``(file, recorded)``: the ImageNet weights file a backbone ``name``
    starts from (``None``: Xavier) and what a run records of it, for
    ``choice``: ``None`` or ``"none"`` (none), ``"imagenet"`` (MXNet's
    model store, downloading them when absent) or a ``.params`` file or
    model-store folder, which must exist and hold ``name``'s weights (a
    :class:`rpn.zoo.weights.WeightsMismatchError` naming it before any
    work)."""
    if choice is None or choice == "none":
        return None, None
    if choice == "imagenet":
        return download_pretrained(name=name), "imagenet"
    if not os.path.exists(choice):
        raise FileNotFoundError(f"pretrained weights not found: {choice}")
    path = weights_path(choice, name)
    check_weights(path, name)
    return path, os.path.abspath(path)
