"""Mixed precision as far as a CPU can test it: the training loop's use of
AMP's loss scaler (with a stand-in and with MXNet's own, in a process of
its own), the float16 casts of the NumPy-mode operators in arrays and
graphs, the head's float32 outputs, and the refusals."""
import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

import rpn
from conftest import SMALL, small_model
from rpn.ops import precision as mixed_precision
from rpn.training.amp import attach, check_contexts
from rpn.training.fit import Fit
from rpn.training.step import ProposalStep
from rpn.training.trainer import Trainer
from rpn.settings import SettingsError

ROOT = os.path.join(os.path.dirname(__file__), "..")


def batches(num=2, size=64):
    found = rpn.data.sources.open_split("synthetic", "train", synthetic=dict(
        size=size, num_train=num * 2, num_val=2, seed=0))
    return list(rpn.data.sources.make_loader(found, rpn.Resize.of(SMALL.model), 2, train=True,
                                        size_divisor=8))


class FakeAmp:
    """What the engine may use of ``mxnet.contrib.amp``, recording calls;
    the loss is scaled by 8 and the trainer told to divide by 8, as AMP's
    scaler does."""

    def __init__(self):
        self.calls = []

    def init(self, target_dtype):
        self.calls.append(("init", target_dtype))

    def init_trainer(self, trainer):
        self.calls.append(("init_trainer", type(trainer).__name__))
        trainer._amp_original_scale = trainer._scale

    def scale_loss(self, losses, trainer):
        import contextlib
        self.calls.append(("scale_loss", len(losses)))
        trainer._scale = trainer._amp_original_scale / 8

        @contextlib.contextmanager
        def scaled():
            yield [l * 8 for l in losses]
        return scaled()


def train(model, data, amp):
    return Trainer(ProposalStep(model), [mx.cpu()], lrs={"output": 0.01, "backbone": 0.01},
                   optimizer="sgd", seed=0, amp=amp, hybridize=False).train(data, 1)


def test_the_loop_scales_each_steps_loss_through_amp():
    fake, data = FakeAmp(), batches(2)
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
        sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
        import mxnet as mx, numpy as onp
        from mxnet.contrib import amp
        from test_mixed_precision import batches, small_model, train
        amp.init()          # MXNet's legacy operators only: the CPU keeps float32
        data = batches(2)
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


@pytest.fixture
def restore_operators(monkeypatch):
    """Put the NumPy-mode operators back after a test wraps them."""
    for module in mixed_precision._numpy_modules():
        for name in mixed_precision.AMP_OPERATORS:
            monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setitem(mixed_precision._STATE, "enabled", False)


def test_the_operators_get_float16_inputs_in_arrays(restore_operators, monkeypatch):
    import mxnet.ndarray.numpy_extension as nd_npx
    seen = []
    monkeypatch.setattr(nd_npx, "convolution",
                        lambda *args, **kwargs: seen.append([a.dtype for a in args]))
    mixed_precision.wrap_numpy_operators()
    mixed_precision.wrap_numpy_operators()          # once only
    nd_npx.convolution(np.ones((1, 3, 4, 4)), np.ones((2, 3, 1, 1)), kernel=(1, 1),
                       num_filter=2, no_bias=True)
    assert seen == [[onp.float16, onp.float16]]
    ints = np.ones((2,), dtype="int32")
    assert mixed_precision._cast(ints, "float16") is ints          # only float32 <-> 16


def test_the_graph_casts_every_convolutions_inputs_to_float16(restore_operators):
    mixed_precision.wrap_numpy_operators()
    mixed_precision._STATE["enabled"] = True
    head = rpn.RPNOutput(num_anchors=3, channels=8)
    head.initialize()
    head.hybridize()
    outputs = head(mx.sym.var("data").as_np_ndarray())
    graph = json.loads(outputs[0].tojson(remove_amp_cast=False))
    nodes = graph["nodes"]
    convolutions = [n for n in nodes if n["op"] == "Convolution"]
    assert len(convolutions) == 2          # the 3x3 and the class predictor
    for node in convolutions:
        for source, *_ in node["inputs"]:
            assert nodes[source]["op"] == "amp_cast", nodes[source]
            assert nodes[source]["attrs"]["dtype"] == "float16"
    # and the head's outputs are cast back to float32
    last = nodes[graph["heads"][0][0]]
    assert last["op"] == "Cast" and last["attrs"]["dtype"] == "float32"


