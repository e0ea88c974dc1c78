"""The training loop every trainer of the package shares.

:class:`Trainer` runs the steps of a *step* object
(:mod:`rpn.training.step`: what a step computes) on one device or several,
and calls its *hooks* (:mod:`rpn.training.hooks`: what happens around the
steps) at fixed points, as detectron2's ``TrainerBase`` and torchvision's
``train_one_epoch`` do:

* ``before_train(trainer)`` once (a checkpoint hook resumes here);
* ``after_log(trainer, event)`` every ``log_interval`` steps and at the end
  of an epoch, after the one read of the device those steps make (``event``:
  ``loss``, the mean loss since the last one; ``terms``, the mean of each of
  the step's loss terms since then (name -> value; empty for a step
  without terms); ``lr``, each part's learning rate (name -> rate, from
  the optimizer's schedule: nothing is read); ``images_per_sec``; the
  running ``class_err`` and ``box_mae``; ``epoch``, ``step``, ``steps``
  (0-based, and steps an epoch), ``advance`` (steps since the last event)
  and ``global_step`` (steps trained since the run began, from 1));
* ``after_epoch(trainer, record)`` after every epoch, in the order of the
  hooks: ``record`` is the epoch's entry of the history (already in it), to
  which a hook may add entries (the anchor metrics of a test set, recall);
* ``after_train(trainer)`` once, after the last epoch.

:func:`rpn.fit` trains the proposal model with it, the chapter's
:func:`rpn.train_detection` a backbone and a head, ``rpn env --check`` and
the benchmarks time it.

Shape glossary: ``B`` images a batch, split over ``D`` devices; ``X`` (B,
3, H, W), ``Y`` (B, G, 5), ``info`` a :class:`rpn.data.batch.BatchInfo` or
``None``.
"""
import time

import mxnet as mx
from mxnet import autograd, np

from ..data.batch import unpack_batch
from ..loss import DetectionEvaluation
from ..processes.signals import training_at
from .amp import attach
from .optimizer import (init_trainer, kvstore_rank, learning_rates, make_kvstore,
                        make_optimizer)
from .step import device_parts, metric_sums, summary

__all__ = ["Trainer"]


