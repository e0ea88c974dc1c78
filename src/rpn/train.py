"""Training a detection model: the chapter's ``train_detection`` and
``rpn_batch``, on one device or several, with checkpoints.

Chapter section "Training"; the approximate joint training of Faster R-CNN
(:cite:`Ren.He.Girshick.ea.2015`, 3.2) reduced to its RPN.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``N =
H * W * A`` anchors an image; features ``(B, C, H, W)``; ground truth
``(B, G, 5)``.
"""
import math
import time

import mxnet as mx
from mxnet import autograd, gluon, np

from .anchors import rpn_anchors
from .batching import _check_takes_sizes, _sizes_of, as_context_list, split_batch, \
    try_gpu, unpack_batch
from .checkpoint import latest_checkpoint, load_checkpoint, load_optimizer_states, \
    write_checkpoint
from .interrupt import training_at
from .loss import DetectionEvaluation, DetectionLoss
from .targets import rpn_targets

__all__ = ["rpn_batch", "train_detection", "evaluate_detection", "try_gpu",
           "as_context_list", "unpack_batch"]   # the last three from rpn.batching

_METRICS = ("correct", "abs_err", "labelled", "positive")


def rpn_batch(Y, backbone_features, output_model, anchors, *,
              anchor_fn=rpn_anchors, target_fn=rpn_targets):
    """Predictions, labels and anchors of one batch (chapter section
    "Training").

    ``Y`` (B, G, 5) ground truth; ``backbone_features`` (B, C, H, W). The
    anchors are computed once (when ``anchors`` is ``None``) and returned
    for the next call, since the data shape is fixed. Labels come from
    ``target_fn(Y, anchors)`` on the features' context, predictions from
    ``output_model``. Returns ``((cls_preds (B*N, 2), box_preds (B*N, 4)),
    (cls_labels (B*N,), box_labels (B*N, 4)), anchors (4, N))``.

    ``anchor_fn`` and ``target_fn`` are extras (bind them with
    ``functools.partial``); their defaults are the chapter's.
    """
    if anchors is None:
        anchors = anchor_fn(backbone_features)
    labels = target_fn(Y.as_in_context(backbone_features.ctx), anchors)
    preds = output_model(backbone_features)
    return preds, labels, anchors


class _AnchorCache:
    """Anchors per (device, feature size), so that ``batch_fn`` computes
    them once per device as the chapter computes them once."""

    def __init__(self):
        self._anchors = {}

    def run(self, batch_fn, Y, features, output_model, image_sizes=None):
        key = (features.ctx, tuple(features.shape[2:]))
        if image_sizes is None:
            preds, labels, anchors = batch_fn(Y, features, output_model,
                                              self._anchors.get(key))
        else:
            _check_takes_sizes(batch_fn)
            preds, labels, anchors = batch_fn(Y, features, output_model,
                                              self._anchors.get(key), image_sizes)
        if len(self._anchors) >= 32 and key not in self._anchors:
            self._anchors.clear()
        self._anchors[key] = anchors
        labels = [y.as_in_context(features.ctx) for y in labels]
        return preds, labels


def _losses(loss, parts):
    """One loss per device. A :class:`DetectionLoss` normalises every part
    by the counts of the whole batch, so the summed gradient equals that of
    the batch on one device."""
    if not isinstance(loss, DetectionLoss) or len(parts) == 1:
        return [loss(*preds, *labels) for preds, labels in parts]
    home = parts[0][1][0].ctx
    valid = sum((labels[0] >= 0).sum().as_in_context(home) for _, labels in parts)
    pos = sum((labels[0] > 0).sum().as_in_context(home) for _, labels in parts)
    # Block.__call__ takes positional arguments only: num_valid, num_pos
    return [loss(*preds, *labels, valid.as_in_context(labels[0].ctx),
                 pos.as_in_context(labels[0].ctx))
            for preds, labels in parts]


def _metric_sums(evaluator, preds, labels, home):
    """The evaluator's four sums of one part as a (4,) float32 array on
    ``home``."""
    return np.stack([v.astype("float32") for v in evaluator(*preds, *labels)]) \
        .as_in_context(home)


def _summary(sums):
    """Metric sums -> class error and box MAE (None when undefined)."""
    correct, abs_err, labelled, positive = sums
    return (1 - correct / labelled if labelled else None,
            abs_err / positive if positive else None)


