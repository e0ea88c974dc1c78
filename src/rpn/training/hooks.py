"""What happens around the training steps, one object each.

Each hook is called by :class:`rpn.training.trainer.Trainer` at the points
its module lists (detectron2's ``engine/hooks.py``): the divergence check,
checkpoints (and resuming from them; the last ``keep`` kept, and the best by
validation recall), the chapter's anchor metrics of a test set, recall
between epochs, the progress bar, the chapter's animator, and the
callbacks of :func:`rpn.train_detection`. The run's event log and
TensorBoard events are hooks of :mod:`rpn.training.event_log`. Hooks
observe: none changes what is trained. :meth:`Hook.close` releases what a
hook holds, whether training ended or failed.
"""
import math
import sys
import time

from ..evaluation.evaluate import evaluate_loader
from ..runs.checkpoint import (latest_checkpoint, load_optimizer_states, load_parts,
                               write_checkpoint)
from .step import anchor_metrics

__all__ = ["Hook", "DivergenceCheck", "Checkpointer", "AnchorMetrics", "EpochRecall",
           "EpochEnd", "Callback", "Progress", "Animator", "in_notebook"]


class Hook:
    """A hook that does nothing: subclasses override what they need."""

    def before_train(self, trainer):
        pass

    def after_log(self, trainer, event):
        pass

    def after_epoch(self, trainer, record):
        pass

    def after_train(self, trainer):
        pass

    def close(self):
        pass


class DivergenceCheck(Hook):
    """Stops training with a ``FloatingPointError`` when the loss of the
    steps since the last read is not finite or above ``max_loss`` (the RPN
    loss starts near 1; ten thousand means the weights blew up), naming the
    last good checkpoint of ``checkpoint_dir`` when there is one."""

    def __init__(self, max_loss=1e4, checkpoint_dir=None):
        self.max_loss, self.checkpoint_dir = max_loss, checkpoint_dir

    def after_log(self, trainer, event):
        loss = event["loss"]
        if all(math.isfinite(v) for v in event["sums"]) and (
                self.max_loss is None or loss <= self.max_loss):
            return
        kept = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        rates = ", ".join(f"{name} {lr}" for name, lr in trainer.lrs.items())
        raise FloatingPointError(
            f"the loss became {loss} at epoch {event['epoch'] + 1}, steps "
            f"{event['first_step'] + 1}-{event['step'] + 1}: training diverged. Lower the "
            f"learning rates ({rates}) or add warm-up"
            + (f"; the last good checkpoint is kept: {kept}" if kept else ""))


class Checkpointer(Hook):
    """A checkpoint of every epoch in ``checkpoint_dir`` (parameters,
    optimizer state, epoch, history, seed and ``config``;
    :mod:`rpn.runs.checkpoint`), written by rank 0 only, which keeps the
    last ``keep`` of them and, when an epoch's record has ``best_key`` (the
    validation recall measured after it, e.g. ``"AR@100"``), the best by
    it: ``checkpoint/best`` names it. With ``resume``, training continues
    from the newest one (every worker reads it), with its seed unless the
    trainer was given one, and the best so far comes from its history."""

    def __init__(self, checkpoint_dir, *, resume=False, config=None, keep=1,
                 best_key=None):
        self.checkpoint_dir, self.resume, self.config = checkpoint_dir, resume, config
        self.keep, self.best_key, self.best = keep, best_key, None

    def before_train(self, trainer):
        last = latest_checkpoint(self.checkpoint_dir) if self.resume else None
        if last is None:
            return
        state = load_parts(last, trainer.parts, trainer.ctxs)
        load_optimizer_states(trainer.optimizer, last)
        trainer.history, trainer.start = state["history"], state["epoch"] + 1
        if trainer.seed is None:        # a new seed given is used from here on
            trainer.seed = state["seed"]
        scores = [h[self.best_key] for h in trainer.history
                  if self.best_key and h.get(self.best_key) is not None]
        self.best = max(scores) if scores else None

    def after_epoch(self, trainer, record):
        score = record.get(self.best_key) if self.best_key else None
        best = score is not None and (self.best is None or score > self.best)
        if best:
            self.best = score
        if trainer.rank == 0:
            write_checkpoint(self.checkpoint_dir, trainer.epoch, trainer.parts,
                             trainer.optimizer,
                             {"epoch": trainer.epoch, "seed": trainer.seed,
                              "history": trainer.history, "config": self.config},
                             keep=self.keep, best=best)


class AnchorMetrics(Hook):
    """The chapter's test metrics every epoch: class error and box MAE of
    the labelled anchors of ``test_iter`` (``test_class_err``,
    ``test_box_mae``)."""

    def __init__(self, test_iter):
        self.test_iter = test_iter

    def after_epoch(self, trainer, record):
        test = anchor_metrics(trainer.step.forward, self.test_iter, trainer.ctxs)
        record.update(test_class_err=test["class_err"], test_box_mae=test["box_mae"])


