"""The processes a test starts: marked so that what they leave behind is
found, the launcher, a family of workers and grandchildren, waiting."""
import os
import textwrap
import time
import uuid

import psutil


def leftovers(mark):
    """Live processes (not zombies) whose environment has ``RPN_TEST_MARK=mark``:
    what a test's processes left behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("RPN_TEST_MARK") == mark):
                found.append(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def marked_env(mark, **extra):
    """This environment with ``RPN_TEST_MARK=mark`` and ``extra``."""
    return dict(os.environ, RPN_TEST_MARK=mark, **extra)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


#: A worker that starts a grandchild which ignores SIGTERM (so only the
#: supervisor's SIGKILL can end it), says it is ready, and sleeps.
FAMILY = textwrap.dedent("""
    import os, subprocess, sys, time
    out = sys.argv[1]
    grand = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "open(os.path.join(sys.argv[1], 'grand-%d' % os.getpid()), 'w').close(); "
             "time.sleep(300)")
    subprocess.Popen([sys.executable, "-c", grand, out])
    open(os.path.join(out, "child-%d" % os.getpid()), "w").close()
    time.sleep(300)
""")


def family_ready(out, n):
    """Whether ``n`` :data:`FAMILY` workers and their grandchildren started."""
    names = os.listdir(out)
    return (sum(n.startswith("child-") for n in names) >= n
            and sum(n.startswith("grand-") for n in names) >= n)


def run_launcher(args, cwd, timeout=420):
    """``python -m rpn.launch args`` in ``cwd``, its processes marked:
    ``(the finished process, the mark)``."""
    import subprocess
    import sys
    mark = uuid.uuid4().hex
    result = subprocess.run([sys.executable, "-m", "rpn.launch"] + args, env=marked_env(mark),
                            cwd=cwd, timeout=timeout, capture_output=True, text=True)
    return result, mark

