"""Training a proposal model into a run folder: what ``rpn train`` does.

:func:`fit` is :class:`Fit` run once. Its parts, in order: settle the
settings (a preset, then explicit keywords), the weights and the classes,
and claim the run folder; open and check the data before anything is
trained; record the run (``config.json``); build the model; train it with
its hooks through the shared :class:`rpn.training.trainer.Trainer`
(progress, the divergence check, recall between epochs, checkpoints); write
the results (``metrics.json``, ``curves.png``, ``recall_iou.png``,
``predictions.png``; :mod:`rpn.runs.folder`). Progress goes to stderr; the
return value is the final recall.
"""
import os
import sys
import warnings

import mxnet as mx

from ..config import PRESET_PRETRAINED, PRESETS, resolve_config
from ..config_file import ConfigFile, read_config_file
from ..data.image_set import CROWD, DataError
from ..data.preprocess import Resize
from ..data.scale import choose_scale
from ..data.run_loaders import run_loaders
from ..data.sources import (DataSpecError, check_split, data_classes, open_split,
                            open_validation, say_counts, train_split)
from ..evaluation.pictures import draw_run
from ..model.network import RegionProposalNetwork
from ..ops.devices import as_context_list
from ..ops.precision import init as init_amp
from ..runs.folder import RunFolder
from ..runs.lock import claim_run, releases_run_locks
from ..runs.resume import check_resume
from ..runs.trained import TrainedModel
from ..settings import SettingsError
from ..zoo.networks import starting_weights
from .amp import check_contexts
from .event_log import EVENT_LOG, TENSORBOARD_DIR, EventLog, TensorBoardEvents, read_event_log
from .hooks import Checkpointer, DivergenceCheck, EpochRecall, Progress
from .optimizer import learning_rates, make_kvstore
from .step import ProposalStep
from .trainer import Trainer

__all__ = ["fit", "Fit", "FINAL_KEYS", "SCALE_SETTINGS"]

#: The figures ``rpn train`` prints at the end (those of them the run's ks give).
FINAL_KEYS = ("AR@100", "AR@1000", "R@100@0.5", "R@100@0.7", "images", "objects")


def _say(message):
    print(f"rpn train: {message}", file=sys.stderr, flush=True)


#: Settings that say the scale: given any, the default does not choose it.
SCALE_SETTINGS = ("resize", "size", "max_size", "scale", "window", "pyramid", "stride",
                   "top_down", "anchor_sizes", "batch_size")


def _absolute(path):
    path = os.fspath(path)
    return path if path == "synthetic" else os.path.abspath(path)


