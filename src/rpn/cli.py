"""The command line: ``rpn train | evaluate | predict | export``.

``python -m rpn ...`` or the installed ``rpn`` script. Runs go into a folder
(``--out``) holding ``config.json``, ``checkpoint/``, ``metrics.json``,
``curves.png`` and ``predictions.png``; the other commands read it.
"""
import argparse
import json
import os
import sys
import time
import warnings

__all__ = ["main"]

_KS = (10, 100, 300)


class UsageError(Exception):
    """A mistake the user can fix; printed without a traceback."""


# ---- helpers ----------------------------------------------------------------

def parse_ctx(text):
    """``cpu``, ``cpu:0,1``, ``gpu:0`` or ``gpu:0,1`` -> list of contexts."""
    import mxnet as mx
    kind, _, ids = text.partition(":")
    if kind not in ("cpu", "gpu"):
        raise UsageError(f"--ctx {text!r}: expected cpu, gpu:0 or gpu:0,1")
    try:
        ids = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise UsageError(f"--ctx {text!r}: device numbers must be integers") from None
    if kind == "cpu":
        return [mx.cpu(i) for i in ids]
    available = mx.context.num_gpus()
    missing = [i for i in ids if i >= available]
    if missing:
        raise UsageError(
            f"--ctx {text}: MXNet sees {available} GPU(s), so gpu:{missing[0]} does "
            "not exist. Install a CUDA build (pip install -e '.[cu112]' or "
            "'.[cu117]' in place of '.[cpu]'), check nvidia-smi, or use --ctx cpu")
    return [mx.gpu(i) for i in ids]


def _config_from_args(args):
    from .config import PRESETS
    config = PRESETS[args.preset]
    changes = {}
    for name, value in [("epochs", args.epochs), ("batch_size", args.batch_size),
                        ("size", args.size)]:
        if value is not None:
            changes[name] = value
    if args.lr is not None:
        changes["backbone_lr"] = changes["output_lr"] = args.lr
    for item in args.set or []:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        config = config.replace(**changes)
    except (ValueError, TypeError) as error:
        raise UsageError(f"--set: {error}") from None
    multiple = 16 if config.top_down else config.stride
    if config.size % multiple:
        raise UsageError(f"--size {config.size}: must be a multiple of {multiple} for "
                         f"stride {config.stride}{' with top_down' if config.top_down else ''}")
    return config


def _classes(args, config_classes=()):
    if args.data == "synthetic":
        from .synthetic import SYNTHETIC_CLASSES
        return tuple(SYNTHETIC_CLASSES)
    if not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data!r}: no such folder; give 'synthetic' or "
                         "a VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/)")
    if args.classes:
        return tuple(c.strip() for c in args.classes.split(",") if c.strip())
    if config_classes:
        return tuple(config_classes)
    from .voc import find_classes
    return tuple(find_classes(args.data))


def _loaders(args, config, classes, *, shard=None):
    from .synthetic import load_data_synthetic
    from .voc import load_data_voc_detection
    if args.data == "synthetic":
        return load_data_synthetic(
            config.batch_size, config.size, config.size, num_train=config.num_train,
            num_val=config.num_val, augment=config.augment, seed=args.seed,
            num_workers=args.workers, shard=shard)
    return load_data_voc_detection(
        config.batch_size, config.size, config.size, classes, voc_dir=args.data,
        augment=config.augment, seed=args.seed, num_workers=args.workers,
        shard=shard)


def _split_loader(args, config, classes, split):
    """An unaugmented loader over one split, for evaluation."""
    from .dataset import DetectionDataset, DetectionLoader
    from .synthetic import SyntheticImages
    from .voc import list_voc_split
    if args.data == "synthetic":
        if split not in ("train", "val"):
            raise UsageError(f"--split {split!r}: the synthetic set has train and val")
        offset = 0 if split == "train" else config.num_train
        num = config.num_train if split == "train" else config.num_val
        images = SyntheticImages(num, config.size, config.size, seed=args.seed,
                                 offset=offset)
        labels = images.labels
    else:
        images, labels = list_voc_split(args.data, split, classes)
        if not images:
            raise UsageError(f"split {split!r} of {args.data} has no image")
    dataset = DetectionDataset(images, labels, config.size, config.size)
    return DetectionLoader(dataset, config.batch_size, num_workers=args.workers)


