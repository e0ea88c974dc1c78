"""A real parameter-server cluster on 127.0.0.1: scheduler, one server, two
workers, started by rpn.launch, for a few steps on the synthetic data.
(tests/test_launch.py injects the launcher's faults.)"""
import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as onp
import pytest
from conftest import leftovers

WORKER = textwrap.dedent("""
    import json, sys
    import mxnet as mx, numpy as onp, rpn
    from rpn.config import PRESETS
    from rpn.model.network import RegionProposalNetwork
    from rpn.train import chapter_batch_fn
    out = sys.argv[1]
    kv = mx.kv.create("dist_sync")
    config = PRESETS["default"].replace(size=64, batch_size=4)
    train_iter, _ = rpn.load_data_synthetic(4, 64, 64, num_train=16, num_val=4,
                                            augment=False, shard=(kv.rank, kv.num_workers))
    mx.random.seed(0)                      # the same initial weights on both workers
    net = RegionProposalNetwork.from_settings(config.model, [mx.cpu()])
    backbone, head = net.backbone, net.head
    steps = []                             # logged every log_interval steps: (loss, steps done)
    rpn.train_detection(backbone, head, chapter_batch_fn(config.model), train_iter, None,
                        rpn.DetectionLoss(1), 4,
                        0.002, 0.002, mx.cpu(), optimizer="adam", kvstore=kv, seed=1,
                        callback=lambda e: e["kind"] == "step"
                        and steps.append((e["loss"], e["advance"])),
                        verbose=False)
    params = {name: p.data().asnumpy() for net in (backbone, head)
              for name, p in net.collect_params().items() if p.grad_req != "null"}
    onp.savez(f"{out}/rank{kv.rank}.npz", **params)
    with open(f"{out}/rank{kv.rank}.json", "w") as f:
        json.dump({"losses": [loss for loss, _ in steps], "steps": sum(n for _, n in steps),
                   "workers": kv.num_workers}, f)
""")


def launch(args, tmp_path, timeout=420):
    mark = uuid.uuid4().hex
    env = dict(os.environ, RPN_TEST_MARK=mark)
    result = subprocess.run([sys.executable, "-m", "rpn.launch"] + args, env=env, cwd=tmp_path,
                            timeout=timeout, capture_output=True, text=True)
    return result, mark


@pytest.mark.slow
def test_two_workers_train_to_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result, mark = launch(["-n", "2", "-s", "1", "--timeout", "360", "--",
                           sys.executable, str(script), str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [onp.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert set(ranks[0].files) == set(ranks[1].files) and ranks[0].files
    for name in ranks[0].files:
        onp.testing.assert_allclose(ranks[0][name], ranks[1][name], rtol=1e-6, atol=1e-7)
    for r in (0, 1):
        with open(tmp_path / f"rank{r}.json") as f:
            info = json.load(f)
        assert info["workers"] == 2
        # each worker trains on its half: 16 images / 2 workers / batch 4 = 2 steps an epoch
        assert info["steps"] == 8
        losses = info["losses"]
        assert len(losses) >= 2
        assert onp.mean(losses[-2:]) < onp.mean(losses[:2])
    assert leftovers(mark) == []


@pytest.mark.slow
def test_a_failing_worker_stops_the_cluster_with_its_code(tmp_path):
    result, mark = launch(["-n", "2", "-s", "1", "--timeout", "60", "--",
                           sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path,
                          timeout=120)
    assert result.returncode == 3
    assert "exited with 3" in result.stderr
    assert leftovers(mark) == []


def test_launcher_needs_a_command():
    result = subprocess.run([sys.executable, "-m", "rpn.launch", "-n", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "command" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
