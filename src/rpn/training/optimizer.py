"""The optimizer of a training run, its learning rates, and its KVStore.

One ``gluon.Trainer`` serves every part of a model; each part's learning
rate is set through its parameters' ``lr_mult`` (one KVStore serves them
all, which a distributed KVStore needs: two trainers would share its keys).
:func:`make_kvstore` is the one place a KVStore is chosen or created.
"""
import mxnet as mx
from mxnet import gluon

__all__ = ["make_optimizer", "learning_rates", "make_kvstore", "kvstore_rank", "init_trainer"]


def make_kvstore(kvstore, ctxs):
    """The KVStore of a run on ``ctxs``: ``None`` chooses as MXNet advises
    (``device``, reducing on the GPUs, when there are several; ``local``, in
    host memory, otherwise); a ``dist_*`` name is created (under ``python -m
    rpn.launch``, which starts the cluster); any other name or a KVStore
    object is used as it is."""
    if kvstore is None:
        several_gpus = len(ctxs) > 1 and any(c.device_type == "gpu" for c in ctxs)
        return "device" if several_gpus else "local"
    if isinstance(kvstore, str) and kvstore.startswith("dist"):
        return mx.kv.create(kvstore)
    return kvstore


def kvstore_rank(kvstore):
    """``(rank, workers, synchronous workers)`` of a KVStore (or its name):
    ``(0, 1, 1)`` on one machine; ``dist_sync`` averages the gradients of
    its workers, ``dist_async`` does not."""
    rank = getattr(kvstore, "rank", 0)
    workers = getattr(kvstore, "num_workers", 1)
    kind = getattr(kvstore, "type", "")
    synchronous = "sync" in kind and "async" not in kind       # dist_sync, dist_device_sync
    return rank, workers, workers if synchronous else 1


def learning_rates(parts, backbone_lr, output_lr):
    """The chapter's two learning rates for ``parts`` (name -> block): the
    ``backbone`` part trains at ``backbone_lr``, every other part (the head,
    the refinement stage) at ``output_lr``."""
    return {name: backbone_lr if name == "backbone" else output_lr for name in parts}


def _scheduler(lr_schedule, base, total_steps, warmup_steps):
    if lr_schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(
            max_update=max(total_steps, warmup_steps + 1), base_lr=base,
            final_lr=0.0, warmup_steps=warmup_steps, warmup_begin_lr=0.0)
    if lr_schedule == "step":
        # a tenth of the rate for the last quarter (Faster R-CNN's 60k + 20k)
        drop = max(int(0.75 * total_steps), warmup_steps + 1, 1)
        return mx.lr_scheduler.MultiFactorScheduler(
            step=[drop], factor=0.1, base_lr=base, warmup_steps=warmup_steps,
            warmup_begin_lr=0.0)
    if lr_schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant', 'cosine' or 'step', got "
                         f"{lr_schedule!r}")
    return None


def make_optimizer(parts, lrs, optimizer, optimizer_params, kvstore, lr_schedule,
                   total_steps, warmup_steps):
    """One ``gluon.Trainer`` for every part of ``parts`` (name -> block) at
    the learning rates ``lrs`` (name -> rate), with ``lr_schedule``
    (``constant``, ``cosine`` or ``step``) over ``total_steps`` after
    ``warmup_steps``. The parameters are taken in the order of ``parts``.
    The optimizer runs on the workers (not in the KVStore), so that its
    state can be saved without pickle; ``dist_async`` allows nothing else."""
    base = max(lrs.values())
    for name, block in parts.items():
        for param in block.collect_params().values():
            param.lr_mult = lrs[name] / base if base > 0 else 1.0
    options = dict(optimizer_params or {}, learning_rate=base)
    scheduler = _scheduler(lr_schedule, base, total_steps, warmup_steps)
    if scheduler is not None:
        options["lr_scheduler"] = scheduler
    params = gluon.ParameterDict()
    for block in parts.values():
        params.update(block.collect_params())
    on_kvstore = "async" in getattr(kvstore, "type", str(kvstore))
    return gluon.Trainer(params, optimizer, options, kvstore=kvstore,
                         update_on_kvstore=True if on_kvstore else False)


def init_trainer(trainer):
    """Create the KVStore and the updaters of the ``gluon.Trainer``
    ``trainer`` and put its parameters in the KVStore (pulling, in a
    cluster, the weights rank 0 put there), as Gluon does lazily on the
    first step; nothing when done. An optimizer state can only be set after
    it (as ``Trainer.load_states`` does), and a cluster's first gradients
    only be pushed after its pull (:class:`rpn.training.trainer.Trainer`)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
