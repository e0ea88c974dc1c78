"""Run folders and export folders: their files (:mod:`~rpn.runs.folder`),
checkpoints (:mod:`~rpn.runs.checkpoint`, :mod:`~rpn.runs.optimizer_state`,
:mod:`~rpn.runs.retention`) and the manifest that checks them and exports
(:mod:`~rpn.runs.manifest`),
the one writer (:mod:`~rpn.runs.lock`), what a resume changes
(:mod:`~rpn.runs.resume`), safe writes (:mod:`~rpn.runs.fileio`) and the
trained model a folder holds (:mod:`~rpn.runs.trained`: ``rpn.load``,
``rpn.export``)."""
