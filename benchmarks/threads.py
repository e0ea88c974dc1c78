"""A training step on one operator thread (what MXNet 1.9.1 chooses on a
machine whose cores show one hardware thread each) against the threads
rpn chooses (the physical cores: rpn.ops.threads), in one run.

    python benchmarks/threads.py            # the default and small-objects presets
    python benchmarks/threads.py --steps 4  # fewer steps

Each measurement runs in a child process (MXNet reads its thread count once,
when it loads) that times the training step of ``rpn env --check``
(:func:`rpn.env.check_device`: two warm-up batches, then the rest) on
synthetic images at the preset's batch: the default's 16 images of 112
pixels, small-objects' 4 windows of 512 (from 512-pixel images). Prints one JSON
object: wall and CPU milliseconds a step for each, and the ratios.
"""
import argparse
import json
import os
import subprocess
import sys

#: preset -> (batch, image side) of its training steps
SHAPES = {"default": (16, 112), "small-objects": (4, 512)}


def child(preset, steps):
    """Time ``steps`` training steps of ``preset`` in this process
    (:func:`rpn.env.check_device`, the check of ``rpn env --check``)."""
    import rpn  # noqa: F401  (before MXNet: its thread count)
    import mxnet as mx
    from rpn.env import check_device
    batch, side = SHAPES[preset]
    row = check_device(mx.cpu(), steps=steps, batch_size=batch, size=side, preset=preset)
    if not row["ok"]:
        raise SystemExit(f"threads: {preset}: {row['error']}")
    return {"step_ms": row["train_step_ms"], "cpu_ms": row["train_step_cpu_ms"],
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
