"""A second look at each proposal: box refinement from features pooled
inside the box.

The first stage regresses a box from the features at its anchor's centre,
which see little of a large object's edges and are coarse for a small
one. A refinement stage (Fast R-CNN's box head made class-agnostic, as
Cascade RPN and the Object Localization Network's box stage refine
proposals) pools the features *inside* each proposal with ``ROIAlign``,
predicts a second offset relative to the proposal and how well the
refined box fits its object (its IoU), and ranks by it.

Shape glossary: ``B`` images, ``R`` RoIs an image, ``C`` feature channels,
``P`` the pooled side, ``G`` object rows an image. Boxes are corner form,
normalised by each image's own size, except RoIs for ``ROIAlign`` (canvas
pixels, rows ``[image, x1, y1, x2, y2]``).
"""
from typing import Any, NamedTuple

from mxnet import autograd
from mxnet import ndarray as _nd
from mxnet import np, npx
from mxnet.gluon import nn

from ..boxes import _decode, _encode, overlap
from ..ops.gather import take_rows
from ..ops.guards import EmptyBatchSafe
from ..ops.nms import box_nms
from ..ops.roi import roi_rows

__all__ = ["BoxRefiner", "RefineOutput", "REFINE_WEIGHTS", "refine_targets", "refine_outputs",
           "refine_proposals",
           "sample_rois"]

#: Offset weights of the refinement (Cascade R-CNN's second stage): its
#: offsets are smaller than the first stage's, so they are scaled up more.
REFINE_WEIGHTS = (20.0, 20.0, 10.0, 10.0)
#: A RoI whose IoU with an object is at least this learns to fit it.
POSITIVE_IOU = 0.5


class RefineOutput(NamedTuple):
    """What the refinement stage trains on, for one device's batch:
    ``box_preds`` (B * R, 4) offsets from each RoI (``REFINE_WEIGHTS``),
    ``quality_preds`` (B * R,) logits of the refined box's IoU,
    ``box_targets`` (B * R, 4) offsets to each RoI's object, ``rois``
    (B * R, 4) the RoIs and ``objects`` (B * R, 4) their objects (images'
    frames), ``positive`` (B * R,) 1 for RoIs with IoU >= 0.5, ``valid``
    (B * R,) 1 for real RoIs (not padding)."""
    box_preds: Any
    quality_preds: Any
    box_targets: Any
    rois: Any
    objects: Any
    positive: Any
    valid: Any