def evaluate_detection(backbone, output_model, batch_fn, data_iter, ctx=None):
    """Class error and box MAE of labelled anchors over ``data_iter``.

    Runs ``batch_fn`` as in training, without recording, on ``ctx`` (one
    context or a list). Returns ``{"class_err", "box_mae", "images"}``;
    a metric is ``None`` when no anchor counts for it.
    """
    ctxs = as_context_list(ctx)
    evaluator, cache = DetectionEvaluation(), _AnchorCache()
    sums, images = None, 0
    for batch in data_iter:
        X, Y, info = unpack_batch(batch)
        for Xd, Yd, Sd in zip(split_batch(X, ctxs, strict=False), split_batch(Y, ctxs, strict=False),
                              _sizes_of(info, ctxs, strict=False)):
            preds, labels = cache.run(batch_fn, Yd, backbone(Xd), output_model, Sd)
            values = _metric_sums(evaluator, preds, labels, ctxs[0])
            sums = values if sums is None else sums + values
        images += X.shape[0]
    if sums is None:
        return {"class_err": None, "box_mae": None, "images": 0}
    class_err, box_mae = _summary([float(v) for v in sums.asnumpy()])
    return {"class_err": class_err, "box_mae": box_mae, "images": images}


def _default_kvstore(ctxs):
    """MXNet's advice: reduce on the GPUs when there are several, in host
    memory otherwise."""
    return "device" if len(ctxs) > 1 and any(c.device_type == "gpu" for c in ctxs) else "local"


def _make_trainer(backbone, output_model, backbone_lr, output_lr, optimizer,
                  optimizer_params, kvstore, lr_schedule, total_steps, warmup_steps):
    """One ``gluon.Trainer`` for both networks, the backbone's learning rate
    set through its parameters' ``lr_mult`` (one KVStore serves both, which
    a distributed KVStore needs: two trainers would share its keys)."""
    base = max(backbone_lr, output_lr)
    for net, lr in ((backbone, backbone_lr), (output_model, output_lr)):
        for param in net.collect_params().values():
            param.lr_mult = lr / base if base > 0 else 1.0
    options = {"learning_rate": base, "wd": 1e-4}
    options.update(optimizer_params or {})
    if lr_schedule == "cosine":
        options["lr_scheduler"] = mx.lr_scheduler.CosineScheduler(
            max_update=max(total_steps, warmup_steps + 1), base_lr=base,
            final_lr=0.0, warmup_steps=warmup_steps, warmup_begin_lr=0.0)
    elif lr_schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got "
                         f"{lr_schedule!r}")
    params = gluon.ParameterDict()
    params.update(output_model.collect_params())
    params.update(backbone.collect_params())
    # the optimizer runs here (not in the KVStore), so that its state can be
    # saved without pickle; dist_async allows nothing else
    on_kvstore = "async" in getattr(kvstore, "type", str(kvstore))
    return gluon.Trainer(params, optimizer, options, kvstore=kvstore,
                         update_on_kvstore=True if on_kvstore else False)


def _in_notebook():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _AnimatorCallback:
    """The chapter's curves: d2l's Animator, fed at every logged step and at
    the end of every epoch."""

    def __init__(self, num_epochs):
        from d2l import mxnet as d2l
        self.animator = d2l.Animator(
            xlabel="epoch", xlim=[0, num_epochs],
            legend=["train class err", "train box mae",
                    "test class err", "test box mae"])

    def __call__(self, event):
        if event["kind"] == "step":
            self.animator.add(event["epoch"] + event["step"] / event["steps"],
                              (event["class_err"], event["box_mae"], None, None))
        elif event["kind"] == "epoch":
            self.animator.add(event["epoch"] + 1,
                              (None, None, event["test_class_err"],
                               event["test_box_mae"]))


# ---- training ----------------------------------------------------------------