def test_gradients_flow_through_the_casts_to_float32_parameters():
    x = np.array([[0.5, -1.25, 3.0]])
    x.attach_grad()
    with autograd.record():
        y = mixed_precision._cast(x, "float16")
        loss = (y.astype("float32") ** 2).sum()
    loss.backward()
    assert y.dtype == onp.float16 and x.grad.dtype == onp.float32
    onp.testing.assert_allclose(x.grad.asnumpy(), 2 * x.asnumpy())


def test_float32_casts_only_under_amp(monkeypatch):
    a = np.ones((2,), dtype="float16")
    assert mixed_precision.float32(a)[0] is a
    monkeypatch.setitem(mixed_precision._STATE, "enabled", True)
    assert mixed_precision.float32(a)[0].dtype == onp.float32


def test_init_turns_amp_on_once(restore_operators):
    fake = FakeAmp()
    assert mixed_precision.init(fake) is fake and mixed_precision.enabled()
    mixed_precision.init(fake)
    assert fake.calls == [("init", "float16")]
    assert all(getattr(getattr(m, n), "rpn_amp", False)
               for m in mixed_precision._numpy_modules() for n in mixed_precision.AMP_OPERATORS)


def test_a_cpu_is_refused_in_one_line():
    with pytest.raises(SettingsError, match=r"needs GPUs; got cpu\(0\), cpu\(1\)") as caught:
        check_contexts([mx.cpu(0), mx.cpu(1)])
    assert "\n" not in str(caught.value)
    check_contexts([mx.gpu(0)])       # a GPU passes (nothing runs)


def test_env_times_float16_on_gpus_only(monkeypatch, capsys):
    from rpn import env
    result = env.check_device(mx.cpu(), steps=1, batch_size=1, size=64, amp=True)
    assert result["ok"] is False and "needs GPUs" in result["error"]
    assert result["precision"] == "float16"
    calls = []
    monkeypatch.setattr(env, "check_device", lambda ctx, **kw: calls.append(kw) or dict(
        ok=True, device=str(ctx), **{k: kw.get(k) for k in ("preset", "backbone")}))
    assert env.main(["--check", "--json", "--amp"]) == 0
    assert all(not kw.get("amp") for kw in calls)             # no GPU: float32 only
    if not mx.context.num_gpus():
        assert "no GPU visible" in capsys.readouterr().err


def test_fit_turns_amp_on_before_the_model_and_hands_it_to_the_loop(tmp_path):
    """``rpn.fit(amp=True)`` with the GPU check and AMP's global switch
    stood in for (a :class:`Fit` whose parts record what they do): AMP goes
    on before the model is built, and the loop gets AMP's loss scaler; the
    run records it."""
    events = []

    class StandIn(Fit):
        def check_devices(self):
            events.append("check")

        def switch_amp(self):
            events.append(("init", hasattr(self, "net")))

        def build_model(self):
            super().build_model()
            events.append("model")

        def train(self):
            events.append(("loop", self.amp))
            self.amp = FakeAmp()            # MXNet's scaler needs a GPU
            history = super().train()
            events.append(self.amp.calls[0])
            return history

    StandIn("synthetic", str(tmp_path / "run"), amp=True, size=64, batch_size=4, epochs=1,
            settings={"num_train": 8, "num_val": 4}, quiet=True).run()
    assert events == ["check", ("init", False), "model", ("loop", True),
                      ("init_trainer", "Trainer")]
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["amp"] is True
