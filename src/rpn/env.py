"""What this machine offers the package: ``rpn env`` (or ``python -m rpn.env``).

Prints Python's and MXNet's versions, the features MXNet was built with
(CUDA, cuDNN, MKL-DNN, the distributed KVStore), and the GPUs MXNet sees
with their memory. ``--check`` then trains a few steps and proposes on
every visible device (the CPU included) and prints, for each, the time of
a training step, images a second, the time of a batch of proposals and the
peak memory: one command that tells a GPU user whether an ``mxnet-cu1xx``
install works and what it gives. ``--json`` prints one JSON object.
"""
import argparse
import json
import platform
import resource
import sys
import time

__all__ = ["describe", "check_device", "main"]

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
            "gpus": gpus}


def _peak_mb(ctx):
    import mxnet as mx
    if ctx.device_type == "gpu":
        free, total = mx.context.gpu_memory_info(ctx.device_id)
        return (total - free) >> 20
    # the process's peak resident memory (kilobytes on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def check_device(ctx, *, steps=6, batch_size=4, size=128):
    """Train ``steps`` steps of the default model on synthetic images at
    ``size`` pixels on ``ctx`` and propose for one batch; returns a dict of
    timings (after a warm-up) and peak memory, or the error."""
    import mxnet as mx
    from mxnet import np
    from .config import PRESETS
    from .engine import learning_rates, normalised_losses, train_loop
    from .loss import ProposalLoss
    from .model import RegionProposalNetwork
    from .sources import make_loader, open_split
    config = PRESETS["default"].replace(size=size, max_size=size, batch_size=batch_size)
    try:
        found = open_split("synthetic", "train", synthetic=dict(
            size=size, num_train=batch_size * (steps + 2), num_val=batch_size, seed=0))
        batches = list(make_loader(found, config.model.resize_rule(), batch_size, train=True,
                                   size_divisor=config.model.size_divisor))
        mx.random.seed(0)
        model = RegionProposalNetwork.from_settings(config.model, [ctx])
        loss = ProposalLoss.from_settings(config.model)

        def train(part):
            # the training loop of rpn train, on this device
            train_loop(model.parts(), learning_rates(model.parts(), 1e-3, 1e-3),
                       lambda X, Y, sizes: model.training_outputs(X, sizes, Y, crowd=False,
                                                                  validate=False),
                       lambda outputs: normalised_losses(loss, outputs), part, 1, [ctx],
                       optimizer="adam", seed=0, log_interval=steps)
            mx.nd.waitall()

        train(batches[:2])
        tic = time.perf_counter()
        train(batches[2:])
        step = (time.perf_counter() - tic) / (len(batches) - 2)
        X, _, info = batches[0]
        X, sizes = X.as_in_context(ctx), np.array(info.sizes, dtype="float32", ctx=ctx)
        model.hybridize(static_alloc=True)
        model(X, sizes)[0].wait_to_read()
        tic = time.perf_counter()
        for _ in range(3):
            model(X, sizes)[0].wait_to_read()
        propose = (time.perf_counter() - tic) / 3
    except Exception as error:  # a broken device or driver: report it, go on
        return {"device": str(ctx), "ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"device": str(ctx), "ok": True, "size": size, "batch_size": batch_size,
            "train_step_ms": round(step * 1000, 1),
            "images_per_sec": round(batch_size / step, 1),
            "proposals_ms_per_batch": round(propose * 1000, 1),
            "peak_memory_mb": _peak_mb(ctx)}


def _print(info, checks):
    print(f"python {info['python']}, mxnet {info['mxnet']}, numpy {info['numpy']}")
    print(f"platform {info['platform']}")
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
        if c["ok"]:
            print(f"{c['device']}: training step {c['train_step_ms']} ms "
                  f"({c['images_per_sec']} images/s, batch {c['batch_size']} at "
                  f"{c['size']} px), proposals {c['proposals_ms_per_batch']} ms a batch, "
                  f"peak memory {c['peak_memory_mb']} MB")
        else:
            print(f"{c['device']}: FAILED: {c['error']}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rpn env", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="train and propose on every visible device, with timings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", type=int, default=128, help="image side for --check")
    args = parser.parse_args(argv)
    import mxnet as mx
    info = describe()
    checks = []
    if args.check:
        devices = [mx.cpu()] + [mx.gpu(i) for i in range(len(info["gpus"]))]
        checks = [check_device(ctx, size=args.size) for ctx in devices]
    if args.json:
        print(json.dumps(dict(info, checks=checks)))
    else:
        _print(info, checks)
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    import rpn  # noqa: F401  (numpy mode, as the package runs)
    sys.exit(main())
