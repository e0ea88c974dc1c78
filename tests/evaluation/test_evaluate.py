"""rpn.evaluate: recall of a trained model, of a bare proposal model (at the
ks its own settings allow), and of an export, on any split the package
reads."""
import mxnet as mx
import pytest

import rpn
from conftest import SMALL
from helpers.models import small_model


def test_a_path_a_loaded_model_and_an_export_give_the_same_recall(tiny_run, tmp_path):
    by_path, _ = rpn.evaluate(tiny_run)
    loaded = rpn.load(tiny_run)
    by_model, recall = rpn.evaluate(loaded)
    assert by_path == by_model and by_path["images"] == 4
    assert recall.ks == loaded.config.ks
    rpn.export(loaded, str(tmp_path / "exp"))
    exported, _ = rpn.evaluate(str(tmp_path / "exp"))
    assert exported["AR@100"] == pytest.approx(by_path["AR@100"], abs=1e-6)
    # the model's own data by default; other data and ks when given
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=3, height=64, width=80)
    other, _ = rpn.evaluate(loaded, root, "val", ks=(5,))
    assert other["images"] == 3 and "AR@5" in other and "AR@100" not in other


def test_a_bare_proposal_model_is_evaluated_with_its_own_settings(tmp_path):
    net = small_model(SMALL, [mx.cpu()], seed=1)
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=3, height=64, width=80)
    result, _ = rpn.evaluate(net, root, "val")
    assert result["images"] == 3 and 0 <= result["AR@100"] <= 1
    with pytest.raises(ValueError, match="give data="):
        rpn.evaluate(net)
    with pytest.raises(TypeError, match="expected a trained model"):
        rpn.evaluate(object(), root)


def test_a_bare_model_that_keeps_300_proposals_is_evaluated_at_100_and_300(tmp_path):
    mx.random.seed(1)
    net = rpn.RegionProposalNetwork.from_settings(SMALL.model.replace(post_nms_top_n_test=300))
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=2, height=64, width=64)
    result, recall = rpn.evaluate(net, root, "val")
    assert recall.ks == (100, 300) and "AR@300" in result and "AR@1000" not in result


def test_a_split_without_objects_is_named(tiny_run, tmp_path):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=2, num_val=2, height=64, width=64)
    with pytest.raises(ValueError, match="no object of the classes"):
        rpn.evaluate(tiny_run, root, "val", classes=["unicorn"])
