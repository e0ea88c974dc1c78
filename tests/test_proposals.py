"""Proposals for a second stage: the proposal file, RoIs for ROIAlign, and
a tiny second-stage head trained on them."""
import json
import os
import pickle

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, init, np

import rpn
from rpn.cli import main
from rpn.config import PRESETS, build_proposal_model

TINY = ["--size", "64", "--batch-size", "4", "--epochs", "1", "--quiet", "--workers", "0",
        "--set", "num_train=8", "--set", "num_val=6"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("prop") / "run")
    assert main(["train", "--data", "synthetic", "--out", out] + TINY) == 0
    return out


def test_propose_writes_every_image_of_a_split_in_original_pixels(run_dir, tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=3, num_val=5, height=72, width=120)
    out = str(tmp_path / "val.npz")
    assert main(["propose", "--checkpoint", run_dir, "--data", root, "--split", "val",
                 "--top-k", "20", "--out", out, "--quiet", "--workers", "0"]) == 0
    printed = capsys.readouterr()
    assert "checking" not in printed.err and "image/s" not in printed.err   # --quiet: no bar
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert summary["images"] == 5
    proposals = rpn.load_proposals(out)
    assert len(proposals) == 5 and proposals.meta["split"] == "val"
    names = sorted(os.listdir(os.path.join(root, "JPEGImages")))
    for i in range(5):
        entry = proposals[i]
        assert entry["image_size"] == (72, 120) and entry["file_name"] in names
        assert entry["image_id"] == entry["file_name"][:-4]
        boxes, scores = entry["boxes"], entry["scores"]
        assert 1 <= len(boxes) <= 20 and boxes.shape == (len(scores), 4)
        assert (onp.diff(scores) <= 0).all()
        assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= 120).all() and (boxes[:, [1, 3]] <= 72).all()
    assert proposals.by_id(proposals[2]["image_id"])["file_name"] == proposals[2]["file_name"]
    # the same proposals as the model gives for those images
    model = rpn.load(run_dir)
    results, errors = rpn.predict_images(
        model, [os.path.join(root, "JPEGImages", proposals[0]["file_name"])], top_k=20)
    assert not errors
    onp.testing.assert_allclose(results[0]["boxes"], proposals[0]["boxes"], atol=0.05)


def test_propose_gives_all_the_model_keeps_by_default(run_dir, tmp_path):
    model = rpn.load(run_dir)
    summary = rpn.propose(model, "synthetic", "val", out=str(tmp_path / "all.npz"))
    proposals = rpn.load_proposals(str(tmp_path / "all.npz"))
    assert proposals.meta["top_k"] == model.config.post_nms_top_n_test
    assert summary["proposals"] == sum(len(p["boxes"]) for p in proposals) > 0


def test_propose_top_k_is_checked(run_dir, tmp_path, capsys):
    assert main(["propose", "--checkpoint", run_dir, "--data", "synthetic", "--top-k", "0",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "top-k" in capsys.readouterr().err
    assert main(["propose", "--checkpoint", run_dir, "--data", "synthetic", "--top-k",
                 "5000", "--out", str(tmp_path / "x.npz"), "--quiet"]) == 1
    assert "post_nms_top_n_test" in capsys.readouterr().err


def test_load_proposals_never_unpickles_and_names_bad_files(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    bad = tmp_path / "pickled.npz"
    onp.savez(bad, boxes=onp.array([Payload()], dtype=object), meta=onp.array("{}"))
    with pytest.raises(ValueError, match="pickled.npz"):
        rpn.load_proposals(str(bad))
    assert not marker.exists()
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="raw.npz"):
        rpn.load_proposals(str(raw))
    assert not marker.exists()
    short = tmp_path / "short.npz"
    onp.savez(short, boxes=onp.zeros((3, 4)))
    with pytest.raises(ValueError, match="missing"):
        rpn.load_proposals(str(short))


def test_rois_from_the_model_output_and_from_the_chapter_format_agree():
    mx.random.seed(2)
    config = PRESETS["default"].replace(size=64, max_size=96)
    model = build_proposal_model(config, [mx.cpu()])
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [48, 64]])
    scores, boxes = model(X, sizes)
    rois = rpn.proposals_to_rois((scores, boxes), sizes).asnumpy()
    valid = scores.asnumpy() >= 0
    assert rois.shape == (valid.sum(), 5)
    assert set(rois[:, 0].tolist()) == {0.0, 1.0}
    for b, (h, w) in enumerate([(64, 96), (48, 64)]):
        mine = rois[rois[:, 0] == b][:, 1:]
        assert mine.min() >= 0 and (mine[:, [0, 2]] <= w + 1e-3).all()
        assert (mine[:, [1, 3]] <= h + 1e-3).all()
    padded = rpn.proposals_to_rois((scores, boxes), sizes, keep_padding=True).asnumpy()
    assert padded.shape == (scores.size, 5)
    onp.testing.assert_allclose(padded[valid.reshape(-1)], rois, atol=1e-4)
    chapter = [[s[m], b[m].T] for s, b, m in zip(scores, boxes, np.array(valid))]
    onp.testing.assert_allclose(rpn.proposals_to_rois(chapter, sizes).asnumpy(), rois,
                                atol=1e-4)


def test_roi_align_on_proposals_trains_a_tiny_second_stage():
    mx.random.seed(3)
    config = PRESETS["default"].replace(size=64, max_size=96)
    model = build_proposal_model(config, [mx.cpu()])
    head = gluon.nn.HybridSequential()
    head.add(gluon.nn.Dense(16, activation="relu"), gluon.nn.Dense(2))
    head.initialize(init.Xavier())
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [48, 64]])
    params = [p for net in (head, model.backbone) for p in net.collect_params().values()
              if p.grad_req != "null"]
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.1})
    losses = []
    for _ in range(5):
        with autograd.record():
            features = model.backbone(X)
            scores, boxes = model(X, sizes)[:2]
            rois = rpn.proposals_to_rois((scores, boxes), sizes)[:32]
            pooled = rpn.roi_align(features, rois, (7, 7), 1 / config.stride)
            logits = head(pooled)
            labels = np.zeros(rois.shape[0])
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(logits, labels).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss))
    assert pooled.shape == (rois.shape[0], 128, 7, 7)
    assert losses[-1] < losses[0]
    conv = [p for name, p in model.backbone.collect_params().items()
            if name.endswith("conv0_weight")][0]
    assert abs(conv.grad().asnumpy()).sum() > 0         # gradients reach the backbone