class Trainer:
    """Train the blocks of ``step.parts`` (initialised) on ``ctxs`` (a
    list of contexts), each part at its rate of ``lrs`` (name -> rate;
    default :func:`rpn.training.optimizer.learning_rates` at 0.001), with
    ``hooks`` (see the module).

    ``optimizer`` and ``optimizer_params`` (MXNet's names and arguments),
    ``lr_schedule`` (``constant``, ``cosine``, ``step``) after
    ``warmup_steps``; ``hybridize`` compiles the parts with static memory;
    ``kvstore`` (see :func:`rpn.training.optimizer.make_kvstore`);
    ``device_average`` divides the gradient by the device count (for losses
    that are not normalised by the whole batch); ``amp``: mixed precision
    (``True``: ``mxnet.contrib.amp``, or that module itself; its ``init``
    must have run before the parts were built; GPUs). ``seed``: every epoch
    reseeds MXNet with ``seed + epoch`` and tells a loader with
    ``set_epoch`` its epoch (``None``: drawn from MXNet's generator, after
    the hooks' ``before_train``, which may restore a run's own).

    After :meth:`train`: ``history`` (one dict an epoch: ``loss`` and, for a
    step with loss terms, ``loss_<term>`` of each, their means over the
    epoch, ``lr_<part>`` each part's learning rate at its end, and the
    chapter's metrics), ``optimizer`` (the
    ``gluon.Trainer``), ``epoch`` (0-based) and ``start`` (the first epoch
    trained here), ``rank`` (this worker's rank), ``seed``.
    """

    def __init__(self, step, ctxs, *, lrs=None, hooks=(), optimizer="sgd",
                 optimizer_params=None, lr_schedule="constant", warmup_steps=0,
                 hybridize=True, kvstore=None, device_average=False, amp=False, seed=None,
                 log_interval=10):
        if int(log_interval) != log_interval or log_interval < 1:
            raise ValueError(f"log_interval must be a positive integer, got {log_interval!r}")
        self.step, self.ctxs, self.hooks = step, list(ctxs), list(hooks)
        self.parts = step.parts
        self.lrs = lrs if lrs is not None else learning_rates(self.parts, 1e-3, 1e-3)
        self.optimizer_name, self.optimizer_params = optimizer, optimizer_params
        self.lr_schedule, self.warmup_steps = lr_schedule, warmup_steps
        self.hybridize, self.device_average, self.amp = hybridize, device_average, amp
        self.kvstore = make_kvstore(kvstore, self.ctxs)
        self.rank, self.workers, self.sync_workers = kvstore_rank(self.kvstore)
        self.seed, self.log_interval = seed, int(log_interval)
        self.history, self.start, self.epoch = [], 0, 0
        self.optimizer = None
        self.term_names = tuple(getattr(step, "term_names", ()))

    def train(self, train_iter, num_epochs):
        """Train ``num_epochs`` epochs (from :attr:`start`, which a resuming
        hook moves on) of ``train_iter`` (yields ``(X, Y)`` or ``(X, Y,
        info)``). Returns the history."""
        for block in self.parts.values():
            block.collect_params().reset_ctx(self.ctxs)
            if self.hybridize:
                block.hybridize(static_alloc=True, static_shape=True)
        self.num_epochs, self.steps_per_epoch = num_epochs, len(train_iter)
        self.optimizer = make_optimizer(
            self.parts, self.lrs, self.optimizer_name, self.optimizer_params, self.kvstore,
            self.lr_schedule, num_epochs * self.steps_per_epoch, self.warmup_steps)
        self._amp = attach(self.amp, self.optimizer)
        self._weights_pulled = False        # a cluster's first step waits for them
        for hook in self.hooks:
            hook.before_train(self)
        if self.seed is None:
            self.seed = int(np.random.randint(0, 2 ** 30, ctx=mx.cpu()).item())
        for epoch in range(self.start, num_epochs):
            self.epoch = epoch
            record = self._epoch(train_iter, epoch)
            self.history.append(record)
            for hook in self.hooks:
                hook.after_epoch(self, record)
        for hook in self.hooks:
            hook.after_train(self)
        return self.history

    def _scale(self):
        """The gradient's divisor: the devices (losses not normalised by the
        batch) and the synchronous workers (their gradients are summed)."""
        return (len(self.ctxs) if self.device_average else 1) * self.sync_workers

    def _epoch(self, train_iter, epoch):
        mx.random.seed(self.seed + epoch)
        if hasattr(train_iter, "set_epoch"):
            train_iter.set_epoch(epoch)
        home, evaluator = self.ctxs[0], DetectionEvaluation()
        width = 5 + len(self.term_names)        # loss, the 4 metric sums, the terms
        sums, images, skipped, tic = np.zeros(width, ctx=home), 0, 0, time.time()
        logged = {"step": 0, "host": [0.0] * width}
        i = -1
        for i, batch in enumerate(train_iter):
            training_at(epoch, i, self.steps_per_epoch)     # where an interrupt says it was
            X, Y, info = unpack_batch(batch)
            outputs, step_losses = self._step(X, Y, info)
            loss_sum = sum(l.sum().as_in_context(home) for l in step_losses).reshape(1)
            metrics = sum(metric_sums(evaluator, output, home) for output in outputs)
            parts = [loss_sum, metrics]
            if self.term_names:
                parts.append(self.step.terms(outputs, step_losses).as_in_context(home))
            sums = sums + np.concatenate(parts)                        # (width,)
            images += X.shape[0]
            if info is not None:
                skipped += int((~info.readable).sum())                  # host array
            if (i + 1) % self.log_interval == 0 or i + 1 == self.steps_per_epoch:
                self._log(logged, sums, epoch, i, images, tic)
        elapsed = time.time() - tic
        if images == 0:
            raise ValueError("train_iter yielded no batch")
        host = logged["host"]
        class_err, box_mae = summary(host[1:5])
        record = {"epoch": epoch + 1, "loss": host[0] / (i + 1)}
        record.update({f"loss_{name}": value / (i + 1)
                       for name, value in zip(self.term_names, host[5:])})
        record.update({f"lr_{name}": rate for name, rate in self.learning_rates().items()})
        record.update({"train_class_err": class_err, "train_box_mae": box_mae,
                       "time": elapsed, "images_per_sec": images / elapsed,
                       "test_class_err": None, "test_box_mae": None,
                       "skipped_images": skipped})
        return record

    def _step(self, X, Y, info):
        """One update: every device's part forward, the losses, backward
        (through AMP's loss scaler with ``amp``), the optimizer's step."""
        with autograd.record():
            outputs = [self.step.forward(*part)
                       for part in device_parts(X, Y, info, self.ctxs, True)]
            step_losses = self.step.losses(outputs)
            if self._amp is not None:       # the scaled losses recorded, as GluonCV does
                with self._amp.scale_loss(step_losses, self.optimizer) as scaled:
                    autograd.backward(scaled)
        if self._amp is None:
            autograd.backward(step_losses)
        if self.workers > 1 and not self._weights_pulled:
            # a cluster's first step: the weights rank 0 put in the KVStore
            # pulled, and the pull finished, before any gradient is pushed.
            # Gluon (MXNet 1.9.1) pulls them and pushes the first gradients
            # under the same keys in no order, so a worker whose pull was
            # served after the gradients were summed started from them as
            # weights (3 runs in 8 of two workers drifted apart)
            init_trainer(self.optimizer)
            mx.nd.waitall()
            self._weights_pulled = True
        self.optimizer.step(self._scale())
        return outputs, step_losses

    def learning_rates(self):
        """Each part's learning rate now (name -> rate): the optimizer's
        rate at its update count times the part's ``lr_mult``. Host values:
        nothing is read from a device."""
        rate = self.optimizer.learning_rate
        return {name: rate * next(iter(block.collect_params().values())).lr_mult
                for name, block in self.parts.items()}

    def _log(self, logged, sums, epoch, i, images, tic):
        """Read the running sums from the device (the one host read of
        ``log_interval`` steps) and tell the hooks."""
        host = sums.asnumpy().tolist()
        advance = i + 1 - logged["step"]
        since = [(now - before) / advance for now, before in zip(host, logged["host"])]
        event = {"kind": "step", "epoch": epoch, "step": i, "steps": self.steps_per_epoch,
                 "global_step": epoch * self.steps_per_epoch + i + 1,
                 "advance": advance, "first_step": logged["step"], "loss": since[0],
                 "terms": dict(zip(self.term_names, since[5:])), "sums": host,
                 "lr": self.learning_rates(), "images_per_sec": images / (time.time() - tic)}
        event["class_err"], event["box_mae"] = summary(host[1:5])
        logged.update(step=i + 1, host=host)
        for hook in self.hooks:
            hook.after_log(self, event)
