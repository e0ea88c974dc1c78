"""What a resume changes, said and recorded rather than silent.

``rpn train`` writes a record of its data into ``config.json`` (under
``dataset``: each split's image and object counts and fingerprints of its
image list and annotations) beside the data, seed, classes and settings.
A resume builds the same record for what it was given and compares
(:func:`compare_resume`):

* refused (exit code 2): other classes, other model-shaping settings
  (``RunConfig.shaping_names()``: ``stride``, ``top_down``, the anchors,
  ``head_channels``, ``iou_branch``, ``refine``: the saved parameters would
  not fit) and another ``optimizer`` (its saved state
  would not fit);
* allowed with one warning that lists each change as ``old -> new``: other
  data (another ``--data``, images added or removed, other annotations),
  another seed, size or any other setting. ``metrics.json`` and
  ``config.json`` record each change and the epoch from which it holds
  (``changes``);
* not compared: ``epochs`` and ``min_steps`` (a resume is there to train
  longer).

A run folder written before the record existed resumes with a warning that
its data cannot be compared.
"""
import hashlib
import json
import os
import warnings

from ..config import RunConfig
from .checkpoint import checkpoint_epoch, latest_checkpoint
from .folder import RunError

__all__ = ["data_record", "compare_resume", "describe_change", "check_resume",
           "refuse_unfit", "REFUSED_SETTINGS", "UNCOMPARED_SETTINGS"]

#: Settings whose change a resume refuses: the checkpoint would not fit.
REFUSED_SETTINGS = RunConfig.shaping_names() + ("optimizer",)
#: Settings a resume is expected to change.
UNCOMPARED_SETTINGS = ("epochs", "min_steps")


def _digest(items):
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()[:16]


def _split_record(found):
    if found is None:
        return None
    pairs = sorted(zip((str(name) for name in found.names), found.labels),
                   key=lambda pair: pair[0])       # the order of a list does not count
    return {"images": len(pairs),
            "objects": int(sum(int((label[:, 0] >= 0).sum()) for _, label in pairs)),
            "list": _digest(name for name, _ in pairs),
            "annotations": _digest(name + json.dumps(label.tolist()) for name, label in pairs)}


def data_record(train_set, val_set):
    """The record of the data a run trains on: for ``train`` and ``val``
    (:class:`rpn.ImageSet`, or ``None`` without validation), the images and
    objects, and fingerprints of the image list and of the annotations."""
    return {"train": _split_record(train_set), "val": _split_record(val_set)}


def _change(what, old, new):
    return {"what": what, "old": old, "new": new}


def describe_change(change):
    """``"what: old -> new"``, one change of :func:`compare_resume`."""
    def show(value):
        return json.dumps(value) if not isinstance(value, str) else value
    if change["what"].endswith((" image list", " annotations")):     # fingerprints
        kind = "images" if change["what"].endswith("list") else "boxes or labels"
        return (f"{change['what']}: other {kind} (fingerprint {change['old']} -> "
                f"{change['new']})")
    return f"{change['what']}: {show(change['old'])} -> {show(change['new'])}"


def _compare_data(old, new):
    out = []
    for split in ("train", "val"):
        a, b = (old or {}).get(split), (new or {}).get(split)
        if a is None or b is None:
            if (a is None) != (b is None):
                out.append(_change(f"{split} images", a and a.get("images"),
                                   b and b.get("images")))
            continue
        for key, what in (("images", "images"), ("objects", "objects")):
            if a.get(key) != b.get(key):
                out.append(_change(f"{split} {what}", a.get(key), b.get(key)))
        if a.get("images") == b.get("images") and a.get("list") != b.get("list"):
            out.append(_change(f"{split} image list", a.get("list"), b.get("list")))
        if a.get("annotations") != b.get("annotations") and not any(
                c["what"].startswith(split) for c in out):
            out.append(_change(f"{split} annotations", a.get("annotations"),
                               b.get("annotations")))
    return out


def compare_resume(previous, new):
    """Compare a run's record (``config.json``: ``data``, ``images``,
    ``seed``, ``classes``, ``config`` and, when written, ``dataset``) with
    the record of a resume. Returns ``(refused, changed)``: two lists of
    ``{"what", "old", "new"}``; ``refused`` holds the class and
    model-shaping changes (see the module)."""
    refused, changed = [], []
    old_classes = previous.get("classes") or (previous.get("config") or {}).get("classes")
    new_classes = new.get("classes") or (new.get("config") or {}).get("classes")
    if old_classes is not None and list(old_classes) != list(new_classes or []):
        refused.append(_change("classes", list(old_classes), list(new_classes or [])))
    old_settings, new_settings = previous.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_settings) | set(new_settings)):
        if key in UNCOMPARED_SETTINGS or key == "classes":
            continue
        a, b = old_settings.get(key), new_settings.get(key)
        if json.dumps(a) != json.dumps(b):
            (refused if key in REFUSED_SETTINGS else changed).append(_change(key, a, b))
    for key in ("data", "images", "seed"):
        if key in previous and previous.get(key) != new.get(key):
            changed.append(_change(key, previous.get(key), new.get(key)))
    if "dataset" in previous and "dataset" in new:
        changed += _compare_data(previous["dataset"], new["dataset"])
    return refused, changed


def _record(folder):
    """The run's ``config.json`` as written: its record and its settings
    (those added by later versions with their defaults, which keep the
    run's meaning)."""
    config, record = folder.read()
    return dict(record, config=config.to_dict())


def _refuse(folder, refused):
    if refused:
        raise RunError(f"--resume: {folder.path} was trained with other settings than "
                       "these, which its checkpoint cannot take: "
                       + "; ".join(describe_change(c) for c in refused)
                       + ". Use the run's settings or another --out")


def refuse_unfit(folder, config):
    """Raise one :class:`rpn.runs.folder.RunError` when the checkpoint of the run
    folder ``folder`` cannot continue under ``config`` (other classes,
    model-shaping settings or optimizer): what a resume checks first,
    before the data is read."""
    previous = _record(folder)
    refused, _ = compare_resume(previous, {"classes": list(config.classes),
                                           "config": config.to_dict()})
    _refuse(folder, refused)


def check_resume(folder, config, meta, train_set, val_set, resume):
    """What :func:`rpn.fit` records and checks before training: returns
    the entries to add to ``config.json`` (``dataset``, ``changes``). On a
    resume of a run that saved a checkpoint, refused changes raise one
    :class:`rpn.runs.folder.RunError`, allowed ones give one warning and are added
    to ``changes`` from the epoch the resume starts with."""
    record = {"dataset": data_record(train_set, val_set)}
    config_file = folder.file("config.json")
    if not resume or not os.path.isfile(config_file):
        return dict(record, changes=[])
    latest = latest_checkpoint(folder.checkpoint_dir, warn=False)
    previous = _record(folder)
    history = list(previous.get("changes") or [])
    if latest is None:              # nothing trained yet: nothing to continue
        return dict(record, changes=history)
    refused, changed = compare_resume(previous, dict(meta, config=config.to_dict(), **record))
    _refuse(folder, refused)
    if "dataset" not in previous:
        warnings.warn(f"{config_file} holds no record of the run's data (an older rpn "
                      "wrote it): whether the data changed cannot be compared")
    epoch = checkpoint_epoch(latest) + 1
    if changed:
        warnings.warn(f"--resume: {folder.path} continues from epoch {epoch} with changes "
                      "(recorded in metrics.json): "
                      + "; ".join(describe_change(c) for c in changed))
        history.append({"epoch": epoch, "changes": changed})
    return dict(record, changes=history)
