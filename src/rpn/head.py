"""The RPN head: a 3x3 convolution and two sibling 1x1 predictors.

Chapter section "Model" (``RPNOutput``); Faster R-CNN's "mini-network slid
over the convolutional feature map", :cite:`Ren.He.Girshick.ea.2015`, 3.1.

Shape glossary: ``B`` images, ``C`` feature channels, ``H, W`` feature-map
size, ``A`` anchors a pixel, ``N = H * W * A``.
"""
from mxnet.gluon import nn

from .ops.guards import EmptyBatchSafe
from .ops.precision import float32

__all__ = ["RPNOutput"]


class RPNOutput(EmptyBatchSafe, nn.HybridBlock):
    """Class and box-offset predictions for every anchor.

    A 3x3 convolution (``channels`` outputs, ReLU, padding 1, so the map
    keeps its size) followed by two 1x1 convolutions: ``2A`` channels for
    the object/background scores and ``4A`` for the offsets of each anchor.

    ``forward(X)``: ``X`` is (B, C, H, W). Returns ``cls_preds`` (B * N, 2),
    raw scores (logits) with column 1 the object class, and ``box_preds``
    (B * N, 4) offsets, flattened image-major, then pixel row-major, then
    anchor: the order of :func:`rpn.generate_anchors`.

    ``normalize=True`` scales each pixel's feature of the 3x3 convolution
    to unit length before the predictors (the Object Localization Network's
    RPN head, for its centerness).

    ``per_image=True`` (for a feature pyramid, whose levels are joined
    image by image) keeps the batch axis: (B, N, 2), (B, N, 4) and (B, N).

    ``quality=True`` (an extra of the package, for the proposal model's
    ``iou_branch``) adds a third sibling 1x1 convolution of ``A`` channels:
    a logit of how well each anchor's decoded box fits its object (its IoU,
    as IoU-Net and the Object Localization Network predict one), returned
    third as ``quality_preds`` (B * N,).

    Departs from the chapter only in being a ``HybridBlock`` (so it can be
    hybridized and exported), in the ``channels`` keyword (the chapter's
    128 by default; Faster R-CNN used 256 or 512), in the optional
    ``quality`` output, and in answering a batch of zero feature maps with
    empty outputs (see :mod:`rpn.ops.guards`). Under mixed precision
    (:mod:`rpn.ops.precision`) the convolutions run in float16 and the
    outputs are float32.
    """

    def __init__(self, num_anchors=5, *, channels=128, quality=False, per_image=False,
                 normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors, self.quality = num_anchors, bool(quality)
        self.per_image, self.normalize = bool(per_image), bool(normalize)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel_size=3, padding=1,
                                  activation="relu")
            self.cls_predictor = nn.Conv2D(num_anchors * 2, kernel_size=1)
            self.box_predictor = nn.Conv2D(num_anchors * 4, kernel_size=1)
            if self.quality:
                self.quality_predictor = nn.Conv2D(num_anchors, kernel_size=1)

    def hybrid_forward(self, F, X):
        Y = self.conv(X)
        if self.normalize:       # each pixel's feature to unit length (OLN's RPN head)
            Y = Y / F.np.sqrt((Y * Y).sum(axis=1, keepdims=True) + 1e-12)
        # (B, kA, H, W) -> (B, H, W, kA) -> (B * H * W * A, k), or with
        # per_image (B, H * W * A, k) (-2 keeps B, -1 infers the rest)
        if self.per_image:
            def rows(x, k):
                return F.npx.reshape(x.transpose(0, 2, 3, 1), (-2, -1) + k)
        else:
            def rows(x, k):
                return x.transpose(0, 2, 3, 1).reshape((-1,) + k)
        cls_preds = rows(self.cls_predictor(Y), (2,))      # from (B, 2A, H, W)
        box_preds = rows(self.box_predictor(Y), (4,))      # from (B, 4A, H, W)
        if not self.quality:
            return float32(cls_preds, box_preds)
        quality = rows(self.quality_predictor(Y), ())      # from (B, A, H, W)
        return float32(cls_preds, box_preds, quality)
