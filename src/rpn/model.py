"""The proposal model: backbone, head, anchors, decoding and NMS as one
Gluon ``HybridBlock``.

Built from the chapter's parts (:func:`rpn.detection_backbone`,
:class:`rpn.RPNOutput`, the anchors of :func:`rpn.generate_anchors`, the
offsets of :func:`rpn.anchor_plus_offset`, the labels of
:func:`rpn.rpn_targets`), with Faster R-CNN's proposal settings
(:cite:`Ren.He.Girshick.ea.2015`, 3.1-3.3) as keyword arguments; the
interface follows torchvision's ``RegionProposalNetwork`` and GluonCV's
``RPN``. Everything from pixels to proposals is one graph, so
``HybridBlock.export`` writes the whole proposal pipeline.

Shape glossary: ``B`` images of a batch, padded to one canvas ``(H, W)``
pixels (multiples of the stride); ``h, w = H / stride, W / stride`` the
feature map; ``A`` anchors a pixel; ``N = h * w * A``; ``K`` proposals an
image. ``image_sizes`` (B, 2): each image's ``[height, width]`` in input
pixels (its top-left part of the canvas; extra columns are ignored).

Box frames. Anchors and the head's offsets live in the *canvas* frame
(corner form, normalised by ``W, H``). Ground truth and proposals live in
each *image's* frame (corner form, normalised by that image's own width
and height): the chapter's convention, independent of how images were
batched. IoU and offsets do not change under the per-axis scaling between
the two, so labels are the same in either.
"""
import mxnet as mx
import numpy as onp
from mxnet import autograd, np
from mxnet import ndarray as _nd
from mxnet.gluon import nn

from .anchors import RPN_RATIOS, RPN_SIZES, anchor_shapes, generate_anchors
from .boxes import OFFSET_WEIGHTS, _decode
from .targets import rpn_targets

__all__ = ["RegionProposalNetwork"]


