"""The proposal file of ``rpn propose``: what it holds, that it is read
back without unpickling, and its checks."""
import json
import os
import pickle

import numpy as onp
import pytest

import rpn
from rpn.cli import main


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run


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
    assert proposals.meta["top_k"] == model.config.model.post_nms_top_n_test
    assert proposals.meta["model"] == run_dir
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
