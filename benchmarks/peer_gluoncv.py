"""Times GluonCV's RPNTargetGenerator on the labeling cases of an .npz file
written by bench.py (``gt_<case>`` (B, G, 5) normalised, ``anchors_<case>``
(4, N)): image by image, in pixels of a 600 x 600 image, thresholds 0.7 /
0.3, as GluonCV's Faster R-CNN calls it. Runs in .venv-gluoncv (see
peer_env.sh); prints one JSON object of median milliseconds a batch.

    .venv-gluoncv/bin/python benchmarks/peer_gluoncv.py cases.npz
"""
import json
import sys
import time

import mxnet as mx
import numpy as onp
from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator

SIDE = 600.0


def median_ms(fn, repeats):
    fn()
    mx.nd.waitall()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        mx.nd.waitall()
        times.append(time.perf_counter() - tic)
    return 1000 * sorted(times)[len(times) // 2]


def main(path, repeats=7):
    cases = onp.load(path)
    generator = RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                                   pos_ratio=0.5, allowed_border=1e9)
    out = {}
    for key in sorted(k for k in cases.files if k.startswith("gt_")):
        name = key[3:]
        gt, anchors = cases[key], cases["anchors_" + name]
        anchors = mx.nd.array(anchors.T * SIDE)                           # (N, 4) pixels
        images = [mx.nd.array(g[g[:, 0] >= 0][:, 1:] * SIDE) for g in gt]  # (M, 4) each

        def run():
            return [generator(boxes, anchors, SIDE, SIDE) for boxes in images]
        out[name] = median_ms(run, repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 7)
