"""What this machine offers the package: ``rpn env`` (or ``python -m rpn.env``).

Prints Python's and MXNet's versions, the features MXNet was built with
(CUDA, cuDNN, MKL-DNN, the distributed KVStore), and the GPUs MXNet sees
with their memory. ``--check`` then trains a few steps and proposes on
every visible device (the CPU included) and prints, for each, the time of
a training step, images a second, the time of a batch of proposals and the
peak memory: one command that tells a GPU user whether an ``mxnet-cu1xx``
install works and what it gives. It times the preset's backbone on the CPU
and every backbone on a GPU (``--backbone`` chooses), and on every device
the ``faster-rcnn`` preset's ResNet-50 v1, with what one epoch of a
VOC-sized set (5,717 or 16,551 images) would cost at each preset's image
size, scaled from the timed images by their pixels. ``--amp`` adds a
float16 step on each GPU. ``--json`` prints one JSON object.
"""
import argparse
import json
import platform
import resource
import sys
import time

__all__ = ["describe", "check_device", "plan_checks", "voc_pixels", "add_arguments", "run",
           "main", "VOC_SETS"]

_FEATURES = ("CUDA", "CUDNN", "NCCL", "MKLDNN", "OPENMP", "DIST_KVSTORE", "SIGNAL_HANDLER")


def describe():
    """Versions, build features and visible GPUs, as a dict."""
    import mxnet as mx
    import numpy
    features = mx.runtime.Features()
    gpus = []
    for i in range(mx.context.num_gpus()):
        free, total = mx.context.gpu_memory_info(i)
        gpus.append({"device": f"gpu:{i}", "memory_total_mb": total >> 20,
                     "memory_free_mb": free >> 20})
    return {"python": platform.python_version(), "mxnet": mx.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(),
            "features": {name: features.is_enabled(name) for name in _FEATURES
                         if name in features},
            "gpus": gpus, "cpu_threads": _cpu_threads()}


def _cpu_threads():
    """MXNet's operator threads on the CPU and who chose them
    (:mod:`rpn.ops.threads`)."""
    from .ops.threads import current_threads, physical_cores
    threads = current_threads()
    return dict(threads, set_by=threads["set_by"] or "mxnet (half the processors it sees)",
                physical_cores=physical_cores())


def _peak_mb(ctx):
    import mxnet as mx
    if ctx.device_type == "gpu":
        free, total = mx.context.gpu_memory_info(ctx.device_id)
        return (total - free) >> 20
    # the process's peak resident memory (kilobytes on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


#: Training images of a VOC-sized set, for the cost of an epoch.
VOC_SETS = (("VOC 2012 train", 5717), ("VOC 07+12 trainval", 16551))
#: The preset whose epoch ``--check`` always prices on every device.
GPU_PRESET, GPU_BACKBONE = "faster-rcnn", "resnet50_v1"


