"""Ending on Ctrl-C or SIGTERM with one line instead of a traceback.

Inside :func:`signals_interrupt` (the command line's ``main`` runs every
command in it) SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``,
as Ctrl-C raises ``KeyboardInterrupt``: the same clean-up runs for both
(a checkpoint being written is removed, the previous one stays, loader
processes end). The training loop reports where it is
(:func:`training_at`), and :func:`interrupted` makes the one line::

    rpn train: interrupted (SIGINT) at epoch 3, step 5 of 12; resume with --resume

and the exit code, ``128 + N`` for signal ``N`` (130 for SIGINT, 143 for
SIGTERM), as ``python -m rpn.launch`` reports a worker killed by a signal.
Forked worker processes get the signal's default action back (a worker
stuck in C code, where a Python handler never runs, still ends on SIGTERM). A signal sent to the whole process group (a
terminal, ``kill -- -PGID``, a batch system) can end a loader worker while
it holds its pool's queue lock, and the pool's own clean-up would then wait
for ever: the program therefore ends with :func:`end_process`, which kills
its worker processes and exits at once (what had to be cleaned up, a
checkpoint being written and the run folder's lock, already was).
"""
import contextlib
import multiprocessing
import os
import signal
import sys

__all__ = ["Terminated", "signals_interrupt", "training_at", "interrupted", "end_process"]

_position = {}
_installed = []         # the handlers signals_interrupt has in force


def _default_in_child():
    """A forked child gets the default action back: a worker stuck in C code
    (where a Python handler never runs) must still end on SIGTERM."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            if signal.getsignal(signum) in _installed:
                signal.signal(signum, signal.SIG_DFL)
        except (ValueError, OSError):
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_in_child)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another signal) received: ends the work as Ctrl-C does."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def training_at(epoch, step, steps):
    """The training loop is at ``step`` (0-based) of ``steps`` in ``epoch``
    (0-based)."""
    _position.update(epoch=epoch, step=step, steps=steps)


@contextlib.contextmanager
def signals_interrupt(signals=(signal.SIGTERM,)):
    """Within the block, each of ``signals`` raises :class:`Terminated` in
    this process (a forked child ends by the signal's default action).
    Outside the main thread, nothing changes."""
    _position.clear()
    home = os.getpid()

    def handler(signum, frame):
        if os.getpid() != home:     # a forked worker: end as without the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    previous = {}
    _installed.append(handler)
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:              # not the main thread: signals stay as they are
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _installed.remove(handler)


def interrupted(command, error):
    """``(line, exit code)`` for ``error`` (a ``KeyboardInterrupt`` or a
    :class:`Terminated`) that ended ``command`` (e.g. ``"rpn train"``)."""
    signum = getattr(error, "signum", signal.SIGINT)
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    line = f"{command}: interrupted ({name})"
    if command.endswith(" train"):
        if _position:
            line += (f" at epoch {_position['epoch'] + 1}, step {_position['step'] + 1} of "
                     f"{_position['steps']}; resume with --resume")
        else:
            line += " before training began; run the command again"
    return line, 128 + int(signum)


def end_process(code):
    """Kill this process's worker processes and exit with ``code`` now,
    without the interpreter's clean-up (see the module)."""
    for child in multiprocessing.active_children():
        try:
            child.kill()
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
