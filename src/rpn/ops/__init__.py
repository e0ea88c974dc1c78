"""Operations on MXNet arrays that the chapter's modules and the proposal
model stand on: the one call of the native NMS (:mod:`~rpn.ops.nms`), the
one gather of each image's rows (:mod:`~rpn.ops.gather`), the one anchor
grid (:mod:`~rpn.ops.grid`), RoI rows for ``ROIAlign`` (:mod:`~rpn.ops.roi`),
the labeler's NumPy path (:mod:`~rpn.ops.host_labels`), devices
(:mod:`~rpn.ops.devices`), float16 operators (:mod:`~rpn.ops.precision`),
a guard for an MXNet fault (:mod:`~rpn.ops.guards`) and the CPU threads of
MXNet's operators (:mod:`~rpn.ops.threads`, which imports no MXNet: ``rpn``
runs it before MXNet loads). Of the rest of the
package they import only :mod:`rpn.settings`, :mod:`rpn.boxes` and the crowd
code of :mod:`rpn.data.image_set`."""
