"""A file to start a run from: ``rpn train --config FILE``
(``rpn.fit(config_file=...)``), as detectron2's ``--config-file`` with
overrides and mmdetection's ``--cfg-options``.

``FILE`` is JSON, one of:

* a run's own ``config.json`` (or an export's): its settings (``config``)
  and what it says of the run: ``data``, ``images``, ``val_data``,
  ``val_images``, ``classes``, ``seed``, ``pretrained`` (``null``: trained
  from scratch) and ``amp``. ``rpn train --config RUN/config.json --out
  RUN2`` trains the same run again;
* a file of settings: one JSON object of settings by their flat names
  (``{"size": 96, "anchor_sizes": [0.1, 0.3]}``; ``docs/settings.md``);
  ``classes`` there names the classes to train on.

What the command line gives goes on top: the preset, then the file, then
``--set``, then the explicit options (``--size``, ``--epochs``, ...), and
``--data``, ``--classes``, ``--seed`` ... over the file's. The run's
``config.json`` records the file and what went on top of it
(``config_file``: ``{"path", "overrides"}``). An unknown setting in the
file is an error naming the file and the nearest names.
"""
import os

from .config import RunConfig
from .runs.fileio import read_json
from .settings import SettingsError, unknown_settings

__all__ = ["ConfigFile", "read_config_file", "RUN_KEYS"]

#: What a run's ``config.json`` says of the run besides its settings, and
#: a new run takes from it.
RUN_KEYS = ("data", "images", "val_data", "val_images", "classes", "seed", "pretrained",
            "amp")


class ConfigFile:
    """A file read by :func:`read_config_file`: ``path`` (absolute),
    ``settings`` (flat names -> values, not yet checked against each
    other) and ``run`` (the entries of :data:`RUN_KEYS` it gives)."""

    def __init__(self, path, settings, run):
        self.path, self.settings, self.run = path, settings, run

    def merge(self, settings, **given):
        """What a run starts from: ``settings`` (the command line's, flat)
        over the file's, and each of ``given`` (``data=``, ``seed=``, ...;
        ``None``: not given) over the file's. Returns ``(settings, run,
        record)``: the merged settings, the run's entries of
        :data:`RUN_KEYS`, and the ``config_file`` record of ``config.json``
        (the path and the overrides)."""
        merged = dict(self.settings, **settings)
        run = dict(self.run)
        run.update({k: v for k, v in given.items() if v is not None})
        overrides = dict(settings)
        overrides.update({k: v for k, v in given.items()
                          if v is not None and v != self.run.get(k)})
        return merged, run, {"path": self.path, "overrides": overrides}


def read_config_file(path):
    """The :class:`ConfigFile` at ``path`` (see the module). A file that
    does not exist, cannot be read, is not a JSON object, or names an
    unknown setting is a :class:`rpn.settings.SettingsError` naming it (a
    bad argument: exit code 2 on the command line)."""
    path = os.path.abspath(os.fspath(path))
    try:
        data = read_json(path, what="config file")
    except (FileNotFoundError, ValueError) as error:
        raise SettingsError(f"--config: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path}: expected a JSON object of settings or a "
                            f"run's config.json, got {type(data).__name__}")
    settings, run = data.get("config", data), {}
    if not isinstance(settings, dict):
        raise SettingsError(f"--config {path}: its 'config' must be an object of "
                            f"settings, got {type(settings).__name__}")
    settings = dict(settings)
    if "config" in data:
        run = {k: data[k] for k in RUN_KEYS if k in data}
        if "pretrained" in run and run["pretrained"] is None:
            run["pretrained"] = "none"          # trained from scratch: so again
        run = {k: v for k, v in run.items() if v is not None}
    classes = settings.pop("classes", None)     # the run's classes, not a setting to keep
    if classes and "classes" not in run:
        run["classes"] = list(classes)
    unknown = set(settings) - set(RunConfig.names())
    if unknown:
        error = unknown_settings(unknown, RunConfig.names())
        raise SettingsError(f"--config {path}: {error}") from None
    return ConfigFile(path, settings, run)
