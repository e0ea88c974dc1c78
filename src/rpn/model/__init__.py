"""The proposal model (:class:`rpn.RegionProposalNetwork`, in
:mod:`~rpn.model.network`): the chapter's backbone, head, anchors and
labels as one block, and the rooms beside it: the canvas frame of a padded
batch (:mod:`~rpn.model.canvas`), the anchors' labels
(:mod:`~rpn.model.labels`), the proposal layer
(:mod:`~rpn.model.proposal_layer`), the refinement stage
(:mod:`~rpn.model.refine`), its outputs (:mod:`~rpn.model.outputs`) and its
loss (:mod:`~rpn.model.loss`)."""
