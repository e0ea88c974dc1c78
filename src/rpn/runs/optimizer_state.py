"""The optimizer's state in a checkpoint, without pickle.

Gluon's ``Trainer.save_states`` pickles the updater, and unpickling a file
from a shared run folder runs whatever code it holds. Here the state is
MXNet's own array file (``optimizer.params``) plus JSON (``optimizer.json``:
the optimizer's name, update counts, parameter shapes and the structure of
each state). :mod:`rpn.runs.checkpoint` writes and verifies the files; this
module turns a trainer's state into them and back.
"""
import os
import warnings

import mxnet as mx
from mxnet import np

from ..training.optimizer import init_trainer
from .fileio import read_json, write_json

__all__ = ["save_optimizer_state", "restore_optimizer_state"]

_FORMAT = 1


def _encode(state, arrays, key):
    """An updater state (None, an array, or nested tuples/lists of them) ->
    a JSON structure; arrays go into ``arrays`` under generated keys."""
    if state is None:
        return None
    if isinstance(state, (mx.nd.NDArray, np.ndarray)):
        arrays[key] = state.as_nd_ndarray() if isinstance(state, np.ndarray) else state
        return {"array": key, "np": isinstance(state, np.ndarray)}
    if isinstance(state, (tuple, list)):
        kind = "tuple" if isinstance(state, tuple) else "list"
        return {kind: [_encode(s, arrays, f"{key}.{j}") for j, s in enumerate(state)]}
    raise TypeError(f"cannot save an optimizer state of type {type(state).__name__}")


def _decode(spec, arrays, ctx):
    if spec is None:
        return None
    if "array" in spec:
        value = arrays[spec["array"]].copyto(ctx)
        return value.as_np_ndarray() if spec.get("np") else value
    kind = "tuple" if "tuple" in spec else "list"
    items = [_decode(s, arrays, ctx) for s in spec[kind]]
    return tuple(items) if kind == "tuple" else items


def save_optimizer_state(trainer, folder):
    """optimizer.params and optimizer.json of ``trainer`` into ``folder``."""
    init_trainer(trainer)
    if trainer._update_on_kvstore:
        # the optimizer runs on the parameter servers (dist_async): its
        # state is not here to save
        write_json(os.path.join(folder, "optimizer.json"), {
            "format": _FORMAT, "saved": False,
            "reason": "the optimizer runs on the KVStore's servers"})
        return
    updater = trainer._updaters[0]
    optimizer = updater.optimizer
    arrays, states = {}, {}
    for index, state in sorted(updater.states.items()):
        states[str(index)] = _encode(state, arrays, f"s{index}")
    mx.nd.save(os.path.join(folder, "optimizer.params"), arrays)
    write_json(os.path.join(folder, "optimizer.json"), {
        "format": _FORMAT, "saved": True, "optimizer": type(optimizer).__name__,
        "num_update": optimizer.num_update,
        "index_update_counts": {str(d): {str(i): c for i, c in counts.items()}
                                for d, counts in optimizer._all_index_update_counts.items()},
        "shapes": {str(i): list(p.shape) for i, p in enumerate(trainer._params)},
        "states": states})


def restore_optimizer_state(trainer, path):
    """Set ``trainer``'s optimizer state from the checkpoint folder ``path``
    (already verified). Returns ``False`` (with a warning) when the
    checkpoint holds none (a ``dist_async`` run), ``True`` otherwise."""
    meta = read_json(os.path.join(path, "optimizer.json"), what="optimizer state")
    if not meta.get("saved"):
        warnings.warn(f"{path} holds no optimizer state ({meta.get('reason')}); "
                      "the optimizer starts afresh")
        return False
    init_trainer(trainer)
    if trainer._update_on_kvstore:
        warnings.warn("the optimizer runs on the KVStore's servers (dist_async): its "
                      "saved state cannot be restored there; it starts afresh")
        return False
    optimizer = trainer._updaters[0].optimizer
    if meta.get("optimizer") != type(optimizer).__name__:
        raise ValueError(f"{path} holds the state of a {meta.get('optimizer')} optimizer, "
                         f"but this run uses {type(optimizer).__name__}")
    shapes = {str(i): list(p.shape) for i, p in enumerate(trainer._params)}
    if meta.get("shapes") != shapes:
        raise ValueError(f"{path}: the optimizer state is for other parameters "
                         "(another model?)")
    arrays = mx.nd.load(os.path.join(path, "optimizer.params")) if meta["states"] else {}
    for updater, ctx in zip(trainer._updaters, trainer._contexts):
        updater.states = {int(i): _decode(spec, arrays, ctx)
                          for i, spec in meta["states"].items()}
        updater.states_synced = dict.fromkeys(updater.states, True)
    optimizer.num_update = int(meta["num_update"])
    counts = {int(d): {int(i): int(c) for i, c in per.items()}
              for d, per in meta["index_update_counts"].items()}
    optimizer._all_index_update_counts.clear()
    optimizer._all_index_update_counts.update(counts)
    optimizer._index_update_count = optimizer._all_index_update_counts.setdefault(0, {})
    return True
