"""Training a proposal model into a run folder: what ``rpn train`` does.

:func:`fit` settles the settings (a preset, then explicit keywords), opens
and checks the data before anything is trained, trains the proposal model
(:class:`rpn.RegionProposalNetwork`) whole through the shared training
loop (:func:`rpn.engine.train_loop`), measures proposal recall, and writes the run
folder (:mod:`rpn.run`): ``config.json``, ``checkpoint/``,
``metrics.json``, ``curves.png``, ``recall_iou.png``, ``predictions.png``.
Progress goes to stderr; the return value is the final recall.
"""
import os
import sys
import time
import warnings

import mxnet as mx
from mxnet import autograd

from .batching import as_context_list
from .checkpoint import latest_checkpoint
from .config import PRESET_PRETRAINED, ConfigError, resolve_config
from .engine import anchor_metrics, learning_rates, normalised_losses, train_loop
from .evaluate_model import evaluate_loader
from .loss import ProposalLoss
from .mixed_precision import check_contexts
from .mixed_precision import init as init_amp
from .model import RegionProposalNetwork
from .records import CROWD, DataError
from .resume_check import check_resume
from .run import RunFolder, TrainedModel
from .runlock import claim_run, releases_run_locks
from .sources import (check_split, data_classes, make_loader, open_split, open_validation,
                      say_counts, train_split)
from .visualize import draw_proposals, plot_curves, plot_recall

__all__ = ["fit", "FINAL_KEYS"]

#: The figures ``rpn train`` prints at the end.
FINAL_KEYS = ("AR@100", "AR@1000", "R@100@0.5", "R@100@0.7", "images", "objects")
# (those of them the run's ks give)


def _say(message):
    print(f"rpn train: {message}", file=sys.stderr, flush=True)


class _Progress:
    """A tqdm bar over every training step on stderr, and one line an epoch."""

    def __init__(self, total, disable):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="step", disable=disable, dynamic_ncols=True,
                        file=sys.stderr)
        self.disable = disable

    def __call__(self, event):
        if event["kind"] == "step":
            self.bar.update(event["advance"])
            self.bar.set_postfix(epoch=event["epoch"] + 1, loss="%.3f" % event["loss"],
                                 img_s="%.1f" % event["images_per_sec"])
            return
        recall = event.get("AR@100")
        line = (f"epoch {event['epoch'] + 1}: loss {event['loss']:.3f}"
                + ("" if recall is None else f", val AR@100 {recall:.3f}")
                + f", {event['images_per_sec']:.1f} images/s")
        if event.get("skipped_images"):
            line += f", {event['skipped_images']} unreadable images skipped"
        if self.disable:
            _say(line)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self):
        self.bar.close()


def _open(data, split, config, classes, images, skip_bad, seed, workers, quiet, required):
    synthetic = dict(size=config.model.size, num_train=config.num_train, num_val=config.num_val,
                     seed=seed)
    try:
        found = open_split(data, split, classes=classes, images=images, skip_bad=skip_bad,
                           clip_boxes=config.clip_boxes, synthetic=synthetic)
    except FileNotFoundError:
        if required:
            raise
        return None
    return check_split(found, skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                       num_workers=workers or None,
                       progress=not quiet, what=f"{split} images")


def _open_validation(val_data, val_images, config, classes, skip_bad, seed, workers, quiet):
    """Validation data given apart from the training data: the set (checked)
    and the split it uses (all of a single annotation file)."""
    synthetic = dict(size=config.model.size, num_train=config.num_train, num_val=config.num_val,
                     seed=seed)
    found, split = open_validation(val_data, classes=classes, val_images=val_images,
                                   skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                                   synthetic=synthetic)
    return check_split(found, skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                       num_workers=workers or None, progress=not quiet,
                       what=f"{split} images of {val_data}"), split


def _has_checkpoint(folder):
    """Whether ``folder`` has a whole checkpoint and a ``config.json`` to
    resume from (a broken one is reported by the resume itself, later)."""
    try:
        return (latest_checkpoint(folder.checkpoint_dir, warn=False) is not None
                and os.path.isfile(folder.file("config.json")))
    except (OSError, ValueError):
        return False


def _weights(pretrained, preset, backbone, folder, resume):
    """``(file, recorded)``: the ImageNet weights file the backbone starts
    from (``None``: Xavier) and what ``config.json`` records of it.
    ``pretrained``: ``None`` (the preset's: ``imagenet`` for
    ``faster-rcnn``), ``"none"``, ``"imagenet"`` (MXNet's model store,
    downloading the file when absent) or a path that must exist. A resume
    from a checkpoint loads nothing (the checkpoint holds the weights) and
    keeps the run's record."""
    if resume and _has_checkpoint(folder):
        return None, folder.read()[1].get("pretrained")
    choice = PRESET_PRETRAINED.get(preset) if pretrained is None else pretrained
    if choice is None or choice == "none":
        return None, None
    if choice == "imagenet":
        from .pretrained import download_pretrained
        return download_pretrained(name=backbone), "imagenet"
    if not os.path.exists(choice):
        raise FileNotFoundError(f"pretrained weights not found: {choice}")
    from .pretrained import check_weights, weights_path
    path = weights_path(choice, backbone)
    check_weights(path, backbone)           # another network's: named before any work
    return path, os.path.abspath(path)


