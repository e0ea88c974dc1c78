"""One split for a trained model, read as its run recorded it, and the
batch it is evaluated in (by pixels at the photographs' own resolution)."""
from types import SimpleNamespace

import pytest

import rpn
from helpers.files import make_voc
from rpn.config import PRESETS
from rpn.data.evaluation_split import EVAL_BATCH_PIXELS, eval_batch_size, load_split
from rpn.data.image_set import DataError


@pytest.mark.parametrize("sizes, scale, expected", [
    ([(2160, 3840)] * 3, 1.0, 1),                       # a 4K photograph alone
    ([(480, 640)] * 3, 1.0, 4),                         # many fit: the training batch
    ([(1080, 1920), (1080, 1920), (2160, 3840)], 1.0, 1),   # the median decides
    ([(2160, 3840)] * 3, 0.25, 4),                      # scaled down, they fit again
])
def test_images_at_their_own_resolution_are_batched_by_pixels(sizes, scale, expected):
    config = PRESETS["small-objects"].replace(scale=scale)
    assert eval_batch_size(config, SimpleNamespace(sizes=sizes)) == expected
    median = sorted(h * w for h, w in sizes)[len(sizes) // 2] * scale ** 2
    assert expected == max(1, min(4, int(EVAL_BATCH_PIXELS // median)))


def test_resized_images_use_the_training_batch_and_a_given_batch_wins():
    found = SimpleNamespace(sizes=[(2160, 3840)])
    assert eval_batch_size(PRESETS["default"], found) == 16
    assert eval_batch_size(PRESETS["small-objects"], found, batch_size=3) == 3


def test_a_model_reads_its_runs_own_validation_split(tiny_run, capsys):
    model = rpn.load(tiny_run)
    found, loader = load_split(model, None, None, command="rpn evaluate")
    assert len(found.images) == model.config.num_val
    assert "rpn evaluate: val:" in capsys.readouterr().err
    batches = list(loader)
    assert sum(X.shape[0] for X, _, _ in batches) == model.config.num_val


def test_a_split_without_the_classes_objects_has_nothing_to_recall(tiny_run, tmp_path):
    data = make_voc(str(tmp_path / "voc"), {"a": [("dog", 5, 5, 30, 30)],
                                            "b": [("cat", 5, 5, 30, 30)]},
                    lists={"train": ["a"], "val": ["b"]})
    model = rpn.load(tiny_run)
    found, _ = load_split(model, data, "val", classes=["cat"], require_objects=True)
    assert len(found.images) == 1
    with pytest.raises(DataError, match="no object of the classes \\['dog'\\]: there is "
                                        "nothing to recall"):
        load_split(model, data, "val", classes=["dog"], require_objects=True)
