"""Evaluation: proposal recall as COCO reports it
(:mod:`~rpn.evaluation.recall`), a trained model's recall on a split
(:mod:`~rpn.evaluation.evaluate`: ``rpn.evaluate``), and the pictures of a
run (:mod:`~rpn.evaluation.pictures`)."""
