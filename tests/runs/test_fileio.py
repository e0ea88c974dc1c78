"""Writing the files of a run folder: never through a planted link, and a
full disk as one line naming the file (the OS's ENOSPC and MXNet's
"FileStream.Write incomplete"), whichever writer meets it, with no
temporary left behind. Each case is injected."""
import errno
import json
import os

import mxnet as mx
import pytest

import rpn
import rpn.runs.checkpoint
import rpn.runs.fileio
from conftest import copy_run, errors, train_tiny
from rpn.cli import main
from rpn.runs.lock import LOCK_NAME


def test_writes_never_follow_a_planted_link(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in ("metrics.json", "metrics.json.tmp", "curves.png", ".metrics.json.tmp"):
        os.symlink(victim, out / name)
    assert train_tiny(out) == 0
    assert victim.read_text() == "keep me"
    assert not os.path.islink(out / "metrics.json")
    assert json.load(open(out / "metrics.json"))["history"]
    # a checkpoint folder planted as a link to elsewhere is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(elsewhere, other / "checkpoint")
    assert train_tiny(other, extra=["--resume"]) == 1
    assert list(elsewhere.iterdir()) == []


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _incomplete(*args, **kwargs):
    raise mx.base.MXNetError("[12:00:00] src/io/local_filesys.cc:38: Check failed: "
                             "nwrite == size (0 vs. 4096) : FileStream.Write incomplete\n"
                             "Stack trace:\n  [bt] (0) libmxnet.so(+0x1234)")


@pytest.mark.parametrize("where", ["optimizer", "parameters"])
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_one(
        tiny_run, tmp_path, capsys, monkeypatch, where):
    copy = copy_run(tiny_run, tmp_path)
    before = rpn.latest_checkpoint(str(copy / "checkpoint"))
    with monkeypatch.context() as patch:
        if where == "optimizer":
            patch.setattr(rpn.runs.checkpoint, "_save_optimizer", _enospc)
            file = "epoch-0002/optimizer.params"
        else:
            patch.setattr(mx.gluon.Block, "save_parameters", _incomplete)
            file = "epoch-0002/output.params"           # the first part saved
        capsys.readouterr()
        assert train_tiny(copy, epochs=2, extra=["--resume"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1, err
    assert "disk is full" in err[0] and file in err[0] and "epoch-0001" in err[0]
    assert "Traceback" not in err[0] and "Stack trace" not in err[0]
    assert rpn.latest_checkpoint(str(copy / "checkpoint")) == before
    assert sorted(os.listdir(copy / "checkpoint")) == ["epoch-0001", "latest"]
    assert train_tiny(copy, epochs=2, extra=["--resume"]) == 0       # once there is space


def test_a_full_disk_for_config_json_names_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(rpn.runs.fileio.os, "fsync", _enospc)
    assert train_tiny(out) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "disk is full" in err[0] and "config.json" in err[0]
    assert [e for e in os.listdir(out) if e != LOCK_NAME] == []     # no temporary left


@pytest.mark.parametrize("fault", [_enospc, _incomplete])
def test_a_failed_export_removes_its_temporary_folder(tiny_run, tmp_path, capsys,
                                                      monkeypatch, fault):
    out = tmp_path / "export"
    monkeypatch.setattr(mx.gluon.HybridBlock, "export", fault)
    assert main(["export", "--checkpoint", tiny_run, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "disk is full" in err and str(out) in err
    assert os.listdir(out) == [LOCK_NAME]       # the export folder's lock: nothing else


# ---- file modes: what any program makes under the umask (issue 29, item 8) ----------

def every_path(folder):
    """Every file and folder below ``folder``, and ``folder`` itself."""
    found = [str(folder)]
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, name) for name in dirs + files]
    return found


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_and_folder_gets_the_umasks_mode(tiny_run, tmp_path, umask):
    """A tiny train, export, predict and propose under the umask: files
    0666 and folders 0777 less it (the lock files and the checkpoint
    folders too), as any program's; never 0600 whatever the umask."""
    image = tmp_path / "photo.png"
    from helpers.files import write_image
    write_image(image)
    made = [tmp_path / "run", tmp_path / "export", tmp_path / "predictions"]
    old = os.umask(umask)
    try:
        assert train_tiny(made[0], epochs=2) == 0
        assert main(["export", "--checkpoint", str(made[0]), "--out", str(made[1])]) == 0
        assert main(["predict", "--checkpoint", str(made[1]), str(image), "--out",
                     str(made[2])]) == 0
        assert main(["propose", "--checkpoint", str(made[0]), "--data", "synthetic",
                     "--quiet", "--workers", "0", "--out", str(tmp_path / "val.npz")]) == 0
    finally:
        os.umask(old)
    paths = [p for folder in made for p in every_path(folder)] + [str(tmp_path / "val.npz")]
    assert any(p.endswith(LOCK_NAME) for p in paths) and any("epoch-0002" in p for p in paths)
    modes = {p: os.stat(p).st_mode & 0o777 for p in paths}
    expected = {p: (0o777 if os.path.isdir(p) else 0o666) & ~umask for p in paths}
    assert modes == expected


# ---- errors name the user's path, never a temporary ----------------------------------

def test_a_write_error_names_the_file_not_its_temporary(tmp_path):
    taken = tmp_path / "adir"
    taken.mkdir()                       # a folder where the file goes: os.replace fails
    with pytest.raises(IsADirectoryError) as error:
        rpn.runs.fileio.write_bytes(str(taken), b"data")
    assert error.value.filename == str(taken) and ".tmp" not in str(error.value)
    assert os.listdir(tmp_path) == ["adir"] and os.listdir(taken) == []
    with pytest.raises(FileNotFoundError) as error:
        rpn.runs.fileio.write_bytes(str(tmp_path / "gone" / "a.png"), b"data")
    assert error.value.filename == str(tmp_path / "gone" / "a.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as error:
            rpn.runs.fileio.write_bytes(str(folder / "a0.png"), b"data")
    finally:
        folder.chmod(0o755)
    assert error.value.filename == str(folder / "a0.png") and ".tmp" not in str(error.value)


# ---- reading: only regular files, never a FIFO's endless wait ------------------------

def test_a_fifo_is_refused_without_being_opened(tmp_path, capsys):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)                     # opened for reading, it would wait for a writer
    with pytest.raises(rpn.runs.fileio.NotRegularFileError, match="a FIFO"):
        rpn.runs.fileio.open_regular(str(fifo))
    with pytest.raises(ValueError, match="a FIFO"):
        rpn.runs.fileio.read_json(str(fifo))
    with pytest.raises(rpn.runs.fileio.NotRegularFileError, match="a folder"):
        rpn.runs.fileio.sha256_of(str(tmp_path))
    # a run folder whose config.json is a FIFO: one line, no hang
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0]


def test_names_that_do_not_print_are_quoted_and_escaped():
    shown = rpn.runs.fileio.shown
    assert shown("photos/a b.jpg") == "photos/a b.jpg"          # as it is
    assert shown("a\nrpn predict: forged.jpg") == repr("a\nrpn predict: forged.jpg")
    assert "\x1b" not in shown("\x1b[2J.png") and shown("\x1b[2J.png") == "'\\x1b[2J.png'"
    assert shown(b"raw\xff".decode("utf-8", "surrogateescape")) == "'raw\\udcff'"
