"""A folder's manifest: written last, every listed file checked by size and
SHA-256 and named when it is missing, truncated or altered, nothing read
through a link, and no listed name outside the folder."""
import json
import os

import pytest

from rpn.runs.manifest import (MANIFEST, CorruptCheckpointError, OpenedFolder,
                               verify_manifest, write_manifest)


def _folder(tmp_path, files=(("a.params", b"weights" * 100), ("state.json", b"{}"))):
    folder = tmp_path / "epoch-0001"
    folder.mkdir()
    for name, data in files:
        (folder / name).write_bytes(data)
    write_manifest(str(folder))
    return folder


def test_a_whole_folder_verifies_and_its_files_read_through_the_opened_ones(tmp_path):
    folder = _folder(tmp_path)
    verify_manifest(str(folder))
    with OpenedFolder(str(folder)) as opened:
        assert sorted(opened.verify().files) == ["a.params", "state.json"]
        with open(opened.file("a.params"), "rb") as f:
            assert f.read() == b"weights" * 100
    listed = json.loads((folder / MANIFEST).read_text())["files"]
    assert listed["state.json"]["bytes"] == 2 and len(listed["a.params"]["sha256"]) == 64


@pytest.mark.parametrize("damage, named", [
    ("truncate", "a.params is corrupt"), ("flip", "a.params is corrupt"),
    ("remove", "missing"), ("manifest", "no MANIFEST.json")])
def test_each_damage_is_named(tmp_path, damage, named):
    folder = _folder(tmp_path)
    params = folder / "a.params"
    if damage == "truncate":
        params.write_bytes(params.read_bytes()[:50])
    elif damage == "flip":
        data = bytearray(params.read_bytes())
        data[10] ^= 1
        params.write_bytes(bytes(data))
    elif damage == "remove":
        params.unlink()
    else:
        (folder / MANIFEST).unlink()
    with pytest.raises(CorruptCheckpointError, match=named):
        verify_manifest(str(folder))


def test_a_listed_file_replaced_by_a_link_is_not_followed(tmp_path):
    folder = _folder(tmp_path)
    elsewhere = tmp_path / "elsewhere.params"
    elsewhere.write_bytes((folder / "a.params").read_bytes())    # the same bytes
    (folder / "a.params").unlink()
    os.symlink(elsewhere, folder / "a.params")
    with pytest.raises(CorruptCheckpointError, match="a.params is a symbolic link to .*"
                       "elsewhere.params: expected the file itself"):
        verify_manifest(str(folder))


@pytest.mark.parametrize("entry", ["../outside.params", ".hidden"])
def test_a_manifest_that_lists_a_file_outside_the_folder_is_refused(tmp_path, entry):
    folder = _folder(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][entry] = {"bytes": 1, "sha256": "0" * 64}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorruptCheckpointError, match="outside the checkpoint"):
        verify_manifest(str(folder))


def test_a_manifest_that_is_not_json_is_named(tmp_path):
    folder = _folder(tmp_path)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="MANIFEST.json is corrupt"):
        verify_manifest(str(folder))
