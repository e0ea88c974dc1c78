"""The two loaders of a training run, from its settings.

:func:`run_loaders` builds what :func:`rpn.fit` trains and validates on:
the training split's loader with the run's augmentation and windows, and
the validation split's in the batch :func:`rpn.data.evaluation_split.eval_batch_size`
chooses. Training labels are padded to the most objects of any image of
either split, so that every training step has one label shape.
"""
from .evaluation_split import eval_batch_size
from .preprocess import Resize
from .sources import make_loader

__all__ = ["run_loaders"]


def run_loaders(config, train_set, val_set, *, num_workers=0, seed=0, shard=None):
    """``(train_iter, val_iter)`` of the :class:`rpn.ImageSet` splits
    ``train_set`` and ``val_set`` (``None``: no validation, ``val_iter``
    ``None``) under the :class:`rpn.config.RunConfig` ``config``;
    ``shard`` ``(rank, workers)`` of a distributed run. Batches are ``(X
    (B, 3, H, W), Y (B, G, 5), info)``, pixel corner boxes; in training
    ``G`` is the most objects of an image of either split."""
    most = max(len(label) for label in list(train_set.labels)
               + list(val_set.labels if val_set else []))
    resize, train = Resize.of(config.model), config.train
    divisor = config.model.size_divisor
    train_iter = make_loader(
        train_set, resize, train.batch_size, train=True, num_workers=num_workers,
        seed=seed, shard=shard, augment=train.augment, crop_prob=train.crop_prob,
        min_crop_scale=train.min_crop_scale, max_objects=most, size_divisor=divisor,
        window=train.window, windows_per_image=train.windows_per_image,
        window_focus=train.window_focus, window_visible=train.window_visible)
    val_iter = None if val_set is None else make_loader(
        val_set, resize, eval_batch_size(config, val_set), train=False,
        num_workers=num_workers, max_objects=most, size_divisor=divisor)
    return train_iter, val_iter
