"""The pictures of a run and of rpn predict, checked through the data they
draw (the lines and boxes of the figure) and the size of the files, not
their pixels."""
import numpy as onp
import pytest
from PIL import Image

from rpn.evaluation import pictures
from rpn.evaluation.pictures import (MAX_PICTURE_SIDE, draw_image_proposals, plot_curves,
                                     plot_proposal_recall)
from rpn.evaluation.recall import ProposalRecall


@pytest.fixture
def figures(monkeypatch):
    """The figures the pictures module saves, kept open to be read."""
    kept = []
    save = pictures.write_figure

    def keep(path, figure, **options):
        kept.append(figure)
        return save(path, figure, **options)
    monkeypatch.setattr(pictures, "write_figure", keep)
    import matplotlib.pyplot as plt
    monkeypatch.setattr(plt, "close", lambda fig: None)
    return kept


@pytest.mark.parametrize("height, width, expected", [
    (417, 650, (650, 417)), (316, 481, (481, 316)), (37, 5, (5, 37)),
    (100, 2000, (MAX_PICTURE_SIDE, 80)), (4000, 3000, (1200, MAX_PICTURE_SIDE))])
def test_predict_draws_at_the_images_own_size_capped(tmp_path, figures, height, width,
                                                     expected):
    image = onp.full((height, width, 3), 90, dtype="uint8")
    boxes = onp.array([[0, 0, width / 2, height / 2], [width / 4, height / 4, width, height]])
    path = draw_image_proposals(image, boxes, [0.98, 0.5], str(tmp_path / "a.png"))
    assert Image.open(path).size == expected
    ax = figures[-1].axes[0]
    drawn = [(p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height())
             for p in ax.patches]
    onp.testing.assert_allclose(drawn, boxes)
    assert [t.get_text() for t in ax.texts] == ["1: 0.98", "2: 0.50"]
    assert ax.get_xlim() == (0, width) and ax.get_ylim() == (height, 0)
    assert all(p.get_path_effects() for p in ax.patches)


def test_recall_against_proposals_draws_the_recall_at_every_count(tmp_path, figures):
    recall = ProposalRecall(ks=(1, 3))
    objects = onp.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float)
    # rank 0 fits object 0 at IoU 0.8, rank 2 fits object 1 exactly, object 2 never
    recall.update_image([[0, 0, 10, 8], [60, 60, 70, 70], [20, 20, 30, 30]], objects)
    plot_proposal_recall(recall, str(tmp_path / "r.png"))
    lines = {line.get_label(): line for line in figures[-1].axes[0].get_lines()
             if not line.get_label().startswith("_")}
    assert sorted(lines) == ["IoU 0.5", "IoU 0.7", "average over IoU 0.5:0.95"]
    for line in lines.values():
        assert list(line.get_xdata()) == [1, 2, 3]
    assert list(lines["IoU 0.5"].get_ydata()) == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    assert list(lines["IoU 0.7"].get_ydata()) == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    # averaged over 0.50 ... 0.95: the 0.8 box counts at 0.50 to 0.80 (7 of 10)
    assert list(lines["average over IoU 0.5:0.95"].get_ydata()) == pytest.approx(
        [0.7 / 3, 0.7 / 3, 1.7 / 3])
    result = recall.result()
    assert result["R@1@0.5"] == lines["IoU 0.5"].get_ydata()[0]
    assert result["AR@3"] == pytest.approx(lines["average over IoU 0.5:0.95"].get_ydata()[2])


def test_the_curves_are_drawn_from_the_event_log(tmp_path, figures):
    rows = [
        {"kind": "step", "epoch": 1, "step": 5, "steps": 10, "global_step": 5, "loss": 2.0,
         "loss_class": 0.8, "loss_box": 1.2, "lr_backbone": 0.001, "lr_output": 0.002,
         "class_err": 0.4, "box_mae": 1.1},
        {"kind": "step", "epoch": 1, "step": 10, "steps": 10, "global_step": 10, "loss": 1.5,
         "loss_class": 0.5, "loss_box": 1.0, "lr_backbone": 0.002, "lr_output": 0.004,
         "class_err": 0.3, "box_mae": 0.9},
        {"kind": "epoch", "epoch": 1, "global_step": 10, "loss": 1.75, "test_class_err": 0.35,
         "test_box_mae": 1.0, "AR@100": 0.25, "R@100@0.5": 0.6, "R@100@0.7": 0.3}]
    plot_curves(rows, str(tmp_path / "c.png"))
    axes = figures[-1].axes
    lines = {(ax.get_title(), line.get_label()): line for ax in axes
             for line in ax.get_lines()}
    loss = lines[("loss", "loss")]
    assert list(loss.get_xdata()) == [0.5, 1.0] and list(loss.get_ydata()) == [2.0, 1.5]
    assert list(lines[("loss", "class")].get_ydata()) == [0.8, 0.5]
    assert list(lines[("loss", "epoch mean")].get_ydata()) == [1.75]
    assert list(lines[("learning rate", "output")].get_ydata()) == [0.002, 0.004]
    assert list(lines[("class error, box MAE", "val box MAE")].get_ydata()) == [1.0]
    assert list(lines[("validation recall", "AR@100")].get_xdata()) == [1]
    assert list(lines[("validation recall", "R@100@0.7")].get_ydata()) == [0.3]
    # a history without an event log (records without "kind") still draws
    plot_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}], str(tmp_path / "h.png"))
    old = {line.get_label(): line for line in figures[-1].axes[0].get_lines()}
    assert list(old["epoch mean"].get_ydata()) == [1.0, 0.5]
    assert [t.get_text() for t in figures[-1].axes[3].texts] == ["not measured"]
