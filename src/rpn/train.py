"""Training a detection model: the chapter's ``train_detection`` and
``rpn_batch``, on one device or several, with checkpoints.

Chapter section "Training"; the approximate joint training of Faster R-CNN
(:cite:`Ren.He.Girshick.ea.2015`, 3.2) reduced to its RPN.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``N =
H * W * A`` anchors an image; features ``(B, C, H, W)``; ground truth
``(B, G, 5)``.
"""
import functools

from .anchors import rpn_anchors
from .config import TrainSettings
from .data.batch import unpack_batch
from .loss import DetectionLoss
from .model.outputs import TrainingOutput
from .ops.devices import as_context_list, try_gpu
from .targets import rpn_targets
from .training.hooks import (AnchorMetrics, Animator, Callback, Checkpointer, DivergenceCheck,
                             EpochEnd, Hook, in_notebook)
from .training.step import normalised_losses
from .training.trainer import Trainer

__all__ = ["rpn_batch", "train_detection", "chapter_batch_fn", "try_gpu",
           "as_context_list", "unpack_batch"]   # the last three from rpn.ops.devices


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


def chapter_batch_fn(settings):
    """The chapter's :func:`rpn_batch` with the anchors and labelling rule
    of :class:`rpn.settings.ModelSettings` ``settings`` (fixed-size
    batches: anchors of the whole canvas)."""
    anchor_fn = functools.partial(rpn_anchors, sizes=settings.anchor_sizes,
                                  ratios=settings.anchor_ratios,
                                  product=settings.anchor_product)
    target_fn = functools.partial(rpn_targets, pos_iou=settings.pos_iou,
                                  neg_iou=settings.neg_iou,
                                  neg_pos_ratio=settings.neg_pos_ratio)
    return functools.partial(rpn_batch, anchor_fn=anchor_fn, target_fn=target_fn)


class _WholeCanvas:
    """A loader for the chapter's ``batch_fn``, which labels anchors of the
    whole canvas: a batch whose images are padded (they keep their aspect
    ratio) is an error naming the proposal model, which knows each image's
    size. Checked on the host, from each batch's info."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        for batch in self.loader:
            X, _, info = unpack_batch(batch)
            if info is not None:
                sizes = info.sizes[info.readable]
                if (sizes[:, 0] < X.shape[2]).any() or (sizes[:, 1] < X.shape[3]).any():
                    raise ValueError(
                        f"train_detection's batch_fn labels whole canvases, but this batch "
                        f"pads images of several sizes into {X.shape[2]}x{X.shape[3]}: "
                        "train the proposal model (rpn.fit, or RegionProposalNetwork."
                        "training_outputs) or resize images to a fixed size")
            yield batch


class _ChapterStep:
    """The chapter's step for :class:`rpn.training.trainer.Trainer`:
    ``backbone``, then ``batch_fn(Y, features, output_model, anchors)``, the
    anchors computed once per device and feature size (as the chapter
    computes them once), and ``loss`` (a :class:`DetectionLoss` normalised
    by the whole batch on several devices; any other loss per device)."""

    def __init__(self, backbone, output_model, batch_fn, loss):
        self.backbone, self.output_model, self.batch_fn = backbone, output_model, batch_fn
        self.loss = loss
        self.parts = {"output": output_model, "backbone": backbone}
        self._anchors = {}

    def losses(self, outputs):
        if isinstance(self.loss, DetectionLoss):
            # the chapter's loss takes the anchor counts only (no refinement, no OLN)
            return normalised_losses(lambda out, num_valid, num_pos, *_: self.loss(
                *out.preds, *out.labels, num_valid, num_pos), outputs)
        return [self.loss(*out.preds, *out.labels) for out in outputs]

    def forward(self, X, Y, image_sizes):
        del image_sizes        # whole canvases (checked by _WholeCanvas)
        features = self.backbone(X)
        key = (features.ctx, tuple(features.shape[2:]))
        preds, labels, anchors = self.batch_fn(Y, features, self.output_model,
                                               self._anchors.get(key))
        if len(self._anchors) >= 32 and key not in self._anchors:
            self._anchors.clear()
        self._anchors[key] = anchors
        labels = [y.as_in_context(features.ctx) for y in labels]
        return TrainingOutput(preds[0], preds[1], labels[0], labels[1], anchors)


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
    w), Y (B, G, 5))`` (or ``(X, Y, info)`` whose images fill the canvas:
    images that keep their aspect ratio need the proposal model, which
    :func:`rpn.fit` trains); ``test_iter`` may be ``None``. ``loss`` e.g.
    ``DetectionLoss(1)``. The loop itself is
    :class:`rpn.training.trainer.Trainer`, which :func:`rpn.fit` shares.

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
      ``lr_schedule`` (``"constant"``, ``"cosine"`` or ``"step"``, with
      ``warmup_steps``);
    * the device is read (which makes the host wait for it) only every
      ``log_interval`` steps and at the end of an epoch: then ``callback``
      gets a ``kind="step"`` event (mean loss since the last one, running
      class error and box MAE, ``advance`` steps done), and a loss that is
      not finite or above ``max_loss`` (the RPN loss starts near 1; ten
      thousand means the weights blew up; ``None``: no bound) stops training
      with a ``FloatingPointError`` (the last checkpoint is kept).
      ``callback`` also gets a ``kind="epoch"`` event after every epoch; it
      may be a :class:`rpn.training.hooks.Hook` instead. By default the
      chapter's d2l Animator draws the curves inside a notebook, and nothing
      draws elsewhere;
    * ``checkpoint_dir``: a checkpoint after every epoch (parameters,
      optimizer state, epoch, history, seed), written atomically with a
      manifest (see :mod:`rpn.runs.checkpoint`); ``resume=True`` continues from
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
    optimizer_params = dict({"wd": TrainSettings().wd}, **(optimizer_params or {}))
    if callback is None and in_notebook():
        callback = Animator(num_epochs)
    hooks = [DivergenceCheck(max_loss, checkpoint_dir)]
    if test_iter is not None:
        hooks.append(AnchorMetrics(_WholeCanvas(test_iter)))
    if epoch_end is not None:
        hooks.append(EpochEnd(epoch_end))
    if checkpoint_dir:
        hooks.append(Checkpointer(checkpoint_dir, resume=resume, config=config))
    if callback is not None:
        hooks.append(callback if isinstance(callback, Hook) else Callback(callback))
    trainer = Trainer(
        _ChapterStep(backbone, output_model, batch_fn, loss), ctxs,
        lrs={"output": output_lr, "backbone": backbone_lr}, hooks=hooks,
        optimizer=optimizer, optimizer_params=optimizer_params, lr_schedule=lr_schedule,
        warmup_steps=warmup_steps, hybridize=hybridize, kvstore=kvstore,
        device_average=not isinstance(loss, DetectionLoss), seed=seed,
        log_interval=log_interval)
    history = trainer.train(_WholeCanvas(train_iter), num_epochs)
    if verbose and history:
        last = history[-1]
        print("train class err %s, box mae %s; test class err %s, box mae %s"
              % tuple(_fmt(last[k]) for k in ("train_class_err", "train_box_mae",
                                               "test_class_err", "test_box_mae")))
    return history


def _fmt(value):
    return "n/a" if value is None else "%.2f" % value
