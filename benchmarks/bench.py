"""Speed and memory of the package beside the chapter's draft, in one run.

    python benchmarks/bench.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench.py --quick    # smaller sizes, for CI
    python benchmarks/bench.py --sweep    # also the labeler's cost table

The GluonCV peer runs when .venv-gluoncv exists (make bench-peer makes it).

Prints one JSON object: medians in milliseconds after warm-up, the ratios
chapter / package (higher is better for the package), the targets of the
speed issue with whether each holds, and the machine's facts. The chapter's
helpers are reimplemented plainly in ``chapter_draft.py`` beside this file.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, init, np, npx

import rpn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chapter_draft  # noqa: E402
import labeling  # noqa: E402


def median_ms(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
        npx.waitall()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        npx.waitall()
        times.append((time.perf_counter() - tic) * 1000)
    return statistics.median(times)


def ground_truth(rng, batch, objects, fewest=1):
    """(B, G, 5) random objects, some images with fewer (padding rows)."""
    gt = onp.full((batch, objects, 5), -1.0, dtype="float32")
    for b in range(batch):
        k = rng.integers(fewest, objects + 1)
        xy = rng.uniform(0, 0.6, size=(k, 2))
        wh = rng.uniform(0.1, 0.4, size=(k, 2))
        gt[b, :k, 0] = rng.integers(0, 3, size=k)
        gt[b, :k, 1:3], gt[b, :k, 3:] = xy, xy + wh
    return np.array(gt)


def clustered_boxes(rng, n):
    centres = rng.uniform(0.1, 0.7, size=(20, 2))[rng.integers(0, 20, size=n)]
    xy = onp.clip(centres + rng.normal(0, 0.03, size=(n, 2)), 0, 0.8)
    wh = rng.uniform(0.05, 0.2, size=(n, 2))
    return np.array(onp.concatenate([xy, xy + wh], axis=1).T.astype("float32"))


def bench_targets(results, rng, repeats, quick):
    # many objects (the first round's inputs, which favour the package over
    # the chapter's per-object loop) and few (1 to 4, the common case)
    for name, (batch, h, w, objects) in {
            "rpn_targets_b32_320": (32, 8, 8, 6),
            "rpn_targets_b2_9500": (2, 38, 50, 20),
            "rpn_targets_b32_320_few": (32, 8, 8, 4),
            "rpn_targets_b2_9500_few": (2, 38, 50, 4)}.items():
        anchors = rpn.generate_anchors(h, w, rpn.RPN_SIZES, rpn.RPN_RATIOS)
        gt = ground_truth(rng, batch, objects)
        results[name] = {
            "chapter": median_ms(lambda: chapter_draft.rpn_targets(gt, anchors),
                                 max(2, repeats // 3)),
            "package": median_ms(lambda: rpn.rpn_targets(gt, anchors), repeats)}


def bench_nms(results, rng, repeats, quick):
    n = 2000
    boxes = clustered_boxes(rng, n)
    scores = np.array(rng.uniform(size=n).astype("float32"))
    data = np.concatenate([scores[:, None], boxes.T], axis=1)[None].as_nd_ndarray()
    entry = {
        "chapter_numpy": median_ms(lambda: chapter_draft.nms(scores, boxes, 0.5, use_numpy=True),
                                   repeats),
        "package": median_ms(lambda: rpn.nms(scores, boxes, 0.5).asnumpy(), repeats),
        "native": median_ms(lambda: mx.nd.contrib.box_nms(
            data, overlap_thresh=0.5, coord_start=1, score_index=0, id_index=-1,
            force_suppress=True).asnumpy(), repeats)}
    if not quick:
        entry["chapter_mxnet_np"] = median_ms(lambda: chapter_draft.nms(scores, boxes, 0.5), 1, 0)
    results["nms_2000"] = entry


def bench_predict(results, rng, repeats, quick):
    """predict_rpn beside the chapter's, and beside what it cannot avoid: the
    head's forward pass plus one native NMS call on the same boxes."""
    from rpn.boxes import _decode
    batch = 8 if quick else 32
    head = rpn.RPNOutput()
    head.initialize(init.Xavier())
    head.hybridize()
    features = np.random.normal(size=(batch, 512, 8, 8))
    anchors = rpn.rpn_anchors(features)
    cls_preds, box_preds = head(features)
    scores = npx.softmax(cls_preds, axis=-1)[:, 1].reshape(batch, -1)
    boxes = np.clip(_decode(anchors.T[None], box_preds.reshape(batch, -1, 4)), 0, 1)
    data = np.concatenate([scores[..., None], boxes], axis=-1).as_nd_ndarray()
    results[f"predict_rpn_b{batch}"] = {
        "chapter": median_ms(lambda: chapter_draft.predict_rpn(features, head, rpn.rpn_anchors, 0.5),
                             max(2, repeats // 2)),
        "package": median_ms(lambda: rpn.predict_rpn(features, head, rpn.rpn_anchors, 0.5),
                             repeats),
        "head": median_ms(lambda: head(features), repeats),
        "native_nms": median_ms(lambda: mx.nd.contrib.box_nms(
            data, overlap_thresh=0.5, coord_start=1, score_index=0, id_index=-1,
            force_suppress=True), repeats)}
    # the proposal model (one graph, backbone included) beside its backbone
    # and head plus one native NMS call
    size = 128 if quick else 256
    model = rpn.RegionProposalNetwork.from_settings(
        rpn.config.PRESETS["chapter"].replace(size=size).model, [mx.cpu()])
    model.hybridize(static_alloc=True)
    X = np.random.normal(size=(batch, 3, size, size))
    sizes = np.full((batch, 2), float(size))
    parts = model.backbone, model.head
    results[f"proposal_model_b{batch}"] = {
        "model": median_ms(lambda: model(X, sizes), repeats),
        "backbone_and_head": median_ms(lambda: parts[1](parts[0](X)), repeats),
        "native_nms": results[f"predict_rpn_b{batch}"]["native_nms"]}


def _backbone_step(backbone, trainer, X):
    with autograd.record():
        value = backbone(X).mean()
    value.backward()
    trainer.step(1)


def bench_training(results, repeats, quick):
    size, batch = (128, 8) if quick else (256, 32)
    steps = 2 if quick else 3
    train_iter, _ = rpn.load_data_synthetic(batch, size, size, num_train=batch, num_val=batch,
                                            augment=False)
    X, Y = next(iter(train_iter))
    entry = {"size": size, "batch": batch}
    for hybrid in (False, True):
        mx.random.seed(0)
        backbone = rpn.detection_backbone()
        if hybrid:
            backbone.hybridize()
        trainer = gluon.Trainer(backbone.collect_params(), "sgd", {"learning_rate": 0.01})
        key = "backbone_hybrid" if hybrid else "backbone"
        entry[key] = median_ms(lambda: _backbone_step(backbone, trainer, X), steps)
    # the chapter's step: not hybridized, the draft's labeler and loss
    backbone, head = rpn.detection_backbone(), rpn.RPNOutput()
    head.initialize(init.Xavier())
    trainers = [gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "wd": 1e-4})
                for net in (head, backbone)]
    loss = chapter_draft.DetectionLoss(1)
    entry["chapter_step"] = median_ms(lambda: chapter_draft.train_step(
        backbone, head, trainers, loss, X, Y, rpn.rpn_anchors), steps)
    # the package's step, as train_detection runs it (hybridized, metrics read)
    backbone, head = rpn.detection_backbone(), rpn.RPNOutput()
    head.initialize(init.Xavier())
    rpn.train_detection(backbone, head, rpn.rpn_batch, [(X, Y)], None, rpn.DetectionLoss(1),
                        1, 0.01, 0.01, mx.cpu(), verbose=False)              # warm-up
    tic = time.perf_counter()
    rpn.train_detection(backbone, head, rpn.rpn_batch, [(X, Y)] * steps, None,
                        rpn.DetectionLoss(1), 1, 0.01, 0.01, mx.cpu(), verbose=False)
    entry["package_step"] = (time.perf_counter() - tic) * 1000 / steps
    entry["chapter_images_per_sec"] = batch / entry["chapter_step"] * 1000
    entry["package_images_per_sec"] = batch / entry["package_step"] * 1000
    results["training_step"] = entry


