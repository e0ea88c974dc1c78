"""What one training step computes: a model's outputs and losses, and the
chapter's metrics of them.

The loop (:class:`rpn.training.trainer.Trainer`) takes a *step*: an object
with ``parts`` (name -> block, the trained blocks; the names name their
checkpoint files), ``forward(X_d, Y_d, sizes_d)`` (one device's part of a
batch -> a :class:`rpn.model.outputs.TrainingOutput`) and
``losses(outputs)`` (every device's output -> one loss array a device);
optionally ``term_names`` and ``terms(outputs, losses)``: the loss split
into named terms, as device sums the loop adds up and reads with its one
read every ``log_interval`` steps. :class:`ProposalStep` is the one place where the proposal model meets the
loop (:func:`rpn.fit`, ``rpn env --check``, the benchmarks); the chapter's
``train_detection`` has its own step (:mod:`rpn.train`).

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``N``
anchors an image; ``X`` (B, 3, H, W), ``Y`` (B, G, 5), ``info`` a
:class:`rpn.data.batch.BatchInfo` or ``None``.
"""
from mxnet import autograd, np

from ..data.batch import image_sizes, unpack_batch
from ..loss import DetectionEvaluation, DetectionLoss
from ..model.loss import ProposalLoss
from ..ops.devices import split_batch

__all__ = ["ProposalStep", "normalised_losses", "anchor_metrics", "metric_sums",
           "summary", "device_parts"]


def _batch_counts(outputs):
    """The counts each device's loss is normalised by, one tuple an output
    (the loss's arguments after the output, positional as Gluon's blocks
    take them): ``(num_valid, num_pos, refine_counts, centerness_count)``,
    the whole batch's labelled and positive anchors, the refinement stage's
    ``(real RoIs, positive RoIs)`` and the anchors OLN's centerness learns
    from (``None`` when the outputs have no such part); all ``None`` on one
    device (the loss counts itself)."""
    if len(outputs) == 1:
        return [(None, None, None, None)]
    home = outputs[0].cls_labels.ctx

    def total(count):             # the whole batch's count, on each device
        whole = sum(count(o).as_in_context(home) for o in outputs)
        return [whole.as_in_context(o.cls_labels.ctx) for o in outputs]
    none = [None] * len(outputs)
    valid = total(lambda o: (o.cls_labels >= 0).sum())
    pos = total(lambda o: (o.cls_labels > 0).sum())
    refine = none if getattr(outputs[0], "refine", None) is None else list(zip(
        total(lambda o: o.refine.valid.sum()), total(lambda o: o.refine.positive.sum())))
    centerness = none if getattr(outputs[0], "centerness", None) is None else total(
        lambda o: o.centerness[1].sum())
    return list(zip(valid, pos, refine, centerness))


def normalised_losses(loss, outputs):
    """One loss per device, each normalised by the counts of labelled and
    positive anchors of the whole batch (so the summed gradient equals that
    of the batch on one device). ``outputs``: one
    :class:`rpn.model.outputs.TrainingOutput` a device (``(B_d * N, ...)``
    arrays). ``loss(output, num_valid, num_pos, refine_counts,
    centerness_count)`` (:func:`_batch_counts`) returns a (B_d * N,) array;
    on one device every count is ``None`` (the loss counts itself)."""
    return [loss(o, *counts) for o, counts in zip(outputs, _batch_counts(outputs))]