def _load_run(path, ctx):
    """Config, classes and networks of a run folder or an exported model."""
    from .config import RunConfig, build_model
    from .train import load_checkpoint
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise UsageError(f"--checkpoint {path!r}: no config.json there; give the "
                         "--out folder of 'rpn train' or of 'rpn export'")
    with open(config_path) as f:
        saved = json.load(f)
    config = RunConfig.from_dict(saved["config"])
    if os.path.isfile(os.path.join(path, "rpn-symbol.json")):
        return config, saved, _ExportedModel(path, ctx)
    backbone, head = build_model(config, ctx)
    try:
        load_checkpoint(os.path.join(path, "checkpoint"), backbone, head, ctx)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(f"{error}. The run's config.json says: "
                         f"{json.dumps(config.to_dict())}") from None
    return config, saved, _Networks(backbone, head)


class _Networks:
    """Backbone and head called as one: X -> (features, (cls, box))."""

    def __init__(self, backbone, head):
        self.backbone, self.head = backbone, head

    def __call__(self, X):
        features = self.backbone(X)
        return features, self.head(features)


class _ExportedModel:
    """An exported symbol and its parameters: X -> (features, (cls, box))."""

    def __init__(self, path, ctx):
        from mxnet import gluon
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = gluon.SymbolBlock.imports(
                os.path.join(path, "rpn-symbol.json"), ["data"],
                os.path.join(path, "rpn-0000.params"), ctx=ctx)

    def __call__(self, X):
        features, cls_preds, box_preds = self.net(X)
        return features, (cls_preds, box_preds)


def _proposals(model, config, X, top_k):
    from .predict import proposals_from_predictions
    features, (cls_preds, box_preds) = model(X)
    anchors = config.anchor_fn(features)
    return proposals_from_predictions(anchors, cls_preds, box_preds,
                                      config.nms_threshold, post_nms_top_n=top_k)


def _evaluate(model, config, loader, ctx):
    from .evaluation import ProposalRecall
    recall = ProposalRecall(_KS)
    for X, Y in loader:
        X = X.as_in_context(ctx[0])
        recall.update(_proposals(model, config, X, max(_KS)), Y)
    return recall.result(), recall


def _plot_recall(recall, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as onp
    thresholds = onp.linspace(0.5, 1.0, 51)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, best in recall.best_ious.items():
        ax.plot(thresholds, [(best >= t - 1e-6).mean() if len(best) else 0
                             for t in thresholds], label=f"top {k}")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)


def _plot_curves(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    series = [("loss", ["loss"]),
              ("class error", ["train_class_err", "test_class_err"]),
              ("box MAE", ["train_box_mae", "test_box_mae"])]
    for ax, (title, keys) in zip(axes, series):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values],
                        marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)


def _draw_predictions(model, config, loader, ctx, path, top_k=5):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .visualize import visualize_rpn_preds
    for X, Y in loader:
        break
    X = X[:10].as_in_context(ctx[0])
    preds = _proposals(model, config, X, top_k)
    axes = visualize_rpn_preds(X, Y[:10], preds, top_k=top_k, path=path)
    plt.close(axes[0].figure)


class _ProgressBar:
    """A tqdm bar over every training step, with loss and speed."""

    def __init__(self, total, disable=False):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="step", disable=disable, dynamic_ncols=True)

    def __call__(self, event):
        if event["kind"] == "step":
            self.bar.update(1)
            self.bar.set_postfix(epoch=event["epoch"] + 1, loss="%.3f" % event["loss"],
                                 img_s="%.1f" % event["images_per_sec"])
        else:
            recall = event.get("R@100@0.7")
            self.bar.write(f"epoch {event['epoch'] + 1}: loss {event['loss']:.3f}"
                           + ("" if recall is None else f", val R@100@0.7 {recall:.3f}")
                           + f", {event['images_per_sec']:.1f} images/s")

    def close(self):
        self.bar.close()


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


# ---- commands ---------------------------------------------------------------

