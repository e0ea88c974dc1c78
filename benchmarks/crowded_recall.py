"""Proposal recall on crowded images: the time and peak memory of
``rpn.ProposalRecall`` (what ``rpn evaluate`` and the end of ``rpn train``
measure with) on images of thousands of objects, as shelves, crowds and
drone views have them.

Each image is 4,000 x 3,000 pixels with ``--objects`` boxes of 12 to 200
pixels a side (small, medium and large by COCO's ranges) placed at random,
so that they touch and overlap, and a few crowd regions; its ``--proposals``
are boxes near objects (70%, several on one object now and then) and
anywhere (30%), best first. The inputs depend on ``--seed`` only.

    .venv/bin/python benchmarks/crowded_recall.py            # 12 x 8,000 x 1,000
    PYTHONPATH=other/src .venv/bin/python benchmarks/crowded_recall.py   # another version

Prints one JSON object: the sizes, ``seconds`` (wall time of every
``update_image`` and ``result``), ``cpu_seconds`` (the process's CPU time
over the same, which other jobs on a shared machine do not inflate),
``peak_rss_mb`` (the process's peak resident memory above what it held
before the recall started), and the figures, so that two versions can be
checked to agree.
"""
import argparse
import json
import resource
import sys
import time

import numpy as onp


def crowded_image(rng, objects, proposals, width=4000, height=3000):
    """``(objects (G, 4), crowd (C, 4), proposals (M, 4))`` in pixels."""
    sides = onp.exp(rng.uniform(onp.log(12), onp.log(200), (objects, 1))) \
        * rng.uniform(0.7, 1.4, (objects, 2))
    corners = rng.uniform(0, 1, (objects, 2)) * ([width, height] - sides)
    boxes = onp.concatenate([corners, corners + sides], 1)
    crowd = onp.array([[x, y, x + 400, y + 300] for x, y in
                       rng.uniform(0, 1, (5, 2)) * [width - 400, height - 300]])
    near = boxes[rng.integers(0, objects, proposals)]
    near = near + rng.normal(0, 0.08, (proposals, 4)) * (near[:, 2:] - near[:, :2]).repeat(2, 1)
    anywhere = rng.uniform(0, 1, (proposals, 2)) * [width - 200, height - 200]
    anywhere = onp.concatenate([anywhere, anywhere + rng.uniform(8, 200, (proposals, 2))], 1)
    found = onp.where((rng.random(proposals) < 0.7)[:, None], near, anywhere)
    found[:, 2:] = onp.maximum(found[:, 2:], found[:, :2] + 1)
    return boxes, crowd, onp.clip(found, 0, [width, height, width, height])


def _rss_peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--objects", type=int, default=8000)
    parser.add_argument("--proposals", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import rpn
    rng = onp.random.default_rng(args.seed)
    images = [crowded_image(rng, args.objects, args.proposals) for _ in range(args.images)]
    recall = rpn.ProposalRecall(ks=(100, 300, 1000))
    before = _rss_peak_mb()
    start, cpu = time.perf_counter(), time.process_time()
    for objects, crowd, proposals in images:
        recall.update_image(proposals, objects, crowd)
    result = recall.result()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"rpn": rpn.__file__, "images": args.images, "objects": args.objects,
                      "proposals": args.proposals, "seed": args.seed,
                      "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                      "peak_rss_mb": round(_rss_peak_mb() - before, 1),
                      "rss_before_mb": round(before, 1),
                      "figures": {k: round(v, 6) if isinstance(v, float) else v
                                  for k, v in result.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
