"""Run folders under real use (issue 18): one writer, readers that never see
a half-replaced checkpoint, nothing of the user's deleted, a full disk and
an interruption in one line. Each case is injected."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import mxnet as mx
import psutil
import pytest

import rpn
import rpn.runs.checkpoint
import rpn.runs.fileio
import rpn.train
import rpn.training.hooks
from rpn.cli import main
from rpn.runs.lock import LOCK_NAME, RunLock
from rpn.training.fit import Fit
from rpn.training.hooks import Progress

TINY = ["--size", "64", "--batch-size", "4", "--quiet", "--workers", "0",
        "--set", "num_train=8", "--set", "num_val=4"]


def train(out, epochs=1, extra=()):
    return main(["train", "--data", "synthetic", "--out", str(out), "--epochs", str(epochs)]
                + TINY + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "run"
    assert train(out) == 0
    return out


def copy_of(trained, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(trained, copy)
    return copy


def errors(err):
    """stderr without warnings, progress lines and the counts of each split."""
    return [line for line in err.strip().splitlines()
            if line.startswith("rpn ") and not line.startswith("rpn train: epoch")
            and " training images (" not in line
            and not re.match(r"rpn \w+: \w+: \d+ images", line)]


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, dirs, files in os.walk(folder) for f in dirs + files)


HOLDER = textwrap.dedent("""
    import sys, time
    from rpn.runs.lock import RunLock
    from rpn.runs.fileio import private_dir, write_bytes
    lock = RunLock(sys.argv[1]).acquire()
    if len(sys.argv) > 2:           # leave temporaries as a killed writer would
        import os
        os.makedirs(os.path.join(sys.argv[1], "checkpoint"), exist_ok=True)
        tmp = private_dir(os.path.join(sys.argv[1], "checkpoint"), ".epoch-0002-")
        open(os.path.join(tmp, "backbone.params"), "wb").write(b"half")
    print("held", flush=True)
    time.sleep(120)
""")


def hold(folder, *extra):
    """A process that holds ``folder``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), *extra],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# ---- one writer ---------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder_and_sigkill_leaves_no_lock(
        trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = listing(copy)
    holders = [hold(copy), hold(empty)]
    try:
        for argv, folder in ((["--epochs", "2", "--resume"], copy), ([], empty)):
            capsys.readouterr()
            assert main(["train", "--data", "synthetic", "--out", str(folder)] + TINY
                        + argv) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1, err
            holder = holders[0] if folder == copy else holders[1]
            assert f"process {holder.pid}" in err and LOCK_NAME in err
        assert listing(copy) == before                   # nothing touched
        assert sorted(os.listdir(empty)) == [LOCK_NAME]
    finally:
        for proc in holders:
            kill(proc)
    # the kernel released the killed holders' locks: no stale lock
    assert train(copy, epochs=2, extra=["--resume"]) == 0
    assert train(empty) == 0


