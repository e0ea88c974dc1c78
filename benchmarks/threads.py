"""A training step on one operator thread (what MXNet 1.9.1 chooses on a
machine whose cores show one hardware thread each) against the threads
rpn chooses (the physical cores: rpn.ops.threads), and, with
``--wait-policy``, rpn's threads with OpenMP's idle threads sleeping at once
(``OMP_WAIT_POLICY=passive``) against their default (spinning a while).

    python benchmarks/threads.py                  # the default and small-objects presets
    python benchmarks/threads.py --steps 4        # fewer steps
    python benchmarks/threads.py --wait-policy --repeats 5

Each measurement runs in a child process (MXNet reads its thread count once,
when it loads, and libgomp its wait policy) that times the training step of
``rpn env --check`` (:func:`rpn.env.check_device`: two warm-up batches, then
the rest) on synthetic images at the preset's batch: the default's 16 images
of 112 pixels, small-objects' 4 windows of 512 (from 512-pixel images). The
conditions alternate, ``--repeats`` times each, so that the shared machine's
load falls on all alike; each figure is the median. Prints one JSON object:
wall and CPU milliseconds a step for each condition, and the ratios to the first.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

#: preset -> (batch, image side) of its training steps
SHAPES = {"default": (16, 112), "small-objects": (4, 512)}

#: condition -> the environment it sets (None: rpn's choice of threads)
CONDITIONS = {"one_thread": {"MXNET_OMP_MAX_THREADS": "1"}, "rpn_default": {},
              "passive": {"OMP_WAIT_POLICY": "passive"}}


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


def measure(preset, steps, condition):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "RPN_THREADS",
                        "OMP_WAIT_POLICY")}
    env.update(CONDITIONS[condition])
    out = subprocess.run([sys.executable, __file__, "--child", preset, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--wait-policy", action="store_true",
                        help="rpn's threads against the same with OMP_WAIT_POLICY=passive")
    parser.add_argument("--child", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    from rpn.ops.threads import default_threads
    conditions = ["rpn_default", "passive"] if args.wait_policy else ["one_thread",
                                                                      "rpn_default"]
    report = {"physical_cores": default_threads(), "repeats": args.repeats, "presets": {}}
    for preset in SHAPES:
        rows = {c: [] for c in conditions}
        for _ in range(args.repeats):
            for condition in conditions:
                rows[condition].append(measure(preset, args.steps, condition))
        entry = {c: {"step_ms": statistics.median(r["step_ms"] for r in rows[c]),
                     "cpu_ms": statistics.median(r["cpu_ms"] for r in rows[c]),
                     "runs": [(r["step_ms"], r["cpu_ms"]) for r in rows[c]]}
                 for c in conditions}
        first, other = (entry[c] for c in conditions)
        entry["wall_speedup"] = round(first["step_ms"] / other["step_ms"], 2)
        entry["cpu_ratio"] = round(other["cpu_ms"] / first["cpu_ms"], 2)
        report["presets"][preset] = entry
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
