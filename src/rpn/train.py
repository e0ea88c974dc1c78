"""Training a detection model: the chapter's ``train_detection`` and
``rpn_batch``, on one device or several, with checkpoints.

Chapter section "Training"; the approximate joint training of Faster R-CNN
(:cite:`Ren.He.Girshick.ea.2015`, 3.2) reduced to its RPN.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``N =
H * W * A`` anchors an image; features ``(B, C, H, W)``; ground truth
``(B, G, 5)``.
"""
import json
import math
import os
import shutil
import time

import mxnet as mx
from mxnet import autograd, gluon, np

from .anchors import rpn_anchors
from .loss import DetectionEvaluation, DetectionLoss
from .targets import rpn_targets

__all__ = ["rpn_batch", "train_detection", "evaluate_detection", "try_gpu",
           "as_context_list", "load_checkpoint", "latest_checkpoint"]

_METRICS = ("correct", "abs_err", "labelled", "positive")


def try_gpu(i=0):
    """``mx.gpu(i)`` when MXNet sees that GPU, else ``mx.cpu()`` (as d2l)."""
    return mx.gpu(i) if mx.context.num_gpus() > i else mx.cpu()


def as_context_list(ctx):
    """One context, a list of them, or ``None`` (:func:`try_gpu`) -> list."""
    if ctx is None:
        return [try_gpu()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctxs or not all(isinstance(c, mx.Context) for c in ctxs):
        raise ValueError(f"ctx must be an mx.Context or a non-empty list of "
                         f"them, got {ctx!r}")
    return ctxs


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

    def run(self, batch_fn, Y, features, output_model):
        key = (features.ctx, tuple(features.shape[2:]))
        preds, labels, anchors = batch_fn(Y, features, output_model,
                                          self._anchors.get(key))
        self._anchors[key] = anchors
        labels = [y.as_in_context(features.ctx) for y in labels]
        return preds, labels


def _split(batch, ctxs, *, strict=True):
    """Split a batch over the devices along its first axis. A batch smaller
    than the device count is an error in training (every device must take
    part in a step) and uses the first devices otherwise."""
    if batch.shape[0] < len(ctxs) and not strict:
        ctxs = ctxs[:batch.shape[0]]
    if batch.shape[0] < len(ctxs):
        raise ValueError(
            f"a batch of {batch.shape[0]} images cannot be split over "
            f"{len(ctxs)} devices; use a batch size of at least {len(ctxs)} "
            "and drop the last incomplete batch")
    return gluon.utils.split_and_load(batch, ctxs, even_split=False)


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
    for X, Y in data_iter:
        for Xd, Yd in zip(_split(X, ctxs, strict=False), _split(Y, ctxs, strict=False)):
            preds, labels = cache.run(batch_fn, Yd, backbone(Xd), output_model)
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
    return gluon.Trainer(params, optimizer, options, kvstore=kvstore)


def _in_notebook():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _AnimatorCallback:
    """The chapter's curves: d2l's Animator, fed every 4 steps and at the
    end of every epoch."""

    def __init__(self, num_epochs):
        from d2l import mxnet as d2l
        self.animator = d2l.Animator(
            xlabel="epoch", xlim=[0, num_epochs],
            legend=["train class err", "train box mae",
                    "test class err", "test box mae"])

    def __call__(self, event):
        if event["kind"] == "step" and (event["step"] + 1) % 4 == 0:
            self.animator.add(event["epoch"] + event["step"] / event["steps"],
                              (event["class_err"], event["box_mae"], None, None))
        elif event["kind"] == "epoch":
            self.animator.add(event["epoch"] + 1,
                              (None, None, event["test_class_err"],
                               event["test_box_mae"]))


# ---- checkpoints -----------------------------------------------------------

_LATEST = "latest"


def latest_checkpoint(checkpoint_dir):
    """The folder of the newest complete checkpoint in ``checkpoint_dir``,
    or ``None``."""
    pointer = os.path.join(checkpoint_dir, _LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    path = os.path.join(checkpoint_dir, name)
    return path if os.path.isfile(os.path.join(path, "state.json")) else None


def _write_checkpoint(checkpoint_dir, epoch, backbone, output_model, trainer,
                      state):
    """Write a checkpoint next to the previous one, then switch the
    ``latest`` pointer with an atomic rename: a run killed while saving
    leaves the previous checkpoint in force."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    name = f"epoch-{epoch + 1:04d}"
    tmp = os.path.join(checkpoint_dir, name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    backbone.save_parameters(os.path.join(tmp, "backbone.params"))
    output_model.save_parameters(os.path.join(tmp, "output.params"))
    trainer.save_states(os.path.join(tmp, "trainer.states"))
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    final = os.path.join(checkpoint_dir, name)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = os.path.join(checkpoint_dir, _LATEST + ".tmp")
    with open(pointer_tmp, "w") as f:
        f.write(name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer_tmp, os.path.join(checkpoint_dir, _LATEST))
    for entry in os.listdir(checkpoint_dir):
        if entry.startswith("epoch-") and entry != name:
            shutil.rmtree(os.path.join(checkpoint_dir, entry), ignore_errors=True)


def load_checkpoint(checkpoint_dir, backbone, output_model, ctx=None):
    """Load the newest checkpoint's parameters into ``backbone`` and
    ``output_model`` (on ``ctx``) and return its ``state.json`` dict
    (epoch, history, seed, config)."""
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        raise FileNotFoundError(
            f"no checkpoint in {checkpoint_dir!r}: expected a 'latest' file "
            "naming an epoch-NNNN folder, as train_detection writes")
    ctxs = as_context_list(ctx)
    try:
        backbone.load_parameters(os.path.join(path, "backbone.params"), ctx=ctxs)
        output_model.load_parameters(os.path.join(path, "output.params"), ctx=ctxs)
    except (AssertionError, mx.MXNetError, ValueError) as error:
        raise ValueError(
            f"the checkpoint in {path} does not fit this model (another "
            f"backbone, anchors or head width?): {error}") from error
    with open(os.path.join(path, "state.json")) as f:
        return json.load(f)


# ---- training ----------------------------------------------------------------

def train_detection(backbone, output_model, batch_fn, train_iter, test_iter,
                    loss, num_epochs, backbone_lr, output_lr, ctx=None, *,
                    optimizer="sgd", optimizer_params=None,
                    lr_schedule="constant", warmup_steps=0, hybridize=True,
                    kvstore=None, callback=None, checkpoint_dir=None,
                    resume=False, seed=None, config=None, epoch_end=None,
                    verbose=True):
    """Train a detection model (chapter section "Training").

    ``backbone``, ``output_model``: initialised networks, trained at
    ``backbone_lr`` and ``output_lr`` (SGD, weight decay 1e-4, as the
    chapter; one ``gluon.Trainer`` whose backbone parameters get ``lr_mult
    = backbone_lr / max(lrs)``, which updates exactly as the chapter's two
    trainers and lets one KVStore serve both). ``batch_fn(Y, features, output_model,
    anchors) -> (preds, labels, anchors)``, e.g. :func:`rpn_batch`.
    ``train_iter``, ``test_iter`` yield ``(X (B, 3, h, w), Y (B, G, 5))``;
    ``test_iter`` may be ``None``. ``loss`` e.g. ``DetectionLoss(1)``.

    Returns the history: one dict an epoch with ``epoch``, ``loss``,
    ``train_class_err``, ``train_box_mae``, ``test_class_err``,
    ``test_box_mae``, ``time`` (seconds), ``images_per_sec``, plus what
    ``epoch_end`` adds.

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
      gradients: the learning rate is not scaled, so a step equals one
      machine's step on the workers' combined batch (raise the learning rate
      yourself for the linear-scaling rule). Under ``dist_async`` each
      worker's gradient updates the weights as it arrives. Only rank 0 writes
      checkpoints; BatchNorm running statistics stay each worker's own;
    * ``hybridize`` (default on) compiles both networks, with static memory
      (about 6% faster a step on a 2-core CPU);
    * ``optimizer``/``optimizer_params`` (merged over ``{"wd": 1e-4}``),
      ``lr_schedule`` (``"constant"`` or ``"cosine"``, with
      ``warmup_steps``);
    * ``callback(event)`` gets a dict after every step (``kind="step"``) and
      epoch (``kind="epoch"``); by default the chapter's d2l Animator draws
      the curves inside a notebook, and nothing draws elsewhere;
    * ``checkpoint_dir``: a checkpoint after every epoch (parameters, trainer
      states, epoch, history, seed), written atomically; ``resume=True``
      continues from it, ending where an uninterrupted run ends;
    * ``seed``: every epoch reseeds MXNet with ``seed + epoch`` and tells a
      loader with ``set_epoch`` its epoch, so a run is repeatable and a
      resumed run replays the same draws. ``None`` draws the seed from
      MXNet's generator, so ``mx.random.seed`` makes the run repeatable;
    * ``epoch_end(epoch) -> dict`` adds entries to an epoch's record (e.g.
      proposal recall); ``config`` (JSON-able) is stored in checkpoints.
    """
    ctxs = as_context_list(ctx)
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
    if resume and checkpoint_dir and latest_checkpoint(checkpoint_dir):
        state = load_checkpoint(checkpoint_dir, backbone, output_model, ctxs)
        trainer.load_states(os.path.join(latest_checkpoint(checkpoint_dir),
                                         "trainer.states"))
        history, start, seed = state["history"], state["epoch"] + 1, state["seed"]
    if seed is None:
        seed = int(np.random.randint(0, 2 ** 30, ctx=mx.cpu()).item())
    if callback is None and _in_notebook():
        callback = _AnimatorCallback(num_epochs)
    evaluator, cache = DetectionEvaluation(), _AnchorCache()
    home = ctxs[0]

    for epoch in range(start, num_epochs):
        mx.random.seed(seed + epoch)
        if hasattr(train_iter, "set_epoch"):
            train_iter.set_epoch(epoch)
        sums, images, tic = np.zeros(5, ctx=home), 0, time.time()
        for i, (X, Y) in enumerate(train_iter):
            Xs, Ys = _split(X, ctxs), _split(Y, ctxs)
            with autograd.record():
                parts = [cache.run(batch_fn, Yd, backbone(Xd), output_model)
                         for Xd, Yd in zip(Xs, Ys)]
                losses = _losses(loss, parts)
            autograd.backward(losses)
            # average over devices (other losses) and synchronous workers
            scale = len(ctxs) if not isinstance(loss, DetectionLoss) else 1
            trainer.step(scale * sync_workers)
            loss_sum = sum(l.sum().as_in_context(home) for l in losses).reshape(1)
            metrics = sum(_metric_sums(evaluator, preds, labels, home)
                          for preds, labels in parts)
            sums = sums + np.concatenate([loss_sum, metrics])          # (5,)
            images += X.shape[0]
            # one read a step, for progress: this step's loss, then the sums
            host = np.concatenate([loss_sum, sums]).asnumpy().tolist()
            step_loss, host = host[0], host[1:]
            if not math.isfinite(step_loss):
                raise FloatingPointError(
                    f"the loss became {step_loss} at epoch {epoch + 1}, step "
                    f"{i + 1}; lower the learning rates ({backbone_lr}, "
                    f"{output_lr}) or add warm-up")
            class_err, box_mae = _summary(host[1:])
            if callback is not None:
                callback({"kind": "step", "epoch": epoch, "step": i,
                          "steps": steps_per_epoch, "loss": step_loss,
                          "class_err": class_err, "box_mae": box_mae,
                          "images_per_sec": images / (time.time() - tic)})
        elapsed = time.time() - tic
        if images == 0:
            raise ValueError("train_iter yielded no batch")
        record = {"epoch": epoch + 1, "loss": host[0] / (i + 1),
                  "train_class_err": class_err, "train_box_mae": box_mae,
                  "time": elapsed, "images_per_sec": images / elapsed,
                  "test_class_err": None, "test_box_mae": None}
        if test_iter is not None:
            test = evaluate_detection(backbone, output_model, batch_fn,
                                      test_iter, ctxs)
            record["test_class_err"] = test["class_err"]
            record["test_box_mae"] = test["box_mae"]
        if epoch_end is not None:
            record.update(epoch_end(epoch))
        history.append(record)
        if checkpoint_dir and rank == 0:
            _write_checkpoint(checkpoint_dir, epoch, backbone, output_model,
                              trainer, {"epoch": epoch, "seed": seed,
                                        "history": history, "config": config})
        if callback is not None:
            callback(dict(record, kind="epoch", epoch=epoch))
    if verbose and history:
        last = history[-1]
        print("train class err %s, box mae %s; test class err %s, box mae %s"
              % tuple(_fmt(last[k]) for k in ("train_class_err", "train_box_mae",
                                               "test_class_err", "test_box_mae")))
    return history


def _fmt(value):
    return "n/a" if value is None else "%.2f" % value
