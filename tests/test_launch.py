"""rpn.launch under injected faults: a launcher killed by SIGKILL (here and
over a fake ssh), a worker killed by a signal or failing, hostile host
files, bad arguments. Every process started carries RPN_TEST_MARK, so
that what is left behind can be found with psutil. (The supervisor alone:
tests/processes/test_supervise.py; a real cluster training:
tests/training/test_trainer.py and tests/training/test_fit.py.)"""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from helpers.processes import (FAMILY, family_ready, leftovers, marked_env, run_launcher,
                               wait_for)
from rpn import launch
from rpn.processes import supervise as _supervise


FAKE_SSH = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["FAKE_SSH_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    pid = os.fork()
    if pid == 0:
        os.setsid()          # as under sshd: the remote side is not in our process group
        os.execvp("sh", ["sh", "-c", sys.argv[-1]])
    _, status = os.waitpid(pid, 0)
    sys.exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
""")


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_ssh(tmp_path):
    """A directory to put first on PATH, holding an ``ssh`` that records its
    argv (one JSON list a line) and runs the remote command here through sh,
    with its stdin (the ssh session) and in a session of its own."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    executable(bindir / "ssh", f"#!{sys.executable}\n{FAKE_SSH}")
    log = tmp_path / "ssh.log"
    return bindir, log


def ssh_env(mark, fake_ssh, **extra):
    bindir, log = fake_ssh
    return marked_env(mark, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
                      FAKE_SSH_LOG=str(log), **extra)


def ssh_calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("argv, words", [
    (["-n", "0", "--", "true"], "--num-workers"),
    (["-n", "1", "-s", "-1", "--", "true"], "--num-servers"),
    (["-n", "1", "-s", "0", "--", "true"], "--num-servers"),
    (["-n", "x", "--", "true"], "invalid int"),
    (["-n", "1", "--port", "http", "--", "true"], "--port"),
    (["-n", "1", "--port", "0", "--", "true"], "--port"),
    (["-n", "1", "--port", "65536", "--", "true"], "--port"),
    (["-n", "1", "--timeout", "-5", "--", "true"], "--timeout"),
    (["-n", "1", "--hosts", "{tmp}/missing.txt", "--", "true"], "No such file"),
    (["-n", "1", "--hosts", "{tmp}/empty.txt", "--", "true"], "no host"),
    (["-n", "1", "--hosts", "{tmp}", "--", "true"], "directory"),
    (["-n", "2"], "command"),
])
def test_a_bad_argument_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    code = launch.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rpn.launch: error: ") and words in err


@pytest.mark.parametrize("line", ["-oProxyCommand=touch {tmp}/pwned", "host -p 2222",
                                  "--", "-lroot"])
def test_a_host_line_that_ssh_could_read_as_an_option_is_refused(tmp_path, fake_ssh, mark,
                                                                  line):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("good-host\n" + line.replace("{tmp}", str(tmp_path)) + "\n")
    env = ssh_env(mark, fake_ssh)
    result = subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "1", "--hosts",
                             str(hosts), "--", "true"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "line 2" in result.stderr
    assert ssh_calls(fake_ssh[1]) == [] and not (tmp_path / "pwned").exists()


def test_host_files_skip_comments_and_blank_lines(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the cluster\nnode1\n\n  user@node2   # the second\n10.0.0.3\n")
    assert launch._read_hosts(str(hosts)) == ["node1", "user@node2", "10.0.0.3"]


def test_remote_command_runs_this_interpreter_in_this_folder():
    remote = launch._remote_command(["rpn", "train"], {"DMLC_ROLE": "worker"}, "worker 0")
    assert remote.startswith(f"cd {os.getcwd()} && exec env DMLC_ROLE=worker ")
    assert f"{sys.executable} -I {_supervise.__file__} --stdin" in remote
    assert f"PATH={os.path.dirname(sys.executable)}:" in remote
    assert remote.endswith("-- rpn train")


def test_launcher_needs_a_command():
    result = subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "command" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigkill_to_the_launcher_ends_every_process(tmp_path, mark):
    env = marked_env(mark)
    launcher = subprocess.Popen([sys.executable, "-m", "rpn.launch", "-n", "2", "-s", "1", "--",
                                 sys.executable, "-c", FAMILY, str(tmp_path)], env=env,
                                cwd=tmp_path)
    try:
        wait_for(lambda: family_ready(tmp_path, 2), 60, "the workers and grandchildren started")
        # supervisors, scheduler, server, workers, grandchildren
        assert len(leftovers(mark)) >= 4 + 4 + 1
    finally:
        launcher.kill()
        launcher.wait()
    wait_for(lambda: not leftovers(mark), 15, "every process ended with the launcher")


@pytest.mark.slow
def test_sigkill_to_the_launcher_ends_the_remote_processes(tmp_path, fake_ssh, mark):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("node-a\nnode-b\n")
    env = ssh_env(mark, fake_ssh)
    launcher = subprocess.Popen([sys.executable, "-m", "rpn.launch", "-n", "2", "-s", "1",
                                 "--hosts", str(hosts), "--",
                                 sys.executable, "-c", FAMILY, str(tmp_path)], env=env,
                                cwd=tmp_path)
    try:
        wait_for(lambda: family_ready(tmp_path, 2), 60, "the remote workers started")
    finally:
        launcher.kill()
        launcher.wait()
    wait_for(lambda: not leftovers(mark), 15, "every remote process ended with the launcher")


@pytest.mark.slow
def test_hosts_use_this_interpreter_and_put_the_host_after_a_double_dash(tmp_path, fake_ssh,
                                                                        mark):
    bindir, log = fake_ssh
    python3_log = tmp_path / "python3.log"
    executable(bindir / "python3", f"#!/bin/sh\necho \"$@\" >> {python3_log}\nexit 1\n")
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("node-a\n")
    env = ssh_env(mark, fake_ssh)
    report = ("import json, os; json.dump({'role': os.environ['DMLC_ROLE'], 'cwd': os.getcwd(), "
              "'path': os.environ['PATH']}, open('worker.json', 'w')); import time; time.sleep(2)")
    result = subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "1", "-s", "1", "--hosts",
                             str(hosts), "--timeout", "60", "--", sys.executable, "-c", report],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not python3_log.exists()
    calls = ssh_calls(log)
    assert len(calls) == 2                       # one server, one worker
    for call in calls:
        assert call[:4] == ["-o", "BatchMode=yes", "--", "node-a"] and len(call) == 5
        assert f"{sys.executable} -I {_supervise.__file__} --stdin" in call[4]
    info = json.loads((tmp_path / "worker.json").read_text())
    assert info["role"] == "worker" and info["cwd"] == str(tmp_path)
    assert info["path"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    wait_for(lambda: not leftovers(mark), 15, "every process ended")


@pytest.mark.slow
@pytest.mark.parametrize("remote", [False, True])
def test_a_worker_killed_by_a_signal_gives_128_plus_the_signal(tmp_path, fake_ssh, mark,
                                                               remote):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("node-a\n")
    env = ssh_env(mark, fake_ssh)
    kill = "import os, time; time.sleep(1); os.kill(os.getpid(), 9)"
    result = subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "2", "-s", "1",
                             "--timeout", "60"] + (["--hosts", str(hosts)] if remote else [])
                            + ["--", sys.executable, "-c", kill],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + 9, result.stderr
    assert "a worker exited with 137" in result.stderr and "killed by SIGKILL" in result.stderr
    wait_for(lambda: not leftovers(mark), 15, "every process ended")


@pytest.mark.slow
def test_a_failing_worker_stops_the_cluster_with_its_code(tmp_path):
    result, mark = run_launcher(["-n", "2", "-s", "1", "--timeout", "60", "--",
                                 sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path,
                                timeout=120)
    assert result.returncode == 3
    assert "exited with 3" in result.stderr
    assert leftovers(mark) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_launcher_stops_the_cluster_with_128_plus_it(tmp_path, mark, sig):
    env = marked_env(mark)
    launcher = subprocess.Popen([sys.executable, "-m", "rpn.launch", "-n", "2", "-s", "1", "--",
                                 sys.executable, "-c", FAMILY, str(tmp_path)], env=env,
                                cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: family_ready(tmp_path, 2), 60, "the workers and grandchildren started")
        launcher.send_signal(sig)
        _, err = launcher.communicate(timeout=30)
    finally:
        launcher.kill()
        launcher.wait()
    assert launcher.returncode == 128 + sig, err
    assert f"{signal.Signals(sig).name}; stopping the cluster" in err
    # the launcher returns once its supervisors have ended their groups
    assert leftovers(mark) == []
