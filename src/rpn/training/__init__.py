"""Training: the loop every trainer shares (:class:`~rpn.training.trainer.Trainer`),
what a step computes (:mod:`~rpn.training.step`), what happens around the
steps (:mod:`~rpn.training.hooks`), the optimizer and KVStore
(:mod:`~rpn.training.optimizer`), AMP's loss scaler (:mod:`~rpn.training.amp`),
and a whole run into a run folder, :func:`rpn.fit` (:mod:`~rpn.training.fit`).
The chapter's ``train_detection`` (:mod:`rpn.train`) runs on the same trainer."""
