"""The command line: ``rpn train | evaluate | predict | propose | export | env``.

``python -m rpn ...`` or the installed ``rpn`` script. This module parses
arguments, calls the library (:mod:`rpn.training.fit`, :mod:`rpn.evaluation.evaluate`,
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
import argparse
import json
import os
import sys
import warnings

from . import __version__
from .config import PRESETS
from .docs import epilog
from .env import add_arguments as add_env_arguments
from .proposals.formats import FORMATS

__all__ = ["main", "parse_ctx", "build_parser"]


class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2; ``command``: the
    (sub)command whose arguments were wrong, when known."""

    def __init__(self, message, command=None):
        super().__init__(message)
        self.command = command


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message, self.prog)


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


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text):
    return 0 if text == "0" else _positive(text)


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**32 - 1, got "
                                         f"{value}")
    return value


#: The KVStore types ``--kvstore`` takes (``dist_*`` under python -m rpn.launch).
KVSTORES = ("local", "device", "dist_sync", "dist_device_sync", "dist_async")


def _epoch(text):
    return text if text == "best" else _positive(text)


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


def _ks(text):
    try:
        return tuple(sorted({_positive(k) for k in text.split(",")}))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"--ks {text!r}: {error}") from None


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
PRESET_NAMES = tuple(PRESETS)


_MODEL_HELP = {
    "evaluate": "a run folder (rpn train --out) or an export folder (rpn export --out)",
    "predict": "a run folder (rpn train --out) or an export folder (rpn export --out)",
    "propose": "a run folder (rpn train --out) or an export folder (rpn export --out)",
    "export": "a run folder (rpn train --out); an export folder is refused",
}
_CLASSES_HELP = {
    "train": "the classes to train on, comma-separated (default: every class of the data)",
    "evaluate": "the classes whose objects count, comma-separated (default: the classes "
                "the model was trained on)",
    "propose": "the classes to read, comma-separated (default: the classes the model was "
               "trained on)",
}