def voc_pixels(model):
    """Input pixels of a typical VOC photograph (500 x 375, 4:3) under the
    resize rule of ``model`` (:class:`rpn.ModelSettings`), padded to its
    stride: 600 x 800 for ``faster-rcnn``."""
    step = model.size_divisor
    if model.resize == "fixed":
        short, long = model.size, model.size
    else:
        short, long = model.size, model.size * 4 / 3
        if long > model.max_size:
            short, long = model.max_size * 3 / 4, model.max_size
    return (-(-round(short) // step) * step) * (-(-round(long) // step) * step)


def _epoch_costs(model, ms_per_image, size):
    """Seconds of one epoch of each of :data:`VOC_SETS` at ``model``'s
    resize rule, from a step measured on ``size`` x ``size`` images
    (scaled by the pixels of an image)."""
    per_image = ms_per_image / 1000 * voc_pixels(model) / (size * size)
    return {name: round(per_image * count, 1) for name, count in VOC_SETS}


def check_device(ctx, *, steps=6, batch_size=4, size=128, preset="default", backbone=None,
                 amp=False):
    """Train ``steps`` steps of ``preset``'s model (with ``backbone``,
    default the preset's) on synthetic images at ``size`` pixels on ``ctx``
    and propose for one batch; returns a dict of timings (after a warm-up),
    peak memory and the cost of an epoch of each VOC-sized set at the
    preset's image size (``voc_epoch_s``, scaled from ``size`` by pixels),
    or the error. ``amp``: in float16 (:mod:`rpn.ops.precision`, which
    this turns on for the whole process: time float32 first)."""
    import mxnet as mx
    from mxnet import np

    from .config import PRESETS
    from .data.preprocess import Resize
    from .data.sources import make_loader, open_split
    from .model.network import RegionProposalNetwork
    from .training.step import ProposalStep
    from .training.trainer import Trainer
    base = PRESETS[preset]
    backbone = backbone or base.model.backbone
    row = {"device": str(ctx), "preset": preset, "backbone": backbone,
           "precision": "float16" if amp else "float32"}
    try:
        config = base.replace(size=size, max_size=size, batch_size=batch_size,
                              backbone=backbone)
        if amp:
            from .ops.precision import init
            from .training.amp import check_contexts
            check_contexts([ctx])
            init()
        found = open_split("synthetic", "train", synthetic=dict(
            size=size, num_train=batch_size * (steps + 2), num_val=batch_size, seed=0))
        batches = list(make_loader(found, Resize.of(config.model), batch_size, train=True,
                                   size_divisor=config.model.size_divisor))
        mx.random.seed(0)
        model = RegionProposalNetwork.from_settings(config.model, [ctx])
        step = ProposalStep(model, crowd=False)

        def train(part):
            # the training loop of rpn train, on this device
            Trainer(step, [ctx], optimizer="adam", seed=0, log_interval=steps,
                    amp=amp).train(part, 1)
            mx.nd.waitall()

        train(batches[:2])
        tic, cpu_tic = time.perf_counter(), _cpu_seconds()
        train(batches[2:])
        step = (time.perf_counter() - tic) / (len(batches) - 2)
        step_cpu = (_cpu_seconds() - cpu_tic) / (len(batches) - 2)
        X, _, info = batches[0]
        X, sizes = X.as_in_context(ctx), np.array(info.sizes, dtype="float32", ctx=ctx)
        model.hybridize(static_alloc=True)
        model(X, sizes)[0].wait_to_read()
        tic = time.perf_counter()
        for _ in range(3):
            model(X, sizes)[0].wait_to_read()
        propose = (time.perf_counter() - tic) / 3
    except Exception as error:  # a broken device or driver: report it, go on
        return dict(row, ok=False, error=f"{type(error).__name__}: {error}")
    return dict(row, ok=True, size=size, batch_size=batch_size,
                train_step_ms=round(step * 1000, 1),
                train_step_cpu_ms=round(step_cpu * 1000, 1),
                images_per_sec=round(batch_size / step, 1),
                proposals_ms_per_batch=round(propose * 1000, 1),
                peak_memory_mb=_peak_mb(ctx),
                voc_epoch_s=_epoch_costs(base.model, step * 1000 / batch_size, size))


def _cpu_seconds():
    """User + system CPU seconds of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print(info, checks):
    print(f"python {info['python']}, mxnet {info['mxnet']}, numpy {info['numpy']}")
    print(f"platform {info['platform']}")
    threads = info["cpu_threads"]
    print(f"cpu operator threads: {threads['threads'] or 'MXNet default'} (set by "
          f"{threads['set_by']}; {threads['physical_cores']} physical cores)")
    print("mxnet features: " + ", ".join(f"{k} {'on' if v else 'off'}"
                                         for k, v in info["features"].items()))
    if info["gpus"]:
        for gpu in info["gpus"]:
            print(f"{gpu['device']}: {gpu['memory_total_mb']} MB, "
                  f"{gpu['memory_free_mb']} MB free")
    else:
        print("no GPU visible to MXNet" + ("" if info["features"].get("CUDA") else
              " (this is a CPU build: pip install mxnet-cu112 or mxnet-cu117 for GPUs)"))
    for c in checks:
        what = f"{c['device']} {c['backbone']} ({c['preset']}, {c['precision']})"
        if not c["ok"]:
            print(f"{what}: FAILED: {c['error']}")
            continue
        print(f"{what}: training step {c['train_step_ms']} ms "
              f"({c['images_per_sec']} images/s, batch {c['batch_size']} at "
              f"{c['size']} px), proposals {c['proposals_ms_per_batch']} ms a batch, "
              f"peak memory {c['peak_memory_mb']} MB")
        print("    one epoch at the preset's image size: " + ", ".join(
            f"{name} ({count:,} images) ~{_duration(c['voc_epoch_s'][name])}"
            for name, count in VOC_SETS))


def _backbones(text):
    """``--backbone``: ``None`` (the default of each device), ``all``, or
    comma-separated names, each checked."""
    from .settings import BACKBONES
    if text is None:
        return None
    if text == "all":
        return list(BACKBONES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKBONES]
    if unknown or not names:
        raise ValueError(f"--backbone {text!r}: expected 'all' or names among "
                         f"{', '.join(BACKBONES)}")
    return names


def plan_checks(devices, preset, backbones):
    """The ``(ctx, preset, backbone)`` of each float32 check: ``backbones``
    (default: the preset's on a CPU, every one on a GPU) under ``preset``,
    and on every device the GPU preset's own model (:data:`GPU_PRESET`, the
    one whose VOC epoch the docs quote) unless it is among them."""
    from .config import PRESETS
    from .settings import BACKBONES
    plan = []
    for ctx in devices:
        names = backbones or ([PRESETS[preset].model.backbone]
                              if ctx.device_type == "cpu" else list(BACKBONES))
        plan += [(ctx, preset, name) for name in names]
        if (ctx, GPU_PRESET, GPU_BACKBONE) not in plan:
            plan.append((ctx, GPU_PRESET, GPU_BACKBONE))
    return plan


def add_arguments(parser):
    """The options of ``rpn env`` (and of ``python -m rpn.env``)."""
    from .config import PRESETS
    parser.add_argument("--check", action="store_true",
                        help="train and propose on every visible device, with timings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", type=int, default=128,
                        help="with --check: the image side of the timed steps (default 128)")
    parser.add_argument("--backbone", metavar="NAMES", help="with --check: the backbones to "
                        "time, comma-separated, or 'all' (default: the preset's on the CPU, "
                        "every one on a GPU)")
    parser.add_argument("--preset", default="default", choices=tuple(PRESETS),
                        help="with --check: the settings of the timed model: default, "
                        "chapter, open-world, small-objects or faster-rcnn (default: default)")
    parser.add_argument("--amp", action="store_true",
                        help="with --check: also a float16 step on each GPU")
    return parser


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rpn env", description=__doc__.splitlines()[0])
    return run(add_arguments(parser).parse_args(argv))


def run(args):
    """``rpn env`` with the parsed ``args`` (:func:`add_arguments`)."""
    try:
        backbones = _backbones(args.backbone)
    except ValueError as error:
        print(f"rpn env: error: {error}", file=sys.stderr)
        return 2
    import mxnet as mx
    info = describe()
    checks = []
    if args.check:
        devices = [mx.cpu()] + [mx.gpu(i) for i in range(len(info["gpus"]))]
        plan = plan_checks(devices, args.preset, backbones)
        checks = [check_device(ctx, size=args.size, preset=preset, backbone=name)
                  for ctx, preset, name in plan]
        if args.amp:        # float16 last: AMP cannot be turned off again
            checks += [check_device(ctx, size=args.size, preset=preset, backbone=name,
                                    amp=True)
                       for ctx, preset, name in plan if ctx.device_type == "gpu"]
            if not info["gpus"]:
                print("rpn env: --amp: no GPU visible, so no float16 step to time "
                      "(float16 training needs a GPU)", file=sys.stderr)
    if args.json:
        print(json.dumps(dict(info, checks=checks)))
    else:
        _print(info, checks)
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    import rpn  # noqa: F401  (numpy mode, as the package runs)
    sys.exit(main())