_HWM = r"""
def peak_kb():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's
    # peak across fork and exec
    with open("/proc/self/status") as f:
        return int([l for l in f if l.startswith("VmHWM")][0].split()[1])
"""

_MEMORY_SCRIPT = _HWM + r"""
import sys, mxnet as mx, rpn
sys.path.insert(0, {bench_dir!r})
import chapter_draft
from mxnet import gluon, init
size, batch, steps, which = {size}, {batch}, {steps}, {which!r}
train_iter, _ = rpn.load_data_synthetic(batch, size, size, num_train=batch * steps, num_val=batch)
backbone, head = rpn.detection_backbone(), rpn.RPNOutput()
head.initialize(init.Xavier())
if which == "package":
    rpn.train_detection(backbone, head, rpn.rpn_batch, train_iter, None, rpn.DetectionLoss(1),
                        1, 0.01, 0.01, mx.cpu(), verbose=False)
else:
    trainers = [gluon.Trainer(n.collect_params(), "sgd", {{"learning_rate": 0.01}})
                for n in (head, backbone)]
    loss = chapter_draft.DetectionLoss(1)
    for X, Y in train_iter:
        chapter_draft.train_step(backbone, head, trainers, loss, X, Y, rpn.rpn_anchors)
print(peak_kb())
"""

