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
:func:`rpn.proposal_layer.select_proposals`, as the chapter's
:func:`rpn.predict_rpn` does.

Shape glossary: ``B`` images of a batch, padded to one canvas ``(H, W)``
pixels (multiples of the stride); ``h, w = H / stride, W / stride`` the
feature map; ``A`` anchors a pixel; ``N = h * w * A``; ``K`` proposals an
image; ``G`` object rows an image. ``image_sizes`` (B, 2): each image's
``[height, width]`` in input pixels (its top-left part of the canvas;
extra columns are ignored).

Box frames. Anchors and the head's offsets live in the *canvas* frame
(corner form, normalised by ``W, H``). Ground truth and proposals live in
each *image's* frame (corner form, normalised by that image's own width
and height): the chapter's convention, independent of how images were
batched. IoU and offsets do not change under the per-axis scaling between
the two, so labels are the same in either.
"""
import mxnet as mx
import numpy as onp
from mxnet import autograd, init, np
from mxnet import ndarray as _nd
from mxnet.gluon import nn

from .anchors import anchor_shapes, generate_anchors
from .backbone import detection_backbone
from .head import RPNOutput
from .mixed_precision import float32
from .outputs import Proposals, TrainingOutput
from .proposal_layer import select_proposals
from .refine import (BoxRefiner, RefineOutput, refine_targets, refined_boxes, roi_rows,
                     sample_rois)
from .settings import ModelSettings
from .targets import rpn_targets

__all__ = ["RegionProposalNetwork"]


def _feature_size(F, features):
    """``(h, w)`` of ``features`` (B, C, h, w) as scalars (arrays and graphs;
    float32 also when the features are float16, under mixed precision)."""
    ys, xs = float32(F.npx.arange_like(features, axis=2), F.npx.arange_like(features, axis=3))
    return F.np.ones_like(ys).sum(), F.np.ones_like(xs).sum()


def _grid_anchors(F, features, shapes, stride):
    """Anchors of every pixel of ``features`` (B, C, h, w), in the canvas
    frame: centres ``((x + 0.5) / w, (y + 0.5) / h)``, sizes ``shapes``
    (A, 2) ``[width, height]`` pixels divided by the canvas ``(w * stride,
    h * stride)``. Returns (4, h * w * A), pixel row-major then anchor, as
    :func:`rpn.generate_anchors`. Works on arrays and in a graph."""
    # (h,) and (w,), float32 also for float16 features (mixed precision)
    ys, xs = float32(F.npx.arange_like(features, axis=2), F.npx.arange_like(features, axis=3))
    h, w = F.np.ones_like(ys).sum(), F.np.ones_like(xs).sum()  # () each
    cy = ((ys + 0.5) / h).reshape(-1, 1, 1)                     # (h, 1, 1)
    cx = ((xs + 0.5) / w).reshape(1, -1, 1)                     # (1, w, 1)
    aw = (shapes[:, 0] / (w * stride)).reshape(1, 1, -1)        # (1, 1, A)
    ah = (shapes[:, 1] / (h * stride)).reshape(1, 1, -1)        # (1, 1, A)
    zero = cy * 0 + cx * 0                                      # (h, w, 1)
    corners = [zero + cx - aw / 2, zero + cy - ah / 2,
               zero + cx + aw / 2, zero + cy + ah / 2]          # 4 x (h, w, A)
    # (4, h, w, A) -> (4, N)
    return F.np.stack(corners, axis=0).reshape(4, -1)


def _canvas_extent(F, features, image_sizes, stride):
    """Each image's extent in the canvas frame: (B, 1) ``width / W`` and
    ``height / H``."""
    h, w = _feature_size(F, features)
    return image_sizes[:, 1:2] / (w * stride), image_sizes[:, 0:1] / (h * stride)


def _valid_anchors(F, anchors, ex, ey, border_x, border_y):
    """(B, N) float mask of the anchors an image may use: centre inside the
    image, and, when ``border_x`` is not ``None``, crossing its edges by at
    most that much (canvas frame; ``ex``, ``ey`` (B, 1))."""
    x0, y0, x1, y1 = (anchors[i:i + 1] for i in range(4))       # (1, N) each
    valid = (((x0 + x1) / 2 < ex).astype("float32")
             * ((y0 + y1) / 2 < ey).astype("float32"))         # (B, N)
    if border_x is not None:
        valid = (valid * (x0 >= -border_x).astype("float32")
                 * (y0 >= -border_y).astype("float32")
                 * (x1 <= ex + border_x).astype("float32")
                 * (y1 <= ey + border_y).astype("float32"))
    return valid


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
    :class:`rpn.outputs.Proposals` ``(scores (B, K), boxes (B, K, 4))``, in
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
        shapes = anchor_shapes(settings.anchor_sizes, settings.anchor_ratios, settings.size,
                               product=settings.anchor_product)
        if len(shapes) != head.num_anchors:
            raise ValueError(f"the head predicts {head.num_anchors} anchors a pixel, "
                             f"but the anchor settings give {len(shapes)}")
        if getattr(head, "quality", False) != settings.iou_branch:
            raise ValueError(f"iou_branch is {settings.iou_branch}, but the head "
                             f"{'has' if getattr(head, 'quality', False) else 'has no'} "
                             "IoU branch (RPNOutput(..., quality=iou_branch))")
        self.settings = settings
        self.backbone, self.head = backbone, head
        self.refiner = BoxRefiner(stride=settings.stride) if settings.refine else None
        self.anchor_shapes = self.params.get_constant(
            "anchor_shapes", onp.array(shapes, dtype="float32"))     # (A, 2) pixels
        self.anchor_shapes.initialize(ctx=mx.current_context())

    @classmethod
    def from_settings(cls, settings, ctx=None, *, pretrained=None):
        """The model of ``settings`` on ``ctx`` (a context or a list,
        default the current one), freshly initialised: Xavier, as the
        chapter, or ImageNet weights for the backbone (``settings.backbone``)
        from ``pretrained`` (a folder or ``.params`` file)."""
        ctx = ctx if ctx is not None else mx.current_context()
        backbone = detection_backbone(pretrained=pretrained is not None, root=pretrained,
                                      stride=settings.stride, top_down=settings.top_down,
                                      name=settings.backbone)
        if pretrained is None:
            backbone.initialize(init=init.Xavier(), ctx=ctx, force_reinit=True)
        else:
            backbone.collect_params().reset_ctx(ctx)
        head = RPNOutput(settings.num_anchors, channels=settings.head_channels,
                         quality=settings.iou_branch)
        head.initialize(init=init.Xavier(), ctx=ctx)
        model = cls(backbone, head, settings)
        if model.refiner is not None:
            model.refiner.initialize(init=init.Xavier(), ctx=ctx)
        model.collect_params().reset_ctx(ctx)
        return model

    @property
    def stride(self):
        return self.settings.stride

    @property
    def resize(self):
        """The :class:`rpn.preprocess.Resize` of the model's images."""
        return self.settings.resize_rule()

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

    def _proposals(self, F, features, cls_preds, box_preds, image_sizes, shapes, training,
                   quality=None, refine=True, top_n=None):
        """(scores (B, K), boxes (B, K, 4)) of the head's outputs, refined
        when the model has a refinement stage (and ``refine``). ``top_n``:
        ``(pre, post)`` NMS counts of arrays (not a graph), preselected."""
        s = self.settings
        pre, post = top_n or s.top_n(training)
        anchors = _grid_anchors(F, features, shapes, s.stride)             # (4, N)
        ex, ey = _canvas_extent(F, features, image_sizes, s.stride)         # (B, 1) each
        valid = _valid_anchors(F, anchors, ex, ey, *self._border(F, features))  # (B, N)
        scale = F.np.expand_dims(F.np.concatenate([ex, ey, ex, ey], axis=1), 1)  # (B, 1, 4)
        out = select_proposals(F, anchors, cls_preds, box_preds, valid,
                               nms_threshold=s.nms_threshold, pre_nms_top_n=pre,
                               post_nms_top_n=post, scale=scale, image_sizes=image_sizes,
                               min_size=s.min_size, quality=quality,
                               quality_power=s.iou_score_power,
                               preselect=top_n is not None,
                               voting=None if top_n is not None else s.box_voting)  # (B, K, 5)
        scores, boxes = out[:, :, 0], out[:, :, 1:5]
        if refine and self.refiner is not None:
            return self._refined(F, features, scores, boxes, image_sizes)
        return scores, boxes

    def _refined(self, F, features, scores, boxes, image_sizes):
        """The refinement stage at test time: every proposal (B, K) moved
        by the refiner and scored ``p ** (1 - a) * IoU ** a`` (``a`` the
        ``iou_score_power``), then NMS again, best first."""
        box_preds, quality = self.refiner(features, roi_rows(F, boxes, image_sizes))
        boxes = refined_boxes(F, boxes, box_preds)                         # (B, K, 4)
        power = self.settings.iou_score_power
        # (B * K,) -> (B, K)
        fit = F.npx.reshape_like(F.npx.sigmoid(quality), scores)
        kept = scores >= 0
        scores = F.np.where(kept, F.np.maximum(scores, 0) ** (1 - power) * fit ** power, -1.0)
        data = F.np.concatenate([F.np.expand_dims(scores, -1), boxes], axis=-1)  # (B, K, 5)
        out = F.contrib.box_nms(
            data.as_nd_ndarray(), overlap_thresh=self.settings.nms_threshold,
            valid_thresh=-0.5, topk=-1, coord_start=1, score_index=0, id_index=-1,
            force_suppress=True, in_format="corner", out_format="corner")
        out = F.BlockGrad(out).as_np_ndarray()                             # (B, K, 5)
        return out[:, :, 0], out[:, :, 1:5]

    def _border(self, F, features):
        """``allowed_border`` pixels in the canvas frame (x, y), or ``(None,
        None)`` when every anchor centred in an image may be used."""
        if self.settings.allowed_border is None:
            return None, None
        h, w = _feature_size(F, features)
        border = self.settings.allowed_border
        return border / (w * self.settings.stride), border / (h * self.settings.stride)

    def hybrid_forward(self, F, X, image_sizes, anchor_shapes):
        features = self.backbone(X)                          # (B, C, h, w)
        # (B * N, 2), (B * N, 4) and, with the IoU branch, (B * N,)
        cls_preds, box_preds, *quality = self.head(features)
        return self._proposals(F, features, cls_preds, box_preds,
                               image_sizes.astype("float32"), anchor_shapes, False,
                               *quality)

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
            return Proposals(*super().forward(X, image_sizes))
        # training: the children run (hybridized or not) and the proposals
        # are computed imperatively, so the cached inference graph never
        # depends on the mode it was first called in
        features = self.backbone(X)
        cls_preds, box_preds, *quality = self.head(features)
        with autograd.pause():
            return Proposals(*self._proposals(_nd, features, cls_preds, box_preds,
                                              image_sizes, self._shapes(X.ctx), True,
                                              *quality))

    def training_outputs(self, X, image_sizes, Y, *, proposals=False, crowd=True,
                         validate=True, refine=True):
        """One batch for training: :class:`rpn.outputs.TrainingOutput` with
        the head's predictions for every anchor and the anchors' labels for
        ground truth ``Y`` (B, G, 5) (rows ``[class, x1, y1, x2, y2]``,
        images' frames, class -1 for padding). Call it under
        ``autograd.record()``; the loss is :class:`rpn.loss.ProposalLoss`.
        ``proposals``: also the batch's proposals (without gradient, for a
        second stage). ``crowd=False`` skips the crowd-region pass of the
        labels (when the data has none); ``validate=False`` skips the checks
        of ``Y`` (data checked beforehand)."""
        image_sizes = self._check_batch(X, image_sizes)
        features = self.backbone(X)                                     # (B, C, h, w)
        anchors = self.anchors(features)                                # (4, N)
        cls_labels, box_labels = self._labels(Y, features, anchors, image_sizes,
                                              crowd=crowd, validate=validate)
        # (B * N, 2), (B * N, 4) and, with the IoU branch, (B * N,)
        cls_preds, box_preds, *quality = self.head(features)
        found = refined = None
        training = autograd.is_training()
        if proposals:
            with autograd.pause():
                found = Proposals(*self._proposals(
                    _nd, features, cls_preds, box_preds, image_sizes, self._shapes(X.ctx),
                    training, *quality))
        if refine and self.refiner is not None:
            # RoIs from the best 4 x refine_rois boxes after NMS: cheap, and
            # the best and many lower-ranked ones, as at test time
            count = 4 * self.settings.refine_rois
            with autograd.pause():
                candidates = Proposals(*self._proposals(
                    _nd, features, cls_preds, box_preds, image_sizes, self._shapes(X.ctx),
                    training, *quality, refine=False, top_n=(count, count)))
            refined = self._refine_outputs(features, candidates, image_sizes,
                                           Y.as_in_context(X.ctx))
        return TrainingOutput(cls_preds, box_preds, cls_labels, box_labels, anchors, found,
                              quality[0] if quality else None, refined)

    def _refine_outputs(self, features, proposals, image_sizes, Y):
        """The refiner on RoIs sampled from the first stage's proposals
        (:func:`rpn.refine.sample_rois`), with their targets."""
        with autograd.pause():
            rois, valid = sample_rois(proposals, self.settings.refine_rois)   # (B, R, ...)
            objects, _, targets, positive = refine_targets(rois, valid, Y)
            rows = roi_rows(_nd, rois, image_sizes)                          # (B * R, 5)
        box_preds, quality = self.refiner(features, rows)
        # (B, R, ...) -> (B * R, ...)
        return RefineOutput(box_preds, quality, targets.reshape(-1, 4), rois.reshape(-1, 4),
                            objects.reshape(-1, 4), positive.reshape(-1), valid.reshape(-1))

    # ---- anchors and labels, outside the graph --------------------------------

    def _shapes(self, ctx):
        self._follow(ctx)
        return self.anchor_shapes.data(ctx)

    def anchors(self, features):
        """The (4, N) canvas-frame anchors of ``features`` (B, C, h, w) on
        its context: the chapter's :func:`rpn.generate_anchors` with the
        sizes rescaled from ``size`` pixels to the canvas (unchanged, so bit
        for bit the chapter's, when the canvas is a ``size`` square). The
        graph computes the same anchors (to float rounding)."""
        s = self.settings
        height, width = features.shape[2:]
        sizes = s.anchor_sizes
        short = min(height, width) * s.stride
        if short != s.size:
            sizes = tuple(v * s.size / short for v in sizes)
        return generate_anchors(height, width, sizes, s.anchor_ratios,
                                product=s.anchor_product, ctx=features.ctx)

    def valid_anchors(self, anchors, features, image_sizes):
        """(B, N) float mask of the anchors each image may use (see the
        class); ``image_sizes`` (B, 2+) input pixels."""
        image_sizes = image_sizes.as_in_context(features.ctx).astype("float32")
        ex, ey = _canvas_extent(_nd, features, image_sizes, self.settings.stride)
        return _valid_anchors(_nd, anchors, ex, ey, *self._border(_nd, features))

    def to_canvas(self, Y, features, image_sizes):
        """Ground truth (B, G, 5) in the images' frames -> the canvas frame."""
        image_sizes = image_sizes.as_in_context(features.ctx).astype("float32")
        ex, ey = _canvas_extent(_nd, features, image_sizes, self.settings.stride)  # (B, 1)
        one = np.ones_like(ex)
        scale = np.concatenate([one, ex, ey, ex, ey], axis=1)[:, None, :]  # (B, 1, 5)
        return Y.as_in_context(features.ctx) * scale

    def _labels(self, Y, features, anchors, image_sizes, *, crowd=True, validate=True):
        s = self.settings
        valid = self.valid_anchors(anchors, features, image_sizes)
        return rpn_targets(self.to_canvas(Y, features, image_sizes), anchors, valid=valid,
                           validate=validate, pos_iou=s.pos_iou, neg_iou=s.neg_iou,
                           neg_pos_ratio=s.neg_pos_ratio,
                           crowd_ioa=s.crowd_ioa if crowd else None,
                           anchors_per_image=s.anchors_per_image,
                           positive_fraction=s.positive_fraction)

    def targets(self, Y, X, image_sizes, *, validate=True):
        """Labels of every anchor for ground truth ``Y`` (B, G, 5) (images'
        frames) of the batch ``X`` (B, 3, H, W) with ``image_sizes`` (B, 2+):
        ``(cls_labels (B * N,), box_labels (B * N, 4))`` as
        :func:`rpn.rpn_targets`, aligned with :meth:`training_outputs`."""
        stride = self.settings.stride
        h, w = X.shape[2] // stride, X.shape[3] // stride
        features = np.zeros((X.shape[0], 1, h, w), ctx=X.ctx)     # shape only
        anchors = self.anchors(features)
        return self._labels(Y, features, anchors, image_sizes, validate=validate)
