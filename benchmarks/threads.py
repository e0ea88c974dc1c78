"""A training step on one operator thread (what MXNet 1.9.1 chooses on a
machine whose cores show one hardware thread each) against the threads
rpn chooses (the physical cores: rpn.ops.threads), in one run.

    python benchmarks/threads.py            # the default and small-objects presets
    python benchmarks/threads.py --steps 4  # fewer steps

Each measurement runs in a child process (MXNet reads its thread count once,
when it loads) that trains a warm-up and then ``--steps`` steps of the
preset's model on synthetic images at the preset's batch: the default's 16
images of 112 pixels, small-objects' 4 windows of 512. Prints one JSON
object: wall and CPU milliseconds a step for each, and the ratios.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

#: preset -> (batch, image side) of its training steps
SHAPES = {"default": (16, 112), "small-objects": (4, 512)}


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(preset, steps):
    """Time ``steps`` training steps of ``preset`` in this process."""
    import rpn  # noqa: F401  (before MXNet: its thread count)
    import mxnet as mx
    from rpn.config import PRESETS
    from rpn.data.preprocess import Resize
    from rpn.data.sources import make_loader, open_split
    from rpn.model.network import RegionProposalNetwork
    from rpn.training.step import ProposalStep
    from rpn.training.trainer import Trainer
    batch, side = SHAPES[preset]
    config = PRESETS["default"].replace(size=side, max_size=side, batch_size=batch)
    if preset != "default":          # the preset's network on images of a window's side
        model_settings = PRESETS[preset].replace(resize="keep_ratio", size=side, max_size=side,
                                                 window=None).model
    else:
        model_settings = config.model
    found = open_split("synthetic", "train", synthetic=dict(
        size=side, num_train=batch * (steps + 2), num_val=batch, seed=0))
    batches = list(make_loader(found, Resize.of(config.model), batch, train=True,
                               size_divisor=model_settings.size_divisor))
    mx.random.seed(0)
    model = RegionProposalNetwork.from_settings(model_settings, [mx.cpu()])
    step = ProposalStep(model, crowd=False)

    def train(part):
        Trainer(step, [mx.cpu()], optimizer="adam", seed=0, log_interval=steps).train(part, 1)
        mx.nd.waitall()
    train(batches[:2])
    wall, cpu = time.perf_counter(), _cpu()
    train(batches[2:])
    n = len(batches) - 2
    return {"step_ms": round(1000 * (time.perf_counter() - wall) / n, 1),
            "cpu_ms": round(1000 * (_cpu() - cpu) / n, 1),
            "threads": os.environ.get("MXNET_OMP_MAX_THREADS")}


def measure(preset, steps, threads):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "RPN_THREADS")}
    if threads is not None:
        env["MXNET_OMP_MAX_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, __file__, "--child", preset, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    from rpn.ops.threads import default_threads
    report = {"physical_cores": default_threads(), "presets": {}}
    for preset in SHAPES:
        one, chosen = measure(preset, args.steps, 1), measure(preset, args.steps, None)
        report["presets"][preset] = {
            "one_thread": one, "rpn_default": chosen,
            "wall_speedup": round(one["step_ms"] / chosen["step_ms"], 2),
            "cpu_ratio": round(chosen["cpu_ms"] / one["cpu_ms"], 2)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
