"""The proposal model's anchors and their labels, outside the graph.

Training labels each anchor of a padded batch against its image's objects
(:func:`rpn.rpn_targets`, the chapter's rule with the model's settings).
Anchors are the chapter's :func:`rpn.generate_anchors` with their sizes
rescaled from ``size`` pixels to the canvas: in a square ``size`` canvas they
are the chapter's bit for bit, and in any canvas they keep their size in
pixels (the graph computes the same anchors, to float rounding, with
:func:`rpn.model.canvas.grid_anchors`). Anchors centred outside their image
(in the padding) are never used; with ``allowed_border`` (pixels) anchors
that cross the image's edge by more get no label.

Shape glossary: ``B`` images, features ``(B, C, h, w)`` at ``stride``,
``N = h * w * A`` anchors, ``G`` object rows an image. Ground truth ``Y``
(B, G, 5) rows ``[class, x1, y1, x2, y2]`` in each image's frame;
``image_sizes`` (B, 2+) ``[height, width]`` input pixels.
"""
from mxnet import ndarray as _nd
from mxnet import np

from ..anchors import anchor_shapes, generate_anchors
from ..targets import rpn_targets
from .canvas import border, canvas_extent, level_anchors, valid_anchors
from .objectness import centerness_targets

__all__ = ["AnchorLabeler"]


class AnchorLabeler:
    """Anchors and labels of a batch for the model of
    :class:`rpn.settings.ModelSettings` ``settings``. ``method``: where
    anchors meet objects (:func:`rpn.label_anchors`: ``"auto"``, the host
    for CPU arrays and the device otherwise; ``"device"``; ``"host"``)."""

    def __init__(self, settings, *, method="auto"):
        self.settings, self.method = settings, method

    @property
    def shapes(self):
        """The anchors of a pixel, ``[(width, height), ...]`` in input
        pixels: ``anchor_sizes`` (fractions of ``size``) by
        ``anchor_ratios``, or a pyramid's sizes a level (its size times each
        of ``pyramid_scales``) by every ratio, level by level."""
        s = self.settings
        if s.pyramid is None:
            return anchor_shapes(s.anchor_sizes, s.anchor_ratios, s.size,
                                 product=s.anchor_product)
        return [shape for size in s.level_sizes
                for shape in anchor_shapes(s.pyramid_scales, s.anchor_ratios, size,
                                           product=True)]

    def anchors(self, features):
        """The (4, N) canvas-frame anchors of ``features`` on its context (a
        pyramid's: a list of level maps, their anchors joined level by
        level)."""
        s = self.settings
        if s.pyramid is not None:
            shapes = np.array(self.shapes, dtype="float32", ctx=features[0].ctx)
            return np.concatenate(level_anchors(_nd, features, shapes, s.strides), axis=1)
        height, width = features.shape[2:]
        sizes = s.anchor_sizes
        short = min(height, width) * s.stride
        if short != s.size:
            sizes = tuple(v * s.size / short for v in sizes)
        return generate_anchors(height, width, sizes, s.anchor_ratios,
                                product=s.anchor_product, ctx=features.ctx)

    def _first(self, features):
        """The finest map: the canvas frame's."""
        return features[0] if self.settings.pyramid is not None else features

    def _extent(self, features, image_sizes):
        first = self._first(features)
        image_sizes = image_sizes.as_in_context(first.ctx).astype("float32")
        return canvas_extent(_nd, first, image_sizes, self.settings.strides[0])  # (B, 1) each

    def valid(self, anchors, features, image_sizes):
        """(B, N) float mask of the anchors each image may use (see the
        module)."""
        s = self.settings
        ex, ey = self._extent(features, image_sizes)
        return valid_anchors(_nd, anchors, ex, ey, *border(
            _nd, self._first(features), s.allowed_border, s.strides[0]))

    def to_canvas(self, Y, features, image_sizes):
        """Ground truth (B, G, 5) in the images' frames -> the canvas frame."""
        ex, ey = self._extent(features, image_sizes)
        one = np.ones_like(ex)
        scale = np.concatenate([one, ex, ey, ex, ey], axis=1)[:, None, :]  # (B, 1, 5)
        return Y.as_in_context(ex.ctx) * scale

    def centerness(self, Y, features, image_sizes, *, anchors=None, crowd=True):
        """OLN's targets of the centerness branch for ground truth ``Y`` (B,
        G, 5): ``(targets (B * N,), weights (B * N,))``
        (:func:`rpn.model.objectness.centerness_targets` with the model's
        ``centerness_*`` settings)."""
        s = self.settings
        anchors = self.anchors(features) if anchors is None else anchors
        return centerness_targets(
            self.to_canvas(Y, features, image_sizes), anchors,
            valid=self.valid(anchors, features, image_sizes), pos_iou=s.centerness_pos_iou,
            neg_iou=s.centerness_neg_iou, samples=s.centerness_samples,
            crowd_ioa=s.crowd_ioa if crowd else None, method=self.method)

    def __call__(self, Y, features, image_sizes, *, anchors=None, crowd=True,
                 validate=True):
        """``(cls_labels (B * N,), box_labels (B * N, 4))`` of every anchor
        (``anchors``: :meth:`anchors` of ``features`` when not given), as
        :func:`rpn.rpn_targets` with the model's rule. ``crowd=False`` skips
        the crowd-region pass; ``validate=False`` the checks of ``Y``."""
        s = self.settings
        anchors = self.anchors(features) if anchors is None else anchors
        return rpn_targets(self.to_canvas(Y, features, image_sizes), anchors,
                           valid=self.valid(anchors, features, image_sizes),
                           validate=validate, method=self.method, pos_iou=s.pos_iou,
                           neg_iou=s.neg_iou,
                           neg_pos_ratio=s.neg_pos_ratio,
                           crowd_ioa=s.crowd_ioa if crowd else None,
                           anchors_per_image=s.anchors_per_image,
                           positive_fraction=s.positive_fraction)