class Fit:
    """One training run of :func:`fit` (whose arguments it takes), in
    named parts that :meth:`run` calls in order; ``hooks`` are added to the
    trainer's own (after them). A part may be replaced in a subclass (the
    tests stand in for the GPU check and AMP's global switch so)."""

    def __init__(self, data, out, *, preset="default", classes=None, images=None,
                 val_data=None, val_images=None, ctx=None, epochs=None, batch_size=None,
                 size=None, max_size=None, lr=None, backbone=None, settings=None,
                 pretrained=None, resume=False, kvstore=None, seed=None, num_workers=0,
                 skip_bad=False, eval_every=None, keep=None, hybridize=True, quiet=False,
                 amp=None, config_file=None, hooks=()):
        settings = dict(settings or {})
        settings.update({k: v for k, v in (("eval_every", eval_every), ("keep", keep))
                         if v is not None})
        run = dict(data=data, images=images, val_data=val_data, val_images=val_images,
                   classes=classes, seed=seed, pretrained=pretrained, amp=amp)
        self.config_record = None
        if config_file is not None:
            if not isinstance(config_file, ConfigFile):
                config_file = read_config_file(config_file)
            explicit = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size),
                                          ("size", size), ("max_size", max_size),
                                          ("lr", lr), ("backbone", backbone))
                        if v is not None}
            settings, run, self.config_record = config_file.merge(settings, **run)
            self.config_record["overrides"].update(explicit)
        if run.get("data") is None:
            raise DataSpecError("no data to train on: give data (--data DATA), or a config "
                                "file of a run, which names its data (--config FILE)")
        self.data, self.images, self.preset = run["data"], run.get("images"), preset
        self.val_data, self.val_images = run.get("val_data"), run.get("val_images")
        self.ctxs = as_context_list(ctx if ctx is not None else mx.cpu())
        self.explicit_epochs = epochs is not None
        self.config = resolve_config(preset, epochs=epochs, batch_size=batch_size, size=size,
                                     max_size=max_size, lr=lr, backbone=backbone,
                                     settings=settings)
        # the default looks at the objects' sizes unless told the scale (a
        # config file's settings tell it: a rerun keeps the run's scale)
        given = set(settings) | {name for name, value in (
            ("size", size), ("max_size", max_size), ("batch_size", batch_size)) if value}
        self.adapt = preset == "default" and not given & set(SCALE_SETTINGS)
        self.scale_choice = None
        self.classes, self.pretrained = run.get("classes"), run.get("pretrained")
        self.resume, self.kvstore, self.num_workers = resume, kvstore, num_workers
        self.seed = run.get("seed") if run.get("seed") is not None else 0
        self.skip_bad, self.hybridize = skip_bad, hybridize
        self.quiet, self.amp, self.extra_hooks = quiet, bool(run.get("amp")), list(hooks)
        self.folder = RunFolder(out)
        self.rank, self.shard = 0, None

    # ---- the parts, in the order run() calls them -----------------------------

    def check_devices(self):
        """Mixed precision needs GPUs (:func:`rpn.training.amp.check_contexts`)."""
        check_contexts(self.ctxs)

    def settle(self):
        """The settings, the backbone's weights, the classes and the cluster;
        then the run folder is claimed (refused, or locked for this run)."""
        if self.amp:
            self.check_devices()
            if self.config.model.refine:
                raise SettingsError("--amp (amp=True): the refinement stage (refine=true) "
                                    "is not supported in float16; leave one of them out")
        self.weights, self.weights_record = self._weights()
        if self.adapt and self.resume and self.folder.has_checkpoint():
            self._rescale(self.folder.read()[1].get("scale_choice"))   # the run's own
        self.classes = data_classes(os.fspath(self.data), images=self.images,
                                    classes=self.classes, skip_bad=self.skip_bad)
        self.config = self.config.replace(classes=tuple(self.classes))
        self.kvstore = make_kvstore(self.kvstore, self.ctxs)
        if "dist" in getattr(self.kvstore, "type", ""):
            self.rank = self.kvstore.rank
            self.shard = (self.kvstore.rank, self.kvstore.num_workers)
            _say(f"worker {self.rank} of {self.kvstore.num_workers} ({self.kvstore.type})")
        self.quiet = self.quiet or self.rank > 0
        if self.rank == 0:
            claim_run(self.folder, self.config, self.resume)   # held until run() returns

    def _weights(self):
        """``(file, recorded)``: the ImageNet weights file the backbone starts
        from (``None``: Xavier) and what ``config.json`` records of it. A
        resume from a checkpoint loads none (the checkpoint holds the
        weights) and keeps the run's record."""
        folder, backbone = self.folder, self.config.model.backbone
        if self.resume and folder.has_checkpoint() and os.path.isfile(
                folder.file("config.json")):
            return None, folder.read()[1].get("pretrained")
        choice = PRESET_PRETRAINED.get(self.preset) if self.pretrained is None \
            else self.pretrained
        return starting_weights(choice, backbone)

    def _synthetic(self):
        config = self.config
        return dict(size=config.model.size, num_train=config.num_train,
                    num_val=config.num_val, seed=self.seed)

    def _check(self, found, what):
        return check_split(found, skip_bad=self.skip_bad, clip_boxes=self.config.clip_boxes,
                           num_workers=self.num_workers or None, progress=not self.quiet,
                           what=what)

    def _open(self, split, required):
        try:
            found = open_split(self.data, split, classes=self.classes, images=self.images,
                               skip_bad=self.skip_bad, clip_boxes=self.config.clip_boxes,
                               synthetic=self._synthetic())
        except FileNotFoundError:
            if required:
                raise
            return None
        return self._check(found, f"{split} images")

    def open_data(self):
        """Both splits, every image checked before the first step, and their
        loaders; the epochs raised to reach ``min_steps`` unless given."""
        self.split = train_split(self.data, images=self.images, val_data=self.val_data)
        self.train_set = self._open(self.split, True)
        if self.val_data is None:
            self.val_set, self.val_split = self._open("val", False), "val"
        else:
            found, self.val_split = open_validation(
                self.val_data, classes=self.classes, val_images=self.val_images,
                skip_bad=self.skip_bad, clip_boxes=self.config.clip_boxes,
                synthetic=self._synthetic())
            self.val_set = self._check(found, f"{self.val_split} images of {self.val_data}")
        say_counts("rpn train", self.train_set, self.split, training=True)
        say_counts("rpn train", self.val_set, self.val_split)
        if not self.val_set or not any((label[:, 0] >= 0).any() for label in self.val_set.labels):
            warnings.warn(f"{self.data} has no validation object (no 'val' split, or an "
                          "empty one): training without validation, and metrics.json has "
                          "no recall")
            self.val_set = None
        if not self.train_set.images:
            raise DataError(f"{self.data}: the {self.split!r} split has no image to train on")
        if self.adapt and self.scale_choice is None:
            choice = choose_scale(self.train_set, self.config,
                                  small_objects=PRESETS["small-objects"])
            _say(f"scale: {choice.reason}")
            self._rescale(dict(changes=choice.changes, reason=choice.reason,
                               median=round(choice.median, 2)))
        self._loaders()

    def _rescale(self, choice):
        """The default's scale as chosen (:func:`rpn.data.scale.choose_scale`),
        recorded in ``config.json`` as ``scale_choice``; the schedule
        (``epochs``, ``min_steps``) kept when the epochs were given."""
        if not choice:
            return
        changes = dict(choice["changes"])
        if self.explicit_epochs:
            changes.pop("min_steps", None)
            changes.pop("epochs", None)
        self.config = self.config.replace(**changes)
        self.scale_choice = choice

    def _loaders(self):
        config, val_set, train = self.config, self.val_set, self.config.train
        self.train_iter, self.val_iter = run_loaders(config, self.train_set, val_set,
                                                     num_workers=self.num_workers,
                                                     seed=self.seed, shard=self.shard)
        steps = len(self.train_iter)
        if not self.explicit_epochs:
            wanted = train.epochs_for(steps)
            if wanted != train.epochs:
                _say(f"{steps} steps an epoch; training {wanted} epochs to reach "
                     f"min_steps={train.min_steps} (give --epochs N for exactly N)")
                self.config = config.replace(epochs=wanted)
        epochs = self.config.train.epochs
        windows = (f", {train.windows_per_image} windows of {train.window} px an image"
                   if train.window else "")
        _say(f"{len(self.train_iter.dataset)} training images ({steps} steps of "
             f"{train.batch_size} an epoch, {epochs} epoch{'s' if epochs > 1 else ''}"
             f"{windows}), {0 if val_set is None else len(val_set.images)} validation "
             f"images; images resized to {Resize.of(config.model).describe()}")

    def write_record(self):
        """``config.json``: the settings, the data (absolute paths, so that
        evaluate and propose find it from any folder), the seed, the classes,
        the weights, what a resume changed."""
        meta = {"data": _absolute(self.data), "images": self.images and _absolute(self.images),
                "seed": self.seed, "classes": list(self.classes),
                "pretrained": self.weights_record, "amp": bool(self.amp)}
        if self.scale_choice is not None:
            meta["scale_choice"] = self.scale_choice
        if self.val_data is not None:
            meta.update(val_data=_absolute(self.val_data),
                        val_images=self.val_images and _absolute(self.val_images))
        record = self.config_record
        if record is None and self.resume and os.path.isfile(self.folder.file("config.json")):
            record = self.folder.read()[1].get("config_file")      # a resume keeps the run's
        if record is not None:
            meta["config_file"] = record
        if self.rank == 0:
            meta.update(check_resume(self.folder, self.config, meta, self.train_set,
                                     self.val_set, self.resume))
            self.folder.write_config(self.config, **meta)
        self.meta = meta

    def switch_amp(self):
        """Mixed precision on for this process (before the model is built)."""
        init_amp()

    def build_model(self):
        """The proposal model (MXNet seeded first), as a trained model of the
        run and as a training step."""
        if self.amp:
            self.switch_amp()
        mx.random.seed(self.seed)
        self.net = RegionProposalNetwork.from_settings(self.config.model, self.ctxs,
                                                       pretrained=self.weights)
        self.model = TrainedModel(self.net, self.config, classes=self.classes,
                                  source=self.folder.path, record=self.meta, ctx=self.ctxs[0])
        # crowd regions in the data, or made by windows from objects they cut
        crowd = self.config.train.window is not None or any(
            (label[:, 0] == CROWD).any() for label in self.train_set.labels)
        self.step = ProposalStep(self.net, crowd=crowd)

    def make_hooks(self):
        """The divergence check, recall between epochs, checkpoints (every
        worker reads them, rank 0 writes; the last ``keep`` and, with recall
        between epochs, the best by ``AR@100``), the event log and
        TensorBoard events (rank 0) and the progress bar, then the hooks
        given."""
        train, ks = self.config.train, self.config.ks
        self.recall = EpochRecall(self.model, self.val_iter, every=train.eval_every) \
            if self.val_iter is not None else None
        best_key = None
        if self.recall is not None and train.eval_every:
            best_key = "AR@100" if 100 in ks else f"AR@{min(ks)}"
        self.progress = Progress(train.epochs * len(self.train_iter), disable=self.quiet,
                                 say=_say)
        hooks = [DivergenceCheck(checkpoint_dir=self.folder.checkpoint_dir)]
        hooks += [self.recall] if self.recall is not None else []
        hooks += [Checkpointer(self.folder.checkpoint_dir, resume=self.resume,
                               config=self.config.to_dict(), keep=train.keep,
                               best_key=best_key),
                  EventLog(self.folder.path),
                  TensorBoardEvents(self.folder.file(TENSORBOARD_DIR), say=_say),
                  self.progress]
        return hooks + self.extra_hooks

    def train(self):
        """Train every epoch; returns the history."""
        train = self.config.train
        hooks = self.make_hooks()
        trainer = Trainer(
            self.step, self.ctxs, hooks=hooks,
            lrs=learning_rates(self.step.parts, train.backbone_lr, train.output_lr),
            optimizer=train.optimizer, optimizer_params=train.optimizer_params(),
            lr_schedule=train.lr_schedule, warmup_steps=train.warmup_steps,
            hybridize=self.hybridize, kvstore=self.kvstore, amp=self.amp, seed=self.seed,
            log_interval=train.log_interval)
        try:
            return trainer.train(self.train_iter, train.epochs)
        finally:
            for hook in hooks:
                hook.close()

    def write_results(self, history):
        """``metrics.json`` and the run's pictures; returns the final recall."""
        last = self.recall.last if self.recall is not None else {}
        skipped = sum(h.get("skipped_images", 0) for h in history)
        if skipped:
            warnings.warn(f"{skipped} times an image could not be read during training and "
                          "was skipped (see skipped_images in metrics.json)")
        self.folder.write_metrics({"history": history, "final": last.get("result"),
                                   "config": self.config.to_dict(),
                                   "changes": self.meta.get("changes", [])})
        self._pictures(history, last.get("recall"))
        return last.get("result")

    def _pictures(self, history, recall):
        """The run's pictures (:func:`rpn.evaluation.pictures.draw_run`); a
        folder that refuses them is a warning, not a lost run."""
        log = self.folder.file(EVENT_LOG)
        try:
            draw_run(self.folder, read_event_log(log) if os.path.isfile(log) else history,
                     recall, self.model, self.val_iter)
        except OSError as error:
            warnings.warn(f"could not write the pictures of {self.folder.path}: {error}")

    @releases_run_locks
    def run(self):
        """Every part in order; returns the final recall (``None`` on a
        worker of rank > 0, and without validation images)."""
        self.settle()
        self.open_data()
        self.write_record()
        self.build_model()
        history = self.train()
        if self.rank > 0:
            return None
        return self.write_results(history)


