"""The loader's CPU share of a training step on large photographs (issue 25).

Writes ``--images`` JPEG photographs of 1920 x 1080 (the synthetic set's
small objects, at quality 90) as a VOC folder, then for the ``default`` and
``small-objects`` presets measures in one process, in CPU seconds:

* the loader alone: every batch of the first epoch decoded, resized or
  windowed and batched in this process (``num_workers=0``), per batch;
* the same over the next two epochs, whose images the loader kept decoded
  (:mod:`rpn.data.cache`);
* the first epoch with every image decoded whole and nothing kept (the
  package before 0.4.0: ``DetectionDataset`` asked for all the pixels);
* a training step on batches already made (the model and the trainer of
  ``rpn train``), per step.

    PYTHONPATH=src .venv/bin/python benchmarks/loader_share.py [--images 32]

Prints one JSON line a preset: ``loader_s``, ``loader_later_s``,
``loader_whole_s``, ``step_s`` and the shares ``loader_s / step_s``.
The synthetic photographs are noise-textured and compress poorly (about
1.4 MB a frame), so their decoding costs more than most cameras' frames.
"""
import argparse
import json
import os
import resource
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_batch(loader, epochs=(0,)):
    tic, count = cpu(), 0
    for epoch in epochs:
        loader.set_epoch(epoch)
        for _ in loader:
            count += 1
    return (cpu() - tic) / max(count, 1)


def measure(root, preset):
    import mxnet as mx

    import rpn
    from rpn.config import PRESETS
    from rpn.data.dataset import DetectionDataset
    from rpn.training.step import ProposalStep
    from rpn.training.trainer import Trainer
    config = PRESETS[preset]
    train = config.train
    found = rpn.data.sources.check_split(rpn.data.sources.open_split(root, "train"),
                                         progress=False)

    def loader(**options):
        return rpn.data.sources.make_loader(
            found, rpn.Resize.of(config.model), train.batch_size, train=True,
            size_divisor=config.model.size_divisor, window=train.window,
            windows_per_image=train.windows_per_image, **options)
    kept = loader()
    reduced = per_batch(kept)
    later = per_batch(kept, epochs=(1, 2))
    wanted = DetectionDataset._wanted
    DetectionDataset._wanted = lambda self, height, width: (height, width)
    try:
        whole = per_batch(loader(cache_bytes=0))
    finally:
        DetectionDataset._wanted = wanted
    batches = list(loader())
    mx.random.seed(0)
    model = rpn.RegionProposalNetwork.from_settings(config.model, [mx.cpu()])
    step = ProposalStep(model, crowd=train.window is not None)
    Trainer(step, [mx.cpu()], optimizer="adam", seed=0).train(batches[:1], 1)
    mx.nd.waitall()
    tic = cpu()
    Trainer(step, [mx.cpu()], optimizer="adam", seed=0,
            log_interval=len(batches)).train(batches, 1)
    mx.nd.waitall()
    step_s = (cpu() - tic) / len(batches)
    return {"preset": preset, "images": len(found.images), "batch": train.batch_size,
            "window": train.window, "loader_s": round(reduced, 3),
            "loader_later_s": round(later, 3), "loader_later_share": round(later / step_s, 3),
            "loader_whole_s": round(whole, 3), "step_s": round(step_s, 3),
            "loader_share": round(reduced / step_s, 3),
            "loader_whole_share": round(whole / step_s, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--presets", default="default,small-objects")
    args = parser.parse_args(argv)
    import rpn
    with tempfile.TemporaryDirectory() as folder:
        root = rpn.write_voc(os.path.join(folder, "voc"), num_train=args.images, num_val=1,
                             height=1080, width=1920, objects=(20, 40),
                             sides=(8 / 1080, 60 / 1080))
        for preset in args.presets.split(","):
            print(json.dumps(measure(root, preset)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