class BoxRefiner(EmptyBatchSafe, nn.HybridBlock):
    """``forward(features (B, C, h, w), rois (B * R, 5))`` -> ``(box_preds
    (B * R, 4), quality_preds (B * R,))``: a 1 x 1 convolution to
    ``channels``, ``ROIAlign`` to ``pool x pool`` at ``1 / stride``, two
    fully connected layers of ``hidden`` units, and two predictors."""

    def __init__(self, *, stride, channels=32, hidden=128, pool=7, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.pool = int(stride), int(pool)
        with self.name_scope():
            self.reduce = nn.Conv2D(channels, kernel_size=1, activation="relu")
            self.fc1 = nn.Dense(hidden, activation="relu")
            self.fc2 = nn.Dense(hidden, activation="relu")
            self.box_predictor = nn.Dense(4)
            self.quality_predictor = nn.Dense(1)

    def hybrid_forward(self, F, features, rois):
        reduced = self.reduce(features)                                # (B, c, h, w)
        pooled = F.contrib.ROIAlign(
            reduced.as_nd_ndarray(), rois.as_nd_ndarray(), pooled_size=(self.pool, self.pool),
            spatial_scale=1.0 / self.stride, sample_ratio=1).as_np_ndarray()  # (B*R, c, P, P)
        hidden = self.fc2(self.fc1(pooled))                            # (B * R, hidden)
        # (B * R, 1) -> (B * R,)
        return self.box_predictor(hidden), self.quality_predictor(hidden).reshape(-1)


def refined_boxes(F, rois, box_preds):
    """RoIs (B, R, 4) moved by the refiner's offsets (B * R, 4), clipped to
    the image: (B, R, 4)."""
    offsets = F.npx.reshape_like(box_preds, rois, lhs_begin=0, lhs_end=1, rhs_begin=0,
                                 rhs_end=2)                            # (B, R, 4)
    return F.np.clip(_decode(rois, offsets, REFINE_WEIGHTS, xp=F.np), 0.0, 1.0)


def sample_rois(proposals, count):
    """RoIs to train the refiner on: of each image's proposals (scores (B,
    K), boxes (B, K, 4), best first, padding scored below 0), the best
    ``count // 2`` and ``count - count // 2`` drawn at random from the rest,
    so the RoIs look like those the refiner meets at test time (the best,
    and many lower-ranked ones to learn to score down). Returns ``(rois (B,
    count, 4), valid (B, count))``; on the proposals' device, no host read."""
    scores, boxes = proposals
    batch, k = scores.shape
    count = min(int(count), k)
    top = count // 2
    ranks = np.broadcast_to(np.arange(k, ctx=scores.ctx)[None], (batch, k))
    keys = np.random.uniform(size=(batch, k), ctx=scores.ctx)          # (B, K) in [0, 1)
    keys = np.where(ranks < top, -1.0, keys)                           # the best first
    keys = np.where(scores < 0, 2.0, keys)                             # padding last
    index = npx.topk(-keys, k=count, axis=1, ret_typ="indices")        # (B, R)
    rois = take_rows(_nd, boxes, index)                                # (B, R, 4)
    valid = (take_rows(_nd, scores, index) >= 0).astype("float32")     # (B, R)
    return rois, valid


def refine_targets(rois, valid, Y):
    """Each RoI's object: ``rois`` (B, R, 4) and ``Y`` (B, G, 5) in the
    images' frames (class < 0 rows are padding or crowd regions and match
    nothing). Returns ``(objects (B, R, 4), fit (B, R) the RoI's IoU with
    it, box_targets (B, R, 4) offsets to it (REFINE_WEIGHTS), positive (B,
    R))``."""
    gt = Y[:, :, 1:5]                                                  # (B, G, 4)
    # (B, R, 1, 4) against (B, 1, G, 4) -> (B, R, G)
    ious = overlap(rois[:, :, None, :], gt[:, None, :, :])
    ious = np.where((Y[:, :, 0] >= 0)[:, None, :], ious, -1.0)
    best = ious.argmax(axis=2)                                         # (B, R)
    fit = np.maximum(npx.pick(ious, best, axis=2), 0.0)                # (B, R)
    objects = take_rows(_nd, gt, best)                                 # (B, R, 4)
    positive = (fit >= POSITIVE_IOU).astype("float32") * valid
    # only positives have targets: others (a RoI without area among them)
    # get 0, never a NaN that a zero weight would not cancel
    targets = np.where(positive[..., None] > 0, _encode(rois, objects, REFINE_WEIGHTS), 0.0)
    return objects, fit, targets, positive


def refine_outputs(refiner, features, proposals, image_sizes, Y, count):
    """The refinement stage in training: ``refiner`` on ``count`` RoIs an
    image sampled from the first stage's ``proposals`` (:func:`sample_rois`),
    with their targets (:func:`refine_targets`; ``Y`` (B, G, 5) images'
    frames). Returns a :class:`RefineOutput` of (B * R, ...) rows."""
    with autograd.pause():
        rois, valid = sample_rois(proposals, count)                        # (B, R, ...)
        objects, _, targets, positive = refine_targets(rois, valid, Y)
        rows = roi_rows(_nd, rois, image_sizes)                            # (B * R, 5)
    box_preds, quality = refiner(features, rows)
    # (B, R, ...) -> (B * R, ...)
    return RefineOutput(box_preds, quality, targets.reshape(-1, 4), rois.reshape(-1, 4),
                        objects.reshape(-1, 4), positive.reshape(-1), valid.reshape(-1))


def refine_proposals(F, refiner, features, scores, boxes, image_sizes, *, nms_threshold,
                     power):
    """The refinement stage at test time: every proposal (``scores`` (B, K),
    ``boxes`` (B, K, 4) images' frames, best first) moved by ``refiner`` and
    scored ``p ** (1 - a) * IoU ** a`` (``a`` = ``power``), then NMS again,
    best first. Returns ``(scores (B, K), boxes (B, K, 4))``; works on
    arrays and in a graph."""
    box_preds, quality = refiner(features, roi_rows(F, boxes, image_sizes))
    boxes = refined_boxes(F, boxes, box_preds)                             # (B, K, 4)
    # (B * K,) -> (B, K)
    fit = F.npx.reshape_like(F.npx.sigmoid(quality), scores)
    kept = scores >= 0
    scores = F.np.where(kept, F.np.maximum(scores, 0) ** (1 - power) * fit ** power, -1.0)
    data = F.np.concatenate([F.np.expand_dims(scores, -1), boxes], axis=-1)  # (B, K, 5)
    out = box_nms(F, data, nms_threshold, valid_thresh=-0.5)               # (B, K, 5)
    return out[:, :, 0], out[:, :, 1:5]