def test_a_process_forked_by_the_holder_does_not_keep_the_lock(tmp_path):
    code = textwrap.dedent("""
        import os, sys, time
        from rpn.runs.lock import RunLock
        RunLock(sys.argv[1]).acquire()
        if os.fork() == 0:              # a loader process that outlives its parent
            time.sleep(30)
            os._exit(0)
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    children = psutil.Process(proc.pid).children()
    kill(proc)
    try:
        assert children and children[0].is_running()
        RunLock(str(tmp_path)).acquire().release()       # free while the child lives
    finally:
        for child in children:
            child.kill()


class _Broken(rpn.training.hooks.Hook):
    """A hook that fails when training begins."""

    def before_train(self, trainer):
        raise RuntimeError("injected")


def test_a_failed_fit_leaves_no_lock_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected"):
        Fit("synthetic", str(out), size=64, batch_size=4, epochs=1, quiet=True,
            settings={"num_train": 8, "num_val": 4}, hooks=[_Broken()]).run()
    # another process can take the lock at once, while the traceback lives on here
    result = subprocess.run([sys.executable, "-c", "import sys; from rpn.runs.lock import "
                             "RunLock; RunLock(sys.argv[1]).acquire(); print('ok')",
                             str(out)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.slow
def test_two_runs_started_together_on_one_folder_one_is_refused(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out),
               "--epochs", "3"] + TINY
    procs = [subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use" in refused or "already holds a run" in refused
    winner = [seed for (code, _), seed in zip(results, (1, 2)) if code == 0][0]
    state = json.load(open(os.path.join(rpn.latest_checkpoint(str(out / "checkpoint")),
                                        "state.json")))
    assert json.load(open(out / "config.json"))["seed"] == winner == state["seed"]


# ---- readers ------------------------------------------------------------------

@pytest.mark.parametrize("when", ["before its files are open", "while they are read"])
def test_a_reader_gets_a_whole_checkpoint_when_the_writer_moves_on(trained, tmp_path,
                                                                  monkeypatch, when):
    copy = copy_of(trained, tmp_path)
    folder = str(copy / "checkpoint")
    opened = rpn.runs.checkpoint._Opened
    moved = []

    def writer_moves_on():        # as the writer does between a reader's steps
        shutil.copytree(os.path.join(folder, "epoch-0001"), os.path.join(folder, ".new"))
        os.rename(os.path.join(folder, ".new"), os.path.join(folder, "epoch-0002"))
        rpn.runs.fileio.write_bytes(os.path.join(folder, "latest"), b"epoch-0002")
        rpn.runs.checkpoint._retire(folder, "epoch-0001")
        moved.append(when)

    openings = []

    class Racing(opened):
        def __init__(self, path):
            openings.append(path)
            if not moved and when.startswith("before"):
                writer_moves_on()
            super().__init__(path)

        def verify(self):
            if not moved:
                writer_moves_on()
            return super().verify()
    monkeypatch.setattr(rpn.runs.checkpoint, "_Opened", Racing)
    model = rpn.load(str(copy))
    assert moved == [when]
    # files already open are read whole; a checkpoint gone before is followed
    assert [os.path.basename(p) for p in openings] == (
        ["epoch-0001"] if when.startswith("while") else ["epoch-0001", "epoch-0002"])
    assert sorted(os.listdir(folder)) == ["epoch-0002", "latest"]
    assert model.config.model.size == 64


def test_readers_load_whole_checkpoints_while_a_run_trains(trained, tmp_path):
    out = copy_of(trained, tmp_path)
    # one step an epoch: a new checkpoint replaces the last many times a second
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out),
               "--resume", "--epochs", "400", "--size", "64", "--batch-size", "4",
               "--quiet", "--workers", "0", "--set", "num_train=8", "--set", "num_val=4"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen, failures = set(), []
    try:
        # before the fix, about 1 load in 10 failed this way
        deadline = time.time() + 12
        while time.time() < deadline and proc.poll() is None:
            try:
                model = rpn.load(str(out))
                assert model.config.model.size == 64
                seen.add(_epoch(out))
            except Exception as error:          # any failure is the fault
                failures.append(repr(error))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert failures == []
    assert len(seen) >= 3, seen                 # the run moved on while it was read


def _epoch(out):
    try:
        return rpn.runs.checkpoint.checkpoint_epoch(rpn.latest_checkpoint(str(out / "checkpoint")))
    except (OSError, ValueError):
        return None


# ---- nothing of the user's is deleted -------------------------------------------

def test_training_into_a_users_folder_deletes_nothing_of_theirs(tmp_path):
    out = tmp_path / "mine"
    (out / ".epoch-plan").mkdir(parents=True)
    (out / ".epoch-plan" / "notes").write_text("mine")
    (out / ".draft.tmp").write_text("mine")
    (out / ".config.json.abcdefgh.tmp").write_text("mine, with a name like the package's")
    theirs = listing(out)
    assert train(out) == 0
    (out / "checkpoint" / ".epoch-0009-mine").mkdir()
    (out / "checkpoint" / ".latest.mine.tmp").write_text("mine")
    assert train(out, epochs=2, extra=["--resume"]) == 0
    now = listing(out)
    assert set(theirs) <= set(now)
    assert {"checkpoint/.epoch-0009-mine", "checkpoint/.latest.mine.tmp"} <= set(now)


def test_what_a_killed_writer_recorded_is_removed_and_only_that(trained, tmp_path):
    copy = copy_of(trained, tmp_path)
    (copy / "checkpoint" / ".epoch-0002-mine").mkdir()
    holder = hold(copy, "leave-temporaries")
    left = [e for e in os.listdir(copy / "checkpoint") if e.startswith(".epoch-0002-")]
    kill(holder)
    assert len(left) == 2                       # the writer's and the user's
    assert train(copy, epochs=2, extra=["--resume"]) == 0
    assert [e for e in os.listdir(copy / "checkpoint") if e.startswith(".")] == \
        [".epoch-0002-mine"]


def test_resume_without_latest_continues_from_the_newest_whole_checkpoint(
        trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    os.remove(copy / "checkpoint" / "latest")
    # a reader finds it too
    with pytest.warns(UserWarning, match="latest is missing"):
        rpn.load(str(copy))
    capsys.readouterr()
    assert train(copy, epochs=2, extra=["--resume"]) == 0
    err = capsys.readouterr().err
    assert "latest is missing: resuming from" in err and "epoch-0001" in err
    history = json.load(open(copy / "metrics.json"))["history"]
    first = json.load(open(trained / "metrics.json"))["history"][0]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["time"] == first["time"]              # continued, not retrained
    assert sorted(os.listdir(copy / "checkpoint")) == ["epoch-0002", "latest"]


def test_resume_without_latest_and_no_whole_checkpoint_refuses_and_deletes_nothing(
        trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    os.remove(copy / "checkpoint" / "latest")
    with open(copy / "checkpoint" / "epoch-0001" / "output.params", "ab") as f:
        f.write(b"x")
    before = listing(copy)
    assert train(copy, epochs=2, extra=["--resume"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "no checkpoint is whole" in err[0] and "output.params" in err[0]
    assert listing(copy) == before


# ---- a full disk ----------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _incomplete(*args, **kwargs):
    raise mx.base.MXNetError("[12:00:00] src/io/local_filesys.cc:38: Check failed: "
                             "nwrite == size (0 vs. 4096) : FileStream.Write incomplete\n"
                             "Stack trace:\n  [bt] (0) libmxnet.so(+0x1234)")


@pytest.mark.parametrize("where", ["optimizer", "parameters"])
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_one(
        trained, tmp_path, capsys, monkeypatch, where):
    copy = copy_of(trained, tmp_path)
    before = rpn.latest_checkpoint(str(copy / "checkpoint"))
    with monkeypatch.context() as patch:
        if where == "optimizer":
            patch.setattr(rpn.runs.checkpoint, "_save_optimizer", _enospc)
            file = "epoch-0002/optimizer.params"
        else:
            patch.setattr(mx.gluon.Block, "save_parameters", _incomplete)
            file = "epoch-0002/output.params"           # the first part saved
        capsys.readouterr()
        assert train(copy, epochs=2, extra=["--resume"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1, err
    assert "disk is full" in err[0] and file in err[0] and "epoch-0001" in err[0]
    assert "Traceback" not in err[0] and "Stack trace" not in err[0]
    assert rpn.latest_checkpoint(str(copy / "checkpoint")) == before
    assert sorted(os.listdir(copy / "checkpoint")) == ["epoch-0001", "latest"]
    assert train(copy, epochs=2, extra=["--resume"]) == 0       # once there is space


def test_a_full_disk_for_config_json_names_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(rpn.runs.fileio.os, "fsync", _enospc)
    assert train(out) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "disk is full" in err[0] and "config.json" in err[0]
    assert [e for e in os.listdir(out) if e != LOCK_NAME] == []     # no temporary left


@pytest.mark.parametrize("fault", [_enospc, _incomplete])
def test_a_failed_export_removes_its_temporary_folder(trained, tmp_path, capsys,
                                                      monkeypatch, fault):
    out = tmp_path / "export"
    monkeypatch.setattr(mx.gluon.HybridBlock, "export", fault)
    assert main(["export", "--checkpoint", str(trained), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "disk is full" in err and str(out) in err
    assert os.listdir(out) == []


# ---- a crash, an interruption ---------------------------------------------------

def test_a_run_that_failed_before_its_first_checkpoint_can_be_run_again(tmp_path,
                                                                         monkeypatch, capsys):
    out = tmp_path / "run"
    def crash(*args):
        raise RuntimeError("injected crash")
    with monkeypatch.context() as patch:
        patch.setattr(rpn.runs.checkpoint, "_save_optimizer", crash)
        assert train(out) == 1
    assert os.path.isfile(out / "config.json")
    capsys.readouterr()
    assert train(out) == 0
    assert "saved no checkpoint" in capsys.readouterr().err
    assert train(out) == 2                      # now it holds a run


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
        assert train(out, epochs=2) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"rpn train: interrupted ({name}) at epoch 2, step 2 of 2; "
                       "resume with --resume"), err
    assert not any("Traceback" in line for line in err)
    assert signal.getsignal(signal.SIGTERM) == handler          # restored after main
    assert rpn.latest_checkpoint(str(out / "checkpoint")).endswith("epoch-0001")
    assert train(out, epochs=2, extra=["--resume"]) == 0


def _run_until_checkpoint(out, extra=()):
    command = [sys.executable, "-m", "rpn", "train", "--data", "synthetic", "--out", str(out),
               "--epochs", "400", "--size", "64", "--batch-size", "4", "--workers", "2",
               "--set", "num_train=32", "--set", "num_val=8", "--quiet"] + list(extra)
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
    rpn.runs.checkpoint.verify_manifest(rpn.latest_checkpoint(str(out / "checkpoint")))


_STUCK_PROGRAM = textwrap.dedent("""
    import sys, threading, time
    from rpn.processes.signals import signals_interrupt, training_at
    held = threading.Lock()
    held.acquire()                      # as a lock a killed loader worker held
    deadline = None if sys.argv[1] == "none" else float(sys.argv[1])
    with signals_interrupt(command="rpn train", deadline=deadline):
        training_at(2, 4, 9)
        print("ready", flush=True)
        try:
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
