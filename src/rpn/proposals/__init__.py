"""Proposals for files: ``rpn predict``'s pictures and JSON for image files
(:mod:`~rpn.proposals.images`, its inputs :mod:`~rpn.proposals.inputs`) and
``rpn propose``'s proposal files for a second stage
(:mod:`~rpn.proposals.file`), and the files of COCO's results, detectron2 and
mmdetection (:mod:`~rpn.proposals.formats`)."""
