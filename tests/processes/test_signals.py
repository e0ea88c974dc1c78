"""Ending on Ctrl-C or SIGTERM with one line instead of a traceback: a run
interrupted in process and by a signal from outside (and resumed), a
program stuck in its clean-up ended by its deadline, a signal that arrives
inside a finalizer."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import rpn
import rpn.runs.manifest
from conftest import tiny_options, train_tiny
from rpn.training.hooks import Progress


def _interrupt_at(monkeypatch, epoch, how):
    """The progress hook of ``rpn train`` is interrupted at its first report
    of ``epoch`` (0-based): by SIGTERM or Ctrl-C."""
    report = Progress.after_log

    def interrupting(self, trainer, event):
        if event["epoch"] == epoch:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)               # the handler raises here
            raise KeyboardInterrupt
        return report(self, trainer, event)
    monkeypatch.setattr(Progress, "after_log", interrupting)


@pytest.mark.parametrize("how, code, name", [("sigint", 130, "SIGINT"),
                                             ("sigterm", 143, "SIGTERM")])
def test_an_interruption_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch,
                                                         how, code, name):
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 1, how)
        assert train_tiny(out, epochs=2) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"rpn train: interrupted ({name}) at epoch 2, step 2 of 2; "
                       "resume with --resume"), err
    assert not any("Traceback" in line for line in err)
    assert signal.getsignal(signal.SIGTERM) == handler          # restored after main
    assert rpn.latest_checkpoint(str(out / "checkpoint")).endswith("epoch-0001")
    assert train_tiny(out, epochs=2, extra=["--resume"]) == 0


def _run_until_checkpoint(out, extra=()):
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out)] \
        + tiny_options(num_train=32, num_val=8, epochs=400) + ["--workers", "2"] + list(extra)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint" / "latest").exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    time.sleep(1.0)
    return proc


def _group_alive(pgid, wait=10):
    """Processes of the group ``pgid`` that are alive (not zombies) after up
    to ``wait`` seconds."""
    deadline = time.time() + wait
    while True:
        alive = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p.pid)
            except (OSError, psutil.Error):
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signalled_run_prints_one_line_and_no_traceback(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _run_until_checkpoint(out)
    try:
        os.killpg(proc.pid, sig)                # as a terminal's Ctrl-C reaches them all
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert _group_alive(proc.pid) == []         # no loader process is left
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("rpn train: ")
             or "interrupted" in line]
    assert len(lines) == 1 and "interrupted" in lines[0] and "resume with --resume" in \
        lines[0], err
    rpn.runs.manifest.verify_manifest(rpn.latest_checkpoint(str(out / "checkpoint")))


_STUCK_PROGRAM = textwrap.dedent("""
    import sys, threading, time
    from rpn.processes.signals import signals_interrupt, training_at
    held = threading.Lock()
    held.acquire()                      # as a lock a killed loader worker held
    deadline = None if sys.argv[1] == "none" else float(sys.argv[1])
    with signals_interrupt(command="rpn train", deadline=deadline):
        training_at(2, 4, 9)
        try:
            print("ready", flush=True)      # inside: the signal may come at once
            time.sleep(120)
        finally:
            held.acquire()              # clean-up that never ends
    print("left the block", flush=True)
""")


@pytest.mark.parametrize("deadline", [1.0, None])
def test_a_program_stuck_after_a_signal_ends_by_its_deadline(deadline):
    """The fault: the main thread never gets back from its clean-up after
    SIGTERM. With a deadline, the watchdog thread prints the one line and
    ends the process with 143; without one, it would wait for ever."""
    proc = subprocess.Popen([sys.executable, "-c", _STUCK_PROGRAM, str(deadline).lower()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        if deadline is None:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.communicate(timeout=4)
            return
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "left the block" not in out
    assert err.strip() == ("rpn train: interrupted (SIGTERM) at epoch 3, step 5 of 9; "
                           "resume with --resume"), err


_FINALIZER_PROGRAM = textwrap.dedent("""
    import time
    from rpn.processes.signals import signals_interrupt

    class Slow:
        def __del__(self):              # as an MXNet array freeing its memory
            print("in del", flush=True)
            end = time.time() + 1.5
            while time.time() < end:
                pass
            print("del done", flush=True)

    with signals_interrupt():
        try:
            item = Slow()
            del item
            time.sleep(5)
            print("not interrupted", flush=True)
        except KeyboardInterrupt as error:
            print("interrupted", type(error).__name__, getattr(error, "signum", None),
                  flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_finalizer_interrupts_after_it(sig):
    """The fault: the signal arrives while ``__del__`` runs; raised there, Python
    would print "Exception ignored ... Traceback" and the program would go on."""
    proc = subprocess.Popen([sys.executable, "-c", _FINALIZER_PROGRAM],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in del"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out.split("\n")[:2] == ["del done", f"interrupted Terminated {int(sig)}"], out + err
    assert "Traceback" not in err and "ignored" not in err, err


_AT_FORK_PROGRAM = textwrap.dedent("""
    import contextlib, os, signal, sys, time
    from rpn.processes.signals import interrupts_kept, signals_held, signals_interrupt

    fired = []

    def after_fork():                   # logging's at-fork callback, say
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)             # the handler runs here: Python ignores what it raises

    os.register_at_fork(after_in_parent=after_fork)
    how = sys.argv[1]
    with signals_interrupt():
        try:
            with interrupts_kept() as check:
                held = signals_held() if how == "held" else contextlib.nullcontext()
                with held:
                    pid = os.fork()
                    if pid == 0:
                        os._exit(0)
                os.waitpid(pid, 0)
                print("forked", flush=True)
                if how == "kept":
                    check()
            print("not interrupted", flush=True)
        except KeyboardInterrupt as error:
            print("interrupted", type(error).__name__, getattr(error, "signum", None),
                  flush=True)
""")


@pytest.mark.parametrize("how, lines", [
    # the signal waits until the fork is done, then interrupts at once
    ("held", ["interrupted Terminated 15"]),
    # raised inside the callback and ignored there, then raised again by check()
    ("kept", ["forked", "interrupted Terminated 15"]),
])
def test_a_signal_python_would_ignore_during_a_fork_still_interrupts(how, lines):
    done = subprocess.run([sys.executable, "-c", _AT_FORK_PROGRAM, how], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split("\n")[:len(lines)] == lines, done.stdout + done.stderr
    assert ("ignored" in done.stderr) == (how == "kept"), done.stderr


def test_without_either_the_signal_is_lost():
    """The fault both guard against: what the handler raised inside the
    at-fork callback is printed as ignored, and the program goes on."""
    done = subprocess.run([sys.executable, "-c", _AT_FORK_PROGRAM, "plain"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[:2] == ["forked", "not interrupted"], done.stdout
    assert "ignored" in done.stderr and "Terminated" in done.stderr, done.stderr
