"""Ending on Ctrl-C or SIGTERM with one line instead of a traceback.

Inside :func:`signals_interrupt` (the command line's ``main`` runs every
command in it) SIGTERM and Ctrl-C's SIGINT raise :class:`Terminated`, a
``KeyboardInterrupt`` that knows its signal (one that arrives while a
finalizer runs is raised when it has returned, not lost inside it): the
same clean-up runs for both
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

A Python signal handler runs only when the main thread next executes
Python code; a main thread blocked in C code (an engine wait, a worker's
result that never comes, a lock a killed worker held) would keep the
program alive. Given ``deadline=``, :func:`signals_interrupt` therefore
watches for the signal in a thread of its own (Python's wake-up file
descriptor, written whichever thread the signal reaches): if the program
has not left the block ``deadline`` seconds after the signal, that thread
prints the same one line and ends the process with the same code, as
:func:`end_process` does. A checkpoint being written at that moment is
left as a temporary folder that is never read (checkpoints are renamed
into place whole); the next writer of the run folder removes it, as it
removes what a killed writer recorded.

Python ignores an exception raised where it cannot go anywhere (a
finalizer, a weakref or at-fork callback: "Exception ignored in ..."), so
a Ctrl-C that arrives there is lost. :func:`signals_held` keeps signals
waiting while worker processes fork (and the workers from getting them
before they can ignore them); :func:`interrupts_kept` raises one that was
lost again when the waiting loop next looks (the image check does both).
"""
import contextlib
import multiprocessing
import os
import signal
import sys
import threading

__all__ = ["Terminated", "signals_interrupt", "training_at", "interrupted", "end_process",
           "signals_held", "interrupts_kept"]

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
def signals_interrupt(signals=(signal.SIGTERM, signal.SIGINT), command=None, deadline=None):
    """Within the block, each of ``signals`` raises :class:`Terminated` in
    this process (a forked child ends by the signal's default action). A
    signal that arrives while a finalizer (``__del__``) runs is raised once
    it has returned: raised inside it, Python would print it as an ignored
    exception and carry on.
    With ``deadline`` (seconds) and ``command`` (e.g. ``"rpn train"``), a
    program still in the block ``deadline`` seconds after SIGINT or one of
    ``signals`` prints :func:`interrupted`'s line and ends (see the module).
    Outside the main thread, nothing changes."""
    _position.clear()
    home = os.getpid()

    def handler(signum, frame):
        if os.getpid() != home:     # a forked worker: end as without the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _in_finalizer(frame):    # sent again in 20 ms (sent now, it would recurse)
            timer = threading.Timer(0.02, os.kill, (home, signum))
            timer.daemon = True
            timer.start()
            return
        raise Terminated(signum)

    previous = {}
    _installed.append(handler)
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:              # not the main thread: signals stay as they are
        pass
    watch = None
    if deadline is not None and previous:
        watch = _Watchdog(set(signals) | {signal.SIGINT}, command or "rpn", deadline)
    try:
        yield
    finally:
        if watch is not None:
            watch.stop()
        for signum, old in previous.items():
            signal.signal(signum, old)
        _installed.remove(handler)


@contextlib.contextmanager
def signals_held(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, ``signals`` wait (blocked in the calling thread)
    and are delivered when it ends. For starting worker processes: a
    signal that arrives while ``fork`` runs Python's at-fork callbacks
    would be raised inside one and lost ("Exception ignored"), and a child
    would get it before its initializer could ignore it. Children forked
    and threads started in the block begin with the signals blocked: a
    worker's initializer unblocks them (:func:`rpn.data.image_check`'s
    does). Without ``pthread_sigmask`` (not POSIX) nothing changes."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def interrupts_kept(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, a signal of ``signals`` whose Python handler
    raised (Ctrl-C's ``KeyboardInterrupt``, :class:`Terminated`) where
    Python ignores exceptions (a finalizer, a weakref or at-fork callback:
    it prints "Exception ignored" and goes on) is not lost: the yielded
    ``check()`` raises it again. A loop that waits on other processes
    calls ``check()`` after each result (:func:`rpn.data.image_check.check_images`).
    Handlers that are not Python functions (the default action, ignored)
    and other threads than the main one are left as they are."""
    pending, previous = [], {}

    def kept(signum, frame):
        pending.append(signum)
        previous[signum](signum, frame)     # raises where Python is, or handles it
        pending.remove(signum)              # handled without an exception

    def check():
        if pending:
            signum = pending.pop()
            pending.clear()
            previous[signum](signum, None)

    try:
        for signum in signals:
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, kept)
                previous[signum] = handler
    except ValueError:              # not the main thread
        pass
    _installed.append(kept)         # a forked child gets the default action back
    try:
        yield check
    finally:
        _installed.remove(kept)
        for signum, old in previous.items():
            if signal.getsignal(signum) is kept:
                signal.signal(signum, old)


def _in_finalizer(frame):
    """Whether ``frame`` runs inside a ``__del__`` method (a finalizer called
    from wherever an object was freed)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class _Watchdog:
    """Ends the process ``deadline`` seconds after one of ``signals`` unless
    :meth:`stop` is called first. The signal numbers arrive through Python's
    wake-up file descriptor (a pipe), written by the C-level handler."""

    def __init__(self, signals, command, deadline):
        self._signals, self._command, self._deadline = signals, command, deadline
        self._stopped = threading.Event()
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._run, name="rpn-signal-deadline",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data or self._stopped.is_set():
                return
            received = [signum for signum in data if signum in self._signals]
            if received and not self._stopped.wait(self._deadline):
                line, code = interrupted(self._command, Terminated(received[0]))
                try:
                    print(line, file=sys.stderr)
                except (OSError, ValueError):
                    pass
                end_process(code)

    def stop(self):
        self._stopped.set()
        try:
            signal.set_wakeup_fd(self._previous_fd)
        except ValueError:
            pass
        os.close(self._write)           # the thread's read sees the end of the pipe
        self._thread.join(timeout=5)
        os.close(self._read)


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
