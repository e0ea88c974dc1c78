"""Proposal recall: hand-made cases, and pycocotools' COCOeval (proposal
mode, useCats=0) as the oracle on random proposals, crowds and sizes."""
import contextlib
import io

import numpy as onp
import pytest
from mxnet import np

import rpn
from helpers.references import random_boxes
from rpn.data.batch import BatchInfo
from rpn.evaluation.recall import ProposalRecall

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def one_image(boxes):
    """A prediction list with one image whose proposals are ``boxes`` (M, 4)."""
    boxes = np.array(onp.asarray(boxes, dtype="float32").reshape(-1, 4))
    return [[np.ones((boxes.shape[0],)), boxes.T]]


def test_recall_of_perfect_and_missing_proposals():
    Y = np.array([[[0, 0.1, 0.1, 0.5, 0.5], [1, 0.5, 0.5, 0.9, 0.8], [-1, 0, 0, 0, 0]]])
    perfect = ProposalRecall(ks=(1, 10))
    perfect.update(one_image([[0.5, 0.5, 0.9, 0.8], [0.1, 0.1, 0.5, 0.5]]), Y)
    result = perfect.result()
    assert result["objects"] == 2 and result["R@10@0.7"] == 1.0 and result["AR@10"] == 1.0
    assert result["R@1@0.5"] == 0.5                 # only the first proposal counts
    none = ProposalRecall(ks=(10,))
    none.update(one_image(onp.zeros((0, 4))), Y)
    assert none.result()["R@10@0.5"] == 0.0 and none.result()["objects"] == 2


def test_a_proposal_exactly_at_the_threshold_counts():
    Y = np.array([[[0, 0.0, 0.0, 0.5, 0.5]]])
    recall = ProposalRecall(ks=(10,))
    recall.update(one_image([[0.0, 0.0, 0.5, 0.25]]), Y)      # IoU exactly 0.5
    assert recall.result()["R@10@0.5"] == 1.0
    assert recall.result()["R@10@0.7"] == 0.0
    assert recall.result()["AR@10"] == pytest.approx(0.1)  # only 0.5 of 0.50 .. 0.95


def test_one_proposal_recalls_one_object():
    """Two objects both covered by one proposal: COCO matches it once."""
    objects = onp.array([[0, 0, 100, 100], [0, 0, 100, 98]], dtype=float)
    recall = ProposalRecall(ks=(1, 2))
    recall.update_image(onp.array([[0, 0, 100, 99], [0, 0, 100, 97]]), objects)
    result = recall.result()
    assert result["R@1@0.5"] == 0.5 and result["R@2@0.5"] == 1.0


def test_crowd_regions_are_not_objects_and_sizes_use_original_pixels():
    # image 200 x 100 pixels: a small (20 x 20) and a large (100 x 100) object
    Y = np.array([[[0, 0.0, 0.0, 0.1, 0.2], [1, 0.5, 0.0, 1.0, 1.0],
                   [rpn.CROWD, 0.0, 0.5, 0.4, 1.0]]])
    preds = one_image([[0.5, 0.0, 1.0, 1.0]])
    recall = ProposalRecall(ks=(10,))
    recall.update(preds, Y, image_sizes=[(100, 200)])
    result = recall.result()
    assert result["objects"] == 2 and result["objects_small"] == 1
    assert result["objects_large"] == 1 and result["objects_medium"] == 0
    assert result["AR_large@10"] == 1.0 and result["AR_small@10"] == 0.0
    assert result["AR@10"] == 0.5