_PIPELINE_SCRIPT = r"""
import psutil, rpn
root = {root!r}
train_iter, _ = rpn.load_data_voc_detection({batch}, 256, 256, classes=rpn.SYNTHETIC_CLASSES,
                                            voc_dir=root, num_workers=2)
me = psutil.Process()

def total_kb():   # this process and its decoding workers
    procs = [me] + me.children(recursive=True)
    return sum(p.memory_info().rss for p in procs) // 1024

it = iter(train_iter)
next(it)
first = peak = total_kb()
count = 1
for _ in it:
    count += 1
    peak = max(peak, total_kb())
print(first, peak, count)
"""


def _run(script):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    return [int(v) for v in out.stdout.split()]


def bench_memory(results, quick):
    size, batch, steps = (128, 8, 2) if quick else (256, 32, 3)
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    peaks = {which: _run(_MEMORY_SCRIPT.format(bench_dir=bench_dir, size=size, batch=batch,
                                               steps=steps, which=which))[0]
             for which in ("chapter", "package")}
    results["memory_peak_kb"] = dict(peaks, size=size, batch=batch)
    with tempfile.TemporaryDirectory() as root:
        batch = 8
        images = 16 * batch if quick else 40 * batch
        rpn.write_voc(root, num_train=images, num_val=batch, height=256, width=256)
        first, last, count = _run(_PIPELINE_SCRIPT.format(root=root, batch=batch))
        decoded_batch_kb = batch * 256 * 256 * 3 * 4 / 1024
        results["data_pipeline"] = {
            "images": images, "batches": count, "rss_after_first_batch_kb": first,
            "rss_peak_kb": last, "decoded_batch_kb": decoded_batch_kb,
            "growth_in_batches": (last - first) / decoded_batch_kb}


