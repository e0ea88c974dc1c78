"""MXNet's CPU threads: the physical cores this process may use (hardware
threads of a core once, a container's quota as a cap), set before MXNet
loads unless the user chose, and shared by the workers ``rpn launch``
starts on one machine."""
import json
import os
import subprocess
import sys

import pytest

from helpers.processes import run_launcher
from rpn.ops.threads import (RPN_VARIABLE, THREADS_VARIABLE, cpu_quota, current_threads,
                             default_threads, physical_cores, set_default_threads,
                             share_threads)


def _sysfs(root, cores):
    """A fake ``/sys/devices/system/cpu``: ``cores[i]`` is CPU i's
    ``(package, core)``, or ``None`` for a CPU without a topology."""
    for cpu, core in enumerate(cores):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        if core is not None:
            (topology / "physical_package_id").write_text(f"{core[0]}\n")
            (topology / "core_id").write_text(f"{core[1]}\n")
    return str(root)


def _cgroup(root, **files):
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_hardware_threads_of_one_core_count_once(tmp_path):
    # two packages; CPUs 0/2 and 1/3 are the two threads of cores 0 and 1 of package 0
    sysfs = _sysfs(tmp_path, [(0, 0), (0, 1), (0, 0), (0, 1), (1, 0), None])
    assert physical_cores([0, 1, 2, 3], sysfs=sysfs) == 2
    assert physical_cores([0, 2], sysfs=sysfs) == 1
    assert physical_cores([0, 4], sysfs=sysfs) == 2          # core 0 of another package
    assert physical_cores([5], sysfs=sysfs) == 1             # no topology: a core
    assert physical_cores(range(6), sysfs=sysfs) == 4


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 2),                     # 1.5 CPUs: rounded up
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu__cpu.cfs_quota_us": "300000", "cpu__cpu.cfs_period_us": "100000"}, 3),
    ({"cpu__cpu.cfs_quota_us": "-1", "cpu__cpu.cfs_period_us": "100000"}, None),
    ({}, None)])
def test_the_container_quota_is_read_from_either_cgroup_version(tmp_path, files, quota):
    assert cpu_quota(cgroup=_cgroup(tmp_path, **files)) == quota


def test_the_default_is_the_cores_capped_by_the_quota(tmp_path):
    sysfs = _sysfs(tmp_path / "sys", [(0, c) for c in range(8)])
    capped = _cgroup(tmp_path / "cg1", **{"cpu.max": "200000 100000"})
    loose = _cgroup(tmp_path / "cg2", **{"cpu.max": "max 100000"})
    assert default_threads(sysfs=sysfs, cgroup=capped, cpus=range(8)) == 2
    assert default_threads(sysfs=sysfs, cgroup=loose, cpus=range(8)) == 8
    assert default_threads(sysfs=sysfs, cgroup=loose, cpus=[3]) == 1


def test_what_the_user_set_wins_and_a_loaded_mxnet_is_left_alone(tmp_path):
    where = {"sysfs": _sysfs(tmp_path, [(0, 0), (0, 1), (0, 2)]), "cgroup": str(tmp_path),
             "cpus": [0, 1, 2]}
    environ = {}
    assert set_default_threads(environ, {}, **where) == 3
    assert environ == {THREADS_VARIABLE: "3", RPN_VARIABLE: "3"}
    for user in ({"OMP_NUM_THREADS": "1"}, {THREADS_VARIABLE: "5"}):
        environ = dict(user)
        assert set_default_threads(environ, {}, **where) is None and environ == user
    environ = {}
    assert set_default_threads(environ, {"mxnet": object()}, **where) is None
    assert environ == {}


def test_workers_on_one_machine_share_the_cores_unless_the_user_chose(tmp_path):
    where = {"sysfs": _sysfs(tmp_path, [(0, c) for c in range(4)]), "cgroup": str(tmp_path),
             "cpus": range(4)}
    rpn_set = {THREADS_VARIABLE: "4", RPN_VARIABLE: "4"}
    assert share_threads(2, rpn_set, **where) == {THREADS_VARIABLE: "2", RPN_VARIABLE: "2"}
    assert share_threads(8, {}, **where) == {THREADS_VARIABLE: "1", RPN_VARIABLE: "1"}
    assert share_threads(2, {THREADS_VARIABLE: "3", RPN_VARIABLE: "4"}, **where) == {}
    assert share_threads(2, {"OMP_NUM_THREADS": "4"}, **where) == {}


@pytest.mark.parametrize("environ, expected", [
    ({}, (None, None)),
    ({THREADS_VARIABLE: "2", RPN_VARIABLE: "2"}, ("2", "rpn")),
    ({THREADS_VARIABLE: "3", RPN_VARIABLE: "2"}, ("3", THREADS_VARIABLE)),
    ({"OMP_NUM_THREADS": "2", THREADS_VARIABLE: "2", RPN_VARIABLE: "2"},
     ("2", "OMP_NUM_THREADS"))])
def test_who_chose_the_threads(environ, expected):
    threads = current_threads(environ)
    assert (threads["threads"], threads["set_by"]) == expected


def _imported(env, code="import rpn"):
    report = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
              f"({THREADS_VARIABLE!r}, {RPN_VARIABLE!r}, 'OMP_NUM_THREADS')}}))")
    clean = {k: v for k, v in os.environ.items()
             if k not in (THREADS_VARIABLE, RPN_VARIABLE, "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], env=dict(clean, **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_rpn_sets_the_threads_before_mxnet_loads():
    threads = str(default_threads())
    assert _imported({}) == {THREADS_VARIABLE: threads, RPN_VARIABLE: threads,
                             "OMP_NUM_THREADS": None}
    assert _imported({"OMP_NUM_THREADS": "1"}) == {THREADS_VARIABLE: None, RPN_VARIABLE: None,
                                                   "OMP_NUM_THREADS": "1"}
    assert _imported({}, "import mxnet\nimport rpn")[THREADS_VARIABLE] is None


@pytest.mark.slow
def test_launched_workers_get_their_share_of_the_cores(tmp_path, monkeypatch):
    threads = str(default_threads())          # as importing rpn sets them (conftest sets 1)
    monkeypatch.setenv(THREADS_VARIABLE, threads)
    monkeypatch.setenv(RPN_VARIABLE, threads)
    report = ("import os, sys; open(os.path.join(sys.argv[1], os.environ['DMLC_ROLE'] + "
              f"str(os.getpid())), 'w').write(os.environ.get({THREADS_VARIABLE!r}, ''))")
    result, _ = run_launcher(["-n", "2", "-s", "1", "--timeout", "60", "--",
                              sys.executable, "-c", report, str(tmp_path)], tmp_path,
                             timeout=120)
    assert result.returncode == 0, result.stderr
    shares = [p.read_text() for p in tmp_path.iterdir() if p.name.startswith("worker")]
    assert shares == [str(max(1, default_threads() // 2))] * 2
