"""A feature pyramid (Lin et al., 2017) on any backbone of the zoo.

The field's RPN since 2017 (torchvision, detectron2, mmdetection) predicts
from several maps: the backbone's stages ``C2`` to ``C5`` (strides 4 to
32) each get a lateral 1 x 1 convolution to ``channels``, the coarser map
is added to the finer one after a nearest-neighbour upsampling (the
top-down path), and a 3 x 3 convolution gives each level ``P2`` to ``P5``;
``P6`` (stride 64) is ``P5`` max-pooled at stride 2. One head runs on every
level, with one anchor size a level (:mod:`rpn.model.network`). A pyramid
from ``C3`` (levels 3 to 6) costs less: the stride-4 map holds most pixels;
one that stops at ``C4`` (levels 2 to 4) leaves the backbone's costliest
stage out, for objects no larger than a few dozen pixels.

ResNet v2 units are pre-activation: each tapped stage gets a BatchNorm
and ReLU of its own before its lateral convolution (v1 units and MobileNet
v2's bottlenecks end complete). The stages keep the zoo's parameters, so
ImageNet weights load into them; the pyramid's own layers start from Xavier.

Shape glossary: images ``(B, 3, H, W)`` with ``H`` and ``W`` multiples of
the coarsest computed level's stride (``2^min(last, 5)``: 8 for levels 2
and 3, 32 from level 5); level ``l`` ``(B, channels, H / 2^l, W / 2^l)``
(``P6``: ``ceil(H / 64)``).
"""
from mxnet import init
from mxnet.gluon import nn

from ..ops.guards import EmptyBatchSafe
from ..zoo.networks import STAGE_ENDS, family, zoo_network

__all__ = ["FeaturePyramid", "pyramid_backbone"]

_STRIDES = {2: 4, 3: 8, 4: 16, 5: 32}


class FeaturePyramid(EmptyBatchSafe, nn.HybridBlock):
    """``stages``: blocks that each take the previous one's output (the
    first takes the images) and give ``C_first`` ... ``C5``; ``levels``
    (consecutive, from ``first`` to 5 or 6); ``norms``: whether each tapped
    stage needs a BatchNorm and ReLU (ResNet v2). ``forward(X)`` returns the
    list of level maps, finest first."""

    def __init__(self, stages, levels, channels, norms, **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(levels)
        self.pool_last = self.levels[-1] == 6 and self.levels[0] < 6
        with self.name_scope():
            self.stages = nn.HybridSequential(prefix="stages_")
            self.stages.add(*stages)
            self.norms = nn.HybridSequential(prefix="norms_")
            self.laterals = nn.HybridSequential(prefix="lateral_")
            self.outputs = nn.HybridSequential(prefix="output_")
            for normed in norms:
                norm = nn.HybridSequential()
                if normed:
                    norm.add(nn.BatchNorm(), nn.Activation("relu"))
                self.norms.add(norm)
                self.laterals.add(nn.Conv2D(channels, kernel_size=1))
                self.outputs.add(nn.Conv2D(channels, kernel_size=3, padding=1))

    def added(self):
        """The pyramid's own layers (which ImageNet weights do not cover)."""
        return [self.norms, self.laterals, self.outputs]

    def hybrid_forward(self, F, X):
        taps, x = [], X
        for stage, norm in zip(self.stages, self.norms):
            x = stage(x)
            taps.append(norm(x))                             # C_first ... C5
        merged = self.laterals[len(taps) - 1](taps[-1])      # (B, C, H/32, W/32)
        maps = [self.outputs[len(taps) - 1](merged)]
        for i in range(len(taps) - 2, -1, -1):
            # nearest-neighbour x2 of the coarser level, added to the lateral
            up = merged.repeat(2, axis=2).repeat(2, axis=3)
            merged = self.laterals[i](taps[i]) + up
            maps.insert(0, self.outputs[i](merged))
        if self.pool_last:                                   # P6 from P5
            maps.append(F.npx.pooling(maps[-1], kernel=(1, 1), stride=(2, 2),
                                      pool_type="max"))
        return maps


def pyramid_backbone(levels, channels, *, name, pretrained=False, root=None):
    """The feature pyramid of zoo network ``name`` with ``levels`` (from 2
    or 3 to 5 or 6) of ``channels``; ImageNet weights for its stages from
    ``root`` when ``pretrained`` (see :func:`rpn.detection_backbone`), its
    own layers (and, without ``pretrained``, everything) Xavier-initialised
    on the current context."""
    kind = family(name)
    ends = dict(STAGE_ENDS[kind])
    net = zoo_network(name, pretrained, root)
    first, last = levels[0], min(levels[-1], 5)            # P6 is pooled from P5
    bounds = [0] + [ends[_STRIDES[level]] for level in range(first, last + 1)]
    stages = []
    for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        stage = nn.HybridSequential(prefix=f"c{first + k}_")
        stage.add(*net.features[start:end])
        stages.append(stage)
    # ResNet v2's stage 4 ends with the network's own BatchNorm and ReLU
    norms = [kind == "v2" and level < 5 for level in range(first, last + 1)]
    pyramid = FeaturePyramid(stages, levels, channels, norms, prefix="pyramid_")
    if pretrained:
        for block in pyramid.added():
            block.initialize(init.Xavier())
    else:
        pyramid.initialize(init.Xavier())
    return pyramid
