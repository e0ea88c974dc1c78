"""The labeler at the sizes of real images: beside GluonCV's
RPNTargetGenerator (in its own process and environment, see peer_env.sh),
and as a sweep over batch, anchors and objects. Used by bench.py.

Inputs are made deterministically from a seed: ``B`` images of ``N``
anchors (the product anchors of a feature map, normalised) and 1 to ``G``
objects each (widths and heights 5% to 30% of the image), padded to ``G``.
GluonCV labels each image's real objects in pixels of a 600 x 600 image at
0.7 / 0.3, as its Faster R-CNN does; ``rpn.rpn_targets`` labels the batch
with its defaults (validation included).
"""
import json
import math
import os
import subprocess
import tempfile

import numpy as onp
from mxnet import np

import rpn

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_PYTHON = os.path.join(HERE, "..", ".venv-gluoncv", "bin", "python")

#: (batch, anchors an image, most objects an image): the issue's three scales,
#: and what the default resize rule gives on photographs (shorter side 112,
#: stride 8, 20 anchors a pixel: about 14 x 20 cells; batch 16) and
#: Faster R-CNN's 600 x 1000 at stride 16 with 9 anchors.
SCALES = {"b32_n320_g4": (32, 320, 4), "b2_n9500_g4": (2, 9500, 4),
          "b8_n34200_g50": (8, 34200, 50), "b16_n5600_g10": (16, 5600, 10),
          "b2_n21000_g20": (2, 21000, 20)}


def make_case(batch, num, objects, seed=0):
    """(ground truth (B, G, 5), anchors (4, N)) as mxnet arrays."""
    rng = onp.random.default_rng(seed)
    side = int(math.ceil(math.sqrt(num / 9)))
    anchors = rpn.generate_anchors(side, side, [0.1, 0.2, 0.4], [0.5, 1, 2],
                                   product=True)[:, :num]
    gt = onp.full((batch, objects, 5), -1.0, "float32")
    for b in range(batch):
        k = rng.integers(1, objects + 1)
        xy = rng.uniform(0, 0.7, (k, 2))
        gt[b, :k, 0] = 0
        gt[b, :k, 1:3], gt[b, :k, 3:] = xy, onp.minimum(xy + rng.uniform(0.05, 0.3, (k, 2)), 1)
    return np.array(gt), anchors


def bench_peer(median_ms, repeats):
    """Median ms of rpn and GluonCV at every scale, measured alternately in
    one run; GluonCV is ``None`` when .venv-gluoncv is absent."""
    out = {}
    arrays = {}
    for name, (batch, num, objects) in SCALES.items():
        gt, anchors = make_case(batch, num, objects)
        out[name] = {"rpn": median_ms(lambda: rpn.rpn_targets(gt, anchors), repeats)}
        arrays["gt_" + name], arrays["anchors_" + name] = gt.asnumpy(), anchors.asnumpy()
    if not os.path.exists(PEER_PYTHON):
        for entry in out.values():
            entry["gluoncv"] = None
        return out
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "cases.npz")
        onp.savez(path, **arrays)
        peer = subprocess.run([PEER_PYTHON, os.path.join(HERE, "peer_gluoncv.py"), path,
                               str(repeats)], capture_output=True, text=True, check=True)
    times = json.loads(peer.stdout.strip().splitlines()[-1])
    for name in out:
        out[name]["gluoncv"] = times[name]
    return out


def bench_sweep(median_ms, repeats):
    """The labeler's cost against batch, anchors and objects: ms, and ms per
    million anchor-object pairs (flat when the cost is linear in B x N x G)."""
    rows = []
    for batch in (1, 4, 16):
        for num in (2000, 8000, 32000):
            for objects in (2, 8, 32):
                gt, anchors = make_case(batch, num, objects, seed=batch + num + objects)
                ms = median_ms(lambda: rpn.rpn_targets(gt, anchors), repeats)
                rows.append({"batch": batch, "anchors": num, "objects": objects, "ms": ms,
                             "ms_per_million_pairs": ms / (batch * num * objects) * 1e6})
    return rows
