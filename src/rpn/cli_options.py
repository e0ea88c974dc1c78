"""The options of the ``rpn`` command line: its parser, every command's
options with their help text (``docs/cli.md`` lists the same; a test
compares them), and the types that check each value. :mod:`rpn.cli` runs
the command parsed.
"""
import argparse
import os

from . import __version__
from .config import PRESETS
from .docs import epilog
from .env import add_arguments as add_env_arguments
from .proposals.formats import FORMATS

__all__ = ["build_parser", "UsageError", "KVSTORES", "PRESET_NAMES"]


class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2; ``command``: the
    (sub)command whose arguments were wrong, when known."""

    def __init__(self, message, command=None):
        super().__init__(message)
        self.command = command


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message, self.prog)


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


def _ks(text):
    try:
        return tuple(sorted({_positive(k) for k in text.split(",")}))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"--ks {text!r}: {error}") from None


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

    def command(name, help_text, *, data=None, model=True):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog())
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

    train = command("train", "train an RPN into a run folder", data=False,
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
                       help="the settings to start from: default, chapter, open-world "
                       "(classes never trained on), small-objects (small objects in large "
                       "photographs) or faster-rcnn (default: default)")
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

    evaluate = command("evaluate", "proposal recall on a split", data=False)
    evaluate.add_argument("--split", metavar="S", help="default: val of data with splits "
                          "(and of the run's own data), all of a single annotation file")
    evaluate.add_argument("--ks", type=_ks, metavar="100,300,1000",
                          help="the proposal counts to report (default: the run's ks)")
    evaluate.add_argument("--batch-size", type=_positive, metavar="N",
                          help="images a batch (default: the run's batch_size)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--out", metavar="DIR", help="where recall_iou.png and "
                          "recall_proposals.png go (default: the run folder)")

    predict = command("predict", "proposals for image files or folders")
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

    propose = command("propose", "proposals of a whole split, for a second "
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

    export = command("export", "the whole proposal pipeline as one MXNet graph")
    export.add_argument("--out", required=True, metavar="DIR", help="the export folder")

    env = sub.add_parser("env", help="Python, MXNet and devices; --check trains and times",
                         epilog=epilog())
    add_env_arguments(env)
    return parser