class EpochRecall(Hook):
    """Proposal recall of ``model`` (a :class:`rpn.TrainedModel`) on
    ``loader`` after the last epoch and every ``every`` epochs (0: the last
    only), with the chapter's anchor metrics of the same images measured
    with it (every epoch would cost a tenth of the training time). The
    record gets the recall's figures; :attr:`last` keeps the latest
    ``{"epoch", "result", "recall"}``."""

    def __init__(self, model, loader, *, every=0):
        self.model, self.loader, self.every = model, loader, every
        self.last = {}

    def due(self, trainer, epoch):
        final = epoch + 1 == trainer.num_epochs
        return final or bool(self.every and (epoch + 1) % self.every == 0)

    def measure(self, trainer, epoch):
        tic = time.time()
        anchors = anchor_metrics(trainer.step.forward, self.loader, trainer.ctxs)
        result, recall = evaluate_loader(self.model, self.loader)
        result["val_skipped_images"] = result.pop("skipped_images")
        result.update(test_class_err=anchors["class_err"], test_box_mae=anchors["box_mae"])
        self.last.update(epoch=epoch, result=dict(result, seconds=time.time() - tic),
                         recall=recall)
        return result

    def after_epoch(self, trainer, record):
        if self.due(trainer, trainer.epoch):
            record.update(self.measure(trainer, trainer.epoch))

    def after_train(self, trainer):
        """A run resumed after its last epoch measures it now."""
        last_epoch = trainer.num_epochs - 1
        if self.last.get("epoch") != last_epoch and trainer.rank == 0:
            self.measure(trainer, last_epoch)


class EpochEnd(Hook):
    """:func:`rpn.train_detection`'s ``epoch_end(epoch) -> dict``: entries
    added to each epoch's record (``epoch`` 0-based)."""

    def __init__(self, epoch_end):
        self.epoch_end = epoch_end

    def after_epoch(self, trainer, record):
        record.update(self.epoch_end(trainer.epoch))


class Callback(Hook):
    """:func:`rpn.train_detection`'s ``callback(event)``: a ``kind="step"``
    event at every read (see :mod:`rpn.training.trainer`), and a
    ``kind="epoch"`` one after every epoch (its record, ``epoch`` 0-based)."""

    def __init__(self, callback):
        self.callback = callback

    def after_log(self, trainer, event):
        self.callback({k: v for k, v in event.items() if k not in ("sums", "first_step")})

    def after_epoch(self, trainer, record):
        self.callback(dict(record, kind="epoch", epoch=trainer.epoch))


def _rate(rates):
    """Learning rates (name -> rate) in short: one number when they agree."""
    values = sorted(set(rates.values()))
    if len(values) == 1:
        return "%.1e" % values[0]
    return "/".join(f"{name} %.1e" % rate for name, rate in rates.items())


class Progress(Hook):
    """A tqdm bar over every training step on stderr, showing the loss and
    its terms since the last read, the learning rate and images a second;
    and one line an epoch (``say(line)`` when the bar is off)."""

    def __init__(self, total, *, disable=False, say=None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="step", disable=disable, dynamic_ncols=True,
                        file=sys.stderr)
        self.disable, self.say = disable, say

    def after_log(self, trainer, event):
        self.bar.update(event["advance"])
        terms = {name: "%.3f" % value for name, value in event["terms"].items()}
        self.bar.set_postfix(epoch=event["epoch"] + 1, loss="%.3f" % event["loss"], **terms,
                             lr=_rate(event["lr"]), img_s="%.1f" % event["images_per_sec"])

    def after_epoch(self, trainer, record):
        recall = record.get("AR@100")
        terms = ", ".join(f"{key[5:]} {record[key]:.3f}" for key in record
                          if key.startswith("loss_"))
        rates = {key[3:]: value for key, value in record.items() if key.startswith("lr_")}
        line = (f"epoch {record['epoch']}: loss {record['loss']:.3f}"
                + (f" ({terms})" if terms else "")
                + (f", lr {_rate(rates)}" if rates else "")
                + ("" if recall is None else f", val AR@100 {recall:.3f}")
                + f", {record['images_per_sec']:.1f} images/s")
        if record.get("skipped_images"):
            line += f", {record['skipped_images']} unreadable images skipped"
        if self.disable:
            if self.say is not None:
                self.say(line)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self):
        self.bar.close()


def in_notebook():
    """Whether the code runs in a Jupyter kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Animator(Hook):
    """The chapter's curves: d2l's Animator, fed at every read and at the
    end of every epoch."""

    def __init__(self, num_epochs):
        from d2l import mxnet as d2l
        self.animator = d2l.Animator(
            xlabel="epoch", xlim=[0, num_epochs],
            legend=["train class err", "train box mae",
                    "test class err", "test box mae"])

    def after_log(self, trainer, event):
        self.animator.add(event["epoch"] + event["step"] / event["steps"],
                          (event["class_err"], event["box_mae"], None, None))

    def after_epoch(self, trainer, record):
        self.animator.add(record["epoch"], (None, None, record["test_class_err"],
                                            record["test_box_mae"]))
