"""Checkpoints of a training run: parameters, optimizer state, progress.

One folder an epoch inside the run's ``checkpoint/`` folder, and a
``latest`` file naming the newest complete one::

    checkpoint/latest                  "epoch-0007"
    checkpoint/epoch-0007/backbone.params, output.params   (MXNet arrays, one
                                                            file a trained part)
                          optimizer.params                 (MXNet arrays)
                          optimizer.json, state.json       (JSON)
                          MANIFEST.json                    (written last)

Nothing in a checkpoint carries code: parameters and optimizer states are
MXNet's own array files, counters and progress are JSON. (Gluon's
``Trainer.save_states`` pickles, and unpickling a file from a shared run
folder runs whatever code it holds; it is never used.) The manifest lists
every file's size and SHA-256; loading verifies it, so a truncated or
altered file is reported as corrupt, naming the file, instead of loading
as wrong weights. A checkpoint is written under a private name and renamed
into place, then ``latest`` is switched atomically: a run killed while
saving keeps the previous checkpoint. ``latest`` can only name an
``epoch-NNNN`` folder inside ``checkpoint/``.
"""
import json
import os
import re
import shutil
import stat
import warnings

import mxnet as mx
from mxnet import np

from .fileio import make_dir, private_dir, read_json, sha256_of, write_bytes, write_json

__all__ = ["write_checkpoint", "latest_checkpoint", "load_checkpoint", "load_parts",
           "load_optimizer_states", "write_manifest", "verify_manifest", "remove_stale",
           "CorruptCheckpointError"]

_LATEST = "latest"
_MANIFEST = "MANIFEST.json"
_NAME = re.compile(r"^epoch-[0-9]{4,9}$")
_FORMAT = 1


class CorruptCheckpointError(ValueError):
    """A checkpoint file is missing, truncated or altered."""


# ---- optimizer state without pickle ------------------------------------------

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


def _init_trainer(trainer):
    """Gluon creates a trainer's KVStore and updaters on its first step; a
    state can only be set after that (as ``Trainer.load_states`` does)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()


def _save_optimizer(trainer, folder):
    """optimizer.params and optimizer.json of ``trainer`` into ``folder``."""
    _init_trainer(trainer)
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


def load_optimizer_states(trainer, path):
    """Set ``trainer``'s optimizer state from the checkpoint folder ``path``
    (verified). Returns ``False`` (with a warning) when the checkpoint holds
    none (a ``dist_async`` run), ``True`` otherwise."""
    _verify(path)
    meta = read_json(os.path.join(path, "optimizer.json"), what="optimizer state")
    if not meta.get("saved"):
        warnings.warn(f"{path} holds no optimizer state ({meta.get('reason')}); "
                      "the optimizer starts afresh")
        return False
    _init_trainer(trainer)
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


# ---- writing and finding checkpoints -----------------------------------------

def _is_real_dir(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)


def _remove(path):
    """Remove a checkpoint folder, or just the link if it is one."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif _is_real_dir(path):
        shutil.rmtree(path)


