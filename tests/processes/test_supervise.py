"""The supervisor every cluster process runs under, alone (no MXNet: fast):
its exit code, and the process group it ends when its parent dies, at the
end of its stdin, at a second SIGTERM, and after its command."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers.processes import FAMILY, family_ready, leftovers, marked_env, wait_for
from rpn.processes import supervise as _supervise

SUPERVISOR = [sys.executable, "-I", _supervise.__file__]


@pytest.mark.parametrize("code, expected", [("import sys; sys.exit(3)", 3),
                                            ("import os; os.kill(os.getpid(), 9)", 137),
                                            ("import os; os.kill(os.getpid(), 15)", 143)])
def test_supervisor_exit_code_is_the_commands_and_128_plus_a_signal(code, expected):
    result = subprocess.run(SUPERVISOR + ["--parent", str(os.getpid()), "--name", "worker 0",
                                          "--", sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == expected
    if expected == 137:
        assert "worker 0 killed by SIGKILL" in result.stderr


def test_supervisor_reports_a_missing_command_with_127():
    result = subprocess.run(SUPERVISOR + ["--parent", str(os.getpid()), "--", "no-such-command-x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 127 and "cannot run 'no-such-command-x'" in result.stderr


def test_supervisor_ends_the_group_when_its_parent_is_killed(tmp_path, mark):
    env = marked_env(mark)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        subprocess.Popen({SUPERVISOR!r} + ["--parent", str(os.getpid()), "--",
                          sys.executable, "-c", {FAMILY!r}, {str(tmp_path)!r}])
        time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    try:
        wait_for(lambda: family_ready(tmp_path, 1), 30, "the family started")
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not leftovers(mark), 15, "every process ended")


def test_supervisor_ends_the_group_at_the_end_of_its_stdin(tmp_path, mark):
    env = marked_env(mark)
    proc = subprocess.Popen(SUPERVISOR + ["--stdin", "--grace", "1", "--", sys.executable, "-c",
                                          FAMILY, str(tmp_path)], env=env, stdin=subprocess.PIPE)
    wait_for(lambda: family_ready(tmp_path, 1), 30, "the family started")
    proc.stdin.close()
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    wait_for(lambda: not leftovers(mark), 5, "every process ended")


def test_supervisor_forwards_sigterm_and_kills_at_a_second_one(tmp_path, mark):
    env = marked_env(mark)
    proc = subprocess.Popen(SUPERVISOR + ["--parent", str(os.getpid()), "--grace", "60", "--",
                                          sys.executable, "-c", FAMILY, str(tmp_path)], env=env)
    wait_for(lambda: family_ready(tmp_path, 1), 30, "the family started")
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    # the child took the forwarded SIGTERM; the grandchild ignores it
    assert len(leftovers(mark)) == 2 and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    wait_for(lambda: not leftovers(mark), 5, "every process ended")


def test_supervisor_stops_what_the_command_left_behind(tmp_path, mark):
    env = marked_env(mark)
    command = ("import subprocess, sys; subprocess.Popen(['sleep', '300']); sys.exit(5)")
    result = subprocess.run(SUPERVISOR + ["--parent", str(os.getpid()), "--",
                                          sys.executable, "-c", command], env=env, timeout=60)
    assert result.returncode == 5
    wait_for(lambda: not leftovers(mark), 5, "the background sleep ended")
