"""One split of data for a trained model, and the batch it is evaluated in.

``rpn evaluate`` and ``rpn propose`` read a split the way the run that
trained the model recorded it (its data, image folder, classes, seed and
validation data), check every image first (:func:`rpn.data.sources.check_split`)
and read it with the model's resize rule. Images at their own resolution
are batched by pixels, so that a 4K photograph is evaluated alone.
"""
import os

from .image_set import DataError
from .preprocess import Resize
from .reports import say_counts
from .sources import check_split, make_loader, open_split, resolve_split

__all__ = ["load_split", "eval_batch_size", "EVAL_BATCH_PIXELS"]

#: Input pixels of an evaluation batch at the photographs' own resolution.
EVAL_BATCH_PIXELS = 4_000_000


def eval_batch_size(config, found, batch_size=None):
    """The batch size of evaluating ``found`` with ``config``: ``batch_size``
    when given; else the training batch size, or, for images at their own
    resolution, as many as fit :data:`EVAL_BATCH_PIXELS` (at least 1: a
    4K photograph alone)."""
    if batch_size:
        return batch_size
    batch = config.train.batch_size
    if config.model.resize != "native":
        return batch
    known = sorted(h * w for h, w in (s for s in found.sizes if s))
    pixels = (known[len(known) // 2] if known else 1 << 20) * config.model.scale ** 2
    return max(1, min(batch, int(EVAL_BATCH_PIXELS // max(pixels, 1))))


def load_split(model, data, split, *, classes=None, images=None, batch_size=None,
               num_workers=0, skip_bad=False, progress=False, require_objects=False,
               on_error="skip", command=None):
    """One split of ``data`` for a trained model (:class:`rpn.runs.trained.TrainedModel`):
    opened (default: the run's own validation data when it was given one,
    else the data it was trained on and its ``val`` split; with the
    recorded image folder, classes and seed), checked
    (:func:`check_split`) and made into an evaluation loader with the
    model's resize rule and batch size. ``split`` ``None``: every image of a
    single annotation file, ``val`` otherwise (:func:`resolve_split`).
    Returns ``(found, loader)``; ``require_objects``: a split without an
    object of the classes is an error (there is nothing to recall).
    ``command``: the name on the stderr line that counts what is used."""
    config, record = model.config, model.record
    if data is None and record.get("val_data") is not None:
        data, images = record["val_data"], record.get("val_images")   # its own validation data
    elif data is None:
        data = record.get("data")
        if data is None:
            raise ValueError("give data=: the model's config.json does not name its data")
        split = "val" if split is None else split
    for source, folder in (("data", "images"), ("val_data", "val_images")):
        if images is None and record.get(source) in (data, os.path.abspath(data)):
            images = record.get(folder)
    split = resolve_split(data, split, images=images)
    found = open_split(data, split, classes=classes or model.classes or None, images=images,
                       skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                       synthetic=dict(size=config.model.size, num_train=config.num_train,
                                      num_val=config.num_val, seed=record.get("seed", 0)))
    if require_objects:
        if not found.images:
            raise DataError(f"split {split!r} of {data} has no image")
        if not any((label[:, 0] >= 0).any() for label in found.labels):
            raise DataError(f"split {split!r} of {data} has no object of the classes "
                            f"{list(found.classes)}: there is nothing to recall")
    found = check_split(found, skip_bad=skip_bad, clip_boxes=config.clip_boxes,
                        num_workers=num_workers or None, progress=progress,
                        what=f"{split} images")
    if command is not None:
        say_counts(command, found, split)
    loader = make_loader(found, Resize.of(config.model),
                         eval_batch_size(config, found, batch_size), train=False,
                         num_workers=num_workers, on_error=on_error,
                         size_divisor=config.model.size_divisor,
                         cache_bytes=0)                 # one pass: nothing to keep
    return found, loader