def _absolute(path):
    path = os.fspath(path)
    return path if path == "synthetic" else os.path.abspath(path)


def _pictures(folder, history, recall, model, loader):
    """The run's pictures; a folder that refuses them is a warning, not a
    lost run."""
    try:
        plot_curves(history, folder.file("curves.png"))
        if recall is not None:
            plot_recall(recall, folder.file("recall_iou.png"))
            for X, Y, info in loader:
                info = info.select(slice(0, 10))
                sizes = mx.np.array(info.sizes, dtype="float32", ctx=model.ctx)
                scores, boxes = model(X[:10].as_in_context(model.ctx), sizes)
                draw_proposals(X[:10], Y[:10], scores, boxes, info,
                               path=folder.file("predictions.png"))
                break
    except OSError as error:
        warnings.warn(f"could not write the pictures of {folder.path}: {error}")


@releases_run_locks
def fit(data, out, *, preset="default", classes=None, images=None, val_data=None,
        val_images=None, ctx=None,
        epochs=None, batch_size=None, size=None, max_size=None, lr=None, backbone=None,
        settings=None, pretrained=None, resume=False, kvstore=None, seed=0, num_workers=0,
        skip_bad=False, eval_every=0, hybridize=True, quiet=False, amp=False):
    """Train a proposal model on ``data`` (see :mod:`rpn.sources`) into the
    run folder ``out``, as ``rpn train`` does, and return its final recall
    (the dict of :meth:`rpn.ProposalRecall.result`, or ``None`` without
    validation images).

    Settings: ``preset`` and the keywords of :func:`resolve_config`.
    ``classes``: the class names to train on (default: every class of the
    data); ``images``: the image folder of a COCO file. ``val_data`` (with
    ``val_images`` for a COCO file): validation data of its own, any source
    ``data`` may be (default: the ``val`` split of ``data``, or a fixed 20%
    of a single annotation file); it must have the training classes, and
    ``rpn evaluate`` on the run defaults to it. ``ctx``: a context
    or a list (default CPU). ``backbone``: a network of
    :data:`rpn.settings.BACKBONES` (default the preset's). ``pretrained``:
    ImageNet weights for the backbone: ``"imagenet"`` (MXNet's model store,
    downloading them when absent), a ``.params`` file or model-store folder
    that must exist, ``"none"``, or ``None`` for the preset's (``imagenet``
    for ``faster-rcnn``, none otherwise). ``amp``: train in float16 on GPUs
    (:mod:`rpn.mixed_precision`; CPU contexts are refused). ``resume``:
    continue the run in ``out``. ``kvstore``: see
    :func:`rpn.train_detection` (``dist_*`` under ``python -m
    rpn.launch``). ``skip_bad``: leave out unusable images (listed in one
    warning) instead of stopping with one error that lists them.
    ``eval_every``: also measure recall every N epochs.
    """
    ctxs = as_context_list(ctx if ctx is not None else mx.cpu())
    explicit_epochs = epochs is not None
    config = resolve_config(preset, epochs=epochs, batch_size=batch_size, size=size,
                            max_size=max_size, lr=lr, backbone=backbone, settings=settings)
    if amp:
        check_contexts(ctxs)
        if config.model.refine:
            raise ConfigError("--amp (amp=True): the refinement stage (refine=true) is "
                              "not supported in float16; leave one of them out")
    weights, weights_record = _weights(pretrained, preset, config.model.backbone,
                                       RunFolder(out), resume)
    classes = data_classes(os.fspath(data), images=images, classes=classes,
                           skip_bad=skip_bad)
    config = config.replace(classes=tuple(classes))
    rank, shard = 0, None
    if isinstance(kvstore, str) and kvstore.startswith("dist"):
        kvstore = mx.kv.create(kvstore)
        rank, shard = kvstore.rank, (kvstore.rank, kvstore.num_workers)
        _say(f"worker {rank} of {kvstore.num_workers} ({kvstore.type})")
    quiet = quiet or rank > 0
    folder = RunFolder(out)
    if rank == 0:
        claim_run(folder, config, resume)       # the lock, held until fit returns
    split = train_split(data, images=images, val_data=val_data)
    train_set = _open(data, split, config, classes, images, skip_bad, seed,
                      num_workers, quiet, True)
    if val_data is None:
        val_set, val_split = _open(data, "val", config, classes, images, skip_bad, seed,
                                   num_workers, quiet, False), "val"
    else:
        val_set, val_split = _open_validation(val_data, val_images, config, classes,
                                              skip_bad, seed, num_workers, quiet)
    say_counts("rpn train", train_set, split, training=True)
    say_counts("rpn train", val_set, val_split)
    val_objects = 0 if val_set is None else sum(int((l[:, 0] >= 0).sum()) for l in val_set.labels)
    if not val_objects:
        warnings.warn(f"{data} has no validation object (no 'val' split, or an empty "
                      "one): training without validation, and metrics.json has no recall")
        val_set = None
    if not train_set.images:
        raise DataError(f"{data}: the {split!r} split has no image to train on")
    most = max(len(l) for l in list(train_set.labels) + list(val_set.labels if val_set else []))
    resize, train = config.model.resize_rule(), config.train
    train_iter = make_loader(train_set, resize, train.batch_size, train=True,
                             num_workers=num_workers, seed=seed, shard=shard,
                             augment=train.augment, crop_prob=train.crop_prob,
                             min_crop_scale=train.min_crop_scale, max_objects=most,
                             size_divisor=config.model.size_divisor)
    val_iter = None if val_set is None else make_loader(
        val_set, resize, train.batch_size, train=False, num_workers=num_workers,
        max_objects=most, size_divisor=config.model.size_divisor)
    steps = len(train_iter)
    if not explicit_epochs:
        wanted = train.epochs_for(steps)
        if wanted != train.epochs:
            _say(f"{steps} steps an epoch; training {wanted} epochs to reach "
                 f"min_steps={train.min_steps} (give --epochs N for exactly N)")
            config = config.replace(epochs=wanted)
            train = config.train
    _say(f"{len(train_iter.dataset)} training images ({steps} steps of {train.batch_size} "
         f"an epoch, {train.epochs} epoch{'s' if train.epochs > 1 else ''}), "
         f"{0 if val_set is None else len(val_set.images)} validation images; "
         f"images resized to {resize.describe()}")
    # absolute, so that evaluate and propose find the data from any folder
    meta = {"data": _absolute(data), "images": images and _absolute(images), "seed": seed,
            "classes": list(classes), "pretrained": weights_record, "amp": bool(amp)}
    if val_data is not None:
        meta.update(val_data=_absolute(val_data), val_images=val_images and _absolute(val_images))
    if rank == 0:
        meta.update(check_resume(folder, config, meta, train_set, val_set, resume))
        folder.write_config(config, **meta)
    if amp:
        init_amp()          # before the model is built and traced
    mx.random.seed(seed)
    net = RegionProposalNetwork.from_settings(config.model, ctxs, pretrained=weights)
    model = TrainedModel(net, config, classes=classes, source=folder.path, record=meta,
                         ctx=ctxs[0])
    crowd = any((label[:, 0] == CROWD).any() for label in train_set.labels)
    loss = ProposalLoss.from_settings(config.model)
    last = {}

    def forward(X, Y, image_sizes):
        # data checked before training; without crowd regions, no crowd pass;
        # the refinement stage in training steps only (the validation metrics
        # between epochs are the first stage's)
        return net.training_outputs(X, image_sizes, Y, crowd=crowd, validate=False,
                                    refine=autograd.is_training())

    def recall_at_epoch_end(epoch):
        final = epoch + 1 == train.epochs
        if val_iter is None or not (final or (eval_every and (epoch + 1) % eval_every == 0)):
            return {}
        tic = time.time()
        # the chapter's anchor metrics of the validation set, measured with
        # the recall (every epoch would cost a tenth of the training time)
        anchors = anchor_metrics(forward, val_iter, ctxs)
        result, recall = evaluate_loader(model, val_iter)
        result["val_skipped_images"] = result.pop("skipped_images")
        result.update(test_class_err=anchors["class_err"], test_box_mae=anchors["box_mae"])
        last.update(epoch=epoch, result=dict(result, seconds=time.time() - tic),
                    recall=recall)
        return result

    progress = _Progress(train.epochs * steps, disable=quiet)
    try:
        history = train_loop(
            net.parts(), learning_rates(net.parts(), train.backbone_lr, train.output_lr),
            forward, lambda outputs: normalised_losses(loss, outputs), train_iter,
            train.epochs, ctxs, optimizer=train.optimizer,
            optimizer_params=train.optimizer_params(), lr_schedule=train.lr_schedule,
            warmup_steps=train.warmup_steps, hybridize=hybridize, kvstore=kvstore,
            callback=progress, checkpoint_dir=folder.checkpoint_dir,  # all read, rank 0 writes
            resume=resume, seed=seed, config=config.to_dict(),
            epoch_end=recall_at_epoch_end, log_interval=train.log_interval, amp=amp)
    finally:
        progress.close()
    if rank > 0:
        return None
    if val_iter is not None and last.get("epoch") != train.epochs - 1:
        recall_at_epoch_end(train.epochs - 1)
    final = last.get("result")
    skipped = sum(h.get("skipped_images", 0) for h in history)
    if skipped:
        warnings.warn(f"{skipped} times an image could not be read during training and "
                      "was skipped (see skipped_images in metrics.json)")
    folder.write_metrics({"history": history, "final": final, "config": config.to_dict(),
                          "changes": meta.get("changes", [])})
    _pictures(folder, history, last.get("recall"), model, val_iter)
    return final

