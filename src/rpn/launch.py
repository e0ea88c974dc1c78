"""Start an MXNet parameter-server cluster: ``python -m rpn.launch``.

MXNet's pip wheel ships the parameter-server runtime (``dist_sync``,
``dist_async`` KVStores) and even its ``tools/launch.py``, but that script
runs on the wheel's ``dmlc_tracker``, which calls ``Thread.isAlive`` (gone
since Python 3.9) and so fails on every Python the package supports past
3.8. This one starts the scheduler, the servers and the workers with the
``DMLC_*`` environment they need::

    python -m rpn.launch -n 2 -s 1 -- rpn train --data synthetic --kvstore dist_sync --out runs/d
    python -m rpn.launch -n 4 -s 2 --hosts hosts.txt -- rpn train ...

Without ``--hosts`` every process runs on this machine (loopback), and the
workers share its cores: each gets ``MXNET_OMP_MAX_THREADS`` of its share
(:func:`rpn.ops.threads.share_threads`) unless the user set the threads. With a
host file (one host a line, ``#`` comments) the scheduler runs here and the
servers and workers go round the hosts over ``ssh`` (key-based, the same
Python environment at the same path and the same working directory on
every host; the remote side runs this interpreter, ``sys.executable``, and
finds the environment's scripts such as ``rpn`` first on its ``PATH``).

Every process runs under a small supervisor (:mod:`rpn.processes.supervise`) that
puts it in a process group of its own and ends that whole group -- the
process and everything it started -- when the launcher dies, even by
SIGKILL; over ssh the remote supervisor ends its group when the ssh
session closes. On SIGINT/SIGTERM the launcher stops every process
(SIGTERM, then SIGKILL a few seconds later or at a second signal) and
exits with 128 + the signal; when a process fails it stops the others and
exits with the first failure's code, 128 + N for one killed by signal N;
0 when every worker succeeds; 124 at ``--timeout``; 2 for a bad argument.
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from .ops.threads import share_threads
from .processes import supervise as _supervise

__all__ = ["main", "cluster_env"]

_GRACE = 3.0                      # supervisor: SIGTERM -> SIGKILL
_LAUNCHER_GRACE = _GRACE + 3.0    # launcher: waits this long for its supervisors
_SUPERVISOR = os.path.abspath(_supervise.__file__)


class _UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2."""


class _Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _this_host_address():
    """The address other hosts reach this one at: the one of the interface
    of the default route (no packet is sent), else the host name's."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))        # TEST-NET-1: only picks a route
            address = sock.getsockname()[0]
        if address and not address.startswith(("127.", "0.")):
            return address
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError as error:
        raise _UsageError(f"cannot find this machine's address for the scheduler: {error}")


def cluster_env(role, num_workers, num_servers, uri, port):
    """The ``DMLC_*`` variables of one process of the cluster."""
    return {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": uri, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_WORKER": str(num_workers), "DMLC_NUM_SERVER": str(num_servers)}


def _read_hosts(path):
    """The hosts of a host file: one a line, ``#`` comments, blank lines
    skipped; a line that ssh could read as an option is refused."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise _UsageError(f"--hosts {path}: {reason}")
    hosts = []
    for number, line in enumerate(lines, 1):
        host = line.split("#")[0].strip()
        if not host:
            continue
        if host.startswith("-") or any(c.isspace() or not c.isprintable() for c in host):
            raise _UsageError(f"--hosts {path} line {number}: {host!r} is not a host name "
                              "(one host a line, no spaces, not starting with '-')")
        hosts.append(host)
    if not hosts:
        raise _UsageError(f"--hosts {path}: no host in it")
    return hosts


def _remote_command(command, env, name):
    """The shell command line that runs ``command`` under a supervisor on a
    remote host (same working directory, same interpreter)."""
    bindir = os.path.dirname(sys.executable)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    supervised = [sys.executable, "-I", _SUPERVISOR, "--stdin", "--name", name,
                  "--grace", str(_GRACE), "--"] + list(command)
    return (f"cd {shlex.quote(os.getcwd())} && exec env {exports} "
            f"PATH={shlex.quote(bindir)}:\"$PATH\" {shlex.join(supervised)}")