def bench_preset_proposals(results, repeats, quick):
    """The proposal model of each preset at the default's scale (16 images of
    112 x 112 pixels, random weights: the cost does not depend on them), as
    ``predict``, ``propose`` and ``evaluate`` run it; ``open-world`` ranks
    by its quality branch instead of the classifier (issue 26)."""
    batch, size = (4 if quick else 16), 112
    X = np.random.normal(size=(batch, 3, size, size))
    sizes = np.full((batch, 2), float(size))
    times = {}
    for preset in ("default", "open-world"):
        mx.random.seed(0)
        model = rpn.RegionProposalNetwork.from_settings(
            rpn.config.PRESETS[preset].model, [mx.cpu()])
        model.hybridize(static_alloc=True)
        times[preset] = median_ms(lambda: model(X, sizes), repeats)
    results[f"preset_proposals_b{batch}"] = times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sweep", action="store_true", help="the labeler's cost table")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    rng = onp.random.default_rng(0)
    mx.random.seed(0)
    results = {}
    bench_targets(results, rng, repeats, args.quick)
    results["labeling_vs_gluoncv"] = labeling.bench_peer(median_ms, repeats)
    if args.sweep:
        results["labeling_sweep"] = labeling.bench_sweep(median_ms, max(3, repeats // 2))
    bench_nms(results, rng, repeats, args.quick)
    bench_predict(results, rng, repeats, args.quick)
    bench_preset_proposals(results, repeats, args.quick)
    bench_training(results, repeats, args.quick)
    bench_memory(results, args.quick)

    t, n = results["rpn_targets_b32_320"], results["nms_2000"]
    p = [v for k, v in results.items() if k.startswith("predict_rpn")][0]
    pm = [v for k, v in results.items() if k.startswith("proposal_model")][0]
    peer = results["labeling_vs_gluoncv"]
    s, m = results["training_step"], results["memory_peak_kb"]
    ratios = {
        "rpn_targets_b32_320": t["chapter"] / t["package"],
        "rpn_targets_b2_9500": results["rpn_targets_b2_9500"]["chapter"]
        / results["rpn_targets_b2_9500"]["package"],
        "nms_vs_chapter_numpy": n["chapter_numpy"] / n["package"],
        "nms_package_over_native": n["package"] / n["native"],
        "predict_rpn": p["chapter"] / p["package"],
        "predict_rpn_over_head_plus_nms": p["package"] / (p["head"] + p["native_nms"]),
        "proposal_model_over_parts_plus_nms": pm["model"] / (pm["backbone_and_head"]
                                                             + pm["native_nms"]),
        "rpn_targets_b32_320_few": results["rpn_targets_b32_320_few"]["chapter"]
        / results["rpn_targets_b32_320_few"]["package"],
        "rpn_targets_b2_9500_few": results["rpn_targets_b2_9500_few"]["chapter"]
        / results["rpn_targets_b2_9500_few"]["package"],
        "chapter_step_over_backbone": s["chapter_step"] / s["backbone"],
        "package_step_over_backbone": s["package_step"] / s["backbone_hybrid"],
        "images_per_sec_package_over_chapter": s["package_images_per_sec"]
        / s["chapter_images_per_sec"],
        "memory_package_over_chapter": m["package"] / m["chapter"],
    }
    presets = [v for k, v in results.items() if k.startswith("preset_proposals")][0]
    ratios["open_world_over_default_proposals"] = presets["open-world"] / presets["default"]
    if "chapter_mxnet_np" in n:
        ratios["nms_vs_chapter_mxnet_np"] = n["chapter_mxnet_np"] / n["package"]
    for name, entry in peer.items():
        if entry["gluoncv"] is not None:
            ratios[f"gluoncv_over_rpn_{name}"] = entry["gluoncv"] / entry["rpn"]
    targets = {
        "rpn_targets_b32_320 >= 50x": ratios["rpn_targets_b32_320"] >= 50,
        "rpn_targets_b2_9500 >= 5x": ratios["rpn_targets_b2_9500"] >= 5,
        "nms >= 3x chapter numpy": ratios["nms_vs_chapter_numpy"] >= 3,
        "nms within 1.2x native": ratios["nms_package_over_native"] <= 1.2,
        "predict_rpn >= 20x": ratios["predict_rpn"] >= 20,
        "predict_rpn <= 1.3x head + NMS": ratios["predict_rpn_over_head_plus_nms"] <= 1.3,
        "proposal model <= 1.3x backbone + head + NMS":
            ratios["proposal_model_over_parts_plus_nms"] <= 1.3,
        "open-world proposals <= 1.3x default's":
            ratios["open_world_over_default_proposals"] <= 1.3,
        "step <= 1.02x backbone": ratios["package_step_over_backbone"] <= 1.02,
        "images/s >= 1.3x chapter": ratios["images_per_sec_package_over_chapter"] >= 1.3,
        "memory <= 1.2x chapter": ratios["memory_package_over_chapter"] <= 1.2,
        "pipeline holds a few batches": results["data_pipeline"]["growth_in_batches"] <= 4,
    }
    for name in peer:
        key = f"gluoncv_over_rpn_{name}"
        if key in ratios:
            targets[f"labeling at {name} at least as fast as GluonCV"] = ratios[key] >= 1
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "mxnet": mx.__version__, "machine": platform.machine(),
               "gpus": mx.context.num_gpus(),
               "features": [f.name for f in mx.runtime.Features().values() if f.enabled][:12]}
    print(json.dumps({"quick": args.quick, "times_ms": results, "ratios": ratios,
                      "targets": targets, "machine": machine}, indent=1))


if __name__ == "__main__":
    main()
