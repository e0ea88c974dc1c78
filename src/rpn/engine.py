"""The training loop every trainer of the package shares.

:func:`train_loop` runs the steps, on one device or several, with
checkpoints, progress events and a divergence check. What a step computes
is given to it as two functions: ``forward`` turns one device's part of a
batch into a :class:`rpn.outputs.TrainingOutput` (predictions and labels
of every anchor) and ``losses`` turns every device's output into its loss.
:func:`rpn.fit` gives it the proposal model
(:meth:`rpn.RegionProposalNetwork.training_outputs` and
:class:`rpn.loss.ProposalLoss`); the chapter's :func:`rpn.train_detection`
gives it a backbone, a head and a ``batch_fn``.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``N``
anchors an image; ``X`` (B, 3, H, W), ``Y`` (B, G, 5), ``info`` a
:class:`rpn.batching.BatchInfo` or ``None``.
"""
import math
import time

import mxnet as mx
from mxnet import autograd, gluon, np

from .batching import image_sizes, split_batch, unpack_batch
from .checkpoint import latest_checkpoint, load_parts, load_optimizer_states, \
    write_checkpoint
from .interrupt import training_at
from .loss import DetectionEvaluation
from .mixed_precision import numpy_scaler

__all__ = ["train_loop", "anchor_metrics", "normalised_losses", "learning_rates"]


def _default_kvstore(ctxs):
    """MXNet's advice: reduce on the GPUs when there are several, in host
    memory otherwise."""
    return "device" if len(ctxs) > 1 and any(c.device_type == "gpu" for c in ctxs) else "local"


def _make_trainer(parts, lrs, optimizer, optimizer_params, kvstore, lr_schedule,
                  total_steps, warmup_steps):
    """One ``gluon.Trainer`` for every part, each part's learning rate set
    through its parameters' ``lr_mult`` (one KVStore serves them all, which
    a distributed KVStore needs: two trainers would share its keys). The
    parameters are taken in the order of ``parts``."""
    base = max(lrs.values())
    for name, block in parts.items():
        for param in block.collect_params().values():
            param.lr_mult = lrs[name] / base if base > 0 else 1.0
    options = dict(optimizer_params or {}, learning_rate=base)
    if lr_schedule == "cosine":
        options["lr_scheduler"] = mx.lr_scheduler.CosineScheduler(
            max_update=max(total_steps, warmup_steps + 1), base_lr=base,
            final_lr=0.0, warmup_steps=warmup_steps, warmup_begin_lr=0.0)
    elif lr_schedule == "step":
        # a tenth of the rate for the last quarter (Faster R-CNN's 60k + 20k)
        drop = max(int(0.75 * total_steps), warmup_steps + 1, 1)
        options["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
            step=[drop], factor=0.1, base_lr=base, warmup_steps=warmup_steps,
            warmup_begin_lr=0.0)
    elif lr_schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant', 'cosine' or 'step', got "
                         f"{lr_schedule!r}")
    params = gluon.ParameterDict()
    for block in parts.values():
        params.update(block.collect_params())
    # the optimizer runs here (not in the KVStore), so that its state can be
    # saved without pickle; dist_async allows nothing else
    on_kvstore = "async" in getattr(kvstore, "type", str(kvstore))
    return gluon.Trainer(params, optimizer, options, kvstore=kvstore,
                         update_on_kvstore=True if on_kvstore else False)


def learning_rates(parts, backbone_lr, output_lr):
    """The chapter's two learning rates for ``parts`` (name -> block): the
    ``backbone`` part trains at ``backbone_lr``, every other part (the head,
    the refinement stage) at ``output_lr``."""
    return {name: backbone_lr if name == "backbone" else output_lr for name in parts}


def normalised_losses(loss, outputs):
    """One loss per device, each normalised by the counts of labelled and
    positive anchors of the whole batch (so the summed gradient equals that
    of the batch on one device). ``outputs``: one
    :class:`rpn.outputs.TrainingOutput` a device (``(B_d * N, ...)`` arrays).
    ``loss(output, num_valid, num_pos)`` (and the refinement stage's
    ``(real RoIs, positive RoIs)`` of the batch when the outputs have one)
    returns a (B_d * N,) array; the counts are ``None`` on one device (the
    loss counts itself)."""
    if len(outputs) == 1:
        return [loss(outputs[0], None, None)]
    home = outputs[0].cls_labels.ctx

    def total(counts):            # the whole batch's count, on each device
        whole = sum(c.as_in_context(home) for c in counts)
        return [whole.as_in_context(o.cls_labels.ctx) for o in outputs]
    valid = total([(o.cls_labels >= 0).sum() for o in outputs])
    pos = total([(o.cls_labels > 0).sum() for o in outputs])
    if getattr(outputs[0], "refine", None) is None:
        return [loss(o, v, p) for o, v, p in zip(outputs, valid, pos)]
    # the refinement stage's RoIs too: (real ones, positive ones) of the batch
    rois = total([o.refine.valid.sum() for o in outputs])
    rois_pos = total([o.refine.positive.sum() for o in outputs])
    return [loss(o, v, p, (r, rp)) for o, v, p, r, rp in zip(outputs, valid, pos, rois,
                                                            rois_pos)]


