"""Mixed precision in training, as far as a CPU can test it: the loop's use
of AMP's loss scaler (with a stand-in, and with MXNet's own in a process of
its own), the update it needs on the workers, and the refusal of CPUs."""
import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon

from helpers.models import FakeAmp, small_model, tiny_batches
from rpn.settings import SettingsError
from rpn.training.amp import attach, check_contexts
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(model, data, amp):
    return Trainer(ProposalStep(model), [mx.cpu()], lrs={"output": 0.01, "backbone": 0.01},
                   optimizer="sgd", seed=0, amp=amp, hybridize=False).train(data, 1)


def test_the_loop_scales_each_steps_loss_through_amp():
    fake, data = FakeAmp(), tiny_batches(2)
    plain, scaled = small_model(seed=5), small_model(seed=5)
    train(plain, data, False)
    train(scaled, data, fake)
    assert fake.calls == [("init_trainer", "Trainer"), ("scale_loss", 1), ("scale_loss", 1)]
    # scaled losses with the trainer's scale divided back give the same update
    for (name, a), b in zip(plain.collect_params().items(),
                            scaled.collect_params().values()):
        onp.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-5,
                                    atol=1e-6, err_msg=name)


def test_amp_needs_the_update_on_the_workers():
    net = gluon.nn.Dense(2)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", update_on_kvstore=True)
    with pytest.raises(ValueError, match="amp: .*dist_async"):
        attach(FakeAmp(), trainer)
    assert attach(False, trainer) is None


def test_mxnets_own_amp_drives_the_loop_on_a_cpu():
    """``mxnet.contrib.amp`` (its ``init`` changes the process for good, so
    in a process of its own): the dynamic loss scaler at 2 ** 16 and the
    update of the unscaled loss."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {TESTS!r})
        import mxnet as mx, numpy as onp
        from mxnet.contrib import amp
        from helpers.models import small_model, tiny_batches
        from training.test_amp import train
        amp.init()          # MXNet's legacy operators only: the CPU keeps float32
        data = tiny_batches(2)
        plain, scaled = small_model(seed=5), small_model(seed=5)
        train(plain, data, False)
        train(scaled, data, True)
        diff = max(float(abs(a.data() - b.data()).max()) for a, b in
                   zip(plain.collect_params().values(), scaled.collect_params().values()))
        print(json.dumps({{"diff": diff, "scale": amp.amp._loss_scaler.loss_scale}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["scale"] == 2.0 ** 16
    assert found["diff"] < 1e-5


def test_a_cpu_is_refused_in_one_line():
    with pytest.raises(SettingsError, match=r"needs GPUs; got cpu\(0\), cpu\(1\)") as caught:
        check_contexts([mx.cpu(0), mx.cpu(1)])
    assert "\n" not in str(caught.value)
    check_contexts([mx.gpu(0)])       # a GPU passes (nothing runs)
