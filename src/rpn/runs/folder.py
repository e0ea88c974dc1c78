"""A run folder and an export folder: which files they hold.

``rpn train`` (and :func:`rpn.fit`) writes a run folder::

    RUN/config.json      the settings, the data and the seed
    RUN/checkpoint/      parameters and optimizer state (rpn.runs.checkpoint)
    RUN/metrics.json     per-epoch history and the final proposal recall
    RUN/curves.png, recall_iou.png, predictions.png
    RUN/.lock            the writer's lock (rpn.runs.lock)

``rpn export`` writes an export folder (:mod:`rpn.runs.trained`)::

    EXPORT/rpn-symbol.json, rpn-0000.params   (HybridBlock.export)
    EXPORT/config.json, MANIFEST.json
"""
import os

from ..config import RunConfig
from .fileio import make_dir, read_json, write_json

__all__ = ["RunFolder", "RunError", "SYMBOL_FILE", "PARAMS_FILE"]

#: The files of an export's graph.
SYMBOL_FILE, PARAMS_FILE = "rpn-symbol.json", "rpn-0000.params"


class RunError(ValueError):
    """A run or export folder that cannot be used as asked."""


class RunFolder:
    """The files of one run folder (see the module). ``path`` need not
    exist yet."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def checkpoint_dir(self):
        return self.file("checkpoint")

    @property
    def is_export(self):
        return os.path.isfile(self.file(SYMBOL_FILE))

    def has_checkpoint(self):
        """Whether the folder holds a checkpoint of a run, whole or not: its
        ``checkpoint/`` folder has ``latest`` or an ``epoch-NNNN`` entry
        (or is not a plain folder: not the package's to judge). A run that
        has one is resumed from it (``--resume``) and is not started afresh
        over it; whether the checkpoint is whole is the resume's to say."""
        path = self.checkpoint_dir
        if not os.path.lexists(path):
            return False
        if os.path.islink(path) or not os.path.isdir(path):
            return True
        return any(e == "latest" or (e.startswith("epoch-") and e[6:].isdigit())
                   for e in os.listdir(path))

    def has_run(self):
        return os.path.lexists(self.checkpoint_dir) or os.path.lexists(self.file("config.json"))

    def read(self):
        """``(config, record)``: the :class:`rpn.config.RunConfig`, and what
        else ``config.json`` holds (data, images, seed, classes). Errors
        name the file."""
        path = self.file("config.json")
        if not os.path.isfile(path):
            raise RunError(f"{self.path!r} holds no config.json: give the --out folder "
                           "of 'rpn train' or of 'rpn export'")
        try:
            saved = read_json(path, what="run configuration")
            if not isinstance(saved, dict) or "config" not in saved:
                raise ValueError("expected an object with a 'config' entry")
            config = RunConfig.from_dict(saved["config"])
        except (ValueError, TypeError) as error:
            raise RunError(f"{path}: {error}") from None
        return config, {k: v for k, v in saved.items() if k != "config"}

    def write_config(self, config, **record):
        make_dir(self.path)
        write_json(self.file("config.json"), dict(record, config=config.to_dict()))

    def write_metrics(self, data):
        write_json(self.file("metrics.json"), data)


