"""The proposal model a run or export folder holds: loaded (with the
backbone it was trained on), exported as one graph (never into a run
folder), moved to other settings and contexts, and an altered export
refused."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import copy_run, tiny_fit
from helpers.models import assert_same_proposals
from rpn.cli import main
from rpn.model.network import RegionProposalNetwork


def test_load_gives_the_run_and_the_export_as_proposal_models(tmp_path):
    out = str(tmp_path / "run")
    rpn.fit("synthetic", out, **tiny_fit())
    run_model = rpn.load(out)
    assert isinstance(run_model, rpn.TrainedModel) and not run_model.is_export
    assert isinstance(run_model.net, RegionProposalNetwork)
    assert run_model.classes == tuple(rpn.SYNTHETIC_CLASSES)
    assert run_model.source == out and run_model.record["data"] == "synthetic"
    rpn.export(out, str(tmp_path / "exp"))
    exported = rpn.load(str(tmp_path / "exp"))
    assert exported.is_export and exported.classes == run_model.classes
    X = np.random.normal(size=(2, 3, 64, 96))
    sizes = np.array([[64, 96], [64, 64]])
    assert_same_proposals(run_model(X, sizes), exported(X, sizes))
    assert exported.resize == run_model.resize
    # an altered export is refused, naming the file
    params = tmp_path / "exp" / "rpn-0000.params"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="rpn-0000.params is corrupt"):
        rpn.load(str(tmp_path / "exp"))
    assert os.path.isfile(tmp_path / "exp" / "config.json")


def test_an_export_into_a_run_folder_is_refused(tiny_run, tmp_path):
    copy = copy_run(tiny_run, tmp_path, "run")
    with pytest.raises(rpn.runs.folder.RunError, match="holds a run"):
        rpn.export(str(copy), str(copy))
    assert not (copy / "rpn-symbol.json").exists()
    rpn.export(str(copy), str(tmp_path / "exp"))
    rpn.export(str(copy), str(tmp_path / "exp"))          # an export may be replaced


def test_a_loaded_model_follows_its_context_not_its_inputs(tiny_run):
    model = rpn.load(tiny_run, ctx=mx.cpu(1))
    scores, boxes = model(np.zeros((1, 3, 64, 64)), np.array([[64, 64]]))   # on cpu(0)
    assert scores.ctx == mx.cpu(1) and boxes.ctx == mx.cpu(1)


def test_with_settings_changes_inference_only(tiny_run):
    model = rpn.load(tiny_run)
    voted = model.with_settings(box_voting=0.7, nms_threshold=0.8)
    assert voted.config.model.box_voting == 0.7 and voted.net.settings.nms_threshold == 0.8
    assert model.config.model.box_voting is None            # the original is untouched
    X, sizes = np.random.normal(size=(1, 3, 64, 64)), np.array([[64, 64]])
    assert not onp.allclose(model(X, sizes).boxes.asnumpy(), voted(X, sizes).boxes.asnumpy())
    with pytest.raises(rpn.runs.folder.RunError, match="stride"):
        model.with_settings(stride=16)


def test_the_run_folder_records_the_backbone_and_every_command_rebuilds_it(
        mobile_run, tmp_path, capsys):
    with open(os.path.join(mobile_run, "config.json")) as f:
        saved = json.load(f)
    assert saved["config"]["backbone"] == "mobilenetv2_0.25"
    assert saved["pretrained"] is None and saved["amp"] is False
    model = rpn.load(mobile_run)
    assert model.net.settings.backbone == "mobilenetv2_0.25"
    assert any("mobilenetv2" in k for k in model.net.backbone.collect_params())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", mobile_run, "--json", "--quiet",
                 "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 4
    assert main(["propose", "--checkpoint", mobile_run, "--data", "synthetic", "--quiet",
                 "--out", str(tmp_path / "p.npz")]) == 0
    assert len(rpn.load_proposals(str(tmp_path / "p.npz"))) == 4
    assert main(["export", "--checkpoint", mobile_run, "--out", str(tmp_path / "x")]) == 0
    exported = rpn.load(str(tmp_path / "x"))
    assert exported.config.model.backbone == "mobilenetv2_0.25"
    X = np.zeros((1, 3, 64, 64))
    sizes = np.array([[64, 64]])
    original = model(X, sizes)
    onp_equal = (original.boxes.asnumpy() == exported(X, sizes).boxes.asnumpy())
    assert onp_equal.all()


def test_an_export_altered_to_a_size_no_image_may_have_is_refused(tiny_run, tmp_path, capsys):
    """config.json edited to size=30000 and the manifest made again: every
    image would become 900 megapixels; one line, not a MemoryError."""
    from conftest import one_line_error
    from helpers.files import write_image
    out = tmp_path / "exp"
    rpn.export(tiny_run, str(out))
    config = json.loads((out / "config.json").read_text())
    config["config"]["size"] = config["config"]["max_size"] = 30000
    (out / "config.json").write_text(json.dumps(config))
    os.remove(out / "MANIFEST.json")
    rpn.runs.checkpoint.write_manifest(str(out))
    with pytest.raises(rpn.runs.folder.RunError, match="size=30000"):
        rpn.load(str(out))
    image = write_image(tmp_path / "photo.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), image, "--out",
                 str(tmp_path / "p")]) == 2
    one_line_error(capsys, "size=30000", "64000000")
