"""The two loaders of a training run: the run's batch and windows for
training, labels padded to the most objects of either split; the
evaluation batch for validation."""
from conftest import SMALL
from rpn.data.evaluation_split import eval_batch_size
from rpn.data.run_loaders import run_loaders
from rpn.data.sources import open_split


def _splits(num_train=8, num_val=4):
    synthetic = dict(size=64, num_train=num_train, num_val=num_val, seed=0)
    return (open_split("synthetic", "train", synthetic=synthetic),
            open_split("synthetic", "val", synthetic=synthetic))


def test_training_labels_are_padded_to_the_most_objects_of_either_split():
    train, val = _splits()
    config = SMALL.replace(batch_size=4)
    most = max(len(label) for label in list(train.labels) + list(val.labels))
    train_iter, val_iter = run_loaders(config, train, val)
    X, Y, _ = next(iter(train_iter))
    assert X.shape[:2] == (4, 3) and Y.shape == (4, most, 5)
    Xv, Yv, _ = next(iter(val_iter))
    assert Xv.shape[0] == min(eval_batch_size(config, val), len(val.images))
    batch = Xv.shape[0]
    assert Yv.shape[1] >= max(len(label) for label in val.labels[:batch])
    assert len(train_iter) == len(train.images) // 4     # the last incomplete batch dropped


def test_no_validation_set_gives_no_validation_loader():
    train, _ = _splits()
    train_iter, val_iter = run_loaders(SMALL.replace(batch_size=2), train, None)
    assert val_iter is None and len(train_iter) == len(train.images) // 2


def test_windows_are_cut_at_the_runs_window_size():
    train, val = _splits()
    config = SMALL.replace(resize="native", window=32, windows_per_image=2, batch_size=4)
    train_iter, _ = run_loaders(config, train, val)
    X, _, _ = next(iter(train_iter))
    assert X.shape == (4, 3, 32, 32)
    assert len(train_iter) == 2 * len(train.images) // 4
