"""How many threads MXNet's operators use on the CPU.

MXNet 1.9.1 runs each CPU operator (a convolution, a matrix product) on
OpenMP threads. Unless ``OMP_NUM_THREADS`` or ``MXNET_OMP_MAX_THREADS`` is
set, it takes *half* the processors it sees, on the assumption that every
x86 core shows two hardware threads. On machines without such threads
(most cloud VMs report one a core, as do these 2-core machines) that leaves
half the cores idle: a training step of the default preset took 1.65 s on
one thread and 0.84 s on two here. And in a container limited to 2 CPUs
of a 64-core host it takes 32 threads for 2 CPUs.

:func:`set_default_threads` runs when ``rpn`` is imported, before MXNet is:
when neither variable is set, it sets ``MXNET_OMP_MAX_THREADS`` to the
physical cores this process may run on (its CPU affinity, one a core as
``/sys`` describes them), at most the container's CPU quota. A variable
the user set always wins; when MXNet was imported before ``rpn``, nothing
is changed (MXNet reads the variable once, when it loads). ``rpn env``
prints the count. Worker processes inherit the variable; ``rpn launch``
divides the cores between the processes it starts on one machine
(:func:`share_threads`).

This module imports nothing of MXNet.
"""
import math
import os
import sys

__all__ = ["THREADS_VARIABLE", "RPN_VARIABLE", "physical_cores", "cpu_quota", "default_threads",
           "current_threads", "set_default_threads", "share_threads"]

#: The variable MXNet reads for its operators' OpenMP threads.
THREADS_VARIABLE = "MXNET_OMP_MAX_THREADS"
#: What rpn set ``MXNET_OMP_MAX_THREADS`` to, when rpn set it.
RPN_VARIABLE = "RPN_THREADS"
_USER_VARIABLES = ("OMP_NUM_THREADS", THREADS_VARIABLE)
_SYSFS = "/sys/devices/system/cpu"
_CGROUP = "/sys/fs/cgroup"


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _allowed_cpus():
    """The CPU numbers this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus=None, *, sysfs=_SYSFS):
    """The physical cores among the logical CPUs ``cpus`` (default: those
    this process may run on): hardware threads of one core (the same
    ``core_id`` in the same ``physical_package_id`` under ``sysfs``) count
    once; a CPU whose topology cannot be read counts as a core."""
    cpus = _allowed_cpus() if cpus is None else list(cpus)
    cores = set()
    for cpu in cpus:
        topology = os.path.join(sysfs, f"cpu{cpu}", "topology")
        try:
            cores.add((int(_read(os.path.join(topology, "physical_package_id"))),
                       int(_read(os.path.join(topology, "core_id")))))
        except (OSError, ValueError):
            cores.add(("cpu", cpu))
    return max(1, len(cores))


def cpu_quota(*, cgroup=_CGROUP):
    """The CPUs a container's quota allows (cgroup v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up; ``None``
    without a quota or where none can be read."""
    try:
        quota, period = _read(os.path.join(cgroup, "cpu.max")).split()[:2]
    except (OSError, ValueError):
        try:
            quota = _read(os.path.join(cgroup, "cpu", "cpu.cfs_quota_us"))
            period = _read(os.path.join(cgroup, "cpu", "cpu.cfs_period_us"))
        except OSError:
            return None
    try:
        quota, period = int(quota), int(period)
    except ValueError:                      # "max": no quota
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def default_threads(*, sysfs=_SYSFS, cgroup=_CGROUP, cpus=None):
    """The threads :func:`set_default_threads` gives MXNet: the physical
    cores of ``cpus``, at most the CPU quota, at least 1."""
    cores = physical_cores(cpus, sysfs=sysfs)
    quota = cpu_quota(cgroup=cgroup)
    return max(1, min(cores, quota) if quota else cores)


def current_threads(environ=None):
    """MXNet's CPU operator threads as ``environ`` (default ``os.environ``)
    sets them and who chose them: ``{"threads": "2", "set_by": "rpn"}``
    (``set_by``: ``"rpn"``, or the variable the user set), or ``{"threads":
    None, "set_by": None}`` when nothing is set (MXNet's own choice)."""
    environ = os.environ if environ is None else environ
    for name in _USER_VARIABLES:
        if environ.get(name):
            rpn = name == THREADS_VARIABLE and environ[name] == environ.get(RPN_VARIABLE)
            return {"threads": environ[name], "set_by": "rpn" if rpn else name}
    return {"threads": None, "set_by": None}


def set_default_threads(environ=None, modules=None, **where):
    """Set ``MXNET_OMP_MAX_THREADS`` in ``environ`` (default
    ``os.environ``) to :func:`default_threads` (``where``: its ``sysfs``,
    ``cgroup``, ``cpus``), and ``RPN_THREADS`` to the same count (so that
    what rpn set is known from what the user set), unless
    ``OMP_NUM_THREADS`` or ``MXNET_OMP_MAX_THREADS`` is already set or
    ``mxnet`` is among ``modules`` (default ``sys.modules``: MXNet, once
    loaded, never reads it again). Returns the count set, or ``None`` when
    nothing was changed."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if any(environ.get(name) for name in _USER_VARIABLES) or "mxnet" in modules:
        return None
    threads = default_threads(**where)
    environ[THREADS_VARIABLE] = environ[RPN_VARIABLE] = str(threads)
    return threads


def share_threads(processes, environ=None, **where):
    """The variables that give each of ``processes`` training processes
    started together on this machine its share of the cores (at least one
    thread each): ``{}`` when the user chose the threads in ``environ``
    (default ``os.environ``), which the processes then inherit."""
    if current_threads(environ)["set_by"] not in (None, "rpn"):
        return {}
    share = str(max(1, default_threads(**where) // max(1, processes)))
    return {THREADS_VARIABLE: share, RPN_VARIABLE: share}
