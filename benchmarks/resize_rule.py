"""Which resize rule should the command line use on photographs? Each
variant trains the default model for the same *CPU time* (this process's
user + system seconds, so other load on a shared machine does not favour
any variant), then reports proposal recall on the validation split.

    .venv/bin/python benchmarks/resize_rule.py --data ../shared/data/raccoon \
        --classes raccoon --budget 300 --out benchmarks/results/resize_rule.json

``--wide`` first writes a copy of the data whose photographs are cropped to
2:1 and 1:2 around their objects (photographs of several aspect ratios),
and measures on that too. Decoding runs in this process (``num_workers=0``)
so that its CPU time is counted.
"""
import argparse
import json
import math
import os
import resource
import shutil
import sys
import time

import mxnet as mx

import rpn
from rpn.config import resolve_config
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer
from rpn.data.sources import check_split, make_loader, open_split

VARIANTS = {
    "fixed-128": dict(resize="fixed", size=128, max_size=128),
    "ratio-112": dict(resize="keep_ratio", size=112, max_size=192),
    "ratio-128": dict(resize="keep_ratio", size=128, max_size=224),
    "ratio-192": dict(resize="keep_ratio", size=192, max_size=320),
    "ratio-256": dict(resize="keep_ratio", size=256, max_size=427),
}


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def steps_per_cpu_second(data, classes, settings, calibration=8):
    """Training steps one CPU second buys for ``settings`` (after warm-up)."""
    config = resolve_config("default", settings=dict(settings, min_steps=0, epochs=1))
    found = check_split(open_split(data, "train", classes=classes), progress=False)
    loader = make_loader(found, rpn.Resize.of(config.model), config.train.batch_size,
                         train=True, size_divisor=config.model.size_divisor)
    mx.random.seed(0)
    model = rpn.RegionProposalNetwork.from_settings(config.model, [mx.cpu()])
    step = ProposalStep(model)

    def train(batches):                     # the training loop of rpn train
        Trainer(step, [mx.cpu()], optimizer="adam", seed=0).train(batches, 1)
        mx.nd.waitall()
    batches = iter(loader)
    train([next(batches) for _ in range(2)])
    tic = cpu_seconds()
    timed = []
    for batch in batches:          # decoding counts: it is part of every step
        timed.append(batch)
        if len(timed) == calibration:
            break
    train(timed)
    return len(timed) / (cpu_seconds() - tic), len(loader)


def measure(data, classes, name, settings, budget, out_dir):
    rate, steps_per_epoch = steps_per_cpu_second(data, classes, settings)
    steps = max(steps_per_epoch, int(rate * budget))
    epochs = max(1, int(math.floor(steps / steps_per_epoch)))
    run = os.path.join(out_dir, name)
    shutil.rmtree(run, ignore_errors=True)
    tic, wall = cpu_seconds(), time.time()
    rpn.fit(data, run, classes=classes, epochs=epochs,
            settings=dict(settings, warmup_steps=20), num_workers=0, quiet=True)
    spent, wall = cpu_seconds() - tic, time.time() - wall
    result, _ = rpn.evaluate(run, data, "val", classes=classes, num_workers=0)
    keep = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    return dict(keep, variant=name, epochs=epochs, steps=epochs * steps_per_epoch,
                cpu_seconds=round(spent, 1), wall_seconds=round(wall, 1),
                steps_per_cpu_second=round(rate, 3), settings=settings)


def write_wide(data, out):
    """A copy of a VOC folder whose photographs are cropped to 2:1 (even
    positions) or 1:2 (odd) around the union of their objects."""
    from PIL import Image
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for split in ("train", "val"):
        found = open_split(data, split)
        names = []
        for i, (path, label, name) in enumerate(zip(found.images, found.labels, found.ids)):
            image = Image.open(path).convert("RGB")
            w, h = image.size
            x0, y0 = label[:, 1].min(), label[:, 2].min()
            x1, y1 = label[:, 3].max(), label[:, 4].max()
            ratio = 2.0 if i % 2 == 0 else 0.5
            cw, ch = (w, min(h, w / ratio)) if w / h < ratio else (min(w, h * ratio), h)
            cx = min(max((x0 + x1) / 2 - cw / 2, 0), w - cw)
            cy = min(max((y0 + y1) / 2 - ch / 2, 0), h - ch)
            left, top = int(cx), int(cy)
            crop = image.crop((left, top, left + int(cw), top + int(ch)))
            rows = label.copy()
            rows[:, [1, 3]] = (rows[:, [1, 3]] - left).clip(0, int(cw) - 1)
            rows[:, [2, 4]] = (rows[:, [2, 4]] - top).clip(0, int(ch) - 1)
            rows = rows[(rows[:, 3] - rows[:, 1] > 4) & (rows[:, 4] - rows[:, 2] > 4)]
            crop.save(os.path.join(out, "JPEGImages", name + ".jpg"), quality=95)
            objects = "".join(
                f"<object><name>{found.classes[int(c)]}</name><difficult>0</difficult>"
                f"<bndbox><xmin>{a + 1:.0f}</xmin><ymin>{b + 1:.0f}</ymin><xmax>{c2 + 1:.0f}"
                f"</xmax><ymax>{d + 1:.0f}</ymax></bndbox></object>"
                for c, a, b, c2, d in rows)
            with open(os.path.join(out, "Annotations", name + ".xml"), "w") as f:
                f.write(f"<annotation><size><width>{crop.size[0]}</width><height>"
                        f"{crop.size[1]}</height></size>{objects}</annotation>")
            names.append(name)
        with open(os.path.join(out, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--classes")
    parser.add_argument("--budget", type=float, default=300, help="CPU seconds a variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--wide", action="store_true")
    parser.add_argument("--only-wide", action="store_true", help="measure the cropped copy only")
    parser.add_argument("--work", default="runs/resize-rule")
    parser.add_argument("--out", default="benchmarks/results/resize_rule.json")
    args = parser.parse_args(argv)
    classes = args.classes.split(",") if args.classes else None
    sets = {} if args.only_wide else {"photos": args.data}
    if args.wide or args.only_wide:
        sets["photos-2to1-1to2"] = write_wide(args.data, os.path.join(args.work, "wide-data"))
    results = []
    for set_name, data in sets.items():
        for name in args.variants.split(","):
            row = measure(data, classes, name, VARIANTS[name], args.budget,
                          os.path.join(args.work, set_name))
            row["data"] = set_name
            results.append(row)
            print(json.dumps(row), flush=True)
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w") as f:
                json.dump({"budget_cpu_seconds": args.budget, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
