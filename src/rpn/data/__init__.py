"""Data: one split of a dataset as an :class:`rpn.ImageSet`
(:mod:`~rpn.data.image_set`, with the one box rule), the readers (VOC,
COCO, YOLO, the synthetic set), opening data by name (:mod:`~rpn.data.sources`)
and as a trained model's run recorded it (:mod:`~rpn.data.evaluation_split`),
images and the check of every one before training (:mod:`~rpn.data.images`,
:mod:`~rpn.data.image_check`), preprocessing, the chapter's
:class:`rpn.DetectionDataset` and the loaders (:mod:`~rpn.data.dataset`,
:mod:`~rpn.data.loader`, :mod:`~rpn.data.batch`), and the lines that say
what a split holds (:mod:`~rpn.data.reports`)."""
