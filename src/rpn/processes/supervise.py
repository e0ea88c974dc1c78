"""The supervisor that ``rpn.launch`` starts every cluster process under.

Run as a script, never imported by the package (it must start fast and
without MXNet)::

    python -I supervise.py --parent PID [--name ROLE] -- COMMAND...
    python -I supervise.py --stdin [--name ROLE] -- COMMAND...

It starts ``COMMAND`` in a process group (a session) of its own, so that
one signal reaches the command and everything it started (Gluon
DataLoader workers, shells, ...), and it ends that whole group when:

* ``--parent PID``: the launcher dies, even by SIGKILL (it watches its
  parent process id);
* ``--stdin``: its standard input reaches end of file -- on a remote host
  that is the ssh session, which the launcher holds: when the launcher or
  its ssh client dies, the session closes;
* it receives SIGTERM, SIGINT or SIGHUP (forwarded to the group; a second
  one, or ``--grace`` seconds without an end, and the group gets SIGKILL);
* the command ends by itself (what it left behind is stopped).

On Linux the supervisor also adopts orphaned descendants (a child
subreaper) so that it can reap them, and the command gets SIGKILL if the
supervisor itself dies. The exit code is the command's; a command killed
by signal N gives 128 + N, as a shell does.
"""
import argparse
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import time

__all__ = ["main", "exit_code"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_TICK = 0.1


def exit_code(returncode):
    """A ``Popen.returncode`` as a shell shows it: ``-N`` (killed by signal N)
    -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _Supervisor:
    def __init__(self, name, grace, parent=None, watch_stdin=False):
        self.name, self.grace = name, grace
        self.parent, self.watch_stdin = parent, watch_stdin
        self.libc = _libc()
        self.child = None
        self.status = None          # the command's returncode, once reaped
        self.signals = []           # signals received, in order
        self.stdin_open = watch_stdin

    # -- events ------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        self.signals.append(signum)

    def _parent_gone(self):
        return self.parent is not None and os.getppid() != self.parent

    def _stdin_closed(self, timeout):
        """Wait up to ``timeout`` for input; whether stdin reached its end."""
        if not self.stdin_open:
            time.sleep(timeout)
            return False
        try:
            ready, _, _ = select.select([0], [], [], timeout)
            if ready and not os.read(0, 4096):
                self.stdin_open = False
                return True
        except OSError:           # stdin closed or invalid: as good as its end
            self.stdin_open = False
            return True
        return False

    def _stop_reason(self):
        if self.signals:
            return f"received {_signal_name(self.signals[0])}"
        if self._parent_gone():
            return "the launcher is gone"
        return None

    # -- the command and its group -------------------------------------------
    def _preexec(self):
        # in the child, before exec: die with the supervisor
        if self.libc is not None:
            self.libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    def start(self, command):
        if self.libc is not None:
            self.libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        stdin = subprocess.DEVNULL if self.watch_stdin else None
        self.child = subprocess.Popen(command, stdin=stdin, start_new_session=True,
                                      preexec_fn=self._preexec)

    def reap(self):
        """Reap every finished child (the command, adopted orphans)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child.pid:
                self.status = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                               else os.WEXITSTATUS(status))
                self.child.returncode = self.status

    def _signal_group(self, sig):
        """``sig`` to the command's group (to the command alone if it left the
        group); whether anything was there to get it."""
        for kill in (os.killpg, os.kill):
            if kill is os.kill:
                self.reap()
                if self.status is not None:
                    return False
            try:
                kill(self.child.pid, sig)
                return True
            except (ProcessLookupError, PermissionError):   # gone, or the id reused
                pass
        return False

    def _group_alive(self):
        self.reap()
        return self.status is None or self._signal_group(0)

    def end_group(self, sig=signal.SIGTERM):
        """``sig`` to the command's group, SIGKILL after ``grace`` seconds or
        at the next signal received; returns when the group is gone (or
        ``grace`` seconds after the SIGKILL)."""
        if not self._signal_group(sig):
            self.reap()
            return
        seen = len(self.signals)
        deadline = time.monotonic() + self.grace
        while self._group_alive():
            if time.monotonic() > deadline or len(self.signals) > seen:
                self._signal_group(signal.SIGKILL)
                break
            time.sleep(_TICK / 2)
        deadline = time.monotonic() + self.grace   # a zombie nobody reaps must not hold us
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(_TICK / 2)

    def run(self, command):
        if self._parent_gone():
            return 128 + signal.SIGTERM
        try:
            self.start(command)
        except OSError as error:
            print(f"rpn.launch: {self.name}: cannot run {command[0]!r}: "
                  f"{error.strerror or error}", file=sys.stderr)
            return 127
        reason = None
        while True:
            self.reap()
            if self.status is not None:
                break
            reason = self._stop_reason()
            if reason is None and self._stdin_closed(_TICK):
                reason = "its ssh session closed"
            if reason is not None:
                break
        if reason is None:
            # the command ended by itself: stop what it left behind, quietly
            self.end_group(signal.SIGTERM)
            code = exit_code(self.status)
            if self.status < 0:
                print(f"rpn.launch: {self.name} killed by {_signal_name(-self.status)}",
                      file=sys.stderr)
            return code
        sig = self.signals[0] if self.signals else signal.SIGTERM
        self.end_group(sig)
        return exit_code(self.status) if self.status is not None else 128 + int(sig)


def _parser():
    parser = argparse.ArgumentParser(prog="supervise.py", allow_abbrev=False)
    watch = parser.add_mutually_exclusive_group(required=True)
    watch.add_argument("--parent", type=int, help="end the command when this pid is gone")
    watch.add_argument("--stdin", action="store_true",
                       help="end the command when standard input is closed")
    parser.add_argument("--name", default="process", help="the role, for messages")
    parser.add_argument("--grace", type=float, default=3.0,
                        help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    supervisor = _Supervisor(args.name, args.grace, parent=args.parent,
                             watch_stdin=args.stdin)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, supervisor._on_signal)
    return supervisor.run(command)


if __name__ == "__main__":
    sys.exit(main())
