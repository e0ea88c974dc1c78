"""The proposal model: backbone, head, anchors, decoding and NMS as one
Gluon ``HybridBlock``.

Built from the chapter's parts (:func:`rpn.detection_backbone`,
:class:`rpn.RPNOutput`, the anchors of :func:`rpn.generate_anchors`, the
offsets of :func:`rpn.anchor_plus_offset`, the labels of
:func:`rpn.rpn_targets`), configured by one
:class:`rpn.settings.ModelSettings` (Faster R-CNN's proposal settings,
:cite:`Ren.He.Girshick.ea.2015`, 3.1-3.3); the interface follows
torchvision's ``RegionProposalNetwork`` and GluonCV's ``RPN``. Everything
from pixels to proposals is one graph, so ``HybridBlock.export`` writes the
whole proposal pipeline; proposals come from
:func:`rpn.model.proposal_layer.select_proposals`, as the chapter's
:func:`rpn.predict_rpn` does. The rooms beside it: the canvas frame
(:mod:`rpn.model.canvas`), the anchors' labels (:mod:`rpn.model.labels`),
the refinement stage (:mod:`rpn.model.refine`).

Shape glossary: ``B`` images of a batch, padded to one canvas ``(H, W)``
pixels (multiples of the stride); ``h, w = H / stride, W / stride`` the
feature map; ``A`` anchors a pixel; ``N = h * w * A``; ``K`` proposals an
image; ``G`` object rows an image. ``image_sizes`` (B, 2): each image's
``[height, width]`` in input pixels (its top-left part of the canvas;
extra columns are ignored). Anchors and offsets live in the canvas frame,
ground truth and proposals in each image's frame (:mod:`rpn.model.canvas`).
"""
import warnings

import mxnet as mx
import numpy as onp
from mxnet import autograd, init
from mxnet import ndarray as _nd
from mxnet import np
from mxnet.gluon import nn

from ..backbone import detection_backbone
from ..data.preprocess import Resize
from ..head import RPNOutput
from ..settings import ModelSettings
from .canvas import (border, canvas_extent, grid_anchors, image_scale, level_anchors,
                     valid_anchors)
from .labels import AnchorLabeler
from .outputs import Proposals, TrainingOutput
from .proposal_layer import ProposalRule, select_level_proposals, select_proposals
from .pyramid import pyramid_backbone
from .refine import BoxRefiner, refine_outputs, refine_proposals

__all__ = ["RegionProposalNetwork"]