class _Cluster:
    def __init__(self):
        self.procs = []        # (role, Popen)

    def start(self, role, name, command, env, host=None):
        """Start ``command`` under a supervisor: here, or on ``host`` over ssh
        (the local supervisor then runs the ssh client, which holds the remote
        supervisor's stdin through the pipe the launcher keeps open)."""
        if host is None:
            stdin = subprocess.DEVNULL
        else:
            stdin = subprocess.PIPE
            name = f"{name} on {host}"
            command = ["ssh", "-o", "BatchMode=yes", "--", host,
                       _remote_command(command, env, name)]
        supervised = [sys.executable, "-I", _SUPERVISOR, "--parent", str(os.getpid()),
                      "--name", name, "--grace", str(_GRACE), "--"] + list(command)
        proc = subprocess.Popen(supervised, env=dict(os.environ, **env), stdin=stdin,
                                start_new_session=True)
        self.procs.append((role, proc))
        return proc

    def signal(self, sig):
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def stop(self, grace=_LAUNCHER_GRACE):
        """End of the ssh sessions' input (the remote supervisors end their
        groups), SIGTERM to every local supervisor (each ends its group, with
        SIGKILL after its own grace), SIGKILL to one still there after ``grace``."""
        for _, proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()


def _parse(argv):
    parser = _Parser(prog="python -m rpn.launch",
                     description="Start an MXNet parameter-server cluster.")
    parser.add_argument("-n", "--num-workers", type=int, required=True)
    parser.add_argument("-s", "--num-servers", type=int, default=None,
                        help="default: as many as workers")
    parser.add_argument("--hosts", help="host file: one host a line (default: this machine)")
    parser.add_argument("--port", type=int, default=None, help="scheduler port (default: free)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop everything after this many seconds (exit 124)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the worker command, after --")
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        raise _UsageError("give the worker command after --")
    if args.num_workers < 1:
        raise _UsageError(f"--num-workers {args.num_workers}: must be at least 1")
    if args.num_servers is None:
        args.num_servers = args.num_workers
    if args.num_servers < 1:
        raise _UsageError(f"--num-servers {args.num_servers}: must be at least 1")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise _UsageError(f"--port {args.port}: must be 1 to 65535")
    if args.timeout is not None and not args.timeout > 0:
        raise _UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    return args


def _watch(cluster, workers, timeout):
    """Wait for the workers; the exit code."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for role, proc in cluster.procs:
            if proc.poll() is not None and proc.returncode != 0:
                code = _supervise.exit_code(proc.returncode)
                print(f"rpn.launch: a {role} exited with {code}; stopping the cluster",
                      file=sys.stderr)
                return code
        if all(p.poll() is not None for p in workers):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"rpn.launch: --timeout {timeout:g}s reached; stopping the cluster",
                  file=sys.stderr)
            return 124
        time.sleep(0.2)


def _run(args):
    hosts = _read_hosts(args.hosts) if args.hosts else None
    uri = _this_host_address() if hosts else "127.0.0.1"
    port = args.port or _free_port()
    servers = args.num_servers
    python_import = [sys.executable, "-c", "import mxnet"]
    env = {"PS_VERBOSE": os.environ.get("PS_VERBOSE", "0")}
    if not hosts:
        env["DMLC_INTERFACE"] = "lo"
    host_of = (lambda i: hosts[i % len(hosts)]) if hosts else (lambda i: None)

    def role_env(role):
        return dict(env, **cluster_env(role, args.num_workers, servers, uri, port))

    def worker_env():       # workers on this machine share its cores
        return dict(role_env("worker"), **({} if hosts else share_threads(args.num_workers)))

    cluster = _Cluster()
    stopping = []

    def interrupted(signum, _frame):
        if stopping:        # a second signal: the supervisors kill their groups now
            cluster.signal(signal.SIGTERM)
            return
        stopping.append(signum)
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster.start("scheduler", "scheduler", python_import, role_env("scheduler"))
        for i in range(servers):
            cluster.start("server", f"server {i}", python_import, role_env("server"),
                          host_of(i))
        workers = [cluster.start("worker", f"worker {i}", args.command, worker_env(),
                                 host_of(i))
                   for i in range(args.num_workers)]
        code = _watch(cluster, workers, args.timeout)
    except _Interrupted as interruption:
        code = 128 + interruption.signum
        print(f"rpn.launch: {signal.Signals(interruption.signum).name}; stopping the cluster",
              file=sys.stderr)
    finally:
        stopping.append(0)
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def main(argv=None):
    """``python -m rpn.launch``: the exit code."""
    try:
        return _run(_parse(argv))
    except _UsageError as error:
        print(f"rpn.launch: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