def coco_oracle(images, ks):
    """COCOeval's AR (all, small, medium, large) on ``images``: lists of
    (width, height, objects (G, 4), crowd flags (G,), proposals (M, 4),
    scores (M,)) in pixels."""
    gt_images, annotations, results = [], [], []
    for i, (w, h, objects, crowd, proposals, scores) in enumerate(images, 1):
        gt_images.append({"id": i, "width": w, "height": h, "file_name": f"{i}.jpg"})
        for box, c in zip(objects, crowd):
            x0, y0, x1, y1 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": int(c)})
        for box, s in zip(proposals, scores):
            x0, y0, x1, y1 = box
            results.append({"image_id": i, "category_id": 1, "score": float(s),
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": gt_images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "object"}]}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.params.useCats = 0
        evaluation.params.maxDets = list(ks)
        evaluation.evaluate()
        evaluation.accumulate()
    recall = evaluation.eval["recall"]                     # (T, 1, areas, ks)
    out = {}
    for a, name in enumerate(("", "_small", "_medium", "_large")):
        for m, k in enumerate(ks):
            values = recall[:, 0, a, m]
            out[f"AR{name}@{k}"] = float(values[values > -1].mean()) if (values > -1).any() \
                else -1.0                                  # COCO's: no objects of that size
    return out


def random_images(seed, count=40):
    rng = onp.random.default_rng(seed)
    images = []
    for _ in range(count):
        w, h = int(rng.integers(120, 640)), int(rng.integers(120, 640))
        g = int(rng.integers(0, 7))
        sides = rng.uniform(8, 260, size=(g, 2))
        corners = rng.uniform(0, 1, size=(g, 2)) * onp.maximum([w, h] - sides, 1)
        objects = onp.concatenate([corners, onp.minimum(corners + sides, [w, h])], axis=1)
        crowd = rng.random(g) < 0.15
        m = int(rng.integers(0, 150))
        near = objects[rng.integers(0, g, size=m)] + rng.normal(0, 10, (m, 4)) if g else \
            onp.zeros((0, 4))
        far = rng.uniform(0, 1, (m, 4)) * [w, h, w, h]
        far[:, 2:] = far[:, :2] + rng.uniform(5, 200, (m, 2))
        proposals = onp.where((rng.random(m) < 0.6)[:, None], near, far) if g else far
        proposals = onp.clip(proposals, 0, [w, h, w, h])
        keep = (proposals[:, 2] > proposals[:, 0] + 1) & (proposals[:, 3] > proposals[:, 1] + 1)
        proposals = proposals[keep]
        scores = rng.random(len(proposals))
        order = onp.argsort(-scores, kind="mergesort")
        images.append((w, h, objects, crowd, proposals[order], scores[order]))
    return images


@pytest.mark.parametrize("seed", range(4))
def test_average_recall_agrees_with_pycocotools(seed):
    ks = (10, 30, 100)
    images = random_images(seed)
    recall = ProposalRecall(ks=ks)
    for w, h, objects, crowd, proposals, _ in images:
        recall.update_image(proposals, objects[~crowd], objects[crowd])
    ours, theirs = recall.result(), coco_oracle(images, ks)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=0.005), key


def test_the_padded_model_output_and_the_chapter_format_agree():
    rng = onp.random.default_rng(3)
    corners = rng.uniform(0, 0.6, (2, 6, 2))
    boxes = onp.concatenate([corners, corners + rng.uniform(0.05, 0.4, (2, 6, 2))], -1)
    scores = onp.array([[0.9, 0.8, 0.7, 0.5, -1, -1], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    Y = np.array([[[0, 0.1, 0.1, 0.4, 0.5]], [[1, 0.3, 0.3, 0.9, 0.9]]])
    info = BatchInfo.from_rows([[64, 96, 200, 300, 0], [64, 64, 100, 100, 1]])
    padded = ProposalRecall(ks=(2, 5))
    padded.update_batch(np.array(scores), np.array(boxes), Y, info)
    chapter = ProposalRecall(ks=(2, 5))
    preds = [[np.array(s[s >= 0]), np.array(b[s >= 0]).T] for s, b in zip(scores, boxes)]
    chapter.update(preds, Y, image_sizes=info.original_sizes)
    assert padded.result() == chapter.result()


# ---- crowded images: the matching in arrays against COCO's loop, written per box ----

def brute_force_recall(images, ks):
    """:meth:`ProposalRecall.result`'s figures by COCO's ``evaluateImg``
    loop transcribed per box, for ``images`` of ``(objects (G, 4), crowd
    (C, 4), proposals (M, 4))`` in pixels."""
    from helpers.references import ref_iou
    levels = rpn.AR_THRESHOLDS
    ranges = {"all": (0.0, 1e10), **rpn.evaluation.recall.AREA_RANGES}
    hits = {r: onp.zeros((len(levels), len(ks))) for r in ranges}
    counts = dict.fromkeys(ranges, 0)
    for objects, crowd, proposals in images:
        proposals = proposals[:max(ks)]
        boxes = list(objects) + list(crowd)
        is_crowd = [False] * len(objects) + [True] * len(crowd)

        def overlap_of(p, b, c):
            if not c:
                return ref_iou(p, b)
            iw = max(min(p[2], b[2]) - max(p[0], b[0]), 0.0)
            ih = max(min(p[3], b[3]) - max(p[1], b[1]), 0.0)
            area = max(p[2] - p[0], 0.0) * max(p[3] - p[1], 0.0)
            return iw * ih / area if area > 0 else 0.0
        for name, (low, high) in ranges.items():
            area = [(b[2] - b[0]) * (b[3] - b[1]) for b in objects]
            ignore = [not low <= a <= high for a in area] + [True] * len(crowd)
            order = sorted(range(len(boxes)), key=lambda i: ignore[i])     # stable
            counts[name] += sum(not i for i in ignore)
            for j, t in enumerate(levels):
                matched = {}
                for rank, p in enumerate(proposals):
                    best, m = min(t, 1 - 1e-10), -1
                    for g in order:
                        if g in matched and not is_crowd[g]:
                            continue
                        if m > -1 and not ignore[m] and ignore[g]:
                            break
                        value = overlap_of(p, boxes[g], is_crowd[g])
                        if value < best:
                            continue
                        best, m = value, g
                    if m > -1 and m not in matched:
                        matched[m] = rank
                for g, rank in matched.items():
                    if not ignore[g]:
                        hits[name][j] += [rank < k for k in ks]
    out = {"images": len(images), "objects": counts["all"]}
    for name in ranges:
        out.update({f"objects_{name}": counts[name]} if name != "all" else {})
        for m, k in enumerate(ks):
            curve = (hits[name][:, m] / counts[name] if counts[name]
                     else onp.full(len(levels), -1.0))       # COCO's -1: no objects
            out[f"AR@{k}" if name == "all" else f"AR_{name}@{k}"] = float(curve.mean())
            if name == "all":
                out[f"R@{k}@0.5"], out[f"R@{k}@0.7"] = float(curve[0]), float(curve[4])
    return out


def crowded_images(seed, count=3, objects=40, proposals=70):
    """Crowded images in pixels: many small objects side by side, some
    repeated exactly (ties), a few crowd regions, and proposals near
    objects (several on one object), repeated ones among them."""
    rng = onp.random.default_rng(seed)
    images = []
    for _ in range(count):
        sides = rng.choice([12.0, 24.0, 40.0, 64.0, 120.0], size=(objects, 1)) \
            * rng.uniform(0.8, 1.25, (objects, 2))
        corners = rng.uniform(0, 300, (objects, 2))
        boxes = onp.concatenate([corners, corners + sides], 1).round()
        boxes[rng.random(objects) < 0.15] = boxes[0]              # repeated objects
        crowd = boxes[rng.integers(0, objects, 3)] * [1, 1, 1.5, 1.5]
        near = boxes[rng.integers(0, objects, proposals)]
        wiggle = rng.normal(0, 3, (proposals, 4)).round() * (rng.random((proposals, 1)) < 0.7)
        found = onp.concatenate([near + wiggle, near[:5]])         # repeated proposals
        found[:, 2:] = onp.maximum(found[:, 2:], found[:, :2] + 1)
        images.append((boxes, crowd, found[rng.permutation(len(found))]))
    return images


@pytest.mark.parametrize("seed", range(3))
def test_the_matching_in_arrays_is_cocos_loop(seed):
    """Ties, repeated objects and proposals, crowd regions and sizes: the
    matching in arrays gives the hits of COCO's loop at every threshold,
    count and size (and with overlaps computed 7 at a time, the same)."""
    ks, images = (1, 5, 20, 100), crowded_images(seed)
    ours, blocked = ProposalRecall(ks=ks), ProposalRecall(ks=ks, block=7)
    for objects, crowd, proposals in images:
        ours.update_image(proposals, objects, crowd)
        blocked.update_image(proposals, objects, crowd)
    theirs, result = brute_force_recall(images, ks), ours.result()
    assert blocked.result() == result
    assert sorted(result) == sorted(theirs)
    for key, value in theirs.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert 0.3 < result["R@100@0.5"] < 1 and result["objects_small"] > 0   # not a trivial case


def test_a_crowded_image_agrees_with_pycocotools():
    """One image of 400 objects and 300 proposals, several of them on
    one object: COCOeval's figures."""
    (objects, crowd, proposals), = crowded_images(7, count=1, objects=400, proposals=300)
    ks = (100, 300, 1000)
    recall = ProposalRecall(ks=ks, block=5000)
    recall.update_image(proposals, objects, crowd)
    flags = onp.r_[onp.zeros(len(objects), bool), onp.ones(len(crowd), bool)]
    theirs = coco_oracle([(700, 700, onp.concatenate([objects, crowd]), flags, proposals,
                           onp.linspace(1, 0, len(proposals)))], ks)
    ours = recall.result()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_block_must_be_positive():
    with pytest.raises(ValueError, match="block must be a positive"):
        ProposalRecall(block=0)


def test_a_size_without_objects_is_minus_one_as_coco():
    """COCO reports -1 where a size range has no object; a recall of 0 would
    say that objects of that size were all missed."""
    recall = ProposalRecall(ks=(10,))
    recall.update_image([[0, 0, 20, 20]], [[0, 0, 20, 20], [50, 50, 60, 60]])
    result = recall.result()
    assert result["objects_small"] == 2 and result["objects_medium"] == 0
    assert result["AR_small@10"] == 0.5
    assert result["AR_medium@10"] == -1 and result["AR_large@10"] == -1
    assert recall.curve(10, "large") == [-1] * 10
    assert set(recall.proposal_curve("medium")["AR"]) == {-1}
    empty = ProposalRecall(ks=(10,)).result()
    assert empty["objects"] == 0 and empty["AR@10"] == -1 and empty["R@10@0.5"] == -1


def test_recall_against_proposals_agrees_with_every_k(rng):
    """The curve at K is R@K@T of a recall measured at that K, for every K."""
    images = [(random_boxes(rng, 30) * 100, random_boxes(rng, 4) * 100) for _ in range(5)]
    curve_of = ProposalRecall(ks=(30,))
    for proposals, objects in images:
        curve_of.update_image(proposals, objects)
    curve = curve_of.proposal_curve()
    assert list(curve["proposals"]) == list(range(1, 31))
    for k in (1, 2, 7, 30):
        one = ProposalRecall(ks=(k,))
        for proposals, objects in images:
            one.update_image(proposals, objects)
        result = one.result()
        assert curve["R@0.5"][k - 1] == pytest.approx(result[f"R@{k}@0.5"])
        assert curve["R@0.7"][k - 1] == pytest.approx(result[f"R@{k}@0.7"])
        assert curve["AR"][k - 1] == pytest.approx(result[f"AR@{k}"])
    assert (onp.diff(curve["R@0.5"]) >= 0).all()