def _metric_sums(evaluator, output, home):
    """The evaluator's four sums of one device's output as a (4,) float32
    array on ``home``."""
    return np.stack([v.astype("float32") for v in evaluator(*output.preds, *output.labels)]) \
        .as_in_context(home)


def _summary(sums):
    """Metric sums -> class error and box MAE (None when undefined)."""
    correct, abs_err, labelled, positive = sums
    return (1 - correct / labelled if labelled else None,
            abs_err / positive if positive else None)


def _parts_of(X, Y, info, ctxs, strict):
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
        for part in _parts_of(X, Y, info, ctxs, strict=False):
            values = _metric_sums(evaluator, forward(*part), ctxs[0])
            sums = values if sums is None else sums + values
        images += X.shape[0]
    if sums is None:
        return {"class_err": None, "box_mae": None, "images": 0}
    class_err, box_mae = _summary([float(v) for v in sums.asnumpy()])
    return {"class_err": class_err, "box_mae": box_mae, "images": images}


def train_loop(parts, lrs, forward, losses, train_iter, num_epochs, ctxs, *,
               test_iter=None, optimizer="sgd", optimizer_params=None,
               lr_schedule="constant", warmup_steps=0, hybridize=True, kvstore=None,
               callback=None, checkpoint_dir=None, resume=False, seed=None, config=None,
               epoch_end=None, log_interval=10, max_loss=1e4, device_average=False,
               amp=False):
    """Train the blocks of ``parts`` (name -> block, initialised; the names
    name their checkpoint files) at the learning rates ``lrs`` (name ->
    rate). ``forward(X_d, Y_d, sizes_d)`` gives a device's
    :class:`rpn.outputs.TrainingOutput`; ``losses(outputs)`` one loss array a
    device (e.g. :func:`normalised_losses`); ``device_average`` divides the
    gradient by the device count (for losses that are not normalised by
    the whole batch). ``train_iter`` yields ``(X, Y)`` or ``(X, Y,
    info)``; ``test_iter`` (or ``None``) gets :func:`anchor_metrics` every
    epoch. ``amp``: mixed precision (:mod:`rpn.mixed_precision`, whose
    ``init`` must have run before the blocks were built; GPUs): the trainer
    gets AMP's dynamic loss scaler and each backward pass runs on the scaled
    losses (``True``: ``mxnet.contrib.amp``; or that module itself). The
    other arguments are :func:`rpn.train_detection`'s, which documents them.
    Returns the history, one dict an epoch."""
    if int(log_interval) != log_interval or log_interval < 1:
        raise ValueError(f"log_interval must be a positive integer, got {log_interval!r}")
    for block in parts.values():
        block.collect_params().reset_ctx(ctxs)
        if hybridize:
            block.hybridize(static_alloc=True, static_shape=True)
    if kvstore is None:
        kvstore = _default_kvstore(ctxs)
    if isinstance(kvstore, str) and kvstore.startswith("dist"):
        kvstore = mx.kv.create(kvstore)
    rank = getattr(kvstore, "rank", 0)
    workers = getattr(kvstore, "num_workers", 1)
    sync_workers = workers if "sync" in getattr(kvstore, "type", "") else 1
    steps_per_epoch = len(train_iter)
    trainer = _make_trainer(parts, lrs, optimizer, optimizer_params, kvstore, lr_schedule,
                            num_epochs * steps_per_epoch, warmup_steps)
    amp = _amp_module(amp, trainer)
    history, start = [], 0
    last = latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    if last is not None:
        state = load_parts(last, parts, ctxs)
        load_optimizer_states(trainer, last)
        history, start = state["history"], state["epoch"] + 1
        seed = state["seed"] if seed is None else seed      # a new seed from here on
    if seed is None:
        seed = int(np.random.randint(0, 2 ** 30, ctx=mx.cpu()).item())
    evaluator, home = DetectionEvaluation(), ctxs[0]
    # average over devices (losses not normalised by the batch) and
    # synchronous workers
    scale = (len(ctxs) if device_average else 1) * sync_workers

    for epoch in range(start, num_epochs):
        mx.random.seed(seed + epoch)
        if hasattr(train_iter, "set_epoch"):
            train_iter.set_epoch(epoch)
        sums, images, skipped, tic = np.zeros(5, ctx=home), 0, 0, time.time()
        logged = {"step": 0, "loss": 0.0, "host": [0.0] * 5}
        for i, batch in enumerate(train_iter):
            training_at(epoch, i, steps_per_epoch)          # where an interrupt says it was
            X, Y, info = unpack_batch(batch)
            with autograd.record():
                outputs = [forward(*part) for part in _parts_of(X, Y, info, ctxs, True)]
                step_losses = losses(outputs)
                if amp is not None:         # the scaled losses recorded, as GluonCV does
                    with amp.scale_loss(step_losses, trainer) as scaled:
                        autograd.backward(scaled)
            if amp is None:
                autograd.backward(step_losses)
            trainer.step(scale)
            loss_sum = sum(l.sum().as_in_context(home) for l in step_losses).reshape(1)
            metrics = sum(_metric_sums(evaluator, output, home) for output in outputs)
            sums = sums + np.concatenate([loss_sum, metrics])          # (5,)
            images += X.shape[0]
            if info is not None:
                skipped += int((~info.readable).sum())                  # host array
            if (i + 1) % log_interval == 0 or i + 1 == steps_per_epoch:
                _log_step(logged, sums, epoch, i, steps_per_epoch, images, tic,
                          callback, lrs, checkpoint_dir, max_loss)
        elapsed = time.time() - tic
        if images == 0:
            raise ValueError("train_iter yielded no batch")
        host = logged["host"]
        class_err, box_mae = _summary(host[1:])
        record = {"epoch": epoch + 1, "loss": host[0] / (i + 1),
                  "train_class_err": class_err, "train_box_mae": box_mae,
                  "time": elapsed, "images_per_sec": images / elapsed,
                  "test_class_err": None, "test_box_mae": None,
                  "skipped_images": skipped}
        if test_iter is not None:
            test = anchor_metrics(forward, test_iter, ctxs)
            record["test_class_err"] = test["class_err"]
            record["test_box_mae"] = test["box_mae"]
        if epoch_end is not None:
            record.update(epoch_end(epoch))
        history.append(record)
        if checkpoint_dir and rank == 0:
            write_checkpoint(checkpoint_dir, epoch, parts, trainer,
                             {"epoch": epoch, "seed": seed, "history": history,
                              "config": config})
        if callback is not None:
            callback(dict(record, kind="epoch", epoch=epoch))
    return history


