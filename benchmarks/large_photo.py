"""The time and memory of proposing one large photograph at its own
resolution, with the ``small-objects`` preset's model (issue 25).

Each size runs in a process of its own, so that its peak resident memory
(``ru_maxrss``) is its own: the model is built (random weights: the cost
does not depend on them), one photograph of random pixels goes through
``rpn.TrainedModel`` (the path of ``predict``, ``propose`` and
``evaluate``: whole up to ``max_pixels``, in tiles past it), once to warm
up and three times timed.

    PYTHONPATH=src .venv/bin/python benchmarks/large_photo.py
    PYTHONPATH=src .venv/bin/python benchmarks/large_photo.py --sizes 1080x1920,2160x3840
    PYTHONPATH=src .venv/bin/python benchmarks/large_photo.py --settings '{"pyramid": [2, 3]}'

Prints one JSON line a size: wall seconds (median of 3), CPU seconds, peak
resident memory in MiB, whether it was tiled, the proposals kept.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def measure(height, width, preset, settings=None):
    import mxnet as mx
    from mxnet import np

    import rpn
    from rpn.config import PRESETS
    config = PRESETS[preset].replace(**(settings or {}))
    mx.random.seed(0)
    net = rpn.RegionProposalNetwork.from_settings(config.model, [mx.cpu()])
    net.hybridize(static_alloc=True)
    model = rpn.TrainedModel(net, config)
    canvas = [-(-side // config.model.size_divisor) * config.model.size_divisor
              for side in (height, width)]
    X = np.random.normal(size=(1, 3, *canvas))
    sizes = np.array([[height, width]])
    model(X, sizes)[0].wait_to_read()                      # warm-up
    walls, cpu = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(3):
        tic = time.perf_counter()
        scores, _ = model(X, sizes)
        kept = int((scores.asnumpy() >= 0).sum())
        walls.append(time.perf_counter() - tic)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"size": f"{width}x{height}", "preset": preset,
            "tiled": canvas[0] * canvas[1] > config.model.max_pixels,
            "wall_s": round(statistics.median(walls), 2),
            "cpu_s": round((after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / 3,
                           2),
            "peak_rss_mib": after.ru_maxrss >> 10, "proposals": kept}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1080x1920,2160x3840,4320x7680",
                        help="HEIGHTxWIDTH,... (default: 1080p, 4K, 8K)")
    parser.add_argument("--preset", default="small-objects")
    parser.add_argument("--settings", default="{}",
                        help='changes to the preset, as JSON: \'{"pyramid": [2, 3]}\'')
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        height, width = (int(v) for v in args.one.split("x"))
        settings = json.loads(args.settings)
        print(json.dumps(dict(measure(height, width, args.preset, settings),
                              settings=settings)), flush=True)
        return
    for size in args.sizes.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", size, "--preset", args.preset,
                              "--settings", args.settings], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
