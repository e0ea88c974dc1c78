"""One writer a run folder (issue 18): a second writer refused naming the
holder, a lock that dies with its process (SIGKILL, a failed fit, a forked
child), and a clean-up that removes what a killed writer recorded and
nothing of the user's. Each case is injected."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

import rpn
import rpn.training.hooks
from conftest import TINY, copy_run, listing, tiny_fit, train_tiny
from rpn.cli import main
from rpn.runs.lock import LOCK_NAME, RunLock
from rpn.training.fit import Fit


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


def test_a_second_writer_is_refused_naming_the_holder_and_sigkill_leaves_no_lock(
        tiny_run, tmp_path, capsys):
    copy = copy_run(tiny_run, tmp_path)
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
    assert train_tiny(copy, epochs=2, extra=["--resume"]) == 0
    assert train_tiny(empty) == 0


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
        Fit("synthetic", str(out), hooks=[_Broken()], **tiny_fit()).run()
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


def test_training_into_a_users_folder_deletes_nothing_of_theirs(tmp_path):
    out = tmp_path / "mine"
    (out / ".epoch-plan").mkdir(parents=True)
    (out / ".epoch-plan" / "notes").write_text("mine")
    (out / ".draft.tmp").write_text("mine")
    (out / ".config.json.abcdefgh.tmp").write_text("mine, with a name like the package's")
    theirs = listing(out)
    assert train_tiny(out) == 0
    (out / "checkpoint" / ".epoch-0009-mine").mkdir()
    (out / "checkpoint" / ".latest.mine.tmp").write_text("mine")
    assert train_tiny(out, epochs=2, extra=["--resume"]) == 0
    now = listing(out)
    assert set(theirs) <= set(now)
    assert {"checkpoint/.epoch-0009-mine", "checkpoint/.latest.mine.tmp"} <= set(now)


def test_what_a_killed_writer_recorded_is_removed_and_only_that(tiny_run, tmp_path):
    copy = copy_run(tiny_run, tmp_path)
    (copy / "checkpoint" / ".epoch-0002-mine").mkdir()
    holder = hold(copy, "leave-temporaries")
    left = [e for e in os.listdir(copy / "checkpoint") if e.startswith(".epoch-0002-")]
    kill(holder)
    assert len(left) == 2                       # the writer's and the user's
    assert train_tiny(copy, epochs=2, extra=["--resume"]) == 0
    assert [e for e in os.listdir(copy / "checkpoint") if e.startswith(".")] == \
        [".epoch-0002-mine"]


def test_a_run_that_failed_before_its_first_checkpoint_can_be_run_again(tmp_path,
                                                                         monkeypatch, capsys):
    out = tmp_path / "run"
    def crash(*args):
        raise RuntimeError("injected crash")
    with monkeypatch.context() as patch:
        patch.setattr(rpn.runs.checkpoint, "_save_optimizer", crash)
        assert train_tiny(out) == 1
    assert os.path.isfile(out / "config.json")
    capsys.readouterr()
    assert train_tiny(out) == 0
    assert "saved no checkpoint" in capsys.readouterr().err
    assert train_tiny(out) == 2                      # now it holds a run


# ---- other outputs: one writer, and what a killed one left (issue 29) -----------------

OUTPUT_HOLDER = textwrap.dedent("""
    import os, sys, threading, time
    import rpn.runs.fileio as fileio
    from rpn.runs.lock import FileLock, RunLock
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "folder":            # an export killed while it filled its staging folder
        lock = RunLock(path).acquire()
        fileio.private_dir(path, ".export-")
    else:                           # a propose killed before its file was renamed into place
        lock = FileLock(path).acquire()
        fileio.os.replace = lambda *args: time.sleep(120)
        threading.Thread(target=fileio.write_bytes, args=(path, b"half"), daemon=True).start()
        folder, name = os.path.split(path)
        while not any(e.startswith("." + name) and e.endswith(".tmp")
                      for e in os.listdir(folder)):
            time.sleep(0.05)
    print("held", flush=True)
    time.sleep(120)
""")


def hold_output(path, kind):
    """A process that holds the lock of the output folder (``kind``
    ``"folder"``) or file (``"file"``) ``path``, with a temporary it
    recorded, until killed."""
    proc = subprocess.Popen([sys.executable, "-c", OUTPUT_HOLDER, kind, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("command", ["predict", "export", "propose"])
def test_a_second_writer_of_an_output_is_refused_and_a_killed_ones_leftovers_go(
        tiny_run, tmp_path, capsys, command):
    from conftest import one_line_error
    from helpers.files import write_image
    image = write_image(tmp_path / "photo.png")
    out = tmp_path / ("val.npz" if command == "propose" else "out")
    if command != "propose":
        out.mkdir()
    argv = {"predict": ["predict", "--checkpoint", tiny_run, image],
            "export": ["export", "--checkpoint", tiny_run],
            "propose": ["propose", "--checkpoint", tiny_run, "--data", "synthetic",
                        "--quiet", "--workers", "0"]}[command] + ["--out", str(out)]
    holder = hold_output(out, "file" if command == "propose" else "folder")
    try:
        capsys.readouterr()
        assert main(argv) == 2
        one_line_error(capsys, f"process {holder.pid}", "in use", str(out))
        left = sorted(os.listdir(out if command != "propose" else tmp_path))
        assert any(e.endswith(".tmp") or e.startswith(".export-") for e in left), left
    finally:
        kill(holder)
    assert main(argv) == 0                      # the kernel released the killed one's lock
    if command == "propose":
        assert sorted(os.listdir(tmp_path)) == ["photo.png", "val.npz"]    # lock file too
        assert len(rpn.load_proposals(str(out))) == 4
    else:
        assert not [e for e in os.listdir(out) if e.startswith(".export-")]
        assert LOCK_NAME in os.listdir(out)


def test_an_out_that_is_a_file_is_a_usage_error(tiny_run, tmp_path, capsys):
    from conftest import one_line_error
    from helpers.files import write_image
    image = write_image(tmp_path / "photo.png")
    mine = tmp_path / "mine"
    mine.write_text("mine")
    for argv in (["train", "--data", "synthetic"] + TINY, ["export", "--checkpoint", tiny_run],
                 ["predict", "--checkpoint", tiny_run, image],
                 ["evaluate", "--checkpoint", tiny_run, "--quiet"]):
        capsys.readouterr()
        assert main(argv + ["--out", str(mine)]) == 2, argv
        one_line_error(capsys, str(mine), "not a folder")
    assert mine.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["mine", "photo.png"]
