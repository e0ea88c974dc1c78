"""Training a proposal model into a run folder: what ``rpn train`` does.

:func:`fit` settles the settings (a preset, then explicit keywords), opens
and checks the data before anything is trained, trains with
:func:`rpn.train_detection`, measures proposal recall, and writes the run
folder (:mod:`rpn.run`): ``config.json``, ``checkpoint/``,
``metrics.json``, ``curves.png``, ``recall_iou.png``, ``predictions.png``.
Progress goes to stderr; the return value is the final recall.
"""
import functools
import os
import sys
import time
import warnings

import mxnet as mx

from .config import PRESETS, ConfigError, build_proposal_model
from .inference import evaluate_loader
from .records import CROWD
from .resume_check import check_resume
from .run import RunFolder
from .runlock import claim_run, releases_run_locks
from .sources import check_split, data_classes, make_loader, open_split
from .batching import as_context_list
from .train import train_detection
from .visualize import draw_proposals, plot_curves, plot_recall

__all__ = ["fit", "resolve_config", "FINAL_KEYS"]

#: The figures ``rpn train`` prints at the end.
FINAL_KEYS = ("AR@100", "AR@1000", "R@100@0.5", "R@100@0.7", "images", "objects")
# (those of them the run's ks give)


def resolve_config(preset="default", *, epochs=None, batch_size=None, size=None,
                   max_size=None, lr=None, settings=None):
    """A preset with explicit changes: ``epochs`` (then exactly that many:
    ``min_steps`` applies only when ``epochs`` is not given), ``batch_size``,
    ``size``, ``max_size``, ``lr`` (both parts), and ``settings`` (a dict of
    any other :class:`rpn.config.RunConfig` field)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset {preset!r}: expected one of {sorted(PRESETS)}")
    changes = dict(settings or {})
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("size", size),
                        ("max_size", max_size)):
        if value is not None:
            changes[name] = value
    if lr is not None:
        changes["backbone_lr"] = changes["output_lr"] = lr
    if epochs is not None:
        changes["min_steps"] = 0
    if (isinstance(changes.get("size"), int) and "max_size" not in changes
            and changes.get("resize", PRESETS[preset].resize) == "keep_ratio"):
        base = PRESETS[preset]
        aspect = base.max_size / base.size if base.resize == "keep_ratio" else 5 / 3
        changes["max_size"] = int(round(changes["size"] * aspect))
    return PRESETS[preset].replace(**changes)


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
    synthetic = dict(size=config.size, num_train=config.num_train, num_val=config.num_val,
                     seed=seed)
    try:
        found = open_split(data, split, classes=classes, images=images, skip_bad=skip_bad,
                           synthetic=synthetic)
    except FileNotFoundError:
        if required:
            raise
        return None
    return check_split(found, skip_bad=skip_bad, num_workers=workers or None,
                       progress=not quiet, what=f"{split} images")


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
                ctx = model.backbone.collect_params().list_ctx()[0]
                sizes = mx.np.array(info[:10, :2], dtype="float32", ctx=ctx)
                scores, boxes = model(X[:10].as_in_context(ctx), sizes)
                draw_proposals(X[:10], Y[:10], scores, boxes, info[:10],
                               path=folder.file("predictions.png"))
                break
    except OSError as error:
        warnings.warn(f"could not write the pictures of {folder.path}: {error}")


@releases_run_locks
def fit(data, out, *, preset="default", classes=None, images=None, ctx=None,
        epochs=None, batch_size=None, size=None, max_size=None, lr=None, settings=None,
        pretrained=None, resume=False, kvstore=None, seed=0, num_workers=0,
        skip_bad=False, eval_every=0, hybridize=True, quiet=False):
    """Train a proposal model on ``data`` (see :mod:`rpn.sources`) into the
    run folder ``out``, as ``rpn train`` does, and return its final recall
    (the dict of :meth:`rpn.ProposalRecall.result`, or ``None`` without
    validation images).

    Settings: ``preset`` and the keywords of :func:`resolve_config`.
    ``classes``: the class names to train on (default: every class of the
    data); ``images``: the image folder of a COCO file. ``ctx``: a context
    or a list (default CPU). ``pretrained``: ImageNet weights for the
    backbone (a file or model-store folder that must exist). ``resume``:
    continue the run in ``out``. ``kvstore``: see
    :func:`rpn.train_detection` (``dist_*`` under ``python -m
    rpn.launch``). ``skip_bad``: leave out unusable images (listed in one
    warning) instead of stopping with one error that lists them.
    ``eval_every``: also measure recall every N epochs.
    """
    ctxs = as_context_list(ctx if ctx is not None else mx.cpu())
    explicit_epochs = epochs is not None
    config = resolve_config(preset, epochs=epochs, batch_size=batch_size, size=size,
                            max_size=max_size, lr=lr, settings=settings)
    if pretrained is not None and not os.path.exists(pretrained):
        raise FileNotFoundError(f"pretrained weights not found: {pretrained}")
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
    train_set = _open(data, "train", config, classes, images, skip_bad, seed,
                      num_workers, quiet, True)
    val_set = _open(data, "val", config, classes, images, skip_bad, seed,
                    num_workers, quiet, False)
    val_objects = 0 if val_set is None else sum(int((l[:, 0] >= 0).sum()) for l in val_set.labels)
    if not val_objects:
        warnings.warn(f"{data} has no validation object (no 'val' split, or an empty "
                      "one): training without validation, and metrics.json has no recall")
        val_set = None
    most = max(len(l) for l in list(train_set.labels) + list(val_set.labels if val_set else []))
    resize = config.resize_rule()
    train_iter = make_loader(train_set, resize, config.batch_size, train=True,
                             num_workers=num_workers, seed=seed, shard=shard,
                             augment=config.augment, max_objects=most,
                             size_divisor=config.size_divisor)
    val_iter = None if val_set is None else make_loader(
        val_set, resize, config.batch_size, train=False, num_workers=num_workers,
        max_objects=most, size_divisor=config.size_divisor)
    steps = len(train_iter)
    if not explicit_epochs:
        wanted = config.epochs_for(steps)
        if wanted != config.epochs:
            _say(f"{steps} steps an epoch; training {wanted} epochs to reach "
                 f"min_steps={config.min_steps} (give --epochs N for exactly N)")
            config = config.replace(epochs=wanted)
    _say(f"{len(train_iter.dataset)} training images ({steps} steps of {config.batch_size} "
         f"an epoch, {config.epochs} epoch{'s' if config.epochs > 1 else ''}), "
         f"{0 if val_set is None else len(val_set.images)} validation images; "
         f"images resized to {resize.describe()}")
    # absolute, so that evaluate and propose find the data from any folder
    meta = {"data": _absolute(data), "images": images and _absolute(images), "seed": seed,
            "classes": list(classes)}
    if rank == 0:
        meta.update(check_resume(folder, config, meta, train_set, val_set, resume))
        folder.write_config(config, **meta)
    mx.random.seed(seed)
    model = build_proposal_model(config, ctxs, pretrained=pretrained)
    model.config, model.saved, model.classes = config, dict(meta, config=config.to_dict()), classes
    if not any((label[:, 0] == CROWD).any() for label in train_set.labels):
        model.label_settings["crowd_ioa"] = None       # no crowd region: skip that pass
    last = {}

    def recall_at_epoch_end(epoch):
        final = epoch + 1 == config.epochs
        if val_iter is None or not (final or (eval_every and (epoch + 1) % eval_every == 0)):
            return {}
        tic = time.time()
        result, recall = evaluate_loader(model, val_iter)
        result["val_skipped_images"] = result.pop("skipped_images")
        last.update(epoch=epoch, result=dict(result, seconds=time.time() - tic),
                    recall=recall)
        return result

    progress = _Progress(config.epochs * steps, disable=quiet)
    try:
        history = train_detection(
            model.backbone, model.head, functools.partial(model.batch_fn, validate=False),
            train_iter, val_iter, config.loss(), config.epochs, config.backbone_lr,
            config.output_lr, ctxs, optimizer=config.optimizer,
            optimizer_params=config.optimizer_params(), lr_schedule=config.lr_schedule,
            warmup_steps=config.warmup_steps, hybridize=hybridize, kvstore=kvstore,
            callback=progress, checkpoint_dir=folder.checkpoint_dir,  # all read, rank 0 writes
            resume=resume, seed=seed, config=config.to_dict(),
            epoch_end=recall_at_epoch_end, log_interval=config.log_interval, verbose=False)
    finally:
        progress.close()
    if rank > 0:
        return None
    if val_iter is not None and last.get("epoch") != config.epochs - 1:
        recall_at_epoch_end(config.epochs - 1)
    final = last.get("result")
    skipped = sum(h.get("skipped_images", 0) for h in history)
    if skipped:
        warnings.warn(f"{skipped} times an image could not be read during training and "
                      "was skipped (see skipped_images in metrics.json)")
    folder.write_metrics({"history": history, "final": final, "config": config.to_dict(),
                          "changes": meta.get("changes", [])})
    _pictures(folder, history, last.get("recall"), model, val_iter)
    return final

