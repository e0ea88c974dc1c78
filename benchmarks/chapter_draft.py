"""A plain reimplementation of the chapter draft's helpers and training
step, for the benchmark only: Python loops over images and objects, a
Python NMS, host round trips, as the draft has them (see the package's
README for its defects). Not part of the package; never import it there.

Boxes: corner form, normalised; sets (4, N); ground truth (B, G, 5).
"""
import numpy as onp
from mxnet import autograd, gluon, np, npx

from rpn.boxes import anchor_plus_offset, anchor_to_gt_offset, iou, project_box


def label_anchors(ground_truth, anchors, pos_iou, neg_iou, neg_pos_ratio):
    """The draft's labeler: per image, per object, in Python."""
    batch, num = ground_truth.shape[0], anchors.shape[1]
    cls_labels = np.full((batch, num), -1.0, ctx=anchors.ctx)
    box_offsets = np.zeros((batch, num, 4), ctx=anchors.ctx)
    for b in range(batch):
        objects = ground_truth[b]
        objects = objects[objects[:, 0] >= 0]
        negative = onp.ones(num, dtype=bool)
        for g in objects:
            ious = iou(g[1:5], anchors)                          # (N,)
            positive = (ious > pos_iou).asnumpy()
            positive[int(ious.argmax())] = True
            index = np.array(onp.nonzero(positive)[0], ctx=anchors.ctx).astype("int64")
            cls_labels[b, index] = g[0] + 1
            targets = np.broadcast_to(g[1:5].reshape(4, 1), (4, len(index)))
            box_offsets[b, index] = anchor_to_gt_offset(anchors[:, index], targets).T
            negative &= (ious < neg_iou).asnumpy()
        num_pos = int((cls_labels[b] > 0).sum())
        candidates = onp.nonzero(negative)[0]
        take = min(len(candidates), num_pos * neg_pos_ratio)
        if take:
            chosen = onp.random.choice(candidates, take, replace=False)
            cls_labels[b, np.array(chosen, ctx=anchors.ctx).astype("int64")] = 0
    return cls_labels, box_offsets


def rpn_targets(ground_truth, anchors):
    cls_labels, box_offsets = label_anchors(ground_truth, anchors, 0.7, 0.3, 5)
    cls_labels = np.where(cls_labels > 0, 1.0, cls_labels)
    return cls_labels.reshape(-1), box_offsets.reshape(-1, 4)


def nms(scores, boxes, iou_threshold, use_numpy=False):
    """The draft's greedy NMS, one box at a time, in NumPy or mxnet.np."""
    if use_numpy:
        scores, boxes = scores.asnumpy(), boxes.asnumpy()
        lib, area_of = onp, lambda b: onp.maximum(b[2] - b[0], 0) * onp.maximum(b[3] - b[1], 0)
    else:
        lib, area_of = np, lambda b: np.maximum(b[2] - b[0], 0) * np.maximum(b[3] - b[1], 0)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        rest = boxes[:, order[1:]]
        box = boxes[:, i].reshape(4, 1)
        iw = lib.maximum(lib.minimum(box[2], rest[2]) - lib.maximum(box[0], rest[0]), 0)
        ih = lib.maximum(lib.minimum(box[3], rest[3]) - lib.maximum(box[1], rest[1]), 0)
        inter = iw * ih
        ious = inter / (area_of(box) + area_of(rest) - inter)
        inds = lib.nonzero(ious <= iou_threshold)[0]
        order = order[inds + 1]
    return np.array(keep, dtype="float32")


def predict_rpn(backbone_features, output_model, anchor_fn, nms_threshold):
    """The draft's inference: per image, a host NMS, ranked by the logit."""
    anchors = anchor_fn(backbone_features)
    cls_preds, box_preds = output_model(backbone_features)
    num_anchors, ctx = anchors.shape[1], anchors.ctx
    batch_size = cls_preds.shape[0] // num_anchors
    cls_preds, box_preds = [a.reshape(batch_size, num_anchors, -1).as_in_context(ctx)
                            for a in [cls_preds, box_preds]]
    out = []
    for cls_pred, box_pred in zip(cls_preds, box_preds):
        box = anchor_plus_offset(anchors, box_pred.T)
        keep = nms(cls_pred[:, 1], box, nms_threshold, use_numpy=True).astype("int64")
        out.append([cls_pred[keep, 1], project_box(box[:, keep])])
    return out


class DetectionLoss(gluon.nn.Block):
    """The draft's loss: host reads of the counts, division by them."""

    def __init__(self, lambd, **kwargs):
        super().__init__(**kwargs)
        self.cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.box_loss = gluon.loss.L1Loss()
        self.lambd = lambd

    def forward(self, cls_preds, box_preds, cls_labels, box_labels):
        cls_mask, box_mask = cls_labels >= 0, cls_labels > 0
        cls = self.cls_loss(cls_preds, np.maximum(cls_labels, 0), np.expand_dims(cls_mask, axis=-1))
        box = self.box_loss(box_preds, box_labels, np.expand_dims(box_mask, axis=-1))
        cls = cls / float(cls_mask.sum())
        box = box / float(max(float(box_mask.sum()), 1.0))
        return cls + self.lambd * box


def evaluate(cls_preds, box_preds, cls_labels, box_labels):
    """The draft's evaluation (with the int64 argmax cast it needs to run)."""
    cls_mask, box_mask = cls_labels >= 0, cls_labels > 0
    cls = (cls_preds.argmax(axis=-1).astype("float32") == cls_labels)[cls_mask].sum()
    box = np.abs(box_labels - box_preds)[box_mask, :].sum() / 4
    return float(cls), float(box), float(cls_mask.sum()), float(box_mask.sum())


def train_step(backbone, output_model, trainers, loss, X, Y, anchor_fn):
    """One step of the chapter's train_detection with its rpn_batch."""
    with autograd.record():
        features = backbone(X)
        anchors = anchor_fn(features)
        labels = rpn_targets(Y, anchors)
        preds = output_model(features)
        value = loss(*preds, *labels)
    value.backward()
    for trainer in trainers:
        trainer.step(1)
    evaluate(*preds, *labels)
    npx.waitall()
