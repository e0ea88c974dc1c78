"""Where do a trained model's top proposals come from? Anchors that cross the
image's edge are labelled and propose under the default (``allowed_border``
null); this counts, on one split, the share of anchors that cross the edge
and the share of each image's top-K proposals that come from them.

    .venv/bin/python benchmarks/border_sources.py --checkpoint runs/raccoon \
        --data ../shared/data/raccoon --split val --top-k 100

A proposal's anchor is found by decoding every anchor of the image as the
model does and taking the decoded box nearest (L1) to the proposal.
Prints one JSON object.
"""
import argparse
import json
import sys

import numpy as onp
from mxnet import np, npx

import rpn
from rpn.boxes import OFFSET_WEIGHTS, _decode
from rpn.model.network import _canvas_extent
from rpn.data.sources import check_split, make_loader, open_split

from mxnet import ndarray as _nd


def sources(trained, loader, top_k):
    model = trained.net
    crossing_anchors, anchors_total, from_crossing, proposals = 0, 0, 0, 0
    for X, _, info in loader:
        sizes = np.array(info.sizes, dtype="float32", ctx=X.ctx)        # (B, 2) pixels
        scores, boxes = model(X, sizes)                                  # (B, K), (B, K, 4)
        features = model.backbone(X)
        _, box_preds, *_ = model.head(features)                          # (B * N, 4)
        anchors = model.anchors(features)                                # (4, N) canvas
        valid = model.valid_anchors(anchors, features, sizes).asnumpy() > 0   # (B, N)
        ex, ey = _canvas_extent(_nd, features, sizes.astype("float32"), model.stride)
        B, N = valid.shape
        # (B * N, 4) -> (B, N, 4); decoded in the canvas frame, then each image's frame
        offsets = box_preds.reshape(B, N, 4)
        decoded = _decode(np.expand_dims(anchors.T, 0), offsets, OFFSET_WEIGHTS, xp=np)
        scale = np.expand_dims(np.concatenate([ex, ey, ex, ey], axis=1), 1)   # (B, 1, 4)
        decoded = np.clip(decoded / scale, 0.0, 1.0).asnumpy()
        a = anchors.asnumpy()                                            # (4, N)
        ex, ey = ex.asnumpy()[:, 0], ey.asnumpy()[:, 0]                  # (B,)
        scores, boxes = scores.asnumpy(), boxes.asnumpy()
        for b in range(B):
            crossing = (a[0] < 0) | (a[1] < 0) | (a[2] > ex[b]) | (a[3] > ey[b])   # (N,)
            crossing_anchors += int((crossing & valid[b]).sum())
            anchors_total += int(valid[b].sum())
            kept = boxes[b][scores[b] >= 0][:top_k]                      # (k, 4)
            for box in kept:
                distance = onp.abs(decoded[b] - box).sum(axis=1)
                distance[~valid[b]] = onp.inf
                from_crossing += int(crossing[int(distance.argmin())])
            proposals += len(kept)
    return {"anchors_crossing_edge": crossing_anchors / max(anchors_total, 1),
            f"top_{top_k}_from_crossing_anchors": from_crossing / max(proposals, 1),
            "proposals": proposals}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--classes")
    parser.add_argument("--top-k", type=int, default=100)
    args = parser.parse_args(argv)
    npx.set_np()
    model = rpn.load(args.checkpoint)
    classes = args.classes.split(",") if args.classes else model.classes
    found = check_split(open_split(args.data, args.split, classes=classes), progress=False)
    loader = make_loader(found, model.resize, 8, train=False,
                         size_divisor=model.size_divisor)
    result = sources(model, loader, args.top_k)
    result.update(checkpoint=args.checkpoint, split=args.split,
                  allowed_border=model.config.model.allowed_border)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