def build_parser():
    """The parser of ``rpn``: every command, every option with its help."""
    parser = _Parser(prog="rpn", description="Train, evaluate and use a Region Proposal "
                     "Network (the README has a guide).", epilog=epilog())
    parser.add_argument("--version", action="version",
                        version=f"rpn {__version__}", help="print rpn's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")
    workers = max(1, min(4, (os.cpu_count() or 2) // 2))

    def command(name, func, help_text, *, data=None, model=True):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog())
        p.set_defaults(func=func)
        p.add_argument("--ctx", default="cpu", help=(
            "devices: cpu, cpu:0,1, gpu:0 or gpu:0,1 (default cpu); the batches are split "
            "over them" if name == "train" else "the device: cpu or gpu:N (default cpu)"))
        if model:
            p.add_argument("--checkpoint", required=True, metavar="RUN", help=_MODEL_HELP[name])
            p.add_argument("--epoch", type=_epoch, metavar="E|best",
                           help="of a run folder: the checkpoint of epoch E, or the best "
                           "by validation recall, among those it kept (default: the "
                           "latest)")
        if data is not None:
            p.add_argument("--data", required=data, help="'synthetic', a VOC folder, a COCO "
                           ".json file, a folder holding COCO data, or a YOLO data.yaml "
                           "(or its folder)")
            p.add_argument("--images", metavar="DIR",
                           help="the image folder of a COCO .json file (default: beside it)")
            p.add_argument("--classes", metavar="a,b", help=_CLASSES_HELP[name])
            p.add_argument("--workers", type=_count, default=workers, metavar="N",
                           help=f"image-decoding processes (default {workers}; 0: none)")
            p.add_argument("--skip-bad", action="store_true",
                           help="leave out unusable images (listed) instead of stopping")
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        return p

    train = command("train", cmd_train, "train an RPN into a run folder", data=False,
                    model=False)
    train.add_argument("--out", required=True, metavar="RUN", help="the run folder")
    train.add_argument("--config", metavar="FILE", help="start from a run's config.json "
                       "(its data, classes, seed and settings) or a JSON file of settings; "
                       "the other options and --set go on top")
    train.add_argument("--val-data", metavar="DATA", help="validation data of its own (any "
                       "form --data takes; default: the val split of --data, or 20%% of one "
                       "file)")
    train.add_argument("--val-images", metavar="DIR",
                       help="the image folder of a --val-data COCO .json file")
    train.add_argument("--preset", choices=PRESET_NAMES, default="default",
                       help="the settings to start from: default, chapter or faster-rcnn "
                       "(default: default)")
    train.add_argument("--backbone", metavar="NAME", help="the backbone network, as Gluon's "
                       "model zoo names it (default: the preset's; docs/settings.md lists "
                       "them): resnet18_v1 ... resnet101_v2, mobilenetv2_1.0 ...")
    train.add_argument("--epochs", type=_positive, metavar="N", help="exactly this many "
                       "epochs (default: the preset's, raised to reach its min_steps)")
    train.add_argument("--batch-size", type=_positive, metavar="N",
                       help="images a step, split over the devices (default: the preset's)")
    train.add_argument("--size", type=_positive, metavar="S",
                       help="the shorter side (or the square side) in pixels")
    train.add_argument("--max-size", type=_positive, metavar="M",
                       help="the longest side in pixels")
    train.add_argument("--lr", type=float, help="the learning rate of both parts")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any setting of rpn.config.RunConfig (JSON value; repeat it; "
                       "docs/settings.md)")
    train.add_argument("--pretrained", metavar="PATH|imagenet|none",
                       help="ImageNet weights of the backbone: a .params file or model-store "
                       "folder, 'imagenet' (MXNet's model store, downloaded when absent) or "
                       "'none' (default: the preset's; imagenet for faster-rcnn)")
    train.add_argument("--amp", action="store_true",
                       help="mixed precision: train in float16 on GPUs (mxnet.contrib.amp)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--kvstore", choices=KVSTORES, metavar="TYPE", help="local, device, dist_sync, "
                       "dist_device_sync, dist_async (dist_*: under python -m rpn.launch)")
    train.add_argument("--seed", type=_seed, metavar="N", help="seeds MXNet, shuffling, "
                       "augmentation and the synthetic set; epoch e reseeds with N + e "
                       "(default 0)")
    train.add_argument("--eval-every", type=_count, metavar="N", help="also measure recall "
                       "every N epochs, and keep the best checkpoint (default 0: after the "
                       "last epoch only)")
    train.add_argument("--keep", type=_positive, metavar="N", help="keep the checkpoints of "
                       "the last N epochs (default 1), and the best with --eval-every")
    train.add_argument("--no-hybridize", action="store_true",
                       help="run the networks without compiling them (slower, easier to debug)")

    evaluate = command("evaluate", cmd_evaluate, "proposal recall on a split", data=False)
    evaluate.add_argument("--split", metavar="S", help="default: val of data with splits "
                          "(and of the run's own data), all of a single annotation file")
    evaluate.add_argument("--ks", type=_ks, metavar="100,300,1000",
                          help="the proposal counts to report (default: the run's ks)")
    evaluate.add_argument("--batch-size", type=_positive, metavar="N",
                          help="images a batch (default: the run's batch_size)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--out", metavar="DIR", help="where recall_iou.png and "
                          "recall_proposals.png go (default: the run folder)")

    predict = command("predict", cmd_predict, "proposals for image files or folders")
    predict.add_argument("images", nargs="*", metavar="IMAGE",
                         help="image files or folders (their image files)")
    predict.add_argument("--data", help="also the images of a split of this data (a single "
                         "annotation file: all of it)")
    predict.add_argument("--split", metavar="S", help="the split of --data (default: all of "
                         "a single annotation file, else val)")
    predict.add_argument("--data-images", metavar="DIR",
                         help="the image folder of a --data COCO .json file")
    predict.add_argument("--top-k", type=_count, default=10, metavar="K",
                         help="the best K proposals of each image (default 10; 0 allowed)")
    predict.add_argument("--format", choices=("rpn", "coco"), default="rpn", metavar="F",
                         help="proposals.json in the package's layout (rpn, the default) "
                         "or COCO's results format (coco; docs/formats.md)")
    predict.add_argument("--out", required=True, metavar="DIR",
                         help="the output folder: proposals.json and one picture an image")

    propose = command("propose", cmd_propose, "proposals of a whole split, for a second "
                      "stage", data=True)
    propose.add_argument("--split", metavar="S", help="default: val of data with splits, "
                         "all of a single annotation file")
    propose.add_argument("--top-k", type=_positive, default=None, metavar="K",
                         help="at most K an image (default: all the model keeps, 1000)")
    propose.add_argument("--batch-size", type=_positive, metavar="N",
                         help="images a batch (default: the run's batch_size)")
    propose.add_argument("--format", choices=FORMATS, default="npz", metavar="F",
                         help="npz (the default; rpn.load_proposals reads it), coco (COCO's "
                         "results), detectron2 or mmdet (their pickled proposal files)")
    propose.add_argument("--out", required=True, metavar="FILE", help="the proposal file")

    export = command("export", cmd_export, "the whole proposal pipeline as one MXNet graph")
    export.add_argument("--out", required=True, metavar="DIR", help="the export folder")

    env = sub.add_parser("env", help="Python, MXNet and devices; --check trains and times",
                         epilog=epilog())
    add_env_arguments(env)
    env.set_defaults(func=cmd_env)
    return parser


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
            return args.func(args)
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
