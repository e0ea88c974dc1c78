"""The sets of benchmarks/quality.py: the five of every comparison and
those of issues 25 and 26, built from the synthetic set and the raccoon
photographs into the git-ignored ``benchmarks/.cache/``, and what
``rpn.fit`` would make of a variant's settings on them."""
import os
import sys

import derived_sets

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
RACCOON = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "raccoon"))

SETS = ("synthetic", "raccoon", "raccoon-mosaic", "raccoon-aspect", "heldout")
#: Sets of issues 25 (small objects in large pictures) and 26 (held out at
#: other splits), measured on demand (--sets).
MORE_SETS = ("small-synthetic", "raccoon-tiled2", "raccoon-tiled3", "raccoon-tiled4",
             "heldout-rectangle", "heldout-ellipse")


#: Calibration fits train CALIBRATION_STEPS batches an epoch.
CALIBRATION_STEPS = 6


def resolved(settings, dataset=None):
    """The RunConfig ``rpn.fit`` would use for ``settings`` (read for the
    batch size, epochs and ``min_steps``: the schedule), on ``dataset`` with
    the scale the default chooses from its objects (``rpn.data.scale``)
    when ``settings`` name none."""
    from rpn.config import PRESETS, resolve_config
    from rpn.training.fit import SCALE_SETTINGS
    config = resolve_config("default", settings=settings)
    if dataset is None or not dataset.voc or set(settings) & set(SCALE_SETTINGS):
        return config
    import rpn
    from rpn.data.scale import choose_scale
    found = rpn.data.sources.check_split(
        rpn.data.sources.open_split(dataset.data, "train", classes=dataset.classes),
        progress=False)
    choice = choose_scale(found, config, small_objects=PRESETS["small-objects"])
    return config.replace(**{k: v for k, v in choice.changes.items()
                             if k not in ("min_steps", "epochs")})


def steps_per_epoch(config, images):
    """Training steps an epoch of ``images`` under ``config`` (windows count)."""
    train = config.train
    return images * (train.windows_per_image if train.window else 1) // train.batch_size


# -- sets ----------------------------------------------------------------------

class DataSet:
    """A set to measure on: ``data`` for ``rpn.fit``, the classes trained
    (``None``: all), and ``scores``: ``(label, classes)`` pairs or
    ``(label, classes, data)`` triples, one recall each on the ``val`` split
    of ``data`` (default the set's own; label ``""`` is the set's main
    figure)."""

    def __init__(self, name, data, classes=None, scores=(("", None),), voc=True):
        self.name, self.data, self.classes = name, data, classes
        self.scores = [tuple(score) + (None,) * (3 - len(score)) for score in scores]
        self.voc = voc
        if voc:
            _, self.train_images, _ = derived_sets.count_objects(data, "train", classes)
            _, self.val_images, _ = derived_sets.count_objects(data, "val", classes)

    def images(self, config):
        """``(training images with objects, validation images)`` under ``config``."""
        if self.voc:
            return self.train_images, self.val_images
        return config.num_train, config.num_val

    def calibration(self, settings):
        """``(data, settings)`` for a calibration fit: the same kind of data
        with CALIBRATION_STEPS batches of training images an epoch and
        validation images in the set's proportion."""
        config = resolved(settings, self)
        train, val = self.images(config)
        n_train = min(train, CALIBRATION_STEPS * config.train.batch_size)
        n_val = max(1, round(n_train * val / train))
        if not self.voc:
            return self.data, dict(settings, num_train=n_train, num_val=n_val)
        folder = os.path.join(CACHE, "calibration", f"{self.name}-{n_train}-{n_val}")
        return derived_sets.write_subset(self.data, folder, {"train": n_train, "val": n_val},
                                         self.classes), settings


def prepare_sets(names, raccoon):
    """The DataSets named, building derived folders as needed; a set whose
    source is absent is skipped with a message."""
    out = []
    sets_dir = os.path.join(CACHE, "sets")
    for name in names:
        if name == "synthetic":
            out.append(DataSet(name, "synthetic", voc=False))
        elif name.startswith("heldout"):
            size = resolved({}).model.size
            voc = derived_sets.write_heldout(os.path.join(sets_dir, f"synthetic-voc-{size}"),
                                             size=size)
            unseen = {"heldout": "triangle"}.get(name, name.split("-")[-1])
            trained = [c for c in ("rectangle", "ellipse", "triangle") if c != unseen]
            scores = [("", [unseen]), ("trained", trained)]
            if os.path.isdir(os.path.join(raccoon, "Annotations")):
                # real photographs' objects, never trained on: the raccoons
                scores.append(("raccoon", ["raccoon"], raccoon))
            out.append(DataSet(name, voc, classes=trained, scores=scores))
        elif name == "small-synthetic":
            voc = derived_sets.write_small_objects(os.path.join(sets_dir, "small-objects-1024"))
            out.append(DataSet(name, voc))
        elif name.startswith("raccoon"):
            if not os.path.isdir(os.path.join(raccoon, "Annotations")):
                print(f"quality: skipping {name}: no VOC folder at {raccoon}", file=sys.stderr)
                continue
            data = raccoon
            if name == "raccoon-mosaic":
                data = derived_sets.write_mosaic(raccoon, os.path.join(sets_dir, "raccoon-mosaic"))
            elif name == "raccoon-aspect":
                data = derived_sets.write_aspect(raccoon, os.path.join(sets_dir, "raccoon-aspect"))
            elif name.startswith("raccoon-tiled"):
                grid = int(name[len("raccoon-tiled"):])
                data = derived_sets.write_tiled(raccoon, os.path.join(sets_dir, name), grid=grid)
            out.append(DataSet(name, data, classes=["raccoon"]))
        else:
            raise SystemExit(f"quality: unknown set {name!r}; expected some of "
                             f"{', '.join(SETS + MORE_SETS)}")
    return out


