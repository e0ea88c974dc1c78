"""rpn: the Region Proposal Network of Faster R-CNN on MXNet/Gluon.

The package mirrors the d2l chapter "Region Proposal Networks": its code,
with ``d2l.`` replaced by ``rpn.``, runs against this package. Importing it
switches MXNet to NumPy semantics (``npx.set_np()``), as the chapter does in
its first cell: every function takes and returns ``mxnet.np`` arrays.

Box convention: corner form ``(xmin, ymin, xmax, ymax)``, normalised to
``[0, 1]``; pixels only at the edges (datasets, drawing).
"""
# MXNet's CPU threads, before MXNet loads (rpn.ops.threads says why)
from .ops.threads import set_default_threads as _set_default_threads

_set_default_threads()

try:
    from mxnet import npx as _npx
except ImportError as _error:  # pragma: no cover - depends on the install
    raise ImportError(
        "rpn needs MXNet 1.9.1, which comes through an extra because its CPU "
        "and CUDA builds are different distributions: pip install 'rpn[cpu]' "
        "(CPU), 'rpn[cu112]' or 'rpn[cu117]' (CUDA 11.2 / 11.7)") from _error

_npx.set_np()

# the chapter, section by section
from .backbone import detection_backbone, download_pretrained  # noqa: E402
from .head import RPNOutput  # noqa: E402
from .boxes import (anchor_plus_offset, anchor_to_gt_offset,  # noqa: E402
                    box_center_to_corner, box_corner_to_center, iou,
                    project_box)
from .anchors import (RPN_RATIOS, RPN_SIZES, generate_anchors,  # noqa: E402
                      num_anchors, rpn_anchors)
from .targets import (IGNORE, NEGATIVE, POSITIVE, label_anchors,  # noqa: E402
                      rpn_targets)
from .loss import DetectionEvaluation, DetectionLoss  # noqa: E402
from .train import (as_context_list, rpn_batch, train_detection,  # noqa: E402
                    try_gpu)
from .predict import predict_rpn, proposals_from_predictions  # noqa: E402
from .suppression import nms  # noqa: E402
from .visualize import (denormalize_image, show_boxes,  # noqa: E402
                        visualize_rpn_preds)
# the chapter's companion sections: VOC data
from .data.dataset import RGB_MEAN, RGB_STD, DetectionDataset  # noqa: E402
from .data.voc import (VOC_CLASSES, list_voc_split,  # noqa: E402
                       load_data_voc_detection, read_voc_detection_labels,
                       read_voc_images)
# what the package adds
from .settings import ModelSettings  # noqa: E402
from .config import RunConfig  # noqa: E402
from .model.outputs import Proposals, TrainingOutput  # noqa: E402
from .model.network import RegionProposalNetwork  # noqa: E402
from .data.image_set import CROWD, ImageSet  # noqa: E402
from .data.images import BadImageError, read_image  # noqa: E402
from .data.image_check import check_images  # noqa: E402
from .data.preprocess import Resize  # noqa: E402
from .data.loader import DetectionLoader  # noqa: E402
from .data.synthetic import (SYNTHETIC_CLASSES, SyntheticImages,  # noqa: E402
                             load_data_synthetic, write_voc)
from .data.coco import read_coco, write_coco  # noqa: E402
from .evaluation.recall import AR_THRESHOLDS, ProposalRecall, proposal_recall  # noqa: E402
from .evaluation.evaluate import evaluate  # noqa: E402
from .runs.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from .runs.trained import TrainedModel, export, load  # noqa: E402
from .proposals.images import predict_images  # noqa: E402
from .proposals.file import load_proposals, propose  # noqa: E402
from .ops.roi import proposals_to_rois, roi_align  # noqa: E402
from .training.fit import fit  # noqa: E402

__version__ = "0.4.0"

__all__ = [
    "RGB_MEAN", "RGB_STD", "RPN_SIZES", "RPN_RATIOS",
    "box_corner_to_center", "box_center_to_corner", "iou",
    "anchor_to_gt_offset", "anchor_plus_offset", "project_box",
    "generate_anchors", "rpn_anchors", "num_anchors", "nms", "RPNOutput",
    "POSITIVE", "NEGATIVE", "IGNORE", "CROWD", "label_anchors", "rpn_targets",
    "detection_backbone", "download_pretrained", "DetectionLoss", "DetectionEvaluation",
    "predict_rpn", "proposals_from_predictions", "rpn_batch",
    "train_detection", "try_gpu", "as_context_list",
    "load_checkpoint", "latest_checkpoint", "show_boxes",
    "visualize_rpn_preds", "denormalize_image",
    "DetectionDataset", "DetectionLoader", "read_image", "check_images",
    "BadImageError", "Resize", "ImageSet", "SYNTHETIC_CLASSES",
    "SyntheticImages", "load_data_synthetic", "write_voc", "write_coco", "read_coco",
    "VOC_CLASSES", "list_voc_split", "load_data_voc_detection", "read_voc_detection_labels",
    "read_voc_images", "AR_THRESHOLDS", "ProposalRecall", "proposal_recall",
    # the proposal model and what the command line does, for Python users
    "RegionProposalNetwork", "ModelSettings", "RunConfig", "Proposals", "TrainingOutput",
    "TrainedModel", "fit", "load", "export", "evaluate", "predict_images",
    "propose", "load_proposals", "proposals_to_rois", "roi_align",
    # d2l's helpers the chapter calls, re-exported on first use
    "Animator", "Accumulator", "set_figsize", "show_images",
]

_D2L_HELPERS = ("Animator", "Accumulator", "set_figsize", "show_images",
                "use_svg_display", "plt")


def __getattr__(name):
    """d2l's plotting helpers, imported on first use (d2l is slow to import)."""
    if name in _D2L_HELPERS:
        from d2l import mxnet as d2l
        return getattr(d2l, name)
    raise AttributeError(f"module 'rpn' has no attribute {name!r}")
