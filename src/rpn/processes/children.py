"""Child processes that end with their parent.

A process killed with SIGKILL cannot stop its children; on Linux a child
can ask the kernel for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``). The package's worker processes (image
decoding, image checks) ask for SIGKILL, so that killing a run leaves no
orphans. Elsewhere this is a no-op.
"""
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys

__all__ = ["die_with_parent", "forks_die_with_parent"]

_PR_SET_PDEATHSIG = 1
_done_in = None     # the pid in which the request was made
_forks = {"on": False, "parent": None}     # see forks_die_with_parent


def _prctl_pdeathsig(sig):
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _before_fork():
    _forks["parent"] = os.getpid()


def _after_fork_in_child():
    global _done_in
    if _forks["on"] and sys.platform.startswith("linux") and _prctl_pdeathsig(signal.SIGKILL):
        _done_in = os.getpid()
        if os.getppid() != _forks["parent"]:        # the parent died before the request
            os.kill(os.getpid(), signal.SIGKILL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def forks_die_with_parent():
    """From now on, every process forked in this one (a worker pool's, from
    any thread: also the replacements a pool starts when a signal killed
    workers) asks for SIGKILL when the thread that forked it ends. Called
    when the package starts worker processes of its own; without it, a
    replacement that never took a task would outlive a killed run."""
    _forks["on"] = True


def die_with_parent(sig=signal.SIGKILL):
    """In a worker process (one started by ``multiprocessing``), ask to
    receive ``sig`` when the parent dies; once a process, and never in the
    main process. Returns whether the request is in force."""
    global _done_in
    if _done_in == os.getpid():
        return True
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    if not _prctl_pdeathsig(sig):
        return False
    # the parent may have died before the request: then end now
    if os.getppid() != parent.pid:
        os.kill(os.getpid(), sig)
    _done_in = os.getpid()
    return True