def _amp_module(amp, trainer):
    """AMP's module with ``trainer`` given its loss scaler, or ``None``
    without ``amp``."""
    if amp is False or amp is None:
        return None
    if amp is True:
        from mxnet.contrib import amp
    if trainer._kvstore_params["update_on_kvstore"]:
        raise ValueError("amp: AMP's loss scaler needs the update on the workers; "
                         "dist_async updates on the servers (use dist_sync)")
    amp.init_trainer(trainer)
    numpy_scaler(trainer)           # its overflow check, for NumPy-mode gradients
    return amp


def _log_step(logged, sums, epoch, i, steps, images, tic, callback, lrs, checkpoint_dir,
              max_loss):
    """Read the running sums from the device (the one host read of
    ``log_interval`` steps), stop on a loss that is not finite, and tell the
    callback."""
    host = sums.asnumpy().tolist()
    advance = i + 1 - logged["step"]
    window_loss = (host[0] - logged["loss"]) / advance
    if not all(math.isfinite(v) for v in host) or (max_loss is not None
                                                    and window_loss > max_loss):
        kept = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
        rates = ", ".join(f"{name} {lr}" for name, lr in lrs.items())
        raise FloatingPointError(
            f"the loss became {window_loss} at epoch {epoch + 1}, steps "
            f"{logged['step'] + 1}-{i + 1}: training diverged. Lower the learning "
            f"rates ({rates}) or add warm-up"
            + (f"; the last good checkpoint is kept: {kept}" if kept else ""))
    logged.update(step=i + 1, loss=host[0], host=host)
    if callback is not None:
        class_err, box_mae = _summary(host[1:])
        callback({"kind": "step", "epoch": epoch, "step": i, "steps": steps,
                  "advance": advance, "loss": window_loss, "class_err": class_err,
                  "box_mae": box_mae, "images_per_sec": images / (time.time() - tic)})
