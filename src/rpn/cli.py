"""The command line: ``rpn train | evaluate | predict | propose | export | env``.

``python -m rpn ...`` or the installed ``rpn`` script. This module parses
arguments (their parser: :mod:`rpn.cli_options`), calls the library (:mod:`rpn.training.fit`, :mod:`rpn.evaluation.evaluate`,
:mod:`rpn.proposals.images`,
:mod:`rpn.proposals.file`, :mod:`rpn.runs.trained`) and formats what it returns: results
on stdout, progress and warnings on stderr. Exit codes: 0 done, 1 the work
failed (bad data, a diverging loss, unreadable inputs, no memory left), 2 a
bad argument or setting, or an output path that cannot be used as asked
(one line on stderr, ``rpn COMMAND: error: ...``). File names are printed
by :func:`rpn.runs.fileio.shown`, and whatever reaches stderr has its
characters that do not print (an escape, say) escaped, so that no name can
drive the terminal. Every option has its help text, and ``docs/cli.md``
lists the same options (a test compares them); every ``--help`` ends with
where the docs are (:mod:`rpn.docs`).
"""
import json
import os
import sys
import warnings

from .cli_options import PRESET_NAMES, UsageError, build_parser

__all__ = ["main", "parse_ctx", "build_parser", "COMMANDS", "PRESET_NAMES"]


def parse_ctx(text):
    """``--ctx`` -> a list of contexts (see :func:`rpn.ops.devices.parse_context`)."""
    from .ops.devices import parse_context
    try:
        return parse_context(text)
    except ValueError as error:
        raise UsageError(f"--ctx {error}") from None


def _settings(items):
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _one_device(args):
    """The one context of a command that runs on one device."""
    ctxs = parse_ctx(args.ctx)
    if len(ctxs) > 1:
        raise UsageError(f"--ctx {args.ctx}: rpn {args.command} runs on one device; give "
                         "one, e.g. --ctx gpu:0 (only rpn train splits batches over "
                         "several)")
    return ctxs[0]


def _model(args):
    """``--checkpoint`` with ``--epoch``: the run's path, or the model of
    the epoch asked for."""
    if args.epoch is None:
        return args.checkpoint
    from .runs.trained import load
    return load(args.checkpoint, _one_device(args), epoch=args.epoch)


def _picture(args, name):
    """Where ``rpn evaluate`` writes the picture ``name``: ``--out``, else
    the run folder (for another epoch than the latest, named for it, so
    that the run's own picture stays)."""
    if args.out:
        return os.path.join(args.out, name)
    if args.epoch is not None:
        stem, ext = os.path.splitext(name)
        tag = "best" if args.epoch == "best" else f"epoch-{args.epoch:04d}"
        name = f"{stem}-{tag}{ext}"
    return os.path.join(args.checkpoint, name)


def _out(result):
    print(json.dumps(result), flush=True)


def cmd_train(args):
    from .training.fit import FINAL_KEYS, fit
    if args.val_images and not args.val_data:
        raise UsageError("--val-images needs --val-data (the COCO file it holds the images of)")
    if (args.kvstore or "").startswith("dist") and "DMLC_ROLE" not in os.environ:
        raise UsageError(f"--kvstore {args.kvstore} trains on a cluster: start it with python "
                         f"-m rpn.launch -n WORKERS -s SERVERS -- rpn train ... (no cluster "
                         "launcher set DMLC_ROLE here)")
    if args.data is None and args.config is None:
        raise UsageError("the following arguments are required: --data (or --config FILE, "
                         "a run's config.json that names its data)")
    final = fit(args.data, args.out, preset=args.preset, classes=_classes(args.classes),
                images=args.images, val_data=args.val_data, val_images=args.val_images,
                ctx=parse_ctx(args.ctx), epochs=args.epochs,
                batch_size=args.batch_size, size=args.size, max_size=args.max_size,
                lr=args.lr, backbone=args.backbone, settings=_settings(args.set),
                pretrained=args.pretrained,
                resume=args.resume, kvstore=args.kvstore, seed=args.seed,
                num_workers=args.workers, skip_bad=args.skip_bad,
                eval_every=args.eval_every, keep=args.keep, hybridize=not args.no_hybridize,
                quiet=args.quiet, amp=args.amp or None, config_file=args.config)
    if final is not None:
        _out({k: final[k] for k in FINAL_KEYS if k in final})
    return 0