def write_checkpoint(checkpoint_dir, epoch, parts, trainer, state):
    """Write the checkpoint of ``epoch`` (0-based) and make it the latest;
    older ones are removed. ``parts``: the trained blocks by name (each
    saved as ``<name>.params``; the chapter's are ``backbone`` and
    ``output``); ``state``: JSON-able progress (epoch, history, seed,
    config). Returns the checkpoint's folder."""
    make_dir(checkpoint_dir)
    name = f"epoch-{epoch + 1:04d}"
    tmp = private_dir(checkpoint_dir, f".{name}-")
    try:
        for part, block in parts.items():
            block.save_parameters(os.path.join(tmp, f"{part}.params"))
        _save_optimizer(trainer, tmp)
        write_json(os.path.join(tmp, "state.json"), state)
        write_manifest(tmp)
        final = os.path.join(checkpoint_dir, name)
        _remove(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_bytes(os.path.join(checkpoint_dir, _LATEST), name.encode())
    for entry in os.listdir(checkpoint_dir):
        if entry != name and (_NAME.match(entry) or entry.startswith(".epoch-")):
            _remove(os.path.join(checkpoint_dir, entry))
    return final


def remove_stale(checkpoint_dir):
    """Remove what a killed writer left under private names: ``.epoch-*``
    folders of unfinished checkpoints and ``.*.tmp`` files. Returns their
    names."""
    if not _is_real_dir(checkpoint_dir):
        return []
    stale = [e for e in os.listdir(checkpoint_dir)
             if e.startswith(".epoch-") or (e.startswith(".") and e.endswith(".tmp"))]
    for entry in stale:
        _remove(os.path.join(checkpoint_dir, entry))
    return stale


def latest_checkpoint(checkpoint_dir):
    """The folder of the newest complete checkpoint in ``checkpoint_dir``,
    or ``None``. ``latest`` must name an ``epoch-NNNN`` folder (not a link)
    inside ``checkpoint_dir``; anything else is a ``CorruptCheckpointError``."""
    pointer = os.path.join(checkpoint_dir, _LATEST)
    if not os.path.lexists(pointer):
        return None
    if os.path.islink(pointer) or not os.path.isfile(pointer):
        raise CorruptCheckpointError(f"{pointer} must be a plain file naming a checkpoint")
    with open(pointer, "rb") as f:
        name = f.read(64).decode("ascii", "replace").strip()
    path = os.path.join(checkpoint_dir, name)
    if not _NAME.match(name) or not _is_real_dir(path):
        raise CorruptCheckpointError(
            f"{pointer} names {name!r}; expected an epoch-NNNN folder inside "
            f"{checkpoint_dir}")
    return path


def write_manifest(path):
    """Write ``path/MANIFEST.json``: the size and SHA-256 of every file of
    the folder ``path``. Written last, it marks the folder complete."""
    files = {}
    for entry in sorted(os.listdir(path)):
        if entry != _MANIFEST and not entry.startswith("."):
            digest, size = sha256_of(os.path.join(path, entry))
            files[entry] = {"bytes": size, "sha256": digest}
    write_json(os.path.join(path, _MANIFEST), {"format": _FORMAT, "files": files})


def verify_manifest(path):
    """Check every file of the folder ``path`` (a checkpoint or an export)
    against its manifest: a ``CorruptCheckpointError`` names the first file
    that is missing, truncated or altered."""
    _verify(path)


def _verify(path):
    """Check every file of the checkpoint ``path`` against its manifest."""
    manifest = os.path.join(path, _MANIFEST)
    if not os.path.isfile(manifest):
        raise CorruptCheckpointError(
            f"{path} has no {_MANIFEST}: it is incomplete, or was written by an "
            "older version of rpn (retrain, or evaluate with that version)")
    try:
        files = read_json(manifest, what="checkpoint manifest")["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptCheckpointError(f"{manifest} is corrupt: {error}") from None
    for entry, expected in sorted(files.items()):
        if "/" in entry or entry.startswith("."):
            raise CorruptCheckpointError(f"{manifest} lists a file outside the checkpoint")
        file = os.path.join(path, entry)
        try:
            digest, size = sha256_of(file)
        except OSError:
            raise CorruptCheckpointError(f"checkpoint file missing: {file}") from None
        if size != expected.get("bytes") or digest != expected.get("sha256"):
            raise CorruptCheckpointError(
                f"checkpoint file {file} is corrupt: {size} bytes with SHA-256 "
                f"{digest[:12]}..., the manifest says {expected.get('bytes')} bytes and "
                f"{str(expected.get('sha256'))[:12]}... (truncated or altered)")


def load_parts(path, parts, ctx=None):
    """Load the checkpoint folder ``path`` (verified against its manifest)
    into ``parts`` (name -> block, as :func:`write_checkpoint` saved them) on
    ``ctx`` (a context or a list, default the current one), and return its
    ``state.json`` dict (epoch, history, seed, config)."""
    _verify(path)
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.current_context()]
    try:
        for part, block in parts.items():
            block.load_parameters(os.path.join(path, f"{part}.params"), ctx=ctxs)
    except (AssertionError, mx.MXNetError, ValueError) as error:
        raise ValueError(
            f"the checkpoint in {path} does not fit this model (another "
            f"backbone, anchors or head width?): {error}") from error
    try:
        return read_json(os.path.join(path, "state.json"), what="checkpoint state")
    except json.JSONDecodeError as error:
        raise CorruptCheckpointError(f"{path}/state.json: {error}") from None


def load_checkpoint(checkpoint_dir, backbone, output_model, ctx=None):
    """Load the newest checkpoint's parameters into ``backbone`` and
    ``output_model`` (on ``ctx``: a context or a list, default the current
    one) after verifying its manifest, and return its ``state.json`` dict
    (epoch, history, seed, config)."""
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        raise FileNotFoundError(
            f"no checkpoint in {checkpoint_dir!r}: expected a 'latest' file "
            "naming an epoch-NNNN folder, as train_detection writes")
    return load_parts(path, {"backbone": backbone, "output": output_model}, ctx)