def _grid_anchors(F, features, shapes, stride):
    """Anchors of every pixel of ``features`` (B, C, h, w), in the canvas
    frame: centres ``((x + 0.5) / w, (y + 0.5) / h)``, sizes ``shapes``
    (A, 2) ``[width, height]`` pixels divided by the canvas ``(w * stride,
    h * stride)``. Returns (4, h * w * A), pixel row-major then anchor, as
    :func:`rpn.generate_anchors`. Works on arrays and in a graph."""
    ys = F.npx.arange_like(features, axis=2)                    # (h,)
    xs = F.npx.arange_like(features, axis=3)                    # (w,)
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
    h = F.np.ones_like(F.npx.arange_like(features, axis=2)).sum()
    w = F.np.ones_like(F.npx.arange_like(features, axis=3)).sum()
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

    ``backbone``: images (B, 3, H, W) -> features (B, C, h, w) at
    ``stride``; ``head``: an :class:`rpn.RPNOutput` with ``A`` anchors a
    pixel. Anchors are ``anchor_sizes`` x ``anchor_ratios`` (the chapter's
    combinations, or every pair with ``anchor_product``), sizes as fractions
    of ``base_size`` pixels: in a square ``base_size`` image they are the
    chapter's :func:`rpn.generate_anchors`, and they keep their size in
    pixels in a canvas of any shape.

    ``forward(X (B, 3, H, W), image_sizes (B, 2))`` in inference returns
    ``(scores (B, K), boxes (B, K, 4))``, best first: object probabilities
    and corner boxes normalised by each image's own size, clipped to it.
    ``K = min(post_nms_top_n_test, N)``; rows whose score is below 0 are
    padding (fewer boxes survived). Under ``autograd.record()`` in training
    mode it returns ``(scores, boxes, cls_preds (B * N, 2), box_preds
    (B * N, 4), anchors (4, N))``: the proposals (``post_nms_top_n_train``,
    without gradient, for a second stage) and what the loss needs; the
    labels come from :meth:`targets`.

    Proposal settings, as Faster R-CNN: the ``pre_nms_top_n`` best anchors
    of an image enter NMS at ``nms_threshold``, ``post_nms_top_n`` are kept,
    with separate training and test values; boxes smaller than ``min_size``
    input pixels are dropped. Anchors centred outside an image (in the
    padding) are never used; with ``allowed_border`` (pixels) anchors that
    cross the image's edge by more get no label and make no proposal
    (``None``: every anchor centred in the image is used). Labels follow
    :func:`rpn.rpn_targets` with ``pos_iou``, ``neg_iou``, ``neg_pos_ratio``
    and ``crowd_ioa``. ``resize``: the :class:`rpn.preprocess.Resize` its
    images were trained with, which :func:`rpn.load` and the functions that
    read image files use.
    """

    def __init__(self, backbone, head, *, stride, base_size, anchor_sizes=RPN_SIZES,
                 anchor_ratios=RPN_RATIOS, anchor_product=False, nms_threshold=0.7,
                 pre_nms_top_n_train=2000, post_nms_top_n_train=2000,
                 pre_nms_top_n_test=1000, post_nms_top_n_test=1000, min_size=0.0,
                 allowed_border=None, pos_iou=0.7, neg_iou=0.3, neg_pos_ratio=5,
                 crowd_ioa=0.5, weights=OFFSET_WEIGHTS, resize=None, **kwargs):
        super().__init__(**kwargs)
        shapes = anchor_shapes(anchor_sizes, anchor_ratios, base_size,
                               product=anchor_product)
        if len(shapes) != head.num_anchors:
            raise ValueError(f"the head predicts {head.num_anchors} anchors a pixel, "
                             f"but the anchor settings give {len(shapes)}")
        for name, value in (("pre_nms_top_n_train", pre_nms_top_n_train),
                            ("post_nms_top_n_train", post_nms_top_n_train),
                            ("pre_nms_top_n_test", pre_nms_top_n_test),
                            ("post_nms_top_n_test", post_nms_top_n_test)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= nms_threshold <= 1:
            raise ValueError(f"nms_threshold must be in [0, 1], got {nms_threshold}")
        if min_size < 0 or (allowed_border is not None and allowed_border < 0):
            raise ValueError(f"min_size and allowed_border must be >= 0, got "
                             f"{min_size} and {allowed_border}")
        self.backbone, self.head = backbone, head
        self.resize = resize
        self.stride, self.base_size = int(stride), float(base_size)
        self.nms_threshold, self.min_size = float(nms_threshold), float(min_size)
        self.allowed_border = None if allowed_border is None else float(allowed_border)
        self.top_n = {True: (int(pre_nms_top_n_train), int(post_nms_top_n_train)),
                      False: (int(pre_nms_top_n_test), int(post_nms_top_n_test))}
        self.label_settings = dict(pos_iou=pos_iou, neg_iou=neg_iou,
                                   neg_pos_ratio=neg_pos_ratio, crowd_ioa=crowd_ioa,
                                   weights=weights)
        self.weights = tuple(weights)
        self.anchor_settings = (tuple(anchor_sizes), tuple(anchor_ratios), bool(anchor_product))
        self.anchor_shapes = self.params.get_constant(
            "anchor_shapes", onp.array(shapes, dtype="float32"))     # (A, 2) pixels
        self.anchor_shapes.initialize(ctx=mx.current_context())

    def _follow(self, ctx):
        """Keep the anchor shapes (a constant) on every context the model
        runs on, so that it follows the context of its inputs."""
        if ctx not in self.anchor_shapes.list_ctx():
            self.anchor_shapes.reset_ctx(self.anchor_shapes.list_ctx() + [ctx])

    # ---- the graph ----------------------------------------------------------

    def _proposals(self, F, features, cls_preds, box_preds, image_sizes, shapes, training):
        """Decode, clip, filter and NMS: (scores (B, K), boxes (B, K, 4))."""
        pre, post = self.top_n[training]
        anchors = _grid_anchors(F, features, shapes, self.stride)     # (4, N)
        ex, ey = _canvas_extent(F, features, image_sizes, self.stride)  # (B, 1) each
        border = (None, None) if self.allowed_border is None else self._border(F, features)
        valid = _valid_anchors(F, anchors, ex, ey, *border)             # (B, N)
        # (B * N, 2) logits -> object probability (B * N,) -> (B, N)
        prob = F.npx.softmax(cls_preds, axis=-1)[:, 1]
        prob = F.npx.reshape_like(prob, valid, lhs_begin=0, lhs_end=1,
                                  rhs_begin=0, rhs_end=2)
        # (B * N, 4) -> (B, N, 4); anchors (4, N) -> (1, N, 4)
        offsets = F.npx.reshape_like(box_preds, valid, lhs_begin=0, lhs_end=1,
                                     rhs_begin=0, rhs_end=2)
        boxes = _decode(F.np.expand_dims(anchors.T, 0), offsets, self.weights, xp=F.np)
        # canvas frame -> each image's own frame, clipped to the image
        scale = F.np.expand_dims(F.np.concatenate([ex, ey, ex, ey], axis=1), 1)  # (B, 1, 4)
        boxes = F.np.clip(boxes / scale, 0.0, 1.0)
        if self.min_size > 0:
            x0, y0, x1, y1 = F.np.split(boxes, 4, axis=-1)             # (B, N, 1) each
            wide = ((x1 - x0)[:, :, 0] * image_sizes[:, 1:2] >= self.min_size)
            high = ((y1 - y0)[:, :, 0] * image_sizes[:, 0:1] >= self.min_size)
            valid = valid * wide.astype("float32") * high.astype("float32")
        # unusable anchors score -1, below box_nms's valid_thresh
        scores = prob * valid + (valid - 1)                                # (B, N)
        data = F.np.concatenate([F.np.expand_dims(scores, -1), boxes], axis=-1)  # (B, N, 5)
        out = F.contrib.box_nms(
            data.as_nd_ndarray(), overlap_thresh=self.nms_threshold, valid_thresh=-0.5,
            topk=pre, coord_start=1, score_index=0, id_index=-1, force_suppress=True,
            in_format="corner", out_format="corner")
        out = F.BlockGrad(out).as_np_ndarray()[:, :post]                   # (B, K, 5)
        return out[:, :, 0], out[:, :, 1:5]

    def _border(self, F, features):
        """``allowed_border`` pixels in the canvas frame (x, y)."""
        h = F.np.ones_like(F.npx.arange_like(features, axis=2)).sum()
        w = F.np.ones_like(F.npx.arange_like(features, axis=3)).sum()
        return self.allowed_border / (w * self.stride), self.allowed_border / (h * self.stride)

    def hybrid_forward(self, F, X, image_sizes, anchor_shapes):
        features = self.backbone(X)                          # (B, C, h, w)
        cls_preds, box_preds = self.head(features)           # (B * N, 2), (B * N, 4)
        return self._proposals(F, features, cls_preds, box_preds,
                               image_sizes.astype("float32"), anchor_shapes, False)

    def forward(self, X, image_sizes):
        self._follow(X.ctx)
        if X.shape[0] == 0:
            raise ValueError("the proposal model needs at least one image, got a batch of 0 "
                             f"(X {X.shape})")
        if image_sizes.shape[0] != X.shape[0] or image_sizes.ndim != 2 \
                or image_sizes.shape[1] < 2:
            raise ValueError(f"image_sizes must be (B, 2) [height, width] rows, one an "
                             f"image of X {X.shape}; got {image_sizes.shape}")
        if not autograd.is_training():
            return super().forward(X, image_sizes)
        # training: the children run (hybridized or not) and the proposals
        # are computed imperatively, so the cached inference graph never
        # depends on the mode it was first called in
        image_sizes = image_sizes.as_in_context(X.ctx).astype("float32")
        features = self.backbone(X)
        cls_preds, box_preds = self.head(features)
        shapes = self._shapes(X.ctx)
        with autograd.pause():
            scores, boxes = self._proposals(_nd, features, cls_preds, box_preds,
                                            image_sizes, shapes, True)
        return scores, boxes, cls_preds, box_preds, self.anchors(features)

    # ---- anchors and labels, outside the graph --------------------------------

    def _shapes(self, ctx):
        self._follow(ctx)
        return self.anchor_shapes.data(ctx)

    def anchors(self, features):
        """The (4, N) canvas-frame anchors of ``features`` (B, C, h, w) on
        its context: the chapter's :func:`rpn.generate_anchors` with the
        sizes rescaled from ``base_size`` pixels to the canvas (unchanged,
        so bit for bit the chapter's, when the canvas is a ``base_size``
        square). The graph computes the same anchors (to float rounding)."""
        height, width = features.shape[2:]
        sizes, ratios, product = self.anchor_settings
        short = min(height, width) * self.stride
        if short != self.base_size:
            sizes = tuple(s * self.base_size / short for s in sizes)
        return generate_anchors(height, width, sizes, ratios, product=product,
                                ctx=features.ctx)

    def valid_anchors(self, anchors, features, image_sizes):
        """(B, N) float mask of the anchors each image may use (see the
        class); ``image_sizes`` (B, 2+) input pixels."""
        image_sizes = image_sizes.as_in_context(features.ctx).astype("float32")
        ex, ey = _canvas_extent(_nd, features, image_sizes, self.stride)
        border = (None, None) if self.allowed_border is None else self._border(_nd, features)
        return _valid_anchors(_nd, anchors, ex, ey, *border)

    def to_canvas(self, Y, features, image_sizes):
        """Ground truth (B, G, 5) in the images' frames -> the canvas frame."""
        image_sizes = image_sizes.as_in_context(features.ctx).astype("float32")
        ex, ey = _canvas_extent(_nd, features, image_sizes, self.stride)   # (B, 1)
        one = np.ones_like(ex)
        scale = np.concatenate([one, ex, ey, ex, ey], axis=1)[:, None, :]  # (B, 1, 5)
        return Y.as_in_context(features.ctx) * scale

    def batch_fn(self, Y, features, output_model, anchors, image_sizes=None, *,
                 validate=True):
        """The chapter's ``batch_fn`` protocol (see :func:`rpn.rpn_batch`) for
        this model, for :func:`rpn.train_detection`: ``((cls_preds,
        box_preds), (cls_labels, box_labels), anchors)``. ``image_sizes``
        (B, 2+) input pixels, or ``None`` when every image fills the canvas."""
        if anchors is None:
            anchors = self.anchors(features)
        if image_sizes is None:
            valid, canvas_Y = None, Y.as_in_context(features.ctx)
        else:
            valid = self.valid_anchors(anchors, features, image_sizes)
            canvas_Y = self.to_canvas(Y, features, image_sizes)
        labels = rpn_targets(canvas_Y, anchors, valid=valid, validate=validate,
                             **self.label_settings)
        return output_model(features), labels, anchors

    def targets(self, Y, X, image_sizes, *, validate=True):
        """Labels of every anchor for ground truth ``Y`` (B, G, 5) (images'
        frames) of the batch ``X`` (B, 3, H, W) with ``image_sizes`` (B, 2+):
        ``(cls_labels (B * N,), box_labels (B * N, 4))`` as
        :func:`rpn.rpn_targets`, matching the training outputs of
        ``forward``."""
        h, w = X.shape[2] // self.stride, X.shape[3] // self.stride
        features = np.zeros((X.shape[0], 1, h, w), ctx=X.ctx)     # shape only
        anchors = self.anchors(features)
        valid = self.valid_anchors(anchors, features, image_sizes)
        return rpn_targets(self.to_canvas(Y, features, image_sizes), anchors,
                           valid=valid, validate=validate, **self.label_settings)