class _Bar:
    """A progress bar on stderr, made at its first ``update`` (so that an
    error before any work shows none)."""

    def __init__(self, unit):
        self.unit, self.bar = unit, None

    def update(self, n):
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(unit=self.unit, file=sys.stderr, dynamic_ncols=True)
        self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def cmd_evaluate(args):
    from .evaluation.evaluate import evaluate
    from .evaluation.pictures import plot_proposal_recall, plot_recall
    if args.out is not None and os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: not a folder; give the folder for the pictures")
    bar = _Bar("image")
    try:
        result, recall = evaluate(_model(args), args.data, args.split,
                                  classes=_classes(args.classes), images=args.images,
                                  ks=args.ks, batch_size=args.batch_size,
                                  num_workers=args.workers, ctx=_one_device(args),
                                  skip_bad=args.skip_bad, progress=not args.quiet,
                                  on_batch=None if args.quiet else bar.update)
    finally:
        bar.close()
    if args.json:
        _out(result)
    else:
        print(f"{result['images']} images, {result['objects']} objects")
        for k in recall.ks:
            print(f"top {k:>4}: AR {result[f'AR@{k}']:.3f}  R@0.5 {result[f'R@{k}@0.5']:.3f}"
                  f"  R@0.7 {result[f'R@{k}@0.7']:.3f}")
    for name, draw in (("recall_iou.png", plot_recall),
                       ("recall_proposals.png", plot_proposal_recall)):
        plot = _picture(args, name)
        try:
            os.makedirs(os.path.dirname(plot) or ".", exist_ok=True)
            draw(recall, plot)
        except OSError as error:
            _say(f"rpn evaluate: warning: could not write {plot}: {error.strerror or error}")
    return 0


def cmd_predict(args):
    from .data.sources import has_coco_ids, split_images
    from .proposals.images import save_predictions
    from .runs.fileio import shown
    paths, ids = list(args.images), None
    if args.data is not None:
        found = split_images(args.data, args.split, images=args.data_images)
        paths += [os.fspath(path) for path in found.images]
        if not args.images and has_coco_ids(args.data, args.data_images):
            ids = list(found.ids)
    elif args.split is not None or args.data_images is not None:
        raise UsageError("--split and --data-images need --data")
    if not paths:
        raise UsageError("give image files or folders, or --data DATA (with --split)")
    summary, errors = save_predictions(_model(args), paths, args.out,
                                       top_k=args.top_k, ctx=_one_device(args),
                                       format=args.format, ids=ids)
    for path, error in errors:
        _say(f"rpn predict: cannot read {shown(path)}: {error}")
    _out(summary)
    return 1 if errors else 0


def cmd_propose(args):
    from .proposals.file import propose
    bar = _Bar("image")
    try:
        summary = propose(_model(args), args.data, args.split, out=args.out,
                          top_k=args.top_k, classes=_classes(args.classes),
                          images=args.images, batch_size=args.batch_size,
                          num_workers=args.workers, ctx=_one_device(args),
                          skip_bad=args.skip_bad, format=args.format,
                          progress=None if args.quiet else bar.update)
    finally:
        bar.close()
    _out(summary)
    return 0


def cmd_export(args):
    from .runs.trained import export
    _out(export(args.checkpoint, args.out, ctx=_one_device(args), epoch=args.epoch))
    return 0


def cmd_env(args):
    from .env import run
    return run(args)


def _classes(text):
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else None


#: The presets ``--preset`` takes.


#: The function that runs each command.
COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "propose": cmd_propose, "export": cmd_export, "env": cmd_env}


def main(argv=None):
    from .data.sources import DataSpecError
    from .processes.signals import end_process, interrupted, signals_interrupt
    from .runs.fileio import OutputPathError
    from .runs.folder import RunError
    from .settings import SettingsError
    parser = build_parser()
    command = "rpn"
    try:
        args = parser.parse_args(argv)
        command = f"rpn {args.command}"
        # the program (not a call from Python) ends within 30 s of a
        # signal even when its main thread is stuck in C code
        deadline = 30.0 if argv is None else None
        with warnings.catch_warnings(), signals_interrupt(command=command, deadline=deadline):
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.showwarning = _warning
            return COMMANDS[args.command](args)
    except UsageError as error:
        _say(f"{error.command or command}: error: {error}")
        return 2
    except KeyboardInterrupt as error:      # Ctrl-C, or SIGTERM (rpn.processes.signals)
        line, code = interrupted(command, error)
        _say(line)
        if argv is None:                    # the program, not a call: end now
            end_process(code)
        return code
    except (RunError, SettingsError, DataSpecError, OutputPathError) as error:
        _say(f"{command}: error: {error}")
        return 2
    except ValueError as error:
        _say(f"{command}: error: {error}")
        return 1
    except (FileNotFoundError, OSError, RuntimeError, FloatingPointError) as error:
        _say(f"{command}: error: {error}")
        return 1
    except MemoryError as error:
        _say(f"{command}: error: out of memory ({error or 'MemoryError'}); the images may be "
             "resized too large for this machine (the model's size and max_size settings)")
        return 1


def _printable(text):
    """``text`` with every character that does not print (an escape, a
    carriage return, ...) but a newline or a tab escaped as ``repr`` does."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _say(text):
    print(_printable(str(text)), file=sys.stderr)


def _warning(message, category, filename, lineno, file=None, line=None):
    _say(f"warning: {message}")
