"""The scale the default preset trains at, from the objects' sizes: kept,
windows at a larger size with twice the steps, or windows at the photographs' own resolution;
said on stderr and recorded in the run."""
import json

import numpy as onp
import pytest

import rpn
from rpn.config import PRESETS
from rpn.data.scale import (LARGEST_SIZE, SMALLEST, TARGET, WINDOW, WINDOW_STEP_COST,
                            WINDOW_TARGET, choose_scale)


def _image_set(side, image=(1080, 1920), count=5):
    """An ImageSet of ``count`` images of ``image`` pixels, each with three
    square objects of ``side`` pixels."""
    rows = onp.array([[0, x, 10, x + side, 10 + side] for x in (10, 300, 600)],
                     dtype="float32")
    return rpn.ImageSet([f"i{k}.jpg" for k in range(count)], [rows] * count,
                        list(range(count)), [f"i{k}.jpg" for k in range(count)],
                        [image] * count, ("thing",))


def _choose(side, image=(1080, 1920)):
    return choose_scale(_image_set(side, image), PRESETS["default"],
                        small_objects=PRESETS["small-objects"])


def test_objects_large_enough_keep_todays_choice():
    # at 112 / 192, a 1920 x 1080 photograph is scaled by 0.1: 300 px -> 30 px
    choice = _choose(300)
    assert choice.changes == {} and choice.median == pytest.approx(300 * 192 / 1920, rel=1e-3)
    assert "kept" in choice.reason


@pytest.mark.parametrize("side, size", [
    (230, 176),     # 23 px at the default's 0.1: 112 x 35 / 23 = 170.4 -> 176
    (180, 224),     # 18 px (raccoons tiled 3 x 3: 17.6): 217.8 -> 224
    (120, 328),     # 12 px: 326.7 -> 328
    (60, 448),      # 6 px: 653, more than the largest size, where it is 24 (>= 16)
])
def test_small_objects_train_on_windows_at_a_larger_size_with_twice_the_steps(side, size):
    choice = _choose(side)
    median, changes = side / 10, choice.changes
    assert changes["size"] == size and size % 8 == 0 and size <= LARGEST_SIZE
    assert median * size / 112 >= (WINDOW_TARGET if size < LARGEST_SIZE else SMALLEST)
    assert changes["max_size"] == round(192 * size / 112)
    assert changes["window"] == WINDOW and changes["windows_per_image"] == 4
    assert "resize" not in changes and "batch_size" not in changes   # the default's own
    # a step of windows costs half a step of whole photographs: twice the steps
    assert changes["min_steps"] == round(448 / WINDOW_STEP_COST) == 896
    assert f"windows of {WINDOW} px cut at a shorter side of {size}" in choice.reason
    assert f"under {TARGET:g} px" in choice.reason


@pytest.mark.parametrize("side", [20, 35])     # 2 and 3.5 px at the default's 0.1 (14 at 448)
def test_objects_too_small_for_any_size_train_on_windows_with_the_presets_schedule(side):
    choice = _choose(side)
    changes, preset = choice.changes, PRESETS["small-objects"]
    assert changes["resize"] == "native" and changes["window"] == 512
    assert changes["batch_size"] == preset.train.batch_size
    # the preset's schedule, not the default's budget, and the reason says the cost
    assert (changes["epochs"], changes["min_steps"]) == (preset.train.epochs,
                                                        preset.train.min_steps)
    step_pixels = 16 * 108 * 192                  # the default's step: 16 of 108 x 192
    times = 600 * 4 * 512 * 512 / (448 * step_pixels)
    assert f"about {times:.0f} times the default's CPU" in choice.reason
    assert "own resolution" in choice.reason


def test_a_set_without_a_sized_object_keeps_the_default():
    found = _image_set(20)._replace(sizes=[None] * 5)
    choice = choose_scale(found, PRESETS["default"], small_objects=PRESETS["small-objects"])
    assert choice.changes == {} and "no object" in choice.reason


def test_a_run_says_and_records_the_scale_it_chose(tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=512,
                         width=512, objects=(5, 8), sides=(8 / 512, 16 / 512))
    run = tmp_path / "run"
    rpn.fit(root, str(run), epochs=1, quiet=True)
    err = capsys.readouterr().err
    assert "rpn train: scale: the median object" in err and "own resolution" in err
    with open(run / "config.json") as f:
        saved = json.load(f)
    assert saved["scale_choice"]["changes"]["resize"] == "native"
    assert saved["config"]["resize"] == "native" and saved["config"]["window"] == 512
    assert saved["config"]["epochs"] == 1         # given epochs stay: the schedule is the user's
    # given a size, the default chooses nothing
    rpn.fit(root, str(tmp_path / "sized"), epochs=1, quiet=True, size=112, batch_size=2)
    with open(tmp_path / "sized" / "config.json") as f:
        assert "scale_choice" not in json.load(f)
    assert "scale:" not in capsys.readouterr().err


def test_a_run_on_small_objects_trains_windows_at_a_larger_size(tmp_path, capsys):
    # objects of 64 to 96 px in 512 x 512 photographs: 14 to 21 px at 112
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=4, num_val=2, height=512,
                         width=512, objects=(2, 3), sides=(64 / 512, 96 / 512))
    run = tmp_path / "run"
    recall = rpn.fit(root, str(run), epochs=1, quiet=True)
    err = capsys.readouterr().err
    assert f"windows of {WINDOW} px cut at a shorter side of" in err
    with open(run / "config.json") as f:
        saved = json.load(f)
    size = saved["scale_choice"]["changes"]["size"]
    assert size > 112 and saved["config"]["size"] == size
    assert saved["config"]["window"] == WINDOW and saved["config"]["resize"] == "keep_ratio"
    assert saved["config"]["epochs"] == 1         # given epochs stay
    # the final evaluation scored both validation photographs
    assert recall["images"] == 2 and 0.0 <= recall["AR@100"] <= 1.0