class ProposalStep:
    """The proposal model ``model`` (:class:`rpn.RegionProposalNetwork`) as
    a training step: its :meth:`~rpn.RegionProposalNetwork.training_outputs`
    and ``loss`` (default :class:`rpn.model.loss.ProposalLoss` of its
    settings), normalised by the whole batch on several devices. ``crowd``:
    whether the data has crowd regions (without, the labeler skips their
    pass); ``validate``: check each batch's labels (data checked when it
    was read need not be). The refinement stage trains in training steps
    only: the chapter's metrics between epochs are the first stage's.

    :attr:`term_names` names the terms of :meth:`terms`: ``class`` (the
    classification term), ``box`` (``lambd`` times the box term) and, when
    the loss has any (GIoU, the IoU branch, the refinement stage),
    ``extra``, the rest of the loss. A loss of another kind than
    :class:`rpn.model.loss.ProposalLoss` has no terms."""

    def __init__(self, model, loss=None, *, crowd=True, validate=False):
        self.model, self.crowd, self.validate = model, crowd, validate
        self.loss = loss if loss is not None else ProposalLoss.from_settings(model.settings)
        detection = getattr(self.loss, "detection", None)
        self._class_only = DetectionLoss(0) if detection is not None else None
        extra = any(getattr(self.loss, name, 0) for name in
                    ("giou_weight", "iou_weight", "refine_weight"))
        self.term_names = () if detection is None else (
            ("class", "box") + (("extra",) if extra else ()))

    @property
    def parts(self):
        return self.model.parts()

    def forward(self, X, Y, sizes):
        return self.model.training_outputs(X, sizes, Y, crowd=self.crowd,
                                           validate=self.validate,
                                           refine=autograd.is_training())

    def losses(self, outputs):
        return normalised_losses(self.loss, outputs)

    def terms(self, outputs, losses):
        """The terms of :attr:`term_names` summed over the devices: a (T,)
        array on the first output's device, from ``outputs`` and the
        ``losses`` :meth:`losses` gave for them (nothing is read; nothing
        is recorded for the gradient). ``None`` without terms."""
        if not self.term_names:
            return None
        home = outputs[0].cls_labels.ctx
        rows = []
        with autograd.pause():
            for output, counts, loss in zip(outputs, _batch_counts(outputs), losses):
                args = (*output.preds, *output.labels, *counts[:2])
                cls = self._class_only(*args).sum()
                detection = self.loss.detection(*args).sum()
                row = [cls, detection - cls] + ([loss.sum() - detection]
                                                if len(self.term_names) > 2 else [])
                rows.append(np.stack(row).as_in_context(home))
        return sum(rows)


def metric_sums(evaluator, output, home):
    """The evaluator's four sums of one device's output as a (4,) float32
    array on ``home``."""
    return np.stack([v.astype("float32") for v in evaluator(*output.preds, *output.labels)]) \
        .as_in_context(home)


def summary(sums):
    """Metric sums -> class error and box MAE (None when undefined)."""
    correct, abs_err, labelled, positive = sums
    return (1 - correct / labelled if labelled else None,
            abs_err / positive if positive else None)


def device_parts(X, Y, info, ctxs, strict):
    """One ``(X_d, Y_d, sizes_d)`` a device (``sizes_d`` (B_d, 2) float32,
    or ``None`` without ``info``)."""
    Xs, Ys = split_batch(X, ctxs, strict=strict), split_batch(Y, ctxs, strict=strict)
    if info is None:
        return [(x, y, None) for x, y in zip(Xs, Ys)]
    return list(zip(Xs, Ys, split_batch(image_sizes(info, X), ctxs, strict=strict)))


def anchor_metrics(forward, data_iter, ctxs):
    """Class error and box MAE of labelled anchors over ``data_iter``, with
    ``forward`` as in training but without recording. Returns
    ``{"class_err", "box_mae", "images"}``; a metric is ``None`` when no
    anchor counts for it."""
    evaluator = DetectionEvaluation()
    sums, images = None, 0
    for batch in data_iter:
        X, Y, info = unpack_batch(batch)
        for part in device_parts(X, Y, info, ctxs, strict=False):
            values = metric_sums(evaluator, forward(*part), ctxs[0])
            sums = values if sums is None else sums + values
        images += X.shape[0]
    if sums is None:
        return {"class_err": None, "box_mae": None, "images": 0}
    class_err, box_mae = summary([float(v) for v in sums.asnumpy()])
    return {"class_err": class_err, "box_mae": box_mae, "images": images}
