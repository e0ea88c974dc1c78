"""The proposal file of ``rpn propose``: what it holds, that it is read
back without unpickling, and its checks."""
import json
import os
import pickle

import numpy as onp
import pytest

import rpn
from rpn.cli import main


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run


def test_propose_writes_every_image_of_a_split_in_original_pixels(run_dir, tmp_path, capsys):
    root = rpn.write_voc(str(tmp_path / "voc"), num_train=3, num_val=5, height=72, width=120)
    out = str(tmp_path / "val.npz")
    assert main(["propose", "--checkpoint", run_dir, "--data", root, "--split", "val",
                 "--top-k", "20", "--out", out, "--quiet", "--workers", "0"]) == 0
    printed = capsys.readouterr()
    assert "checking" not in printed.err and "image/s" not in printed.err   # --quiet: no bar
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert summary["images"] == 5
    proposals = rpn.load_proposals(out)
    assert len(proposals) == 5 and proposals.meta["split"] == "val"
    names = sorted(os.listdir(os.path.join(root, "JPEGImages")))
    for i in range(5):
        entry = proposals[i]
        assert entry["image_size"] == (72, 120) and entry["file_name"] in names
        assert entry["image_id"] == entry["file_name"][:-4]
        boxes, scores = entry["boxes"], entry["scores"]
        assert 1 <= len(boxes) <= 20 and boxes.shape == (len(scores), 4)
        assert (onp.diff(scores) <= 0).all()
        assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= 120).all() and (boxes[:, [1, 3]] <= 72).all()
    assert proposals.by_id(proposals[2]["image_id"])["file_name"] == proposals[2]["file_name"]
    # the same proposals as the model gives for those images
    model = rpn.load(run_dir)
    results, errors = rpn.predict_images(
        model, [os.path.join(root, "JPEGImages", proposals[0]["file_name"])], top_k=20)
    assert not errors
    onp.testing.assert_allclose(results[0]["boxes"], proposals[0]["boxes"], atol=0.05)


def test_propose_gives_all_the_model_keeps_by_default(run_dir, tmp_path):
    model = rpn.load(run_dir)
    summary = rpn.propose(model, "synthetic", "val", out=str(tmp_path / "all.npz"))
    proposals = rpn.load_proposals(str(tmp_path / "all.npz"))
    assert proposals.meta["top_k"] == model.config.model.post_nms_top_n_test
    assert proposals.meta["model"] == run_dir
    assert summary["proposals"] == sum(len(p["boxes"]) for p in proposals) > 0


def test_propose_top_k_is_checked(run_dir, tmp_path, capsys):
    assert main(["propose", "--checkpoint", run_dir, "--data", "synthetic", "--top-k", "0",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "top-k" in capsys.readouterr().err
    assert main(["propose", "--checkpoint", run_dir, "--data", "synthetic", "--top-k",
                 "5000", "--out", str(tmp_path / "x.npz"), "--quiet"]) == 1
    assert "post_nms_top_n_test" in capsys.readouterr().err


def test_load_proposals_never_unpickles_and_names_bad_files(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    bad = tmp_path / "pickled.npz"
    onp.savez(bad, boxes=onp.array([Payload()], dtype=object), meta=onp.array("{}"))
    with pytest.raises(ValueError, match="pickled.npz"):
        rpn.load_proposals(str(bad))
    assert not marker.exists()
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="raw.npz"):
        rpn.load_proposals(str(raw))
    assert not marker.exists()
    short = tmp_path / "short.npz"
    onp.savez(short, boxes=onp.zeros((3, 4)))
    with pytest.raises(ValueError, match="missing"):
        rpn.load_proposals(str(short))


# ---- what propose may replace, and files forged to exhaust memory (issue 29) --------

def test_propose_replaces_only_its_own_files(run_dir, tmp_path, capsys):
    import hashlib
    from conftest import copy_run, one_line_error
    run = copy_run(run_dir, tmp_path)
    latest = rpn.latest_checkpoint(str(run / "checkpoint"))

    def sums():
        return {os.path.join(d, f): hashlib.sha256(open(os.path.join(d, f), "rb").read())
                .hexdigest() for d, _, files in os.walk(run) for f in files}
    before = sums()
    base = ["propose", "--checkpoint", str(run), "--data", "synthetic", "--quiet",
            "--workers", "0", "--out"]
    for out, words in ((run / "config.json", "not a proposal file"),
                       (os.path.join(latest, "backbone.params"), "inside the checkpoints"),
                       (run / "checkpoint" / "new.npz", "inside the checkpoints"),
                       (run, "is a folder"), (tmp_path / "nowhere" / "p.npz", "does not exist")):
        capsys.readouterr()
        assert main(base + [str(out)]) == 2, out
        one_line_error(capsys, words)
    assert sums() == before and rpn.load(str(run)).config.model.size == 64
    # its own file it replaces (beside the run's files, as the README does)
    assert main(base + [str(run / "val.npz")]) == 0
    assert main(base + [str(run / "val.npz")]) == 0
    assert len(rpn.load_proposals(str(run / "val.npz"))) == 4


def npz_bytes(members, compression=None):
    """A ``.npz`` archive of ``members``: name -> the bytes of a ``.npy`` file."""
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression or zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def npy_bytes(array=None, *, header=None, data=b""):
    """The bytes of a ``.npy`` file of ``array``, or of ``header`` (a forged
    one) followed by ``data``."""
    import io
    buffer = io.BytesIO()
    if array is not None:
        onp.lib.format.write_array(buffer, onp.asarray(array))
    else:
        onp.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(data)
    return buffer.getvalue()


def test_a_forged_header_or_a_zip_bomb_is_a_value_error_not_a_memory_error(tmp_path):
    import zipfile
    valid = {"scores": npy_bytes(onp.zeros(1, "float32")), "counts": npy_bytes(onp.ones(1, int)),
             "image_ids": npy_bytes(onp.zeros(1, int)), "file_names": npy_bytes(["a.jpg"]),
             "image_sizes": npy_bytes(onp.ones((1, 2), int)),
             "meta": npy_bytes(json.dumps({"format": "rpn-proposals"}))}
    good = tmp_path / "good.npz"
    good.write_bytes(npz_bytes(dict(valid, boxes=npy_bytes(onp.zeros((1, 4), "float32")))))
    assert len(rpn.load_proposals(str(good))) == 1            # the case is otherwise valid
    forged = tmp_path / "forged.npz"                # a header claiming 1.46 TiB
    claim = {"descr": "<f4", "fortran_order": False, "shape": (100_000_000_000, 4)}
    forged.write_bytes(npz_bytes(dict(valid, boxes=npy_bytes(header=claim, data=b"\0" * 16))))
    with pytest.raises(ValueError, match=r"forged\.npz.*'boxes'.*header claims"):
        rpn.load_proposals(str(forged))
    bomb = tmp_path / "bomb.npz"                    # 200 MB of zeros in a few hundred KB
    rows = 200 << 16
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in valid.items():
            archive.writestr(name + ".npy", data)
        with archive.open("boxes.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes(header={"descr": "<f4", "fortran_order": False,
                                           "shape": (rows, 4)}))
            for _ in range(rows * 16 >> 22):
                member.write(bytes(1 << 22))
    assert os.path.getsize(bomb) < 1 << 20
    with pytest.raises(ValueError, match=r"bomb\.npz.*'boxes'.*zip bomb"):
        rpn.load_proposals(str(bomb))
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe\.npz is a FIFO"):
        rpn.load_proposals(str(fifo))
