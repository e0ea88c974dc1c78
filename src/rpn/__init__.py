"""rpn: the Region Proposal Network of Faster R-CNN on MXNet/Gluon.

The package mirrors the d2l chapter "Region Proposal Networks": its code,
with ``d2l.`` replaced by ``rpn.``, runs against this package. Importing it
switches MXNet to NumPy semantics (``npx.set_np()``), as the chapter does in
its first cell: every function takes and returns ``mxnet.np`` arrays.

Box convention: corner form ``(xmin, ymin, xmax, ymax)``, normalised to
``[0, 1]``; pixels only at the edges (datasets, drawing).
"""
try:
    import mxnet as _mx
    from mxnet import npx as _npx
except ImportError as _error:  # pragma: no cover - depends on the install
    raise ImportError(
        "rpn needs MXNet 1.9.1, which comes through an extra because its CPU "
        "and CUDA builds are different distributions: pip install 'rpn[cpu]' "
        "(CPU), 'rpn[cu112]' or 'rpn[cu117]' (CUDA 11.2 / 11.7)") from _error

_npx.set_np()

from .anchors import (RPN_RATIOS, RPN_SIZES, generate_anchors,  # noqa: E402
                      num_anchors, rpn_anchors)
from .boxes import (anchor_plus_offset, anchor_to_gt_offset,  # noqa: E402
                    box_center_to_corner, box_corner_to_center, iou,
                    project_box)
from .head import RPNOutput  # noqa: E402
from .nms import nms  # noqa: E402
from .targets import (IGNORE, NEGATIVE, POSITIVE, label_anchors,  # noqa: E402
                      rpn_targets)

#: Per-channel mean and standard deviation of ImageNet, used to normalise
#: images (chapter section "The VOC detection dataset").
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)

__version__ = "0.1.0"

__all__ = [
    "RGB_MEAN", "RGB_STD", "RPN_SIZES", "RPN_RATIOS",
    "box_corner_to_center", "box_center_to_corner", "iou",
    "anchor_to_gt_offset", "anchor_plus_offset", "project_box",
    "generate_anchors", "rpn_anchors", "num_anchors", "nms", "RPNOutput",
    "POSITIVE", "NEGATIVE", "IGNORE", "label_anchors", "rpn_targets",
]
