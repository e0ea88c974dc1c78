"""Proposals in other projects' files: COCO results that pycocotools loads
and scores as the package does, detectron2's and mmdetection's proposal
files checked against their documented structure (read with pickle here,
in the test only: the package reads no pickle), and the formats that a
split leaving images out would make wrong."""
import contextlib
import io
import json
import os
import pickle

import numpy as onp
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import rpn
from conftest import QUIET, errors, last_json
from helpers.files import make_coco
from rpn.cli import main
from rpn.proposals.formats import (ImageProposals, images_list_path, write_coco_results,
                                   write_format)

KS = (100, 300, 1000)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A COCO folder of the synthetic set (its ``val`` split: 6 images)."""
    return rpn.write_coco(str(tmp_path_factory.mktemp("coco") / "coco"), num_train=2,
                          num_val=6, height=64, width=96)


def propose(run, data, out, *extra):
    assert main(["propose", "--checkpoint", run, "--data", data, "--out", str(out)]
                + list(extra) + QUIET) == 0


def coco_recall(ground_truth, results):
    """pycocotools' proposal recall of the results file against the COCO
    file ``ground_truth``: class-agnostic (``useCats=0``) at :data:`KS`, as
    the package's keys."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(ground_truth)
        scored = COCOeval(truth, truth.loadRes(results), "bbox")
        scored.params.useCats, scored.params.maxDets = 0, list(KS)
        scored.evaluate()
        scored.accumulate()
    recall = scored.eval["recall"]                       # (T, 1, areas, ks)
    out = {}
    for m, k in enumerate(KS):
        out[f"R@{k}@0.5"], out[f"R@{k}@0.7"] = recall[0, 0, 0, m], recall[4, 0, 0, m]
        for a, name in enumerate(("AR", "AR_small", "AR_medium", "AR_large")):
            # COCO's -1 where a size has no object, as the package reports it
            out[f"{name}@{k}"] = recall[:, 0, a, m].mean() if (recall[:, 0, a, m] > -1).all() \
                else -1.0
    return out


def own_recall(run, data, capsys):
    assert main(["evaluate", "--checkpoint", run, "--data", data, "--split", "val", "--json",
                 "--ks", ",".join(map(str, KS)), "--out", os.path.dirname(data)] + QUIET) == 0
    return last_json(capsys.readouterr().out)


def test_coco_results_load_in_pycocotools_and_score_as_the_package_does(
        tiny_run, coco, tmp_path, capsys):
    out = tmp_path / "val.json"
    propose(tiny_run, coco, out, "--split", "val", "--format", "coco")
    assert last_json(capsys.readouterr().out)["files"] == [str(out)]     # no images list
    results = json.loads(out.read_text())
    truth = json.load(open(os.path.join(coco, "annotations", "instances_val.json")))
    assert {r["image_id"] for r in results} == {i["id"] for i in truth["images"]}
    assert {r["category_id"] for r in results} == {1}
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] > 0 and r["bbox"][3] > 0
               and r["bbox"][0] + r["bbox"][2] <= 96.01 for r in results)
    ours = own_recall(tiny_run, coco, capsys)
    theirs = coco_recall(os.path.join(coco, "annotations", "instances_val.json"), str(out))
    assert ours["R@1000@0.5"] > 0
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_coco_results_of_data_without_coco_ids_come_with_an_images_list(
        tiny_run, tmp_path, capsys):
    voc = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=5, height=64, width=96)
    out = tmp_path / "val.json"
    propose(tiny_run, voc, out, "--split", "val", "--format", "coco")
    listed = images_list_path(str(out))
    assert listed == str(tmp_path / "val.images.json")
    assert last_json(capsys.readouterr().out)["files"] == [str(out), listed]
    images = json.loads(open(listed).read())
    assert [i["id"] for i in images["images"]] == [1, 2, 3, 4, 5]
    names = rpn.data.sources.open_split(voc, "val").ids
    assert [i["dataset_id"] for i in images["images"]] == list(names)
    assert [i["file_name"] for i in images["images"]] == [n + ".jpg" for n in names]
    assert {(i["width"], i["height"]) for i in images["images"]} == {(96, 64)}
    assert images["categories"] == [{"id": 1, "name": "object"}]
    ours = own_recall(tiny_run, voc, capsys)
    assert len(images["annotations"]) == ours["objects"]
    theirs = coco_recall(listed, str(out))
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_detectron2_proposal_file_as_detectron2_documents_it(tiny_run, coco, tmp_path):
    propose(tiny_run, coco, tmp_path / "val.npz", "--split", "val", "--top-k", "50")
    propose(tiny_run, coco, tmp_path / "val.pkl", "--split", "val", "--top-k", "50",
            "--format", "detectron2")
    npz = rpn.load_proposals(str(tmp_path / "val.npz"))
    with open(tmp_path / "val.pkl", "rb") as f:
        loaded = pickle.load(f, encoding="latin1")          # as load_proposals_into_dataset
    assert set(loaded) == {"ids", "boxes", "objectness_logits", "bbox_mode"}
    assert loaded["bbox_mode"] == 0                         # BoxMode.XYXY_ABS
    assert loaded["ids"] == npz.arrays["image_ids"].tolist()
    assert all(type(i) is int for i in loaded["ids"])
    for i, image_id in enumerate(loaded["ids"]):
        boxes, logits = loaded["boxes"][i], loaded["objectness_logits"][i]
        assert boxes.dtype == logits.dtype == onp.float32
        assert boxes.shape == (len(logits), 4) and len(logits) == len(npz[i]["scores"])
        assert (onp.diff(logits) <= 0).all()                # best first, as written
        expected = npz.by_id(image_id)
        probabilities = 1 / (1 + onp.exp(-logits.astype("float64")))
        onp.testing.assert_allclose(probabilities, expected["scores"], atol=1e-6)
        onp.testing.assert_allclose(boxes, expected["boxes"], atol=1e-4)