def fit(data, out, *, preset="default", classes=None, images=None, val_data=None,
        val_images=None, ctx=None,
        epochs=None, batch_size=None, size=None, max_size=None, lr=None, backbone=None,
        settings=None, pretrained=None, resume=False, kvstore=None, seed=None, num_workers=0,
        skip_bad=False, eval_every=None, keep=None, hybridize=True, quiet=False, amp=None,
        config_file=None):
    """Train a proposal model on ``data`` (see :mod:`rpn.data.sources`) into
    the run folder ``out``, as ``rpn train`` does, and return its final
    recall (the dict of :meth:`rpn.ProposalRecall.result`, or ``None``
    without validation images).

    Settings: ``preset`` and the keywords of :func:`rpn.config.resolve_config`.
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
    (:mod:`rpn.ops.precision`; CPU contexts are refused). ``resume``:
    continue the run in ``out``. ``kvstore``: see
    :func:`rpn.train_detection` (``dist_*`` under ``python -m
    rpn.launch``). ``skip_bad``: leave out unusable images (listed in one
    warning) instead of stopping with one error that lists them.
    ``eval_every``: also measure recall every N epochs (the setting
    ``eval_every``; then the checkpoint of the best ``AR@100`` is kept as
    ``checkpoint/best``); ``keep``: the checkpoints of the last N epochs
    to keep (the setting ``keep``, 1 by default). ``seed``: default 0.
    ``config_file``: a run's ``config.json`` or a JSON file of settings
    (:mod:`rpn.config_file`) to start from; ``data`` may then be ``None``
    (the file's), and every argument given goes on top of the file (the
    run records the file and what went on top). The run's parts are those
    of :class:`Fit`.
    """
    return Fit(data, out, preset=preset, classes=classes, images=images, val_data=val_data,
               val_images=val_images, ctx=ctx, epochs=epochs, batch_size=batch_size,
               size=size, max_size=max_size, lr=lr, backbone=backbone, settings=settings,
               pretrained=pretrained, resume=resume, kvstore=kvstore, seed=seed,
               num_workers=num_workers, skip_bad=skip_bad, eval_every=eval_every, keep=keep,
               hybridize=hybridize, quiet=quiet, amp=amp, config_file=config_file).run()