def cmd_train(args):
    import mxnet as mx
    from .config import RunConfig
    from .train import train_detection
    ctx = parse_ctx(args.ctx)
    config = _config_from_args(args)
    classes = _classes(args)
    config = config.replace(classes=classes)
    kvstore, rank, shard = args.kvstore, 0, None
    if kvstore and kvstore.startswith("dist"):
        kvstore = mx.kv.create(kvstore)
        rank, shard = kvstore.rank, (kvstore.rank, kvstore.num_workers)
        print(f"rpn train: worker {rank} of {kvstore.num_workers} ({kvstore.type})",
              file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    config_path = os.path.join(args.out, "config.json")
    if rank > 0:
        pass          # rank 0 checks and writes the run folder
    elif args.resume and os.path.isfile(config_path):
        with open(config_path) as f:
            previous = RunConfig.from_dict(json.load(f)["config"])
        mismatch = previous.model_mismatch(config)
        if mismatch:
            raise UsageError(f"--resume: {args.out} was trained with other {mismatch}; "
                             "use the same settings or another --out")
    elif not args.resume and os.path.isdir(os.path.join(args.out, "checkpoint")):
        raise UsageError(f"{args.out} already holds a run; add --resume to continue "
                         "it, or choose another --out")
    train_iter, val_iter = _loaders(args, config, classes, shard=shard)
    epochs = config.epochs_for(len(train_iter))
    if epochs != config.epochs:
        config = config.replace(epochs=epochs)
        print(f"rpn train: {len(train_iter)} steps an epoch; training {epochs} epochs to "
              f"reach min_steps={config.min_steps}", file=sys.stderr)
    if rank == 0:
        _write_json(config_path, {"config": config.to_dict(), "data": args.data,
                                  "seed": args.seed})
    mx.random.seed(args.seed)
    from .config import build_model
    backbone, head = build_model(config, ctx, pretrained=args.pretrained)

    model = _Networks(backbone, head)
    last = {}       # the newest recall evaluation, reused when it is the final one

    def evaluate_now(epoch):
        tic = time.time()
        result, recall = _evaluate(model, config, val_iter, ctx)
        result["seconds"] = time.time() - tic
        last.update(epoch=epoch, result=result, recall=recall)
        return result

    def recall_at_epoch_end(epoch):
        if args.eval_every and ((epoch + 1) % args.eval_every == 0
                                or epoch + 1 == config.epochs):
            return {k: v for k, v in evaluate_now(epoch).items() if k != "seconds"}
        return {}

    bar = _ProgressBar(config.epochs * len(train_iter), disable=args.quiet or rank > 0)
    try:
        history = train_detection(
            backbone, head, config.batch_fn, train_iter, val_iter, config.loss(),
            config.epochs, config.backbone_lr, config.output_lr, ctx,
            optimizer=config.optimizer, optimizer_params=config.optimizer_params(),
            lr_schedule=config.lr_schedule, warmup_steps=config.warmup_steps,
            hybridize=not args.no_hybridize, kvstore=kvstore, callback=bar,
            checkpoint_dir=os.path.join(args.out, "checkpoint"), resume=args.resume,
            seed=args.seed, config=config.to_dict(), epoch_end=recall_at_epoch_end,
            verbose=False)
    finally:
        bar.close()
    if rank > 0:
        print(json.dumps({"rank": rank, "epochs": len(history),
                          "loss": history[-1]["loss"] if history else None}))
        return 0
    if last.get("epoch") != config.epochs - 1:
        evaluate_now(config.epochs - 1)
    final, recall = last["result"], last["recall"]
    _write_json(os.path.join(args.out, "metrics.json"),
                {"history": history, "final": final, "config": config.to_dict()})
    _plot_curves(history, os.path.join(args.out, "curves.png"))
    _plot_recall(recall, os.path.join(args.out, "recall_iou.png"))
    _draw_predictions(model, config, val_iter, ctx, os.path.join(args.out, "predictions.png"))
    print(json.dumps({k: final[k] for k in ("R@100@0.5", "R@100@0.7", "AR@100",
                                            "images", "objects")}))
    return 0


def cmd_evaluate(args):
    ctx = parse_ctx(args.ctx)
    config, saved, model = _load_run(args.checkpoint, ctx)
    if args.data is None:
        args.data = saved.get("data", "synthetic")
    if args.seed is None:
        args.seed = saved.get("seed", 0)
    classes = _classes(args, config.classes)
    loader = _split_loader(args, config, classes, args.split)
    result, recall = _evaluate(model, config, loader, ctx)
    out = args.out or args.checkpoint
    os.makedirs(out, exist_ok=True)
    _plot_recall(recall, os.path.join(out, "recall_iou.png"))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images']} images, {result['objects']} objects")
        for k in _KS:
            print(f"top {k:>3}: AR {result[f'AR@{k}']:.3f}  R@0.5 {result[f'R@{k}@0.5']:.3f}"
                  f"  R@0.7 {result[f'R@{k}@0.7']:.3f}")
    return 0


def cmd_predict(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as onp
    from mxnet import np
    from PIL import Image
    from .dataset import _MEAN, _STD, read_image
    from .visualize import show_boxes
    ctx = parse_ctx(args.ctx)
    config, _, model = _load_run(args.checkpoint, ctx)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for path in args.images:
        try:
            image = read_image(path)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error)) from None
        height, width = image.shape[:2]
        resized = onp.asarray(Image.fromarray(image).resize((config.size, config.size),
                                                            Image.BILINEAR), dtype="float32")
        pixels = ((resized / 255 - _MEAN) / _STD).transpose(2, 0, 1)   # (h, w, 3) -> (3, h, w)
        X = np.array(pixels[None], dtype="float32", ctx=ctx[0])
        scores, boxes = _proposals(model, config, X, args.top_k)[0]
        boxes = boxes.T.asnumpy() * [width, height, width, height]        # (4, M) -> (M, 4) pixels
        results[path] = [{"score": float(s), "box": [round(float(v), 2) for v in b]}
                         for s, b in zip(scores.asnumpy(), boxes)]
        fig, ax = plt.subplots(figsize=(6, 6 * height / width))
        ax.imshow(image)
        ax.axis("off")
        if len(boxes):
            show_boxes(ax, boxes, labels=["%.2f" % s for s in scores.asnumpy()],
                       colors=["w", "y", "c"])
        stem = os.path.splitext(os.path.basename(path))[0]
        fig.savefig(os.path.join(args.out, stem + ".png"), bbox_inches="tight", dpi=100)
        plt.close(fig)
    _write_json(os.path.join(args.out, "proposals.json"), results)
    print(json.dumps({"images": len(results), "out": args.out}))
    return 0