class RegionProposalNetwork(nn.HybridBlock):
    """Images in, proposals out: the whole RPN as one block.

    ``backbone``: images (B, 3, H, W) -> features (B, C, h, w) at the
    settings' ``stride``; ``head``: an :class:`rpn.RPNOutput` with ``A``
    anchors a pixel. ``settings``: a :class:`rpn.settings.ModelSettings`
    (default: the chapter's), changed by keyword arguments of the same
    names (``RegionProposalNetwork(backbone, head, stride=8, size=64)``).
    :meth:`from_settings` builds and initialises backbone and head too.

    Anchors are ``anchor_sizes`` x ``anchor_ratios`` (the chapter's
    combinations, or every pair with ``anchor_product``), sizes as fractions
    of ``size`` pixels: in a square ``size`` image they are the chapter's
    :func:`rpn.generate_anchors`, and they keep their size in pixels in a
    canvas of any shape. Anchors centred outside an image (in the padding)
    are never used; with ``allowed_border`` (pixels) anchors that cross the
    image's edge by more get no label and make no proposal.

    ``model(X (B, 3, H, W), image_sizes (B, 2))`` returns
    :class:`rpn.model.outputs.Proposals` ``(scores (B, K), boxes (B, K, 4))``, in
    training and in inference, best first: object probabilities and corner
    boxes normalised by each image's own size, clipped to it; ``K`` is
    ``post_nms_top_n_train`` or ``_test`` (at most ``N``), rows scoring below
    0 are padding. :meth:`training_outputs` gives what a loss needs, and
    :meth:`targets` the anchors' labels.
    """

    def __init__(self, backbone, head, settings=None, *, prefix=None, params=None,
                 **changes):
        super().__init__(prefix=prefix, params=params)
        settings = (settings if settings is not None else ModelSettings()).replace(**changes)
        self.labeler = AnchorLabeler(settings)
        shapes = self.labeler.shapes                                # (A or L * A, 2) pixels
        if settings.num_anchors != head.num_anchors:
            raise ValueError(f"the head predicts {head.num_anchors} anchors a pixel, "
                             f"but the anchor settings give {settings.num_anchors}")
        self.pyramid = settings.pyramid is not None
        if self.pyramid != getattr(head, "per_image", False):
            raise ValueError("a pyramid's head keeps the batch axis (RPNOutput(..., "
                             "per_image=True)); a single map's does not")
        if getattr(head, "quality", False) != settings.quality_branch:
            raise ValueError(f"iou_branch is {settings.iou_branch} and objectness "
                             f"{settings.objectness!r}, but the head "
                             f"{'has' if getattr(head, 'quality', False) else 'has no'} "
                             "quality branch (RPNOutput(..., quality=True) for either)")
        self.settings = settings
        self.backbone, self.head = backbone, head
        self.refiner = BoxRefiner(stride=settings.stride) if settings.refine else None
        self.anchor_shapes = self.params.get_constant(
            "anchor_shapes", onp.array(shapes, dtype="float32"))     # (A or L * A, 2)
        self.anchor_shapes.initialize(ctx=mx.current_context())

    @classmethod
    def from_settings(cls, settings, ctx=None, *, pretrained=None):
        """The model of ``settings`` on ``ctx`` (a context or a list,
        default the current one), freshly initialised: Xavier, as the
        chapter, or ImageNet weights for the backbone (``settings.backbone``)
        from ``pretrained`` (a folder or ``.params`` file)."""
        ctx = ctx if ctx is not None else mx.current_context()
        if settings.pyramid is not None:
            backbone = pyramid_backbone(settings.pyramid, settings.pyramid_channels,
                                        name=settings.backbone,
                                        pretrained=pretrained is not None, root=pretrained)
        else:
            backbone = detection_backbone(pretrained=pretrained is not None, root=pretrained,
                                          stride=settings.stride, top_down=settings.top_down,
                                          name=settings.backbone)
        if pretrained is None:
            backbone.initialize(init=init.Xavier(), ctx=ctx, force_reinit=True)
        else:
            backbone.collect_params().reset_ctx(ctx)
        head = RPNOutput(settings.num_anchors, channels=settings.head_channels,
                         quality=settings.quality_branch, normalize=settings.head_norm,
                         per_image=settings.pyramid is not None)
        head.initialize(init=init.Xavier(), ctx=ctx)
        model = cls(backbone, head, settings)
        if model.refiner is not None:
            model.refiner.initialize(init=init.Xavier(), ctx=ctx)
        model.collect_params().reset_ctx(ctx)
        if settings.objectness == "centerness":
            model._complete_init(ctx)
        return model

    def _complete_init(self, ctx):
        """Give every deferred parameter its shape now. Ranked by centerness,
        the proposal graph leaves the classifier out, and Gluon infers a
        deferred parameter's shape from the graph of the first call: one it
        does not use fails that call. One imperative pass of the backbone,
        head and refinement stage on a blank canvas, (1, 3, 64, 64) with one
        RoI, shapes them all."""
        first = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
        side = max(64, 2 * self.settings.size_divisor)
        features = self.backbone(mx.np.zeros((1, 3, side, side), ctx=first))
        self._head(features)
        if self.refiner is not None:     # RoI rows: (1, 5) batch index, corners in pixels
            self.refiner(features, mx.np.array([[0, 0, 0, side / 2, side / 2]], ctx=first))

    @property
    def stride(self):
        return self.settings.stride

    @property
    def resize(self):
        """The :class:`rpn.data.preprocess.Resize` of the model's images."""
        return Resize.of(self.settings)

    def parts(self):
        """The trained blocks by name, in the order the trainer takes their
        parameters and the checkpoint names their files (``output``, the
        head, first: the chapter's order; ``refine``, the refinement stage,
        last when there is one)."""
        parts = {"output": self.head, "backbone": self.backbone}
        if self.refiner is not None:
            parts["refine"] = self.refiner
        return parts

    def _follow(self, ctx):
        """Keep the anchor shapes (a constant) on every context the model
        runs on, so that it follows the context of its inputs."""
        if ctx not in self.anchor_shapes.list_ctx():
            self.anchor_shapes.reset_ctx(self.anchor_shapes.list_ctx() + [ctx])

    # ---- the graph ----------------------------------------------------------

    def _head(self, features):
        """The head on the map, or on every level of a pyramid (one tuple
        ``(cls_preds, box_preds[, quality])`` a level, rows (B, N_l, ...))."""
        if self.pyramid:
            return [self.head(level) for level in features]
        return self.head(features)

    def _proposals(self, F, features, outputs, image_sizes, shapes, training, refine=True,
                   top_n=None):
        """(scores (B, K), boxes (B, K, 4)) of the head's ``outputs``
        (:meth:`_head`), refined when the model has a refinement stage (and
        ``refine``). ``top_n``: ``(pre, post)`` NMS counts of arrays (not a
        graph), preselected."""
        s = self.settings
        rule = ProposalRule.of(s, training, top_n)
        first = features[0] if self.pyramid else features
        ex, ey = canvas_extent(F, first, image_sizes, s.strides[0])         # (B, 1) each
        edge = border(F, first, s.allowed_border, s.strides[0])
        if self.pyramid:
            levels = []
            for anchors, (cls_preds, box_preds, *quality) in zip(
                    level_anchors(F, features, shapes, s.strides), outputs):
                # (B, N_l, ...) -> (B * N_l, ...) (-5 merges two axes, -2 keeps one)
                flat = [F.npx.reshape(a, (-5, -2)) for a in (cls_preds, box_preds)]
                quality = [F.npx.reshape(q, (-5,)) for q in quality]
                levels.append((anchors, *flat, valid_anchors(F, anchors, ex, ey, *edge),
                               quality[0] if quality else None))
            out = select_level_proposals(F, levels, rule, scale=image_scale(F, ex, ey),
                                         image_sizes=image_sizes)          # (B, K, 5)
        else:
            cls_preds, box_preds, *quality = outputs
            anchors = grid_anchors(F, features, shapes, s.stride)           # (4, N)
            valid = valid_anchors(F, anchors, ex, ey, *edge)                # (B, N)
            out = select_proposals(F, anchors, cls_preds, box_preds, valid, rule,
                                   scale=image_scale(F, ex, ey), image_sizes=image_sizes,
                                   quality=quality[0] if quality else None)  # (B, K, 5)
        scores, boxes = out[:, :, 0], out[:, :, 1:5]
        if refine and self.refiner is not None:
            return refine_proposals(F, self.refiner, features, scores, boxes, image_sizes,
                                    nms_threshold=s.nms_threshold, power=s.iou_score_power)
        return scores, boxes

    def hybrid_forward(self, F, X, image_sizes, anchor_shapes):
        features = self.backbone(X)                    # (B, C, h, w), or a list a level
        return self._proposals(F, features, self._head(features),
                               image_sizes.astype("float32"), anchor_shapes, False)

    def _check_batch(self, X, image_sizes):
        self._follow(X.ctx)
        if X.shape[0] == 0:
            raise ValueError("the proposal model needs at least one image, got a batch of 0 "
                             f"(X {X.shape})")
        if image_sizes.shape[0] != X.shape[0] or image_sizes.ndim != 2 \
                or image_sizes.shape[1] < 2:
            raise ValueError(f"image_sizes must be (B, 2) [height, width] rows, one an "
                             f"image of X {X.shape}; got {image_sizes.shape}")
        return image_sizes.as_in_context(X.ctx).astype("float32")

    def forward(self, X, image_sizes):
        image_sizes = self._check_batch(X, image_sizes)
        if not autograd.is_training():
            with warnings.catch_warnings():
                # OLN's objectness leaves the class predictor out of the graph
                warnings.filterwarnings("ignore", "Parameter .* is not used by any computation")
                return Proposals(*super().forward(X, image_sizes))
        # training: the children run (hybridized or not) and the proposals
        # are computed imperatively, so the cached inference graph never
        # depends on the mode it was first called in
        features = self.backbone(X)
        outputs = self._head(features)
        with autograd.pause():
            return Proposals(*self._proposals(_nd, features, outputs, image_sizes,
                                              self._shapes(X.ctx), True))

    def training_outputs(self, X, image_sizes, Y, *, proposals=False, crowd=True,
                         validate=True, refine=True):
        """One batch for training: :class:`rpn.model.outputs.TrainingOutput` with
        the head's predictions for every anchor and the anchors' labels for
        ground truth ``Y`` (B, G, 5) (rows ``[class, x1, y1, x2, y2]``,
        images' frames, class -1 for padding). Call it under
        ``autograd.record()``; the loss is :class:`rpn.model.loss.ProposalLoss`.
        ``proposals``: also the batch's proposals (without gradient, for a
        second stage). ``crowd=False`` skips the crowd-region pass of the
        labels (when the data has none); ``validate=False`` skips the checks
        of ``Y`` (data checked beforehand)."""
        image_sizes = self._check_batch(X, image_sizes)
        features = self.backbone(X)                    # (B, C, h, w), or a list a level
        anchors = self.labeler.anchors(features)                        # (4, N)
        cls_labels, box_labels = self.labeler(Y, features, image_sizes, anchors=anchors,
                                              crowd=crowd, validate=validate)
        outputs = self._head(features)
        # (B * N, 2), (B * N, 4) and, with the IoU branch, (B * N,); a
        # pyramid's levels joined image by image: (B, N_l, ...) -> (B, N, ...)
        cls_preds, box_preds, *quality = outputs if not self.pyramid else [
            np.concatenate(parts, axis=1).reshape((-1,) + parts[0].shape[2:])
            for parts in zip(*outputs)]
        found = refined = centers = None
        if self.settings.objectness == "centerness":
            with autograd.pause():
                centers = self.labeler.centerness(Y, features, image_sizes, anchors=anchors,
                                                  crowd=crowd)
        training = autograd.is_training()
        if proposals:
            with autograd.pause():
                found = Proposals(*self._proposals(
                    _nd, features, outputs, image_sizes, self._shapes(X.ctx), training))
        if refine and self.refiner is not None:
            # RoIs from the best 4 x refine_rois boxes after NMS: cheap, and
            # the best and many lower-ranked ones, as at test time
            count = 4 * self.settings.refine_rois
            with autograd.pause():
                candidates = Proposals(*self._proposals(
                    _nd, features, outputs, image_sizes, self._shapes(X.ctx), training,
                    refine=False, top_n=(count, count)))
            refined = refine_outputs(self.refiner, features, candidates, image_sizes,
                                     Y.as_in_context(X.ctx), self.settings.refine_rois)
        return TrainingOutput(cls_preds, box_preds, cls_labels, box_labels, anchors, found,
                              quality[0] if quality else None, refined, centers)

    # ---- anchors and labels, outside the graph (rpn.model.labels) ------------

    def _shapes(self, ctx):
        self._follow(ctx)
        return self.anchor_shapes.data(ctx)

    def anchors(self, features):
        """The (4, N) canvas-frame anchors of ``features`` (B, C, h, w) on
        its context (:meth:`rpn.model.labels.AnchorLabeler.anchors`)."""
        return self.labeler.anchors(features)

    def valid_anchors(self, anchors, features, image_sizes):
        """(B, N) float mask of the anchors each image may use (see the
        class); ``image_sizes`` (B, 2+) input pixels."""
        return self.labeler.valid(anchors, features, image_sizes)

    def targets(self, Y, X, image_sizes, *, validate=True):
        """Labels of every anchor for ground truth ``Y`` (B, G, 5) (images'
        frames) of the batch ``X`` (B, 3, H, W) with ``image_sizes`` (B, 2+):
        ``(cls_labels (B * N,), box_labels (B * N, 4))`` as
        :func:`rpn.rpn_targets`, aligned with :meth:`training_outputs`."""
        # maps of the backbone's shapes only (a pyramid's coarsest level rounds up)
        features = [np.zeros((X.shape[0], 1, -(-X.shape[2] // s), -(-X.shape[3] // s)),
                             ctx=X.ctx) for s in self.settings.strides]
        return self.labeler(Y, features if self.pyramid else features[0], image_sizes,
                            validate=validate)