def test_mmdet_proposal_file_is_a_list_in_dataset_order(tiny_run, tmp_path):
    one = make_coco(str(tmp_path / "c"), {"b.jpg": [[2, 2, 10, 8]], "a.jpg": [[1, 1, 5, 5]],
                                          "c.jpg": []})
    propose(tiny_run, one, tmp_path / "all.npz", "--top-k", "20", "--classes", "cell")
    propose(tiny_run, one, tmp_path / "all.pkl", "--top-k", "20", "--classes", "cell",
            "--format", "mmdet")
    npz = rpn.load_proposals(str(tmp_path / "all.npz"))
    with open(tmp_path / "all.pkl", "rb") as f:
        loaded = pickle.load(f)
    assert isinstance(loaded, list) and len(loaded) == 3
    assert npz.arrays["file_names"].tolist() == ["b.jpg", "a.jpg", "c.jpg"]   # the file's order
    for i, rows in enumerate(loaded):
        assert rows.dtype == onp.float32 and rows.shape == (len(npz[i]["scores"]), 5)
        onp.testing.assert_array_equal(rows[:, :4], npz[i]["boxes"])
        onp.testing.assert_array_equal(rows[:, 4], npz[i]["scores"])
        assert (onp.diff(rows[:, 4]) <= 0).all()            # best first: num_max_proposals


@pytest.mark.parametrize("format", ["detectron2", "mmdet"])
def test_pickled_formats_refuse_a_split_that_leaves_images_out(tiny_run, tmp_path, capsys,
                                                               format):
    one = make_coco(str(tmp_path / "c"), {f"{i}.jpg": [[1, 1, 9, 9]] for i in range(6)})
    out = tmp_path / "p.pkl"
    command = ["propose", "--checkpoint", tiny_run, "--data", one, "--classes", "cell"]
    assert main(command + ["--split", "val", "--out", str(out), "--format", format]
                + QUIET) == 1
    [error] = errors(capsys.readouterr().err)
    assert f"error: --format {format}" in error and "used as 'train'" in error
    assert ("by position" if format == "mmdet" else "by image id") in error
    assert "--split all" in error
    with open(tmp_path / "c" / "3.jpg", "wb") as f:
        f.write(b"broken")
    assert main(command + ["--skip-bad", "--out", str(out), "--format", format] + QUIET) == 1
    [error] = errors(capsys.readouterr().err)
    assert f"error: --format {format}" in error
    assert "1 image that cannot be used (--skip-bad)" in error
    assert not out.exists()
    assert main(command + ["--skip-bad", "--out", str(tmp_path / "p.json"), "--format",
                           "coco"] + QUIET) == 0


