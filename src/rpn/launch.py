"""Start an MXNet parameter-server cluster: ``python -m rpn.launch``.

MXNet's pip wheel ships the parameter-server runtime (``dist_sync``,
``dist_async`` KVStores) but not the launcher script of its source tree.
This one starts the scheduler, the servers and the workers with the
``DMLC_*`` environment they need::

    python -m rpn.launch -n 2 -s 1 -- rpn train --data synthetic --kvstore dist_sync --out runs/d
    python -m rpn.launch -n 4 -s 2 --hosts hosts.txt -- rpn train ...

Without ``--hosts`` every process runs on this machine (loopback). With a
host file (one host a line, ``#`` comments) the scheduler runs here and the
servers and workers go round the hosts over ``ssh`` (key-based, the same
Python environment and working directory on every host). The launcher
forwards SIGINT/SIGTERM, stops every process it started when one fails or
when it is interrupted, and exits with the first failure's code (0 when
every worker succeeds).
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

__all__ = ["main", "cluster_env"]


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env(role, num_workers, num_servers, uri, port):
    """The ``DMLC_*`` variables of one process of the cluster."""
    return {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": uri, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_WORKER": str(num_workers), "DMLC_NUM_SERVER": str(num_servers)}


def _read_hosts(path):
    with open(path) as f:
        hosts = [line.split("#")[0].strip() for line in f]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise SystemExit(f"rpn.launch: no host in {path}")
    return hosts


class _Cluster:
    def __init__(self):
        self.procs = []        # (role, Popen)

    def start(self, role, command, env, host=None):
        full_env = dict(os.environ, **env)
        if host is None:
            proc = subprocess.Popen(command, env=full_env, start_new_session=True)
        else:
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            remote = f"cd {shlex.quote(os.getcwd())} && env {exports} {shlex.join(command)}"
            proc = subprocess.Popen(["ssh", "-o", "BatchMode=yes", host, remote],
                                    start_new_session=True)
        self.procs.append((role, proc))
        return proc

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rpn.launch",
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
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after --")
    if args.num_workers < 1:
        parser.error("--num-workers must be at least 1")
    servers = args.num_servers if args.num_servers is not None else args.num_workers
    hosts = _read_hosts(args.hosts) if args.hosts else None
    uri = socket.gethostbyname(socket.gethostname()) if hosts else "127.0.0.1"
    port = args.port or _free_port()
    python_import = [sys.executable if not hosts else "python3", "-c", "import mxnet"]
    env = {"PS_VERBOSE": os.environ.get("PS_VERBOSE", "0")}
    if not hosts:
        env["DMLC_INTERFACE"] = "lo"
    cluster = _Cluster()

    def interrupted(signum, _frame):
        cluster.stop(signal.SIGTERM)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    host_of = (lambda i: hosts[i % len(hosts)]) if hosts else (lambda i: None)
    try:
        cluster.start("scheduler", python_import,
                      dict(env, **cluster_env("scheduler", args.num_workers, servers, uri, port)))
        for i in range(servers):
            cluster.start("server", python_import,
                          dict(env, **cluster_env("server", args.num_workers, servers, uri, port)),
                          host_of(i))
        workers = [cluster.start("worker", command,
                                 dict(env, **cluster_env("worker", args.num_workers, servers,
                                                         uri, port)), host_of(i))
                   for i in range(args.num_workers)]
        deadline = None if args.timeout is None else time.time() + args.timeout
        code = 0
        while True:
            failed = [(role, p.returncode) for role, p in cluster.procs
                      if p.poll() is not None and p.returncode != 0]
            if failed:
                role, code = failed[0]
                print(f"rpn.launch: a {role} exited with {code}; stopping the cluster",
                      file=sys.stderr)
                break
            if all(p.poll() is not None for p in workers):
                break
            if deadline is not None and time.time() > deadline:
                print(f"rpn.launch: --timeout {args.timeout}s reached; stopping the cluster",
                      file=sys.stderr)
                code = 124
                break
            time.sleep(0.2)
    finally:
        cluster.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