def cmd_export(args):
    from mxnet import gluon, np
    ctx = parse_ctx(args.ctx)
    config, saved, model = _load_run(args.checkpoint, ctx)
    if isinstance(model, _ExportedModel):
        raise UsageError(f"{args.checkpoint} is already an exported model")

    class _Exported(gluon.HybridBlock):
        def __init__(self, backbone, head, **kwargs):
            super().__init__(**kwargs)
            self.backbone, self.head = backbone, head

        def hybrid_forward(self, F, X):
            features = self.backbone(X)
            cls_preds, box_preds = self.head(features)
            return features, cls_preds, box_preds

    net = _Exported(model.backbone, model.head)
    net.hybridize()
    net(np.zeros((1, 3, config.size, config.size), ctx=ctx[0]))
    os.makedirs(args.out, exist_ok=True)
    net.export(os.path.join(args.out, "rpn"))
    _write_json(os.path.join(args.out, "config.json"), saved)
    print(json.dumps({"symbol": os.path.join(args.out, "rpn-symbol.json"),
                      "params": os.path.join(args.out, "rpn-0000.params")}))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rpn", description="Train, evaluate and use a Region Proposal Network.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, data_required):
        p.add_argument("--ctx", default="cpu", help="cpu, gpu:0 or gpu:0,1 (default cpu)")
        p.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                       help="processes decoding images (default: half the cores, 1 to 4; "
                       "0 decodes in the main process)")
        if data_required is not None:
            p.add_argument("--data", required=data_required, default=None,
                           help="'synthetic' or a VOC-layout folder")
            p.add_argument("--classes", help="comma-separated class names (VOC data; "
                           "default: every class in the annotations)")

    train = sub.add_parser("train", help="train an RPN")
    common(train, True)
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--preset", choices=("default", "chapter"), default="default",
                       help="'chapter': the chapter's settings; 'default': tuned (README)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--size", type=int, help="image side in pixels")
    train.add_argument("--lr", type=float, help="learning rate of both parts")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any other setting of rpn.config.RunConfig (JSON value)")
    train.add_argument("--pretrained", metavar="PATH",
                       help="ImageNet weights of resnet18_v2: a model-store folder or .params file")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--kvstore", default=None,
                       help="MXNet KVStore: local, device, dist_sync, dist_device_sync, "
                       "dist_async (default: device for several GPUs, local otherwise); "
                       "dist_* under python -m rpn.launch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--eval-every", type=int, default=0, metavar="N",
                       help="also measure validation recall every N epochs")
    train.add_argument("--no-hybridize", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="proposal recall on a split")
    common(evaluate, False)
    evaluate.add_argument("--checkpoint", required=True, help="run folder (or exported model)")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--seed", type=int, default=None)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--out", help="where recall_iou.png goes (default: the run folder)")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="proposals for image files")
    common(predict, None)
    predict.add_argument("--checkpoint", required=True, help="run folder or exported model")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=10)
    predict.add_argument("--out", required=True)
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="symbol and parameter files of the network")
    export.add_argument("--ctx", default="cpu")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True)
    export.set_defaults(func=cmd_export)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"rpn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"rpn {args.command}: error: {error}", file=sys.stderr)
        return 1
