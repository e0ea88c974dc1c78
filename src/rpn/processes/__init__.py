"""Processes: signals that end a command in one line
(:mod:`~rpn.processes.signals`), child processes that die with their parent
(:mod:`~rpn.processes.children`), and the supervisor every process of a
cluster runs under (:mod:`~rpn.processes.supervise`, run as a script by
``python -m rpn.launch``)."""