def train_detection(backbone, output_model, batch_fn, train_iter, test_iter,
                    loss, num_epochs, backbone_lr, output_lr, ctx=None, *,
                    optimizer="sgd", optimizer_params=None,
                    lr_schedule="constant", warmup_steps=0, hybridize=True,
                    kvstore=None, callback=None, checkpoint_dir=None,
                    resume=False, seed=None, config=None, epoch_end=None,
                    log_interval=10, max_loss=1e4, verbose=True):
    """Train a detection model (chapter section "Training").

    ``backbone``, ``output_model``: initialised networks, trained at
    ``backbone_lr`` and ``output_lr`` (SGD, weight decay 1e-4, as the
    chapter; one ``gluon.Trainer`` whose backbone parameters get ``lr_mult
    = backbone_lr / max(lrs)``, which updates exactly as the chapter's two
    trainers and lets one KVStore serve both). ``batch_fn(Y, features,
    output_model, anchors) -> (preds, labels, anchors)``, e.g.
    :func:`rpn_batch`. ``train_iter``, ``test_iter`` yield ``(X (B, 3, h,
    w), Y (B, G, 5))``, or ``(X, Y, info)`` when images keep their aspect
    ratio (then ``batch_fn`` also gets each image's ``(height, width)`` as a
    fifth argument, e.g. :meth:`rpn.RegionProposalNetwork.batch_fn`);
    ``test_iter`` may be ``None``. ``loss`` e.g. ``DetectionLoss(1)``.

    Returns the history: one dict an epoch with ``epoch``, ``loss``,
    ``train_class_err``, ``train_box_mae``, ``test_class_err``,
    ``test_box_mae``, ``time`` (seconds), ``images_per_sec``,
    ``skipped_images`` (images that could not be read, see
    :class:`rpn.DetectionDataset`), plus what ``epoch_end`` adds.

    Departs from and extends the chapter (its behaviour is the default):

    * the test set is evaluated every epoch (the chapter's ``fixme`` skipped it);
    * ``ctx`` is one context or a list: each batch is split over the devices
      and gradients are summed through a KVStore; a :class:`DetectionLoss` is
      normalised by the counts of the whole batch, so the update equals that
      of one device on the same labels (BatchNorm still sees each device's
      part only);
    * ``kvstore``: an MXNet KVStore type (``local``, ``device``,
      ``dist_sync``, ``dist_device_sync``, ``dist_async``) or object; by
      default ``device`` for several GPUs and ``local`` otherwise. Under
      ``dist_sync``/``dist_device_sync`` each worker trains on its own
      ``train_iter`` (give it its shard, e.g. ``shard=(kv.rank,
      kv.num_workers)``) and the update is the *average* of the workers'
      gradients: the learning rate is not scaled. The optimizer runs on each
      worker (``update_on_kvstore=False``), so its state can be saved; under
      ``dist_async`` it runs on the servers and a checkpoint holds none.
      Only rank 0 writes checkpoints; BatchNorm running statistics stay each
      worker's own;
    * ``hybridize`` (default on) compiles both networks, with static memory;
    * ``optimizer``/``optimizer_params`` (merged over ``{"wd": 1e-4}``),
      ``lr_schedule`` (``"constant"`` or ``"cosine"``, with
      ``warmup_steps``);
    * the device is read (which makes the host wait for it) only every
      ``log_interval`` steps and at the end of an epoch: then ``callback``
      gets a ``kind="step"`` event (mean loss since the last one, running
      class error and box MAE, ``advance`` steps done), and a loss that is
      not finite or above ``max_loss`` (the RPN loss starts near 1; ten
      thousand means the weights blew up; ``None``: no bound) stops training
      with a ``FloatingPointError`` (the last checkpoint is kept). ``callback`` also gets a ``kind="epoch"`` event
      after every epoch; by default the chapter's d2l Animator draws the
      curves inside a notebook, and nothing draws elsewhere;
    * ``checkpoint_dir``: a checkpoint after every epoch (parameters,
      optimizer state, epoch, history, seed), written atomically with a
      manifest (see :mod:`rpn.checkpoint`); ``resume=True`` continues from
      it, ending where an uninterrupted run ends. In a distributed run every
      worker resumes from the same folder and only rank 0 writes to it;
    * ``seed``: every epoch reseeds MXNet with ``seed + epoch`` and tells a
      loader with ``set_epoch`` its epoch, so a run is repeatable and a
      resumed run replays the same draws. ``None`` draws the seed from
      MXNet's generator, so ``mx.random.seed`` makes the run repeatable;
    * ``epoch_end(epoch) -> dict`` adds entries to an epoch's record (e.g.
      proposal recall); ``config`` (JSON-able) is stored in checkpoints.
    """
    ctxs = as_context_list(ctx)
    if int(log_interval) != log_interval or log_interval < 1:
        raise ValueError(f"log_interval must be a positive integer, got {log_interval!r}")
    for net in (backbone, output_model):
        net.collect_params().reset_ctx(ctxs)
        if hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
    if kvstore is None:
        kvstore = _default_kvstore(ctxs)
    if isinstance(kvstore, str) and kvstore.startswith("dist"):
        kvstore = mx.kv.create(kvstore)
    rank = getattr(kvstore, "rank", 0)
    workers = getattr(kvstore, "num_workers", 1)
    sync_workers = workers if "sync" in getattr(kvstore, "type", "") else 1
    steps_per_epoch = len(train_iter)
    trainer = _make_trainer(backbone, output_model, backbone_lr, output_lr,
                            optimizer, optimizer_params, kvstore, lr_schedule,
                            num_epochs * steps_per_epoch, warmup_steps)
    history, start = [], 0
    last = latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    if last is not None:
        state = load_checkpoint(checkpoint_dir, backbone, output_model, ctxs)
        load_optimizer_states(trainer, last)
        history, start = state["history"], state["epoch"] + 1
        seed = state["seed"] if seed is None else seed      # a seed given anew holds
    if seed is None:
        seed = int(np.random.randint(0, 2 ** 30, ctx=mx.cpu()).item())
    if callback is None and _in_notebook():
        callback = _AnimatorCallback(num_epochs)
    evaluator, cache = DetectionEvaluation(), _AnchorCache()
    home = ctxs[0]
    # average over devices (other losses) and synchronous workers
    scale = (len(ctxs) if not isinstance(loss, DetectionLoss) else 1) * sync_workers

    for epoch in range(start, num_epochs):
        mx.random.seed(seed + epoch)
        if hasattr(train_iter, "set_epoch"):
            train_iter.set_epoch(epoch)
        sums, images, skipped, tic = np.zeros(5, ctx=home), 0, 0, time.time()
        logged = {"step": 0, "loss": 0.0, "host": [0.0] * 5}
        for i, batch in enumerate(train_iter):
            training_at(epoch, i, steps_per_epoch)          # for an interruption's message
            X, Y, info = unpack_batch(batch)
            with autograd.record():
                parts = [cache.run(batch_fn, Yd, backbone(Xd), output_model, Sd)
                         for Xd, Yd, Sd in zip(split_batch(X, ctxs), split_batch(Y, ctxs),
                                               _sizes_of(info, ctxs))]
                losses = _losses(loss, parts)
            autograd.backward(losses)
            trainer.step(scale)
            loss_sum = sum(l.sum().as_in_context(home) for l in losses).reshape(1)
            metrics = sum(_metric_sums(evaluator, preds, labels, home)
                          for preds, labels in parts)
            sums = sums + np.concatenate([loss_sum, metrics])          # (5,)
            images += X.shape[0]
            if info is not None:
                skipped += int((info[:, 0] == 0).sum())                 # host array
            if (i + 1) % log_interval == 0 or i + 1 == steps_per_epoch:
                _log_step(logged, sums, epoch, i, steps_per_epoch, images, tic,
                          callback, (backbone_lr, output_lr), checkpoint_dir, max_loss)
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
            test = evaluate_detection(backbone, output_model, batch_fn,
                                      test_iter, ctxs)
            record["test_class_err"] = test["class_err"]
            record["test_box_mae"] = test["box_mae"]
        if epoch_end is not None:
            record.update(epoch_end(epoch))
        history.append(record)
        if checkpoint_dir and rank == 0:
            write_checkpoint(checkpoint_dir, epoch, backbone, output_model, trainer,
                             {"epoch": epoch, "seed": seed, "history": history,
                              "config": config})
        if callback is not None:
            callback(dict(record, kind="epoch", epoch=epoch))
    if verbose and history:
        last = history[-1]
        print("train class err %s, box mae %s; test class err %s, box mae %s"
              % tuple(_fmt(last[k]) for k in ("train_class_err", "train_box_mae",
                                               "test_class_err", "test_box_mae")))
    return history


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
        raise FloatingPointError(
            f"the loss became {window_loss} at epoch {epoch + 1}, steps "
            f"{logged['step'] + 1}-{i + 1}: training diverged. Lower the learning "
            f"rates ({lrs[0]}, {lrs[1]}) or add warm-up"
            + (f"; the last good checkpoint is kept: {kept}" if kept else ""))
    logged.update(step=i + 1, loss=host[0], host=host)
    if callback is not None:
        class_err, box_mae = _summary(host[1:])
        callback({"kind": "step", "epoch": epoch, "step": i, "steps": steps,
                  "advance": advance, "loss": window_loss, "class_err": class_err,
                  "box_mae": box_mae, "images_per_sec": images / (time.time() - tic)})


def _fmt(value):
    return "n/a" if value is None else "%.2f" % value