def test_predict_writes_coco_results_with_the_dataset_ids(tiny_run, coco, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["predict", "--checkpoint", tiny_run, "--data", coco, "--split", "val",
                 "--format", "coco", "--top-k", "5", "--out", str(out)]) == 0
    assert last_json(capsys.readouterr().out)["files"] == [str(out / "proposals.json")]
    results = json.loads((out / "proposals.json").read_text())
    truth = os.path.join(coco, "annotations", "instances_val.json")
    ids = [i["id"] for i in json.load(open(truth))["images"]]
    counts = {i: sum(r["image_id"] == i for r in results) for i in ids}
    assert all(1 <= count <= 5 for count in counts.values()), counts
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(COCO(truth).loadRes(str(out / "proposals.json")).getAnnIds()) == len(results)
    # image files have no ids: numbered, with an images list beside
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("x.png", "y.png"):
        Image.new("RGB", (40, 30), (5, 80, 9)).save(photos / name)
    assert main(["predict", "--checkpoint", tiny_run, str(photos), "--format", "coco",
                 "--top-k", "3", "--out", str(tmp_path / "q")]) == 0
    images = json.loads((tmp_path / "q" / "proposals.images.json").read_text())
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images["images"]] == [
        (1, str(photos / "x.png"), 40, 30), (2, str(photos / "y.png"), 40, 30)]
    results = json.loads((tmp_path / "q" / "proposals.json").read_text())
    assert sorted({r["image_id"] for r in results}) == [1, 2]
    assert images["annotations"] == [] and os.path.isfile(tmp_path / "q" / "x.png")


def test_writers_take_their_inputs_as_documented(tmp_path):
    image = ImageProposals(7, "a.jpg", (20, 30), onp.array([[1, 2, 11, 12], [0, 0, 30, 20]]),
                           onp.array([0.9, 1.0], dtype="float32"),
                           onp.array([[0, 1, 1, 5, 5], [rpn.CROWD, 0, 0, 10, 10]], "float32"))
    paths = write_coco_results(str(tmp_path / "r.json"), [image], coco_ids=False)
    listed = json.loads(open(paths[1]).read())
    assert listed["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
         "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
         "iscrowd": 1}]
    assert json.loads(open(paths[0]).read())[0] == {
        "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": pytest.approx(0.9)}
    write_format(str(tmp_path / "d.pkl"), "detectron2", [image])
    with open(tmp_path / "d.pkl", "rb") as f:
        logits = pickle.load(f)["objectness_logits"][0]
    assert onp.isfinite(logits).all() and logits[1] > logits[0] > 0   # p = 1 stays finite
    with pytest.raises(ValueError, match="coco, detectron2, mmdet"):
        write_format(str(tmp_path / "x"), "yolo", [image])
    assert images_list_path("out/val.JSON") == "out/val.images.json"
    assert images_list_path("val.pkl") == "val.pkl.images.json"


def test_each_format_replaces_only_a_file_of_its_own_kind(tiny_run, tmp_path, capsys):
    from conftest import one_line_error
    base = ["propose", "--checkpoint", tiny_run, "--data", "synthetic", "--quiet",
            "--workers", "0"]
    outs = {"coco": tmp_path / "p.json", "detectron2": tmp_path / "d2.pkl",
            "mmdet": tmp_path / "mm.pkl", "npz": tmp_path / "p.npz"}
    for format, out in outs.items():          # written, then replaced: its own file
        for _ in range(2):
            assert main(base + ["--format", format, "--out", str(out)]) == 0, format
    json_of_mine = tmp_path / "mine.json"
    json_of_mine.write_text('{"mine": 1}')
    text = tmp_path / "notes.pkl"
    text.write_text("not a pickle")
    for format, out in (("coco", json_of_mine), ("coco", outs["npz"]), ("npz", outs["coco"]),
                        ("detectron2", text), ("mmdet", outs["coco"])):
        before = out.read_bytes()
        capsys.readouterr()
        assert main(base + ["--format", format, "--out", str(out)]) == 2, (format, out)
        one_line_error(capsys, "not a proposal file")
        assert out.read_bytes() == before
