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

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
_done_in = None     # the pid in which the request was made


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
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # the parent may have died before the request: then end now
    if os.getppid() != parent.pid:
        os.kill(os.getpid(), sig)
    _done_in = os.getpid()
    return True
