"""Faults a stranger's audit found, each injected."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL
from rpn.training.step import normalised_losses
from rpn.model.loss import ProposalLoss
from rpn.model.outputs import TrainingOutput
from rpn.model.refine import RefineOutput
from rpn.data.sources import DataError, open_split


def test_a_bare_model_that_keeps_300_proposals_is_evaluated_at_100_and_300(tmp_path):
    mx.random.seed(1)
    net = rpn.RegionProposalNetwork.from_settings(SMALL.model.replace(post_nms_top_n_test=300))
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=2, height=64, width=64)
    result, recall = rpn.evaluate(net, root, "val")
    assert recall.ks == (100, 300) and "AR@300" in result and "AR@1000" not in result


def test_the_synthetic_set_keeps_only_the_classes_asked_for():
    every = open_split("synthetic", "val", synthetic=dict(size=64, num_train=4, num_val=8,
                                                          seed=0))
    some = open_split("synthetic", "val", classes=["ellipse"],
                      synthetic=dict(size=64, num_train=4, num_val=8, seed=0))
    assert some.classes == ("ellipse",)
    for all_rows, rows in zip(every.labels, some.labels):
        ellipses = all_rows[all_rows[:, 0] == rpn.SYNTHETIC_CLASSES.index("ellipse")]
        assert len(rows) == len(ellipses) and (rows[:, 0] == 0).all()
        onp.testing.assert_array_equal(rows[:, 1:], ellipses[:, 1:])
    with pytest.raises(DataError, match="no class \\['cat'\\]"):
        open_split("synthetic", "val", classes=["cat"])


def test_an_export_into_a_run_folder_is_refused(tiny_run, tmp_path):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    with pytest.raises(rpn.runs.folder.RunError, match="holds a run"):
        rpn.export(str(copy), str(copy))
    assert not (copy / "rpn-symbol.json").exists()
    rpn.export(str(copy), str(tmp_path / "exp"))
    rpn.export(str(copy), str(tmp_path / "exp"))          # an export may be replaced


def test_rois_of_no_image_and_inputs_on_another_context(tiny_run):
    assert rpn.proposals_to_rois([], np.zeros((0, 2))).shape == (0, 5)
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


def _refined(rng, rois, positives):
    n = 50
    labels = onp.where(onp.arange(n) < 5, 1.0, 0.0)
    arrays = [rng.normal(size=(n, 2)), rng.normal(size=(n, 4)), labels,
              rng.normal(size=(n, 4)) * labels[:, None]]
    first = [np.array(a, dtype="float32") for a in arrays]
    boxes = onp.sort(rng.uniform(0, 1, (rois, 2, 2)), axis=1).reshape(rois, 4)[:, [0, 2, 1, 3]]
    refine = RefineOutput(np.array(rng.normal(scale=0.1, size=(rois, 4)), dtype="float32"),
                          np.array(rng.normal(size=rois), dtype="float32"),
                          np.array(rng.normal(scale=0.1, size=(rois, 4)), dtype="float32"),
                          np.array(boxes, dtype="float32"), np.array(boxes, dtype="float32"),
                          np.array((onp.arange(rois) < positives).astype("float32")),
                          np.ones(rois))
    anchors = np.array(onp.tile([[0.1], [0.1], [0.5], [0.5]], (1, n)), dtype="float32")
    return TrainingOutput(*first, anchors, None, None, refine)


def test_the_refinement_loss_is_normalised_by_the_whole_batch(rng):
    parts = [_refined(rng, 8, 2), _refined(rng, 8, 6)]
    loss = ProposalLoss(refine_weight=1.0)
    split = sum(float(l.sum()) for l in normalised_losses(loss, parts))
    whole = TrainingOutput(*(np.concatenate([a, b]) for a, b in zip(parts[0][:4], parts[1][:4])),
                           np.concatenate([parts[0].anchors, parts[1].anchors], axis=1), None,
                           None, RefineOutput(*(np.concatenate([a, b]) for a, b in zip(
                               parts[0].refine, parts[1].refine))))
    assert split == pytest.approx(float(normalised_losses(loss, [whole])[0].sum()), rel=1e-5)
